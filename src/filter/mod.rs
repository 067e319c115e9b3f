//! Filter expressions: mitmproxy's syntax (`~m GET & ~c 4xx`, `!~s`, `(~d a | ~d b)`)
//! plus kinspect's Kinvey operators (`~k`, `~kerr`, `~kc`, `~rid`, `~anom`).
//!
//! `!` binds tightest, then `&`, then `|`; parentheses group; adjacent terms are ANDed;
//! a bare word means `~u word`. Regexes are case-insensitive and unanchored. An argument
//! may be quoted with `'...'` or `"..."` (a backslash escapes the quote character). An
//! unquoted argument runs to the next whitespace, to a `)` it did not open, or to a `&`
//! or `|` followed by whitespace, `~`, `!` or the end, so `~m GET|POST` is one regex and
//! `~c 404|~c 500` is two terms.
//!
//! [`Filter::parse`] compiles every regex once; [`Filter::matches`] only runs them.

mod eval;
mod parser;

use crate::capture::StoredFlow;
use crate::kinvey::ErrorClass;

/// A parsed filter expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    text: String,
    expr: Expr,
    needs_headers: bool,
    needs_bodies: bool,
}

impl Filter {
    /// Parses `text`, compiling its regexes.
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        let expr = parser::parse(text)?;
        Ok(Filter {
            text: text.to_owned(),
            needs_headers: expr.any_test(&|t| t.needs_headers()),
            needs_bodies: expr.any_test(&|t| t.needs_bodies()),
            expr,
        })
    }

    /// True when the stored flow matches.
    pub fn matches(&self, stored: &StoredFlow) -> bool {
        self.expr.eval(stored)
    }

    /// True when evaluation needs the flows' headers loaded (~h, ~hq, ~hs, ~t, ~tq, ~ts).
    pub fn needs_headers(&self) -> bool {
        self.needs_headers
    }

    /// True when evaluation needs body bytes loaded (~b, ~bq, ~bs). Bodies are decoded
    /// with their `Content-Encoding`, so load the headers with them.
    pub fn needs_bodies(&self) -> bool {
        self.needs_bodies
    }

    /// The text it was parsed from.
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// Why a filter did not parse, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct FilterError {
    /// The offending token's column: 1-based, in characters.
    pub column: usize,
    /// What was expected there.
    pub message: String,
}

impl FilterError {
    pub(crate) fn new(column: usize, message: impl Into<String>) -> FilterError {
        FilterError {
            column,
            message: message.into(),
        }
    }

    /// Two lines: the filter text, and a caret under the column.
    pub fn pointer(&self, text: &str) -> String {
        let line: String = text
            .chars()
            .map(|c| if c.is_control() && c != '\t' { ' ' } else { c })
            .collect();
        // As wide as what it stands under: two cells under a CJK character.
        let pad: String = line
            .chars()
            .chain(std::iter::repeat(' '))
            .take(self.column.saturating_sub(1))
            .map(|c| match c {
                '\t' => "\t".to_owned(),
                c => " ".repeat(unicode_width::UnicodeWidthChar::width(c).unwrap_or(0)),
            })
            .collect();
        format!("{line}\n{pad}^")
    }
}

/// One line per operator for help screens: (syntax, meaning).
pub const OPERATORS: &[(&str, &str)] = &[
    ("~m REGEX", "request method"),
    ("~u REGEX", "request URL"),
    ("~d REGEX", "domain (host)"),
    (
        "~c CODE",
        "response status: 404, a range 500-599 or a class 4xx",
    ),
    (
        "~h REGEX",
        "request or response header line \"name: value\"",
    ),
    ("~hq REGEX", "request header line"),
    ("~hs REGEX", "response header line"),
    ("~b REGEX", "request or response body (decoded)"),
    ("~bq REGEX", "request body (decoded)"),
    ("~bs REGEX", "response body (decoded)"),
    ("~t REGEX", "request or response content type"),
    ("~tq REGEX", "request content type"),
    ("~ts REGEX", "response content type"),
    ("~e", "flow has an error"),
    ("~q", "request without a response"),
    ("~s", "has a response"),
    ("~src REGEX", "client address ip:port"),
    ("~dst REGEX", "server host:port"),
    ("~all", "every flow"),
    ("~k", "any Kinvey error"),
    ("~kerr REGEX", "Kinvey error name (any of a batch's)"),
    (
        "~kc CLASS",
        "Kinvey error class (any of a batch's): retry, fix, stop or unknown",
    ),
    ("~rid REGEX", "Kinvey request id"),
    ("~anom", "any Kinvey anomaly"),
    (
        "~warn",
        "any client-behaviour warning (re-sent, no backoff)",
    ),
    (
        "~websocket",
        "a WebSocket (the exchange switched protocols: 101)",
    ),
    ("~replay", "a request sent again from kinspect (R, e)"),
    ("!X", "not X"),
    ("X & Y", "both X and Y"),
    ("X Y", "both X and Y (same as X & Y)"),
    ("X | Y", "X or Y"),
    ("(X)", "grouping"),
    (
        "WORD",
        "same as ~u WORD; quote '...' or \"...\" to include spaces",
    ),
];

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
enum Expr {
    /// Every one matches.
    And(Vec<Expr>),
    /// Any one matches.
    Or(Vec<Expr>),
    /// The inner one does not match.
    Not(Box<Expr>),
    /// One operator.
    Test(Test),
}

impl Expr {
    /// True when any operator in the expression satisfies `f`.
    fn any_test(&self, f: &dyn Fn(&Test) -> bool) -> bool {
        match self {
            Expr::And(items) | Expr::Or(items) => items.iter().any(|e| e.any_test(f)),
            Expr::Not(inner) => inner.any_test(f),
            Expr::Test(test) => f(test),
        }
    }
}

/// Which message of a flow an operator looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Request,
    Response,
    Either,
}

/// One operator with its compiled argument.
#[derive(Debug, Clone, PartialEq)]
enum Test {
    Method(TextPattern),
    Url(TextPattern),
    Domain(TextPattern),
    Status { low: u16, high: u16 },
    Header(Side, BytesPattern),
    Body(Side, BytesPattern),
    ContentType(Side, TextPattern),
    Error,
    NoResponse,
    HasResponse,
    Src(TextPattern),
    Dst(TextPattern),
    All,
    Kinvey,
    KinveyError(TextPattern),
    KinveyClass(ClassTest),
    RequestId(TextPattern),
    Anomaly,
    Warning,
    WebSocket,
    Replay,
}

impl Test {
    fn needs_headers(&self) -> bool {
        matches!(self, Test::Header(..) | Test::ContentType(..))
    }

    fn needs_bodies(&self) -> bool {
        matches!(self, Test::Body(..))
    }
}

/// The argument of `~kc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClassTest {
    Class(ErrorClass),
    Unknown,
}

/// A compiled regex over text; equal when the sources are.
#[derive(Debug, Clone)]
struct TextPattern(regex::Regex);

impl PartialEq for TextPattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

/// A compiled regex over bytes; equal when the sources are.
#[derive(Debug, Clone)]
struct BytesPattern(regex::bytes::Regex);

impl PartialEq for BytesPattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

/// Hand-built stored flows for the tests of every filter module.
#[cfg(test)]
mod support {
    use std::net::SocketAddr;

    use bytes::Bytes;

    use crate::capture::StoredFlow;
    use crate::flow::{
        CapturedBody, Flow, FlowError, FlowErrorKind, HeaderField, Headers, HttpVersion,
        ResponseRecord,
    };
    use crate::kinvey::{ErrorClass, Finding, KinveySummary};

    /// Builds a [`StoredFlow`]: by default `GET http://example.com/items` from
    /// 127.0.0.1:50000 with no response, no headers, no body and no Kinvey results.
    pub(super) struct FlowBuilder(StoredFlow);

    pub(super) fn flow() -> FlowBuilder {
        FlowBuilder(StoredFlow {
            flow: Flow::exchange(
                1,
                "127.0.0.1:50000".parse().unwrap(),
                "GET",
                "http://example.com/items",
                None,
            ),
            kinvey: KinveySummary {
                known: true,
                ..KinveySummary::default()
            },
        })
    }

    fn body(bytes: &[u8]) -> CapturedBody {
        CapturedBody::whole(Bytes::copy_from_slice(bytes))
    }

    fn field(name: &str, value: &[u8]) -> HeaderField {
        HeaderField {
            name: name.to_ascii_lowercase().into(),
            value: Bytes::copy_from_slice(value),
        }
    }

    impl FlowBuilder {
        pub(super) fn build(self) -> StoredFlow {
            self.0
        }

        pub(super) fn method(mut self, method: &str) -> Self {
            self.0.flow.request.method = method.into();
            self
        }

        /// Sets the URL, and the host and port from it.
        pub(super) fn url(mut self, url: &str) -> Self {
            let uri: http::Uri = url.parse().unwrap();
            let flow = &mut self.0.flow;
            flow.request.url = url.into();
            flow.scheme = uri.scheme_str().unwrap_or("http").into();
            flow.host = uri.host().unwrap_or_default().into();
            flow.port = uri
                .port_u16()
                .unwrap_or(if flow.scheme == "https" { 443 } else { 80 });
            self
        }

        pub(super) fn client(mut self, addr: &str) -> Self {
            self.0.flow.client_addr = addr.parse::<SocketAddr>().unwrap();
            self
        }

        pub(super) fn request_header(mut self, name: &str, value: &str) -> Self {
            self.0
                .flow
                .request
                .headers
                .0
                .push(field(name, value.as_bytes()));
            self
        }

        pub(super) fn request_body(mut self, bytes: &[u8]) -> Self {
            self.0.flow.request.body = body(bytes);
            self
        }

        /// Adds a response with `status` (keeps one already there).
        pub(super) fn status(mut self, status: u16) -> Self {
            let response = self.0.flow.response.get_or_insert_with(|| ResponseRecord {
                status,
                version: HttpVersion::Http11,
                headers: Headers::default(),
                body: CapturedBody::default(),
                from_proxy: false,
            });
            response.status = status;
            self
        }

        fn response(&mut self) -> &mut ResponseRecord {
            if self.0.flow.response.is_none() {
                self.0.flow.response = Some(ResponseRecord {
                    status: 200,
                    version: HttpVersion::Http11,
                    headers: Headers::default(),
                    body: CapturedBody::default(),
                    from_proxy: false,
                });
            }
            self.0.flow.response.as_mut().unwrap()
        }

        /// Adds a header to the response (a 200 unless a status was set).
        pub(super) fn response_header(mut self, name: &str, value: &str) -> Self {
            self.response()
                .headers
                .0
                .push(field(name, value.as_bytes()));
            self
        }

        pub(super) fn response_header_bytes(mut self, name: &str, value: &[u8]) -> Self {
            self.response().headers.0.push(field(name, value));
            self
        }

        /// Sets the response body (a 200 unless a status was set).
        pub(super) fn response_body(mut self, bytes: &[u8]) -> Self {
            self.response().body = body(bytes);
            self
        }

        pub(super) fn error(mut self) -> Self {
            self.0.flow.error = Some(FlowError {
                kind: FlowErrorKind::Connect,
                message: "connection refused by example.com:80".into(),
            });
            self
        }

        pub(super) fn kinvey_error(mut self, name: &str, class: ErrorClass, known: bool) -> Self {
            self.0.kinvey.error = Some(name.into());
            self.0.kinvey.class = Some(class);
            self.0.kinvey.known = known;
            self
        }

        /// Another error of a 207 batch, besides the one the flow is listed by.
        pub(super) fn other_error(mut self, name: &str, class: ErrorClass, known: bool) -> Self {
            self.0.kinvey.other_errors.push(crate::kinvey::OtherError {
                error: name.into(),
                class,
                known,
            });
            self
        }

        pub(super) fn request_id(mut self, id: &str) -> Self {
            self.0.kinvey.request_id = Some(id.into());
            self
        }

        pub(super) fn anomaly(mut self, code: &str) -> Self {
            self.0.kinvey.anomalies.push(Finding {
                code: code.into(),
                message: format!("{code} happened"),
            });
            self
        }

        pub(super) fn warning(mut self, code: &str) -> Self {
            self.0.kinvey.warnings.push(Finding {
                code: code.into(),
                message: format!("{code} happened"),
            });
            self
        }

        pub(super) fn replay_of(mut self, original: crate::flow::FlowId) -> Self {
            self.0.flow.replay_of = Some(original);
            self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::support::flow;
    use super::*;

    fn parse(text: &str) -> Filter {
        Filter::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    #[test]
    fn text_is_kept_verbatim() {
        assert_eq!(parse("  ~m GET  ").text(), "  ~m GET  ");
    }

    #[test]
    fn matches_runs_the_expression() {
        let get = flow().build();
        let post = flow().method("POST").build();
        let filter = parse("~m get");
        assert!(filter.matches(&get));
        assert!(!filter.matches(&post));
    }

    #[test]
    fn needs_headers_only_for_header_and_content_type_operators() {
        for text in ["~h x", "~hq x", "~hs x", "~t json", "~tq json", "~ts json"] {
            assert!(parse(text).needs_headers(), "{text}");
            assert!(!parse(text).needs_bodies(), "{text}");
        }
        for text in [
            "~m GET", "~u x", "~d x", "~c 404", "~e", "~q", "~s", "~src 1", "~dst x", "~all", "~k",
            "~kerr x", "~kc fix", "~rid x", "~anom", "word",
        ] {
            assert!(!parse(text).needs_headers(), "{text}");
            assert!(!parse(text).needs_bodies(), "{text}");
        }
    }

    #[test]
    fn needs_bodies_only_for_body_operators() {
        for text in ["~b x", "~bq x", "~bs x"] {
            assert!(parse(text).needs_bodies(), "{text}");
            assert!(!parse(text).needs_headers(), "{text}");
        }
    }

    #[test]
    fn needs_are_found_anywhere_in_the_expression() {
        let filter = parse("~m GET | !(~c 404 & ~hs x) ~bq y");
        assert!(filter.needs_headers());
        assert!(filter.needs_bodies());
        assert!(parse("!!~t json").needs_headers());
        assert!(!parse("~m GET | !(~c 404 & ~u x)").needs_headers());
    }

    #[test]
    fn every_listed_operator_parses() {
        for (syntax, meaning) in OPERATORS {
            assert!(!meaning.is_empty());
            let Some(op) = syntax.strip_prefix('~') else {
                continue;
            };
            let text = match op.split_once(' ') {
                None => format!("~{op}"),
                Some((name, "CODE")) => format!("~{name} 404"),
                Some((name, "CLASS")) => format!("~{name} retry"),
                Some((name, "REGEX")) => format!("~{name} x"),
                Some(other) => panic!("unexpected syntax {other:?}"),
            };
            parse(&text);
        }
    }

    #[test]
    fn operators_lists_every_operator_once() {
        let names: Vec<&str> = OPERATORS
            .iter()
            .filter_map(|(syntax, _)| syntax.strip_prefix('~'))
            .map(|s| s.split(' ').next().unwrap())
            .collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len());
        assert_eq!(names.len(), 27);
    }

    #[test]
    fn equal_when_parsed_from_equivalent_text() {
        assert_eq!(parse("~m GET & ~d x").expr, parse("~m GET ~d x").expr);
        assert_ne!(parse("~m GET"), parse("~m POST"));
        assert_eq!(parse("~m GET"), parse("~m GET"));
    }

    #[test]
    fn error_display_names_the_column() {
        let error = Filter::parse("~zz").unwrap_err();
        assert!(error
            .to_string()
            .starts_with("column 1: unknown operator ~zz"));
    }

    #[test]
    fn pointer_puts_a_caret_under_the_column() {
        let text = "~m GET & ~c 9x9";
        let error = Filter::parse(text).unwrap_err();
        assert_eq!(error.column, 13);
        assert_eq!(error.pointer(text), "~m GET & ~c 9x9\n            ^");
        // Wide characters take two cells, a combining accent none.
        let text = "日本 & ~zz";
        let error = Filter::parse(text).unwrap_err();
        assert_eq!(error.column, 6);
        assert_eq!(error.pointer(text), "日本 & ~zz\n       ^");
    }

    #[test]
    fn pointer_at_column_one() {
        let error = FilterError::new(1, "x");
        assert_eq!(error.pointer("~zz"), "~zz\n^");
    }

    #[test]
    fn pointer_counts_characters_not_bytes() {
        let text = "~u é ~zz";
        let error = Filter::parse(text).unwrap_err();
        assert_eq!(error.column, 6);
        assert_eq!(error.pointer(text), "~u é ~zz\n     ^");
    }

    #[test]
    fn pointer_past_the_end_and_on_empty_text() {
        assert_eq!(FilterError::new(4, "x").pointer("ab"), "ab\n   ^");
        assert_eq!(FilterError::new(1, "x").pointer(""), "\n^");
    }

    #[test]
    fn pointer_keeps_tabs_aligned_and_stays_two_lines() {
        assert_eq!(FilterError::new(3, "x").pointer("\t~zz"), "\t~zz\n\t ^");
        assert_eq!(FilterError::new(3, "x").pointer("a\nbc"), "a bc\n  ^");
    }
}
