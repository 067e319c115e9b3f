//! Kinvey's error dictionary: every row of Kinvey's REST troubleshooting page (names
//! trimmed; APIVersionNotAvailable at both 400 and 501), plus the names Kinvey's SDKs
//! are known to receive. Each entry says what the developer should do next.

use serde::{Deserialize, Serialize};

/// What the developer should do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorClass {
    /// A transient server fault: re-send the same request, with backoff.
    Retry,
    /// The request (or the app's config / Business Logic) is wrong: change it, then re-send.
    Fix,
    /// A permanent server-side fault: do not re-send; contact support with the request ID.
    Stop,
}

impl ErrorClass {
    /// `retry`, `fix` or `stop`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Retry => "retry",
            ErrorClass::Fix => "fix",
            ErrorClass::Stop => "stop",
        }
    }

    /// The badge shown on a flow: `RETRY`, `FIX` or `STOP`.
    pub fn badge(self) -> &'static str {
        match self {
            ErrorClass::Retry => "RETRY",
            ErrorClass::Fix => "FIX",
            ErrorClass::Stop => "STOP",
        }
    }

    /// The class of an error name that is not in the dictionary, decided by status:
    /// 429, 502, 503 and 504 are transient; other 5xx are permanent; other 4xx are the
    /// client's to fix.
    pub fn for_unknown_status(status: u16) -> ErrorClass {
        match status {
            429 | 502 | 503 | 504 => ErrorClass::Retry,
            500..=599 => ErrorClass::Stop,
            _ => ErrorClass::Fix,
        }
    }
}

impl std::str::FromStr for ErrorClass {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "retry" => Ok(ErrorClass::Retry),
            "fix" => Ok(ErrorClass::Fix),
            "stop" => Ok(ErrorClass::Stop),
            _ => Err(format!("unknown error class {s:?}")),
        }
    }
}

/// Where an entry comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Kinvey's REST troubleshooting page.
    TroubleshootingPage,
    /// Kinvey's SDKs (not on the page).
    Sdk,
}

/// One error of the dictionary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DictionaryEntry {
    /// The `error` name.
    pub name: &'static str,
    /// The statuses Kinvey sends it with.
    pub statuses: &'static [u16],
    /// What to do about it.
    pub class: ErrorClass,
    /// Kinvey's description.
    pub description: &'static str,
    /// One line: what to do next.
    pub next_step: &'static str,
    /// Where the entry comes from.
    pub source: Source,
}

const PAGE: Source = Source::TroubleshootingPage;

macro_rules! entry {
    ($name:literal, [$($status:literal),+], $class:ident, $description:literal, $next:literal) => {
        entry!($name, [$($status),+], $class, $description, $next, PAGE)
    };
    ($name:literal, [$($status:literal),+], $class:ident, $description:literal, $next:literal, $source:expr) => {
        DictionaryEntry {
            name: $name,
            statuses: &[$($status),+],
            class: ErrorClass::$class,
            description: $description,
            next_step: $next,
            source: $source,
        }
    };
}

/// Every known error, in the page's order, then the SDK-known names.
pub const DICTIONARY: &[DictionaryEntry] = &[
    entry!("ParameterValueOutOfRange", [400], Fix,
        "The value specified for one of the request parameters is out of range",
        "Correct the out-of-range parameter, then re-send."),
    entry!("InvalidQuerySyntax", [400], Fix,
        "The query string in the request has an invalid syntax",
        "Fix the query (valid JSON, MongoDB-style operators), then re-send."),
    entry!("MissingQuery", [400], Fix,
        "The request is missing a query string",
        "Add the required query string, then re-send."),
    entry!("JSONParseError", [400], Fix,
        "Unable to parse the JSON in the request",
        "Send a valid JSON body with Content-Type: application/json."),
    entry!("MissingRequestHeader", [400], Fix,
        "The request is missing a required header",
        "Add the missing header (see debug), then re-send."),
    entry!("IncompleteRequestBody", [400], Fix,
        "The request body is either missing or incomplete",
        "Send the complete request body, then re-send."),
    entry!("MissingRequestParameter", [400], Fix,
        "A required parameter is missing from the request",
        "Add the missing parameter (see debug), then re-send."),
    entry!("InvalidIdentifier", [400], Fix,
        "One of more identifier names in the request has an invalid format",
        "Fix the malformed identifier (see debug), then re-send."),
    entry!("FeatureUnavailable", [400], Fix,
        "Requested functionality is unavailable in this API version",
        "Use an X-Kinvey-API-Version that offers this feature."),
    entry!("CORSDisabled", [400], Fix,
        "Cross Origin Support is disabled for this application",
        "Enable CORS for the app in the Kinvey console, or call from a server."),
    entry!("APIVersionNotAvailable", [400, 501], Fix,
        "This API version is not available for your app. Please retry your request with a supported API version",
        "Send a supported X-Kinvey-API-Version."),
    entry!("BadRequest", [400], Fix,
        "Unable to understand request",
        "Check the method, URL and body against the REST API reference."),
    entry!("BLRuntimeError", [400], Fix,
        "The Business Logic script has a runtime error. See debug message for details",
        "Fix the app's Business Logic script; the debug field has the runtime error."),
    entry!("InvalidCredentials", [401], Fix,
        "Invalid credentials. Please retry your request with correct credentials",
        "Re-authenticate: log the user in again or fix the app key/secret."),
    entry!("InsufficientCredentials", [401], Fix,
        "The credentials used to authenticate this request are not authorized to run this operation. Please retry your request with appropriate credentials",
        "Use credentials allowed for this operation (an end user, or the master secret)."),
    entry!("WritesToCollectionDisallowed", [403], Fix,
        "This collection is configured to disallow any modifications to an existing entity or creation of new entities",
        "Do not write to this collection, or change its permissions in the console."),
    entry!("IndirectCollectionAccessDisallowed", [403], Fix,
        "Please use the appropriate API to access this collection for this app backend",
        "Use the dedicated API for this collection (e.g. /user, /blob) instead of /appdata."),
    entry!("AppProblem", [403], Stop,
        "There is a problem with this app backend that prevents execution of this operation. Please contact support@kinvey.com for assistance",
        "Do not re-send; contact Kinvey support with the request ID."),
    entry!("EntityNotFound", [404], Fix,
        "This entity not found in the collection",
        "Check the entity id; it may have been deleted."),
    entry!("CollectionNotFound", [404], Fix,
        "This collection not found for this app backend",
        "Check the collection name, or create the collection."),
    entry!("AppNotFound", [404], Fix,
        "This app backend not found",
        "Check the app key (kid_...) and the instance URL."),
    entry!("UserNotFound", [404], Fix,
        "This user does not exist for this app backend",
        "Check the user id or username."),
    entry!("BlobNotFound", [404], Fix,
        "This blob not found for this app backend",
        "Check the file id; the blob may have been deleted."),
    entry!("UserAlreadyExists", [409], Fix,
        "This username is already taken. Please retry your request with a different username",
        "Choose another username."),
    entry!("StaleRequest", [409], Fix,
        "The time window for this request has expired",
        "Build a fresh request (new signature/timestamp) and send it."),
    entry!("KinveyInternalErrorRetry", [500], Retry,
        "The Kinvey server encountered an unexpected error. Please retry your request",
        "Re-send the same request with exponential backoff."),
    entry!("KinveyInternalErrorStop", [500], Stop,
        "The Kinvey server encountered an unexpected error. Please contact support@kinvey.com for assistance",
        "Do not re-send; contact Kinvey support with the request ID."),
    entry!("DuplicateEndUsers", [500], Stop,
        "More than one user registered with this username for this application. Please contact support@kinvey.com for assistance",
        "Do not re-send; contact Kinvey support with the request ID."),
    entry!("APIVersionNotImplemented", [501], Fix,
        "This API version is not implemented. Please retry your request with a supported API version",
        "Send a supported X-Kinvey-API-Version."),
    entry!("BLSyntaxError", [550], Fix,
        "The Business Logic script has a syntax error(s). See debug message for details",
        "Fix the syntax error in the Business Logic script (see debug)."),
    entry!("BLTimeoutError", [550], Fix,
        "The Business Logic script did not complete in time. See debug message for details",
        "Make the Business Logic script finish in time (fewer or faster requests)."),
    entry!("BLViolationError", [550], Fix,
        "The Business Logic script violated a constraint. See debug message for details",
        "Fix the Business Logic script so it respects the constraint (see debug)."),
    entry!("BLInternalError", [550], Stop,
        "The Business Logic script did not complete. See debug message for details",
        "Do not re-send; contact Kinvey support with the request ID."),
    entry!("ResultSetSizeExceeded", [400], Fix,
        "Your query produced more than the maximum number of results",
        "Narrow the query or page through results with limit/skip.", Source::Sdk),
    entry!("MissingConfiguration", [403], Fix,
        "This feature is not properly configured for this app backend",
        "Configure the feature for the app in the Kinvey console.", Source::Sdk),
    entry!("DocumentNotFound", [404], Fix,
        "The item was not found",
        "Check the document id.", Source::Sdk),
    entry!("MethodNotAllowed", [405], Fix,
        "The method is not allowed for this endpoint",
        "Use a method this endpoint supports.", Source::Sdk),
    entry!("DataLinkEntityNotFound", [404], Fix,
        "The data link could not find this entity",
        "Check the entity id in the data link's source.", Source::Sdk),
];

/// The entry for `name` (compared exactly, after trimming stray whitespace).
pub fn lookup(name: &str) -> Option<&'static DictionaryEntry> {
    let name = name.trim();
    DICTIONARY.iter().find(|e| e.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_of_the_troubleshooting_page_is_in_the_dictionary() {
        // Parsed from Kinvey's page itself: each row is `Name<status>Description`.
        let page = include_str!("troubleshooting-rows.txt");
        let mut rows = 0;
        for line in page.lines().filter(|l| !l.trim().is_empty()) {
            let at = line.find(|c: char| c.is_ascii_digit()).unwrap();
            let name = &line[..at];
            let status: u16 = line[at..at + 3].parse().unwrap();
            let description = &line[at + 3..];
            let entry = lookup(name).unwrap_or_else(|| panic!("{name:?} is missing"));
            assert!(entry.statuses.contains(&status), "{name} {status}");
            assert_eq!(entry.description, description, "{name}");
            assert_eq!(entry.source, Source::TroubleshootingPage);
            rows += 1;
        }
        assert_eq!(rows, 34, "the page has 34 rows");
        let page_entries = DICTIONARY
            .iter()
            .filter(|e| e.source == Source::TroubleshootingPage)
            .count();
        assert_eq!(page_entries, 33, "34 rows, APIVersionNotAvailable twice");
    }

    #[test]
    fn classes_follow_the_design_table() {
        let class = |n| lookup(n).unwrap().class;
        assert_eq!(class("KinveyInternalErrorRetry"), ErrorClass::Retry);
        for stop in [
            "AppProblem",
            "KinveyInternalErrorStop",
            "DuplicateEndUsers",
            "BLInternalError",
        ] {
            assert_eq!(class(stop), ErrorClass::Stop, "{stop}");
        }
        let stops_and_retries = DICTIONARY
            .iter()
            .filter(|e| e.class != ErrorClass::Fix)
            .count();
        assert_eq!(stops_and_retries, 5, "every other name is fix");
        assert_eq!(lookup("BLTimeoutError ").unwrap().name, "BLTimeoutError");
        assert!(lookup("NoSuchError").is_none());
    }

    #[test]
    fn unknown_names_are_classed_by_status() {
        assert_eq!(ErrorClass::for_unknown_status(429), ErrorClass::Retry);
        assert_eq!(ErrorClass::for_unknown_status(503), ErrorClass::Retry);
        assert_eq!(ErrorClass::for_unknown_status(500), ErrorClass::Stop);
        assert_eq!(ErrorClass::for_unknown_status(418), ErrorClass::Fix);
    }
}
