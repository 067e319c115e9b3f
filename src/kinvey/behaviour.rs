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

/// Re-sending a transient error sooner than this is not backing off.
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);

/// A retry gap counts as growing only when it is at least this much longer than the
/// previous one: a constant backoff measured with a little timer noise is not growing.
pub const MIN_GROWTH: f64 = 1.2;

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
    /// The previous attempt got a fix-class error and the client re-sent the same body.
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
    body_digest: u64,
    /// The gap before this attempt, when it was itself a retry.
    retry_gap: Option<Duration>,
}

/// Remembers the last attempt of each request series and judges the next one.
pub struct BehaviourTracker {
    last: LruCache<SeriesKey, LastAttempt>,
}

impl Default for BehaviourTracker {
    fn default() -> Self {
        BehaviourTracker {
            last: LruCache::new(NonZeroUsize::new(TRACKED_SERIES).expect("non-zero")),
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

fn body_digest(flow: &Flow) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    flow.request.body.bytes.hash(&mut hasher);
    flow.request.body.wire_size.hash(&mut hasher);
    hasher.finish()
}

impl BehaviourTracker {
    /// A tracker with no history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Judges `flow` against the previous attempt of its series, then remembers it.
    /// Flows must be observed in the order they started.
    pub fn observe(&mut self, flow: &Flow, analysis: &KinveyAnalysis) -> Vec<BehaviourWarning> {
        let key = SeriesKey {
            client: flow.client_addr.ip(),
            method: flow.request.method.clone(),
            url: flow.request.url.clone(),
        };
        let digest = body_digest(flow);
        let mut warnings = Vec::new();
        let mut retry_gap = None;
        if let Some(previous) = self.last.get(&key) {
            let gap = flow
                .started_at
                .duration_since(previous.ended_at)
                .unwrap_or_default();
            match &previous.error {
                Some((ErrorClass::Stop, error)) => warnings.push(BehaviourWarning::StopResent {
                    previous: previous.id,
                    error: error.clone(),
                }),
                Some((ErrorClass::Fix, error)) if previous.body_digest == digest => {
                    warnings.push(BehaviourWarning::FixResentUnchanged {
                        previous: previous.id,
                        error: error.clone(),
                    })
                }
                Some((ErrorClass::Retry, _)) => {
                    retry_gap = Some(gap);
                    if gap < MIN_BACKOFF {
                        warnings.push(BehaviourWarning::RetryWithoutBackoff {
                            previous: previous.id,
                            gap_ms: gap.as_millis() as u64,
                        });
                    } else if let Some(previous_gap) = previous
                        .retry_gap
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
        let error = analysis
            .primary()
            .map(|e| (e.class, e.trimmed_name().to_owned()));
        self.last.put(
            key,
            LastAttempt {
                id: flow.id,
                // Saturating: an imported flow may carry any duration.
                ended_at: flow
                    .started_at
                    .checked_add(flow.duration())
                    .unwrap_or(flow.started_at),
                error,
                body_digest: digest,
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

        let mut flat = BehaviourTracker::new();
        flat.observe(&attempt(1, 0, ""), &retry);
        assert!(flat.observe(&attempt(2, 210, ""), &retry).is_empty());
        assert_eq!(
            codes(&flat.observe(&attempt(3, 420, ""), &retry)),
            ["retry_backoff_not_growing"]
        );
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
