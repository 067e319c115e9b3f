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

/// `flow`'s request as one `curl` command: its method, URL, header fields and body as
/// captured, in POSIX shell quoting; a body that is not UTF-8 text (gzip'd, binary) in
/// the `$'\x1f…'` quoting of bash, zsh and ksh, byte for byte. A body not captured whole
/// is left out with a comment saying so.
pub fn curl_command(flow: &Flow) -> String {
    let request = &flow.request;
    let mut words = vec!["curl".to_owned()];
    let sends_body = request.body.wire_size > 0 && !request.body.truncated;
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
        words.push(match std::str::from_utf8(&request.body.bytes) {
            Ok(text) => quoted(text),
            Err(_) => bytes_quoted(&request.body.bytes),
        });
    }
    let mut command = words.join(" ");
    if request.body.wire_size > 0 && !sends_body {
        command.push_str(&format!(
            "  # its {} byte body is left out: only part of it was captured (--max-body)",
            request.body.wire_size
        ));
    }
    command
}

/// `text` as one POSIX shell word: in single quotes, a quote in it as `'\''`.
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// `bytes` as one word in ANSI-C quoting (`$'…'`): printable ASCII as it is, the rest
/// escaped (`\x1f`, `\n`), so that the shell passes exactly these bytes.
fn bytes_quoted(bytes: &[u8]) -> String {
    let mut word = String::with_capacity(bytes.len() * 2 + 3);
    word.push_str("$'");
    for &byte in bytes {
        match byte {
            b'\\' => word.push_str("\\\\"),
            b'\'' => word.push_str("\\'"),
            b'\n' => word.push_str("\\n"),
            b'\r' => word.push_str("\\r"),
            b'\t' => word.push_str("\\t"),
            b' '..=b'~' => word.push(char::from(byte)),
            _ => word.push_str(&format!("\\x{byte:02x}")),
        }
    }
    word.push('\'');
    word
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
    fn a_body_that_is_no_text_goes_byte_for_byte() {
        let binary = curl_command(&flow(
            "POST",
            &[0x1f, 0x8b, b'a', b'\'', b'\\', b'\n', 0xff],
        ));
        assert!(
            binary.ends_with(r"--data-binary $'\x1f\x8ba\'\\\n\xff'"),
            "{binary}"
        );
        assert!(
            binary.starts_with("curl 'https://"),
            "POST is implied: {binary}"
        );
    }

    #[test]
    fn a_body_captured_in_part_is_left_out_saying_so() {
        let mut cut = flow("POST", b"{\"a\":");
        cut.request.body.truncated = true;
        assert!(curl_command(&cut).contains("only part of it was captured"));
    }
}
