//! The Kinvey domain: error dictionary, detection and classification of error bodies,
//! anomalies, client-behaviour checks across flows, the request-ID index and the
//! support report. Everything here is a pure function of flows.

pub mod behaviour;
mod detect;
pub mod dictionary;
pub mod index;
pub mod report;

pub use behaviour::{BehaviourTracker, BehaviourWarning};
pub use detect::analyze;
pub use dictionary::{lookup, DictionaryEntry, ErrorClass, DICTIONARY};
pub use index::RequestIdIndex;

use serde::{Deserialize, Serialize};

/// One Kinvey error found in a response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KinveyError {
    /// The name exactly as sent (stray whitespace included).
    pub name: String,
    /// The status it came with (the HTTP status, or the wrapped `statusCode`).
    pub status: u16,
    /// The `description` (or `message`) field.
    pub description: Option<String>,
    /// The `debug` field, as text (an object is rendered as compact JSON).
    pub debug: Option<String>,
    /// What to do about it.
    pub class: ErrorClass,
    /// True when the name is in the dictionary.
    pub known: bool,
    /// The element's index, for errors inside a 207 batch response.
    pub index: Option<u64>,
}

impl KinveyError {
    /// The name without stray whitespace.
    pub fn trimmed_name(&self) -> &str {
        self.name.trim()
    }

    /// The dictionary entry, when the name is known.
    pub fn entry(&self) -> Option<&'static DictionaryEntry> {
        lookup(&self.name)
    }

    /// `RETRY`, `FIX`, `STOP`, or `?` and the class for names not in the dictionary.
    pub fn badge(&self) -> String {
        badge(self.class, self.known)
    }

    /// One line: what the developer should do next.
    pub fn next_step(&self) -> &'static str {
        match self.entry() {
            Some(entry) => entry.next_step,
            None => match self.class {
                ErrorClass::Retry => "Unknown error name; its status is transient: re-send with backoff.",
                ErrorClass::Fix => "Unknown error name; its status says the request is wrong: check it against the API reference.",
                ErrorClass::Stop => "Unknown error name; its status is a server fault: do not re-send, contact support with the request ID.",
            },
        }
    }
}

/// The badge of a class: `RETRY`, or `?RETRY` for an unknown name.
pub fn badge(class: ErrorClass, known: bool) -> String {
    if known {
        class.badge().to_owned()
    } else {
        format!("?{}", class.badge())
    }
}

/// Something about a Kinvey exchange that breaks Kinvey's own rules, or that an SDK
/// would trip over. Flagged, never hidden.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Anomaly {
    /// A known name sent with a status the dictionary does not give it.
    StatusMismatch {
        /// The name.
        name: String,
        /// The status it came with.
        status: u16,
        /// The statuses the dictionary gives it.
        expected: Vec<u16>,
    },
    /// A name that is not in the dictionary.
    UnknownName {
        /// The name.
        name: String,
    },
    /// A name with leading or trailing whitespace.
    StrayWhitespace {
        /// The name as sent.
        name: String,
    },
    /// A body that looks like a Kinvey error but is not valid JSON.
    UnparseableBody {
        /// The JSON parser's complaint.
        reason: String,
    },
    /// A body that cannot be decoded as its `Content-Encoding` says (read as sent).
    UndecodableBody {
        /// Why not.
        reason: String,
    },
    /// An `error` that is not a name (a number, an object, null).
    ErrorNotAName {
        /// It, as JSON.
        found: String,
    },
    /// A JSON error body sent with a content type that is not JSON.
    NonJsonContentType {
        /// The content type sent.
        content_type: String,
    },
    /// `name`/`message` used instead of `error`/`description`.
    NameMessageVariant,
    /// An `error` without the `description` Kinvey's page says is always there.
    MissingDescription {
        /// A `message` came instead (half of the `name`/`message` variant).
        message_instead: bool,
    },
    /// A `debug` that is an object instead of a string.
    DebugIsObject,
    /// A body wrapped as `{result, headers}` (`X-Kinvey-ResponseWrapper`).
    WrappedBody,
    /// A 207 batch response carrying errors in `errors[]`.
    BatchErrors {
        /// How many elements failed.
        count: usize,
    },
    /// A failed Kinvey exchange whose body holds no Kinvey error: a gateway's HTML page,
    /// an empty body, a JSON array, an empty name.
    NoErrorBody {
        /// The status it came with.
        status: u16,
        /// What the body is instead, in kinspect's words ("an HTML page").
        found: &'static str,
        /// The response carries a request id: Kinvey itself answered so (custom
        /// endpoint code, say), not something in front of it.
        from_kinvey: bool,
    },
    /// A request to Kinvey without `X-Kinvey-API-Version`, or asking for version 0 (no
    /// structured errors).
    MissingApiVersion {
        /// The version it asked for, when it named one below 1.
        sent: Option<String>,
    },
}

impl Anomaly {
    /// A short stable code (`status_mismatch`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            Anomaly::StatusMismatch { .. } => "status_mismatch",
            Anomaly::UnknownName { .. } => "unknown_name",
            Anomaly::StrayWhitespace { .. } => "stray_whitespace",
            Anomaly::UnparseableBody { .. } => "unparseable_body",
            Anomaly::UndecodableBody { .. } => "undecodable_body",
            Anomaly::ErrorNotAName { .. } => "error_not_a_name",
            Anomaly::NonJsonContentType { .. } => "non_json_content_type",
            Anomaly::NameMessageVariant => "name_message_variant",
            Anomaly::MissingDescription { .. } => "missing_description",
            Anomaly::DebugIsObject => "debug_is_object",
            Anomaly::WrappedBody => "wrapped_body",
            Anomaly::BatchErrors { .. } => "batch_errors",
            Anomaly::NoErrorBody { .. } => "no_error_body",
            Anomaly::MissingApiVersion { .. } => "missing_api_version",
        }
    }

    /// What is wrong, in a sentence.
    pub fn message(&self) -> String {
        self.message_with(&mut str::to_owned)
    }

    /// [`Anomaly::message`] with what the server sent in it (a name, a content type, a
    /// parser's complaint) passed through `quoted`: a redaction scrubs those, not
    /// kinspect's own words around them.
    pub fn message_with(&self, quoted: &mut dyn FnMut(&str) -> String) -> String {
        match self {
            Anomaly::StatusMismatch { name, status, expected } => format!(
                "{} came with status {status}; Kinvey sends it with {}",
                quoted(name),
                expected.iter().map(u16::to_string).collect::<Vec<_>>().join(" or ")
            ),
            Anomaly::UnknownName { name } => format!(
                // Quoted as it is: the name is already printable (escapes written out).
                "\"{}\" is not in Kinvey's error dictionary: classified by its status",
                quoted(name)
            ),
            Anomaly::StrayWhitespace { name } => format!(
                "the error name \"{}\" has stray whitespace; code comparing names exactly will miss it",
                quoted(name)
            ),
            Anomaly::UnparseableBody { reason } => format!(
                "the body looks like a Kinvey error but is not valid JSON ({}); SDKs cannot parse it",
                quoted(reason)
            ),
            Anomaly::UndecodableBody { reason } => format!(
                "the body cannot be decoded as its Content-Encoding says ({}); SDKs cannot read it: read as sent",
                quoted(reason)
            ),
            Anomaly::ErrorNotAName { found } => format!(
                "error is {}, not a name: SDKs that read it as a string fail",
                quoted(found)
            ),
            Anomaly::NonJsonContentType { content_type } => format!(
                "a JSON error body was sent as {:?}; SDKs that trust the content type will not parse it",
                quoted(content_type)
            ),
            Anomaly::NameMessageVariant => {
                "the body uses name/message instead of error/description".into()
            }
            Anomaly::MissingDescription { message_instead: false } => {
                "the error has no description, which Kinvey always sends with it".into()
            }
            Anomaly::MissingDescription { message_instead: true } => {
                "the error has a message instead of its description (SDKs read description)"
                    .into()
            }
            Anomaly::DebugIsObject => "debug is an object, not a string".into(),
            Anomaly::WrappedBody => {
                "the body is wrapped as {result, headers} (X-Kinvey-ResponseWrapper): what the exchange returned, and any headers the SDK asked for, are inside it".into()
            }
            Anomaly::BatchErrors { count } => {
                format!("the 207 batch response carries {count} failed element(s) in errors[]")
            }
            Anomaly::NoErrorBody {
                status,
                found,
                from_kinvey,
            } => format!(
                "the {status} has {found}, not Kinvey's {{error, description, debug}}: {}; SDKs \
                 can report only a generic failure{}",
                match from_kinvey {
                    true => "Kinvey answered (it sent a request id) without one of its errors, \
                             as custom endpoint or Business Logic code may",
                    false => "it came from something between the app and Kinvey (a gateway, \
                              load balancer or proxy), not from Kinvey",
                },
                match status {
                    429 | 502 | 503 | 504 => ": most likely transient, retry with backoff",
                    _ => "",
                }
            ),
            Anomaly::MissingApiVersion { sent: None } => {
                "the request has no X-Kinvey-API-Version header: Kinvey only sends structured errors from API version 1 on".into()
            }
            Anomaly::MissingApiVersion { sent: Some(version) } => format!(
                "the request asks for X-Kinvey-API-Version {}: Kinvey only sends structured errors from API version 1 on",
                crate::flow::printable_line(version)
            ),
        }
    }
}

/// What kinspect found in one flow.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct KinveyAnalysis {
    /// The response's `X-Kinvey-Request-ID`.
    pub request_id: Option<String>,
    /// The request's `X-Kinvey-API-Version`.
    pub api_version: Option<String>,
    /// The errors found, the main one first (several for batch responses).
    pub errors: Vec<KinveyError>,
    /// Everything flagged.
    pub anomalies: Vec<Anomaly>,
}

impl KinveyAnalysis {
    /// True when the flow is a Kinvey exchange (a request id or a Kinvey error body).
    pub fn is_kinvey(&self) -> bool {
        self.request_id.is_some() || !self.errors.is_empty()
    }

    /// The main error: the gravest (`STOP` over `FIX` over `RETRY`), the first of those
    /// that are as grave. A batch's `KinveyInternalErrorStop` is not hidden behind the
    /// `JSONParseError` of an element before it.
    pub fn primary(&self) -> Option<&KinveyError> {
        let gravity = |class: ErrorClass| match class {
            ErrorClass::Retry => 0,
            ErrorClass::Fix => 1,
            ErrorClass::Stop => 2,
        };
        // The first of the gravest: max_by_key would take the last.
        self.errors
            .iter()
            .rev()
            .max_by_key(|error| gravity(error.class))
    }

    /// The error a flow with `summary` is listed by: the one its stored summary names
    /// (a capture recorded before the gravest was chosen names a batch's first), else
    /// [`KinveyAnalysis::primary`].
    pub fn listed_error(&self, summary: &KinveySummary) -> Option<&KinveyError> {
        let stored = summary.error.as_deref();
        self.errors
            .iter()
            .find(|error| Some(error.trimmed_name()) == stored)
            .or_else(|| self.primary())
    }
}

/// A finding kept with a flow in the capture: a code and its sentence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// A short stable code.
    pub code: String,
    /// The sentence shown to people.
    pub message: String,
}

/// The Kinvey results stored with each flow (what lists, filters and indexes need).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct KinveySummary {
    /// The response's `X-Kinvey-Request-ID`.
    pub request_id: Option<String>,
    /// The main error's name, trimmed.
    pub error: Option<String>,
    /// The main error's class.
    pub class: Option<ErrorClass>,
    /// False when the main error's name is not in the dictionary.
    pub known: bool,
    /// A 207 batch's other errors: each element's that is not the main error's, every
    /// name and class once (empty for a capture recorded before schema 5).
    pub other_errors: Vec<OtherError>,
    /// Every anomaly.
    pub anomalies: Vec<Finding>,
    /// Client-behaviour warnings (across flows).
    pub warnings: Vec<Finding>,
}

/// An error of a 207 batch other than the one its flow is listed by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OtherError {
    /// The name, trimmed.
    pub error: String,
    /// Its class.
    pub class: ErrorClass,
    /// False when the name is not in the dictionary.
    pub known: bool,
}

impl KinveySummary {
    /// Every error the flow carries as (name, class, known): the main one, then a batch's
    /// others.
    pub fn all_errors(&self) -> impl Iterator<Item = (&str, ErrorClass, bool)> {
        let main = match (&self.error, self.class) {
            (Some(error), Some(class)) => Some((error.as_str(), class, self.known)),
            _ => None,
        };
        main.into_iter().chain(
            self.other_errors
                .iter()
                .map(|o| (o.error.as_str(), o.class, o.known)),
        )
    }

    /// Whether the main error's name is in the dictionary; `None` without an error.
    pub fn known_error(&self) -> Option<bool> {
        self.class.map(|_| self.known)
    }

    /// The summary of an analysis and the warnings raised for the flow.
    pub fn new(analysis: &KinveyAnalysis, warnings: &[BehaviourWarning]) -> Self {
        let primary = analysis.primary();
        KinveySummary {
            request_id: analysis.request_id.clone(),
            error: primary.map(|e| e.trimmed_name().to_owned()),
            class: primary.map(|e| e.class),
            known: primary.is_none_or(|e| e.known),
            other_errors: other_errors(analysis, primary),
            anomalies: analysis
                .anomalies
                .iter()
                .map(|a| Finding {
                    code: a.code().into(),
                    message: a.message(),
                })
                .collect(),
            warnings: warnings
                .iter()
                .map(|w| Finding {
                    code: w.code().into(),
                    message: w.message(),
                })
                .collect(),
        }
    }

    /// The flow's badge (`RETRY`, `FIX`, `STOP`, `?FIX`...), when it carries an error.
    pub fn badge(&self) -> Option<String> {
        self.class.map(|c| badge(c, self.known))
    }
}

/// The errors of `analysis` other than `main`, each name and class once, in the order
/// they came.
fn other_errors(analysis: &KinveyAnalysis, main: Option<&KinveyError>) -> Vec<OtherError> {
    let same = |a: &KinveyError, b: &KinveyError| {
        a.trimmed_name() == b.trimmed_name() && a.class == b.class && a.known == b.known
    };
    let mut others: Vec<&KinveyError> = Vec::new();
    for error in &analysis.errors {
        if main.is_some_and(|main| same(main, error)) || others.iter().any(|o| same(o, error)) {
            continue;
        }
        others.push(error);
    }
    others
        .into_iter()
        .map(|e| OtherError {
            error: e.trimmed_name().to_owned(),
            class: e.class,
            known: e.known,
        })
        .collect()
}
