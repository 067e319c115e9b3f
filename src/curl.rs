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

/// `flow`'s request as one `curl` command in POSIX shell quoting: its method, URL, header
/// fields and body as captured. A body no shell word can carry — not UTF-8 text (gzip'd,
/// binary), a NUL byte in it, or a leading `@` (curl would read a file of that name) —
/// is piped in by `printf`, byte for byte. A body not captured whole is left out with a
/// comment saying so.
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
    let mut piped = None;
    if sends_body {
        let bytes = &request.body.bytes;
        let word = std::str::from_utf8(bytes)
            .ok()
            .filter(|text| !text.contains('\0') && !text.starts_with('@'));
        words.push("--data-binary".into());
        match word {
            Some(text) => words.push(quoted(text)),
            None => {
                words.push("@-".into());
                piped = Some(printf_of(bytes));
            }
        }
    }
    let mut command = words.join(" ");
    if let Some(printf) = piped {
        command = format!("{printf} | {command}");
    }
    if request.body.wire_size > 0 && !sends_body {
        command.push_str(&format!(
            "  # its {} byte body is left out: only part of it was captured (--max-body)",
            request.body.wire_size
        ));
    }
    command
}

/// `text` as one POSIX shell word: in single quotes, a quote in it as `'\''`.
pub(crate) fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// A `printf` command writing exactly `bytes`: printable ASCII as it is (`%` and `\`
/// escaped for printf, `'` for the shell), every other byte, NUL included, as a
/// three-digit octal escape; a leading `-` too, which printf would take for an option
/// (a multipart body begins with `--`).
fn printf_of(bytes: &[u8]) -> String {
    let mut format = String::with_capacity(bytes.len() * 2 + 10);
    format.push_str("printf '");
    for (at, &byte) in bytes.iter().enumerate() {
        match byte {
            b'-' if at == 0 => format.push_str(r"\055"),
            b'\\' => format.push_str("\\\\"),
            b'%' => format.push_str("%%"),
            b'\'' => format.push_str(r"'\''"),
            b' '..=b'~' => format.push(char::from(byte)),
            _ => format.push_str(&format!("\\{byte:03o}")),
        }
    }
    format.push('\'');
    format
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
    fn a_body_no_word_can_carry_is_piped_in_byte_for_byte() {
        let gzip_like = [
            0x1f, 0x8b, 0x08, 0x00, b'%', b'\'', b'\\', b'\n', 0xff, b'a',
        ];
        let multipart = b"--xyz\r\nContent-Type: image/png\r\n\r\n\x89PNG\r\n--xyz--\r\n";
        for body in [&gzip_like[..], b"@/etc/passwd", b"nul\0inside", multipart] {
            let command = curl_command(&flow("POST", body));
            let (printf, curl) = command.split_once(" | ").expect("piped");
            assert!(
                curl.starts_with("curl 'https://"),
                "POST is implied: {curl}"
            );
            assert!(curl.ends_with(" --data-binary @-"), "{curl}");
            // What the shell's printf writes is the body, in sh (dash on Debian) and in
            // bash where it is installed.
            for shell in ["sh", "bash"] {
                let Ok(written) = std::process::Command::new(shell)
                    .args(["-c", printf])
                    .output()
                else {
                    assert_ne!(shell, "sh", "sh runs");
                    continue;
                };
                assert_eq!(written.stdout, body, "{shell}: {printf}");
            }
        }
    }

    #[test]
    fn a_body_captured_in_part_is_left_out_saying_so() {
        let mut cut = flow("POST", b"{\"a\":");
        cut.request.body.truncated = true;
        assert!(curl_command(&cut).contains("only part of it was captured"));
    }
}
