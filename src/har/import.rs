//! Reading HARs written by Chrome, Firefox, mitmproxy, Charles and kinspect, tolerating
//! their known quirks: no pages, -1 timings, base64 bodies, HTTP/2 pseudo-headers,
//! `HTTP/2.0`, `http/2.0` or `h2` versions, missing optional fields.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use base64::Engine;
use bytes::Bytes;
use serde_json::{Map, Value};

use crate::capture::{CaptureWriter, StoredFlow};
use crate::flow::{
    unbracketed, CapturedBody, Flow, FlowError, FlowErrorKind, FlowId, FlowKind, HeaderField,
    Headers, HttpVersion, RequestRecord, ResponseRecord, Timings,
};
use crate::kinvey::{self, BehaviourTracker, KinveySummary};
use crate::proxy::{port_number, split_port};

/// Why a HAR could not be read. Every variant names the file, and entry errors the
/// entry index and field.
#[derive(Debug, thiserror::Error)]
pub enum HarError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not JSON.
    #[error("{path} is not a HAR file: not valid JSON ({source})")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        source: serde_json::Error,
    },
    /// A field of the HAR is missing or has the wrong type.
    #[error("{path}: {field}: {problem}")]
    Field {
        /// The file.
        path: PathBuf,
        /// The field, as a JSON path (`log.entries[3].request.url`).
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The imported flows could not be stored.
    #[error(transparent)]
    Capture(#[from] crate::capture::CaptureError),
}

struct Reader<'a> {
    path: &'a Path,
}

impl Reader<'_> {
    fn error(&self, field: String, problem: impl Into<String>) -> HarError {
        HarError::Field {
            path: self.path.to_owned(),
            field,
            problem: problem.into(),
        }
    }

    fn object<'v>(
        &self,
        value: &'v Value,
        field: &str,
    ) -> Result<&'v Map<String, Value>, HarError> {
        value.as_object().ok_or_else(|| {
            self.error(
                field.into(),
                format!("expected an object, found {}", kind(value)),
            )
        })
    }

    fn string<'v>(
        &self,
        object: &'v Map<String, Value>,
        at: &str,
        key: &str,
    ) -> Result<&'v str, HarError> {
        match object.get(key) {
            Some(Value::String(s)) => Ok(s),
            Some(other) => Err(self.error(
                format!("{at}.{key}"),
                format!("expected a string, found {}", kind(other)),
            )),
            None => Err(self.error(format!("{at}.{key}"), "missing")),
        }
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The entries of the HAR in `bytes`, each as the raw JSON it is in the file.
fn raw_entries<'b>(
    r: &Reader<'_>,
    bytes: &'b [u8],
) -> Result<Vec<&'b serde_json::value::RawValue>, HarError> {
    type RawObject<'b> = std::collections::HashMap<String, &'b serde_json::value::RawValue>;
    let json_error = |source| HarError::Json {
        path: r.path.to_owned(),
        source,
    };
    // What a raw value is, as errors name it (read again whole: it is not what it must be).
    let kind_of = |raw: &serde_json::value::RawValue| {
        serde_json::from_str::<Value>(raw.get()).map_or("not JSON", |value| kind(&value))
    };
    let top: RawObject<'b> = match serde_json::from_slice(bytes) {
        Ok(top) => top,
        Err(e) => {
            // No object at the top: said as what it is, if it is JSON at all.
            let top: Value = serde_json::from_slice(bytes).map_err(json_error)?;
            return Err(match top.is_object() {
                true => json_error(e),
                false => r.error(
                    "the top level".into(),
                    format!("expected an object, found {}", kind(&top)),
                ),
            });
        }
    };
    let Some(log) = top.get("log") else {
        return Err(r.error(
            "the top level".into(),
            "no \"log\" object: this JSON is not a HAR",
        ));
    };
    let log: RawObject<'b> = serde_json::from_str(log.get()).map_err(|_| {
        let found = kind_of(log);
        r.error("log".into(), format!("expected an object, found {found}"))
    })?;
    let Some(entries) = log.get("entries") else {
        return Err(r.error("log.entries".into(), "missing"));
    };
    serde_json::from_str(entries.get()).map_err(|_| {
        let found = kind_of(entries);
        r.error(
            "log.entries".into(),
            format!("expected an array, found {found}"),
        )
    })
}

/// The UTF-8 byte order mark, which may open a HAR.
pub const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// A form body (`name=value&…`, percent-encoded) made from HAR `postData.params`.
fn form_body(params: &[Value]) -> String {
    use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
    // What a browser's form encoding leaves as is (`client_secret`, not `client%5Fsecret`).
    const FORM: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'*');
    let field = |key: &str, param: &Value| {
        let text = param.get(key).and_then(Value::as_str).unwrap_or_default();
        utf8_percent_encode(text, FORM).to_string()
    };
    params
        .iter()
        .map(|param| format!("{}={}", field("name", param), field("value", param)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A `multipart/form-data` body with `boundary` made from HAR `postData.params`, as
/// Firefox lists a form with a file: each part's `name`, `fileName`, `contentType` and
/// `value`.
fn multipart_body(params: &[Value], boundary: &str) -> Vec<u8> {
    fn field<'a>(param: &'a Value, key: &str) -> Option<&'a str> {
        param.get(key).and_then(Value::as_str)
    }
    // As browsers write names: a quote or line break in one is escaped.
    let quoted = |text: &str| {
        text.replace('"', "%22")
            .replace('\r', "%0D")
            .replace('\n', "%0A")
    };
    let mut body = Vec::new();
    for param in params {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let name = quoted(field(param, "name").unwrap_or_default());
        let mut disposition = format!("Content-Disposition: form-data; name=\"{name}\"");
        if let Some(file) = field(param, "fileName") {
            disposition.push_str(&format!("; filename=\"{}\"", quoted(file)));
        }
        body.extend_from_slice(disposition.as_bytes());
        if let Some(content_type) = field(param, "contentType").filter(|c| !c.is_empty()) {
            body.extend_from_slice(format!("\r\nContent-Type: {content_type}").as_bytes());
        }
        body.extend_from_slice(b"\r\n\r\n");
        body.extend_from_slice(field(param, "value").unwrap_or_default().as_bytes());
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}

/// What a lenient import read: the flows of the entries it could read, and why it left
/// out the others.
#[derive(Debug)]
pub struct Imported {
    /// One per readable entry, in the order the requests started.
    pub flows: Vec<StoredFlow>,
    /// The entries left out, each error naming the entry and its field.
    pub skipped: Vec<HarError>,
}

/// Reads every entry of the HAR at `path` as a flow, with its Kinvey analysis and the
/// behaviour checks run in the order the requests started. Any entry it cannot read
/// fails the whole file ([`import_leniently`] reads the others).
pub fn import(path: &Path) -> Result<Vec<StoredFlow>, HarError> {
    strictly(import_leniently(path)?)
}

/// [`import`], leaving out the entries it cannot read (a HAR from a customer is worth
/// reading even with one odd entry); fails only when the file is no HAR or no entry is
/// readable.
pub fn import_leniently(path: &Path) -> Result<Imported, HarError> {
    let bytes = std::fs::read(path).map_err(|source| HarError::Io {
        path: path.to_owned(),
        source,
    })?;
    read_entries(&bytes, path)
}

/// Reads the HAR held in `bytes` as [`import`] reads a file; errors name `path` as the
/// file the bytes came from.
pub fn import_bytes(bytes: &[u8], path: &Path) -> Result<Vec<StoredFlow>, HarError> {
    strictly(read_entries(bytes, path)?)
}

fn strictly(imported: Imported) -> Result<Vec<StoredFlow>, HarError> {
    match imported.skipped.into_iter().next() {
        Some(first) => Err(first),
        None => Ok(imported.flows),
    }
}

/// A HAR file's bytes as UTF-8 JSON: without the UTF-8 byte order mark some Windows tools
/// start it with, or decoded from the UTF-16 its byte order mark says (PowerShell's
/// `>` writes UTF-16).
pub fn utf8_json(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    match encoding_rs::Encoding::for_bom(bytes) {
        Some((encoding, bom)) if encoding != encoding_rs::UTF_8 => {
            let (text, _) = encoding.decode_without_bom_handling(&bytes[bom..]);
            std::borrow::Cow::Owned(text.into_owned().into_bytes())
        }
        _ => std::borrow::Cow::Borrowed(bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes)),
    }
}

fn read_entries(bytes: &[u8], path: &Path) -> Result<Imported, HarError> {
    let bytes = utf8_json(bytes);
    let r = Reader { path };
    // The levels above the entries are read as raw JSON, and each entry is parsed alone
    // and dropped once it is a flow: a HAR's whole tree of values takes many times the
    // file's size (7.5 times was measured), and one entry JSON cannot hold (a lone
    // UTF-16 surrogate) is that entry's error, not the file's.
    let entries = raw_entries(&r, &bytes)?;
    // Each flow with the id kinspect exported it under (its `connection`), if any, and
    // the behaviour warnings it was exported with.
    let (mut flows, mut skipped) = (Vec::new(), Vec::new());
    for (index, raw) in entries.into_iter().enumerate() {
        let entry: Value = match serde_json::from_str(raw.get()) {
            Ok(entry) => entry,
            Err(e) => {
                let at = format!("log.entries[{index}]");
                skipped.push(r.error(at, format!("not valid JSON ({e})")));
                continue;
            }
        };
        match flow_from_entry(&r, index, &entry) {
            Ok(flow) => {
                let exported_id = entry
                    .get("connection")
                    .and_then(Value::as_str)
                    .and_then(|id| id.parse::<FlowId>().ok());
                flows.push((exported_id, flow, exported_warnings(&entry)))
            }
            Err(e) => skipped.push(e),
        }
    }
    if flows.is_empty() && !skipped.is_empty() {
        return Err(skipped.remove(0));
    }
    flows.sort_by_key(|(_, f, _)| f.started_at);
    // A replay's `_replayOf` names its original by the exported id.
    let renumbered: std::collections::HashMap<FlowId, FlowId> = flows
        .iter()
        .enumerate()
        .filter_map(|(i, (exported, _, _))| Some(((*exported)?, i as FlowId + 1)))
        .collect();
    let mut tracker = BehaviourTracker::for_imported_times();
    let flows = flows
        .into_iter()
        .enumerate()
        .map(|(i, (_, mut flow, exported))| {
            flow.id = i as u64 + 1;
            let analysis = kinvey::analyze(&flow);
            // Sent again from the UI, not by the app: as when recorded, no behaviour of
            // the app's (even when its original was left out of the HAR).
            let warnings = match flow.replay_of {
                Some(original) => {
                    flow.replay_of = renumbered.get(&original).copied();
                    Vec::new()
                }
                None => tracker.observe(&flow, &analysis),
            };
            let mut kinvey = KinveySummary::new(&analysis, &warnings);
            // kinspect's own verdict, made on the traffic before it was redacted or
            // filtered, stands: the checks made again here may no longer tell.
            if let Some(exported) = exported {
                kinvey.warnings = exported
                    .into_iter()
                    .map(|mut warning| {
                        warning.message = renumbered_flows(&warning.message, &renumbered);
                        warning
                    })
                    .collect();
            }
            StoredFlow { kinvey, flow }
        })
        .collect();
    Ok(Imported { flows, skipped })
}

/// `message` with the flows it names by their exported ids (`(flow 17)`) named by their
/// ids once imported, or left out when the file does not hold them (a filtered export).
fn renumbered_flows(
    message: &str,
    renumbered: &std::collections::HashMap<FlowId, FlowId>,
) -> String {
    static FLOW: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(r"( ?)\(flow (\d+)\)").expect("valid"));
    FLOW.replace_all(message, |found: &regex::Captures<'_>| {
        let exported = found[2].parse::<FlowId>().ok();
        match exported.and_then(|id| renumbered.get(&id)) {
            Some(id) => format!("{}(flow {id})", &found[1]),
            None => String::new(),
        }
    })
    .into_owned()
}

/// The behaviour warnings of a kinspect HAR's entry (`_kinvey.warnings`), if it has
/// them: each a `code` and a `message`.
fn exported_warnings(entry: &Value) -> Option<Vec<kinvey::Finding>> {
    let warnings = entry.get("_kinvey")?.get("warnings")?;
    serde_json::from_value(warnings.clone()).ok()
}

/// Imports the HAR at `path` leniently into a new capture file in a temporary directory,
/// so that every command that reads captures reads it. The directory lives as long as
/// the guard; the entries left out come back with it.
pub fn import_to_capture(
    path: &Path,
) -> Result<(tempfile::TempDir, PathBuf, Vec<HarError>), HarError> {
    let Imported { flows, skipped } = import_leniently(path)?;
    let mut dir = tempfile::Builder::new();
    dir.prefix("kinspect-har-");
    // The copy holds the HAR's credentials (all of them, if it was not redacted).
    #[cfg(unix)]
    dir.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700));
    let dir = dir.tempdir().map_err(|source| HarError::Io {
        path: std::env::temp_dir(),
        source,
    })?;
    let name = path
        .file_stem()
        .map_or_else(|| "import".into(), |s| s.to_string_lossy().into_owned());
    let capture = dir.path().join(format!("{name}.db"));
    let mut writer = CaptureWriter::open(&capture)?;
    writer.write_batch(&flows)?;
    Ok((dir, capture, skipped))
}

/// True for a body kinspect exported as it came (`_asSent`: its `Content-Encoding` could
/// not be undone), not to be encoded again.
fn as_sent(body: Option<&serde_json::Map<String, Value>>) -> bool {
    body.and_then(|b| b.get("_asSent")).and_then(Value::as_bool) == Some(true)
}

/// HAR bodies are decoded: encoded again, a body goes with its `Content-Encoding` as it
/// was sent; an encoding kinspect cannot apply is left out of the headers.
fn encoded_as_sent(bytes: &mut Bytes, headers: &mut Headers) {
    let Some(encoding) = headers.get("content-encoding") else {
        return;
    };
    match crate::decode::encode_body(bytes, &encoding) {
        Some(encoded) if !bytes.is_empty() => *bytes = encoded,
        Some(_) => {}
        None => headers
            .0
            .retain(|h| !h.name.eq_ignore_ascii_case("content-encoding")),
    }
}

fn version(text: Option<&str>) -> HttpVersion {
    match text.unwrap_or("").to_ascii_lowercase().as_str() {
        "http/1.0" => HttpVersion::Http10,
        "http/2" | "http/2.0" | "h2" | "h2c" => HttpVersion::Http2,
        "http/1.1" | "" => HttpVersion::Http11,
        _ => HttpVersion::Other,
    }
}

fn headers(r: &Reader<'_>, object: &Map<String, Value>, at: &str) -> Result<Headers, HarError> {
    let Some(list) = object.get("headers") else {
        return Ok(Headers::default());
    };
    let list = list.as_array().ok_or_else(|| {
        r.error(
            format!("{at}.headers"),
            format!("expected an array, found {}", kind(list)),
        )
    })?;
    let mut fields = Vec::new();
    for (i, header) in list.iter().enumerate() {
        let at = format!("{at}.headers[{i}]");
        let header = r.object(header, &at)?;
        let name = r.string(header, &at, "name")?;
        // HTTP/2 pseudo-headers (Chrome, Firefox) are not headers.
        if name.starts_with(':') {
            continue;
        }
        // A number as it was written; a null is no value (not the text "null").
        let value = match header.get("value") {
            Some(Value::String(v)) => v.clone(),
            None | Some(Value::Null) => String::new(),
            Some(other) => other.to_string(),
        };
        fields.push(HeaderField {
            name: name.into(),
            value: Bytes::from(value),
        });
    }
    Ok(Headers(fields))
}

/// Body bytes from a HAR text field, base64 when the encoding says so.
fn body_bytes(r: &Reader<'_>, text: &str, base64: bool, at: &str) -> Result<Bytes, HarError> {
    if !base64 {
        return Ok(Bytes::copy_from_slice(text.as_bytes()));
    }
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map(Bytes::from)
        .map_err(|e| r.error(format!("{at}.text"), format!("not valid base64: {e}")))
}

fn size(object: &Map<String, Value>, key: &str, fallback: usize) -> u64 {
    object
        .get(key)
        .and_then(Value::as_i64)
        .filter(|s| *s >= 0)
        .map_or(fallback as u64, |s| s as u64)
}

/// The longest phase a HAR timing may give: longer than any exchange a HAR records, and
/// short enough that a flow's phases added to its start stay representable.
const MAX_TIMING: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// `timings.<key>` (milliseconds): `None` when absent, not a number, or negative (HAR's
/// -1, "does not apply"); an error when longer than [`MAX_TIMING`].
fn timing(
    r: &Reader<'_>,
    timings: Option<&Map<String, Value>>,
    at: &str,
    key: &str,
) -> Result<Option<Duration>, HarError> {
    let Some(ms) = timings.and_then(|t| t.get(key)).and_then(Value::as_f64) else {
        return Ok(None);
    };
    if ms < 0.0 {
        return Ok(None);
    }
    Duration::try_from_secs_f64(ms / 1000.0)
        .ok()
        .filter(|d| *d <= MAX_TIMING)
        .map(Some)
        .ok_or_else(|| {
            r.error(
                format!("{at}.timings.{key}"),
                format!("{ms} ms is longer than a year: not a phase of an exchange"),
            )
        })
}

/// True when kinspect's `key` (`_truncated`, `_incomplete`) is true in `object`.
fn flag(object: Option<&Map<String, Value>>, key: &str) -> bool {
    object.and_then(|o| o.get(key)).and_then(Value::as_bool) == Some(true)
}

fn started_at(
    r: &Reader<'_>,
    entry: &Map<String, Value>,
    at: &str,
) -> Result<SystemTime, HarError> {
    let text = r.string(entry, at, "startedDateTime")?;
    use time::format_description::well_known::{Iso8601, Rfc3339};
    // RFC 3339 first (what browsers write), then any ISO 8601 form (`+0000` offsets),
    // then one without an offset, taken as UTC.
    let parsed = time::OffsetDateTime::parse(text, &Rfc3339)
        .or_else(|_| time::OffsetDateTime::parse(text, &Iso8601::DEFAULT))
        .or_else(|e| {
            time::PrimitiveDateTime::parse(text, &Iso8601::DEFAULT)
                .map(|local| local.assume_utc())
                .map_err(|_| e)
        })
        .map_err(|e| {
            r.error(
                format!("{at}.startedDateTime"),
                format!("not an ISO 8601 date ({e}): {text:?}"),
            )
        })?;
    // Captures keep times in nanoseconds since 1970 (an i64): up to 2262-04-11.
    if i64::try_from(parsed.unix_timestamp_nanos()).is_err() {
        return Err(r.error(
            format!("{at}.startedDateTime"),
            format!("{text:?} is outside the years 1677 to 2262 kinspect can keep"),
        ));
    }
    Ok(SystemTime::from(parsed))
}

fn flow_from_entry(r: &Reader<'_>, index: usize, entry: &Value) -> Result<Flow, HarError> {
    let at = format!("log.entries[{index}]");
    let entry = r.object(entry, &at)?;
    let started_at = started_at(r, entry, &at)?;
    let request_at = format!("{at}.request");
    let request = match entry.get("request") {
        Some(request) => r.object(request, &request_at)?,
        None => return Err(r.error(request_at, "missing")),
    };
    let method = r.string(request, &request_at, "method")?.to_owned();
    let url = crate::flow::escaped_url(r.string(request, &request_at, "url")?.trim().as_bytes());
    if url.starts_with("data:") {
        return Err(r.error(
            format!("{request_at}.url"),
            "a data: URL (read by the browser itself, no exchange with a server)",
        ));
    }
    let uri: http::Uri = url.parse().map_err(|e| {
        r.error(
            format!("{request_at}.url"),
            format!("not a URL ({e}): {url:?}"),
        )
    })?;
    // A CONNECT's `host:port` has no scheme; every URL names its host.
    if uri.host().is_none_or(str::is_empty) {
        return Err(r.error(
            format!("{request_at}.url"),
            format!("not an absolute URL (it names no host): {url:?}"),
        ));
    }
    // A WebSocket's `wss` (Chrome lists its handshake) is HTTPS's, `ws` HTTP's.
    let https = matches!(uri.scheme_str(), Some("https" | "wss"));
    // A port that is no port (kinspect records such a refused request as sent) is 0.
    let port = match uri.authority().and_then(|a| split_port(a.as_str()).1) {
        Some(port) => port_number(port).unwrap_or(0),
        None if https => 443,
        None => 80,
    };
    let mut request_headers = headers(r, request, &request_at)?;
    let post = request.get("postData").and_then(Value::as_object);
    // A HAR written without the request's fields still says its body's type.
    let post_type = post
        .and_then(|p| p.get("mimeType"))
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty());
    if let (Some(post_type), None) = (post_type, request_headers.get("content-type")) {
        request_headers.0.push(HeaderField {
            name: "content-type".into(),
            value: Bytes::copy_from_slice(post_type.as_bytes()),
        });
    }
    let mut request_bytes = match post.and_then(|p| p.get("text")).and_then(Value::as_str) {
        Some(text) => {
            let base64 = post
                .and_then(|p| p.get("_encoding").or(p.get("encoding")))
                .and_then(Value::as_str)
                == Some("base64");
            body_bytes(r, text, base64, &format!("{request_at}.postData"))?
        }
        // Firefox gives a form's fields only as params: the body is made from them, a
        // multipart one with the boundary its content type names.
        None => {
            let boundary = post_type
                .map(str::to_owned)
                .or_else(|| request_headers.get("content-type").map(|c| c.into_owned()))
                .and_then(|content_type| crate::redact::form_data_boundary(&content_type));
            match (
                post.and_then(|p| p.get("params")).and_then(Value::as_array),
                boundary,
            ) {
                (None, _) => Bytes::new(),
                (Some(params), Some(boundary)) => Bytes::from(multipart_body(params, &boundary)),
                (Some(params), None) => Bytes::from(form_body(params)),
            }
        }
    };
    if !as_sent(post) {
        encoded_as_sent(&mut request_bytes, &mut request_headers);
    }
    let request_record = RequestRecord {
        method,
        url: url.clone(),
        version: version(request.get("httpVersion").and_then(Value::as_str)),
        headers: request_headers,
        body: CapturedBody {
            wire_size: size(request, "bodySize", request_bytes.len()),
            bytes: request_bytes,
            truncated: flag(post, "_truncated"),
            incomplete: flag(post, "_incomplete"),
        },
    };

    let response_at = format!("{at}.response");
    let response = match entry.get("response") {
        Some(response) => r.object(response, &response_at)?,
        None => return Err(r.error(response_at, "missing")),
    };
    let status = match response.get("status") {
        Some(Value::Number(n)) => {
            n.as_u64()
                .and_then(|s| u16::try_from(s).ok())
                .ok_or_else(|| {
                    r.error(
                        format!("{response_at}.status"),
                        format!("not a status code: {n}"),
                    )
                })?
        }
        // Some writers quote it.
        Some(Value::String(text)) => text.trim().parse::<u16>().map_err(|_| {
            r.error(
                format!("{response_at}.status"),
                format!("not a status code: {text:?}"),
            )
        })?,
        Some(other) => {
            return Err(r.error(
                format!("{response_at}.status"),
                format!("expected a number, found {}", kind(other)),
            ))
        }
        None => return Err(r.error(format!("{response_at}.status"), "missing")),
    };
    // kinspect writes the entry's `_error`; Chrome the response's (`net::ERR_…`).
    let error_text = entry
        .get("_error")
        .or_else(|| response.get("_error"))
        .and_then(|e| match e {
            Value::String(s) if s.is_empty() => None,
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        });
    let response_record = if status == 0 {
        None
    } else {
        let mut response_headers = headers(r, response, &response_at)?;
        let content = response.get("content").and_then(Value::as_object);
        let mut bytes = match content.and_then(|c| c.get("text")).and_then(Value::as_str) {
            Some(text) => {
                let base64 = content
                    .and_then(|c| c.get("encoding"))
                    .and_then(Value::as_str)
                    == Some("base64");
                body_bytes(r, text, base64, &format!("{response_at}.content"))?
            }
            None => Bytes::new(),
        };
        if !as_sent(content) {
            encoded_as_sent(&mut bytes, &mut response_headers);
        }
        Some(ResponseRecord {
            status,
            version: version(response.get("httpVersion").and_then(Value::as_str)),
            headers: response_headers,
            body: CapturedBody {
                wire_size: size(response, "bodySize", bytes.len()),
                truncated: flag(content, "_truncated"),
                incomplete: flag(content, "_incomplete"),
                bytes,
            },
            from_proxy: false,
        })
    };
    let error = match (&response_record, error_text) {
        (_, Some(message)) => Some(FlowError {
            kind: entry
                .get("_errorKind")
                .and_then(Value::as_str)
                .and_then(|k| k.parse().ok())
                .unwrap_or(FlowErrorKind::Protocol),
            message,
        }),
        (None, None) => Some(FlowError {
            kind: FlowErrorKind::Protocol,
            message: "the HAR records no response (status 0)".into(),
        }),
        _ => None,
    };
    let timings = entry.get("timings").and_then(Value::as_object);
    let server_ip = entry
        .get("serverIPAddress")
        .and_then(Value::as_str)
        .and_then(|ip| unbracketed(ip).parse::<IpAddr>().ok());
    let send = timing(r, timings, &at, "send")?;
    let wait = timing(r, timings, &at, "wait")?;
    let receive = timing(r, timings, &at, "receive")?;
    let mut timings = Timings {
        blocked: timing(r, timings, &at, "blocked")?,
        dns: timing(r, timings, &at, "dns")?,
        connect: timing(r, timings, &at, "connect")?,
        ssl: timing(r, timings, &at, "ssl")?,
        send: send.unwrap_or_default(),
        wait: wait.unwrap_or_default(),
        receive: receive.unwrap_or_default(),
    };
    // An entry that times only its whole (send, wait and receive unknown, -1): the rest
    // of its `time` is counted as waiting, so that its duration is what the HAR says.
    if (send, wait, receive) == (None, None, None) {
        let time = entry
            .get("time")
            .and_then(Value::as_f64)
            .filter(|ms| *ms >= 0.0)
            .and_then(|ms| Duration::try_from_secs_f64(ms / 1000.0).ok())
            .filter(|d| *d <= MAX_TIMING);
        if let Some(time) = time {
            timings.wait = time.saturating_sub(timings.total());
        }
    }
    Ok(Flow {
        id: index as u64 + 1,
        kind: FlowKind::Http,
        client_addr: entry
            .get("_clientAddress")
            .and_then(Value::as_str)
            .and_then(|addr| addr.parse().ok())
            .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))),
        started_at,
        scheme: if https { "https" } else { "http" }.into(),
        host: unbracketed(uri.host().unwrap_or_default()).to_owned(),
        port,
        request: request_record,
        response: response_record,
        timings,
        server_ip,
        client_tls: None,
        server_tls: None,
        error,
        websocket: websocket_messages(entry),
        replay_of: entry.get("_replayOf").and_then(Value::as_u64),
    })
}

/// The WebSocket messages Chrome (and kinspect) export as `_webSocketMessages`:
/// `{type: "send" | "receive", time: seconds since the epoch, opcode, data}`, binary
/// data in base64; with kinspect's `_size`, `_encoding`, `_webSocketMessagesDropped`
/// and `_webSocketUnreadable`. Messages that do not read so are left out.
fn websocket_messages(
    entry: &serde_json::Map<String, Value>,
) -> Option<Box<crate::websocket::MessageLog>> {
    use base64::Engine;
    let messages = entry.get("_webSocketMessages")?.as_array()?;
    let messages = messages
        .iter()
        .filter_map(|message| {
            let from_client = match message.get("type")?.as_str()? {
                "send" => true,
                "receive" => false,
                _ => return None,
            };
            let opcode = u8::try_from(message.get("opcode")?.as_u64()?).ok()?;
            let data = message.get("data")?.as_str()?;
            // Text is written as it is unless the entry says base64 (kinspect, for text
            // that is not UTF-8); everything else is base64, as Chrome writes binary.
            let base64 = message.get("_encoding").and_then(Value::as_str) == Some("base64");
            let payload = match opcode {
                crate::websocket::TEXT if !base64 => bytes::Bytes::copy_from_slice(data.as_bytes()),
                _ => base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .ok()?
                    .into(),
            };
            let seconds = message.get("time")?.as_f64()?;
            let at = std::time::UNIX_EPOCH
                .checked_add(std::time::Duration::try_from_secs_f64(seconds).ok()?)?;
            // kinspect's exports say the whole size of a payload they cut.
            let size = message.get("_size").and_then(Value::as_u64);
            Some(crate::websocket::Message {
                from_client,
                at,
                opcode,
                size: size.unwrap_or(payload.len() as u64),
                payload,
            })
        })
        .collect();
    Some(Box::new(crate::websocket::MessageLog {
        messages,
        dropped: entry
            .get("_webSocketMessagesDropped")
            .and_then(Value::as_u64)
            .unwrap_or(0),
        unreadable: entry
            .get("_webSocketUnreadable")
            .and_then(Value::as_str)
            .map(str::to_owned),
    }))
}
