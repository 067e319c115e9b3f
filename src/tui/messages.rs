//! A WebSocket's messages as the detail shows them: one line each, who sent it, when,
//! its kind, size and payload.

use super::body::BodyView;
use crate::flow::printable_line;
use crate::headless::HumanSize;
use crate::websocket::{Message, MessageLog, CLOSE, TEXT};

/// Payload bytes a binary message shows in hex.
const HEX_SHOWN: usize = 32;

/// Characters of a text payload shown on its line.
const TEXT_SHOWN: usize = 2000;

/// The lines of `log`: a heading with the counts, then a line per message (`→` from the
/// client, `←` from the server). In [`BodyView::Hex`] every payload is shown in hex.
pub fn message_lines(log: &MessageLog, view: BodyView) -> Vec<String> {
    let counts = log.counts();
    let mut lines = vec![format!(
        "WebSocket messages: {} ({} from the client, {} from the server)",
        log.messages.len(),
        counts.from_client,
        counts.from_server
    )];
    if log.dropped > 0 {
        lines.push(format!(
            "({} more messages were not kept: past {} per connection)",
            log.dropped,
            crate::websocket::MAX_MESSAGES
        ));
    }
    if let Some(why) = &log.unreadable {
        lines.push(format!(
            "(reading stopped: {}; every byte was still relayed)",
            printable_line(why)
        ));
    }
    lines.extend(log.messages.iter().map(|m| message_line(m, view)));
    lines
}

fn message_line(message: &Message, view: BodyView) -> String {
    let at = super::view::clock(message.at);
    let arrow = if message.from_client { '→' } else { '←' };
    let cut = if message.truncated() {
        format!(" (first {} kept)", HumanSize(message.payload.len() as u64))
    } else {
        String::new()
    };
    format!(
        "{arrow} {at}  {:<6} {:>9}  {}{cut}",
        message.kind(),
        HumanSize(message.size).to_string(),
        payload_text(message, view)
    )
}

/// A payload on one line: text as text, a close as its code and reason, anything else
/// (and everything in the hex view) as hex.
fn payload_text(message: &Message, view: BodyView) -> String {
    let payload = &message.payload[..];
    match message.opcode {
        TEXT if view != BodyView::Hex => {}
        CLOSE if view != BodyView::Hex && payload.len() >= 2 => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            let reason = String::from_utf8_lossy(&payload[2..]);
            return format!("{code} {}", printable_line(&reason))
                .trim_end()
                .to_owned();
        }
        // Binary, pings' and pongs' bytes, a close without a code.
        _ => return hex(payload),
    }
    // A payload cut inside a character is still text.
    match crate::flow::utf8_text(payload, message.truncated()) {
        Some(text) => {
            let (shown, more) = match text.char_indices().nth(TEXT_SHOWN) {
                Some((cut, _)) => (&text[..cut], "…"),
                None => (text, ""),
            };
            format!("{}{more}", printable_line(shown))
        }
        None => hex(payload),
    }
}

fn hex(bytes: &[u8]) -> String {
    let shown: Vec<String> = bytes
        .iter()
        .take(HEX_SHOWN)
        .map(|b| format!("{b:02x}"))
        .collect();
    let more = if bytes.len() > HEX_SHOWN { " …" } else { "" };
    format!("{}{more}", shown.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::websocket::{BINARY, PING};
    use bytes::Bytes;
    use std::time::{Duration, UNIX_EPOCH};

    fn message(from_client: bool, opcode: u8, payload: &[u8], size: u64) -> Message {
        Message {
            from_client,
            at: UNIX_EPOCH + Duration::from_millis(3_723_456),
            opcode,
            payload: Bytes::copy_from_slice(payload),
            size,
        }
    }

    #[test]
    fn each_message_is_a_line_with_who_when_what_and_its_payload() {
        let log = MessageLog {
            messages: vec![
                message(true, TEXT, b"{\"subscribe\":\"books\"}\n", 22),
                message(false, TEXT, b"{\"cut", 70_000),
                message(false, BINARY, &[0, 0xff, 7], 3),
                message(true, PING, b"o\x10", 2),
                message(false, CLOSE, b"\x03\xe8bye", 5),
            ],
            dropped: 2,
            unreadable: Some("the server's frames: opcode 0x3 is reserved".into()),
        };
        let lines = message_lines(&log, BodyView::Pretty);
        assert_eq!(
            lines,
            [
                "WebSocket messages: 5 (2 from the client, 3 from the server)",
                "(2 more messages were not kept: past 100000 per connection)",
                "(reading stopped: the server's frames: opcode 0x3 is reserved; every byte was still relayed)",
                "→ 01:02:03.456  text        22 B  {\"subscribe\":\"books\"}\\u{a}",
                "← 01:02:03.456  text    68.4 KiB  {\"cut (first 5 B kept)",
                "← 01:02:03.456  binary       3 B  00 ff 07",
                "→ 01:02:03.456  ping         2 B  6f 10",
                "← 01:02:03.456  close        5 B  1000 bye",
            ]
        );
        let hex = message_lines(&log, BodyView::Hex);
        assert!(
            hex[3].ends_with("7b 22 73 75 62 73 63 72 69 62 65 22 3a 22 62 6f 6f 6b 73 22 7d 0a"),
            "{}",
            hex[3]
        );
    }
}
