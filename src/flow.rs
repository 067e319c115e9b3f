//! The `Flow` model: one recorded exchange (or tunnel) that every other module shares.
//!
//! A flow is built by the proxy while an exchange is under way and published once it has
//! completed or failed (see [`crate::events`]). Everything here is plain data: analysis,
//! storage and display are functions of a `Flow`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use compact_str::CompactString;
use serde::Serialize;

/// A flow's identifier, unique within one proxy run (and within one capture file).
pub type FlowId = u64;

/// What kind of exchange a flow records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowKind {
    /// An HTTP request/response exchange (plain or decrypted HTTPS).
    Http,
    /// A blind TCP tunnel after CONNECT: bytes passed through without being understood.
    Tunnel,
}

/// The HTTP version spoken on one leg of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum HttpVersion {
    /// HTTP/1.0.
    #[serde(rename = "HTTP/1.0")]
    Http10,
    /// HTTP/1.1.
    #[serde(rename = "HTTP/1.1")]
    Http11,
    /// HTTP/2.
    #[serde(rename = "HTTP/2")]
    Http2,
    /// Anything else hyper reports (HTTP/0.9, HTTP/3).
    #[serde(rename = "other")]
    Other,
}

impl HttpVersion {
    /// The version as written on the wire / in HAR (`HTTP/1.1`, `HTTP/2`).
    pub fn as_str(self) -> &'static str {
        match self {
            HttpVersion::Http10 => "HTTP/1.0",
            HttpVersion::Http11 => "HTTP/1.1",
            HttpVersion::Http2 => "HTTP/2",
            HttpVersion::Other => "other",
        }
    }
}

impl std::str::FromStr for HttpVersion {
    type Err = String;

    /// Parses what [`HttpVersion::as_str`] writes.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "HTTP/1.0" => Ok(HttpVersion::Http10),
            "HTTP/1.1" => Ok(HttpVersion::Http11),
            "HTTP/2" => Ok(HttpVersion::Http2),
            "other" => Ok(HttpVersion::Other),
            _ => Err(format!("unknown HTTP version {s:?}")),
        }
    }
}

impl From<http::Version> for HttpVersion {
    fn from(v: http::Version) -> Self {
        match v {
            http::Version::HTTP_10 => HttpVersion::Http10,
            http::Version::HTTP_11 => HttpVersion::Http11,
            http::Version::HTTP_2 => HttpVersion::Http2,
            _ => HttpVersion::Other,
        }
    }
}

/// One header field, in the order it was received. Values are kept as raw bytes because
/// HTTP allows values that are not UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderField {
    /// The field name (lower case: HTTP/2 requires it and hyper normalises HTTP/1 names).
    /// Names up to 24 bytes, nearly all of them, are stored inline, without an allocation.
    pub name: CompactString,
    /// The raw field value.
    pub value: Bytes,
}

impl HeaderField {
    /// The value as text: as UTF-8 when it is, else each byte as its ISO-8859-1
    /// character (HTTP's historical charset for field values, RFC 9110 §5.5), so that
    /// `caf\xe9` shows as `café` rather than with a replacement character.
    pub fn value_lossy(&self) -> std::borrow::Cow<'_, str> {
        field_value_text(&self.value)
    }
}

/// The charset the `charset` parameter of `headers`' content type names, if it names
/// one that is known (`iso-8859-1`, `windows-1252`, `shift_jis`, `utf-8`...).
pub fn declared_charset(headers: &Headers) -> Option<&'static encoding_rs::Encoding> {
    let label = media_type_parameter(&headers.get("content-type")?, "charset")?;
    encoding_rs::Encoding::for_label(label.as_bytes())
}

/// `d` in milliseconds to the microsecond, as HAR and JSON listings write times (no
/// float noise such as `0.23044699999999999`).
pub fn milliseconds(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0
}

/// The value of parameter `name` of a media type (`charset` of `text/html;
/// charset=utf-8`, `boundary` of a multipart body's) or of a field shaped like one
/// (`name` of `form-data; name="password"`), unquoted; a `;` inside quotes is part of
/// a value.
pub fn media_type_parameter(media_type: &str, name: &str) -> Option<String> {
    // The parameters: split at each `;` outside quotes.
    let mut parameters = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (at, c) in media_type.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ';' if !quoted => {
                parameters.push(&media_type[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    parameters.push(&media_type[start..]);
    parameters.into_iter().skip(1).find_map(|parameter| {
        let (key, value) = parameter.split_once('=')?;
        if !key.trim().eq_ignore_ascii_case(name) {
            return None;
        }
        let value = value.trim();
        let Some(quoted) = value.strip_prefix('"') else {
            return Some(value.to_owned());
        };
        // A quoted string: what is between its quotes (blanks too), escapes undone.
        let (mut unquoted, mut escaped) = (String::new(), false);
        for c in quoted.chars() {
            match c {
                _ if escaped => {
                    unquoted.push(c);
                    escaped = false;
                }
                '\\' => escaped = true,
                '"' => break,
                _ => unquoted.push(c),
            }
        }
        Some(unquoted)
    })
}

/// A header field value's bytes as text: as UTF-8 when they are, else each byte as its
/// ISO-8859-1 character (see [`HeaderField::value_lossy`]).
pub fn field_value_text(value: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(value) {
        Ok(text) => std::borrow::Cow::Borrowed(text),
        Err(_) => std::borrow::Cow::Owned(value.iter().map(|&b| char::from(b)).collect()),
    }
}

/// An ordered list of header fields with case-insensitive lookup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<HeaderField>);

impl<N: AsRef<str>, V: AsRef<[u8]>> FromIterator<(N, V)> for Headers {
    /// Fields from (name, value) pairs, names kept as given.
    fn from_iter<I: IntoIterator<Item = (N, V)>>(pairs: I) -> Self {
        let pairs: Vec<(N, V)> = pairs.into_iter().collect();
        Headers::packed(|| {
            pairs
                .iter()
                .map(|(name, value)| (name.as_ref(), value.as_ref()))
        })
    }
}

impl Headers {
    /// Copies a hyper header map, keeping its order.
    pub fn from_map(map: &http::HeaderMap) -> Self {
        Headers::packed(|| {
            map.iter()
                .map(|(name, value)| (name.as_str(), value.as_bytes()))
        })
    }

    /// Copies the fields with all their values in one buffer, each value a slice of it:
    /// one allocation per message instead of one per field (the proxy copies every
    /// header of every exchange).
    fn packed<'a, I>(fields: impl Fn() -> I) -> Self
    where
        I: Iterator<Item = (&'a str, &'a [u8])>,
    {
        let mut values = BytesMut::with_capacity(fields().map(|(_, v)| v.len()).sum());
        for (_, value) in fields() {
            values.extend_from_slice(value);
        }
        let values = values.freeze();
        let mut start = 0;
        Headers(
            fields()
                .map(|(name, value)| {
                    let end = start + value.len();
                    let field = HeaderField {
                        name: CompactString::from(name),
                        value: values.slice(start..end),
                    };
                    start = end;
                    field
                })
                .collect(),
        )
    }

    /// The first value of `name` (compared case-insensitively), as text.
    pub fn get(&self, name: &str) -> Option<std::borrow::Cow<'_, str>> {
        self.0
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
            .map(HeaderField::value_lossy)
    }

    /// Iterates over the fields in received order.
    pub fn iter(&self) -> std::slice::Iter<'_, HeaderField> {
        self.0.iter()
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no fields.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The capture copy of a message body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapturedBody {
    /// The bytes kept, as they crossed the proxy (still content-encoded), at most
    /// `--max-body` of them.
    pub bytes: Bytes,
    /// Every body byte that crossed the proxy, including those not kept.
    pub wire_size: u64,
    /// True when `bytes` holds only the first part of the body.
    pub truncated: bool,
    /// True when the body did not end normally (a peer aborted or reset mid-body).
    pub incomplete: bool,
}

impl CapturedBody {
    /// The bytes of a relayed connection (a tunnel, a switched protocol): counted, never
    /// kept.
    pub fn uncaptured(bytes: u64) -> Self {
        CapturedBody {
            bytes: Bytes::new(),
            wire_size: bytes,
            truncated: bytes > 0,
            incomplete: false,
        }
    }

    /// A body captured whole: every byte kept, ended normally.
    pub fn whole(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        CapturedBody {
            wire_size: bytes.len() as u64,
            bytes,
            truncated: false,
            incomplete: false,
        }
    }

    /// The kept bytes with `content_encoding` undone; a body cut at `--max-body` or one
    /// that broke off decodes as far as its kept bytes go.
    pub fn decoded(
        &self,
        content_encoding: Option<&str>,
    ) -> Result<Bytes, crate::decode::DecodeError> {
        match self.truncated || self.incomplete {
            true => crate::decode::decode_prefix(&self.bytes, content_encoding),
            false => crate::decode::decode_body(&self.bytes, content_encoding),
        }
    }
}

/// TLS parameters of one leg.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TlsInfo {
    /// The server name (SNI) the client sent, or that we sent upstream.
    pub sni: Option<String>,
    /// The negotiated ALPN protocol (`h2`, `http/1.1`).
    pub alpn: Option<String>,
    /// The negotiated TLS version (`TLSv1.3`).
    pub version: Option<String>,
}

/// HAR-style phase durations of an exchange. `None` means "does not apply" (HAR's -1),
/// e.g. `dns`/`connect`/`ssl` on a reused upstream connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timings {
    /// Waiting for a free upstream connection.
    pub blocked: Option<Duration>,
    /// DNS resolution of the upstream host.
    pub dns: Option<Duration>,
    /// TCP connect to the upstream host, including `ssl`.
    pub connect: Option<Duration>,
    /// TLS handshake with the upstream host.
    pub ssl: Option<Duration>,
    /// Sending the request upstream.
    pub send: Duration,
    /// Waiting for the first byte of the response.
    pub wait: Duration,
    /// Receiving the response body.
    pub receive: Duration,
}

impl Timings {
    /// Total duration as HAR counts it: every phase except `ssl` (inside `connect`).
    pub fn total(&self) -> Duration {
        self.counted()
            .into_iter()
            .flatten()
            .fold(Duration::ZERO, Duration::saturating_add)
    }

    /// The phases HAR's `time` adds up (`ssl` is inside `connect`); `None` for one that
    /// did not apply.
    pub fn counted(&self) -> [Option<Duration>; 6] {
        [
            self.blocked,
            self.dns,
            self.connect,
            Some(self.send),
            Some(self.wait),
            Some(self.receive),
        ]
    }
}

/// What went wrong with a flow that did not complete normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowErrorKind {
    /// The upstream host name did not resolve.
    Dns,
    /// The upstream refused or could not be reached.
    Connect,
    /// The upstream TLS handshake or certificate verification failed.
    Tls,
    /// The upstream did not answer in time.
    Timeout,
    /// The upstream broke the HTTP protocol or closed the connection.
    Protocol,
    /// The client went away before the exchange finished, or stalled in the middle of
    /// its request head past `--client-timeout` (kinspect answered 408).
    ClientAbort,
    /// The client refused kinspect's certificate or broke off the TLS handshake.
    ClientTls,
    /// The request could not be proxied as sent (bad target, loop back into the proxy).
    BadRequest,
    /// kinspect turned the client away: no or wrong `--proxy-auth` credentials, a public
    /// address, `--max-connections` reached.
    Refused,
    /// kinspect stopped before the exchange (or the connection it opened) ended.
    Stopped,
}

impl FlowErrorKind {
    /// Every kind.
    pub const ALL: [FlowErrorKind; 10] = [
        FlowErrorKind::Dns,
        FlowErrorKind::Connect,
        FlowErrorKind::Tls,
        FlowErrorKind::Timeout,
        FlowErrorKind::Protocol,
        FlowErrorKind::ClientAbort,
        FlowErrorKind::ClientTls,
        FlowErrorKind::BadRequest,
        FlowErrorKind::Refused,
        FlowErrorKind::Stopped,
    ];

    /// A short stable name, as used in `X-Kinspect-Error` and the capture store.
    pub fn as_str(self) -> &'static str {
        match self {
            FlowErrorKind::Dns => "dns",
            FlowErrorKind::Connect => "connect",
            FlowErrorKind::Tls => "tls",
            FlowErrorKind::Timeout => "timeout",
            FlowErrorKind::Protocol => "protocol",
            FlowErrorKind::ClientAbort => "client_abort",
            FlowErrorKind::ClientTls => "client_tls",
            FlowErrorKind::BadRequest => "bad_request",
            FlowErrorKind::Refused => "refused",
            FlowErrorKind::Stopped => "stopped",
        }
    }
}

impl std::str::FromStr for FlowErrorKind {
    type Err = String;

    /// Parses what [`FlowErrorKind::as_str`] writes.
    fn from_str(s: &str) -> Result<Self, String> {
        FlowErrorKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown error kind {s:?}"))
    }
}

impl FlowKind {
    /// `http` or `tunnel`.
    pub fn as_str(self) -> &'static str {
        match self {
            FlowKind::Http => "http",
            FlowKind::Tunnel => "tunnel",
        }
    }
}

impl std::str::FromStr for FlowKind {
    type Err = String;

    /// Parses what [`FlowKind::as_str`] writes.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "http" => Ok(FlowKind::Http),
            "tunnel" => Ok(FlowKind::Tunnel),
            _ => Err(format!("unknown flow kind {s:?}")),
        }
    }
}

/// The error a failed flow carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlowError {
    /// The category.
    pub kind: FlowErrorKind,
    /// What failed, on which host, and what to do about it.
    pub message: String,
}

/// The request side of a flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// The method (`GET`, `CONNECT`, ...).
    pub method: String,
    /// The full URL (`https://host:port/path?query`); `host:port` for tunnels.
    pub url: String,
    /// The version the client spoke.
    pub version: HttpVersion,
    /// The headers as the client sent them.
    pub headers: Headers,
    /// The capture copy of the body.
    pub body: CapturedBody,
}

/// The response side of a flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseRecord {
    /// The status code.
    pub status: u16,
    /// The version the upstream spoke (or the client, for proxy-made responses).
    pub version: HttpVersion,
    /// The headers as the upstream sent them.
    pub headers: Headers,
    /// The capture copy of the body.
    pub body: CapturedBody,
    /// True when the proxy made this response itself (an error answer), not the server.
    pub from_proxy: bool,
}

/// One recorded exchange.
#[derive(Debug, Clone, PartialEq)]
pub struct Flow {
    /// Identifier, unique within a run.
    pub id: FlowId,
    /// HTTP exchange or blind tunnel.
    pub kind: FlowKind,
    /// The client's address.
    pub client_addr: SocketAddr,
    /// When the proxy received the request (or the CONNECT, for tunnels).
    pub started_at: SystemTime,
    /// `http` or `https`.
    pub scheme: String,
    /// The target host.
    pub host: String,
    /// The target port.
    pub port: u16,
    /// The request.
    pub request: RequestRecord,
    /// The response, if one was received or made.
    pub response: Option<ResponseRecord>,
    /// Phase durations.
    pub timings: Timings,
    /// The upstream server's IP address, when a connection was made.
    pub server_ip: Option<IpAddr>,
    /// TLS between client and proxy, when intercepted (shared by the flows of one
    /// connection).
    pub client_tls: Option<Arc<TlsInfo>>,
    /// TLS between proxy and upstream (shared by the flows of one connection).
    pub server_tls: Option<Arc<TlsInfo>>,
    /// Why the flow failed, if it did.
    pub error: Option<FlowError>,
    /// The messages of a WebSocket connection, when the flow switched to one.
    pub websocket: Option<Box<crate::websocket::MessageLog>>,
    /// The flow whose request this one sent again from the UI (`R`, `e`), if it did.
    pub replay_of: Option<FlowId>,
}

/// A client address as shown to people: `-` when it is not known.
pub struct ShownClient(pub Option<SocketAddr>);

impl std::fmt::Display for ShownClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(addr) => addr.fmt(f),
            None => f.write_str("-"),
        }
    }
}

impl Flow {
    /// The bytes of a relayed connection (a tunnel, a WebSocket): `up` from the client,
    /// `down` from the server, counted as its bodies, never kept.
    pub fn record_relayed(&mut self, up: u64, down: u64) {
        self.request.body = CapturedBody::uncaptured(up);
        if let Some(response) = self.response.as_mut() {
            response.body = CapturedBody::uncaptured(down);
        }
    }

    /// The client's address, unless it is not known: a HAR does not record it, so an
    /// imported flow has `0.0.0.0:0`.
    pub fn client_known(&self) -> Option<SocketAddr> {
        let addr = self.client_addr;
        (!(addr.ip().is_unspecified() && addr.port() == 0)).then_some(addr)
    }

    /// An HTTP/1.1 exchange of `method` on `url` from `client_addr`, started at the Unix
    /// epoch, with no headers, bodies, timings or TLS, and a response of `status` if
    /// given: the starting point for flows built by hand. Scheme, host and port come
    /// from `url`.
    pub fn exchange(
        id: FlowId,
        client_addr: SocketAddr,
        method: &str,
        url: &str,
        status: Option<u16>,
    ) -> Flow {
        let uri: Option<http::Uri> = url.parse().ok();
        let https = uri.as_ref().and_then(|u| u.scheme_str()) == Some("https");
        Flow {
            id,
            kind: FlowKind::Http,
            client_addr,
            started_at: SystemTime::UNIX_EPOCH,
            scheme: if https { "https" } else { "http" }.into(),
            host: unbracketed(uri.as_ref().and_then(|u| u.host()).unwrap_or_default()).to_owned(),
            port: uri
                .as_ref()
                .and_then(|u| u.port_u16())
                .unwrap_or(if https { 443 } else { 80 }),
            request: RequestRecord {
                method: method.to_owned(),
                url: url.to_owned(),
                version: HttpVersion::Http11,
                headers: Headers::default(),
                body: CapturedBody::default(),
            },
            response: status.map(|status| ResponseRecord {
                status,
                version: HttpVersion::Http11,
                headers: Headers::default(),
                body: CapturedBody::default(),
                from_proxy: false,
            }),
            timings: Timings::default(),
            server_ip: None,
            client_tls: None,
            server_tls: None,
            error: None,
            websocket: None,
            replay_of: None,
        }
    }

    /// The response status, if there is a response.
    pub fn status(&self) -> Option<u16> {
        self.response.as_ref().map(|r| r.status)
    }

    /// The total duration of the exchange.
    pub fn duration(&self) -> Duration {
        self.timings.total()
    }

    /// The `Content-Encoding` of the response body, if any.
    pub fn response_encoding(&self) -> Option<std::borrow::Cow<'_, str>> {
        self.response
            .as_ref()
            .and_then(|r| r.headers.get("content-encoding"))
    }

    /// The response body with its `Content-Encoding` undone (gzip, deflate, br, zstd), or
    /// `None` when there is no response or it could not be decoded.
    pub fn decoded_response_body(&self) -> Option<Bytes> {
        let response = self.response.as_ref()?;
        let encoding = response.headers.get("content-encoding");
        response.body.decoded(encoding.as_deref()).ok()
    }

    /// The request body with its `Content-Encoding` undone.
    pub fn decoded_request_body(&self) -> Option<Bytes> {
        let encoding = self.request.headers.get("content-encoding");
        self.request.body.decoded(encoding.as_deref()).ok()
    }
}

/// The format of [`utc_timestamp`].
const UTC_TIMESTAMP: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
);

/// A host as flows keep it: an IPv6 literal without the brackets a URL puts around it.
pub fn unbracketed(host: &str) -> &str {
    host.trim_start_matches('[').trim_end_matches(']')
}

/// `bytes` as text when they are UTF-8. The first part of a body (`cut`) may end inside
/// a character: that character is left out instead of the whole being taken for binary.
pub fn utf8_text(bytes: &[u8], cut: bool) -> Option<&str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Some(text),
        Err(e) if cut && e.error_len().is_none() => {
            std::str::from_utf8(&bytes[..e.valid_up_to()]).ok()
        }
        Err(_) => None,
    }
}

/// `text` safe to print on a terminal: control characters other than newline and tab
/// (an escape sequence from a server's body, say) written out as `\u{1b}`.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    escape_controls(text, |c| c.is_control() && c != '\n' && c != '\t')
}

/// What a URL may not hold as it is, though clients and HAR writers leave it in (curl's
/// `?q="json"`, a Kinvey query's `{"name":"a b"}`), beside bytes past ASCII.
const NOT_IN_URLS: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'<')
    .add(b'>')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// `url` as it is when it parses as a URI, else with what a URL may not hold
/// percent-encoded, as a client would have sent it.
pub fn escaped_url(url: &[u8]) -> String {
    match std::str::from_utf8(url)
        .ok()
        .filter(|u| u.parse::<http::Uri>().is_ok())
    {
        Some(url) => url.to_owned(),
        None => percent_encoding::percent_encode(url, NOT_IN_URLS).to_string(),
    }
}

/// [`printable`] on one line: newlines and tabs escaped too (a server's text must not
/// start a line of its own in a report or a listing).
pub fn printable_line(text: &str) -> std::borrow::Cow<'_, str> {
    escape_controls(text, char::is_control)
}

fn escape_controls(text: &str, escaped: impl Fn(char) -> bool) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(&escaped) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if escaped(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A UTC timestamp with milliseconds, as HAR and the headless output write it
/// (`2026-11-24T23:17:10.123Z`).
pub fn utc_timestamp(at: SystemTime) -> String {
    time::OffsetDateTime::from(at)
        .format(UTC_TIMESTAMP)
        .unwrap_or_else(|_| "invalid-time".into())
}

/// Writes [`utc_timestamp`] into `out`, without building a string.
pub fn write_utc_timestamp(out: &mut impl std::io::Write, at: SystemTime) -> std::io::Result<()> {
    match time::OffsetDateTime::from(at).format_into(out, UTC_TIMESTAMP) {
        Ok(_) => Ok(()),
        Err(time::error::Format::StdIo(e)) => Err(e),
        Err(_) => out.write_all(b"invalid-time"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_value_is_utf8_when_it_is_else_iso_8859_1() {
        let value = |bytes: &'static [u8]| HeaderField {
            name: "x".into(),
            value: Bytes::from_static(bytes),
        };
        assert_eq!(value(b"caf\xc3\xa9").value_lossy(), "café");
        assert_eq!(value(b"caf\xe9").value_lossy(), "café");
        assert_eq!(value(b"\xff\xfeok").value_lossy(), "ÿþok");
    }

    #[test]
    fn every_error_kind_is_listed_once_and_reads_back() {
        // A new kind fails to compile here until it has its place in ALL.
        let place = |kind: FlowErrorKind| match kind {
            FlowErrorKind::Dns => 0,
            FlowErrorKind::Connect => 1,
            FlowErrorKind::Tls => 2,
            FlowErrorKind::Timeout => 3,
            FlowErrorKind::Protocol => 4,
            FlowErrorKind::ClientAbort => 5,
            FlowErrorKind::ClientTls => 6,
            FlowErrorKind::BadRequest => 7,
            FlowErrorKind::Refused => 8,
            FlowErrorKind::Stopped => 9,
        };
        for (i, kind) in FlowErrorKind::ALL.into_iter().enumerate() {
            assert_eq!(place(kind), i);
            assert_eq!(kind.as_str().parse::<FlowErrorKind>(), Ok(kind));
        }
    }

    #[test]
    fn total_time_saturates_instead_of_overflowing() {
        let timings = Timings {
            wait: Duration::MAX,
            receive: Duration::from_secs(1),
            ..Timings::default()
        };
        assert_eq!(timings.total(), Duration::MAX);
    }

    #[test]
    fn copied_headers_keep_order_and_values_in_one_buffer() {
        let mut map = http::HeaderMap::new();
        map.append("content-type", "application/json".parse().unwrap());
        map.append("x-empty", http::HeaderValue::from_static(""));
        map.append("set-cookie", "a=1".parse().unwrap());
        map.append("set-cookie", "b=2".parse().unwrap());
        map.append(
            "x-kinvey-a-rather-long-custom-header-name",
            "v".parse().unwrap(),
        );
        let headers = Headers::from_map(&map);
        let pairs: Vec<(&str, &[u8])> = headers
            .iter()
            .map(|f| (f.name.as_str(), &f.value[..]))
            .collect();
        assert_eq!(
            pairs,
            [
                ("content-type", &b"application/json"[..]),
                ("x-empty", b""),
                ("set-cookie", b"a=1"),
                ("set-cookie", b"b=2"),
                ("x-kinvey-a-rather-long-custom-header-name", b"v"),
            ]
        );
        // Each value starts where the one before it ends: one copy, not one per field.
        let first = headers.0[0].value.as_ptr() as usize;
        let cookie = headers.0[2].value.as_ptr() as usize;
        let last = headers.0[4].value.as_ptr() as usize;
        assert_eq!(cookie, first + "application/json".len());
        assert_eq!(last, cookie + "a=1b=2".len());
        assert_eq!(Headers::from_iter(pairs.iter().copied()), headers);
    }
}
