//! Rendering a captured body as lines of text: content-encoding undone, JSON
//! pretty-printed, text as is, binary as a hex dump; long bodies cut at a line limit.

use crate::flow::{CapturedBody, Headers};

/// Most lines rendered for one body; the rest is summarised in a last line.
pub const MAX_BODY_LINES: usize = 250_000;

/// How the detail shows bodies (`v` goes to the next).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyView {
    /// JSON indented, text as text, anything else as a hex dump.
    #[default]
    Pretty,
    /// Text as it was sent, JSON not indented (stray whitespace, key order, escapes).
    Text,
    /// A hex dump of every byte (a byte-order mark, control characters, binary).
    Hex,
}

impl BodyView {
    /// The next view, from the last back to the first.
    pub fn next(self) -> BodyView {
        match self {
            BodyView::Pretty => BodyView::Text,
            BodyView::Text => BodyView::Hex,
            BodyView::Hex => BodyView::Pretty,
        }
    }

    /// The view's name, as the detail shows it.
    pub fn name(self) -> &'static str {
        match self {
            BodyView::Pretty => "pretty",
            BodyView::Text => "text",
            BodyView::Hex => "hex",
        }
    }
}

/// The lines showing `body` (sent with `headers`) in `view`, its content-encoding undone.
pub fn body_lines(body: &CapturedBody, headers: &Headers, view: BodyView) -> Vec<String> {
    if body.wire_size == 0 {
        return vec!["(no body)".into()];
    }
    let mut lines = Vec::new();
    let encoding = headers.get("content-encoding");
    let decoded = match body.decoded(encoding.as_deref()) {
        Ok(decoded) => {
            if let Some(encoding) = encoding.as_deref().filter(|e| !e.trim().is_empty()) {
                lines.push(format!(
                    "({encoding}: {} bytes on the wire, {} decoded)",
                    body.wire_size,
                    decoded.len()
                ));
            }
            decoded
        }
        Err(e) => {
            lines.push(format!(
                "(cannot undo the content-encoding: {e}; raw bytes below)"
            ));
            body.bytes.clone()
        }
    };
    if body.truncated {
        lines.push(format!(
            "(only the first {} of {} bytes were captured: raise --max-body to keep more)",
            body.bytes.len(),
            body.wire_size
        ));
    }
    // Text in the charset its content type names, when that is not UTF-8.
    let from_charset = (view != BodyView::Hex
        && crate::flow::utf8_text(&decoded, body.truncated).is_none())
    .then(|| in_declared_charset(&decoded, headers))
    .flatten();
    if let Some((_, charset)) = &from_charset {
        lines.push(format!("(decoded from {charset})"));
    }
    let text = match &from_charset {
        _ if view == BodyView::Hex => None,
        Some((text, _)) => Some(text.as_str()),
        None => crate::flow::utf8_text(&decoded, body.truncated),
    };
    match text {
        Some(text) => {
            // A byte-order mark before JSON (which RFC 8259 §8.1 says not to send, and
            // which many parsers refuse) is said, and the JSON still indented.
            let (bom, json) = match text.strip_prefix('\u{feff}') {
                Some(rest) => (true, rest),
                None => (false, text),
            };
            let is_json = view == BodyView::Pretty
                && serde_json::from_str::<serde::de::IgnoredAny>(json).is_ok();
            if is_json && bom {
                lines.push("(begins with a UTF-8 byte-order mark, EF BB BF)".into());
            }
            let pretty = is_json.then(|| pretty_json(json));
            let text = pretty.as_deref().unwrap_or(text);
            lines.extend(text.lines().map(shown_line));
        }
        None => {
            lines.extend(hex_dump(&decoded));
            // Only the dump's shown lines were made: count those that were not.
            let hidden = decoded.len().div_ceil(16).saturating_sub(MAX_BODY_LINES);
            if hidden > 0 {
                lines.push(format!("({hidden} more lines not shown)"));
            }
            return lines;
        }
    }
    if lines.len() > MAX_BODY_LINES {
        let hidden = lines.len() - MAX_BODY_LINES;
        lines.truncate(MAX_BODY_LINES);
        lines.push(format!("({hidden} more lines not shown)"));
    }
    lines
}

/// `bytes` decoded from the charset `headers`' content type names (`iso-8859-1`,
/// `windows-1252`, `shift_jis`), with that charset's name; `None` when it names none,
/// one not known, or the bytes are not valid in it.
fn in_declared_charset(bytes: &[u8], headers: &Headers) -> Option<(String, &'static str)> {
    let encoding = crate::flow::declared_charset(headers)?;
    let (text, had_errors) = encoding.decode_without_bom_handling(bytes);
    (!had_errors).then(|| (text.into_owned(), encoding.name()))
}

/// Levels of JSON nesting shown indented; deeper ones keep the last indent.
const MAX_INDENT_LEVELS: usize = 32;

/// Tab stops in shown text.
const TAB: usize = 8;

/// One line of a text body as the terminal shows it: tabs expanded to the next tab stop
/// (a terminal cell cannot hold one: TSV columns ran together), other control
/// characters written out (`\u{1b}`) instead of dropped.
fn shown_line(line: &str) -> String {
    let line = crate::flow::printable(line);
    if !line.contains('\t') {
        return line.into_owned();
    }
    let mut out = String::with_capacity(line.len() + TAB);
    let mut column = 0;
    for c in line.chars() {
        if c == '\t' {
            let spaces = TAB - column % TAB;
            out.extend(std::iter::repeat_n(' ', spaces));
            column += spaces;
        } else {
            out.push(c);
            column += 1;
        }
    }
    out
}

/// `json` (valid JSON) indented two spaces a level, every literal as it was written:
/// numbers keep their digits (`1.10`, a 30-digit id), and a key sent twice is shown
/// twice, where parsing and printing again would round and merge them. Only a string's
/// `\u` escapes of printable characters beyond ASCII (`\u00e9`, a surrogate pair for
/// an emoji), as `ensure_ascii` encoders write all text, are shown as the characters.
fn pretty_json(json: &str) -> String {
    fn new_line(out: &mut String, depth: usize) {
        out.push('\n');
        // Deeper levels stay at the deepest indent: a body nested ten thousand deep
        // would otherwise make a hundred million spaces.
        out.extend(std::iter::repeat_n("  ", depth.min(MAX_INDENT_LEVELS)));
    }
    let mut out = String::with_capacity(json.len() + json.len() / 2);
    let mut depth = 0usize;
    let mut chars = json.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                out.push('"');
                while let Some(c) = chars.next() {
                    if c == '\\' {
                        if let Some(decoded) = escaped_letter(&mut chars) {
                            out.push(decoded);
                            continue;
                        }
                    }
                    out.push(c);
                    match c {
                        '\\' => out.extend(chars.next()),
                        '"' => break,
                        _ => {}
                    }
                }
            }
            '{' | '[' => {
                while chars.next_if(|c| c.is_whitespace()).is_some() {}
                let close = if c == '{' { '}' } else { ']' };
                out.push(c);
                if chars.next_if_eq(&close).is_some() {
                    out.push(close);
                } else {
                    depth += 1;
                    new_line(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                new_line(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(',');
                new_line(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

/// The printable character beyond ASCII a JSON `\uXXXX` escape (or a pair of them, a
/// surrogate pair) right after a backslash in `chars` stands for, taking the escape;
/// `None`, taking nothing, for any other escape.
fn escaped_letter(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<char> {
    fn code_unit(probe: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<u32> {
        if probe.next()? != 'u' {
            return None;
        }
        let hex: String = probe.take(4).collect();
        (hex.len() == 4)
            .then(|| u32::from_str_radix(&hex, 16).ok())
            .flatten()
    }
    let mut probe = chars.clone();
    let first = code_unit(&mut probe)?;
    let decoded = match first {
        0xD800..=0xDBFF => {
            if probe.next()? != '\\' {
                return None;
            }
            let low = code_unit(&mut probe).filter(|low| (0xDC00..=0xDFFF).contains(low))?;
            char::from_u32(0x10000 + ((first - 0xD800) << 10) + (low - 0xDC00))?
        }
        _ => char::from_u32(first)?,
    };
    // ASCII (quotes, backslashes), controls, and what would not be seen or would move
    // what is seen (spaces such as U+00A0, zero-width and combining characters, bidi
    // controls, soft hyphens, tags, private use) stay escaped as written.
    let seen = unicode_width::UnicodeWidthChar::width(decoded).is_some_and(|w| w > 0);
    let printable = decoded >= '\u{a0}'
        && seen
        && !decoded.is_control()
        && !decoded.is_whitespace()
        && !matches!(
            decoded,
            '\u{ad}'
                | '\u{61c}'
                | '\u{180e}'
                | '\u{200b}'..='\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2060}'..='\u{206f}'
                | '\u{feff}'
                | '\u{e000}'..='\u{f8ff}'
                | '\u{e0000}'..='\u{10ffff}'
        );
    if !printable {
        return None;
    }
    *chars = probe;
    Some(decoded)
}

/// 16 bytes per line: offset, hex, and the printable ASCII.
pub fn hex_dump(bytes: &[u8]) -> Vec<String> {
    bytes
        .chunks(16)
        .enumerate()
        .take(MAX_BODY_LINES)
        .map(|(i, chunk)| {
            let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
            let ascii: String = chunk
                .iter()
                .map(|&b| {
                    if b.is_ascii_graphic() || b == b' ' {
                        b as char
                    } else {
                        '.'
                    }
                })
                .collect();
            format!("{:08x}  {:<47}  {ascii}", i * 16, hex.join(" "))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::HeaderField;
    use bytes::Bytes;

    fn body(bytes: &'static [u8]) -> CapturedBody {
        CapturedBody::whole(bytes)
    }

    #[test]
    fn json_is_pretty_printed_and_text_kept() {
        let lines = body_lines(
            &body(br#"{"a":1,"b":[true]}"#),
            &Headers::default(),
            BodyView::Pretty,
        );
        assert_eq!(
            lines,
            ["{", "  \"a\": 1,", "  \"b\": [", "    true", "  ]", "}"]
        );
        assert_eq!(
            body_lines(&body(b"plain\ntext"), &Headers::default(), BodyView::Pretty),
            ["plain", "text"]
        );
        assert_eq!(
            body_lines(
                &CapturedBody::default(),
                &Headers::default(),
                BodyView::Pretty
            ),
            ["(no body)"]
        );
        // A byte-order mark first: said, and the JSON after it indented.
        assert_eq!(
            body_lines(
                &body(b"\xef\xbb\xbf{\"a\": 1}"),
                &Headers::default(),
                BodyView::Pretty
            ),
            [
                "(begins with a UTF-8 byte-order mark, EF BB BF)",
                "{",
                "  \"a\": 1",
                "}"
            ]
        );
    }

    /// The lines of `sent`, a body with no header fields, in `view`.
    fn shown(sent: &'static str, view: BodyView) -> Vec<String> {
        body_lines(&body(sent.as_bytes()), &Headers::default(), view)
    }

    #[test]
    fn json_is_shown_as_written_only_indented() {
        let sent = r#" {"id":123456789012345678901234567890, "price":1.10,"n":1e2,
            "a":1,"a":2, "s":"x\"}{,:", "e":{}, "l":[ ], "u":"é"} "#;
        assert_eq!(
            shown(sent, BodyView::Pretty),
            [
                "{",
                "  \"id\": 123456789012345678901234567890,",
                "  \"price\": 1.10,",
                "  \"n\": 1e2,",
                "  \"a\": 1,",
                "  \"a\": 2,",
                "  \"s\": \"x\\\"}{,:\",",
                "  \"e\": {},",
                "  \"l\": [],",
                "  \"u\": \"é\"",
                "}"
            ]
        );
    }

    #[test]
    fn escaped_letters_are_shown_as_letters_and_other_escapes_as_written() {
        let sent = r#"{"name":"\u00dcn\u00efc\u00f8d\u00e9 \u65e5\u672c \ud83c\udf89","kept":"\u0041\"\u0022\n\u2028 \u00a0\\u00e9 \u200b\u202e\u0301\uE000"}"#;
        assert_eq!(
            shown(sent, BodyView::Pretty),
            [
                "{",
                "  \"name\": \"Ünïcødé 日本 🎉\",",
                "  \"kept\": \"\\u0041\\\"\\u0022\\n\\u2028 \\u00a0\\\\u00e9 \\u200b\\u202e\\u0301\\uE000\"",
                "}"
            ]
        );
        // The text view shows the body as sent.
        assert_eq!(shown(sent, BodyView::Text), [sent]);
    }

    #[test]
    fn deeply_nested_json_is_indented_only_so_far() {
        let depth = 10_000;
        let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let shown = pretty_json(&nested);
        assert!(
            shown.len() < depth * 2 * (2 * MAX_INDENT_LEVELS + 2),
            "{}",
            shown.len()
        );
        let deepest = shown.lines().map(|l| l.len() - l.trim_start().len()).max();
        assert_eq!(deepest, Some(2 * MAX_INDENT_LEVELS));
    }

    #[test]
    fn binary_is_a_hex_dump_and_truncation_is_said() {
        let mut b = body(&[0u8, 1, 2, 0xff, b'A']);
        b.wire_size = 100;
        b.truncated = true;
        let lines = body_lines(&b, &Headers::default(), BodyView::Pretty);
        assert!(lines[0].contains("only the first 5 of 100 bytes"));
        assert_eq!(
            lines[1],
            format!("00000000  {:<47}  ...\u{2e}A", "00 01 02 ff 41")
        );
    }

    #[test]
    fn tabs_reach_the_next_stop_and_control_characters_are_written_out() {
        let lines = body_lines(
            &body(b"id\tname\tx\r\n1\tada\t\x1b[2J\n"),
            &Headers::default(),
            BodyView::Pretty,
        );
        assert_eq!(lines, ["id      name    x", "1       ada     \\u{1b}[2J"]);
    }

    #[test]
    fn text_cut_inside_a_character_is_still_text() {
        let mut cut = body("caf\u{e9}".as_bytes());
        cut.bytes = cut.bytes.slice(..4);
        cut.truncated = true;
        let lines = body_lines(&cut, &Headers::default(), BodyView::Pretty);
        assert_eq!(lines.last().unwrap(), "caf");
        cut.truncated = false;
        let lines = body_lines(&cut, &Headers::default(), BodyView::Pretty);
        assert!(
            lines[0].starts_with("00000000"),
            "not cut: binary {lines:?}"
        );
    }

    #[test]
    fn text_in_a_declared_charset_is_decoded_not_dumped() {
        let latin1 = |charset: &str| {
            let headers = Headers(vec![HeaderField {
                name: "content-type".into(),
                value: Bytes::from(format!("text/plain; charset={charset}")),
            }]);
            body_lines(&body(b"caf\xe9 cr\xe8me"), &headers, BodyView::Pretty)
        };
        assert_eq!(
            latin1("ISO-8859-1"),
            ["(decoded from windows-1252)", "café crème"]
        );
        assert_eq!(latin1("\"latin1\""), latin1("ISO-8859-1"));
        assert!(
            latin1("x-unknown")[0].starts_with("00000000"),
            "unknown: a dump"
        );
    }

    #[test]
    fn a_long_hex_dump_counts_the_lines_it_leaves_out() {
        let bytes = vec![0xffu8; 16 * (MAX_BODY_LINES + 5000) + 3];
        let lines = body_lines(
            &CapturedBody::whole(bytes),
            &Headers::default(),
            BodyView::Pretty,
        );
        assert_eq!(lines.len(), MAX_BODY_LINES + 1);
        assert_eq!(lines.last().unwrap(), "(5001 more lines not shown)");
    }

    #[test]
    fn text_and_hex_views_show_the_body_as_sent() {
        let sent = b"\xef\xbb\xbf{ \"error\" : \"X \" }";
        let shown = |view| body_lines(&body(sent), &Headers::default(), view);
        // JSON after a byte-order mark: the text view shows it as sent, the pretty one
        // says it is there.
        assert_eq!(shown(BodyView::Text), ["\u{feff}{ \"error\" : \"X \" }"]);
        assert!(shown(BodyView::Pretty)[0].contains("byte-order mark"));
        let json = br#"{ "error" : "X ","n":1.10 }"#;
        let shown = |view| body_lines(&body(json), &Headers::default(), view);
        assert_eq!(shown(BodyView::Text), [r#"{ "error" : "X ","n":1.10 }"#]);
        assert_eq!(shown(BodyView::Pretty).len(), 4, "indented");
        assert_eq!(
            body_lines(&body(sent), &Headers::default(), BodyView::Hex)[0],
            "00000000  ef bb bf 7b 20 22 65 72 72 6f 72 22 20 3a 20 22  ...{ \"error\" : \""
        );
        let latin1: Headers = [("content-type", "text/plain; charset=iso-8859-1")]
            .into_iter()
            .collect();
        let hex = body_lines(&body(b"caf\xe9"), &latin1, BodyView::Hex);
        assert_eq!(
            hex,
            ["00000000  63 61 66 e9                                      caf."]
        );
        assert_eq!(BodyView::Hex.next(), BodyView::Pretty);
    }

    #[test]
    fn gzip_is_decoded_first() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"{\"ok\":true}").unwrap();
        let data = gz.finish().unwrap();
        let b = CapturedBody {
            wire_size: data.len() as u64,
            bytes: Bytes::from(data),
            ..CapturedBody::default()
        };
        let headers = Headers(vec![HeaderField {
            name: "content-encoding".into(),
            value: Bytes::from_static(b"gzip"),
        }]);
        let lines = body_lines(&b, &headers, BodyView::Pretty);
        assert!(lines[0].starts_with("(gzip:"));
        assert_eq!(&lines[1..], ["{", "  \"ok\": true", "}"]);
        // The size on the wire is what came, not what is kept: a HAR's body encoded
        // again on import (its bodySize), or one cut at --max-body.
        let imported = CapturedBody { wire_size: 46, ..b };
        let lines = body_lines(&imported, &headers, BodyView::Pretty);
        assert_eq!(lines[0], "(gzip: 46 bytes on the wire, 11 decoded)");
    }
}
