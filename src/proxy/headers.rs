//! Header rules for forwarding: hop-by-hop fields are the proxy's, not the peers'.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Fields that apply to one connection only (RFC 9110 §7.6.1) plus the proxy-specific
/// ones; `te` is kept when it is exactly `trailers` (gRPC needs it). `Trailer` is
/// end-to-end: hyper writes HTTP/1 trailers only when it names them. Typed names: a
/// string would be parsed again on every removal, twice per exchange.
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop fields, including any named in `Connection`, keeping the order of
/// the rest. `Content-Length` goes too when `Transfer-Encoding` came with it: the body
/// was framed by the latter (RFC 9112 §6.3), and the length would reframe it wrongly.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    strip_hop_by_hop_and(headers, |_, _| false);
}

/// [`strip_hop_by_hop`], also removing the fields for which `also` is true.
pub fn strip_hop_by_hop_and(
    headers: &mut HeaderMap,
    also: impl Fn(&HeaderName, &HeaderValue) -> bool,
) {
    // Usually `Connection: keep-alive` or `close`, which name no other field to drop.
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|name| {
            !name.eq_ignore_ascii_case("keep-alive") && !name.eq_ignore_ascii_case("close")
        })
        .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
        .collect();
    let te_is_trailers = headers
        .get_all(header::TE)
        .iter()
        .all(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    let length_overridden = headers.contains_key(header::TRANSFER_ENCODING);
    remove_in_order(headers, |name, value| {
        HOP_BY_HOP.contains(name)
            || listed.contains(name)
            || (name == header::TE && !te_is_trailers)
            || (length_overridden && name == header::CONTENT_LENGTH)
            || also(name, value)
    });
}

/// Removes the fields for which `unwanted` is true, keeping the order of the rest.
/// `HeaderMap::remove` moves the last field into the removed one's place, so a map
/// that has something to remove is rebuilt instead; one that has nothing is left as is.
pub fn remove_in_order(
    headers: &mut HeaderMap,
    mut unwanted: impl FnMut(&HeaderName, &HeaderValue) -> bool,
) {
    if !headers.iter().any(|(name, value)| unwanted(name, value)) {
        return;
    }
    let all = std::mem::replace(headers, HeaderMap::with_capacity(headers.len()));
    let mut current: Option<HeaderName> = None;
    for (name, value) in all {
        // The map yields a name once, then `None` for its further values.
        if let Some(name) = name {
            current = Some(name);
        }
        let Some(name) = current.as_ref() else {
            continue;
        };
        if !unwanted(name, &value) {
            headers.append(name.clone(), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_listed_and_standard_hop_by_hop_fields() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, X-Secret-Hop".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("x-secret-hop", "1".parse().unwrap());
        h.insert("transfer-encoding", "chunked".parse().unwrap());
        h.insert("proxy-authorization", "Basic eA==".parse().unwrap());
        h.insert("te", "gzip".parse().unwrap());
        h.insert("x-kinvey-api-version", "5".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kinvey-api-version"));
    }

    #[test]
    fn the_fields_left_keep_their_order() {
        let mut h = HeaderMap::new();
        for (name, value) in [
            ("host", "a"),
            ("x-one", "1"),
            ("connection", "keep-alive"),
            ("x-two", "2"),
            ("x-two", "2b"),
            ("proxy-authorization", "Basic eA=="),
            ("x-three", "3"),
        ] {
            h.append(name, value.parse().unwrap());
        }
        strip_hop_by_hop_and(&mut h, |name, _| name == header::HOST);
        let left: Vec<(&str, &str)> = h
            .iter()
            .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
            .collect();
        assert_eq!(
            left,
            [
                ("x-one", "1"),
                ("x-two", "2"),
                ("x-two", "2b"),
                ("x-three", "3")
            ]
        );
    }

    #[test]
    fn a_length_sent_with_transfer_encoding_goes_with_it() {
        let mut h = HeaderMap::new();
        h.insert("content-length", "3".parse().unwrap());
        h.insert("transfer-encoding", "chunked".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert!(h.is_empty(), "{h:?}");
        let mut alone = HeaderMap::new();
        alone.insert("content-length", "3".parse().unwrap());
        strip_hop_by_hop(&mut alone);
        assert!(alone.contains_key("content-length"));
    }

    #[test]
    fn te_trailers_survives() {
        let mut h = HeaderMap::new();
        h.insert("te", "trailers".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert!(h.contains_key("te"));
    }
}
