//! A recorded request to send again, and the text a user changes it as: the request
//! line, the header fields, an empty line, the body decoded.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Uri};

use crate::flow::{Flow, FlowErrorKind, FlowKind, HttpVersion};
use crate::proxy::headers::{remove_in_order, strip_hop_by_hop_and};
use crate::proxy::Target;

/// A request to send again: what the client sent, without the fields of its connection.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayRequest {
    /// The method.
    pub method: Method,
    /// The absolute URL.
    pub url: Uri,
    /// The end-to-end header fields, in order (`Host` among them when the client sent one
    /// that does not simply name the URL's host).
    pub headers: HeaderMap,
    /// The body as it is sent (content-encoded as `Content-Encoding` says).
    pub body: Bytes,
    /// Sent over HTTP/2 when the proxy offers it (the original went over HTTP/2).
    pub http2: bool,
}

/// What the text to edit begins with; lines starting with `#` before the request line
/// are not part of the request.
const EDIT_HELP: &str = "\
# Change the request, then save and quit to send it through kinspect; empty the file
# to send nothing. The body is shown decoded and sent encoded as Content-Encoding says.
";

/// Keeps the end-to-end fields: the connection's own go (those `Connection` names too,
/// `TE` unless it is `trailers`), and so does `Expect`, whose interim answer a replay
/// does not wait for; `Content-Length` too unless `keep_length` (the body is the one
/// it measured).
fn end_to_end(headers: &mut HeaderMap, keep_length: bool) {
    strip_hop_by_hop_and(headers, |name, _| {
        (name == header::CONTENT_LENGTH && !keep_length) || name == header::EXPECT
    });
}

/// Leaves out a `Host` field that only names `url`'s host: it is made from the URL, so
/// that a changed URL goes with its own host.
fn without_implied_host(headers: &mut HeaderMap, url: &Uri) {
    if let Some(target) = Target::of_uri(url) {
        remove_in_order(headers, |name, value| {
            name == header::HOST && target.is_named_by_host_field(value.as_bytes())
        });
    }
}

impl ReplayRequest {
    /// [`ReplayRequest::of`] for sending unchanged (`R`): also refused when kinspect
    /// turned the request away as malformed or unroutable (a 400 of its own), since
    /// what the flow holds of it is then kinspect's reading, not what the client sent,
    /// and it never reached an origin. `e` may still start from it.
    pub fn unchanged_of(flow: &Flow) -> Result<ReplayRequest, String> {
        let answered_by_origin = flow.response.as_ref().is_some_and(|r| !r.from_proxy);
        if let Some(error) = flow.error.as_ref().filter(|_| !answered_by_origin) {
            if error.kind == FlowErrorKind::BadRequest {
                return Err(format!(
                    "kinspect refused flow {}'s request as sent ({}), so it never reached an \
                     origin: e writes a corrected one",
                    flow.id, error.message
                ));
            }
        }
        ReplayRequest::of(flow)
    }

    /// The request of `flow` as its client sent it, or why it cannot be sent again.
    pub fn of(flow: &Flow) -> Result<ReplayRequest, String> {
        let id = flow.id;
        if flow.kind != FlowKind::Http {
            return Err(format!(
                "flow {id} is a tunnel: its bytes were not read, so there is no request to send"
            ));
        }
        let request = &flow.request;
        let websocket = request
            .headers
            .get("upgrade")
            .is_some_and(|u| u.trim().eq_ignore_ascii_case("websocket"));
        if websocket || request.method == "CONNECT" {
            return Err(format!(
                "flow {id} opened a WebSocket or a tunnel: only requests with an answer are sent again"
            ));
        }
        if request.body.truncated {
            return Err(format!(
                "raise --max-body to send such requests again: only the first {} of the {} \
                 bytes of flow {id}'s request body were captured",
                request.body.bytes.len(),
                request.body.wire_size,
            ));
        }
        if request.body.incomplete {
            return Err(format!(
                "flow {id}'s request never arrived whole (its client stopped sending)"
            ));
        }
        let method = Method::from_bytes(request.method.as_bytes())
            .map_err(|_| format!("flow {id}'s method {:?} is not valid", request.method))?;
        let url = parse_url(&request.url)?;
        let mut headers = HeaderMap::new();
        for field in request.headers.iter() {
            // Captured from a parsed request, so these parse; anything else is left out.
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(field.name.as_bytes()),
                HeaderValue::from_bytes(&field.value),
            ) {
                headers.append(name, value);
            }
        }
        end_to_end(&mut headers, true);
        Ok(ReplayRequest {
            method,
            url,
            headers,
            body: request.body.bytes.clone(),
            http2: request.version == HttpVersion::Http2,
        })
    }

    /// The request as text to change: a comment saying how, the request line, the
    /// header fields (without a `Host` that only names the URL's host, nor a
    /// `Content-Length`), an empty line and the body, decoded. A body that is not text cannot be changed this way.
    pub fn to_text(&self) -> Result<String, String> {
        Ok(self.text_with(&self.body_text()?))
    }

    /// [`ReplayRequest::to_text`] with the body decoded already.
    fn text_with(&self, body: &str) -> String {
        let mut headers = self.headers.clone();
        without_implied_host(&mut headers, &self.url);
        // The body changed is measured again.
        remove_in_order(&mut headers, |name, _| name == header::CONTENT_LENGTH);
        let mut text = format!("{EDIT_HELP}{} {}\n", self.method, self.url);
        for (name, value) in &headers {
            text.push_str(&format!("{name}: {}\n", value_text(value)));
        }
        text.push('\n');
        text.push_str(body);
        text
    }

    /// The body decoded, as text; why not when it is not.
    fn body_text(&self) -> Result<String, String> {
        let encoding = self
            .headers
            .get(header::CONTENT_ENCODING)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let body = crate::decode::decode_body(&self.body, encoding.as_deref())
            .map_err(|e| format!("its body cannot be decoded ({e}): R sends it unchanged"))?;
        String::from_utf8(body.to_vec())
            .map_err(|_| "its body is not text: R sends it unchanged".to_owned())
    }

    /// The request after the user changed [`ReplayRequest::to_text`]'s text into
    /// `text`; `None` when they left it as it was (quitting an editor without saving
    /// sends nothing: `R` sends a request unchanged). The body is encoded again as its
    /// `Content-Encoding` says; an editor's final newline is not taken for part of a
    /// body that had none; a field left as it was keeps its bytes (a value that is not
    /// UTF-8 is shown as ISO-8859-1). Errors name the line.
    pub fn edited(&self, text: &str) -> Result<Option<ReplayRequest>, String> {
        let body = self.body_text()?;
        let original = self.text_with(&body);
        // Whatever line endings the editor saved with.
        if text.replace("\r\n", "\n") == original.replace("\r\n", "\n") {
            return Ok(None);
        }
        let body_ended_a_line = body.ends_with('\n');
        let mut changed = ReplayRequest::parse(text, body_ended_a_line, self.http2)?;
        // Fields left as they were keep their bytes.
        let fields: Vec<(HeaderName, HeaderValue)> = changed
            .headers
            .iter()
            .map(|(name, value)| {
                let kept = self
                    .headers
                    .get_all(name)
                    .iter()
                    .find(|v| value_text(v) == value_text(value));
                (name.clone(), kept.unwrap_or(value).clone())
            })
            .collect();
        changed.headers.clear();
        for (name, value) in fields {
            changed.headers.append(name, value);
        }
        Ok(Some(changed))
    }

    /// The request written as [`ReplayRequest::to_text`] writes it: the body encoded
    /// as its `Content-Encoding` says, an editor's final newline left out unless
    /// `body_ends_a_line`. Errors name the line.
    fn parse(text: &str, body_ends_a_line: bool, http2: bool) -> Result<ReplayRequest, String> {
        // Comment lines before the request line are not part of it.
        let mut skipped = 0;
        let mut rest = text;
        while rest.starts_with('#') || rest.starts_with('\n') || rest.starts_with("\r\n") {
            rest = rest.split_once('\n').map_or("", |(_, after)| after);
            skipped += 1;
        }
        // The head ends at the first empty line, whichever line ending the editor wrote.
        let end = ["\n\n", "\n\r\n"]
            .iter()
            .filter_map(|blank| rest.find(blank).map(|at| (at, blank.len())))
            .min();
        let (head, body) = match end {
            Some((at, blank)) => (&rest[..at], &rest[at + blank..]),
            None => (rest.trim_end_matches(['\r', '\n']), ""),
        };
        let body = match body.strip_suffix("\r\n").or(body.strip_suffix('\n')) {
            Some(trimmed) if !body_ends_a_line => trimmed,
            _ => body,
        };
        let at = |index: usize| format!("line {}", skipped + index + 1);
        let mut lines = head.lines();
        let request_line = lines.next().unwrap_or_default().trim();
        let mut words = request_line.split_whitespace();
        let (Some(method), Some(url), None) = (words.next(), words.next(), words.next()) else {
            return Err(format!(
                "{}: the request line must be METHOD URL, a space in the URL written %20 \
                 (it is {request_line:?})",
                at(0)
            ));
        };
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|_| format!("{}: {method:?} is not a method", at(0)))?;
        if method == Method::CONNECT {
            return Err(format!(
                "{}: a CONNECT opens a tunnel, which is not sent again: write another method",
                at(0)
            ));
        }
        let url = parse_url(url).map_err(|e| format!("{}: {e}", at(0)))?;
        let mut headers = HeaderMap::new();
        for (index, line) in lines.enumerate() {
            let line = line.trim_end_matches('\r');
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| format!("{}: a header field is NAME: VALUE", at(index + 1)))?;
            let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
                format!("{}: {:?} is not a header name", at(index + 1), name.trim())
            })?;
            let value = HeaderValue::from_str(value.trim()).map_err(|_| {
                format!(
                    "{}: the value of {name} has a character a field cannot carry",
                    at(index + 1)
                )
            })?;
            // HTTP/2 has no Host but the URL's (`:authority`): one naming another host
            // would go unsent.
            if http2 && name == header::HOST {
                let named = Target::of_uri(&url)
                    .is_some_and(|target| target.is_named_by_host_field(value.as_bytes()));
                if !named {
                    return Err(format!(
                        "{}: this request goes over HTTP/2, which names the host in the URL \
                         only: change the URL's host instead of writing a Host field",
                        at(index + 1)
                    ));
                }
            }
            headers.append(name, value);
        }
        end_to_end(&mut headers, false);
        let body = match headers.get(header::CONTENT_ENCODING) {
            Some(encoding) => {
                let encoding = String::from_utf8_lossy(encoding.as_bytes());
                crate::decode::encode_body(body.as_bytes(), &encoding).ok_or_else(|| {
                    format!(
                        "kinspect cannot encode a body as {encoding:?}: remove the \
                         Content-Encoding line to send it as it is written"
                    )
                })?
            }
            None => Bytes::copy_from_slice(body.as_bytes()),
        };
        Ok(ReplayRequest {
            method,
            url,
            headers,
            body,
            http2,
        })
    }
}

/// A field value as the text shows it.
fn value_text(value: &HeaderValue) -> std::borrow::Cow<'_, str> {
    crate::flow::field_value_text(value.as_bytes())
}

/// `url` if it is an absolute `http://` or `https://` URL the proxy can send to;
/// characters a URL cannot carry as they are (`é`) are percent-encoded.
fn parse_url(url: &str) -> Result<Uri, String> {
    let url = percent_encoding::utf8_percent_encode(url, percent_encoding::CONTROLS).to_string();
    let url = url.as_str();
    let uri: Uri = url
        .parse()
        .map_err(|_| format!("{url:?} is not a URL that can be sent"))?;
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(format!(
            "{url:?} carries credentials: send them in an Authorization field instead"
        ));
    }
    match Target::of_uri(&uri) {
        Some(_) => Ok(uri),
        None => Err(format!(
            "{url:?} is not an http:// or https:// URL with a host and a port from 1 to 65535"
        )),
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::CapturedBody;

    fn flow(headers: &[(&str, &str)], body: &[u8]) -> Flow {
        let client = "127.0.0.1:5000".parse().unwrap();
        let url = "https://baas.kinvey.com/appdata/kid_x/books?limit=2";
        let mut flow = Flow::exchange(3, client, "POST", url, Some(400));
        flow.request.headers = headers.iter().copied().collect();
        flow.request.body = CapturedBody::whole(body.to_vec());
        flow
    }

    #[test]
    fn the_fields_of_the_original_connection_are_not_sent_again() {
        // Content-Length stays where it was: the body is the one it measured.
        let flow = flow(
            &[
                ("Host", "baas.kinvey.com"),
                ("Connection", "keep-alive, X-Hop"),
                ("X-Hop", "1"),
                ("Content-Length", "2"),
                ("Authorization", "Kinvey tok"),
                ("Expect", "100-continue"),
                ("TE", "trailers"),
                ("X-A", "1"),
                ("x-a", "2"),
            ],
            b"{}",
        );
        let request = ReplayRequest::of(&flow).unwrap();
        let fields: Vec<String> = request
            .headers
            .iter()
            .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap()))
            .collect();
        assert_eq!(
            fields,
            [
                "host: baas.kinvey.com",
                "content-length: 2",
                "authorization: Kinvey tok",
                "te: trailers",
                "x-a: 1",
                "x-a: 2"
            ]
        );
        assert_eq!(
            (request.method.as_str(), &request.body[..]),
            ("POST", &b"{}"[..])
        );
        // An upgrade other than WebSocket (h2c) is sent as a plain request.
        let h2c = self::flow(
            &[
                ("Connection", "Upgrade, HTTP2-Settings"),
                ("Upgrade", "h2c"),
                ("HTTP2-Settings", "AAA"),
            ],
            b"",
        );
        assert!(ReplayRequest::of(&h2c).unwrap().headers.is_empty());
    }

    #[test]
    fn what_cannot_be_sent_again_says_why() {
        let mut cut = flow(&[], b"{\"a\":");
        cut.request.body.truncated = true;
        cut.request.body.wire_size = 100_000;
        let said = ReplayRequest::of(&cut).unwrap_err();
        assert!(
            said.contains("only the first 5 of the 100000 bytes") && said.contains("--max-body")
        );
        let mut broken = flow(&[], b"{");
        broken.request.body.incomplete = true;
        assert!(ReplayRequest::of(&broken)
            .unwrap_err()
            .contains("never arrived whole"));
        let websocket = flow(&[("Upgrade", "websocket")], b"");
        assert!(ReplayRequest::of(&websocket)
            .unwrap_err()
            .contains("WebSocket"));
        let mut tunnel = flow(&[], b"");
        tunnel.kind = FlowKind::Tunnel;
        assert!(ReplayRequest::of(&tunnel).unwrap_err().contains("tunnel"));
        // kinspect's own 400: what the flow holds is kinspect's reading of the request.
        let mut refused = flow(&[], b"");
        refused.response.as_mut().unwrap().from_proxy = true;
        refused.error = Some(crate::flow::FlowError {
            kind: FlowErrorKind::BadRequest,
            message: "a bad header".into(),
        });
        let said = ReplayRequest::unchanged_of(&refused).unwrap_err();
        assert!(
            said.contains("refused flow 3's request as sent (a bad header)"),
            "{said}"
        );
        assert!(ReplayRequest::of(&refused).is_ok(), "e starts from it");
        // The origin's own 400 is sent again.
        refused.response.as_mut().unwrap().from_proxy = false;
        assert!(ReplayRequest::unchanged_of(&refused).is_ok());
        let mut odd = flow(&[], b"");
        odd.request.url = "/relative".into();
        assert!(ReplayRequest::of(&odd)
            .unwrap_err()
            .contains("not an http:// or https:// URL"));
    }

    #[test]
    fn a_request_is_edited_as_text_its_body_decoded_then_encoded_again() {
        let gzipped = crate::decode::encode_body(b"{\"year\":\"1965\"}", "gzip").unwrap();
        let flow = flow(
            &[
                ("Host", "baas.kinvey.com:443"),
                ("Content-Type", "application/json"),
                ("Content-Encoding", "gzip"),
            ],
            &gzipped,
        );
        let request = ReplayRequest::of(&flow).unwrap();
        let text = request.to_text().unwrap();
        assert!(text.starts_with(EDIT_HELP), "{text}");
        assert_eq!(
            &text[EDIT_HELP.len()..],
            "POST https://baas.kinvey.com/appdata/kid_x/books?limit=2\n\
             content-type: application/json\ncontent-encoding: gzip\n\n{\"year\":\"1965\"}",
            "no Host: it only names the URL's host"
        );
        // Left as it was, nothing is sent (R does that); CRLF endings are no change.
        assert_eq!(request.edited(&text).unwrap(), None);
        assert_eq!(request.edited(&text.replace('\n', "\r\n")).unwrap(), None);
        let multipart = ReplayRequest::of(&self::flow(&[], b"--b\r\npart\r\n--b--\r\n")).unwrap();
        let text_of_multipart = multipart.to_text().unwrap();
        assert_eq!(
            multipart.edited(&text_of_multipart).unwrap(),
            None,
            "CRLF in the body"
        );
        // Changed, its body is gzipped again; an editor's final newline is not the
        // body's.
        let edited = text.replace("\"1965\"", "1965") + "\n";
        let back = request.edited(&edited).unwrap().unwrap();
        let decoded = crate::decode::decode_body(&back.body, Some("gzip")).unwrap();
        assert_eq!(&decoded[..], b"{\"year\":1965}");
        assert_eq!(back.headers["content-encoding"], "gzip");
        let plain = edited.replace("content-encoding: gzip\n", "");
        let back = request.edited(&plain).unwrap().unwrap();
        assert_eq!(&back.body[..], b"{\"year\":1965}");
        // A body that ended a line keeps its newline; one added to none gets none.
        let lines = ReplayRequest::of(&self::flow(&[], b"line\n")).unwrap();
        let text_of_lines = lines.to_text().unwrap();
        let back = lines
            .edited(&text_of_lines.replace("POST", "PUT"))
            .unwrap()
            .unwrap();
        assert_eq!(&back.body[..], b"line\n");
        let empty = ReplayRequest::of(&self::flow(&[], b"")).unwrap();
        let added = empty.to_text().unwrap() + "added=body\n";
        assert_eq!(
            &empty.edited(&added).unwrap().unwrap().body[..],
            b"added=body"
        );
        // A Host naming another host is the user's: kept.
        let moved = text.replace("content-type", "host: other.test\ncontent-type");
        let back = request.edited(&moved).unwrap().unwrap();
        assert_eq!(back.headers["host"], "other.test");
        // A body that is not text is sent as it is, not edited; nor is one kinspect
        // cannot encode again.
        let binary = ReplayRequest::of(&self::flow(&[], &[0xff, 0x00])).unwrap();
        assert!(binary.to_text().unwrap_err().contains("not text"));
        let odd = text.replace("content-encoding: gzip", "content-encoding: compress");
        let said = request.edited(&odd).unwrap_err();
        assert!(said.contains("remove the Content-Encoding line"), "{said}");
    }

    #[test]
    fn edited_text_that_is_no_request_says_where() {
        let request = ReplayRequest::of(&flow(&[], b"")).unwrap();
        let error = |text: &str| request.edited(text).unwrap_err();
        assert!(error("GET\n").starts_with("line 1: the request line must be METHOD URL"));
        assert!(error("GET http://a.test/a b\n").contains("written %20"));
        assert!(error("# a comment\n\nGET\n").starts_with("line 3:"));
        assert!(error("GET http://u:p@a.test/\n").contains("Authorization field"));
        assert!(error("GET http://a.test:0/\n").contains("port from 1 to 65535"));
        assert!(error("G(T http://a.test/\n").contains("not a method"));
        assert!(error("GET ftp://a.test/\n").contains("not an http:// or https:// URL"));
        assert!(error("GET http://a.test/\nx-a 1\n").starts_with("line 2:"));
        assert!(error("GET http://a.test/\nx-a: 1\nb@d: 2\n").starts_with("line 3:"));
        let crlf = "POST http://a.test/x\r\nx-a: 1\r\n\r\nbody\r\n";
        let back = request.edited(crlf).unwrap().unwrap();
        assert_eq!(
            (back.headers["x-a"].as_bytes(), &back.body[..]),
            (&b"1"[..], &b"body"[..])
        );
        let no_body = request.edited("DELETE http://a.test/x").unwrap().unwrap();
        assert_eq!((no_body.method, no_body.body.len()), (Method::DELETE, 0));
        let accented = request.edited("GET http://a.test/café\n").unwrap().unwrap();
        assert_eq!(accented.url.path(), "/caf%C3%A9");
        assert!(error("CONNECT http://a.test/\n").contains("not sent again"));
        // Over HTTP/2 the URL names the host: a Host naming another is refused, one
        // naming the URL's is the URL's.
        let mut http2 = request.clone();
        http2.http2 = true;
        let said = http2
            .edited("GET https://a.test/x\nhost: b.test\n")
            .unwrap_err();
        assert!(
            said.starts_with("line 2:") && said.contains("change the URL's host"),
            "{said}"
        );
        assert!(http2.edited("GET https://a.test/x\nhost: a.test\n").is_ok());
        assert!(request
            .edited("GET https://a.test/x\nhost: b.test\n")
            .is_ok());
    }

    #[test]
    fn a_field_left_as_it_was_keeps_bytes_that_are_not_utf8() {
        let mut flow = flow(&[], b"");
        flow.request.headers = [("x-latin", &b"caf\xe9"[..]), ("x-b", b"1")]
            .into_iter()
            .collect();
        let request = ReplayRequest::of(&flow).unwrap();
        let text = request.to_text().unwrap();
        assert!(text.contains("x-latin: café\n"), "{text}");
        let changed = request
            .edited(&text.replace("x-b: 1", "x-b: 2"))
            .unwrap()
            .unwrap();
        assert_eq!(changed.headers["x-latin"].as_bytes(), b"caf\xe9");
        assert_eq!(changed.headers["x-b"], "2");
    }
}
