//! Header rules for forwarding: hop-by-hop fields are the proxy's, not the peers'.

use http::header::{self, HeaderMap, HeaderName};

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

/// Removes hop-by-hop fields, including any named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
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
    for name in listed {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    let te_is_trailers = headers
        .get_all(header::TE)
        .iter()
        .all(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    if !te_is_trailers {
        headers.remove(header::TE);
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
    fn te_trailers_survives() {
        let mut h = HeaderMap::new();
        h.insert("te", "trailers".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert!(h.contains_key("te"));
    }
}
