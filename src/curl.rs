//! A flow's request as a `curl` command line, to send it again from a shell (the UI's
//! copy-as-cURL).

use crate::flow::{Flow, HttpVersion};

/// Header fields curl writes itself from the command: leaving them out lets it get
/// them right for the body it sends.
const WRITTEN_BY_CURL: [&str; 5] = [
    "content-length",
    "connection",
    "transfer-encoding",
    "keep-alive",
    "proxy-connection",
];

/// `flow`'s request as one `curl` command (POSIX shell quoting): its method, URL,
/// header fields and body as captured. A body that is not UTF-8, or was not captured
/// whole, is left out with a comment saying so.
pub fn curl_command(flow: &Flow) -> String {
    let request = &flow.request;
    let mut words = vec!["curl".to_owned()];
    let body = std::str::from_utf8(&request.body.bytes).ok();
    let sends_body = request.body.wire_size > 0 && body.is_some() && !request.body.truncated;
    let implied = if sends_body { "POST" } else { "GET" };
    if request.method == "HEAD" && !sends_body {
        // With `-X HEAD` curl waits for the body the response's length announces.
        words.push("--head".into());
    } else if request.method != implied {
        words.push("-X".into());
        words.push(quoted(&request.method));
    }
    if request.version == HttpVersion::Http2 {
        words.push("--http2".into());
    }
    words.push(quoted(&request.url));
    for field in request.headers.iter() {
        let name = field.name.to_ascii_lowercase();
        if WRITTEN_BY_CURL.contains(&name.as_str()) || name.starts_with(':') {
            continue;
        }
        words.push("-H".into());
        words.push(quoted(&format!("{}: {}", field.name, field.value_lossy())));
    }
    if sends_body {
        words.push("--data-binary".into());
        words.push(quoted(body.unwrap_or_default()));
    }
    let mut command = words.join(" ");
    if request.body.wire_size > 0 && !sends_body {
        command.push_str(&format!(
            "  # its {} byte body is left out: {}",
            request.body.wire_size,
            if request.body.truncated {
                "only part of it was captured (--max-body)"
            } else {
                "it is not text"
            }
        ));
    }
    command
}

/// `text` as one POSIX shell word: in single quotes, a quote in it as `'\''`.
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::CapturedBody;

    fn flow(method: &str, body: &[u8]) -> Flow {
        let client = "127.0.0.1:5000".parse().unwrap();
        let mut flow = Flow::exchange(1, client, method, "https://baas.kinvey.com/a?b=c&d", None);
        flow.request.headers = [
            ("Authorization", "Kinvey tok"),
            ("Content-Length", "13"),
            ("X-Quote", "it's"),
        ]
        .into_iter()
        .collect();
        flow.request.body = CapturedBody::whole(body.to_vec());
        flow
    }

    #[test]
    fn a_request_becomes_one_quoted_command() {
        assert_eq!(
            curl_command(&flow("GET", b"")),
            r"curl 'https://baas.kinvey.com/a?b=c&d' -H 'Authorization: Kinvey tok' -H 'X-Quote: it'\''s'"
        );
        assert_eq!(
            curl_command(&flow("POST", br#"{"a":"it's"}"#)),
            r#"curl 'https://baas.kinvey.com/a?b=c&d' -H 'Authorization: Kinvey tok' -H 'X-Quote: it'\''s' --data-binary '{"a":"it'\''s"}'"#
        );
        let put = curl_command(&flow("PUT", b"{}"));
        assert!(put.starts_with("curl -X 'PUT' "), "{put}");
        let head = curl_command(&flow("HEAD", b""));
        assert!(head.starts_with("curl --head 'https://"), "{head}");
    }

    #[test]
    fn a_body_that_cannot_be_sent_as_it_was_is_said() {
        let binary = curl_command(&flow("POST", &[0xff, 0xfe]));
        assert!(binary.starts_with("curl -X 'POST' "), "{binary}");
        assert!(
            binary.ends_with("# its 2 byte body is left out: it is not text"),
            "{binary}"
        );
        let mut cut = flow("POST", b"{\"a\":");
        cut.request.body.truncated = true;
        assert!(curl_command(&cut).contains("only part of it was captured"));
    }
}
