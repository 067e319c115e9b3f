//! Kinvey intelligence end to end: the simulator's answers go through the proxy into a
//! real capture, where every dictionary row, anomaly and behaviour check is found.

mod support;

use std::process::Command;
use std::time::Duration;

use base64::Engine;
use kinspect::capture::{CaptureReader, StoredFlow};
use kinspect::demo::simulator::{Simulator, APP_KEY, APP_SECRET};
use kinspect::kinvey::{ErrorClass, DICTIONARY};
use support::{TestProxy, STEP};

struct Fixture {
    simulator: Simulator,
    proxy: TestProxy,
    client: reqwest::Client,
}

impl Fixture {
    async fn start() -> Fixture {
        kinspect::tls::install_crypto_provider();
        let simulator = Simulator::start(&["localhost"]).await.unwrap();
        let root = simulator.ca_der().clone();
        let proxy = TestProxy::start(None, |c| c.upstream_roots.push(root)).await;
        let client = proxy.client();
        Fixture {
            simulator,
            proxy,
            client,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.simulator.addr().port())
    }

    fn app_auth() -> String {
        let basic =
            base64::engine::general_purpose::STANDARD.encode(format!("{APP_KEY}:{APP_SECRET}"));
        format!("Basic {basic}")
    }

    /// Sends a request with the app's credentials and API version 5; returns its flow.
    async fn call(
        &mut self,
        method: reqwest::Method,
        path: &str,
        body: &str,
        tag: &str,
    ) -> StoredFlow {
        let response = self
            .client
            .request(method, self.url(path))
            .header("Authorization", Self::app_auth())
            .header("X-Kinvey-API-Version", "5")
            .header("X-Demo-Client", tag)
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        response.bytes().await.unwrap();
        self.proxy.next_stored().await
    }

    async fn get(&mut self, path: &str) -> StoredFlow {
        self.call(reqwest::Method::GET, path, "", "").await
    }
}

fn anomaly_codes(stored: &StoredFlow) -> Vec<&str> {
    stored
        .kinvey
        .anomalies
        .iter()
        .map(|a| a.code.as_str())
        .collect()
}

fn warning_codes(stored: &StoredFlow) -> Vec<&str> {
    stored
        .kinvey
        .warnings
        .iter()
        .map(|w| w.code.as_str())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dictionary_row_is_served_and_classified_from_the_capture() {
    let mut f = Fixture::start().await;
    let mut expected = Vec::new();
    for entry in DICTIONARY {
        for status in entry.statuses {
            let path = format!("/simulate/error/{}?status={status}", entry.name);
            let stored = f.get(&path).await;
            assert_eq!(stored.flow.status(), Some(*status), "{}", entry.name);
            assert_eq!(stored.kinvey.error.as_deref(), Some(entry.name));
            assert_eq!(stored.kinvey.class, Some(entry.class), "{}", entry.name);
            assert!(stored.kinvey.known);
            assert!(
                stored.kinvey.anomalies.is_empty(),
                "{}: {:?}",
                entry.name,
                stored.kinvey.anomalies
            );
            assert_eq!(stored.kinvey.request_id.as_ref().map(String::len), Some(32));
            expected.push((stored.flow.id, entry.name, entry.class));
        }
    }
    assert_eq!(
        expected.len(),
        DICTIONARY.len() + 1,
        "APIVersionNotAvailable twice"
    );

    // The same results, read back from the capture file.
    let reader = CaptureReader::open(&f.proxy.capture_path()).unwrap();
    for (id, name, class) in expected {
        let stored = reader.flow(id).unwrap().unwrap();
        assert_eq!(stored.kinvey.error.as_deref(), Some(name));
        assert_eq!(stored.kinvey.class, Some(class));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_anomaly_is_flagged() {
    let mut f = Fixture::start().await;
    let cases = [
        (
            "/simulate/anomaly/status-mismatch",
            "status_mismatch",
            Some("EntityNotFound"),
        ),
        (
            "/simulate/anomaly/whitespace",
            "stray_whitespace",
            Some("BLTimeoutError"),
        ),
        (
            "/simulate/anomaly/unparseable",
            "unparseable_body",
            Some("InsufficientCredentials"),
        ),
        (
            "/simulate/anomaly/content-type",
            "non_json_content_type",
            Some("KinveyInternalErrorRetry"),
        ),
        (
            "/simulate/anomaly/name-message",
            "name_message_variant",
            Some("EntityNotFound"),
        ),
        (
            "/simulate/anomaly/debug-object",
            "debug_is_object",
            Some("JSONParseError"),
        ),
        (
            "/simulate/anomaly/wrapped",
            "wrapped_body",
            Some("EntityNotFound"),
        ),
        (
            "/simulate/anomaly/batch",
            "batch_errors",
            // Listed by its gravest element: a FIX after a RETRY.
            Some("ParameterValueOutOfRange"),
        ),
        (
            "/simulate/error/QuotaExceeded?status=429",
            "unknown_name",
            Some("QuotaExceeded"),
        ),
    ];
    for (path, code, error) in cases {
        let stored = f.get(path).await;
        assert_eq!(anomaly_codes(&stored), [code], "{path}");
        assert_eq!(stored.kinvey.error.as_deref(), error, "{path}");
    }
    let unknown = f.get("/simulate/error/QuotaExceeded?status=429").await;
    assert_eq!(unknown.kinvey.badge().as_deref(), Some("?RETRY"));
    assert!(!unknown.kinvey.known);

    // A Kinvey request without X-Kinvey-API-Version.
    let response = f.client.get(f.url("/simulate/ok")).send().await.unwrap();
    response.bytes().await.unwrap();
    let stored = f.proxy.next_stored().await;
    assert_eq!(anomaly_codes(&stored), ["missing_api_version"]);
    assert_eq!(stored.kinvey.class, None, "a success carries no error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_error_re_sent_is_a_warning_and_a_first_attempt_is_not() {
    let mut f = Fixture::start().await;
    let post = reqwest::Method::POST;
    let path = format!("/rpc/{APP_KEY}/custom/doomed");
    let first = f.call(post.clone(), &path, "{}", "s").await;
    assert_eq!(first.kinvey.class, Some(ErrorClass::Stop));
    assert!(first.kinvey.warnings.is_empty());
    let again = f.call(post.clone(), &path, "{}", "s").await;
    assert_eq!(warning_codes(&again), ["stop_resent"]);
    // Another endpoint is another series.
    let other = f
        .call(post, &format!("/rpc/{APP_KEY}/custom/internal"), "{}", "s")
        .await;
    assert_eq!(other.kinvey.class, Some(ErrorClass::Stop));
    assert!(other.kinvey.warnings.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fix_error_re_sent_unchanged_is_a_warning_and_a_changed_one_is_not() {
    let mut f = Fixture::start().await;
    let put = reqwest::Method::PUT;
    let path = format!("/appdata/{APP_KEY}/books/b1");
    let first = f.call(put.clone(), &path, "{title: oops}", "").await;
    assert_eq!(first.kinvey.error.as_deref(), Some("JSONParseError"));
    let same = f.call(put.clone(), &path, "{title: oops}", "").await;
    assert_eq!(warning_codes(&same), ["fix_resent_unchanged"]);
    let changed = f.call(put.clone(), &path, "{title: still wrong}", "").await;
    assert!(
        changed.kinvey.warnings.is_empty(),
        "{:?}",
        changed.kinvey.warnings
    );
    let fixed = f.call(put, &path, r#"{"title":"ok"}"#, "").await;
    assert_eq!(fixed.flow.status(), Some(200));
    assert!(fixed.kinvey.warnings.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_without_backoff_are_warnings_and_growing_backoff_is_not() {
    let mut f = Fixture::start().await;
    let post = reqwest::Method::POST;
    let path = format!("/rpc/{APP_KEY}/custom/flaky");

    let hasty: Vec<StoredFlow> = {
        let mut flows = Vec::new();
        for _ in 0..3 {
            flows.push(f.call(post.clone(), &path, "{}", "hasty").await);
        }
        flows
    };
    assert_eq!(hasty[0].kinvey.class, Some(ErrorClass::Retry));
    assert!(hasty[0].kinvey.warnings.is_empty());
    assert_eq!(warning_codes(&hasty[1]), ["retry_without_backoff"]);
    assert_eq!(hasty[2].flow.status(), Some(200));

    let mut patient = Vec::new();
    for wait in [0, 200, 400] {
        tokio::time::sleep(Duration::from_millis(wait)).await;
        patient.push(f.call(post.clone(), &path, "{}", "patient").await);
    }
    assert_eq!(patient[2].flow.status(), Some(200));
    for stored in &patient {
        assert!(
            stored.kinvey.warnings.is_empty(),
            "{:?}",
            stored.kinvey.warnings
        );
    }

    let mut flat = Vec::new();
    for wait in [0, 200, 200] {
        tokio::time::sleep(Duration::from_millis(wait)).await;
        flat.push(f.call(post.clone(), &path, "{}", "flat").await);
    }
    assert!(flat[1].kinvey.warnings.is_empty());
    assert_eq!(warning_codes(&flat[2]), ["retry_backoff_not_growing"]);
}

fn kinspect(args: &[&str], capture: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kinspect"))
        .arg("report")
        .arg(capture)
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_found_exactly_and_by_prefix_and_reports_hide_secrets() {
    let mut f = Fixture::start().await;
    // Log in with the app secret, then use the session token: both are secrets.
    let login = f
        .call(
            reqwest::Method::POST,
            &format!("/user/{APP_KEY}/login"),
            r#"{"username":"ada","password":"lovelace"}"#,
            "",
        )
        .await;
    let body: serde_json::Value =
        serde_json::from_slice(&login.flow.response.as_ref().unwrap().body.bytes).unwrap();
    let token = body["_kmd"]["authtoken"].as_str().unwrap().to_owned();
    let response = f
        .client
        .post(f.url(&format!("/rpc/{APP_KEY}/custom/slow?access_token={token}")))
        .header("Authorization", format!("Kinvey {token}"))
        .header("X-Kinvey-API-Version", "5")
        .header("X-Kinvey-Client-App-Version", "3.1.4")
        .body("{}")
        .send()
        .await
        .unwrap();
    response.bytes().await.unwrap();
    let slow = f.proxy.next_stored().await;
    let request_id = slow.kinvey.request_id.clone().unwrap();

    let reader = CaptureReader::open(&f.proxy.capture_path()).unwrap();
    assert_eq!(
        reader.find_request_id(&request_id).unwrap(),
        [(request_id.clone(), slow.flow.id)]
    );
    let by_prefix = reader.find_request_id(&request_id[..12]).unwrap();
    assert_eq!(by_prefix, [(request_id.clone(), slow.flow.id)]);
    let in_memory = {
        let mut index = kinspect::kinvey::RequestIdIndex::new();
        index.insert(login.kinvey.request_id.as_deref().unwrap(), login.flow.id);
        index.insert(&request_id, slow.flow.id);
        index.prefix(&request_id[..12]).len()
    };
    assert_eq!(in_memory, 1);

    let capture = f.proxy.capture_path();
    for id in [&request_id[..], &request_id[..10]] {
        let output = tokio::task::spawn_blocking({
            let capture = capture.clone();
            let id = id.to_owned();
            move || kinspect(&["--request-id", &id], &capture)
        })
        .await
        .unwrap();
        let report = String::from_utf8(output.stdout).unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(report.contains(&request_id), "{report}");
        assert!(report.contains("BLTimeoutError"), "{report}");
        assert!(report.contains("FIX"), "{report}");
        assert!(report.contains("API version: 5"), "{report}");
        assert!(report.contains("3.1.4"), "{report}");
        assert!(report.contains("access_token=[redacted]"), "{report}");
        assert!(
            !report.contains(&token),
            "the session token leaked: {report}"
        );
        assert!(
            !report.contains(APP_SECRET),
            "the app secret leaked: {report}"
        );
    }

    // The login's report: Basic app credentials are never shown.
    let login_id = login.kinvey.request_id.clone().unwrap();
    let output =
        tokio::task::spawn_blocking(move || kinspect(&["--request-id", &login_id], &capture))
            .await
            .unwrap();
    let report = String::from_utf8(output.stdout).unwrap();
    assert!(output.status.success());
    let basic = Fixture::app_auth();
    assert!(!report.contains(&basic) && !report.contains(basic.trim_start_matches("Basic ")));
    assert!(
        !report.contains(APP_SECRET) && !report.contains("lovelace"),
        "{report}"
    );
    let _ = STEP;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_body_longer_than_max_body_is_still_classified_and_reported() {
    // A plain origin answering one 5 KB Kinvey error: the proxy keeps 4 KiB of it.
    let body = format!(
        r#"{{"error":"KinveyInternalErrorStop","description":"The Kinvey server encountered an unexpected error. Please contact Kinvey on the community support forum for help.","debug":"{}"}}"#,
        "trace ".repeat(900)
    );
    let answer = format!(
        "HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\n\
         x-kinvey-request-id: 5f1c0ffee\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let (port, origin) = support::one_answer_origin(answer).await;
    let mut proxy = TestProxy::start(None, |c| c.max_body = 4096).await;
    let response = proxy
        .client()
        .get(format!("http://127.0.0.1:{port}/appdata/kid_x/books"))
        .header("X-Kinvey-API-Version", "5")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 500);
    assert!(response.bytes().await.unwrap().len() > 5000);
    let stored = proxy.next_stored().await;
    origin.abort();
    assert!(stored.flow.response.as_ref().unwrap().body.truncated);
    assert_eq!(
        stored.kinvey.error.as_deref(),
        Some("KinveyInternalErrorStop")
    );
    assert_eq!(stored.kinvey.class, Some(ErrorClass::Stop));

    let capture = proxy.capture_path();
    let output =
        tokio::task::spawn_blocking(move || kinspect(&["--request-id", "5f1c0ffee"], &capture))
            .await
            .unwrap();
    let report = String::from_utf8(output.stdout).unwrap();
    assert!(output.status.success(), "{report}");
    assert!(
        report.contains("Error:       KinveyInternalErrorStop"),
        "{report}"
    );
    assert!(report.contains("STOP"), "{report}");
    assert!(
        report.contains("kept the first 4096 of its"),
        "the report says the body was cut: {report}"
    );
}
