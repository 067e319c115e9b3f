//! Client-behaviour checks across flows, per client + method + URL: a stop-class error
//! re-sent anyway; a fix-class error re-sent unchanged; a retry-class error re-sent
//! without backoff (gaps under 100 ms, or not growing).

use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::time::{Duration, SystemTime};

use lru::LruCache;
use serde::Serialize;

use super::{ErrorClass, KinveyAnalysis};
use crate::flow::{Flow, FlowId};
use crate::redact::holds_redacted;

/// Re-sending a transient error sooner than this is not backing off.
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);

/// A retry gap counts as growing only when it is at least this much longer than the
/// previous one: a constant backoff measured with a little timer noise is not growing.
pub const MIN_GROWTH: f64 = 1.2;

/// A retry this long after the attempt before it begins a new series (the user ran it
/// again): its gap is no backoff step to compare the next one with.
pub const SERIES_BREAK: Duration = Duration::from_secs(10);

/// How far an imported flow may seem to start before the previous attempt of its
/// series ended and still count as sent after it: a HAR's times are rounded to the
/// millisecond, phase by phase.
pub const OVERLAP_TOLERANCE: Duration = Duration::from_millis(5);

/// [`OVERLAP_TOLERANCE`] for flows kinspect timed itself (to the nanosecond, the end
/// from the start and a monotonic duration): clock noise only. Two requests sent in
/// the same millisecond and answered in 1.4 ms were taken for a re-send with 5 ms.
pub const LIVE_OVERLAP_TOLERANCE: Duration = Duration::from_micros(100);

/// Request fields that differ between attempts of the same request (a timestamp, a
/// tracing id), left out when telling whether a request was re-sent unchanged.
const PER_ATTEMPT_FIELDS: [&str; 12] = [
    "date",
    "content-length",
    "traceparent",
    "tracestate",
    "baggage",
    "sentry-trace",
    "x-request-id",
    "x-correlation-id",
    "x-amzn-trace-id",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
];

/// Request series remembered at most (oldest forgotten first).
const TRACKED_SERIES: usize = 16 * 1024;

/// A client behaving against what an error told it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BehaviourWarning {
    /// The previous attempt got a stop-class error and the client re-sent anyway.
    StopResent {
        /// The earlier flow.
        previous: FlowId,
        /// Its error.
        error: String,
    },
    /// The previous attempt got a fix-class error and the client re-sent the same request
    /// (body and fields but per-attempt ones), and it failed again.
    FixResentUnchanged {
        /// The earlier flow.
        previous: FlowId,
        /// Its error.
        error: String,
    },
    /// The previous attempt got a retry-class error and the client re-sent within
    /// [`MIN_BACKOFF`].
    RetryWithoutBackoff {
        /// The earlier flow.
        previous: FlowId,
        /// Milliseconds between the end of the earlier attempt and this one.
        gap_ms: u64,
    },
    /// Retries whose gaps do not grow by at least [`MIN_GROWTH`] (no exponential backoff).
    RetryBackoffNotGrowing {
        /// The earlier flow.
        previous: FlowId,
        /// This gap.
        gap_ms: u64,
        /// The gap before the earlier attempt.
        previous_gap_ms: u64,
    },
}

impl BehaviourWarning {
    /// A short stable code.
    pub fn code(&self) -> &'static str {
        match self {
            BehaviourWarning::StopResent { .. } => "stop_resent",
            BehaviourWarning::FixResentUnchanged { .. } => "fix_resent_unchanged",
            BehaviourWarning::RetryWithoutBackoff { .. } => "retry_without_backoff",
            BehaviourWarning::RetryBackoffNotGrowing { .. } => "retry_backoff_not_growing",
        }
    }

    /// What the client did wrong, in a sentence.
    pub fn message(&self) -> String {
        match self {
            BehaviourWarning::StopResent { previous, error } => format!(
                "re-sent after {error} (flow {previous}), a permanent error: do not retry it, contact support with the request ID"
            ),
            BehaviourWarning::FixResentUnchanged { previous, error } => format!(
                "re-sent unchanged after {error} (flow {previous}): the request must be changed before it can succeed"
            ),
            BehaviourWarning::RetryWithoutBackoff { previous, gap_ms } => format!(
                "retried {gap_ms} ms after a transient error (flow {previous}): wait at least {} ms and back off exponentially",
                MIN_BACKOFF.as_millis()
            ),
            BehaviourWarning::RetryBackoffNotGrowing { previous, gap_ms, previous_gap_ms } => format!(
                "retry gap {gap_ms} ms is not longer than the previous {previous_gap_ms} ms (flow {previous}): back off exponentially"
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SeriesKey {
    client: IpAddr,
    method: String,
    url: String,
}

#[derive(Debug, Clone)]
struct LastAttempt {
    id: FlowId,
    ended_at: SystemTime,
    error: Option<(ErrorClass, String)>,
    /// Its [`request_digest`], when it got a fix-class error (and was not redacted).
    request_digest: Option<u64>,
    /// Its [`body_digest`], when it got a stop- or retry-class error.
    body: Option<u64>,
    /// The gap before this attempt, when it was itself a retry.
    retry_gap: Option<Duration>,
}

/// Remembers the last attempt of each request series and judges the next one.
pub struct BehaviourTracker {
    last: LruCache<SeriesKey, LastAttempt>,
    /// How far a flow may start before the previous attempt ended and count as after it.
    overlap_tolerance: Duration,
}

impl Default for BehaviourTracker {
    fn default() -> Self {
        BehaviourTracker {
            last: LruCache::new(NonZeroUsize::new(TRACKED_SERIES).expect("non-zero")),
            overlap_tolerance: LIVE_OVERLAP_TOLERANCE,
        }
    }
}

impl std::fmt::Debug for BehaviourTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BehaviourTracker")
            .field("series", &self.last.len())
            .finish()
    }
}

/// What tells a re-sent request from a changed one: its body and its header fields
/// (in any order; [`PER_ATTEMPT_FIELDS`] left out). A fix is often a field: the
/// credentials after `InvalidCredentials`, the API version after
/// `APIVersionNotAvailable`. None for a request whose secrets were redacted (read from
/// a HAR exported so): a changed credential would look the same.
fn request_digest(flow: &Flow) -> Option<u64> {
    // The body's marker: in body_digest.
    if holds_redacted(flow.request.url.as_bytes())
        || flow
            .request
            .headers
            .iter()
            .any(|f| holds_redacted(&f.value))
    {
        return None;
    }
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    body_digest(flow)?.hash(&mut hasher);
    let mut fields: Vec<(compact_str::CompactString, &[u8])> = flow
        .request
        .headers
        .iter()
        .map(|field| (field.name.to_ascii_lowercase(), &field.value[..]))
        .filter(|(name, _)| !PER_ATTEMPT_FIELDS.contains(&name.as_str()))
        // A multipart form's boundary is new each attempt, as in the body.
        .map(
            |(name, value)| match name == "content-type" && is_multipart(value) {
                true => (name, &b"multipart/form-data"[..]),
                false => (name, value),
            },
        )
        .collect();
    fields.sort();
    fields.hash(&mut hasher);
    Some(hasher.finish())
}

/// What tells one document sent to a URL from another: the request body, decoded (a
/// gzip header's time aside), a multipart body without its boundary (new each attempt).
/// None for a body with redacted parts (read from a HAR exported so): no telling.
fn body_digest(flow: &Flow) -> Option<u64> {
    let body = flow
        .decoded_request_body()
        .unwrap_or_else(|| flow.request.body.bytes.clone());
    if holds_redacted(&body) {
        return None;
    }
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    // Kept in part: two bodies with the same start may still differ.
    let kept = &flow.request.body;
    if kept.truncated || kept.incomplete {
        (kept.wire_size, kept.truncated, kept.incomplete).hash(&mut hasher);
    }
    let boundary = flow
        .request
        .headers
        .get("content-type")
        .and_then(|content_type| crate::redact::form_data_boundary(&content_type));
    match boundary {
        Some(boundary) => {
            let mut from = 0;
            for at in memchr::memmem::find_iter(&body, boundary.as_bytes()) {
                body[from..at].hash(&mut hasher);
                from = at + boundary.len();
            }
            body[from..].hash(&mut hasher);
        }
        None => body.hash(&mut hasher),
    }
    Some(hasher.finish())
}

/// True for a `multipart/form-data` content type.
fn is_multipart(content_type: &[u8]) -> bool {
    std::str::from_utf8(content_type)
        .ok()
        .and_then(crate::redact::form_data_boundary)
        .is_some()
}

impl BehaviourTracker {
    /// A tracker with no history, for flows kinspect timed itself.
    pub fn new() -> Self {
        Self::default()
    }

    /// A tracker with no history, for flows read from a HAR (times to the millisecond).
    pub fn for_imported_times() -> Self {
        BehaviourTracker {
            overlap_tolerance: OVERLAP_TOLERANCE,
            ..Self::default()
        }
    }

    /// Judges `flow` against the previous attempt of its series, then remembers it.
    /// Flows are observed in the order they ended (the recorder's) or started (an
    /// import's). A flow that started before the previous attempt ended was not sent in
    /// answer to it (an app fetching the same URL twice at once): it is judged against
    /// nothing, and the one of the two that ended last is remembered.
    pub fn observe(&mut self, flow: &Flow, analysis: &KinveyAnalysis) -> Vec<BehaviourWarning> {
        let key = SeriesKey {
            client: flow.client_addr.ip(),
            method: flow.request.method.clone(),
            url: flow.request.url.clone(),
        };
        let error = analysis
            .primary()
            .map(|e| (e.class, e.trimmed_name().to_owned()));
        // Digested only where it is compared: after a fix-class error, and to be
        // compared with the next attempt after one.
        let mut digest = None;
        let mut digest_of = |flow: &Flow| *digest.get_or_insert_with(|| request_digest(flow));
        let mut body = None;
        let mut body_of = |flow: &Flow| *body.get_or_insert_with(|| body_digest(flow));
        // Re-sent unchanged and answered: no fix was needed after all (the data changed).
        // A 207 batch or a wrapped body fails with a 2xx status.
        let failed =
            flow.response.as_ref().is_none_or(|r| r.status >= 400) || analysis.primary().is_some();
        let mut warnings = Vec::new();
        let mut retry_gap = None;
        // Saturating: an imported flow may carry any duration.
        let ended_at = flow
            .started_at
            .checked_add(flow.duration())
            .unwrap_or(flow.started_at);
        let previous = self.last.get(&key);
        let overlapping = previous.filter(|previous| {
            flow.started_at
                .checked_add(self.overlap_tolerance)
                .is_some_and(|started| started < previous.ended_at)
        });
        if let Some(previous) = overlapping {
            if previous.ended_at > ended_at {
                return warnings;
            }
        } else if let Some(previous) = previous {
            let gap = flow
                .started_at
                .duration_since(previous.ended_at)
                .unwrap_or_default();
            match &previous.error {
                // Sent again: the same body (a different document to the same URL is
                // another request).
                Some((ErrorClass::Stop, error))
                    if previous.body.is_some() && previous.body == body_of(flow) =>
                {
                    warnings.push(BehaviourWarning::StopResent {
                        previous: previous.id,
                        error: error.clone(),
                    })
                }
                Some((ErrorClass::Fix, error))
                    if failed
                        && previous.request_digest.is_some()
                        && previous.request_digest == digest_of(flow) =>
                {
                    warnings.push(BehaviourWarning::FixResentUnchanged {
                        previous: previous.id,
                        error: error.clone(),
                    })
                }
                // Another document to the same URL is another request, as for STOP
                // (when both bodies can be told apart).
                Some((ErrorClass::Retry, _))
                    if previous.body.is_none()
                        || body_of(flow).is_none()
                        || previous.body == body_of(flow) =>
                {
                    retry_gap = Some(gap).filter(|gap| *gap < SERIES_BREAK);
                    if gap < MIN_BACKOFF {
                        warnings.push(BehaviourWarning::RetryWithoutBackoff {
                            previous: previous.id,
                            gap_ms: gap.as_millis() as u64,
                        });
                    } else if let Some(previous_gap) = previous
                        .retry_gap
                        .filter(|_| gap < SERIES_BREAK)
                        .filter(|p| gap.as_secs_f64() < p.as_secs_f64() * MIN_GROWTH)
                    {
                        warnings.push(BehaviourWarning::RetryBackoffNotGrowing {
                            previous: previous.id,
                            gap_ms: gap.as_millis() as u64,
                            previous_gap_ms: previous_gap.as_millis() as u64,
                        });
                    }
                }
                _ => {}
            }
        }
        let request_digest = matches!(error, Some((ErrorClass::Fix, _)))
            .then(|| digest_of(flow))
            .flatten();
        // Digested only where it is compared, as the request's.
        let body = matches!(error, Some((ErrorClass::Stop | ErrorClass::Retry, _)))
            .then(|| body_of(flow))
            .flatten();
        self.last.put(
            key,
            LastAttempt {
                id: flow.id,
                ended_at,
                error,
                request_digest,
                body,
                retry_gap,
            },
        );
        warnings
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::CapturedBody;
    use crate::kinvey::KinveyError;
    use std::time::UNIX_EPOCH;

    fn attempt(id: FlowId, start_ms: u64, body: &'static str) -> Flow {
        let url = "https://baas.kinvey.com/rpc/kid_x/custom/op";
        let mut flow = Flow::exchange(id, "10.0.0.2:4000".parse().unwrap(), "POST", url, Some(500));
        flow.started_at = UNIX_EPOCH + Duration::from_millis(start_ms);
        flow.request.body = CapturedBody::whole(body.as_bytes());
        flow.timings.wait = Duration::from_millis(10);
        flow
    }

    fn failed(name: &str, class: ErrorClass) -> KinveyAnalysis {
        KinveyAnalysis {
            errors: vec![KinveyError {
                name: name.into(),
                status: 500,
                description: None,
                debug: None,
                class,
                known: true,
                index: None,
            }],
            ..KinveyAnalysis::default()
        }
    }

    fn ok() -> KinveyAnalysis {
        KinveyAnalysis::default()
    }

    fn codes(w: &[BehaviourWarning]) -> Vec<&'static str> {
        w.iter().map(BehaviourWarning::code).collect()
    }

    #[test]
    fn a_stop_error_re_sent_is_flagged_and_a_first_attempt_is_not() {
        let mut t = BehaviourTracker::new();
        let stop = failed("KinveyInternalErrorStop", ErrorClass::Stop);
        assert!(t.observe(&attempt(1, 0, "a"), &stop).is_empty());
        let w = t.observe(&attempt(2, 5000, "a"), &stop);
        assert_eq!(codes(&w), ["stop_resent"]);
        assert!(w[0].message().contains("KinveyInternalErrorStop"));
        // Another document to the same URL is another request, not the one re-sent.
        assert!(t.observe(&attempt(3, 9000, "b"), &stop).is_empty());
        // The same form with the boundary of each attempt is the same body.
        let form = |id, at, boundary: &str| {
            let mut flow = attempt(id, at, "");
            flow.request.headers = [(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )]
            .into_iter()
            .collect();
            flow.request.body = CapturedBody::whole(format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nA\r\n--{boundary}--\r\n"
            ));
            flow
        };
        let mut t = BehaviourTracker::new();
        t.observe(&form(1, 0, "XaAaA1"), &stop);
        assert_eq!(
            codes(&t.observe(&form(2, 5000, "ZbBbB2"), &stop)),
            ["stop_resent"]
        );
        // So after a FIX error: the form sent again unchanged.
        let fix = failed("JSONParseError", ErrorClass::Fix);
        let mut t = BehaviourTracker::new();
        t.observe(&form(1, 0, "XaAaA1"), &fix);
        assert_eq!(
            codes(&t.observe(&form(2, 5000, "ZbBbB2"), &fix)),
            ["fix_resent_unchanged"]
        );
        // Two bodies cut at --max-body after the same start are told apart by size.
        let cut = |id, at, size| {
            let mut flow = attempt(id, at, "same start");
            flow.request.body.truncated = true;
            flow.request.body.wire_size = size;
            flow
        };
        let mut t = BehaviourTracker::new();
        t.observe(&cut(1, 0, 20_000_000), &stop);
        assert!(t.observe(&cut(2, 5000, 30_000_000), &stop).is_empty());
        // Redacted (a HAR exported so): no telling.
        let mut t = BehaviourTracker::new();
        t.observe(&attempt(1, 0, r#"{"password":"[redacted]"}"#), &stop);
        assert!(t
            .observe(&attempt(2, 5000, r#"{"password":"[redacted]"}"#), &stop)
            .is_empty());
    }

    #[test]
    fn a_fix_error_re_sent_unchanged_is_flagged_but_a_changed_request_is_not() {
        let mut t = BehaviourTracker::new();
        let fix = failed("JSONParseError", ErrorClass::Fix);
        t.observe(&attempt(1, 0, "{bad"), &fix);
        assert_eq!(
            codes(&t.observe(&attempt(2, 1000, "{bad"), &fix)),
            ["fix_resent_unchanged"]
        );
        assert!(t
            .observe(&attempt(3, 2000, "{\"good\":1}"), &ok())
            .is_empty());

        // A fix in a field (the credentials) is a change; a tracing id is not. The same
        // request answered is no warning either.
        let mut t = BehaviourTracker::new();
        let denied = failed("InvalidCredentials", ErrorClass::Fix);
        let signed = |id, at, token: &str, trace: &str| {
            let mut flow = attempt(id, at, "{}");
            flow.request.headers = [("Authorization", token), ("traceparent", trace)]
                .into_iter()
                .collect();
            flow
        };
        t.observe(&signed(1, 0, "Kinvey bad", "00-a"), &denied);
        assert_eq!(
            codes(&t.observe(&signed(2, 1000, "Kinvey bad", "00-b"), &denied)),
            ["fix_resent_unchanged"]
        );
        assert!(t
            .observe(&signed(3, 2000, "Kinvey good", "00-c"), &denied)
            .is_empty());
        let mut answered = signed(4, 3000, "Kinvey good", "00-d");
        answered.response.as_mut().unwrap().status = 200;
        assert!(t.observe(&answered, &ok()).is_empty());

        // Credentials redacted (a HAR exported so) may have changed: no telling.
        let mut t = BehaviourTracker::new();
        t.observe(&signed(1, 0, "Kinvey [redacted]", "00-a"), &denied);
        assert!(t
            .observe(&signed(2, 1000, "Kinvey [redacted]", "00-b"), &denied)
            .is_empty());
        let login = |id, at| attempt(id, at, r#"{"username":"ada","password":"[redacted]"}"#);
        t.observe(&login(3, 2000), &denied);
        assert!(t.observe(&login(4, 3000), &denied).is_empty());

        // A 207 batch fails with a 2xx status: its element's error counts.
        let mut t = BehaviourTracker::new();
        let batch = |id, at| {
            let mut flow = attempt(id, at, "[{},{}]");
            flow.response.as_mut().unwrap().status = 207;
            flow
        };
        let element = failed("ParameterValueOutOfRange", ErrorClass::Fix);
        t.observe(&batch(1, 0), &element);
        assert_eq!(
            codes(&t.observe(&batch(2, 1000), &element)),
            ["fix_resent_unchanged"]
        );
    }

    #[test]
    fn retries_need_growing_gaps_of_at_least_100_ms() {
        let retry = failed("KinveyInternalErrorRetry", ErrorClass::Retry);
        // Each attempt lasts 10 ms; gaps are measured from its end.
        let mut t = BehaviourTracker::new();
        t.observe(&attempt(1, 0, ""), &retry);
        assert_eq!(
            codes(&t.observe(&attempt(2, 30, ""), &retry)),
            ["retry_without_backoff"]
        );
        // Another document to the same URL is another request, no retry of the first.
        let mut other = BehaviourTracker::new();
        other.observe(&attempt(1, 0, "{}"), &retry);
        assert!(other
            .observe(&attempt(2, 30, "{\"other\":1}"), &retry)
            .is_empty());

        let mut good = BehaviourTracker::new();
        good.observe(&attempt(1, 0, ""), &retry);
        assert!(
            good.observe(&attempt(2, 210, ""), &retry).is_empty(),
            "200 ms"
        );
        assert!(
            good.observe(&attempt(3, 620, ""), &retry).is_empty(),
            "400 ms"
        );
        assert!(
            good.observe(&attempt(4, 1430, ""), &ok()).is_empty(),
            "800 ms"
        );

        // After a long pause the user ran it again: a new series, not a shrinking gap.
        let mut again = BehaviourTracker::new();
        again.observe(&attempt(1, 0, ""), &retry);
        assert!(again.observe(&attempt(2, 20_000, ""), &retry).is_empty());
        assert!(
            again.observe(&attempt(3, 20_220, ""), &retry).is_empty(),
            "200 ms after a 20 s pause"
        );

        let mut flat = BehaviourTracker::new();
        flat.observe(&attempt(1, 0, ""), &retry);
        assert!(flat.observe(&attempt(2, 210, ""), &retry).is_empty());
        assert_eq!(
            codes(&flat.observe(&attempt(3, 420, ""), &retry)),
            ["retry_backoff_not_growing"]
        );
    }

    #[test]
    fn requests_sent_at_once_are_no_re_sends_in_either_order_observed() {
        let stop = failed("KinveyInternalErrorStop", ErrorClass::Stop);
        let fix = failed("EntityNotFound", ErrorClass::Fix);
        let retry = failed("KinveyInternalErrorRetry", ErrorClass::Retry);
        // A slow one (0–1500 ms) and a fast one sent while it was under way (300–310).
        let slow = || {
            let mut flow = attempt(1, 0, "a");
            flow.timings.wait = Duration::from_millis(1500);
            flow
        };
        let fast = attempt(2, 300, "a");
        for analysis in [&stop, &fix, &retry] {
            let mut by_end = BehaviourTracker::new();
            assert!(by_end.observe(&fast, analysis).is_empty());
            assert!(by_end.observe(&slow(), analysis).is_empty());
            let mut by_start = BehaviourTracker::new();
            assert!(by_start.observe(&slow(), analysis).is_empty());
            assert!(by_start.observe(&fast, analysis).is_empty());
            // Either way, the next attempt is judged against the one that ended last.
            for mut t in [by_end, by_start] {
                let w = t.observe(&attempt(3, 1520, "a"), analysis);
                assert_eq!(w.len(), 1, "{w:?}");
                assert!(w[0].message().contains("(flow 1)"), "{}", w[0].message());
            }
        }
        // Within a HAR's rounding of the previous end: sent after it, when imported;
        // timed by kinspect, a request that started before the other ended was sent at
        // once with it.
        let mut imported = BehaviourTracker::for_imported_times();
        imported.observe(&attempt(1, 0, "a"), &stop);
        assert_eq!(
            codes(&imported.observe(&attempt(2, 7, "a"), &stop)),
            ["stop_resent"]
        );
        let mut live = BehaviourTracker::new();
        live.observe(&attempt(1, 0, "a"), &stop);
        assert!(live.observe(&attempt(2, 7, "a"), &stop).is_empty());
    }

    #[test]
    fn series_are_separate_per_client_method_and_url() {
        let mut t = BehaviourTracker::new();
        let stop = failed("AppProblem", ErrorClass::Stop);
        t.observe(&attempt(1, 0, ""), &stop);
        let mut other_url = attempt(2, 1000, "");
        other_url.request.url.push_str("?x=1");
        assert!(t.observe(&other_url, &stop).is_empty());
        let mut other_client = attempt(3, 1000, "");
        other_client.client_addr = "10.0.0.3:4000".parse().unwrap();
        assert!(t.observe(&other_client, &stop).is_empty());
    }
}
