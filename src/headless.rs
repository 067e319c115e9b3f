//! `--headless` output: one line, or one JSON object, per flow.

use std::io::Write;

use serde_json::{json, Value};

use crate::capture::{FlowViewer, StoredFlow};
use crate::filter::Filter;
use crate::flow::{utc_timestamp, write_utc_timestamp, FlowKind, Headers, ShownClient};
use crate::kinvey::KinveySummary;
use crate::websocket::{MessageCounts, MessageLog};

/// How each flow is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineFormat {
    /// A line for people: time, client, method, URL, status, size, duration, error.
    Text,
    /// One JSON object per line (`--jsonl`).
    JsonLines,
}

/// `n` with its noun, `one` or `many`: `1 flow`, `2 flows`.
pub fn counted(n: u64, one: &str, many: &str) -> String {
    match n {
        1 => format!("1 {one}"),
        n => format!("{n} {many}"),
    }
}

/// A byte count as people read it (`512 B`, `1.5 KiB`, `3.2 MiB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanSize(pub u64);

impl std::fmt::Display for HumanSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
        let bytes = self.0;
        if bytes < 1024 {
            return write!(f, "{bytes} B");
        }
        let mut unit = 0;
        let mut scale: u128 = 1024;
        let bytes = u128::from(bytes);
        // At most three digits: `999 KiB`, then `1.0 MiB`.
        while (bytes + scale / 2) / scale >= 1000 && unit < UNITS.len() - 1 {
            scale *= 1024;
            unit += 1;
        }
        // Tenths in integers: formatting an f64 to one decimal took the slow exact path
        // (a measurable share of the recorder thread, which prints every flow).
        let tenths = (bytes * 10 + scale / 2) / scale;
        match tenths {
            0..1000 => write!(f, "{}.{} {}", tenths / 10, tenths % 10, UNITS[unit]),
            _ => write!(f, "{} {}", (bytes + scale / 2) / scale, UNITS[unit]),
        }
    }
}

/// Writes the one-line summary of a flow (without a newline) straight into `out`: it
/// runs on the recorder thread for every flow, so it builds no strings of its own.
/// `websocket` counts its WebSocket messages, if it switched to one.
pub fn write_text_line(
    out: &mut impl Write,
    stored: &StoredFlow,
    websocket: Option<&MessageCounts>,
) -> std::io::Result<()> {
    let StoredFlow { flow, kinvey } = stored;
    // The id first, as the UI's list shows it: warnings and replays name flows by it.
    write!(out, "{} ", flow.id)?;
    write_utc_timestamp(out, flow.started_at)?;
    write!(
        out,
        " {} {} {} ",
        ShownClient(flow.client_known()),
        flow.request.method,
        flow.request.url
    )?;
    match (&flow.response, flow.kind) {
        (_, FlowKind::Tunnel) => out.write_all(b"tunnel")?,
        (Some(r), _) if r.from_proxy => write!(out, "{} (kinspect)", r.status)?,
        (Some(r), _) => write!(out, "{}", r.status)?,
        (None, _) => out.write_all(b"---")?,
    }
    if let (Some(badge), Some(name)) = (kinvey.badge(), &kinvey.error) {
        write!(out, " {badge} {name}")?;
    }
    let size = flow.response.as_ref().map_or(0, |r| r.body.wire_size);
    write!(
        out,
        " {} {}ms",
        HumanSize(size),
        flow.duration().as_millis()
    )?;
    for warning in &kinvey.warnings {
        write!(out, " warning[{}]", warning.code)?;
    }
    for (i, anomaly) in kinvey.anomalies.iter().enumerate() {
        let before = if i == 0 { " anomalies[" } else { "," };
        write!(out, "{before}{}", anomaly.code)?;
    }
    if !kinvey.anomalies.is_empty() {
        out.write_all(b"]")?;
    }
    if let Some(original) = flow.replay_of {
        write!(out, " replay_of[{original}]")?;
    }
    if let Some(counts) = websocket {
        write!(
            out,
            " messages[{} from client, {} from server",
            counts.from_client, counts.from_server
        )?;
        if counts.dropped > 0 {
            write!(out, ", {} not kept", counts.dropped)?;
        }
        if counts.unreadable.is_some() {
            out.write_all(b", unreadable")?;
        }
        out.write_all(b"]")?;
    }
    if let Some(error) = &flow.error {
        write!(out, " error[{}]: {}", error.kind.as_str(), error.message)?;
    }
    Ok(())
}

fn headers_json(headers: &Headers) -> Value {
    Value::Array(
        headers
            .iter()
            .map(|h| json!({"name": h.name, "value": h.value_lossy()}))
            .collect(),
    )
}

fn millis(d: Option<std::time::Duration>) -> Value {
    d.map_or(json!(-1), |d| json!(crate::flow::milliseconds(d)))
}

/// The Kinvey summary as JSON, `known` null when there is no error to know.
fn kinvey_json(kinvey: &KinveySummary) -> Value {
    let mut summary = json!(kinvey);
    summary["known"] = json!(kinvey.known_error());
    summary
}

/// The JSON object of a flow (`--jsonl`): everything but the bodies' bytes, with
/// `websocket`, the counts of its WebSocket messages if it switched to one.
pub fn json_object(stored: &StoredFlow, websocket: Option<&MessageCounts>) -> Value {
    let StoredFlow { flow, kinvey } = stored;
    let response = flow.response.as_ref().map(|r| {
        json!({
            "status": r.status,
            "http_version": r.version.as_str(),
            "headers": headers_json(&r.headers),
            "body_size": r.body.wire_size,
            "body_truncated": r.body.truncated,
            "body_incomplete": r.body.incomplete,
            "from_proxy": r.from_proxy,
        })
    });
    let t = &flow.timings;
    json!({
        "id": flow.id,
        "kind": flow.kind,
        "started_at": utc_timestamp(flow.started_at),
        "client": flow.client_known().map(|addr| addr.to_string()),
        "method": flow.request.method,
        "url": flow.request.url,
        "host": flow.host,
        "port": flow.port,
        "http_version": flow.request.version.as_str(),
        "request": {
            "headers": headers_json(&flow.request.headers),
            "body_size": flow.request.body.wire_size,
            "body_truncated": flow.request.body.truncated,
            "body_incomplete": flow.request.body.incomplete,
        },
        "response": response,
        "status": flow.status(),
        "duration_ms": crate::flow::milliseconds(flow.duration()),
        "timings": {
            "blocked": millis(t.blocked), "dns": millis(t.dns), "connect": millis(t.connect),
            "ssl": millis(t.ssl), "send": millis(Some(t.send)), "wait": millis(Some(t.wait)),
            "receive": millis(Some(t.receive)),
        },
        "server_ip": flow.server_ip.map(|ip| ip.to_string()),
        "client_tls": flow.client_tls,
        "server_tls": flow.server_tls,
        "error": flow.error,
        "replay_of": flow.replay_of,
        "websocket": websocket,
        "kinvey": kinvey_json(kinvey),
    })
}

/// Prints flows on a stream (stdout), one line or JSON object each.
pub struct LinePrinter<W: Write> {
    out: W,
    format: LineFormat,
    closed: bool,
}

impl<W: Write> LinePrinter<W> {
    /// A printer writing `format` lines to `out`.
    pub fn new(out: W, format: LineFormat) -> Self {
        LinePrinter {
            out,
            format,
            closed: false,
        }
    }

    /// Prints one flow, its WebSocket messages counted from its log if it has one. Once
    /// the output is closed (e.g. piped into `head`) it prints nothing more, and never
    /// fails: the proxy must not stop for its printer. Output may stay buffered until
    /// [`LinePrinter::flush`].
    pub fn print(&mut self, flow: &StoredFlow) {
        let counts = flow.flow.websocket.as_deref().map(MessageLog::counts);
        self.print_counted(flow, counts.as_ref());
    }

    /// [`LinePrinter::print`] with its WebSocket messages counted already (a listing
    /// that does not load them).
    pub fn print_counted(&mut self, flow: &StoredFlow, websocket: Option<&MessageCounts>) {
        if self.closed {
            return;
        }
        let written = match self.format {
            LineFormat::Text => write_text_line(&mut self.out, flow, websocket)
                .and_then(|()| self.out.write_all(b"\n")),
            LineFormat::JsonLines => {
                serde_json::to_writer(&mut self.out, &json_object(flow, websocket))
                    .map_err(std::io::Error::from)
                    .and_then(|()| self.out.write_all(b"\n"))
            }
        };
        if written.is_err() {
            self.closed = true;
        }
    }

    /// Writes out what is buffered.
    pub fn flush(&mut self) {
        if !self.closed && self.out.flush().is_err() {
            self.closed = true;
        }
    }
}

/// `--headless`: each stored flow that passes the filter printed on stdout, one write
/// per recorder batch.
pub struct HeadlessViewer {
    printer: LinePrinter<std::io::BufWriter<std::io::Stdout>>,
    filter: Option<Filter>,
}

impl HeadlessViewer {
    /// Prints flows matching `filter` (all without one) in `format` on stdout.
    pub fn new(format: LineFormat, filter: Option<Filter>) -> Self {
        HeadlessViewer {
            printer: LinePrinter::new(
                std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout()),
                format,
            ),
            filter,
        }
    }
}

impl FlowViewer for HeadlessViewer {
    fn show(&mut self, flow: StoredFlow) {
        if self.filter.as_ref().is_none_or(|f| f.matches(&flow)) {
            self.printer.print(&flow);
        }
    }

    fn batch_shown(&mut self) {
        self.printer.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(HumanSize(0).to_string(), "0 B");
        assert_eq!(HumanSize(1023).to_string(), "1023 B");
        assert_eq!(HumanSize(1536).to_string(), "1.5 KiB");
        assert_eq!(HumanSize(100 * 1024 * 1024).to_string(), "100 MiB");
    }

    #[test]
    fn a_text_line_carries_the_kinvey_verdict_findings_replay_and_error() {
        use crate::flow::{CapturedBody, Flow, FlowError, FlowErrorKind};
        use crate::kinvey::{ErrorClass, Finding, KinveySummary};
        let finding = |code: &str| Finding {
            code: code.into(),
            message: String::new(),
        };
        let client = "127.0.0.1:40000".parse().unwrap();
        let url = "https://baas.kinvey.com/appdata/kid_x/books";
        let mut flow = Flow::exchange(7, client, "GET", url, Some(500));
        if let Some(response) = flow.response.as_mut() {
            response.body = CapturedBody::whole(vec![b'x'; 1536]);
        }
        flow.error = Some(FlowError {
            kind: FlowErrorKind::Protocol,
            message: "reset".into(),
        });
        flow.replay_of = Some(3);
        let stored = StoredFlow {
            flow,
            kinvey: KinveySummary {
                error: Some("KinveyInternalErrorRetry".into()),
                class: Some(ErrorClass::Retry),
                known: true,
                anomalies: vec![finding("missing_api_version"), finding("wrapped_body")],
                warnings: vec![finding("retry_storm")],
                ..KinveySummary::default()
            },
        };
        let mut line = Vec::new();
        write_text_line(&mut line, &stored, None).unwrap();
        assert_eq!(
            String::from_utf8(line).unwrap(),
            format!(
                "7 1970-01-01T00:00:00.000Z 127.0.0.1:40000 GET {url} 500 RETRY \
                 KinveyInternalErrorRetry 1.5 KiB 0ms warning[retry_storm] \
                 anomalies[missing_api_version,wrapped_body] replay_of[3] error[protocol]: reset"
            )
        );
        assert_eq!(json_object(&stored, None)["replay_of"], 3);
    }

    #[test]
    fn a_websocket_flow_says_how_many_messages_went_each_way() {
        use crate::flow::Flow;
        use crate::websocket::{Message, MessageLog};
        let client = "127.0.0.1:40000".parse().unwrap();
        let mut flow = Flow::exchange(9, client, "GET", "http://127.0.0.1:1/ws", Some(101));
        let message = Message::text;
        flow.websocket = Some(Box::new(MessageLog {
            messages: vec![
                message(true, "hi"),
                message(false, "hello"),
                message(false, "!"),
            ],
            dropped: 4,
            unreadable: Some("a frame from the server is masked".into()),
        }));
        let stored = StoredFlow {
            flow,
            kinvey: Default::default(),
        };
        let mut line = Vec::new();
        let counts = stored.flow.websocket.as_deref().map(MessageLog::counts);
        write_text_line(&mut line, &stored, counts.as_ref()).unwrap();
        let line = String::from_utf8(line).unwrap();
        assert!(
            line.ends_with(" messages[1 from client, 2 from server, 4 not kept, unreadable]"),
            "{line}"
        );
        assert_eq!(
            json_object(&stored, counts.as_ref())["websocket"],
            serde_json::json!({
                "from_client": 1, "from_server": 2, "bytes_from_client": 2,
                "bytes_from_server": 6, "dropped": 4,
                "unreadable": "a frame from the server is masked",
            })
        );
        assert_eq!(
            json_object(&stored, None)["websocket"],
            serde_json::Value::Null
        );
    }

    #[test]
    fn sizes_round_to_the_nearest_tenth() {
        assert_eq!(HumanSize(1024).to_string(), "1.0 KiB");
        assert_eq!(HumanSize(10 * 1024 + 51).to_string(), "10.0 KiB");
        assert_eq!(HumanSize(10 * 1024 + 52).to_string(), "10.1 KiB");
        assert_eq!(HumanSize(1024 * 99 + 972).to_string(), "99.9 KiB");
        assert_eq!(HumanSize(1024 * 99 + 973).to_string(), "100 KiB");
        assert_eq!(HumanSize(1024 * 999 + 511).to_string(), "999 KiB");
        assert_eq!(HumanSize(1024 * 999 + 512).to_string(), "1.0 MiB");
        assert_eq!(HumanSize(1024 * 1024 - 1).to_string(), "1.0 MiB");
        assert_eq!(HumanSize(1024 * 1024).to_string(), "1.0 MiB");
        assert_eq!(HumanSize(1_288_490_189).to_string(), "1.2 GiB");
        assert_eq!(HumanSize(u64::MAX).to_string(), "16777216 TiB");
    }
}
