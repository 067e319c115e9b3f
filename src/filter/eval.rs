//! [`Expr`] against a [`StoredFlow`]: only compiled regexes run here, nothing is parsed.

use std::io::Write;

use bytes::Bytes;

use super::{BytesPattern, ClassTest, Expr, Side, Test, TextPattern};
use crate::capture::StoredFlow;
use crate::flow::{Flow, Headers};

impl Expr {
    /// True when `stored` matches.
    pub(super) fn eval(&self, stored: &StoredFlow) -> bool {
        match self {
            Expr::And(items) => items.iter().all(|e| e.eval(stored)),
            Expr::Or(items) => items.iter().any(|e| e.eval(stored)),
            Expr::Not(inner) => !inner.eval(stored),
            Expr::Test(test) => test.eval(stored),
        }
    }
}

impl Test {
    fn eval(&self, stored: &StoredFlow) -> bool {
        let flow = &stored.flow;
        let kinvey = &stored.kinvey;
        match self {
            Test::Method(p) => p.is_match(&flow.request.method),
            Test::Url(p) => p.is_match(&flow.request.url),
            Test::Domain(p) => p.is_match(&flow.host),
            Test::Status { low, high } => {
                flow.status().is_some_and(|s| (*low..=*high).contains(&s))
            }
            Test::Header(side, p) => on_side(flow, *side, |h| header_matches(h, p)),
            Test::ContentType(side, p) => on_side(flow, *side, |h| {
                h.get("content-type").is_some_and(|v| p.is_match(&v))
            }),
            Test::Body(side, p) => body_matches(flow, *side, p),
            Test::Error => flow.error.is_some(),
            Test::NoResponse => flow.response.is_none(),
            Test::HasResponse => flow.response.is_some(),
            Test::Src(p) => p.is_match(&flow.client_addr.to_string()),
            Test::Dst(p) => p.is_match(&format!("{}:{}", flow.host, flow.port)),
            Test::All => true,
            Test::Kinvey => kinvey.error.is_some(),
            // Any of a batch's errors, not only the one the flow is listed by.
            Test::KinveyError(p) => kinvey.all_errors().any(|(e, _, _)| p.is_match(e)),
            Test::KinveyClass(ClassTest::Class(class)) => {
                kinvey.all_errors().any(|(_, c, _)| c == *class)
            }
            Test::KinveyClass(ClassTest::Unknown) => kinvey.all_errors().any(|(_, _, k)| !k),
            Test::RequestId(p) => kinvey.request_id.as_deref().is_some_and(|r| p.is_match(r)),
            Test::Anomaly => !kinvey.anomalies.is_empty(),
            Test::Warning => !kinvey.warnings.is_empty(),
            // A summary has no messages: the switch of protocols tells.
            Test::WebSocket => flow.websocket.is_some() || flow.status() == Some(101),
            Test::Replay => flow.replay_of.is_some(),
        }
    }
}

impl TextPattern {
    fn is_match(&self, text: &str) -> bool {
        self.0.is_match(text)
    }
}

/// `test` on the request's and/or the response's headers.
fn on_side(flow: &Flow, side: Side, test: impl Fn(&Headers) -> bool) -> bool {
    let request = || test(&flow.request.headers);
    let response = || flow.response.as_ref().is_some_and(|r| test(&r.headers));
    match side {
        Side::Request => request(),
        Side::Response => response(),
        Side::Either => request() || response(),
    }
}

/// True when any header line `name: value` matches.
fn header_matches(headers: &Headers, pattern: &BytesPattern) -> bool {
    let mut line = Vec::new();
    headers.iter().any(|field| {
        line.clear();
        // Writing into a Vec cannot fail.
        let _ = write!(line, "{}: ", field.name);
        line.extend_from_slice(&field.value);
        pattern.0.is_match(&line)
    })
}

/// True when a non-empty body on `side` matches, decoded when its `Content-Encoding` can
/// be undone (as captured otherwise, e.g. when truncated). A WebSocket's messages are
/// its bodies: the client's on the request side, the server's on the response side.
fn body_matches(flow: &Flow, side: Side, pattern: &BytesPattern) -> bool {
    let messages = |from_client: bool| {
        flow.websocket.as_ref().is_some_and(|log| {
            log.messages.iter().any(|m| {
                m.from_client == from_client
                    && !m.payload.is_empty()
                    && pattern.0.is_match(&m.payload)
            })
        })
    };
    let test = |raw: &Bytes, decoded: &dyn Fn() -> Option<Bytes>| {
        !raw.is_empty()
            && pattern
                .0
                .is_match(&decoded().unwrap_or_else(|| raw.clone()))
    };
    let request =
        || test(&flow.request.body.bytes, &|| flow.decoded_request_body()) || messages(true);
    let response = || {
        flow.response
            .as_ref()
            .is_some_and(|r| test(&r.body.bytes, &|| flow.decoded_response_body()))
            || messages(false)
    };
    match side {
        Side::Request => request(),
        Side::Response => response(),
        Side::Either => request() || response(),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::super::support::flow;
    use super::super::Filter;
    use crate::capture::StoredFlow;
    use crate::kinvey::ErrorClass;

    fn matches(text: &str, stored: &StoredFlow) -> bool {
        Filter::parse(text)
            .unwrap_or_else(|e| panic!("{text:?}: {e}"))
            .matches(stored)
    }

    /// Asserts `text` matches every flow of `yes` and none of `no`.
    fn check(text: &str, yes: &[&StoredFlow], no: &[&StoredFlow]) {
        for (i, stored) in yes.iter().enumerate() {
            assert!(matches(text, stored), "{text:?} should match yes[{i}]");
        }
        for (i, stored) in no.iter().enumerate() {
            assert!(!matches(text, stored), "{text:?} should not match no[{i}]");
        }
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn method() {
        let get = flow().build();
        let post = flow().method("POST").build();
        check("~m GET", &[&get], &[&post]);
        check("~m get", &[&get], &[&post]);
        check("~m ET", &[&get], &[&post]);
        check("~m ^GET$", &[&get], &[&post]);
        check("~m GET|POST", &[&get, &post], &[]);
    }

    #[test]
    fn url() {
        let items = flow()
            .url("https://baas.kinvey.com/appdata/kid_1/items?query=1")
            .build();
        let users = flow().url("https://baas.kinvey.com/user/kid_1/_me").build();
        check("~u /appdata/", &[&items], &[&users]);
        check("~u APPDATA/kid_\\d+/items", &[&items], &[&users]);
        check("~u \\?query=", &[&items], &[&users]);
        check("~u ^https://baas", &[&items, &users], &[]);
    }

    #[test]
    fn bare_word_is_url() {
        let items = flow().url("http://example.com/items").build();
        let users = flow().url("http://example.com/users").build();
        check("items", &[&items], &[&users]);
        check("'ITEMS'", &[&items], &[&users]);
    }

    #[test]
    fn domain() {
        let kinvey = flow().url("https://baas.kinvey.com/appdata").build();
        let other = flow().url("http://example.com/baas.kinvey.com").build();
        check("~d kinvey", &[&kinvey], &[&other]);
        check("~d ^baas\\.kinvey\\.com$", &[&kinvey], &[&other]);
        check("~d KINVEY", &[&kinvey], &[&other]);
    }

    #[test]
    fn status_number() {
        let not_found = flow().status(404).build();
        let ok = flow().status(200).build();
        let pending = flow().build();
        check("~c 404", &[&not_found], &[&ok, &pending]);
        check("~c 200", &[&ok], &[&not_found, &pending]);
    }

    #[test]
    fn status_range() {
        let at = |s| flow().status(s).build();
        let (f499, f500, f550, f599, f600) = (at(499), at(500), at(550), at(599), at(600));
        let pending = flow().build();
        check(
            "~c 500-599",
            &[&f500, &f550, &f599],
            &[&f499, &f600, &pending],
        );
        check("~c 499-500", &[&f499, &f500], &[&f550]);
    }

    #[test]
    fn status_class() {
        let at = |s| flow().status(s).build();
        let (f399, f400, f429, f499, f500) = (at(399), at(400), at(429), at(499), at(500));
        let pending = flow().build();
        check("~c 4xx", &[&f400, &f429, &f499], &[&f399, &f500, &pending]);
        check("~c 5XX", &[&f500], &[&f499]);
        check("~c 3xx", &[&f399], &[&f400]);
    }

    #[test]
    fn headers_either_side() {
        let request = flow().request_header("X-Kinvey-API-Version", "5").build();
        let response = flow().response_header("X-Kinvey-Request-ID", "abc").build();
        let none = flow().status(200).build();
        check("~h x-kinvey", &[&request, &response], &[&none]);
        check("~h api-version", &[&request], &[&response, &none]);
        check("~h request-id", &[&response], &[&request, &none]);
    }

    #[test]
    fn headers_match_name_colon_value_lines() {
        let stored = flow()
            .request_header("Accept", "application/json")
            .request_header("Host", "example.com")
            .build();
        check("~hq 'accept: application/json'", &[&stored], &[]);
        check("~hq ^host:", &[&stored], &[]);
        check("~hq json$", &[&stored], &[]);
        // Each line on its own: one header's value does not run into the next name.
        check("~hq 'json.*host'", &[], &[&stored]);
        check("~hq ^example", &[], &[&stored]);
        check("~hq 'accept: example'", &[], &[&stored]);
    }

    #[test]
    fn request_and_response_headers() {
        let both = flow()
            .request_header("Authorization", "Kinvey token")
            .response_header("Content-Length", "12")
            .build();
        check("~hq authorization", &[&both], &[]);
        check("~hq content-length", &[], &[&both]);
        check("~hs content-length", &[&both], &[]);
        check("~hs authorization", &[], &[&both]);
        let pending = flow().request_header("A", "b").build();
        check("~hs .", &[], &[&pending]);
        check("~hq .", &[&pending], &[]);
    }

    #[test]
    fn header_values_that_are_not_utf8() {
        let stored = flow()
            .response_header_bytes("X-Odd", b"caf\xe9 latte")
            .build();
        check("~hs 'x-odd: caf'", &[&stored], &[]);
        check("~hs latte", &[&stored], &[]);
        check("~hs '(?-u:\\xe9)'", &[&stored], &[]);
        check("~hs café", &[], &[&stored]);
    }

    #[test]
    fn bodies_either_side() {
        let request = flow().request_body(b"{\"name\":\"widget\"}").build();
        let response = flow()
            .response_body(b"{\"error\":\"EntityNotFound\"}")
            .build();
        let empty = flow().status(204).build();
        check("~b widget", &[&request], &[&response, &empty]);
        check("~b ENTITYNOTFOUND", &[&response], &[&request, &empty]);
        check("~b '\"(name|error)\"'", &[&request, &response], &[&empty]);
    }

    #[test]
    fn request_and_response_bodies() {
        let both = flow().request_body(b"ping").response_body(b"pong").build();
        check("~bq ping", &[&both], &[]);
        check("~bq pong", &[], &[&both]);
        check("~bs pong", &[&both], &[]);
        check("~bs ping", &[], &[&both]);
        let pending = flow().request_body(b"ping").build();
        check("~bs .", &[], &[&pending]);
    }

    #[test]
    fn a_websockets_messages_are_its_bodies() {
        use crate::websocket::{Message, MessageLog};
        let mut socket = flow().status(101).build();
        let message = Message::text;
        socket.flow.websocket = Some(Box::new(MessageLog {
            messages: vec![message(true, "subscribe books"), message(false, "welcome")],
            ..MessageLog::default()
        }));
        check("~b books", &[&socket], &[]);
        check("~bq subscribe", &[&socket], &[]);
        check("~bq welcome", &[], &[&socket]);
        check("~bs welcome", &[&socket], &[]);
    }

    #[test]
    fn empty_bodies_never_match() {
        let empty = flow().status(200).build();
        check("~b ''", &[], &[&empty]);
        check("~bq .*", &[], &[&empty]);
        check("~bs ^", &[], &[&empty]);
    }

    #[test]
    fn bodies_are_matched_decoded() {
        let text = b"{\"error\":\"InsufficientCredentials\",\"description\":\"no\"}".repeat(8);
        let compressed = gzip(&text);
        assert!(!compressed
            .windows(b"Insufficient".len())
            .any(|w| w == b"Insufficient"));
        let response = flow()
            .response_header("Content-Encoding", "gzip")
            .response_body(&compressed)
            .build();
        check("~bs InsufficientCredentials", &[&response], &[]);
        check("~b 'description\":\"no'", &[&response], &[]);
        let request = flow()
            .request_header("Content-Encoding", "gzip")
            .request_body(&compressed)
            .build();
        check("~bq insufficient", &[&request], &[]);
        check("~b insufficient", &[&request], &[]);
    }

    #[test]
    fn bodies_that_do_not_decode_are_matched_as_captured() {
        let stored = flow()
            .response_header("Content-Encoding", "gzip")
            .response_body(b"plain text, mislabelled")
            .build();
        check("~bs mislabelled", &[&stored], &[]);
        let unknown = flow()
            .response_header("Content-Encoding", "x-custom")
            .response_body(b"raw words")
            .build();
        check("~bs words", &[&unknown], &[]);
    }

    #[test]
    fn bodies_that_are_not_utf8() {
        let stored = flow().response_body(b"\x00\xffPNG\x89").build();
        check("~bs PNG", &[&stored], &[]);
        check("~bs '(?-u:\\xff)'", &[&stored], &[]);
    }

    #[test]
    fn content_type() {
        let json_request = flow()
            .request_header("Content-Type", "application/json")
            .build();
        let html_response = flow()
            .response_header("content-type", "text/html; charset=utf-8")
            .build();
        let none = flow()
            .status(200)
            .request_header("Accept", "application/json")
            .build();
        check("~t json", &[&json_request], &[&html_response, &none]);
        check("~t html", &[&html_response], &[&json_request, &none]);
        check("~tq json", &[&json_request], &[&html_response, &none]);
        check("~tq html", &[], &[&html_response]);
        check("~ts HTML", &[&html_response], &[&json_request, &none]);
        check("~ts json", &[], &[&json_request]);
        check("~t charset=utf-8", &[&html_response], &[]);
    }

    #[test]
    fn flow_error() {
        let failed = flow().error().build();
        let fine = flow().status(200).build();
        check("~e", &[&failed], &[&fine]);
        check("!~e", &[&fine], &[&failed]);
    }

    #[test]
    fn response_present_or_not() {
        let pending = flow().build();
        let answered = flow().status(200).build();
        let failed_with_answer = flow().status(502).error().build();
        check("~q", &[&pending], &[&answered, &failed_with_answer]);
        check("~s", &[&answered, &failed_with_answer], &[&pending]);
    }

    #[test]
    fn source_address() {
        let local = flow().client("127.0.0.1:50000").build();
        let lan = flow().client("192.168.1.20:61000").build();
        let v6 = flow().client("[::1]:4000").build();
        check("~src 127\\.0\\.0\\.1", &[&local], &[&lan, &v6]);
        check("~src :50000$", &[&local], &[&lan, &v6]);
        check("~src ^192\\.168\\.", &[&lan], &[&local, &v6]);
        check("~src '\\[::1\\]:4000'", &[&v6], &[&local]);
    }

    #[test]
    fn destination() {
        let https = flow().url("https://baas.kinvey.com/appdata").build();
        let http = flow().url("http://localhost:8080/x").build();
        check("~dst ^baas\\.kinvey\\.com:443$", &[&https], &[&http]);
        check("~dst :8080", &[&http], &[&https]);
        check("~dst localhost", &[&http], &[&https]);
    }

    #[test]
    fn everything() {
        let plain = flow().build();
        let failed = flow().error().status(502).build();
        check("~all", &[&plain, &failed], &[]);
        check("!~all", &[], &[&plain, &failed]);
    }

    #[test]
    fn kinvey_error() {
        let error = flow()
            .status(401)
            .kinvey_error("InvalidCredentials", ErrorClass::Fix, true)
            .build();
        let kinvey_ok = flow().status(200).request_id("abc").build();
        let plain = flow().status(500).build();
        check("~k", &[&error], &[&kinvey_ok, &plain]);
        check("!~k", &[&kinvey_ok, &plain], &[&error]);
    }

    #[test]
    fn kinvey_error_name() {
        let credentials = flow()
            .kinvey_error("InvalidCredentials", ErrorClass::Fix, true)
            .build();
        let timeout = flow()
            .kinvey_error("KinveyInternalErrorRetry", ErrorClass::Retry, true)
            .build();
        let none = flow().build();
        check("~kerr credentials", &[&credentials], &[&timeout, &none]);
        check("~kerr ^InvalidCredentials$", &[&credentials], &[&timeout]);
        check("~kerr retry", &[&timeout], &[&credentials, &none]);
        check("~kerr .", &[&credentials, &timeout], &[&none]);
    }

    #[test]
    fn kinvey_class() {
        let retry = flow()
            .kinvey_error("ServerBusy", ErrorClass::Retry, true)
            .build();
        let fix = flow()
            .kinvey_error("InvalidCredentials", ErrorClass::Fix, true)
            .build();
        let stop = flow()
            .kinvey_error("KinveyInternalErrorStop", ErrorClass::Stop, true)
            .build();
        let unknown_fix = flow()
            .kinvey_error("MadeUpError", ErrorClass::Fix, false)
            .build();
        let none = flow().status(200).build();
        let none_unknown = {
            let mut stored = flow().build();
            stored.kinvey.known = false;
            stored
        };
        check("~kc retry", &[&retry], &[&fix, &stop, &unknown_fix, &none]);
        check("~kc fix", &[&fix, &unknown_fix], &[&retry, &stop, &none]);
        check("~kc stop", &[&stop], &[&retry, &fix, &unknown_fix, &none]);
        check(
            "~kc unknown",
            &[&unknown_fix],
            &[&retry, &fix, &stop, &none, &none_unknown],
        );
        check("~kc FIX & !~kc unknown", &[&fix], &[&unknown_fix]);
    }

    #[test]
    fn a_batch_matches_by_any_of_its_errors() {
        let batch = flow()
            .status(207)
            .kinvey_error("KinveyInternalErrorStop", ErrorClass::Stop, true)
            .other_error("InvalidCredentials", ErrorClass::Fix, true)
            .other_error("MadeUpError", ErrorClass::Retry, false)
            .build();
        let single = flow()
            .kinvey_error("KinveyInternalErrorStop", ErrorClass::Stop, true)
            .build();
        check("~kerr InvalidCredentials", &[&batch], &[&single]);
        check("~kerr ^MadeUpError$", &[&batch], &[&single]);
        check("~kerr Stop", &[&batch, &single], &[]);
        check("~kc fix", &[&batch], &[&single]);
        check("~kc retry", &[&batch], &[&single]);
        check("~kc unknown", &[&batch], &[&single]);
        check("~kc stop", &[&batch, &single], &[]);
    }

    #[test]
    fn kinvey_request_id() {
        let with_id = flow().request_id("7f3a9c0e12b44d7e").build();
        let without = flow().status(200).build();
        check("~rid 7f3a", &[&with_id], &[&without]);
        check("~rid 7F3A9C", &[&with_id], &[&without]);
        check("~rid ^9c", &[], &[&with_id]);
        check("~rid .", &[&with_id], &[&without]);
    }

    #[test]
    fn kinvey_anomaly() {
        let odd = flow().anomaly("stray_whitespace").build();
        let clean = flow()
            .kinvey_error("InvalidCredentials", ErrorClass::Fix, true)
            .build();
        check("~anom", &[&odd], &[&clean]);
        check("!~anom", &[&clean], &[&odd]);
    }

    #[test]
    fn behaviour_warnings_websockets_and_replays() {
        let warned = flow().warning("retry_without_backoff").build();
        let odd = flow().anomaly("stray_whitespace").build();
        check("~warn", &[&warned], &[&odd]);
        check("~anom", &[&odd], &[&warned]);
        let switched = flow().status(101).build();
        let plain = flow().status(200).build();
        check("~websocket", &[&switched], &[&plain]);
        let replayed = flow().status(200).replay_of(7).build();
        check("~replay", &[&replayed], &[&plain]);
    }

    #[test]
    fn not_binds_tighter_than_and_and_or() {
        let get = flow().status(200).build();
        let post = flow().method("POST").status(500).build();
        let put = flow().method("PUT").build();
        check("!~m GET & ~s", &[&post], &[&get, &put]);
        check("!(~m GET & ~s)", &[&post, &put], &[&get]);
        check("!~m GET | ~c 200", &[&get, &post, &put], &[]);
        check("!(~m GET | ~c 500)", &[&put], &[&get, &post]);
    }

    #[test]
    fn and_binds_tighter_than_or() {
        let get_ok = flow().status(200).build();
        let post_ok = flow().method("POST").status(200).build();
        let post_err = flow().method("POST").status(500).build();
        check(
            "~m GET | ~m POST & ~c 500",
            &[&get_ok, &post_err],
            &[&post_ok],
        );
        check(
            "(~m GET | ~m POST) & ~c 500",
            &[&post_err],
            &[&get_ok, &post_ok],
        );
        check(
            "~c 500 & ~m POST | ~m GET",
            &[&get_ok, &post_err],
            &[&post_ok],
        );
    }

    #[test]
    fn adjacency_is_and() {
        let kinvey_get = flow().url("https://baas.kinvey.com/appdata").build();
        let kinvey_post = flow()
            .method("POST")
            .url("https://baas.kinvey.com/appdata")
            .build();
        let other_get = flow().build();
        check(
            "~m GET ~d kinvey",
            &[&kinvey_get],
            &[&kinvey_post, &other_get],
        );
        check(
            "~m GET & ~d kinvey",
            &[&kinvey_get],
            &[&kinvey_post, &other_get],
        );
        check(
            "~d kinvey !~m GET",
            &[&kinvey_post],
            &[&kinvey_get, &other_get],
        );
        check(
            "~m GET appdata",
            &[&kinvey_get],
            &[&other_get, &kinvey_post],
        );
    }

    #[test]
    fn quoted_arguments_with_spaces() {
        let stored = flow()
            .kinvey_error("Insufficient Credentials", ErrorClass::Fix, false)
            .response_body(b"say \"hi\" it's me")
            .build();
        check("~kerr 'insufficient credentials'", &[&stored], &[]);
        check(r#"~bs "say \"hi\"""#, &[&stored], &[]);
        check(r"~bs 'it\'s me'", &[&stored], &[]);
        check("~kerr 'credentials insufficient'", &[], &[&stored]);
    }

    #[test]
    fn a_realistic_filter() {
        let text = "~d kinvey.com & (~c 5xx | ~kc retry) & !~hq 'x-kinvey-retry'";
        let failing = flow()
            .url("https://baas.kinvey.com/appdata/kid/items")
            .status(503)
            .build();
        let retried = flow()
            .url("https://baas.kinvey.com/appdata/kid/items")
            .request_header("X-Kinvey-Retry", "1")
            .status(503)
            .build();
        let elsewhere = flow().status(503).build();
        let busy = flow()
            .url("https://baas.kinvey.com/appdata/kid/items")
            .status(429)
            .kinvey_error("ServerBusy", ErrorClass::Retry, true)
            .build();
        check(text, &[&failing, &busy], &[&retried, &elsewhere]);
    }
}
