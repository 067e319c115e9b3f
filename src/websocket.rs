//! The messages of a WebSocket connection (RFC 6455), read from the bytes the proxy
//! relays each way: frames unmasked, fragments joined, `permessage-deflate` (RFC 7692)
//! undone. Pure: bytes in, messages out. Bytes it cannot read are relayed all the
//! same, and the log says where reading stopped.

use std::time::SystemTime;

use bytes::Bytes;
use flate2::{Decompress, FlushDecompress, Status};

/// Opcode of a text message.
pub const TEXT: u8 = 0x1;
/// Opcode of a binary message.
pub const BINARY: u8 = 0x2;
/// Opcode of a close frame.
pub const CLOSE: u8 = 0x8;
/// Opcode of a ping.
pub const PING: u8 = 0x9;
/// Opcode of a pong.
pub const PONG: u8 = 0xA;

/// Most messages one connection keeps; the rest are counted.
pub const MAX_MESSAGES: usize = 100_000;

/// One message (or control frame) of a WebSocket connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Sent by the client (else by the server).
    pub from_client: bool,
    /// When its first frame passed the proxy.
    pub at: SystemTime,
    /// [`TEXT`], [`BINARY`], [`CLOSE`], [`PING`] or [`PONG`].
    pub opcode: u8,
    /// The payload, decompressed, as far as it was kept.
    pub payload: Bytes,
    /// The whole payload's size, decompressed.
    pub size: u64,
}

impl Message {
    /// A whole text message, at the epoch (for tests).
    #[cfg(test)]
    pub(crate) fn text(from_client: bool, text: &str) -> Message {
        Message {
            from_client,
            at: std::time::UNIX_EPOCH,
            opcode: TEXT,
            payload: Bytes::copy_from_slice(text.as_bytes()),
            size: text.len() as u64,
        }
    }

    /// True when only the first part of the payload was kept.
    pub fn truncated(&self) -> bool {
        (self.payload.len() as u64) < self.size
    }

    /// The opcode's name.
    pub fn kind(&self) -> &'static str {
        opcode_name(self.opcode)
    }
}

/// An opcode's name: `text`, `binary`, `close`, `ping`, `pong` (else `other`).
pub fn opcode_name(opcode: u8) -> &'static str {
    match opcode {
        TEXT => "text",
        BINARY => "binary",
        CLOSE => "close",
        PING => "ping",
        PONG => "pong",
        _ => "other",
    }
}

/// The messages of one connection, both ways, in the order they were completed (a ping
/// between a message's fragments comes before it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageLog {
    /// The messages kept.
    pub messages: Vec<Message>,
    /// Messages not kept: past [`MAX_MESSAGES`].
    pub dropped: u64,
    /// Why reading stopped, if it did (the bytes were still relayed).
    pub unreadable: Option<String>,
}

/// What the handshake agreed on, from the `101` response's `Sec-WebSocket-Extensions`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Negotiated {
    /// `permessage-deflate`: messages with RSV1 set are compressed.
    pub deflate: bool,
}

impl Negotiated {
    /// From the `Sec-WebSocket-Extensions` values of the `101` response.
    pub fn from_extensions<'a>(values: impl IntoIterator<Item = &'a str>) -> Negotiated {
        let deflate = values.into_iter().flat_map(|v| v.split(',')).any(|offer| {
            offer
                .split(';')
                .next()
                .is_some_and(|name| name.trim().eq_ignore_ascii_case("permessage-deflate"))
        });
        Negotiated { deflate }
    }
}

/// Both directions of one connection, and the log they write.
#[derive(Debug)]
pub struct Connection {
    client: FrameReader,
    server: FrameReader,
    log: MessageLog,
    /// Payload bytes that may still be kept.
    budget: u64,
    /// Bytes relayed each way: from the client, from the server.
    relayed: (u64, u64),
    /// The connection has closed and its log was taken.
    closed: bool,
}

/// How far a connection has come: a viewer looks again only when it changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Messages seen (kept or not).
    pub messages: u64,
    /// Reading stopped.
    pub stopped: bool,
    /// Bytes relayed: from the client, from the server.
    pub relayed: (u64, u64),
}

/// A connection's messages counted, for listings (`ls`, `--headless`): the kept ones
/// each way with their payload sizes (whole, decompressed), and what was not kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct MessageCounts {
    /// Messages (and control frames) kept that the client sent.
    pub from_client: u64,
    /// Messages (and control frames) kept that the server sent.
    pub from_server: u64,
    /// Payload bytes of the client's kept messages.
    pub bytes_from_client: u64,
    /// Payload bytes of the server's kept messages.
    pub bytes_from_server: u64,
    /// Messages not kept: past [`MAX_MESSAGES`].
    pub dropped: u64,
    /// Why reading stopped, if it did.
    pub unreadable: Option<String>,
}

impl MessageLog {
    /// The messages counted.
    pub fn counts(&self) -> MessageCounts {
        let mut counts = MessageCounts {
            dropped: self.dropped,
            unreadable: self.unreadable.clone(),
            ..MessageCounts::default()
        };
        for message in &self.messages {
            let (n, bytes) = match message.from_client {
                true => (&mut counts.from_client, &mut counts.bytes_from_client),
                false => (&mut counts.from_server, &mut counts.bytes_from_server),
            };
            *n += 1;
            *bytes += message.size;
        }
        counts
    }

    /// How far a connection with this log has come, having relayed `relayed`.
    pub fn progress(&self, relayed: (u64, u64)) -> Progress {
        Progress {
            messages: self.messages.len() as u64 + self.dropped,
            stopped: self.unreadable.is_some(),
            relayed,
        }
    }
}

impl Connection {
    /// Reads a connection agreed as `negotiated`, keeping at most `max_bytes` of
    /// payloads in all.
    pub fn new(negotiated: Negotiated, max_bytes: u64) -> Connection {
        Connection {
            client: FrameReader::new(true, negotiated),
            server: FrameReader::new(false, negotiated),
            log: MessageLog::default(),
            budget: max_bytes,
            relayed: (0, 0),
            closed: false,
        }
    }

    /// Bytes the client sent, arriving at `now`.
    pub fn client_sent(&mut self, bytes: &[u8], now: SystemTime) {
        self.relayed.0 += bytes.len() as u64;
        let mut sink = Sink {
            log: &mut self.log,
            budget: &mut self.budget,
        };
        self.client.feed(bytes, now, &mut sink);
    }

    /// Bytes the server sent, arriving at `now`.
    pub fn server_sent(&mut self, bytes: &[u8], now: SystemTime) {
        self.relayed.1 += bytes.len() as u64;
        let mut sink = Sink {
            log: &mut self.log,
            budget: &mut self.budget,
        };
        self.server.feed(bytes, now, &mut sink);
    }

    /// The bytes relayed so far: from the client, from the server.
    pub fn relayed(&self) -> (u64, u64) {
        self.relayed
    }

    /// How far it has come; `None` once it has closed.
    pub fn progress(&self) -> Option<Progress> {
        (!self.closed).then(|| self.log.progress(self.relayed))
    }

    /// Both sides have sent their close frame (RFC 6455 §7.1.2): the connection closed
    /// cleanly, however its TCP or TLS connection ends after that.
    pub fn closed_cleanly(&self) -> bool {
        self.client.sent_close && self.server.sent_close
    }

    /// The log so far (a message still arriving is not in it).
    pub fn log(&self) -> &MessageLog {
        &self.log
    }

    /// The log, taken once the connection has closed: a message it closed in the middle
    /// of is not in it, and the log says so.
    pub fn take_log(&mut self) -> MessageLog {
        for reader in [&self.client, &self.server] {
            if let Some(cut) = reader.unfinished() {
                let mut sink = Sink {
                    log: &mut self.log,
                    budget: &mut self.budget,
                };
                sink.stop(reader.from_client, cut);
            }
        }
        self.closed = true;
        std::mem::take(&mut self.log)
    }
}

/// Where a reader puts the messages it finishes.
struct Sink<'a> {
    log: &'a mut MessageLog,
    budget: &'a mut u64,
}

impl Sink<'_> {
    fn push(&mut self, message: Message) {
        if self.log.messages.len() >= MAX_MESSAGES {
            self.log.dropped += 1;
            return;
        }
        self.log.messages.push(message);
    }

    fn stop(&mut self, from_client: bool, why: String) {
        if self.log.unreadable.is_none() {
            let side = if from_client { "client" } else { "server" };
            self.log.unreadable = Some(format!("the {side}'s frames: {why}"));
        }
    }
}

/// A frame being read: its header is whole, its payload still arriving.
#[derive(Debug)]
struct Frame {
    fin: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    /// Payload bytes read so far (where the mask continues).
    read: u64,
    len: u64,
}

/// A message (or control frame) whose payload is arriving.
#[derive(Debug)]
struct Partial {
    opcode: u8,
    compressed: bool,
    /// It will be kept: the connection has not reached [`MAX_MESSAGES`]. One that
    /// will not is only counted (and not inflated: its words are never shown).
    kept_at_all: bool,
    /// Its deflate stream ended (a final block): the rest of it is not inflated.
    stream_ended: bool,
    at: SystemTime,
    kept: Vec<u8>,
    size: u64,
}

/// Reads the frames one side sends.
#[derive(Debug)]
struct FrameReader {
    from_client: bool,
    negotiated: Negotiated,
    /// The header of the next frame, as far as it has arrived (at most 14 bytes).
    header: Vec<u8>,
    frame: Option<Frame>,
    /// The data message being read, across its fragments.
    message: Option<Partial>,
    /// The control frame being read (it may come between a message's fragments).
    control: Option<Partial>,
    inflater: Option<Decompress>,
    stopped: bool,
    /// A close frame came whole: this side has begun or answered the closing handshake.
    sent_close: bool,
}

/// What ends every compressed message, removed by its sender (RFC 7692 §7.2.1).
const DEFLATE_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

impl FrameReader {
    fn new(from_client: bool, negotiated: Negotiated) -> FrameReader {
        FrameReader {
            from_client,
            negotiated,
            header: Vec::with_capacity(14),
            frame: None,
            message: None,
            control: None,
            inflater: None,
            stopped: false,
            sent_close: false,
        }
    }

    /// What the connection closed in the middle of, if anything.
    fn unfinished(&self) -> Option<String> {
        if self.stopped {
            return None;
        }
        match (&self.frame, &self.message) {
            (_, Some(message)) => Some(format!(
                "the connection closed in the middle of a {} message ({} of it read)",
                opcode_name(message.opcode),
                crate::headless::HumanSize(message.size)
            )),
            (Some(frame), None) => Some(format!(
                "the connection closed in the middle of a {} frame",
                opcode_name(frame.opcode)
            )),
            (None, None) if !self.header.is_empty() => {
                Some("the connection closed in the middle of a frame header".into())
            }
            (None, None) => None,
        }
    }

    fn feed(&mut self, mut bytes: &[u8], now: SystemTime, sink: &mut Sink<'_>) {
        while !bytes.is_empty() && !self.stopped {
            if self.frame.is_none() {
                bytes = self.read_header(bytes, now, sink);
                continue;
            }
            let frame = self.frame.as_mut().expect("a frame");
            let take = usize::try_from(frame.len - frame.read)
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            let chunk = match frame.mask {
                Some(mask) => {
                    let offset = (frame.read % 4) as usize;
                    let unmasked = bytes[..take]
                        .iter()
                        .enumerate()
                        .map(|(i, byte)| byte ^ mask[(offset + i) % 4]);
                    std::borrow::Cow::Owned(unmasked.collect())
                }
                None => std::borrow::Cow::Borrowed(&bytes[..take]),
            };
            frame.read += take as u64;
            bytes = &bytes[take..];
            self.payload(&chunk, sink);
            if self.frame.as_ref().is_some_and(|f| f.read == f.len) {
                self.end_frame(sink);
            }
        }
    }

    /// Takes header bytes from `bytes`; once the header is whole, starts its frame.
    fn read_header<'b>(
        &mut self,
        bytes: &'b [u8],
        now: SystemTime,
        sink: &mut Sink<'_>,
    ) -> &'b [u8] {
        let needed = |header: &[u8]| -> usize {
            if header.len() < 2 {
                return 2;
            }
            let extended = match header[1] & 0x7f {
                126 => 2,
                127 => 8,
                _ => 0,
            };
            let mask = if header[1] & 0x80 != 0 { 4 } else { 0 };
            2 + extended + mask
        };
        let mut rest = bytes;
        while self.header.len() < needed(&self.header) && !rest.is_empty() {
            let take = (needed(&self.header) - self.header.len()).min(rest.len());
            self.header.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
        }
        if self.header.len() < needed(&self.header) {
            return rest;
        }
        let header = std::mem::take(&mut self.header);
        let (fin, rsv, opcode) = (header[0] & 0x80 != 0, header[0] & 0x70, header[0] & 0x0f);
        let short = u64::from(header[1] & 0x7f);
        let (len, at) = match short {
            126 => (u64::from(u16::from_be_bytes([header[2], header[3]])), 4),
            127 => (
                u64::from_be_bytes(header[2..10].try_into().expect("8 bytes")),
                10,
            ),
            _ => (short, 2),
        };
        let mask = (header[1] & 0x80 != 0)
            .then(|| [header[at], header[at + 1], header[at + 2], header[at + 3]]);
        let compressed = rsv == 0x40 && self.negotiated.deflate;
        let problem = match opcode {
            _ if rsv != 0 && !compressed => Some(format!(
                "reserved bits {rsv:#04x} set that no extension allows"
            )),
            0x3..=0x7 | 0xB..=0xF => Some(format!("opcode {opcode:#x} is reserved")),
            _ if len >> 63 != 0 => Some("a frame length has its top bit set".into()),
            0x8..=0xA if !fin || len > 125 => {
                Some("a control frame is fragmented or longer than 125 bytes".into())
            }
            0x8..=0xA if compressed => Some("a control frame is compressed".into()),
            0x0 if self.message.is_none() => {
                Some("a continuation frame continues no message".into())
            }
            0x0 if compressed => Some("a continuation frame sets the compression bit".into()),
            0x1 | 0x2 if self.message.is_some() => {
                Some("a new message began before the last one ended".into())
            }
            _ => None,
        };
        if let Some(problem) = problem {
            self.stopped = true;
            sink.stop(self.from_client, problem);
            return &[];
        }
        let kept_at_all = sink.log.messages.len() < MAX_MESSAGES;
        let partial = |opcode, compressed| Partial {
            opcode,
            compressed,
            kept_at_all,
            stream_ended: false,
            at: now,
            kept: Vec::new(),
            size: 0,
        };
        match opcode {
            0x8..=0xA => self.control = Some(partial(opcode, false)),
            0x1 | 0x2 => self.message = Some(partial(opcode, compressed)),
            _ => {}
        }
        self.frame = Some(Frame {
            fin,
            opcode,
            mask,
            read: 0,
            len,
        });
        if len == 0 {
            self.end_frame(sink);
        }
        rest
    }

    /// Unmasked payload bytes of the current frame.
    fn payload(&mut self, chunk: &[u8], sink: &mut Sink<'_>) {
        let is_control = self.frame.as_ref().is_some_and(|f| f.opcode >= 0x8);
        let partial = match is_control {
            true => self.control.as_mut(),
            false => self.message.as_mut(),
        };
        let Some(partial) = partial else {
            return;
        };
        if !partial.compressed {
            keep(partial, chunk, sink.budget);
            return;
        }
        let inflater = self.inflater.get_or_insert_with(|| Decompress::new(false));
        let flush = FlushDecompress::None;
        if let Err(e) = inflate(inflater, chunk, flush, partial, sink.budget) {
            self.cannot_inflate(e, sink);
        }
    }

    fn cannot_inflate(&mut self, error: flate2::DecompressError, sink: &mut Sink<'_>) {
        self.stopped = true;
        let why = format!("a compressed message cannot be inflated: {error}");
        sink.stop(self.from_client, why);
    }

    fn end_frame(&mut self, sink: &mut Sink<'_>) {
        let Some(frame) = self.frame.take() else {
            return;
        };
        if frame.opcode >= 0x8 {
            self.sent_close |= frame.opcode == CLOSE;
            if let Some(control) = self.control.take() {
                sink.push(finished(control, self.from_client));
            }
            return;
        }
        if !frame.fin {
            return;
        }
        let Some(mut message) = self.message.take() else {
            return;
        };
        if message.compressed && !message.stream_ended {
            let inflater = self.inflater.get_or_insert_with(|| Decompress::new(false));
            let flush = FlushDecompress::Sync;
            if let Err(e) = inflate(inflater, &DEFLATE_TAIL, flush, &mut message, sink.budget) {
                self.cannot_inflate(e, sink);
                return;
            }
        }
        sink.push(finished(message, self.from_client));
    }
}

fn finished(partial: Partial, from_client: bool) -> Message {
    Message {
        from_client,
        at: partial.at,
        opcode: partial.opcode,
        payload: Bytes::from(partial.kept),
        size: partial.size,
    }
}

/// Counts `bytes` into `partial`, keeping as many as `budget` (the connection's payload
/// bytes still to keep) allows, and charging it.
fn keep(partial: &mut Partial, bytes: &[u8], budget: &mut u64) {
    partial.size += bytes.len() as u64;
    if !partial.kept_at_all {
        return;
    }
    let take = usize::try_from(*budget)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    partial.kept.extend_from_slice(&bytes[..take]);
    *budget -= take as u64;
}

/// Inflates `input` into `partial`. A sender may end its deflate stream with a message
/// (a final block, RFC 7692 §7.2.3.3): the rest of that message is not inflated, and
/// its next message starts a new stream.
fn inflate(
    inflater: &mut Decompress,
    mut input: &[u8],
    flush: FlushDecompress,
    partial: &mut Partial,
    budget: &mut u64,
) -> Result<(), flate2::DecompressError> {
    if partial.stream_ended || !partial.kept_at_all {
        return Ok(());
    }
    let mut out = [0u8; 16 * 1024];
    loop {
        let (before_in, before_out) = (inflater.total_in(), inflater.total_out());
        let status = inflater.decompress(input, &mut out, flush)?;
        let consumed = (inflater.total_in() - before_in) as usize;
        let produced = (inflater.total_out() - before_out) as usize;
        keep(partial, &out[..produced], budget);
        input = &input[consumed..];
        if status == Status::StreamEnd {
            inflater.reset(false);
            partial.stream_ended = true;
            return Ok(());
        }
        // Done when all input is in and the output did not fill up (nothing waits).
        if (input.is_empty() && produced < out.len()) || (consumed == 0 && produced == 0) {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compress, Compression, FlushCompress};

    const T0: SystemTime = SystemTime::UNIX_EPOCH;

    /// One frame as a peer writes it.
    fn frame(fin: bool, rsv1: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut out = vec![(u8::from(fin) << 7) | (u8::from(rsv1) << 6) | opcode];
        let masked = u8::from(mask.is_some()) << 7;
        match payload.len() {
            n if n < 126 => out.push(masked | n as u8),
            n if n <= 0xffff => {
                out.push(masked | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(masked | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        match mask {
            Some(mask) => {
                out.extend_from_slice(&mask);
                out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
            }
            None => out.extend_from_slice(payload),
        }
        out
    }

    fn texts(log: &MessageLog) -> Vec<(bool, &'static str, String)> {
        log.messages
            .iter()
            .map(|m| {
                (
                    m.from_client,
                    m.kind(),
                    String::from_utf8_lossy(&m.payload).into_owned(),
                )
            })
            .collect()
    }

    const MASK: Option<[u8; 4]> = Some([0x37, 0xfa, 0x21, 0x3d]);

    #[test]
    fn masked_fragmented_messages_are_joined_whatever_the_reads() {
        let mut bytes = frame(false, false, TEXT, b"Hel", MASK);
        bytes.extend(frame(true, false, PING, b"are you there", MASK));
        bytes.extend(frame(true, false, 0x0, b"lo", MASK));
        bytes.extend(frame(true, false, BINARY, &[0u8; 300], MASK));
        // Byte by byte, and all at once: the same messages.
        for step in [1, bytes.len()] {
            let mut connection = Connection::new(Negotiated::default(), 1 << 20);
            for chunk in bytes.chunks(step) {
                connection.client_sent(chunk, T0);
            }
            let log = connection.take_log();
            assert_eq!(
                texts(&log)[..2],
                [
                    (true, "ping", "are you there".to_owned()),
                    (true, "text", "Hello".to_owned())
                ]
            );
            assert_eq!(
                (log.messages[2].kind(), log.messages[2].size),
                ("binary", 300)
            );
            assert_eq!(log.unreadable, None);
        }
    }

    #[test]
    fn a_connection_closed_cleanly_once_both_sides_sent_their_close_frame() {
        let mut connection = Connection::new(Negotiated::default(), 1000);
        let close = 1000u16.to_be_bytes();
        connection.server_sent(&frame(true, false, TEXT, b"bye soon", None), T0);
        assert!(!connection.closed_cleanly());
        connection.server_sent(&frame(true, false, CLOSE, &close, None), T0);
        assert!(!connection.closed_cleanly(), "only the server has closed");
        let answer = frame(true, false, CLOSE, &close, Some([1, 2, 3, 4]));
        connection.client_sent(&answer[..3], T0);
        assert!(
            !connection.closed_cleanly(),
            "its close frame is not whole yet"
        );
        connection.client_sent(&answer[3..], T0);
        assert!(connection.closed_cleanly());
    }

    #[test]
    fn long_payloads_use_the_extended_lengths_and_the_budget_cuts_them() {
        let big = vec![b'x'; 70_000];
        let mut connection = Connection::new(Negotiated::default(), 1000);
        connection.server_sent(&frame(true, false, TEXT, &big, None), T0);
        connection.server_sent(&frame(true, false, TEXT, &big[..200], None), T0);
        let mut close = 1000u16.to_be_bytes().to_vec();
        close.extend_from_slice(b"bye");
        connection.server_sent(&frame(true, false, CLOSE, &close, None), T0);
        let log = connection.take_log();
        let sizes: Vec<(u64, usize)> = log
            .messages
            .iter()
            .map(|m| (m.size, m.payload.len()))
            .collect();
        assert_eq!(sizes, [(70_000, 1000), (200, 0), (5, 0)]);
        assert!(log.messages[0].truncated() && !log.messages[0].from_client);
    }

    /// `messages` compressed as one permessage-deflate sender does, context kept.
    fn deflated(messages: &[&str]) -> Vec<Vec<u8>> {
        let mut compress = Compress::new(Compression::default(), false);
        messages
            .iter()
            .map(|text| {
                let mut out = Vec::with_capacity(text.len() + 64);
                compress
                    .compress_vec(text.as_bytes(), &mut out, FlushCompress::Sync)
                    .unwrap();
                assert!(out.ends_with(&DEFLATE_TAIL));
                out.truncate(out.len() - 4);
                out
            })
            .collect()
    }

    #[test]
    fn permessage_deflate_is_undone_with_the_context_kept_between_messages() {
        let negotiated =
            Negotiated::from_extensions(["permessage-deflate; client_max_window_bits=15, x-other"]);
        assert!(negotiated.deflate);
        let text = r#"{"channel":"books","event":"update","id":"5f1e2d3c"}"#;
        let compressed = deflated(&[text, text]);
        assert!(
            compressed[1].len() < compressed[0].len(),
            "the second refers to the first"
        );
        let mut connection = Connection::new(negotiated, 1 << 20);
        // The first split over two frames, the second in one.
        let (a, b) = compressed[0].split_at(5);
        connection.server_sent(&frame(false, true, TEXT, a, None), T0);
        connection.server_sent(&frame(true, false, 0x0, b, None), T0);
        connection.server_sent(&frame(true, true, TEXT, &compressed[1], None), T0);
        // An uncompressed message on the same connection (RSV1 clear).
        connection.server_sent(&frame(true, false, TEXT, b"plain", None), T0);
        let log = connection.take_log();
        assert_eq!(
            texts(&log),
            [
                (false, "text", text.to_owned()),
                (false, "text", text.to_owned()),
                (false, "text", "plain".to_owned())
            ]
        );
        assert_eq!(log.unreadable, None);
    }

    #[test]
    fn a_sender_that_ends_its_deflate_stream_with_each_message_is_read_whole() {
        let negotiated = Negotiated { deflate: true };
        let mut connection = Connection::new(negotiated, 1 << 20);
        for text in ["first", "second", "third"] {
            let mut compress = Compress::new(Compression::default(), false);
            let mut out = Vec::with_capacity(64);
            compress
                .compress_vec(text.as_bytes(), &mut out, FlushCompress::Finish)
                .unwrap();
            connection.server_sent(&frame(true, true, TEXT, &out, None), T0);
        }
        let log = connection.take_log();
        let texts: Vec<String> = texts(&log).into_iter().map(|(_, _, t)| t).collect();
        assert_eq!(texts, ["first", "second", "third"]);
        assert_eq!(log.unreadable, None);
    }

    #[test]
    fn the_budget_counts_messages_still_arriving_both_ways() {
        let mut connection = Connection::new(Negotiated::default(), 1000);
        let server = frame(true, false, TEXT, &[b's'; 900], None);
        connection.server_sent(&server[..504], T0);
        connection.client_sent(&frame(true, false, TEXT, &[b'c'; 900], MASK), T0);
        connection.server_sent(&server[504..], T0);
        let log = connection.take_log();
        let kept: usize = log.messages.iter().map(|m| m.payload.len()).sum();
        assert_eq!(kept, 1000);
        assert_eq!(log.messages.iter().map(|m| m.size).sum::<u64>(), 1800);
    }

    #[test]
    fn a_connection_closed_in_the_middle_of_a_message_says_so() {
        let mut connection = Connection::new(Negotiated::default(), 1 << 20);
        connection.client_sent(&frame(true, false, TEXT, b"whole", MASK), T0);
        let cut = frame(true, false, BINARY, &[7u8; 100], MASK);
        connection.client_sent(&cut[..60], T0);
        let log = connection.take_log();
        assert_eq!(texts(&log), [(true, "text", "whole".to_owned())]);
        assert_eq!(
            log.unreadable.as_deref(),
            Some("the client's frames: the connection closed in the middle of a binary message (54 B of it read)")
        );
    }

    #[test]
    fn a_ping_between_compressed_fragments_and_the_message_cap() {
        let mut connection = Connection::new(Negotiated { deflate: true }, 1 << 20);
        let compressed = deflated(&["split by a ping"]).remove(0);
        let (a, b) = compressed.split_at(4);
        connection.server_sent(&frame(false, true, TEXT, a, None), T0);
        connection.server_sent(&frame(true, false, PING, b"?", None), T0);
        connection.server_sent(&frame(true, false, 0x0, b, None), T0);
        let log = connection.take_log();
        assert_eq!(
            texts(&log),
            [
                (false, "ping", "?".to_owned()),
                (false, "text", "split by a ping".to_owned())
            ]
        );
        // Past the cap, messages are counted, not kept.
        let mut connection = Connection::new(Negotiated::default(), 1 << 20);
        let one = frame(true, false, TEXT, b"x", None);
        let many: Vec<u8> = one
            .iter()
            .copied()
            .cycle()
            .take(one.len() * (MAX_MESSAGES + 3))
            .collect();
        connection.server_sent(&many, T0);
        let log = connection.take_log();
        assert_eq!((log.messages.len(), log.dropped), (MAX_MESSAGES, 3));
    }

    #[test]
    fn bad_deflate_data_a_huge_length_and_a_cut_header_are_said() {
        let said = |negotiated, bytes: &[u8]| {
            let mut connection = Connection::new(negotiated, 1 << 20);
            connection.server_sent(bytes, T0);
            connection.take_log().unreadable.unwrap_or_default()
        };
        let deflate = Negotiated { deflate: true };
        let bad = frame(true, true, TEXT, &[0xff, 0xff, 0xff], None);
        assert!(said(deflate, &bad).contains("cannot be inflated"));
        let mut huge = vec![0x82, 127];
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        assert!(said(Negotiated::default(), &huge).contains("top bit set"));
        assert!(said(Negotiated::default(), &[0x81, 126, 1]).contains("middle of a frame header"));
    }

    #[test]
    fn frames_that_break_the_protocol_stop_the_reading_not_the_log() {
        let mut connection = Connection::new(Negotiated::default(), 1 << 20);
        connection.client_sent(&frame(true, false, TEXT, b"first", MASK), T0);
        connection.client_sent(&frame(true, false, 0x3, b"?", MASK), T0);
        connection.client_sent(&frame(true, false, TEXT, b"after", MASK), T0);
        let log = connection.take_log();
        assert_eq!(texts(&log), [(true, "text", "first".to_owned())]);
        assert_eq!(
            log.unreadable.as_deref(),
            Some("the client's frames: opcode 0x3 is reserved")
        );
        // Compressed without permessage-deflate agreed.
        let mut connection = Connection::new(Negotiated::default(), 1 << 20);
        connection.server_sent(&frame(true, true, TEXT, b"zz", None), T0);
        let said = connection.take_log().unreadable.unwrap();
        assert!(said.contains("reserved bits 0x40"), "{said}");
        let mut connection = Connection::new(Negotiated::default(), 1 << 20);
        connection.server_sent(&frame(true, false, 0x0, b"x", None), T0);
        let said = connection.take_log().unreadable.unwrap();
        assert!(said.contains("continues no message"), "{said}");
    }
}
