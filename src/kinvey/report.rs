//! The support report: a short, redacted text about one exchange that a developer can
//! paste into a message to Kinvey support.

use std::fmt::Write;

use super::{Finding, KinveyAnalysis};
use crate::flow::{printable_line, utc_timestamp, Flow};
use crate::redact::{redact_json_text, redact_url, EarlierSecrets, Secrets};

/// The report for `flow`, given its analysis and the behaviour warnings stored with it.
/// No credential, token, cookie or app secret of the flow appears in it, nor one of
/// `earlier` (the flows' before it: [`crate::capture::CaptureReader::secrets_before`]).
pub fn support_report(
    flow: &Flow,
    analysis: &KinveyAnalysis,
    warnings: &[Finding],
    earlier: &mut EarlierSecrets,
) -> String {
    let secrets = Secrets::of(flow);
    // What the flow sent is scrubbed of secrets; kinspect's own words are not: a short
    // password must not rewrite them.
    let mut scrub = |value: &str| {
        // A debug is often JSON: its secret-named fields go too, as in a HAR.
        let (value, _) = redact_json_text(value);
        earlier.scrub(&secrets.scrub(&value))
    };
    // Only what the server said in them.
    let anomalies: Vec<String> = analysis
        .anomalies
        .iter()
        .map(|anomaly| anomaly.message_with(&mut scrub))
        .collect();
    let mut out = String::new();
    let mut line = |label: &str, value: &str, how: Scrub| {
        let value = match how {
            Scrub::Clear => value.to_owned(),
            Scrub::Secrets => scrub(value),
        };
        // A value of several lines (a stack trace) keeps them, indented under the first.
        let mut label = label;
        for text in value.lines().chain(value.is_empty().then_some("")) {
            let _ = writeln!(out, "{label:<13}{}", printable_line(text));
            label = "";
        }
    };
    use Scrub::{Clear, Secrets as Scrubbed};
    line(
        "Request ID:",
        analysis
            .request_id
            .as_deref()
            .unwrap_or("(none: the response carried no X-Kinvey-Request-ID)"),
        Scrubbed,
    );
    line("Time (UTC):", &utc_timestamp(flow.started_at), Clear);
    line(
        "Request:",
        &format!("{} {}", flow.request.method, redact_url(&flow.request.url)),
        Scrubbed,
    );
    let status = flow
        .status()
        .map_or_else(|| "(no response)".to_owned(), |s| s.to_string());
    line("Status:", &status, Clear);
    if let Some(body) = flow
        .response
        .as_ref()
        .map(|r| &r.body)
        .filter(|b| b.truncated)
    {
        let kept = format!(
            "kinspect kept the first {} of its {} bytes (--max-body); the error is read from them",
            body.bytes.len(),
            body.wire_size
        );
        line("Body:", &kept, Clear);
    }
    let element = |error: &super::KinveyError| {
        error
            .index
            .map(|i| format!(" (element {i})"))
            .unwrap_or_default()
    };
    match analysis.primary() {
        Some(error) => {
            line(
                "Error:",
                &format!("{}{}", error.trimmed_name(), element(error)),
                Scrubbed,
            );
            line(
                "Class:",
                &format!("{} - {}", error.badge(), error.next_step()),
                Clear,
            );
            line(
                "Description:",
                error.description.as_deref().unwrap_or("(none)"),
                Scrubbed,
            );
            line(
                "Debug:",
                error.debug.as_deref().unwrap_or("(none)"),
                Scrubbed,
            );
            // A batch's other elements, in their order (the main one may not be first).
            let others = analysis.errors.iter().filter(|e| !std::ptr::eq(*e, error));
            for more in others {
                line(
                    "Also:",
                    &format!(
                        "{}{}: {}",
                        more.trimmed_name(),
                        element(more),
                        more.description.as_deref().unwrap_or("")
                    ),
                    Scrubbed,
                );
            }
        }
        None => line("Error:", "(none)", Clear),
    }
    if let Some(error) = &flow.error {
        line("Proxy error:", &error.message, Scrubbed);
    }
    line(
        "API version:",
        analysis.api_version.as_deref().unwrap_or("(not sent)"),
        Scrubbed,
    );
    line("Client app:", &client_app(flow), Scrubbed);
    for anomaly in &anomalies {
        line("Anomaly:", anomaly, Clear);
    }
    for warning in warnings {
        line("Client:", &warning.message, Clear);
    }
    let _ = writeln!(
        out,
        "(report by kinspect; credentials, tokens, cookies and secrets are redacted)"
    );
    out
}

/// Whether a line of the report is scrubbed of secrets.
#[derive(Clone, Copy)]
enum Scrub {
    /// kinspect's own words.
    Clear,
    /// Text the flow carried.
    Secrets,
}

/// The client's app and SDK as its headers describe them.
fn client_app(flow: &Flow) -> String {
    let headers = &flow.request.headers;
    let parts: Vec<String> = [
        "x-kinvey-client-app-version",
        "x-kinvey-device-information",
        "user-agent",
    ]
    .iter()
    .filter_map(|name| headers.get(name).map(|v| v.into_owned()))
    .collect();
    if parts.is_empty() {
        "(unknown)".into()
    } else {
        parts.join("; ")
    }
}
