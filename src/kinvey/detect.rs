//! Finding and classifying Kinvey errors in a flow's response.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value};

use super::{lookup, Anomaly, ErrorClass, KinveyAnalysis, KinveyError};
use crate::decode::{decode_start, DecodeError};
use crate::flow::{printable, printable_line, Flow};

/// How much of a body too large once decoded is decoded to read its error from.
const TOO_LARGE_READ: usize = 1 << 20;

/// Analyses one flow: request id, errors (batch elements included), their classes and
/// every anomaly. Bodies are decoded (gzip, br, deflate, zstd) first.
pub fn analyze(flow: &Flow) -> KinveyAnalysis {
    let mut analysis = KinveyAnalysis {
        request_id: None,
        api_version: flow
            .request
            .headers
            .get("x-kinvey-api-version")
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty()),
        errors: Vec::new(),
        anomalies: Vec::new(),
    };
    let Some(response) = flow.response.as_ref().filter(|r| !r.from_proxy) else {
        return analysis;
    };
    analysis.request_id = response
        .headers
        .get("x-kinvey-request-id")
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty());
    let content_type = response.headers.get("content-type").map(|c| c.into_owned());
    let kinvey = is_kinvey_exchange(flow, &analysis);
    let encoding = response.headers.get("content-encoding");
    // Kept in part (cut at --max-body, or broken off): read from its start, not flagged
    // for where it stops.
    let cut = response.body.truncated || response.body.incomplete;
    let (body, cut, undecodable) = match response.body.decoded(encoding.as_deref()) {
        Ok(body) => (body, cut, None),
        // Too large once decoded: its start holds the error.
        Err(DecodeError::TooLarge { .. }) => {
            match decode_start(&response.body.bytes, encoding.as_deref(), TOO_LARGE_READ) {
                Ok(start) => (start, true, None),
                Err(e) => (response.body.bytes.clone(), cut, Some(e)),
            }
        }
        // SDKs fail on it too: flagged, and read as sent (plain JSON mislabelled).
        Err(e) => (response.body.bytes.clone(), cut, Some(e)),
    };
    let errors_before = analysis.errors.len();
    if response.status >= 400 || starts_an_object(&body) {
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(object)) => {
                let before = analysis.errors.len();
                read_object(&object, response.status, kinvey, &mut analysis);
                let found = analysis.errors.len() > before;
                let is_json = content_type
                    .as_deref()
                    .is_some_and(|c| c.to_ascii_lowercase().contains("json"));
                if found && !is_json {
                    analysis.anomalies.push(Anomaly::NonJsonContentType {
                        content_type: content_type.clone().unwrap_or_else(|| "(none)".into()),
                    });
                }
            }
            Ok(_) => {}
            Err(e) if response.status >= 400 => {
                let text = String::from_utf8_lossy(&body);
                let fields = kinvey_looking_fields(&text);
                let taken = |name: &String| is_taken(kinvey, name, fields.description.is_some());
                if let Some(name) = fields.error.clone().filter(taken) {
                    // A body cut at --max-body is whole on the wire: only its start was
                    // kept, and the error read from it. JSON nested deeper than the
                    // parser goes may be valid: read loosely, not flagged.
                    if !cut && !e.to_string().starts_with("recursion limit exceeded") {
                        analysis.anomalies.push(Anomaly::UnparseableBody {
                            reason: unparseable_because(&body, &e),
                        });
                    }
                    let status = response.status;
                    push_error(
                        &mut analysis,
                        name,
                        status,
                        fields.description,
                        fields.debug,
                        ErrorAt::Body,
                    );
                }
            }
            Err(_) => {}
        }
    }
    let found = analysis.errors.len() > errors_before;
    if let Some(e) = undecodable {
        if found || (kinvey && response.status >= 400) {
            analysis.anomalies.push(Anomaly::UndecodableBody {
                reason: e.to_string(),
            });
        }
    } else if kinvey && response.status >= 400 && !found {
        // A body kept in part (--max-body) or broken off says nothing of what it held;
        // a HEAD's answer has none.
        if !cut && !flow.request.method.eq_ignore_ascii_case("HEAD") {
            analysis.anomalies.push(Anomaly::NoErrorBody {
                status: response.status,
                found: what_body_is(&body, content_type.as_deref()),
                from_kinvey: analysis.request_id.is_some(),
            });
        }
    }

    if analysis.is_kinvey() {
        match &analysis.api_version {
            None => analysis
                .anomalies
                .push(Anomaly::MissingApiVersion { sent: None }),
            // Version 0: the errors of before API version 1.
            Some(version) if version.parse::<u32>() == Ok(0) => {
                let sent = Some(version.clone());
                analysis.anomalies.push(Anomaly::MissingApiVersion { sent });
            }
            Some(_) => {}
        }
    }
    analysis
}

/// True for an exchange with Kinvey: a request id in its response, an API version or
/// Kinvey credentials in its request, or a `*.kinvey.com` host.
fn is_kinvey_exchange(flow: &Flow, analysis: &KinveyAnalysis) -> bool {
    let host = flow.host.trim_end_matches('.');
    let suffix = host.get(host.len().saturating_sub(".kinvey.com".len())..);
    let kinvey_host = host.eq_ignore_ascii_case("kinvey.com")
        || suffix.is_some_and(|s| s.eq_ignore_ascii_case(".kinvey.com"));
    let kinvey_credentials = flow
        .request
        .headers
        .get("authorization")
        .is_some_and(|auth| {
            auth.get(..7)
                .is_some_and(|scheme| scheme.eq_ignore_ascii_case("kinvey "))
        });
    analysis.request_id.is_some()
        || analysis.api_version.is_some()
        || kinvey_host
        || kinvey_credentials
}

/// Why a body is not JSON, as the parser says, or the byte-order mark it starts with
/// (which the parser reports as a bad first character).
fn unparseable_because(body: &[u8], error: &serde_json::Error) -> String {
    match body.starts_with(b"\xEF\xBB\xBF") {
        true => "it starts with a UTF-8 byte-order mark (EF BB BF), which JSON forbids".into(),
        false => error.to_string(),
    }
}

/// What a failed Kinvey exchange's body holds instead of an error, in a few words.
fn what_body_is(body: &[u8], content_type: Option<&str>) -> &'static str {
    let start = body.iter().position(|b| !b.is_ascii_whitespace());
    let Some(start) = start else {
        return "no body";
    };
    let html = content_type.is_some_and(|c| c.to_ascii_lowercase().contains("html"));
    if html || body[start] == b'<' {
        return "an HTML page";
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(_)) => "a JSON array",
        Ok(Value::Object(object)) => match object.get("error") {
            Some(Value::String(name)) if name.is_empty() => "an empty error name",
            _ => "JSON without an error name",
        },
        Ok(_) => "JSON that is no object",
        Err(_) => "text that is not JSON",
    }
}

/// True when `body` could be a JSON object. Below 400 only objects are read, so other
/// bodies (a list of a thousand entities, an image) are not parsed at all.
fn starts_an_object(body: &[u8]) -> bool {
    body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

/// Whether an error named `name` is taken as Kinvey's: on a Kinvey exchange (`kinvey`:
/// a request id, an API version, a Kinvey host or Kinvey credentials), a name from the
/// dictionary, or Kinvey's shape (`shaped`: `error` with a `description`). Other JSON
/// errors (OAuth's `{error, error_description}`, a web framework's `{error, message}`)
/// are another server's, not Kinvey errors with an unknown name.
fn is_taken(kinvey: bool, name: &str, shaped: bool) -> bool {
    kinvey || shaped || lookup(name).is_some()
}

/// Reads a JSON object body: a wrapper, a batch, or a plain error. `kinvey`: the
/// exchange is Kinvey's ([`is_taken`]).
fn read_object(
    object: &Map<String, Value>,
    http_status: u16,
    kinvey: bool,
    analysis: &mut KinveyAnalysis,
) {
    // Kinvey's X-Kinvey-ResponseWrapper shape; another server's `result` is its own.
    if kinvey && object.contains_key("result") && object.contains_key("headers") {
        analysis.anomalies.push(Anomaly::WrappedBody);
        // The request id an SDK asked for in the body
        // (`X-Kinvey-Include-Headers-In-Response`), when the response has none.
        if analysis.request_id.is_none() {
            analysis.request_id = object
                .get("headers")
                .and_then(Value::as_object)
                .and_then(|headers| {
                    headers
                        .iter()
                        .find(|(name, _)| name.eq_ignore_ascii_case("x-kinvey-request-id"))
                })
                .and_then(|(_, id)| id.as_str())
                .map(|id| id.trim().to_owned())
                .filter(|id| !id.is_empty());
        }
        let status = object
            .get("statusCode")
            .and_then(Value::as_u64)
            .and_then(|s| u16::try_from(s).ok());
        match (object.get("result"), status) {
            (Some(Value::Object(inner)), Some(status)) => {
                read_object(inner, status, kinvey, analysis)
            }
            // No status inside: an error in the result is one all the same, with no
            // status to hold it against.
            (Some(Value::Object(inner)), None) if inner.get("error").is_some() => {
                read_error(inner, http_status, ErrorAt::Wrapped, kinvey, analysis)
            }
            _ => {}
        }
        return;
    }
    if let Some(Value::Array(errors)) = object.get("errors") {
        let before = analysis.errors.len();
        for element in errors.iter().filter_map(Value::as_object) {
            let index = element.get("index").and_then(Value::as_u64);
            read_error(
                element,
                http_status,
                ErrorAt::Batch(index),
                kinvey,
                analysis,
            );
        }
        let count = analysis.errors.len() - before;
        if count > 0 {
            analysis.anomalies.push(Anomaly::BatchErrors { count });
        }
        return;
    }
    // A known Kinvey error under a status below 400 on a Kinvey exchange is an error
    // still, flagged for its status: an app that reads the status alone takes it for a
    // success. (Another API's `{"error":"UserNotFound"}` at 200 is its own business.)
    let known = kinvey
        && object
            .get("error")
            .and_then(Value::as_str)
            .is_some_and(|name| lookup(name.trim()).is_some());
    if http_status >= 400 || known {
        read_error(object, http_status, ErrorAt::Body, kinvey, analysis);
    }
}

/// Reads one `{error, description, debug}` (or `{name, message}`) object, when
/// [`is_taken`] as Kinvey's.
/// Where an error was read: the body's own, or an element of a batch's `errors[]` (with
/// its `index`, when it gives one).
#[derive(Debug, Clone, Copy)]
enum ErrorAt {
    Body,
    Batch(Option<u64>),
    /// The result of an `X-Kinvey-ResponseWrapper` body that gives no `statusCode`.
    Wrapped,
}

fn read_error(
    object: &Map<String, Value>,
    status: u16,
    at: ErrorAt,
    kinvey: bool,
    analysis: &mut KinveyAnalysis,
) {
    let (name, description) = match (object.get("error"), object.get("name")) {
        // An empty name names no error (as in bodies that are not JSON).
        (Some(Value::String(name)), _) if name.is_empty() => return,
        (Some(Value::String(name)), _) => {
            let description = object.get("description");
            if !is_taken(kinvey, name, description.is_some()) {
                return;
            }
            // Batch elements have a shape of their own.
            if description.is_none() && !matches!(at, ErrorAt::Batch(_)) {
                let message_instead = object.contains_key("message");
                analysis
                    .anomalies
                    .push(Anomaly::MissingDescription { message_instead });
            }
            (name.clone(), description.or(object.get("message")))
        }
        // Kinvey's `error` is a name; anything else in a failed Kinvey exchange (or
        // beside a `description`) is flagged, and named by what it is: a number or a
        // literal as it came, an object or array by its kind (it may hold anything, a
        // token among it).
        (Some(found), None) if !matches!(at, ErrorAt::Batch(_)) || !found.is_null() => {
            let description = object.get("description");
            if !(kinvey || description.is_some()) {
                return;
            }
            let found = match found {
                Value::Object(_) => "(an object)".to_owned(),
                Value::Array(_) => "(an array)".to_owned(),
                scalar => scalar.to_string(),
            };
            analysis.anomalies.push(Anomaly::ErrorNotAName {
                found: found.clone(),
            });
            (found, description)
        }
        (_, Some(Value::String(name))) if name.is_empty() => return,
        // Many servers' errors are `{name, message}` (Feathers' BadRequest, say): only
        // on a Kinvey exchange is it Kinvey's variant.
        (_, Some(Value::String(_))) if !kinvey => return,
        (_, Some(Value::String(name))) => {
            analysis.anomalies.push(Anomaly::NameMessageVariant);
            (
                name.clone(),
                object.get("message").or(object.get("description")),
            )
        }
        _ => return,
    };
    let debug = match object.get("debug") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(text.clone()),
        Some(other) => {
            if other.is_object() || other.is_array() {
                analysis.anomalies.push(Anomaly::DebugIsObject);
            }
            Some(other.to_string())
        }
    };
    let description = description.map(|d| match d {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    });
    push_error(analysis, name, status, description, debug, at);
}

/// Classifies a found error and flags what is odd about its name and status.
fn push_error(
    analysis: &mut KinveyAnalysis,
    name: String,
    status: u16,
    description: Option<String>,
    debug: Option<String>,
    at: ErrorAt,
) {
    // Lines ended by CRLF (a stack trace) are lines, not escaped carriage returns.
    let description = description.map(|d| printable(&d.replace("\r\n", "\n")).into_owned());
    let debug = debug.map(|d| printable(&d.replace("\r\n", "\n")).into_owned());
    let trimmed = name.trim();
    if trimmed != name {
        analysis.anomalies.push(Anomaly::StrayWhitespace {
            name: printable_line(&name).into_owned(),
        });
    }
    let entry = lookup(trimmed);
    // What the server wrote is shown on terminals: no escape sequences get through.
    // Whitespace at the ends (a newline, a tab) is kept as spaces, so that the name
    // still trims to the one it names.
    let spaces = |part: &str| " ".repeat(part.chars().count());
    let lead = name.len() - name.trim_start().len();
    let name = format!(
        "{}{}{}",
        spaces(&name[..lead]),
        printable_line(trimmed),
        spaces(&name[lead + trimmed.len()..]),
    );
    let (class, known) = match entry {
        Some(entry) => {
            // Batch elements carry no status of their own.
            if matches!(at, ErrorAt::Body) && !entry.statuses.contains(&status) {
                analysis.anomalies.push(Anomaly::StatusMismatch {
                    name: entry.name.into(),
                    status,
                    expected: entry.statuses.to_vec(),
                });
            }
            (entry.class, true)
        }
        None => {
            analysis.anomalies.push(Anomaly::UnknownName {
                name: name.trim().to_owned(),
            });
            (ErrorClass::for_unknown_status(status), false)
        }
    };
    analysis.errors.push(KinveyError {
        name,
        status,
        description,
        debug,
        class,
        known,
        index: match at {
            ErrorAt::Batch(index) => index,
            ErrorAt::Body | ErrorAt::Wrapped => None,
        },
    });
}

/// The `error`, `description` and `debug` fields of a body that looks like a Kinvey
/// error without being JSON (curly quotes, missing commas — as on Kinvey's own
/// troubleshooting page): the first of each, quoted with straight or curly double
/// quotes or with single quotes.
#[derive(Debug, Default, PartialEq)]
struct LooseFields {
    error: Option<String>,
    description: Option<String>,
    debug: Option<String>,
}

fn kinvey_looking_fields(text: &str) -> LooseFields {
    static FIELD: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r#"["“”'](error|description|debug)["“”']\s*:\s*(?:["“”]([^"“”\n]*)["“”]|'([^'\n]*)')"#,
        )
        .expect("the pattern is valid")
    });
    let mut fields = LooseFields::default();
    for found in FIELD.captures_iter(text) {
        let Some(value) = found.get(2).or(found.get(3)) else {
            continue;
        };
        let slot = match &found[1] {
            "error" => &mut fields.error,
            "description" => &mut fields.description,
            _ => &mut fields.debug,
        };
        slot.get_or_insert_with(|| value.as_str().to_owned());
    }
    fields.error = fields.error.filter(|name| !name.is_empty());
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{CapturedBody, Headers};
    use bytes::Bytes;

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        pairs.iter().copied().collect()
    }

    fn flow(status: u16, response_headers: &[(&str, &str)], body: &str) -> Flow {
        let url = "https://baas.kinvey.com/appdata/kid_x/books";
        let mut flow = Flow::exchange(
            1,
            "127.0.0.1:5000".parse().unwrap(),
            "GET",
            url,
            Some(status),
        );
        flow.request.headers = headers(&[("X-Kinvey-API-Version", "5")]);
        let response = flow.response.as_mut().expect("a response");
        response.headers = headers(response_headers);
        response.body = CapturedBody::whole(Bytes::copy_from_slice(body.as_bytes()));
        flow
    }

    const JSON: (&str, &str) = ("Content-Type", "application/json");

    fn codes(a: &KinveyAnalysis) -> Vec<&'static str> {
        a.anomalies.iter().map(Anomaly::code).collect()
    }

    #[test]
    fn escape_sequences_from_a_body_never_reach_a_terminal() {
        let body =
            r#"{"error":"Evil\u001b[2J","description":"red\u001b[31m","debug":"a\nb\u0007"}"#;
        let a = analyze(&flow(400, &[("content-type", "application/json")], body));
        let e = a.primary().unwrap();
        assert_eq!(e.name, r"Evil\u{1b}[2J");
        // Named in a finding as it is shown, its escape written out once.
        let unknown = a.anomalies.iter().map(|f| f.message()).collect::<Vec<_>>();
        assert!(
            unknown
                .iter()
                .any(|m| m.starts_with(r#""Evil\u{1b}[2J" is not in"#)),
            "{unknown:?}"
        );
        assert_eq!(e.description.as_deref(), Some(r"red\u{1b}[31m"));
        assert_eq!(e.debug.as_deref(), Some("a\nb\\u{7}"), "newlines stay");
        // A name is one word on a line of its own: no newline gets through either.
        let body = r#"{"error":"Fake\nRequest ID: x","description":"d"}"#;
        let a = analyze(&flow(400, &[("content-type", "application/json")], body));
        assert_eq!(a.primary().unwrap().name, r"Fake\u{a}Request ID: x");
    }

    #[test]
    fn a_name_ending_in_a_newline_or_tab_is_the_known_name_with_stray_whitespace() {
        for (sent, shown) in [
            ("BLTimeoutError\n", r"BLTimeoutError\u{a}"),
            ("BLTimeoutError\t", r"BLTimeoutError\u{9}"),
            ("\r\nBLTimeoutError", r"\u{d}\u{a}BLTimeoutError"),
        ] {
            let body = serde_json::json!({ "error": sent, "description": "d" }).to_string();
            let a = analyze(&flow(550, &[JSON], &body));
            let e = a.primary().unwrap();
            assert_eq!(
                (e.trimmed_name(), e.class, e.known),
                ("BLTimeoutError", ErrorClass::Fix, true)
            );
            assert_eq!(codes(&a), ["stray_whitespace"], "{sent:?}");
            assert!(
                a.anomalies[0].message().contains(shown),
                "{}",
                a.anomalies[0].message()
            );
            assert!(!e.name.contains(['\n', '\r', '\t']), "{:?}", e.name);
        }
    }

    #[test]
    fn an_error_that_is_not_a_name_is_flagged_and_classified_by_status() {
        let a = analyze(&flow(
            400,
            &[JSON, ("X-Kinvey-Request-ID", "r")],
            r#"{"error":42,"description":"numeric"}"#,
        ));
        let e = a.primary().unwrap();
        assert_eq!(
            (e.trimmed_name(), e.class, e.known),
            ("42", ErrorClass::Fix, false)
        );
        assert_eq!(e.description.as_deref(), Some("numeric"));
        assert_eq!(codes(&a)[0], "error_not_a_name");
        let a = analyze(&flow(
            503,
            &[JSON],
            r#"{"error":{"code":7,"message":"session TOKEN-0123456789 expired"}}"#,
        ));
        let e = a.primary().unwrap();
        assert_eq!(
            (e.trimmed_name(), e.class),
            ("(an object)", ErrorClass::Retry)
        );
        assert!(a.anomalies[0]
            .message()
            .starts_with("error is (an object), not a name"));
        assert!(
            !format!("{a:?}").contains("TOKEN"),
            "what it holds stays out"
        );
        // Another server's error that is not Kinvey's: left alone.
        let mut other = flow(400, &[JSON], r#"{"error":true}"#);
        other.host = "api.example.com".into();
        other.request.headers = Headers::default();
        assert!(analyze(&other).errors.is_empty());
        // A batch element that names no error is none.
        let a = analyze(&flow(
            207,
            &[JSON],
            r#"{"errors":[{"index":0,"error":null}]}"#,
        ));
        assert!(a.errors.is_empty());
    }

    #[test]
    fn a_body_that_cannot_be_decoded_is_flagged_and_read_as_sent() {
        let body = r#"{"error":"AppProblem","description":"x"}"#;
        let a = analyze(&flow(403, &[JSON, ("Content-Encoding", "gzip")], body));
        let e = a.primary().unwrap();
        assert_eq!(
            (e.trimmed_name(), e.class),
            ("AppProblem", ErrorClass::Stop)
        );
        assert_eq!(codes(&a), ["undecodable_body"]);
        // Nothing found, but a failed Kinvey exchange: flagged still.
        let a = analyze(&flow(
            500,
            &[JSON, ("Content-Encoding", "br")],
            "\u{1}\u{2}",
        ));
        assert_eq!(codes(&a), ["undecodable_body"]);
        // A body whose whole would inflate too far is read from its start.
        use std::io::Write;
        let mut whole = br#"{"error":"KinveyInternalErrorStop","debug":""#.to_vec();
        whole.resize(crate::decode::MAX_DECODED + 1, b'x');
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&whole).unwrap();
        let mut huge = flow(500, &[JSON, ("Content-Encoding", "gzip")], "");
        huge.response.as_mut().unwrap().body = CapturedBody::whole(gz.finish().unwrap());
        let a = analyze(&huge);
        assert_eq!(
            a.primary().unwrap().trimmed_name(),
            "KinveyInternalErrorStop"
        );
        assert!(a.anomalies.is_empty(), "{:?}", a.anomalies);
        // A gzip'd body that broke off is read from its start, not taken for undecodable.
        let mut whole =
            br#"{"error":"KinveyInternalErrorStop","description":"d","debug":""#.to_vec();
        whole.extend(std::iter::repeat_n(b'y', 50_000));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&whole).unwrap();
        let gz = gz.finish().unwrap();
        let mut broken = flow(500, &[JSON, ("Content-Encoding", "gzip")], "");
        broken.response.as_mut().unwrap().body = CapturedBody {
            bytes: Bytes::copy_from_slice(&gz[..gz.len() / 2]),
            wire_size: gz.len() as u64 / 2,
            truncated: false,
            incomplete: true,
        };
        let a = analyze(&broken);
        assert_eq!(
            a.primary().unwrap().trimmed_name(),
            "KinveyInternalErrorStop"
        );
        assert!(a.anomalies.is_empty(), "{:?}", a.anomalies);
    }

    #[test]
    fn json_nested_deeper_than_the_parser_goes_is_read_without_calling_it_invalid() {
        let body = format!(
            r#"{{"error":"BadRequest","description":"deep","debug":{}{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        let a = analyze(&flow(400, &[JSON], &body));
        let e = a.primary().unwrap();
        assert_eq!((e.trimmed_name(), e.class), ("BadRequest", ErrorClass::Fix));
        assert_eq!(e.description.as_deref(), Some("deep"));
        assert!(
            !codes(&a).contains(&"unparseable_body"),
            "{:?}",
            a.anomalies
        );
    }

    #[test]
    fn a_plain_error_is_classified_from_the_dictionary() {
        let f = flow(
            500,
            &[JSON, ("X-Kinvey-Request-ID", "abc")],
            r#"{"error":"KinveyInternalErrorRetry","description":"retry","debug":"d"}"#,
        );
        let a = analyze(&f);
        assert_eq!(a.request_id.as_deref(), Some("abc"));
        let e = a.primary().unwrap();
        assert_eq!(
            (e.class, e.known, e.badge().as_str()),
            (ErrorClass::Retry, true, "RETRY")
        );
        assert_eq!(e.debug.as_deref(), Some("d"));
        assert!(a.anomalies.is_empty(), "{:?}", a.anomalies);
    }

    #[test]
    fn a_success_with_a_request_id_is_kinvey_without_errors() {
        let a = analyze(&flow(200, &[JSON, ("x-kinvey-request-id", "r1")], "[]"));
        assert!(a.is_kinvey());
        assert!(a.errors.is_empty() && a.anomalies.is_empty());
        let plain = analyze(&flow(200, &[JSON], r#"{"error":"x"}"#));
        assert!(
            !plain.is_kinvey(),
            "an error field on a 200 is not an error"
        );
    }

    /// A flow of another server: no Kinvey host, header or credentials.
    fn foreign_flow(status: u16, body: &str) -> Flow {
        let mut f = flow(status, &[JSON], body);
        f.host = "auth.example.com".into();
        f.request.url = "https://auth.example.com/oauth/token".into();
        f.request.headers = Headers::default();
        f
    }

    #[test]
    fn another_servers_json_errors_are_not_kinvey_errors() {
        for (status, body) in [
            (
                400,
                r#"{"error":"invalid_grant","error_description":"Bad code"}"#,
            ),
            (500, r#"{"error":"Internal Server Error","message":"boom"}"#),
            (404, r#"{"name":"NotFoundError","message":"no route"}"#),
            (400, r#"{"name":"BadRequest","message":"Feathers says no"}"#),
            (
                500,
                r#"{"result":{"error":"x","message":"y"},"headers":{},"statusCode":500}"#,
            ),
            (200, r#"{"result":[],"headers":{}}"#),
            (502, "{'error': 'upstream', oops}"),
        ] {
            let a = analyze(&foreign_flow(status, body));
            assert!(!a.is_kinvey(), "{body}: {:?}", a.errors);
            assert!(a.anomalies.is_empty(), "{body}: {:?}", a.anomalies);
        }
        // The same body on a Kinvey exchange is a Kinvey error with an unknown name.
        let body = r#"{"error":"invalid_grant","error_description":"Bad code"}"#;
        let kinvey = [
            (
                "response id",
                "x-kinvey-request-id",
                "r1",
                "auth.example.com",
            ),
            (
                "API version",
                "x-kinvey-api-version",
                "5",
                "auth.example.com",
            ),
            (
                "credentials",
                "authorization",
                "Kinvey abc.def",
                "auth.example.com",
            ),
            ("host", "x-other", "1", "kvy-us2-baas.kinvey.com"),
        ];
        for (what, name, value, host) in kinvey {
            let mut f = foreign_flow(400, body);
            f.host = host.into();
            let sent = headers(&[(name, value)]);
            match name {
                "x-kinvey-request-id" => f.response.as_mut().unwrap().headers = sent,
                _ => f.request.headers = sent,
            }
            let a = analyze(&f);
            let e = a.primary().unwrap_or_else(|| panic!("{what}: no error"));
            assert_eq!(
                (e.name.as_str(), e.known),
                ("invalid_grant", false),
                "{what}"
            );
        }
        // An empty API version is no Kinvey signal.
        let mut empty = foreign_flow(400, body);
        empty.request.headers = headers(&[("x-kinvey-api-version", " ")]);
        assert!(!analyze(&empty).is_kinvey());
        // Kinvey's shape, or a name from the dictionary, is taken from any server.
        let shaped = analyze(&foreign_flow(
            400,
            r#"{"error":"Custom","description":"d"}"#,
        ));
        assert_eq!(shaped.primary().map(|e| e.known), Some(false));
        let known = analyze(&foreign_flow(404, r#"{"error":"EntityNotFound"}"#));
        assert_eq!(known.primary().map(|e| e.known), Some(true));
    }

    #[test]
    fn unknown_names_are_classed_by_status_and_flagged() {
        let a = analyze(&flow(
            429,
            &[JSON],
            r#"{"error":"QuotaExceeded","description":"x"}"#,
        ));
        let e = a.primary().unwrap();
        assert_eq!(
            (e.class, e.known, e.badge().as_str()),
            (ErrorClass::Retry, false, "?RETRY")
        );
        assert_eq!(codes(&a), ["unknown_name"]);
    }

    #[test]
    fn status_mismatch_and_whitespace_are_flagged() {
        let a = analyze(&flow(
            400,
            &[JSON],
            r#"{"error":"EntityNotFound","description":"x"}"#,
        ));
        assert_eq!(codes(&a), ["status_mismatch"]);
        assert_eq!(a.primary().unwrap().class, ErrorClass::Fix);
        let a = analyze(&flow(
            550,
            &[JSON],
            r#"{"error":"BLTimeoutError ","description":"x"}"#,
        ));
        assert_eq!(codes(&a), ["stray_whitespace"]);
        assert!(a.primary().unwrap().known);
        assert_eq!(a.primary().unwrap().trimmed_name(), "BLTimeoutError");
        // Both statuses of APIVersionNotAvailable are right.
        for status in [400, 501] {
            let a = analyze(&flow(
                status,
                &[JSON],
                r#"{"error":"APIVersionNotAvailable","description":"d"}"#,
            ));
            assert!(a.anomalies.is_empty(), "{status}");
        }
    }

    #[test]
    fn the_pages_own_broken_example_is_unparseable_but_understood() {
        let body =
            "{\n    “error”: “InsufficientCredentials”\n    “description”: “The credentials…”\n}";
        let a = analyze(&flow(401, &[JSON], body));
        assert_eq!(codes(&a), ["unparseable_body"]);
        let e = a.primary().unwrap();
        assert_eq!(e.name, "InsufficientCredentials");
        assert_eq!(e.description.as_deref(), Some("The credentials…"));
        assert_eq!(e.class, ErrorClass::Fix);
        let apostrophe = kinvey_looking_fields(
            "{'error': 'KinveyInternalErrorRetry' \"description\": \"The server's busy\" \"debug\": \"\"}",
        );
        assert_eq!(
            apostrophe,
            LooseFields {
                error: Some("KinveyInternalErrorRetry".into()),
                description: Some("The server's busy".into()),
                debug: Some(String::new()),
            }
        );
    }

    #[test]
    fn a_failed_kinvey_exchange_without_an_error_body_is_flagged() {
        let found = |status: u16, content_type: &str, body: &str| {
            let a = analyze(&flow(status, &[("content-type", content_type)], body));
            assert!(a.errors.is_empty(), "{:?}", a.errors);
            assert_eq!(codes(&a), ["no_error_body"], "{body}");
            match &a.anomalies[0] {
                Anomaly::NoErrorBody { found, .. } => (*found, a.anomalies[0].message()),
                other => panic!("{other:?}"),
            }
        };
        let from_kinvey = |status: u16, body: &str| {
            let mut flow = flow(status, &[JSON, ("X-Kinvey-Request-ID", "abc123")], body);
            flow.request.method = "POST".into();
            analyze(&flow).anomalies[0].message()
        };
        let (what, message) = found(502, "text/html", "<h1>Bad gateway</h1>");
        assert_eq!(what, "an HTML page");
        assert!(
            message
                .starts_with("the 502 has an HTML page, not Kinvey's {error, description, debug}"),
            "{message}"
        );
        assert!(message.ends_with("retry with backoff"), "{message}");
        assert_eq!(found(503, "text/plain", "").0, "no body");
        assert_eq!(found(500, JSON.1, r#"[{"error":"x"}]"#).0, "a JSON array");
        assert_eq!(
            found(400, JSON.1, r#"{"error":""}"#).0,
            "an empty error name"
        );
        assert_eq!(
            found(403, JSON.1, r#"{"message":"Forbidden"}"#).0,
            "JSON without an error name"
        );
        let (what, message) = found(401, "text/plain", "Unauthorized");
        assert_eq!(what, "text that is not JSON");
        assert!(!message.contains("retry"), "{message}");
        // With a request id, Kinvey itself answered (custom code, say): no gateway.
        let message = from_kinvey(400, r#"{"message":"bad input"}"#);
        assert!(
            message.contains("Kinvey answered (it sent a request id)"),
            "{message}"
        );
        assert!(!message.contains("gateway"), "{message}");

        // Not on exchanges that are not Kinvey's, not for a HEAD, nor for a body kept
        // to nothing (--max-body 0), nor where an error was read.
        let mut elsewhere = flow(
            502,
            &[("content-type", "text/html")],
            "<h1>Bad gateway</h1>",
        );
        elsewhere.host = "example.com".into();
        elsewhere.request.headers = headers(&[]);
        assert!(analyze(&elsewhere).anomalies.is_empty());
        let mut head = flow(404, &[], "");
        head.request.method = "HEAD".into();
        assert!(codes(&analyze(&head)).is_empty());
        let mut unkept = flow(500, &[JSON], "");
        unkept.response.as_mut().unwrap().body = CapturedBody {
            wire_size: 120,
            truncated: true,
            ..CapturedBody::default()
        };
        assert!(codes(&analyze(&unkept)).is_empty());
        let mut cut = flow(404, &[JSON], r#"{"error":"Ent"#);
        cut.response.as_mut().unwrap().body.truncated = true;
        assert!(codes(&analyze(&cut)).is_empty());
        let named = analyze(&flow(
            404,
            &[JSON],
            r#"{"error":"EntityNotFound","description":"d"}"#,
        ));
        assert!(codes(&named).is_empty());
    }

    #[test]
    fn variants_wrappers_batches_and_content_types_are_flagged() {
        let a = analyze(&flow(
            500,
            &[("content-type", "text/html")],
            r#"{"error":"KinveyInternalErrorStop","description":"d"}"#,
        ));
        assert_eq!(codes(&a), ["non_json_content_type"]);
        assert_eq!(a.primary().unwrap().class, ErrorClass::Stop);

        let a = analyze(&flow(
            404,
            &[JSON],
            r#"{"name":"EntityNotFound","message":"gone"}"#,
        ));
        assert_eq!(codes(&a), ["name_message_variant"]);
        assert_eq!(a.primary().unwrap().description.as_deref(), Some("gone"));
        // No description (Kinvey's page: always there), or half the variant.
        let a = analyze(&flow(404, &[JSON], r#"{"error":"EntityNotFound"}"#));
        assert_eq!(codes(&a), ["missing_description"]);
        let a = analyze(&flow(
            404,
            &[JSON],
            r#"{"error":"EntityNotFound","message":"gone"}"#,
        ));
        assert_eq!(codes(&a), ["missing_description"]);
        assert!(a.anomalies[0].message().contains("message instead"));
        assert_eq!(a.primary().unwrap().description.as_deref(), Some("gone"));

        let a = analyze(&flow(
            400,
            &[JSON],
            r#"{"error":"JSONParseError","description":"d","debug":{"line":3}}"#,
        ));
        assert_eq!(codes(&a), ["debug_is_object"]);
        assert_eq!(a.primary().unwrap().debug.as_deref(), Some(r#"{"line":3}"#));

        let wrapped = r#"{"result":{"error":"EntityNotFound","description":"x"},"headers":{},"statusCode":404}"#;
        let a = analyze(&flow(
            200,
            &[JSON, ("X-Kinvey-ResponseWrapper", "true")],
            wrapped,
        ));
        assert_eq!(codes(&a), ["wrapped_body"]);
        assert_eq!(a.primary().unwrap().status, 404);

        let batch = r#"{"entities":[{}],"errors":[{"index":1,"error":"KinveyInternalErrorRetry"},{"index":2,"error":"ParameterValueOutOfRange"}]}"#;
        let a = analyze(&flow(207, &[JSON], batch));
        assert_eq!(codes(&a), ["batch_errors"]);
        assert_eq!(a.errors.len(), 2);
        assert_eq!(a.errors[1].index, Some(2));
        assert_eq!(a.errors[1].class, ErrorClass::Fix);
        // Elements without an index are batch elements still: no status of their own.
        let unindexed = r#"{"errors":[{"error":"ParameterValueOutOfRange"},{"error":"KinveyInternalErrorStop"}]}"#;
        let u = analyze(&flow(207, &[JSON], unindexed));
        assert_eq!(codes(&u), ["batch_errors"]);
        // The flow is listed (and filtered) by its gravest element, the first of those.
        assert_eq!(a.primary().unwrap().name, "ParameterValueOutOfRange");
        let stop = r#"{"errors":[{"index":0,"error":"JSONParseError"},{"index":1,"error":"KinveyInternalErrorStop"},{"index":2,"error":"KinveyInternalErrorStop"}]}"#;
        let a = analyze(&flow(207, &[JSON], stop));
        let primary = a.primary().unwrap();
        assert_eq!((primary.class, primary.index), (ErrorClass::Stop, Some(1)));
        // A capture recorded before keeps listing it by its first element: so do its
        // exports and its Kinvey tab.
        let older = crate::kinvey::KinveySummary {
            error: Some("JSONParseError".into()),
            ..Default::default()
        };
        assert_eq!(a.listed_error(&older).unwrap().index, Some(0));
        let listed = a.listed_error(&Default::default()).unwrap();
        assert_eq!(listed.index, Some(1));
        // The summary keeps the others, each once, for filters.
        let summary = crate::kinvey::KinveySummary::new(&a, &[]);
        assert_eq!(summary.error.as_deref(), Some("KinveyInternalErrorStop"));
        let others: Vec<_> = summary.all_errors().skip(1).collect();
        assert_eq!(others, [("JSONParseError", ErrorClass::Fix, true)]);
        let single = analyze(&flow(404, &[JSON], r#"{"error":"EntityNotFound"}"#));
        assert!(crate::kinvey::KinveySummary::new(&single, &[])
            .other_errors
            .is_empty());
    }

    #[test]
    fn below_400_only_bodies_that_open_an_object_are_read() {
        assert!(starts_an_object(b" \r\n\t{\"a\":1}"));
        assert!(!starts_an_object(b"[{\"error\":\"EntityNotFound\"}]"));
        assert!(!starts_an_object(b""));
        // A wrapper without a statusCode: the error in its result is read all the same
        // (no status to hold it against), and the request id the SDK asked for in it.
        let wrapped = "\n {\"result\":{\"error\":\"EntityNotFound\",\"description\":\"d\"},\"headers\":{\"X-Kinvey-Request-Id\":\"inner1\"}}";
        let a = analyze(&flow(200, &[JSON], wrapped));
        assert_eq!(codes(&a), ["wrapped_body"]);
        assert_eq!(a.primary().unwrap().class, ErrorClass::Fix);
        assert_eq!(a.request_id.as_deref(), Some("inner1"));
        // A known Kinvey error under a success status: an error, flagged for its status;
        // an app's own document with an `error` field is none.
        let a = analyze(&flow(
            200,
            &[JSON],
            r#"{"error":"KinveyInternalErrorRetry","description":"x"}"#,
        ));
        assert_eq!(codes(&a), ["status_mismatch"]);
        assert_eq!(a.primary().unwrap().class, ErrorClass::Retry);
        let own = analyze(&flow(200, &[JSON], r#"{"error":"jam","description":"d"}"#));
        assert!(own.errors.is_empty() && own.anomalies.is_empty(), "{own:?}");
        // Nor is another API's document naming a dictionary error.
        let mut other = flow(
            200,
            &[JSON],
            r#"{"error":"UserNotFound","description":"d"}"#,
        );
        other.request.headers = Headers::default();
        other.host = "api.example.com".into();
        let other = analyze(&other);
        assert!(
            other.errors.is_empty() && other.anomalies.is_empty(),
            "{other:?}"
        );
        // At 400 and above anything is read: a body that is not JSON may still name one.
        let a = analyze(&flow(401, &[JSON], "“error”: “InvalidCredentials”"));
        assert_eq!(codes(&a), ["unparseable_body"]);
    }

    #[test]
    fn an_error_body_cut_at_max_body_is_read_from_its_start() {
        use std::io::Write;
        let whole = format!(
            r#"{{"error":"KinveyInternalErrorStop","description":"The Kinvey server encountered an unexpected error. Please contact support.","debug":"{}"}}"#,
            "x".repeat(5000)
        );
        let keep = |bytes: &[u8]| CapturedBody {
            bytes: Bytes::copy_from_slice(&bytes[..bytes.len().min(4096)]),
            wire_size: bytes.len() as u64,
            truncated: true,
            incomplete: false,
        };
        let mut plain = flow(500, &[JSON], "");
        plain.response.as_mut().unwrap().body = keep(whole.as_bytes());
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
        gz.write_all(whole.as_bytes()).unwrap();
        let mut gzipped = flow(500, &[JSON, ("Content-Encoding", "gzip")], "");
        gzipped.response.as_mut().unwrap().body = keep(&gz.finish().unwrap());
        for f in [plain, gzipped] {
            let a = analyze(&f);
            let e = a.primary().expect("the error is read from the kept start");
            assert_eq!(e.name, "KinveyInternalErrorStop");
            assert_eq!(e.class, ErrorClass::Stop);
            assert!(e
                .description
                .as_deref()
                .unwrap()
                .starts_with("The Kinvey server"));
            // Only kept in part; not broken.
            assert!(a.anomalies.is_empty(), "{:?}", a.anomalies);
        }
    }

    #[test]
    fn a_byte_order_mark_is_named_and_an_empty_name_is_no_error() {
        let a = analyze(&flow(
            401,
            &[JSON],
            "\u{feff}{\"error\":\"InvalidCredentials\",\"description\":\"d\"}",
        ));
        assert_eq!(a.primary().unwrap().name, "InvalidCredentials");
        assert_eq!(codes(&a), ["unparseable_body"]);
        assert!(a.anomalies[0].message().contains("byte-order mark"));
        for body in [r#"{"error":""}"#, r#"{"name":"","message":"m"}"#] {
            let a = analyze(&flow(400, &[JSON], body));
            assert!(a.errors.is_empty(), "{body}");
        }
    }

    #[test]
    fn a_kinvey_request_without_an_api_version_is_flagged() {
        let mut f = flow(200, &[JSON, ("X-Kinvey-Request-ID", "r")], "{}");
        f.request.headers = Headers::default();
        assert_eq!(codes(&analyze(&f)), ["missing_api_version"]);
        let mut other = flow(200, &[JSON], "{}");
        other.request.headers = Headers::default();
        assert!(
            analyze(&other).anomalies.is_empty(),
            "not a Kinvey exchange"
        );
        // Version 0 asks for the errors of before version 1.
        f.request.headers = headers(&[("X-Kinvey-API-Version", " 0 ")]);
        let a = analyze(&f);
        assert_eq!(codes(&a), ["missing_api_version"]);
        assert!(
            a.anomalies[0].message().contains("API-Version 0:"),
            "{}",
            a.anomalies[0].message()
        );
        f.request.headers = headers(&[("X-Kinvey-API-Version", "1")]);
        assert!(analyze(&f).anomalies.is_empty());
    }

    #[test]
    fn gzip_bodies_are_decoded_first() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(br#"{"error":"BLInternalError","description":"x"}"#)
            .unwrap();
        let mut f = flow(550, &[JSON, ("Content-Encoding", "gzip")], "");
        f.response.as_mut().unwrap().body.bytes = Bytes::from(gz.finish().unwrap());
        assert_eq!(analyze(&f).primary().unwrap().class, ErrorClass::Stop);
    }

    #[test]
    fn proxy_made_errors_are_not_kinvey_errors() {
        let mut f = flow(502, &[JSON], r#"{"error":"UpstreamConnectFailure"}"#);
        f.response.as_mut().unwrap().from_proxy = true;
        let a = analyze(&f);
        assert!(a.errors.is_empty() && !a.is_kinvey());
    }
}
