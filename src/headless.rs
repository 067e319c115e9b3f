//! `--headless` output: one line, or one JSON object, per flow.

use std::io::Write;

use serde_json::{json, Value};

use crate::capture::{FlowViewer, StoredFlow};
use crate::filter::Filter;
use crate::flow::{utc_timestamp, FlowKind, Headers};

/// How each flow is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineFormat {
    /// A line for people: time, client, method, URL, status, size, duration, error.
    Text,
    /// One JSON object per line (`--jsonl`).
    JsonLines,
}

/// Formats a byte count as people read it (`512 B`, `1.5 KiB`, `3.2 MiB`).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut unit = 0;
    let mut scale: u128 = 1024;
    while u128::from(bytes) / scale >= 1024 && unit < UNITS.len() - 1 {
        scale *= 1024;
        unit += 1;
    }
    // Tenths in integers: formatting an f64 to one decimal took the slow exact path
    // (a measurable share of the recorder thread, which prints every flow).
    let tenths = (u128::from(bytes) * 10 + scale / 2) / scale;
    format!("{}.{} {}", tenths / 10, tenths % 10, UNITS[unit])
}

/// The one-line summary of a flow.
pub fn text_line(stored: &StoredFlow) -> String {
    let StoredFlow { flow, kinvey } = stored;
    let status = match (&flow.response, flow.kind) {
        (_, FlowKind::Tunnel) => "tunnel".to_owned(),
        (Some(r), _) if r.from_proxy => format!("{} (kinspect)", r.status),
        (Some(r), _) => r.status.to_string(),
        (None, _) => "---".to_owned(),
    };
    let size = flow.response.as_ref().map_or(0, |r| r.body.wire_size);
    let kinvey_error = match (kinvey.badge(), &kinvey.error) {
        (Some(badge), Some(name)) => format!(" {badge} {name}"),
        _ => String::new(),
    };
    let mut line = format!(
        "{} {} {} {} {}{kinvey_error} {} {}ms",
        utc_timestamp(flow.started_at),
        flow.client_addr,
        flow.request.method,
        flow.request.url,
        status,
        human_size(size),
        flow.duration().as_millis(),
    );
    for warning in &kinvey.warnings {
        line.push_str(&format!(" warning[{}]", warning.code));
    }
    if !kinvey.anomalies.is_empty() {
        let codes: Vec<&str> = kinvey.anomalies.iter().map(|a| a.code.as_str()).collect();
        line.push_str(&format!(" anomalies[{}]", codes.join(",")));
    }
    if let Some(error) = &flow.error {
        line.push_str(&format!(
            " error[{}]: {}",
            error.kind.as_str(),
            error.message
        ));
    }
    line
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
    d.map_or(json!(-1), |d| json!(d.as_secs_f64() * 1000.0))
}

/// The JSON object of a flow (`--jsonl`): everything but the bodies' bytes.
pub fn json_object(stored: &StoredFlow) -> Value {
    let StoredFlow { flow, kinvey } = stored;
    let response = flow.response.as_ref().map(|r| {
        json!({
            "status": r.status,
            "http_version": r.version.as_str(),
            "headers": headers_json(&r.headers),
            "body_size": r.body.wire_size,
            "body_truncated": r.body.truncated,
            "from_proxy": r.from_proxy,
        })
    });
    let t = &flow.timings;
    json!({
        "id": flow.id,
        "kind": flow.kind,
        "started_at": utc_timestamp(flow.started_at),
        "client": flow.client_addr.to_string(),
        "method": flow.request.method,
        "url": flow.request.url,
        "host": flow.host,
        "port": flow.port,
        "http_version": flow.request.version.as_str(),
        "request": {
            "headers": headers_json(&flow.request.headers),
            "body_size": flow.request.body.wire_size,
            "body_truncated": flow.request.body.truncated,
        },
        "response": response,
        "status": flow.status(),
        "duration_ms": flow.duration().as_secs_f64() * 1000.0,
        "timings": {
            "blocked": millis(t.blocked), "dns": millis(t.dns), "connect": millis(t.connect),
            "ssl": millis(t.ssl), "send": millis(Some(t.send)), "wait": millis(Some(t.wait)),
            "receive": millis(Some(t.receive)),
        },
        "server_ip": flow.server_ip.map(|ip| ip.to_string()),
        "client_tls": flow.client_tls,
        "server_tls": flow.server_tls,
        "error": flow.error,
        "kinvey": kinvey,
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

    /// Prints one flow. Once the output is closed (e.g. piped into `head`) it prints
    /// nothing more, and never fails: the proxy must not stop for its printer. Output
    /// may stay buffered until [`LinePrinter::flush`].
    pub fn print(&mut self, flow: &StoredFlow) {
        if self.closed {
            return;
        }
        let written = match self.format {
            LineFormat::Text => writeln!(self.out, "{}", text_line(flow)),
            LineFormat::JsonLines => serde_json::to_writer(&mut self.out, &json_object(flow))
                .map_err(std::io::Error::from)
                .and_then(|()| self.out.write_all(b"\n")),
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
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(100 * 1024 * 1024), "100.0 MiB");
    }

    #[test]
    fn sizes_round_to_the_nearest_tenth() {
        assert_eq!(human_size(1024), "1.0 KiB");
        assert_eq!(human_size(10 * 1024 + 51), "10.0 KiB");
        assert_eq!(human_size(10 * 1024 + 52), "10.1 KiB");
        assert_eq!(human_size(1024 * 1024 - 1), "1024.0 KiB");
        assert_eq!(human_size(1024 * 1024), "1.0 MiB");
        assert_eq!(human_size(1_288_490_189), "1.2 GiB");
        assert_eq!(human_size(u64::MAX), "16777216.0 TiB");
    }
}
