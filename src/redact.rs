//! Redaction of secrets (credentials, tokens, cookies, app secrets) from what kinspect
//! hands to other people: support reports and HAR exports.

use base64::Engine;

use crate::flow::Flow;

/// What replaces a secret.
pub const REDACTED: &str = "[redacted]";

/// True when `bytes` hold a [`REDACTED`] marker: what was there cannot be told.
pub fn holds_redacted(bytes: &[u8]) -> bool {
    memchr::memmem::find(bytes, REDACTED.as_bytes()).is_some()
}

/// True for headers whose values are secrets: credentials, cookies, and any field
/// named for a token, secret, password or API key (`X-Auth-Token`, `X-Api-Key`).
pub fn is_secret_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    matches!(
        name.as_str(),
        "authorization" | "proxy-authorization" | "cookie" | "set-cookie"
    ) || [
        "token",
        "secret",
        "password",
        "api-key",
        "apikey",
        "api_key",
        "subscription-key",
        "access-key",
    ]
    .iter()
    .any(|word| name.contains(word))
        || (name.starts_with("x-kinvey-") && name.contains("auth"))
}

/// `Some(true)` for a `Set-Cookie` field, `Some(false)` for a `Cookie` one.
pub fn cookie_field(name: &str) -> Option<bool> {
    match name {
        _ if name.eq_ignore_ascii_case("set-cookie") => Some(true),
        _ if name.eq_ignore_ascii_case("cookie") => Some(false),
        _ => None,
    }
}

/// The cookies of a `Cookie` field's value (`set_cookie` false) or a `Set-Cookie` one's,
/// as (name, value): a `Cookie`'s `;`-separated pairs, the first pair of each line of a
/// `Set-Cookie` (browsers' HAR files put one cookie a line).
pub fn cookie_pairs(value: &str, set_cookie: bool) -> Vec<(&str, &str)> {
    let mut pairs = Vec::new();
    for line in value.split('\n') {
        let pieces = line
            .split(';')
            .take(if set_cookie { 1 } else { usize::MAX });
        for piece in pieces {
            if let Some((name, value)) = piece.split_once('=') {
                pairs.push((name.trim(), value.trim()));
            }
        }
    }
    pairs
}

/// Every value in a `Cookie` or `Set-Cookie` field's `value` that may be a cookie's, to
/// scrub wherever else it turns up: pieces between `;`, `,` and line ends, their quotes
/// trimmed; a `Set-Cookie`'s attributes left out, and of its pieces without `=` only
/// those that are no flag and hold no space (a cookie's value never does; a date does).
pub fn cookie_secret_values(value: &str, set_cookie: bool) -> Vec<&str> {
    const ATTRIBUTES: [&str; 11] = [
        "path",
        "domain",
        "expires",
        "max-age",
        "samesite",
        "secure",
        "httponly",
        "partitioned",
        "priority",
        "comment",
        "version",
    ];
    let attribute =
        |name: &str| set_cookie && ATTRIBUTES.iter().any(|a| a.eq_ignore_ascii_case(name));
    let mut values = Vec::new();
    let segments = value.split([',', '\n']);
    // A segment's first piece is a cookie, whatever its name (`version=…`).
    let pieces = segments.flat_map(|segment| segment.split(';').map(str::trim).enumerate());
    for (i, piece) in pieces {
        match piece.split_once('=') {
            Some((_, value)) if i == 0 => values.push(value.trim().trim_matches('"')),
            Some((name, _)) if attribute(name.trim()) => {}
            Some((_, value)) => values.push(value.trim().trim_matches('"')),
            None if attribute(piece) || (set_cookie && piece.contains(' ')) => {}
            None => values.push(piece.trim_matches('"')),
        }
    }
    values
}

/// A `Cookie` or `Set-Cookie` field's `value` with every cookie's value [`REDACTED`]: the
/// names stay, and a `Set-Cookie`'s attributes when each is one whose value cannot
/// carry a secret of its own (`Secure`, `HttpOnly`, `Partitioned`, `SameSite` and
/// `Priority` words, `Max-Age` digits, a `Domain`, an `Expires` date, a `Path` of path
/// characters). `None` when some part does not read so (a cookie without `=`, cookies
/// folded into one line with commas): then all of it is a secret.
pub fn redact_cookie_field(value: &str, set_cookie: bool) -> Option<String> {
    let mut lines = Vec::new();
    for line in value.split('\n') {
        let mut parts = Vec::new();
        for (i, piece) in line.split(';').map(str::trim).enumerate() {
            if piece.is_empty() {
                continue;
            }
            if i == 0 || !set_cookie {
                let (name, _) = piece.split_once('=')?;
                parts.push(format!("{}={REDACTED}", name.trim()));
            } else if is_plain_cookie_attribute(piece) {
                parts.push(piece.to_owned());
            } else {
                return None;
            }
        }
        lines.push(parts.join("; "));
    }
    Some(lines.join("\n"))
}

fn is_plain_cookie_attribute(piece: &str) -> bool {
    let (name, value) = match piece.split_once('=') {
        Some((name, value)) => (name.trim(), Some(value.trim())),
        None => (piece, None),
    };
    let made_of = |ok: fn(char) -> bool| value.is_some_and(|v| !v.is_empty() && v.chars().all(ok));
    match name.to_ascii_lowercase().as_str() {
        "secure" | "httponly" | "partitioned" => value.is_none(),
        "samesite" | "priority" => made_of(|c| c.is_ascii_alphabetic()),
        "max-age" => made_of(|c| c.is_ascii_digit() || c == '-'),
        "domain" => made_of(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-')),
        "expires" => made_of(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | ',' | ':' | '-')),
        "path" => {
            made_of(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '~'))
        }
        _ => false,
    }
}

/// True for headers whose values are URLs, whose secret parameters are redacted as a
/// request's URL is (a login's redirect carries its `code` in `Location`).
pub fn is_url_header(name: &str) -> bool {
    ["location", "content-location", "referer"]
        .iter()
        .any(|url| name.eq_ignore_ascii_case(url))
}

/// True for query parameters whose values are secrets.
pub fn is_secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "token",
        "secret",
        "password",
        "passwd",
        "signature",
        "session",
        "credential",
    ]
    .iter()
    .any(|word| name.contains(word))
        || matches!(
            name.as_str(),
            "auth" | "sig" | "api_key" | "apikey" | "code" | "key" | "pwd" | "pass" | "jwt"
        )
}

/// True for a JSON field whose value is replaced in an export: a secret parameter's
/// name, but not the bare `key` and `code` that JSON bodies use for ordinary values
/// (`{"key":"color"}`, an error's `"code":"ResourceNotFound"`).
pub fn is_secret_json_field(name: &str) -> bool {
    is_secret_param(name) && !matches!(name.to_ascii_lowercase().as_str(), "key" | "code")
}

/// True for a JSON field whose value is a credential worth finding elsewhere (a
/// login's `password`, a session's `authtoken`): a narrower test than
/// [`is_secret_param`], whose `key`, `code` and `*_tokens` counts would carry ordinary
/// words and numbers into every text of the export.
fn is_credential_field(name: &str) -> bool {
    credential_word(name, false)
}

/// True for a JSON field that is a credential as a whole (`password`, `credentials`,
/// `client_secret`, `token`): all its value is secret, objects and arrays too. Not
/// `passwordPolicy` or `tokenUsage`, whose contents are ordinary settings and counts,
/// nor `tokens` (a count of them, as often as a list).
pub fn holds_credentials(name: &str) -> bool {
    credential_word(name, true) || name.eq_ignore_ascii_case("token")
}

fn credential_word(name: &str, whole: bool) -> bool {
    let name = name.to_ascii_lowercase().replace(['-', '_'], "");
    [
        "password",
        "passwd",
        "secret",
        "credential",
        "authtoken",
        "accesstoken",
        "refreshtoken",
        "idtoken",
        "sessiontoken",
        "apikey",
        "privatekey",
        "jwt",
    ]
    .iter()
    .any(|word| match whole {
        true => {
            name == *word
                || name.strip_suffix('s') == Some(word)
                || name.ends_with(&format!("client{word}"))
        }
        false => name.contains(word),
    })
}

/// A body as text to find credentials in: UTF-8 as it is; JSON or a form in another
/// charset (ISO-8859-1) with its bytes that are no UTF-8 replaced, since a credential is
/// ASCII whatever else the body holds. `None` for a binary body (a PNG, a ZIP): one
/// that does not begin as JSON or a form does.
fn credential_text(body: &[u8]) -> Option<std::borrow::Cow<'_, str>> {
    if let Ok(text) = std::str::from_utf8(body) {
        return Some(std::borrow::Cow::Borrowed(text));
    }
    let first = body.iter().find(|b| !b.is_ascii_whitespace())?;
    let textual = first.is_ascii_alphanumeric() || b"{[".contains(first);
    textual.then(|| String::from_utf8_lossy(body))
}

/// A WebSocket's text messages read for credentials, from its first.
const MESSAGES_READ_FOR_SECRETS: usize = 256;

/// Most values one flow's JSON bodies add to its secrets.
const MAX_JSON_SECRETS: usize = 64;

/// True for an `application/x-www-form-urlencoded` body (a login form, an OAuth token
/// request), whose fields are `name=value` pairs like a query string's.
pub fn is_form(content_type: &str) -> bool {
    content_type.split(';').next().is_some_and(|t| {
        t.trim()
            .eq_ignore_ascii_case("application/x-www-form-urlencoded")
    })
}

/// True for a body to redact as a form: labelled one, or shaped like one whatever its
/// label (`name=value` pairs joined by `&`, no spaces, quotes or brackets: nothing JSON
/// or XML is). A HAR's form fields (`postData.params`) become such a body even when the
/// request said JSON.
pub fn is_form_body(content_type: Option<&str>, body: &str) -> bool {
    // Tested on every body of an export: the cheapest test first (one fast scan for
    // `=`, which nearly every body that is no form lacks), then one pass over its bytes.
    content_type.is_some_and(is_form)
        || (memchr::memchr(b'=', body.as_bytes()).is_some()
            && !body.bytes().any(|b| {
                matches!(
                    b,
                    b' ' | b'\t'
                        | b'\n'
                        | b'\r'
                        | 0x0c
                        | b'"'
                        | b'{'
                        | b'}'
                        | b'['
                        | b']'
                        | b'<'
                        | b'>'
                )
            })
            && body.split('&').all(|pair| pair.contains('=')))
}

/// A query string or form field name or value, decoded (`+` is a space).
pub fn decode_form_component(component: &str) -> String {
    percent_encoding::percent_decode_str(&component.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// The fields of a query string or form body, names and values decoded; a field
/// without `=` has an empty value, as browsers read it.
pub fn form_fields(pairs: &str) -> impl Iterator<Item = (String, String)> + '_ {
    form_fields_in(pairs, None)
}

/// [`form_fields`] of a form in `charset` (`pairs` decoded from it already): a form
/// sent as `application/x-www-form-urlencoded; charset=iso-8859-1` escapes `é` as
/// `%E9`. UTF-8 when `None`.
fn form_fields_in<'a>(
    pairs: &'a str,
    charset: Option<&'static encoding_rs::Encoding>,
) -> impl Iterator<Item = (String, String)> + 'a {
    // UTF-16 forms (never seen) are read as the UTF-8 encoding_rs writes for them.
    let charset = charset.map(encoding_rs::Encoding::output_encoding);
    let decode = move |component: &str| match charset {
        Some(charset) if charset != encoding_rs::UTF_8 => {
            // Back to the form's bytes (raw characters and escapes alike), then text.
            let spaced = component.replace('+', " ");
            let (raw, _, _) = charset.encode(&spaced);
            let bytes: Vec<u8> = percent_encoding::percent_decode(&raw).collect();
            charset.decode_without_bom_handling(&bytes).0.into_owned()
        }
        _ => decode_form_component(component),
    };
    pairs.split('&').filter(|p| !p.is_empty()).map(move |pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(name), decode(value))
    })
}

/// The fields of a form body (`application/x-www-form-urlencoded`, as `headers` say),
/// decoded from its content-encoding and its charset; a form cut at `--max-body` leaves
/// its last field out, as it may be cut too. `None` for a body that is no form, or is
/// binary whatever its label (a file sent with curl's `--data-binary`, labelled a form
/// by default): it has no fields, only bytes.
pub fn form_body_fields(
    body: &crate::flow::CapturedBody,
    headers: &crate::flow::Headers,
) -> Option<Vec<(String, String)>> {
    if !headers.get("content-type").as_deref().is_some_and(is_form) {
        return None;
    }
    let encoding = headers.get("content-encoding");
    let form = body.decoded(encoding.as_deref()).ok()?;
    let binary = form
        .iter()
        .any(|&b| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r'));
    if binary {
        return None;
    }
    let charset = crate::flow::declared_charset(headers);
    let form = match charset {
        Some(charset) => charset.decode_without_bom_handling(&form).0,
        None => String::from_utf8_lossy(&form),
    };
    let form = match body.truncated {
        true => form.rsplit_once('&').map_or("", |(whole, _)| whole),
        false => &form,
    };
    Some(form_fields_in(form, charset).collect())
}

/// The query string of `url`: what follows its `?`, up to any `#`.
pub fn query_of(url: &str) -> &str {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    query.split('#').next().unwrap_or("")
}

/// The `name=value` pairs of a query string or form body, names decoded, values raw.
fn form_pairs(pairs: &str) -> impl Iterator<Item = (String, &str)> {
    pairs
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, value)| (decode_form_component(name), value))
}

/// `pairs` (a query string or a form body) with the values of secret fields replaced.
pub fn redact_form(pairs: &str) -> String {
    pairs
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_secret_param(&decode_form_component(name)) => {
                format!("{name}={REDACTED}")
            }
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// The boundary of a `multipart/form-data` body (a file upload, a login form sent by
/// `FormData`), from its `Content-Type`.
pub fn form_data_boundary(content_type: &str) -> Option<String> {
    let media_type = content_type.split(';').next()?.trim();
    if !media_type.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    crate::flow::media_type_parameter(content_type, "boundary").filter(|b| !b.is_empty())
}

/// One part of a `multipart/form-data` body: the field it carries and where its
/// content lies in the body.
#[derive(Debug, PartialEq, Eq)]
struct FormDataPart {
    name: String,
    content: std::ops::Range<usize>,
}

/// The parts of a `multipart/form-data` body separated by `boundary` (RFC 7578), lines
/// ended by CRLF or LF alone. A body cut short (at `--max-body`) ends its last part
/// where it ends; a part without a name, or whose head never ends, is left out.
fn form_data_parts(body: &[u8], boundary: &str) -> Vec<FormDataPart> {
    let delimiter = format!("--{boundary}");
    // A delimiter, or the closing one (`--` after it), is a line of its own: blanks may
    // follow it, nothing else.
    let is_delimiter = |at: usize| {
        let rest = &body[at + delimiter.len()..];
        let rest = rest.strip_prefix(b"--").unwrap_or(rest);
        let padding = rest
            .iter()
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count();
        (at == 0 || body[at - 1] == b'\n')
            && matches!(rest.get(padding), None | Some(b'\r' | b'\n'))
    };
    let starts: Vec<usize> = memchr::memmem::find_iter(body, delimiter.as_bytes())
        .filter(|&at| is_delimiter(at))
        .collect();
    let mut parts = Vec::new();
    for (i, &start) in starts.iter().enumerate() {
        let after = start + delimiter.len();
        if body[after..].starts_with(b"--") {
            break;
        }
        let Some(line_end) = memchr::memchr(b'\n', &body[after..]) else {
            break;
        };
        let head_start = after + line_end + 1;
        let end = match starts.get(i + 1) {
            // The line break before the next delimiter belongs to it.
            Some(&next) => {
                let end = next.saturating_sub(1).max(head_start);
                match end > head_start && body[end - 1] == b'\r' {
                    true => end - 1,
                    false => end,
                }
            }
            None => body.len(),
        };
        let region = &body[head_start..end];
        let Some((head_len, blank_len)) = [&b"\r\n\r\n"[..], b"\n\n"]
            .iter()
            .filter_map(|blank| Some((memchr::memmem::find(region, blank)?, blank.len())))
            .min()
        else {
            continue;
        };
        let head = String::from_utf8_lossy(&region[..head_len]);
        let name = head.lines().find_map(|line| {
            let (field, value) = line.split_once(':')?;
            field
                .trim()
                .eq_ignore_ascii_case("content-disposition")
                .then(|| crate::flow::media_type_parameter(value, "name"))
                .flatten()
        });
        if let Some(name) = name {
            let content_start = head_start + head_len + blank_len;
            parts.push(FormDataPart {
                name,
                content: content_start.min(end)..end,
            });
        }
    }
    parts
}

/// Most values one flow's multipart bodies add to its secrets, and the longest value
/// taken (a longer part is a file, not a credential).
const MAX_FORM_DATA_SECRETS: usize = 64;
const MAX_FORM_DATA_SECRET_LEN: usize = 4096;

/// The contents of the credential parts of a `multipart/form-data` body (`password`,
/// `api_key`; not an upload's `key`, the name its file is stored under).
fn form_data_secrets<'a>(body: &'a [u8], boundary: &str) -> impl Iterator<Item = &'a [u8]> {
    form_data_parts(body, boundary)
        .into_iter()
        .filter(|part| is_credential_field(&part.name))
        .map(move |part| &body[part.content])
}

/// `body` (`multipart/form-data` with `boundary`) with the content of every part named
/// as a secret JSON field is (`password`, `token`, `api_key`; not a bare `key` or
/// `code`, an upload's file name and a promotion's) replaced, and how many were. Bytes,
/// not text: a form with a file in it is often no UTF-8.
pub fn redact_form_data(body: &[u8], boundary: &str) -> (Vec<u8>, usize) {
    let mut redacted = Vec::with_capacity(body.len());
    let mut copied = 0;
    let mut count = 0;
    for part in form_data_parts(body, boundary) {
        let content = &body[part.content.clone()];
        if !is_secret_json_field(&part.name) || content.is_empty() || content == REDACTED.as_bytes()
        {
            continue;
        }
        redacted.extend_from_slice(&body[copied..part.content.start]);
        redacted.extend_from_slice(REDACTED.as_bytes());
        copied = part.content.end;
        count += 1;
    }
    redacted.extend_from_slice(&body[copied..]);
    (redacted, count)
}

/// `url` with the password of its user info (`user:password@`) and the values of secret
/// query parameters replaced, in the fragment too (where OAuth's implicit flow puts its
/// `access_token`).
pub fn redact_url(url: &str) -> String {
    let url = redact_user_info(url);
    let (before_fragment, fragment) = match url.split_once('#') {
        Some((before, fragment)) => (before, Some(fragment)),
        None => (url.as_str(), None),
    };
    let mut redacted = match before_fragment.split_once('?') {
        Some((base, query)) => format!("{base}?{}", redact_form(query)),
        None => before_fragment.to_owned(),
    };
    if let Some(fragment) = fragment {
        redacted.push('#');
        redacted.push_str(&redact_form(fragment));
    }
    redacted
}

/// The password in `scheme://user:password@host…`, if `url` has one.
fn user_info_password(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let (user_info, _) = authority.rsplit_once('@')?;
    user_info.split_once(':').map(|(_, password)| password)
}

/// `url` with the password in `scheme://user:password@host` replaced.
fn redact_user_info(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, after) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((user_info, host)) if user_info.contains(':') => {
            let user = user_info
                .split_once(':')
                .map_or(user_info, |(user, _)| user);
            format!("{scheme}://{user}:{REDACTED}@{host}{after}")
        }
        _ => url.to_owned(),
    }
}

/// Every string inside `value`.
fn string_leaves<'a>(value: &'a serde_json::Value, out: &mut Vec<&'a str>) {
    match value {
        serde_json::Value::String(text) => out.push(text),
        serde_json::Value::Array(items) => items.iter().for_each(|item| string_leaves(item, out)),
        serde_json::Value::Object(fields) => fields.values().for_each(|v| string_leaves(v, out)),
        _ => {}
    }
}

/// The JSON of a body, however the body holds it: one document, a document a line
/// (NDJSON), documents one after another, a document cut short (at `--max-body`), or a
/// document then other bytes; a byte-order mark before it.
#[derive(Debug)]
struct JsonBody {
    bom: bool,
    segments: Vec<Segment>,
}

/// A stretch of a [`JsonBody`].
#[derive(Debug)]
enum Segment {
    /// A whole JSON document.
    Json(serde_json::Value),
    /// Text between, around or after documents, or a document that does not parse
    /// (cut short): its secret-named fields are found by their `"name": "value"` shape.
    Raw(String),
}

/// Documents that fail to parse before the rest of a body is taken as raw text: each
/// failed attempt reads on to the error, so unbounded attempts could take quadratic time.
const MAX_FAILED_DOCUMENTS: usize = 64;

impl JsonBody {
    /// The JSON of `text`, or `None` when it opens no object or array.
    fn of(text: &str) -> Option<JsonBody> {
        let body = text.trim_start_matches('\u{feff}');
        let bom = body.len() != text.len();
        if !body.trim_start().starts_with(['{', '[']) {
            return None;
        }
        if let Ok(whole) = serde_json::from_str(body) {
            let segments = vec![Segment::Json(whole)];
            return Some(JsonBody { bom, segments });
        }
        let mut segments = Vec::new();
        let raw = |segments: &mut Vec<Segment>, text: &str| {
            if !text.is_empty() {
                segments.push(Segment::Raw(text.to_owned()));
            }
        };
        let (mut at, mut failed) = (0, 0);
        while at < body.len() {
            let Some(start) = body[at..].find(['{', '[']).map(|i| at + i) else {
                break;
            };
            raw(&mut segments, &body[at..start]);
            let mut stream = serde_json::Deserializer::from_str(&body[start..]).into_iter();
            match stream.next() {
                Some(Ok(document)) => {
                    segments.push(Segment::Json(document));
                    at = start + stream.byte_offset();
                }
                // Cut short: the rest is one unfinished document.
                Some(Err(e)) if e.is_eof() => {
                    at = start;
                    break;
                }
                _ => {
                    failed += 1;
                    let end = body[start..]
                        .find('\n')
                        .map_or(body.len(), |i| start + i + 1);
                    raw(&mut segments, &body[start..end]);
                    at = end;
                    if failed >= MAX_FAILED_DOCUMENTS {
                        break;
                    }
                }
            }
        }
        raw(&mut segments, &body[at..]);
        Some(JsonBody { bom, segments })
    }

    /// Its documents.
    fn documents(&mut self) -> impl Iterator<Item = &mut serde_json::Value> {
        self.segments
            .iter_mut()
            .filter_map(|segment| match segment {
                Segment::Json(document) => Some(document),
                Segment::Raw(_) => None,
            })
    }

    /// Its text that is not in whole documents.
    fn raw(&mut self) -> impl Iterator<Item = &mut String> {
        self.segments
            .iter_mut()
            .filter_map(|segment| match segment {
                Segment::Raw(text) => Some(text),
                Segment::Json(_) => None,
            })
    }

    /// The body again, its documents as they are now.
    fn text(&self) -> String {
        let mut out = String::from(if self.bom { "\u{feff}" } else { "" });
        for segment in &self.segments {
            match segment {
                Segment::Json(document) => out.push_str(&document.to_string()),
                Segment::Raw(text) => out.push_str(text),
            }
        }
        out
    }
}

/// A `"name": "value"` pair in text that is not whole JSON.
static LOOSE_FIELD: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    regex::Regex::new(r#""([^"\\]{1,64})"\s*:\s*"((?:[^"\\]|\\.)*)""#)
        .expect("the pattern is valid")
});

/// `text` (not whole JSON) with the values of its secret-named `"name": "value"` pairs
/// [`REDACTED`], and how many were.
fn redact_loose_fields(text: &str) -> (String, usize) {
    let mut count = 0;
    let redacted = LOOSE_FIELD.replace_all(text, |found: &regex::Captures<'_>| {
        let (whole, name, value) = (&found[0], &found[1], &found[2]);
        match is_secret_json_field(name) && value != REDACTED {
            true => {
                count += 1;
                // The pair as written, its value (and closing quote) replaced.
                format!("{}{REDACTED}\"", &whole[..whole.len() - value.len() - 1])
            }
            false => whole.to_owned(),
        }
    });
    (redacted.into_owned(), count)
}

/// `text` with the values of its secret-named JSON fields [`REDACTED`] (however its JSON
/// is framed, see [`JsonBody`]), and how many were; `text` as it is when it holds no
/// JSON.
pub fn redact_json_text(text: &str) -> (String, usize) {
    let Some(mut json) = JsonBody::of(text) else {
        return (text.to_owned(), 0);
    };
    let mut redacted: usize = json.documents().map(redact_json_fields).sum();
    for raw in json.raw() {
        let (loose, count) = redact_loose_fields(raw);
        *raw = loose;
        redacted += count;
    }
    match redacted {
        0 => (text.to_owned(), 0),
        n => (json.text(), n),
    }
}

/// Redacts the values of the secret-named fields in `value`, however deep: a string or
/// number, or every one inside a field that is a credential as a whole. How many.
fn redact_json_fields(value: &mut serde_json::Value) -> usize {
    use serde_json::Value;
    match value {
        Value::Object(fields) => fields
            .iter_mut()
            .map(|(name, value)| match value {
                Value::String(text) if text == REDACTED => 0,
                Value::String(_) | Value::Number(_) if is_secret_json_field(name) => {
                    *value = Value::String(REDACTED.into());
                    1
                }
                // `"password": {"value": …}`: all of it (a `session` or `tokenUsage`
                // object is walked into instead).
                Value::Object(_) | Value::Array(_) if holds_credentials(name) => {
                    redact_leaves(value)
                }
                _ => redact_json_fields(value),
            })
            .sum(),
        Value::Array(items) => items.iter_mut().map(redact_json_fields).sum(),
        _ => 0,
    }
}

/// Redacts every string and number inside `value`: how many.
fn redact_leaves(value: &mut serde_json::Value) -> usize {
    use serde_json::Value;
    match value {
        Value::String(text) if text == REDACTED => 0,
        Value::String(_) | Value::Number(_) => {
            *value = Value::String(REDACTED.into());
            1
        }
        Value::Array(items) => items.iter_mut().map(redact_leaves).sum(),
        Value::Object(fields) => fields.values_mut().map(redact_leaves).sum(),
        _ => 0,
    }
}

/// The secret strings of one flow, to scrub from any text derived from it.
#[derive(Debug, Default)]
pub struct Secrets {
    values: Vec<String>,
    /// The values that are cookies' (carried to other flows only when long).
    cookies: std::collections::HashSet<String>,
    /// How many came from JSON bodies.
    from_json: usize,
    /// How many came from cookies.
    from_cookies: usize,
    /// How many came from multipart forms.
    from_form_data: usize,
}

/// Whose URL parameters are read for secrets.
#[derive(Debug, Clone, Copy)]
enum UrlOf {
    /// The request's own URL (and form body).
    Request,
    /// A `Location`: a login's redirect carries its `code`.
    Location,
    /// A `Referer` or `Content-Location`.
    Header,
}

/// Most cookie values one flow adds to its secrets: each is looked for in every text of
/// the flow, and a field of thousands of cookies made an export take seconds.
const MAX_COOKIE_SECRETS: usize = 64;

/// Secrets shorter than this are not scrubbed from bytes that are no text, and from
/// text only where they stand alone ([`stands_alone`]).
const MIN_BYTES_SECRET_LEN: usize = 8;

/// Secrets shorter than this are not scrubbed from free text (too many false hits).
const MIN_SECRET_LEN: usize = 4;

impl Secrets {
    /// Collects the flow's secrets: secret header values, their credential parts (the
    /// token after `Kinvey`/`Bearer`, the user and password or app key and app secret
    /// inside `Basic`), cookie values, and the values of secret query parameters and
    /// form fields (as sent and decoded).
    pub fn of(flow: &Flow) -> Secrets {
        let mut secrets = Secrets::default();
        let response_headers = flow.response.iter().flat_map(|r| r.headers.iter());
        for field in flow.request.headers.iter().chain(response_headers) {
            if !is_secret_header(&field.name) {
                continue;
            }
            let value = field.value_lossy().trim().to_owned();
            if let Some(set_cookie) = cookie_field(&field.name) {
                for cookie in cookie_secret_values(&value, set_cookie) {
                    if secrets.from_cookies < MAX_COOKIE_SECRETS && secrets.add(cookie) {
                        secrets.cookies.insert(cookie.to_owned());
                        secrets.from_cookies += 1;
                    }
                }
                // Redacted whole where its cookies cannot be told apart.
                if redact_cookie_field(&value, set_cookie).is_none() {
                    secrets.add(&value);
                }
                continue;
            }
            if let Some((scheme, credentials)) = value.split_once(' ') {
                let credentials = credentials.trim();
                if scheme.eq_ignore_ascii_case("basic") {
                    if let Ok(decoded) =
                        base64::engine::general_purpose::STANDARD.decode(credentials)
                    {
                        let decoded = String::from_utf8_lossy(&decoded).into_owned();
                        if let Some((_, secret)) = decoded.split_once(':') {
                            secrets.add(secret);
                        }
                        secrets.add(&decoded);
                    }
                }
                secrets.add(credentials);
            }
            secrets.add(&value);
        }
        // A login's password, a session's token: secret-named fields of JSON bodies,
        // wherever else in the flow (or later flows) their values turn up.
        let bodies = [flow.decoded_request_body(), flow.decoded_response_body()];
        let texts = bodies
            .each_ref()
            .map(|body| body.as_deref().and_then(credential_text));
        // And a WebSocket's first messages, where an app signs in (`{"authtoken": …}`).
        let messages = flow.websocket.iter().flat_map(|log| {
            log.messages
                .iter()
                .filter(|m| m.opcode == crate::websocket::TEXT)
                .take(MESSAGES_READ_FOR_SECRETS)
                .filter_map(|m| credential_text(&m.payload))
        });
        let texts_read: Vec<std::borrow::Cow<'_, str>> =
            texts.iter().flatten().cloned().chain(messages).collect();
        for text in &texts_read {
            if let Some(mut json) = JsonBody::of(text) {
                for document in json.documents() {
                    secrets.add_json(document);
                }
                for raw in json.raw() {
                    for found in LOOSE_FIELD.captures_iter(raw) {
                        if is_credential_field(&found[1])
                            && secrets.from_json < MAX_JSON_SECRETS
                            && secrets.add(&found[2])
                        {
                            secrets.from_json += 1;
                        }
                    }
                }
            }
        }
        // A multipart form's password, wherever else it turns up.
        // The bodies decoded above for JSON, not decoded again.
        let response_headers = flow.response.as_ref().map(|r| &r.headers);
        let forms = [
            (&bodies[0], Some(&flow.request.headers)),
            (&bodies[1], response_headers),
        ];
        for (body, headers) in forms {
            let boundary = headers
                .and_then(|h| h.get("content-type"))
                .and_then(|content_type| form_data_boundary(&content_type));
            let (Some(body), Some(boundary)) = (body, boundary) else {
                continue;
            };
            for content in form_data_secrets(body, &boundary) {
                let value = String::from_utf8_lossy(content);
                if content.len() <= MAX_FORM_DATA_SECRET_LEN
                    && secrets.from_form_data < MAX_FORM_DATA_SECRETS
                    && secrets.add(value.trim())
                {
                    secrets.from_form_data += 1;
                }
            }
        }
        // The request's URL and those of Location, Referer…: their secret parameters
        // (a login's redirect carries its `code`), query and fragment, and a password.
        let response_headers = flow.response.iter().flat_map(|r| r.headers.iter());
        let url_fields: Vec<(String, UrlOf)> =
            (flow.request.headers.iter().chain(response_headers))
                .filter(|field| is_url_header(&field.name))
                .map(|field| {
                    let of = match field.name.eq_ignore_ascii_case("location") {
                        true => UrlOf::Location,
                        false => UrlOf::Header,
                    };
                    (field.value_lossy().into_owned(), of)
                })
                .collect();
        let urls = std::iter::once((flow.request.url.as_str(), UrlOf::Request))
            .chain(url_fields.iter().map(|(url, of)| (url.as_str(), *of)));
        let mut url_params = Vec::new();
        for (url, of) in urls {
            if let Some(password) = user_info_password(url) {
                secrets.add(password);
                secrets.add(&decode_form_component(password));
            }
            let (before_fragment, fragment) = url
                .split_once('#')
                .map_or((url, None), |(b, f)| (b, Some(f)));
            url_params.extend(before_fragment.split_once('?').map(|(_, q)| (q, of)));
            url_params.extend(fragment.map(|f| (f, of)));
        }
        // The request body as decoded above (a gzip'd login form), read as text even in
        // ISO-8859-1.
        let body = texts[0].as_deref();
        let content_type = flow.request.headers.get("content-type");
        let form = body.filter(|body| is_form_body(content_type.as_deref(), body));
        // The request's own parameters by the broad test; those of a Referer (sent with
        // every browser request) or a Location only when they name a credential or a
        // login's `code`, not the `key` and `session` of an ordinary page.
        let all_params = url_params
            .into_iter()
            .chain(form.map(|form| (form, UrlOf::Request)));
        for (pairs, of) in all_params {
            for (name, value) in form_pairs(pairs) {
                let secret = match of {
                    UrlOf::Request => is_secret_param(&name),
                    UrlOf::Location => {
                        is_credential_field(&name) || name.eq_ignore_ascii_case("code")
                    }
                    UrlOf::Header => is_credential_field(&name),
                };
                if secret {
                    secrets.add(value);
                    secrets.add(&decode_form_component(value));
                }
            }
        }
        secrets
    }

    /// Adds the string values of the credential fields of `json`, however deep, up to
    /// [`MAX_JSON_SECRETS`] of them.
    fn add_json(&mut self, json: &serde_json::Value) {
        match json {
            serde_json::Value::Object(fields) => {
                for (name, value) in fields {
                    match value {
                        serde_json::Value::String(text) if is_credential_field(name) => {
                            if self.from_json < MAX_JSON_SECRETS && self.add(text) {
                                self.from_json += 1;
                            }
                        }
                        // `"password": 12345678`, as redact_json_fields redacts it.
                        serde_json::Value::Number(number) if is_credential_field(name) => {
                            if self.from_json < MAX_JSON_SECRETS && self.add(&number.to_string()) {
                                self.from_json += 1;
                            }
                        }
                        // `"password": {"value": …}`: every string in it.
                        nested @ (serde_json::Value::Object(_) | serde_json::Value::Array(_))
                            if holds_credentials(name) =>
                        {
                            let mut texts = Vec::new();
                            string_leaves(nested, &mut texts);
                            for text in texts {
                                if self.from_json < MAX_JSON_SECRETS && self.add(text) {
                                    self.from_json += 1;
                                }
                            }
                        }
                        other => self.add_json(other),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|item| self.add_json(item)),
            _ => {}
        }
    }

    /// Adds `value` unless it is too short or known; true when added.
    fn add(&mut self, value: &str) -> bool {
        // Part of the marker itself (a password `redacted`), or a value redacted already
        // (`Basic [redacted]`, read from a HAR): scrubbing would mangle the markers in
        // place.
        let added = value.len() >= MIN_SECRET_LEN
            && !REDACTED.contains(value)
            && !holds_redacted(value.as_bytes())
            && !self.values.iter().any(|v| v == value);
        if added {
            self.values.push(value.to_owned());
        }
        added
    }

    /// `text` with every secret replaced ([`redact_spans`]).
    pub fn scrub(&self, text: &str) -> String {
        if self.values.is_empty() {
            return text.to_owned();
        }
        scrub_encoded(text, &mut |bytes| spans_of(&self.values, bytes).collect())
    }

    /// [`Secrets::scrub`] of bytes that are no text (a binary body, a form with a file):
    /// a secret is the same bytes there. Only secrets of [`MIN_BYTES_SECRET_LEN`] or more:
    /// a short cookie value (`dark`, `en-US`) turns up in files by chance, and replacing
    /// it would break them.
    pub fn scrub_bytes<'a>(&self, bytes: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        let long = self
            .values
            .iter()
            .filter(|v| v.len() >= MIN_BYTES_SECRET_LEN);
        redact_byte_spans(bytes, spans_of(long, bytes).collect())
    }

    /// True when no secret was found.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// A JSON string literal that holds an escape (`\u00e4`, `\"`, `\/`).
static ESCAPED_JSON_STRING: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    regex::Regex::new(r#""(?:[^"\\]|\\.)*\\.(?:[^"\\]|\\.)*""#).expect("the pattern is valid")
});

/// A run of form-encoded text that holds a `+` for a space (`my+secret+pw`).
static FORM_ENCODED: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    regex::Regex::new(
        r"(?:%[0-9A-Fa-f]{2}|[A-Za-z0-9._~!*'()-])*\+(?:%[0-9A-Fa-f]{2}|[A-Za-z0-9._~!*'()+-])*",
    )
    .expect("the pattern is valid")
});

/// A run of percent-encoded text that holds an escape (`p%40ss%20w0rd`, `Zq%2Bk%2F`).
static PERCENT_ENCODED: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    regex::Regex::new(
        r"(?:[A-Za-z0-9._~!*'()+-])*%[0-9A-Fa-f]{2}(?:%[0-9A-Fa-f]{2}|[A-Za-z0-9._~!*'()+-])*",
    )
    .expect("the pattern is valid")
});

/// Where secrets are in some bytes: (start, end) spans, overlapping or not.
type SpansOf<'a> = dyn FnMut(&[u8]) -> Vec<(usize, usize)> + 'a;

/// `text` with every secret `spans_of` finds replaced, as it stands and where a secret is
/// written otherwise: escaped in a JSON string (`P\u00e4ssw\u00f6rd`, a quote as `\"`) or
/// percent-encoded (`p%40ss%20w0rd`, a token's `%2B`). There only the escapes that spell
/// the secret are replaced; every other byte stays as written.
fn scrub_encoded(text: &str, spans_of: &mut SpansOf<'_>) -> String {
    let mut text = redact_text_spans(text, spans_of(text.as_bytes()));
    if text.contains('\\') {
        // A closing quote may open the next literal: text that is no JSON (a script, a
        // log) can put a backslash between two literals.
        text = redact_decoded(&text, &ESCAPED_JSON_STRING, decode_json_string, 1, spans_of);
    }
    if text.contains('%') {
        text = redact_decoded(&text, &PERCENT_ENCODED, decode_percent, 0, spans_of);
    }
    if text.contains('+') {
        text = redact_decoded(&text, &FORM_ENCODED, decode_form, 0, spans_of);
    }
    text
}

/// Bytes decoded from an encoded stretch and, when `mapped`, for each the range of the
/// stretch that spelt it (a whole escape): kept only for a stretch that holds a secret.
#[derive(Debug, Default)]
struct Decoded {
    bytes: Vec<u8>,
    mapped: bool,
    from: Vec<std::ops::Range<usize>>,
}

impl Decoded {
    fn new(mapped: bool) -> Decoded {
        Decoded {
            mapped,
            ..Decoded::default()
        }
    }

    fn push(&mut self, bytes: &[u8], from: std::ops::Range<usize>) {
        self.bytes.extend_from_slice(bytes);
        if self.mapped {
            self.from.extend(std::iter::repeat_n(from, bytes.len()));
        }
    }
}

/// `text` as a number in base 16 when it is only hex digits (`from_str_radix` takes a
/// sign too).
fn hex(text: &[u8]) -> Option<u32> {
    let digits = std::str::from_utf8(text).ok()?;
    digits
        .bytes()
        .all(|b| b.is_ascii_hexdigit())
        .then(|| u32::from_str_radix(digits, 16).ok())
        .flatten()
}

/// A JSON string literal (quotes included) decoded leniently: an escape that is not
/// JSON's stays as written, a lone surrogate is U+FFFD.
fn decode_json_string(literal: &str, mapped: bool) -> Decoded {
    let raw = literal.as_bytes();
    let mut out = Decoded::new(mapped);
    let hex4 = |at: usize| raw.get(at..at + 4).and_then(hex);
    let (mut i, end) = (1, raw.len().saturating_sub(1));
    while i < end {
        if raw[i] != b'\\' || i + 1 >= end {
            out.push(&raw[i..i + 1], i..i + 1);
            i += 1;
            continue;
        }
        let simple = match raw[i + 1] {
            b'"' => Some(b'"'),
            b'\\' => Some(b'\\'),
            b'/' => Some(b'/'),
            b'b' => Some(8),
            b'f' => Some(12),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            _ => None,
        };
        if let Some(byte) = simple {
            out.push(&[byte], i..i + 2);
            i += 2;
            continue;
        }
        let Some(unit) = hex4(i + 2).filter(|_| raw[i + 1] == b'u') else {
            out.push(&raw[i..i + 1], i..i + 1);
            i += 1;
            continue;
        };
        let (c, len) = match unit {
            0xD800..=0xDBFF if raw.get(i + 6..i + 8) == Some(b"\\u") => {
                match hex4(i + 8).filter(|low| (0xDC00..=0xDFFF).contains(low)) {
                    Some(low) => (
                        char::from_u32(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)),
                        12,
                    ),
                    None => (None, 6),
                }
            }
            unit => (char::from_u32(unit), 6),
        };
        let c = c.unwrap_or(char::REPLACEMENT_CHARACTER);
        out.push(c.encode_utf8(&mut [0; 4]).as_bytes(), i..i + len);
        i += len;
    }
    out
}

/// A percent-encoded run decoded to its bytes (which need not be UTF-8).
fn decode_percent(run: &str, mapped: bool) -> Decoded {
    decode_escapes(run, mapped, false)
}

/// A form-encoded run decoded: a `+` is a space too.
fn decode_form(run: &str, mapped: bool) -> Decoded {
    decode_escapes(run, mapped, true)
}

fn decode_escapes(run: &str, mapped: bool, plus_is_space: bool) -> Decoded {
    let raw = run.as_bytes();
    let mut out = Decoded::new(mapped);
    let mut i = 0;
    while i < raw.len() {
        let escape = raw
            .get(i + 1..i + 3)
            .filter(|_| raw[i] == b'%')
            .and_then(hex);
        match escape {
            Some(byte) => {
                out.push(&[byte as u8], i..i + 3);
                i += 3;
            }
            None => {
                let byte = match raw[i] {
                    b'+' if plus_is_space => b' ',
                    other => other,
                };
                out.push(&[byte], i..i + 1);
                i += 1;
            }
        }
    }
    out
}

/// `text` with the escapes that spell a secret in each match of `pattern` replaced by
/// [`REDACTED`]. A match is looked for again from `back` bytes before the end of the
/// last.
fn redact_decoded(
    text: &str,
    pattern: &regex::Regex,
    decode: fn(&str, bool) -> Decoded,
    back: usize,
    spans_of: &mut SpansOf<'_>,
) -> String {
    // Looked through all at once first, decoded without the map (NUL is in no secret):
    // most texts hold none, and a search of every secret per stretch costs more.
    let mut stretches = Vec::new();
    let mut all = Vec::new();
    let mut at = 0;
    while let Some(found) = pattern.find_at(text, at) {
        stretches.push(found.range());
        all.extend(decode(found.as_str(), false).bytes);
        all.push(0);
        at = (found.end() - back).max(found.start() + 1);
    }
    if stretches.is_empty() || spans_of(&all).is_empty() {
        return text.to_owned();
    }
    drop(all);
    let mut raw_spans = Vec::new();
    for stretch in stretches {
        let raw = &text[stretch.clone()];
        if spans_of(&decode(raw, false).bytes).is_empty() {
            continue;
        }
        let decoded = decode(raw, true);
        for (from, to) in spans_of(&decoded.bytes) {
            raw_spans.push((
                stretch.start + decoded.from[from].start,
                stretch.start + decoded.from[to - 1].end,
            ));
        }
    }
    redact_text_spans(text, raw_spans)
}

/// Where each of `secrets` occurs in `bytes`: (start, end) spans. A short secret only
/// where it [`stands_alone`]: a password `kinvey` is not part of `baas.kinvey.com`, nor
/// `Invalid` of `InvalidCredentials`.
fn spans_of<'a>(
    secrets: impl IntoIterator<Item = &'a String> + 'a,
    bytes: &'a [u8],
) -> impl Iterator<Item = (usize, usize)> + 'a {
    secrets.into_iter().flat_map(move |secret| {
        let short = secret.len() < MIN_BYTES_SECRET_LEN;
        memchr::memmem::find_iter(bytes, secret.as_bytes())
            .map(|at| (at, at + secret.len()))
            .filter(move |&(start, end)| !short || stands_alone(bytes, start, end))
    })
}

/// True when `bytes[start..end]` is a value of its own, not part of a name: no ASCII
/// letter or digit touches it, nor one of `.` `-` `_` `/` with a letter or digit beyond
/// (`baas.kinvey.com`, `kid_abc/login`; a full stop ending a sentence is no part). The
/// letter of a JSON escape (`\n`) or the digits of a percent-escape (`%22`) before it
/// part it from what precedes.
fn stands_alone(bytes: &[u8], start: usize, end: usize) -> bool {
    let letter_or_digit = |i: Option<usize>| {
        i.and_then(|i| bytes.get(i))
            .is_some_and(u8::is_ascii_alphanumeric)
    };
    let joins = |b: u8| b".-_/".contains(&b);
    let joined_before = match start.checked_sub(1) {
        None => false,
        Some(i) if bytes[i].is_ascii_alphanumeric() => {
            let json_escape = i >= 1 && bytes[i - 1] == b'\\';
            let percent_escape = i >= 2
                && bytes[i - 2] == b'%'
                && bytes[i - 1].is_ascii_hexdigit()
                && bytes[i].is_ascii_hexdigit();
            !(json_escape || percent_escape)
        }
        Some(i) if joins(bytes[i]) => letter_or_digit(i.checked_sub(1)),
        Some(_) => false,
    };
    let joined_after = match bytes.get(end) {
        None => false,
        Some(b) if b.is_ascii_alphanumeric() => true,
        Some(&b) if joins(b) => letter_or_digit(Some(end + 1)),
        Some(_) => false,
    };
    !joined_before && !joined_after
}

/// `bytes` with every stretch the `spans` cover, overlapping or not, replaced by one
/// [`REDACTED`]: a secret inside (or across) another leaves no part of either.
fn redact_spans(bytes: &[u8], mut spans: Vec<(usize, usize)>) -> Vec<u8> {
    spans.sort_unstable();
    let mut out = Vec::with_capacity(bytes.len());
    let mut copied = 0;
    let mut spans = spans.into_iter().peekable();
    while let Some((start, mut end)) = spans.next() {
        while let Some(&(next_start, next_end)) = spans.peek() {
            if next_start > end {
                break;
            }
            end = end.max(next_end);
            spans.next();
        }
        out.extend_from_slice(&bytes[copied..start]);
        out.extend_from_slice(REDACTED.as_bytes());
        copied = end;
    }
    out.extend_from_slice(&bytes[copied..]);
    out
}

/// [`redact_spans`] of bytes, borrowed when there is nothing to replace (a binary body
/// of megabytes is not copied to find no secret in it).
fn redact_byte_spans(bytes: &[u8], spans: Vec<(usize, usize)>) -> std::borrow::Cow<'_, [u8]> {
    match spans.is_empty() {
        true => std::borrow::Cow::Borrowed(bytes),
        false => std::borrow::Cow::Owned(redact_spans(bytes, spans)),
    }
}

/// [`redact_spans`] of text: a secret (text itself) found in text begins and ends on
/// character boundaries, so the result is text.
fn redact_text_spans(text: &str, spans: Vec<(usize, usize)>) -> String {
    if spans.is_empty() {
        return text.to_owned();
    }
    String::from_utf8(redact_spans(text.as_bytes(), spans))
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// The secrets of the flows already exported, scrubbed from the later flows' text too:
/// a token sent in one request turns up in another's error `debug`. At most
/// [`MAX_EARLIER_SECRETS`] are kept, looked for all at once (Aho-Corasick).
#[derive(Debug, Default)]
pub struct EarlierSecrets {
    values: Vec<String>,
    known: std::collections::HashSet<String>,
    /// Finds `values[..matched]`; the ones after are looked for one by one until the
    /// automaton is built again.
    automaton: Option<aho_corasick::AhoCorasick>,
    matched: usize,
}

/// Most secrets of earlier flows kept for scrubbing (rotating cookies could otherwise
/// grow the set by one per flow).
pub const MAX_EARLIER_SECRETS: usize = 10_000;

/// Secrets looked for one by one before the automaton is built again with them.
const UNMATCHED_LIMIT: usize = 32;

/// Secrets shorter than this are not carried to other flows: tokens, keys and passwords
/// worth finding elsewhere are longer (a user's password of 8 characters, say).
const MIN_EARLIER_LEN: usize = 8;

/// Cookie values shorter than this are not carried to other flows: a flow's
/// `consent=accepted` cookie is scrubbed from that flow, but scrubbing `accepted` from
/// every later body would ruin the export.
const MIN_EARLIER_COOKIE_LEN: usize = 10;

impl EarlierSecrets {
    /// Keeps `secrets` (of a flow just exported) for the flows after it. Full, it forgets
    /// its older half: a secret still in use comes back with the next flow sending it.
    pub fn add(&mut self, secrets: &Secrets) {
        for value in &secrets.values {
            if self.values.len() >= MAX_EARLIER_SECRETS {
                let older: Vec<String> = self.values.drain(..MAX_EARLIER_SECRETS / 2).collect();
                for forgotten in older {
                    self.known.remove(&forgotten);
                }
                self.automaton = None;
                self.matched = 0;
            }
            let least = match secrets.cookies.contains(value) {
                true => MIN_EARLIER_COOKIE_LEN,
                false => MIN_EARLIER_LEN,
            };
            if value.len() >= least && self.known.insert(value.clone()) {
                self.values.push(value.clone());
            }
        }
    }

    /// `text` with every earlier secret replaced ([`redact_spans`]).
    pub fn scrub(&mut self, text: &str) -> String {
        if self.values.is_empty() {
            return text.to_owned();
        }
        scrub_encoded(text, &mut |bytes| self.spans(bytes))
    }

    /// [`EarlierSecrets::scrub`] of bytes that are no text.
    pub fn scrub_bytes<'a>(&mut self, bytes: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        let spans = self.spans(bytes);
        redact_byte_spans(bytes, spans)
    }

    /// Where the earlier secrets are in `bytes`.
    fn spans(&mut self, bytes: &[u8]) -> Vec<(usize, usize)> {
        if self.values.len() - self.matched > UNMATCHED_LIMIT {
            self.automaton = aho_corasick::AhoCorasick::new(&self.values).ok();
            self.matched = if self.automaton.is_some() {
                self.values.len()
            } else {
                0
            };
        }
        let mut spans: Vec<(usize, usize)> = Vec::new();
        if let Some(automaton) = &self.automaton {
            spans.extend(
                automaton
                    .find_overlapping_iter(bytes)
                    .map(|m| (m.start(), m.end())),
            );
        }
        spans.extend(spans_of(&self.values[self.matched..], bytes));
        spans
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multipart_forms_secret_parts_are_redacted_and_the_rest_kept() {
        let body = "preamble\r\n--XyZ\r\n\
            Content-Disposition: form-data; name=\"username\"\r\n\r\nada\r\n\
            --XyZ\r\n\
            content-disposition: form-data; name=\"my;password\"\r\n\r\nsecret\r\n--XyZ not\r\n\
            --XyZ\r\n\
            Content-Disposition: form-data; name=api_key; filename=\"k.txt\"\r\n\
            Content-Type: text/plain\r\n\r\nk-123\r\n\
            --XyZ\r\n\
            Content-Disposition: form-data; name=key\r\n\r\nuploads/photo-2024.jpg\r\n\
            --XyZ\r\n\
            Content-Disposition: form-data; name=\"avatar\"; filename=\"a.png\"\r\n\r\n\
            --XyZ is no delimiter here\r\n\
            --XyZ--\r\nepilogue";
        let (redacted, parts) = redact_form_data(body.as_bytes(), "XyZ");
        let expected = body
            .replace("secret\r\n--XyZ not", "[redacted]")
            .replace("k-123", "[redacted]");
        assert_eq!(String::from_utf8(redacted.clone()).unwrap(), expected);
        assert_eq!(parts, 2);
        // Exported again: nothing more to redact.
        assert_eq!(redact_form_data(&redacted, "XyZ"), (redacted, 0));
    }

    #[test]
    fn multipart_forms_with_bare_line_feeds_binary_files_or_cut_short_are_read() {
        let mut body = b"--b\nContent-Disposition: form-data; name=\"file\"\n\n".to_vec();
        body.extend([0xff, 0x00, 0xfe, b'\n']);
        body.extend(b"--b\nContent-Disposition: form-data; name=\"password\"\n\nhunter22");
        // Cut at --max-body before the password's part ended.
        let (redacted, parts) = redact_form_data(&body, "b");
        assert_eq!(parts, 1);
        assert!(redacted.ends_with(b"name=\"password\"\n\n[redacted]"));
        assert!(redacted.starts_with(&body[..body.len() - b"hunter22".len()]));
        // A part whose head never ends is no part; no boundary, no parts.
        let unfinished = b"--b\r\nContent-Disposition: form-data; name=\"token\"\r\nabc";
        assert_eq!(redact_form_data(unfinished, "b").1, 0);
        assert_eq!(redact_form_data(b"password=x", "b").1, 0);
        // `--b--` followed by more on its line is no closing delimiter.
        let early = b"--b\nContent-Disposition: form-data; name=note\n\n--b--x\n\
            --b\nContent-Disposition: form-data; name=token\n\nt0k3n\n--b--\n";
        let (redacted, parts) = redact_form_data(early, "b");
        assert_eq!(parts, 1);
        assert!(!redacted.windows(5).any(|w| w == b"t0k3n"));
    }

    #[test]
    fn only_form_data_has_a_boundary_to_redact_by() {
        let boundary = form_data_boundary("multipart/form-data; boundary=\"a b\"");
        assert_eq!(boundary.as_deref(), Some("a b"));
        assert_eq!(
            form_data_boundary("Multipart/Form-Data;boundary=x").as_deref(),
            Some("x")
        );
        let quoted = form_data_boundary("multipart/form-data; boundary=\"a;b\"; charset=x");
        assert_eq!(quoted.as_deref(), Some("a;b"));
        let spaced = form_data_boundary("multipart/form-data; boundary=\" a\\\"b \"");
        assert_eq!(
            spaced.as_deref(),
            Some(" a\"b "),
            "quoted blanks and escapes kept"
        );
        assert_eq!(form_data_boundary("multipart/mixed; boundary=x"), None);
        assert_eq!(form_data_boundary("multipart/form-data"), None);
        assert_eq!(form_data_boundary("multipart/form-data; boundary="), None);
    }

    #[test]
    fn a_cookie_fields_values_go_and_its_names_stay() {
        let cookie = redact_cookie_field("session=s3cr3t; theme=dark", false);
        assert_eq!(
            cookie.as_deref(),
            Some("session=[redacted]; theme=[redacted]")
        );
        assert_eq!(redact_cookie_field("justatoken123", false), None);
        let set = redact_cookie_field("sid=x; Domain=.kinvey.com; Priority=High", true);
        assert_eq!(
            set.as_deref(),
            Some("sid=[redacted]; Domain=.kinvey.com; Priority=High")
        );
        assert_eq!(redact_cookie_field("sid=x; Path=/a b", true), None);
        assert_eq!(redact_cookie_field("sid=x; Secure=yes", true), None);
        let secrets = cookie_secret_values(
            "c1=S1; Path=/, c2=S2; Expires=Wed, 21 Oct 2026 07:28:00 GMT\nNOEQ; Secure\nq=\"S3\"",
            true,
        );
        assert_eq!(secrets, ["S1", "S2", "NOEQ", "S3"]);
        let named_like_an_attribute = cookie_secret_values("version=VERSECRET12; Path=/", true);
        assert_eq!(named_like_an_attribute, ["VERSECRET12"]);
        assert_eq!(
            cookie_secret_values("x=S4, y=S5; S6", false),
            ["S4", "S5", "S6"]
        );
        let pairs = cookie_pairs("a=1; Path=/\nb=2", true);
        assert_eq!(pairs, [("a", "1"), ("b", "2")]);
        assert_eq!(cookie_field("SET-COOKIE"), Some(true));
        assert_eq!(cookie_field("x-cookie"), None);
    }

    #[test]
    fn a_short_password_is_scrubbed_where_it_stands_alone_not_inside_names() {
        use base64::Engine;
        let basic = base64::engine::general_purpose::STANDARD.encode("kid_abc:kinvey");
        let mut flow = Flow::exchange(
            1,
            "127.0.0.1:4000".parse().unwrap(),
            "POST",
            "https://baas.kinvey.com/user/kid_abc/login",
            Some(401),
        );
        flow.request.headers = [("Authorization", format!("Basic {basic}"))]
            .into_iter()
            .collect();
        let secrets = Secrets::of(&flow);
        for kept in [
            "https://baas.kinvey.com/user/kid_abc/login",
            "kinvey-sdk/1.0 kinvey_app",
            "{\"error\":\"Kinveyish\"}",
        ] {
            assert_eq!(secrets.scrub(kept), kept);
        }
        assert_eq!(
            secrets.scrub("password kinvey, user:kinvey@x \"kinvey\""),
            "password [redacted], user:[redacted]@x \"[redacted]\""
        );
        // Punctuation, quotes and letters outside ASCII part it; escapes too.
        for (text, scrubbed) in [
            ("Password kinvey.", "Password [redacted]."),
            ("\u{201c}kinvey\u{201d}", "\u{201c}[redacted]\u{201d}"),
            (
                "\u{30d1}\u{30b9}kinvey\u{304c}",
                "\u{30d1}\u{30b9}[redacted]\u{304c}",
            ),
            (r#"{"d":"\nkinvey"}"#, r#"{"d":"\n[redacted]"}"#),
            ("%22kinvey%22", "%22[redacted]%22"),
            ("kinvey_", "[redacted]_"),
        ] {
            assert_eq!(secrets.scrub(text), scrubbed, "{text}");
        }
        // A long one is a secret wherever it is.
        let long = base64::engine::general_purpose::STANDARD.encode("kid_abc:kinvey-secret-1");
        flow.request.headers = [("Authorization", format!("Basic {long}"))]
            .into_iter()
            .collect();
        assert_eq!(
            Secrets::of(&flow).scrub("x.kinvey-secret-1.y"),
            "x.[redacted].y"
        );
    }

    /// A refused login sending `body` as JSON.
    fn json_login(body: &str) -> Flow {
        let mut login = Flow::exchange(
            1,
            "127.0.0.1:4000".parse().unwrap(),
            "POST",
            "https://baas.kinvey.com/user/kid_x/login",
            Some(401),
        );
        login.request.headers = [("content-type", "application/json")].into_iter().collect();
        login.request.body = crate::flow::CapturedBody::whole(body.as_bytes().to_vec());
        login
    }

    #[test]
    fn a_numeric_password_is_a_secret_and_one_of_8_characters_reaches_later_flows() {
        let login = json_login(r#"{"username":"ada","password":12345678}"#);
        let secrets = Secrets::of(&login);
        assert_eq!(
            secrets.scrub("wrong password 12345678"),
            "wrong password [redacted]"
        );
        let mut earlier = EarlierSecrets::default();
        earlier.add(&secrets);
        assert_eq!(earlier.scrub("later: 12345678."), "later: [redacted].");
        // A cookie of 8 characters is scrubbed from its own flow only.
        let mut page = login.clone();
        page.request.headers = [("cookie", "consent=accepted")].into_iter().collect();
        let secrets = Secrets::of(&page);
        assert_eq!(secrets.scrub("consent: accepted"), "consent: [redacted]");
        earlier.add(&secrets);
        assert_eq!(
            earlier.scrub(r#"{"status":"accepted"}"#),
            r#"{"status":"accepted"}"#
        );
    }

    #[test]
    fn a_secret_is_found_escaped_in_json_and_percent_encoded() {
        let login = json_login(r#"{"username":"ada","password":"P\u00e4ss \"w\u00f6rd\""}"#);
        let secrets = Secrets::of(&login);
        // Escaped in another JSON document; other literals are left as they were.
        assert_eq!(
            secrets.scrub(r#"{"debug":"pw P\u00e4ss \"w\u00f6rd\" rejected","x":"\u00e9"}"#),
            r#"{"debug":"pw [redacted] rejected","x":"\u00e9"}"#
        );
        // Percent-encoded in a URL, the marker written as the query's is.
        assert_eq!(
            secrets.scrub("https://x.test/e?dbg=pw%20P%C3%A4ss%20%22w%C3%B6rd%22&y=%C3%A9"),
            "https://x.test/e?dbg=pw%20[redacted]&y=%C3%A9"
        );
        // Only the escapes that spell it are replaced: the rest stays as written (a
        // `+` meaning a space, `\/` keeping a script closed), bytes that are no UTF-8
        // and escapes that are no JSON's too.
        for (text, scrubbed) in [
            (
                "?q=my+pass+is+P%C3%A4ss%20%22w%C3%B6rd%22+(really)!",
                "?q=my+pass+is+[redacted]+(really)!",
            ),
            (
                "?d=%FF%20P%C3%A4ss%20%22w%C3%B6rd%22",
                "?d=%FF%20[redacted]",
            ),
            (
                r#"{"m":"P\u00e4ss \"w\u00f6rd\" <\/script> \ud83d C:\temp"}"#,
                r#"{"m":"[redacted] <\/script> \ud83d C:\temp"}"#,
            ),
            // A backslash between two literals (a script, no JSON) hides neither.
            (
                r#"var a = "x", re = /\d+/, s = "P\u00e4ss \"w\u00f6rd\"";"#,
                r#"var a = "x", re = /\d+/, s = "[redacted]";"#,
            ),
        ] {
            assert_eq!(secrets.scrub(text), scrubbed, "{text}");
        }
        // A space written as `+` (forms, Java's and Python's URL encoders); a `\u` with a
        // sign is no escape.
        let spaced = Secrets::of(&json_login(r#"{"password":"my secret pw"}"#));
        assert_eq!(spaced.scrub("?q=my+secret+pw&x=1"), "?q=[redacted]&x=1");
        assert_eq!(spaced.scrub("?q=my+secret%20pw"), "?q=[redacted]");
        assert_eq!(
            secrets.scrub(r#"{"m":"P\u+0e4ss"}"#),
            r#"{"m":"P\u+0e4ss"}"#
        );
        // A token with + / =, as a later URL carries it.
        let mut earlier = EarlierSecrets::default();
        let mut signed = login.clone();
        signed.request.headers = [("authorization", "Kinvey 0fd7.JfB4jPZq+k/Bls=")]
            .into_iter()
            .collect();
        signed.request.body = crate::flow::CapturedBody::whole(&b""[..]);
        earlier.add(&Secrets::of(&signed));
        assert_eq!(
            earlier.scrub("/rpc?token=0fd7.JfB4jPZq%2Bk%2FBls%3D&a=1"),
            "/rpc?token=[redacted]&a=1"
        );
    }

    #[test]
    fn earlier_secrets_are_scrubbed_however_many() {
        let mut earlier = EarlierSecrets::default();
        let of = |values: &[&str]| Secrets {
            values: values.iter().map(|v| v.to_string()).collect(),
            ..Secrets::default()
        };
        earlier.add(&of(&["token-one-x", "token-one-x-longer", "en-US"]));
        assert_eq!(
            earlier.scrub("a token-one-x-longer and a token-one-x in en-US"),
            "a [redacted] and a [redacted] in en-US"
        );
        // Past the one-by-one limit: looked for by the automaton, the same.
        let many: Vec<String> = (0..100).map(|i| format!("cookie-value-{i:03}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        earlier.add(&of(&many));
        assert_eq!(
            earlier.scrub("x cookie-value-042 token-one-x-longer y"),
            "x [redacted] [redacted] y"
        );
        assert!(earlier.automaton.is_some());
        assert_eq!(earlier.scrub("nothing here"), "nothing here");
        // Each once; full, the older half goes and the newest are still found.
        earlier.add(&of(&many));
        assert_eq!(earlier.values.len(), 102);
        let flood: Vec<String> = (0..MAX_EARLIER_SECRETS + 10)
            .map(|i| format!("rotating-session-{i:06}"))
            .collect();
        let flood: Vec<&str> = flood.iter().map(String::as_str).collect();
        earlier.add(&of(&flood));
        assert!(earlier.values.len() <= MAX_EARLIER_SECRETS);
        let newest = flood.last().unwrap();
        assert_eq!(earlier.scrub(&format!("t={newest}")), "t=[redacted]");
        earlier.add(&of(&["bearer-token-abcdef123456"]));
        assert_eq!(
            earlier.scrub("?t2=bearer-token-abcdef123456"),
            "?t2=[redacted]"
        );
    }

    #[test]
    fn only_credentials_in_json_bodies_become_secrets() {
        use crate::flow::{CapturedBody, Flow};
        let client = "127.0.0.1:5000".parse().unwrap();
        let mut flow = Flow::exchange(1, client, "POST", "http://a.test/login", Some(200));
        flow.request.body = CapturedBody::whole(
            r#"{"user":"ada","password":"lovelace-1","max_tokens":2024,"key":"color"}"#,
        );
        let keys: String = (0..500)
            .map(|i| format!(r#"{{"key":"flag-{i}"}},"#))
            .collect();
        flow.response.as_mut().unwrap().body = CapturedBody::whole(format!(
            r#"{{"_kmd":{{"authtoken":"tok-123456789"}},"code":"ResourceNotFound","flags":[{}{{}}],"access_token":"at-98765"}}"#,
            keys
        ));
        let secrets = Secrets::of(&flow);
        let mut found = secrets.values.clone();
        found.sort();
        assert_eq!(found, ["at-98765", "lovelace-1", "tok-123456789"]);
        assert_eq!(
            secrets.scrub("size 120245, created 2024-05-01, color ResourceNotFound"),
            "size 120245, created 2024-05-01, color ResourceNotFound"
        );
        assert!(is_credential_field("client_secret") && is_credential_field("refreshToken"));
        assert!(is_secret_json_field("access_token") && !is_secret_json_field("Key"));
        assert!(!is_credential_field("prompt_tokens") && !is_credential_field("key"));
    }

    #[test]
    fn a_token_that_holds_an_object_or_array_is_redacted_whole() {
        let (text, count) = redact_json_text(
            r#"{"token":["TA-123456789"],"Token":{"v":"TC-123456789"},"a":{"token":{"value":"TV-123456789","n":7}},"tokens":{"prompt":12},"tokenUsage":{"total":3}}"#,
        );
        assert_eq!(
            text,
            r#"{"token":["[redacted]"],"Token":{"v":"[redacted]"},"a":{"token":{"value":"[redacted]","n":"[redacted]"}},"tokens":{"prompt":12},"tokenUsage":{"total":3}}"#
        );
        assert_eq!(count, 4);
    }

    #[test]
    fn a_binary_body_labelled_a_form_has_no_fields() {
        use crate::flow::{CapturedBody, Headers};
        let headers: Headers = [("Content-Type", "application/x-www-form-urlencoded")]
            .into_iter()
            .collect();
        let form = CapturedBody::whole("user=ada&note=caf%C3%A9");
        let fields = form_body_fields(&form, &headers).unwrap();
        assert_eq!(fields[1], ("note".to_owned(), "café".to_owned()));
        let binary = CapturedBody::whole(&b"\x89PNG\r\n\x1a\n\x00\x00a=b&c=d"[..]);
        assert_eq!(form_body_fields(&binary, &headers), None);
    }

    #[test]
    fn a_password_in_a_url_is_redacted() {
        assert_eq!(
            redact_url("http://u:p4ss@example.com:99/a?token=t&x=1"),
            "http://u:[redacted]@example.com:99/a?token=[redacted]&x=1"
        );
        assert_eq!(
            redact_url("https://u@example.com/a@b"),
            "https://u@example.com/a@b"
        );
        assert_eq!(redact_url("/relative?x=1"), "/relative?x=1");
    }

    #[test]
    fn forms_are_told_by_their_label_or_their_shape() {
        assert!(is_form_body(
            Some("application/x-www-form-urlencoded"),
            "{}"
        ));
        assert!(is_form_body(Some("application/json"), "user=a&password=p"));
        assert!(is_form_body(None, "password=p"));
        for not_form in [
            r#"{"password":"p"}"#,
            "[1,2]",
            "a=1 & b=2",
            "<a b=\"1\"/>",
            "plain",
            "",
        ] {
            assert!(
                !is_form_body(Some("application/json"), not_form),
                "{not_form}"
            );
        }
    }

    #[test]
    fn secret_headers_and_params_are_recognised() {
        for h in [
            "Authorization",
            "cookie",
            "Set-Cookie",
            "X-Kinvey-Auth-Token",
        ] {
            assert!(is_secret_header(h), "{h}");
        }
        for h in [
            "X-Api-Key",
            "api-key",
            "X-Auth-Token",
            "x-goog-api-key",
            "X-App-Secret",
            "Ocp-Apim-Subscription-Key",
        ] {
            assert!(is_secret_header(h), "{h}");
        }
        for h in [
            "X-Kinvey-API-Version",
            "X-Kinvey-Request-ID",
            "WWW-Authenticate",
            "Location",
        ] {
            assert!(!is_secret_header(h), "{h}");
        }
        for p in [
            "access_token",
            "appSecret",
            "password",
            "sig",
            "sessionid",
            "key",
            "pwd",
            "pass",
            "jwt",
        ] {
            assert!(is_secret_param(p), "{p}");
        }
        assert!(!is_secret_param("query"));
        assert_eq!(
            redact_url("https://h/p?query=%7B%7D&access_token=abc&x=1#top"),
            "https://h/p?query=%7B%7D&access_token=[redacted]&x=1#top"
        );
        assert_eq!(redact_url("https://h/p"), "https://h/p");
        assert_eq!(
            redact_url("https://app/cb#access_token=abc&expires_in=3600&state=s"),
            "https://app/cb#access_token=[redacted]&expires_in=3600&state=s"
        );
        assert_eq!(
            redact_url("/cb?code=C0DE#section"),
            "/cb?code=[redacted]#section"
        );
    }
}
