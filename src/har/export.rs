//! Writing flows as HAR 1.2, streamed entry by entry so that a 100k-flow capture exports
//! with flat memory.

use std::io::Write;

use base64::Engine;
use serde_json::{json, Map, Value};

use super::har_version;
use crate::capture::StoredFlow;
use crate::flow::{utc_timestamp, CapturedBody, Flow, FlowKind, Headers};
use crate::redact::{
    cookie_field, cookie_pairs, form_body_fields, form_data_boundary, form_fields, is_form_body,
    is_secret_header, is_secret_param, is_url_header, query_of, redact_cookie_field, redact_form,
    redact_form_data, redact_json_text, redact_url, EarlierSecrets, Secrets, REDACTED,
};

/// How to export.
#[derive(Debug, Clone, Copy)]
pub struct ExportOptions {
    /// Replace credentials, cookies, tokens and secrets (the default).
    pub redact: bool,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions { redact: true }
    }
}

/// What an export wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportStats {
    /// Entries written.
    pub entries: u64,
    /// Values replaced by `[redacted]`.
    pub redactions: u64,
    /// Blind tunnels left out (they hold no HTTP exchange).
    pub tunnels_skipped: u64,
}

/// Writes a HAR document one entry at a time: memory stays flat however many flows.
pub struct HarWriter<W: Write> {
    out: W,
    title: String,
    options: ExportOptions,
    stats: ExportStats,
    opened: bool,
    /// The secrets of the flows written so far, scrubbed from the later ones too.
    earlier: EarlierSecrets,
}

impl<W: Write> HarWriter<W> {
    /// A writer to `out`; `title` names the page (the capture file).
    pub fn new(out: W, title: &str, options: ExportOptions) -> Self {
        HarWriter {
            out,
            title: title.to_owned(),
            options,
            stats: ExportStats::default(),
            opened: false,
            earlier: EarlierSecrets::default(),
        }
    }

    /// Writes the log's head (its page starts with the first flow).
    fn open(&mut self, started: std::time::SystemTime) -> std::io::Result<()> {
        let head = json!({
            "version": "1.2",
            "creator": {"name": "kinspect", "version": env!("CARGO_PKG_VERSION")},
            "pages": [{
                "startedDateTime": utc_timestamp(started),
                "id": "page_1",
                "title": self.title,
                "pageTimings": {"onContentLoad": -1, "onLoad": -1},
            }],
        });
        let head = serde_json::to_string(&head)?;
        // The head without its closing brace, then the entries array.
        write!(
            self.out,
            "{{\"log\":{},\"entries\":[",
            &head[..head.len() - 1]
        )?;
        self.opened = true;
        Ok(())
    }

    /// Writes one flow (blind tunnels are left out: they hold no HTTP exchange).
    pub fn push(&mut self, stored: &StoredFlow) -> std::io::Result<()> {
        if !self.opened {
            self.open(stored.flow.started_at)?;
        }
        if stored.flow.kind == FlowKind::Tunnel {
            self.stats.tunnels_skipped += 1;
            return Ok(());
        }
        let redactions = &mut self.stats.redactions;
        let entry = entry_after(stored, self.options, redactions, &mut self.earlier);
        if self.stats.entries > 0 {
            self.out.write_all(b",")?;
        }
        self.out.write_all(b"\n")?;
        serde_json::to_writer(&mut self.out, &entry)?;
        self.stats.entries += 1;
        Ok(())
    }

    /// Closes the document and returns what was written.
    pub fn finish(mut self) -> std::io::Result<ExportStats> {
        if !self.opened {
            self.open(std::time::SystemTime::now())?;
        }
        self.out.write_all(b"\n]}}\n")?;
        self.out.flush()?;
        Ok(self.stats)
    }
}

/// Writes a HAR document holding `flows` to `out`.
pub fn export<W: Write>(
    out: W,
    title: &str,
    flows: impl IntoIterator<Item = StoredFlow>,
    options: ExportOptions,
) -> std::io::Result<ExportStats> {
    let mut writer = HarWriter::new(out, title, options);
    for stored in flows {
        writer.push(&stored)?;
    }
    writer.finish()
}

use crate::flow::milliseconds as ms;

fn optional_ms(d: Option<std::time::Duration>) -> f64 {
    d.map_or(-1.0, ms)
}

/// Redacts as it goes and counts what it replaced.
struct Redactor<'a> {
    on: bool,
    secrets: Secrets,
    earlier: &'a mut EarlierSecrets,
    count: &'a mut u64,
}

impl Redactor<'_> {
    fn header_value(&mut self, name: &str, value: &str) -> String {
        if self.on && is_secret_header(name) {
            let cookies = cookie_field(name).and_then(|set| redact_cookie_field(value, set));
            let Some(redacted) = cookies else {
                return match credentials_scheme(name, value) {
                    // `Kinvey [redacted]`: which credential was used tells a support
                    // engineer (and the Kinvey analysis of an import) what went on.
                    Some((scheme, credentials)) => {
                        format!("{scheme} {}", self.replaced(credentials))
                    }
                    None => self.replaced(value),
                };
            };
            if redacted != value {
                *self.count += 1;
            }
            // A token the flow sent elsewhere, in a cookie's path, say.
            return self.scrubbed(&redacted);
        }
        if is_url_header(name) {
            return self.url(value);
        }
        self.text(value)
    }

    /// A query or form field's value: replaced when its name is a secret's, else
    /// scrubbed of every secret.
    fn param(&mut self, name: &str, value: &str) -> String {
        if !self.on {
            return value.to_owned();
        }
        if is_secret_param(name) {
            return self.replaced(value);
        }
        self.scrubbed(value)
    }

    /// [`REDACTED`] in place of `value`, counted unless `value` was that already (a HAR
    /// exported redacted, imported and exported again).
    fn replaced(&mut self, value: &str) -> String {
        if value != REDACTED {
            *self.count += 1;
        }
        REDACTED.to_owned()
    }

    /// `text` with every secret of this flow and of the flows before it replaced.
    fn scrubbed(&mut self, text: &str) -> String {
        let scrubbed = self.earlier.scrub(&self.secrets.scrub(text));
        if scrubbed != text {
            *self.count += 1;
        }
        scrubbed
    }

    fn cookie(&mut self, value: &str) -> String {
        if self.on {
            return self.replaced(value);
        }
        value.to_owned()
    }

    /// A URL: its password and secret parameters replaced, then scrubbed of every
    /// secret (a token in its path).
    fn url(&mut self, url: &str) -> String {
        if !self.on {
            return url.to_owned();
        }
        let redacted = redact_url(url);
        if redacted != url {
            *self.count += 1;
        }
        self.scrubbed(&redacted)
    }

    /// A form body (`name=value&…`): secret fields' values replaced, then scrubbed as text.
    fn form(&mut self, text: &str) -> String {
        if !self.on {
            return text.to_owned();
        }
        let redacted = redact_form(text);
        if redacted != text {
            *self.count += 1;
        }
        self.text(&redacted)
    }

    /// A body: when it is a multipart form, its secret-named parts' contents replaced
    /// (before it is read as text or base64, since a form with a file is often no UTF-8).
    fn form_data(&mut self, body: bytes::Bytes, content_type: Option<&str>) -> bytes::Bytes {
        let boundary = content_type.and_then(form_data_boundary);
        let Some(boundary) = boundary.filter(|_| self.on) else {
            return body;
        };
        let (redacted, parts) = redact_form_data(&body, &boundary);
        *self.count += parts as u64;
        match parts {
            0 => body,
            _ => redacted.into(),
        }
    }

    /// Bytes that are no text, in base64: every secret of this flow and of the flows
    /// before it scrubbed first, as the same bytes (a token in a binary body).
    fn base64(&mut self, bytes: &[u8]) -> String {
        let engine = &base64::engine::general_purpose::STANDARD;
        if !self.on {
            return engine.encode(bytes);
        }
        use std::borrow::Cow;
        let once = self.secrets.scrub_bytes(bytes);
        let scrubbed = self.earlier.scrub_bytes(&once);
        // Owned only where something was replaced.
        if matches!(once, Cow::Owned(_)) || matches!(scrubbed, Cow::Owned(_)) {
            *self.count += 1;
        }
        engine.encode(&*scrubbed)
    }

    /// Free text: every secret of the flow scrubbed; in JSON, secret-named fields too.
    fn text(&mut self, text: &str) -> String {
        if !self.on {
            return text.to_owned();
        }
        let (redacted, fields) = redact_json_text(text);
        *self.count += fields as u64;
        self.scrubbed(&redacted)
    }
}

/// Authentication schemes whose name is kept in front of redacted credentials.
const KNOWN_SCHEMES: [&str; 12] = [
    "Basic",
    "Bearer",
    "Kinvey",
    "Digest",
    "Negotiate",
    "NTLM",
    "AWS4-HMAC-SHA256",
    "Token",
    "ApiKey",
    "Hawk",
    "DPoP",
    "MAC",
];

/// The scheme of an `Authorization` or `Proxy-Authorization` value and the credentials
/// after it, when the scheme is a known one (a first word that is no scheme may be a
/// secret itself).
fn credentials_scheme<'a>(name: &str, value: &'a str) -> Option<(&'a str, &'a str)> {
    let authorization = name.eq_ignore_ascii_case("authorization")
        || name.eq_ignore_ascii_case("proxy-authorization");
    let (scheme, credentials) = value.trim().split_once(' ')?;
    let known = KNOWN_SCHEMES.iter().any(|k| k.eq_ignore_ascii_case(scheme));
    (authorization && known).then(|| (scheme, credentials.trim()))
}

fn headers_json(headers: &Headers, redactor: &mut Redactor<'_>) -> Value {
    Value::Array(
        headers
            .iter()
            .map(|h| {
                let value = redactor.header_value(&h.name, &h.value_lossy());
                json!({"name": h.name, "value": value})
            })
            .collect(),
    )
}

fn cookies_json(headers: &Headers, header: &str, redactor: &mut Redactor<'_>) -> Value {
    let mut cookies = Vec::new();
    for field in headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(header))
    {
        let value = field.value_lossy();
        for (name, v) in cookie_pairs(&value, header == "set-cookie") {
            let v = redactor.cookie(v);
            cookies.push(json!({"name": name, "value": v}));
        }
    }
    Value::Array(cookies)
}

fn query_json(url: &str, redactor: &mut Redactor<'_>) -> Value {
    params_json(form_fields(query_of(url)), redactor)
}

/// The decoded fields of a query string or form body as HAR `{name, value}` objects.
fn params_json(
    fields: impl Iterator<Item = (String, String)>,
    redactor: &mut Redactor<'_>,
) -> Value {
    Value::Array(
        fields
            .map(|(name, value)| {
                let value = redactor.param(&name, &value);
                json!({"name": name, "value": value})
            })
            .collect(),
    )
}

/// A body's HAR text.
struct HarText {
    text: String,
    /// In base64 (bytes that are no UTF-8).
    base64: bool,
    /// The bytes as they came: its `Content-Encoding` could not be undone (kinspect's
    /// `_asSent`, so that an import does not encode it again).
    as_sent: bool,
}

/// kinspect's marks on a body kept in part: `_truncated` (only its first `--max-body`
/// bytes), `_incomplete` (it broke off: the client or server stopped sending).
fn mark_cut(json: &mut Value, body: &CapturedBody) {
    if body.truncated {
        json["_truncated"] = json!(true);
    }
    if body.incomplete {
        json["_incomplete"] = json!(true);
    }
}

/// A body as HAR text: decoded, UTF-8 as is, anything else base64.
fn body_content(
    body: &CapturedBody,
    headers: &Headers,
    redactor: &mut Redactor<'_>,
) -> (u64, Option<HarText>) {
    let encoding = headers.get("content-encoding");
    if body.bytes.is_empty() {
        // A body that came with none of it kept (`--max-body 0`): its size when it is
        // known, and an empty text that `mark_cut` marks.
        if body.truncated && body.wire_size > 0 {
            let size = if encoding.is_none() {
                body.wire_size
            } else {
                0
            };
            let text = HarText {
                text: String::new(),
                base64: false,
                as_sent: false,
            };
            return (size, Some(text));
        }
        return (0, None);
    }
    let (decoded, as_sent) = match body.decoded(encoding.as_deref()) {
        Ok(decoded) => (decoded, false),
        Err(_) => (body.bytes.clone(), true),
    };
    // Not encoded, the body's size is what came (also for a body cut at --max-body, or
    // a HAR's body imported redacted, whose text is no longer what came); a HAR's entry
    // served from a cache has a body but none on the wire.
    let size = match encoding.is_none() && body.wire_size > 0 {
        true => body.wire_size,
        false => decoded.len() as u64,
    };
    let content_type = headers.get("content-type");
    let decoded = redactor.form_data(decoded, content_type.as_deref());
    match crate::flow::utf8_text(&decoded, body.truncated) {
        Some(text) if is_form_body(content_type.as_deref(), text) => {
            let text = redactor.form(text);
            (
                size,
                Some(HarText {
                    text,
                    base64: false,
                    as_sent,
                }),
            )
        }
        Some(text) => {
            let text = redactor.text(text);
            (
                size,
                Some(HarText {
                    text,
                    base64: false,
                    as_sent,
                }),
            )
        }
        None => {
            let text = redactor.base64(&decoded);
            (
                size,
                Some(HarText {
                    text,
                    base64: true,
                    as_sent,
                }),
            )
        }
    }
}

/// A WebSocket's messages as Chrome exports them (`_webSocketMessages`): `type` `send`
/// or `receive`, `time` in seconds since the epoch, `opcode`, and `data`: text redacted
/// like a body, anything else in base64 (Chrome's way for binary; a text message whose
/// kept bytes are not UTF-8 says so with `_encoding`). kinspect adds `_size` for a
/// payload kept only in part, and keeps pings and pongs, which Chrome leaves out.
fn websocket_messages_json(
    log: &crate::websocket::MessageLog,
    redactor: &mut Redactor<'_>,
) -> Value {
    use crate::websocket::TEXT;
    let messages = log
        .messages
        .iter()
        .map(|m| {
            // To the microsecond: a time read back from the HAR and written again is the
            // same (a double holds no more of a time since 1970 exactly).
            let time =
                m.at.duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |d| (d.as_secs_f64() * 1e6).round() / 1e6);
            let text = (m.opcode == TEXT)
                .then(|| crate::flow::utf8_text(&m.payload, m.truncated()))
                .flatten();
            let mut message = json!({
                "type": if m.from_client { "send" } else { "receive" },
                "time": time,
                "opcode": m.opcode,
                "data": match text {
                    Some(text) => redactor.text(text),
                    None => redactor.base64(&m.payload),
                },
            });
            if m.opcode == TEXT && text.is_none() {
                message["_encoding"] = json!("base64");
            }
            if m.truncated() {
                message["_size"] = json!(m.size);
            }
            message
        })
        .collect();
    Value::Array(messages)
}

/// One flow as a HAR entry (with `_kinvey` results and `_error` for failed flows).
pub fn har_entry(stored: &StoredFlow, options: ExportOptions, redactions: &mut u64) -> Value {
    entry_after(stored, options, redactions, &mut EarlierSecrets::default())
}

/// [`har_entry`] for a flow exported after others, whose secrets it is scrubbed of
/// too; its own join them.
fn entry_after(
    stored: &StoredFlow,
    options: ExportOptions,
    redactions: &mut u64,
    earlier: &mut EarlierSecrets,
) -> Value {
    let StoredFlow { flow, kinvey } = stored;
    let mut redactor = Redactor {
        on: options.redact,
        secrets: if options.redact {
            Secrets::of(flow)
        } else {
            Secrets::default()
        },
        earlier,
        count: redactions,
    };
    let request = &flow.request;
    let mut request_json = json!({
        "method": request.method,
        "url": redactor.url(&request.url),
        "httpVersion": har_version(request.version),
        "cookies": cookies_json(&request.headers, "cookie", &mut redactor),
        "headers": headers_json(&request.headers, &mut redactor),
        "queryString": query_json(&request.url, &mut redactor),
        "headersSize": -1,
        "bodySize": request.body.wire_size,
    });
    if let (_, Some(body)) = body_content(&request.body, &request.headers, &mut redactor) {
        let mime = request
            .headers
            .get("content-type")
            .unwrap_or_default()
            .into_owned();
        // A form's fields are listed as params too (HAR 1.2 `postData.params`).
        let params = match form_body_fields(&request.body, &request.headers) {
            Some(fields) => params_json(fields.into_iter(), &mut redactor),
            None => json!([]),
        };
        let mut post = json!({"mimeType": mime, "params": params, "text": body.text});
        if body.base64 {
            post["_encoding"] = json!("base64");
        }
        if body.as_sent {
            post["_asSent"] = json!(true);
        }
        mark_cut(&mut post, &request.body);
        request_json["postData"] = post;
    }

    // A response kinspect made because the server could not be reached is no response.
    let server_response = flow.response.as_ref().filter(|r| !r.from_proxy);
    let response_json = match server_response {
        Some(response) => {
            let (size, text) = body_content(&response.body, &response.headers, &mut redactor);
            let mut content = json!({
                "size": size,
                "mimeType": response.headers.get("content-type").unwrap_or_default(),
            });
            // compression = bytes saved on the wire by its Content-Encoding: only known
            // for a whole body, and none when encoding made it larger.
            let encoded = response.headers.get("content-encoding").is_some();
            if !response.body.truncated && size >= response.body.wire_size {
                let saved = if encoded {
                    size - response.body.wire_size
                } else {
                    0
                };
                content["compression"] = json!(saved);
            }
            if let Some(body) = text {
                content["text"] = json!(body.text);
                if body.base64 {
                    content["encoding"] = json!("base64");
                }
                if body.as_sent {
                    content["_asSent"] = json!(true);
                }
            }
            mark_cut(&mut content, &response.body);
            let reason = http::StatusCode::from_u16(response.status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("");
            json!({
                "status": response.status,
                "statusText": reason,
                "httpVersion": har_version(response.version),
                "cookies": cookies_json(&response.headers, "set-cookie", &mut redactor),
                "headers": headers_json(&response.headers, &mut redactor),
                "content": content,
                "redirectURL": response.headers.get("location").map(|l| redactor.url(&l)).unwrap_or_default(),
                "headersSize": -1,
                "bodySize": response.body.wire_size,
            })
        }
        None => json!({
            "status": 0,
            "statusText": "",
            "httpVersion": har_version(request.version),
            "cookies": [],
            "headers": [],
            "content": {"size": 0, "mimeType": "x-unknown"},
            "redirectURL": "",
            "headersSize": -1,
            "bodySize": -1,
        }),
    };
    let t = &flow.timings;
    let mut entry = Map::new();
    entry.insert("pageref".into(), json!("page_1"));
    entry.insert(
        "startedDateTime".into(),
        json!(utc_timestamp(flow.started_at)),
    );
    // The sum of the phases as written (HAR's rule), so that an export read back and
    // written again keeps its `time` to the last digit.
    let time: f64 = t.counted().into_iter().flatten().map(ms).sum();
    entry.insert("time".into(), json!((time * 1000.0).round() / 1000.0));
    entry.insert("request".into(), request_json);
    entry.insert("response".into(), response_json);
    entry.insert("cache".into(), json!({}));
    entry.insert(
        "timings".into(),
        json!({
            "blocked": optional_ms(t.blocked),
            "dns": optional_ms(t.dns),
            "connect": optional_ms(t.connect),
            "ssl": optional_ms(t.ssl),
            "send": ms(t.send),
            "wait": ms(t.wait),
            "receive": ms(t.receive),
        }),
    );
    if let Some(ip) = flow.server_ip {
        entry.insert("serverIPAddress".into(), json!(ip.to_string()));
    }
    entry.insert("connection".into(), json!(flow.id.to_string()));
    // HAR has no field for the client: kinspect's own, read back on import.
    if !flow.client_addr.ip().is_unspecified() {
        entry.insert("_clientAddress".into(), json!(flow.client_addr.to_string()));
    }
    if let Some(error) = &flow.error {
        let message = json!(redactor.text(&error.message));
        // Where Chrome writes a failed request's reason, and on the entry, where
        // kinspect wrote it first (import reads either).
        if let Some(response) = entry.get_mut("response").and_then(|r| r.as_object_mut()) {
            response.insert("_error".into(), message.clone());
        }
        entry.insert("_error".into(), message);
        entry.insert("_errorKind".into(), json!(error.kind.as_str()));
    }
    if let Some(original) = flow.replay_of {
        entry.insert("_replayOf".into(), json!(original));
    }
    if let Some(log) = &flow.websocket {
        entry.insert(
            "_webSocketMessages".into(),
            websocket_messages_json(log, &mut redactor),
        );
        if log.dropped > 0 {
            entry.insert("_webSocketMessagesDropped".into(), json!(log.dropped));
        }
        if let Some(why) = &log.unreadable {
            entry.insert("_webSocketUnreadable".into(), json!(redactor.text(why)));
        }
    }
    if let Some(kinvey) = kinvey_json(flow, kinvey, &mut redactor) {
        entry.insert("_kinvey".into(), kinvey);
    }
    redactor.earlier.add(&redactor.secrets);
    Value::Object(entry)
}

/// The `_kinvey` object of a flow that is a Kinvey exchange or has anomalies (as the
/// analysis finds them now; what is stored names the listed error).
fn kinvey_json(
    flow: &Flow,
    kinvey: &crate::kinvey::KinveySummary,
    redactor: &mut Redactor<'_>,
) -> Option<Value> {
    let analysis = crate::kinvey::analyze(flow);
    let shown = kinvey.request_id.is_some()
        || kinvey.error.is_some()
        || analysis.is_kinvey()
        || !analysis.anomalies.is_empty();
    if !shown {
        return None;
    }
    let primary = analysis.listed_error(kinvey);
    // The server's words (a name, those quoted in anomalies) are scrubbed like its body;
    // kinspect's own are not.
    let anomalies: Vec<Value> = analysis
        .anomalies
        .iter()
        .map(|a| json!({"code": a.code(), "message": a.message_with(&mut |t| redactor.text(t))}))
        .collect();
    let mut json = json!({
        "requestId": kinvey.request_id,
        "error": kinvey.error.as_deref().or(primary.map(|e| e.trimmed_name())).map(|e| redactor.text(e)),
        "description": primary.and_then(|e| e.description.as_deref().map(|d| redactor.text(d))),
        "debug": primary.and_then(|e| e.debug.as_deref().map(|d| redactor.text(d))),
        "class": kinvey.class.map(|c| c.as_str()),
        "known": kinvey.known_error(),
        "badge": kinvey.badge(),
        "anomalies": anomalies,
        "warnings": kinvey.warnings,
    });
    // A 207 batch: the element it is listed by, and every other failed element.
    if let Some(index) = primary.and_then(|e| e.index) {
        json["index"] = json!(index);
    }
    let others: Vec<Value> = analysis
        .errors
        .iter()
        .filter(|e| !primary.is_some_and(|p| std::ptr::eq(*e, p)))
        .map(|e| {
            json!({
                "error": redactor.text(e.trimmed_name()),
                "index": e.index,
                "description": e.description.as_deref().map(|d| redactor.text(d)),
                "class": e.class.as_str(),
                "known": e.known,
            })
        })
        .collect();
    if !others.is_empty() {
        json["otherErrors"] = Value::Array(others);
    }
    Some(json)
}
