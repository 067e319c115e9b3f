//! HAR 1.2 export and import: exports validated by har-validator (Node), a round trip
//! that keeps what matters, HARs in the shapes Chrome, Firefox and mitmproxy write, and
//! redaction.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kinspect::capture::{CaptureReader, Detail, StoredFlow};
use kinspect::demo::simulator::{Simulator, APP_KEY, APP_SECRET};
use kinspect::flow::{FlowErrorKind, HttpVersion};
use kinspect::har;
use support::{tool_available, Origin, OriginKind, TestProxy};

fn harness_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/har")
}

/// Runs har-validator 5.1.5 on `files`; panics with its report when one is invalid.
/// Skips (printing why) only outside CI when Node or the validator is not installed.
fn validate(files: &[&Path]) {
    if !tool_available("node") {
        return;
    }
    if !harness_dir().join("node_modules/har-validator").exists() {
        if std::env::var_os("CI").is_some() {
            panic!("har-validator is not installed: .ci/run runs `npm ci --prefix tests/har`");
        }
        eprintln!("SKIPPED: har-validator is not installed; run `npm ci --prefix tests/har`");
        return;
    }
    let output = Command::new("node")
        .arg(harness_dir().join("validate.js"))
        .args(files)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "har-validator refused:\n{said}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        said.lines().filter(|l| l.starts_with("ok ")).count(),
        files.len(),
        "{said}"
    );
}

fn kinspect(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kinspect"))
        .args(args)
        .output()
        .unwrap()
}

/// A capture of varied real traffic: Kinvey errors with credentials, gzip, HTTP/2 and
/// HTTP/1.1, a binary upload, a password in a form (echoed back), a refused port, a
/// tunnel.
async fn varied_capture() -> (TestProxy, Vec<StoredFlow>, Simulator, Origin) {
    let simulator = Simulator::start(&["localhost"]).await.unwrap();
    let origin = Origin::start(OriginKind::Https).await;
    let root = simulator.ca_der().clone();
    let mut proxy = TestProxy::start(Some(&origin), |c| c.upstream_roots.push(root)).await;
    let client = proxy.client();
    let sim = |path: &str| format!("https://localhost:{}{path}", simulator.addr().port());
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{APP_KEY}:{APP_SECRET}")
        )
    );

    let mut sent = 0;
    let login = client
        .post(sim(&format!(
            "/user/{APP_KEY}/login?access_token=query-secret-1"
        )))
        .header("Authorization", &basic)
        .header("X-Kinvey-API-Version", "5")
        .header("Cookie", "session=cookie-secret-2; theme=dark")
        .body(r#"{"username":"ada","password":"lovelace"}"#)
        .send()
        .await
        .unwrap();
    login.bytes().await.unwrap();
    sent += 1;
    for path in ["/simulate/error/BLTimeoutError", "/simulate/anomaly/batch"] {
        client
            .get(sim(path))
            .header("X-Kinvey-API-Version", "5")
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        sent += 1;
    }
    let h1 = proxy.client_builder().http1_only().build().unwrap();
    h1.get(origin.url("/gzip"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let binary: Vec<u8> = (0..=255u8).collect();
    h1.put(origin.url("/echo/upload"))
        .body(binary)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    // As Kinvey's MIC token endpoint gets it; the echo sends the form back.
    h1.post(origin.url("/echo/oauth/token"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("grant_type=password&username=ada&password=form%40secret-3")
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    sent += 3;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    client
        .get(format!("http://127.0.0.1:{port}/down"))
        .send()
        .await
        .unwrap();
    sent += 1;
    let mut flows = Vec::new();
    for _ in 0..sent {
        flows.push(proxy.next_stored().await);
    }
    (proxy, flows, simulator, origin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_validate_and_round_trip() {
    let (proxy, flows, _simulator, _origin) = varied_capture().await;
    let dir = tempfile::tempdir().unwrap();
    let redacted = dir.path().join("redacted.har");
    let plain = dir.path().join("plain.har");
    let capture = proxy.capture_path();
    let capture = capture.to_str().unwrap();

    let output = kinspect(&["har", capture, "-o", redacted.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains(&format!("wrote {} entries", flows.len())),
        "{said}"
    );
    assert!(said.contains("values redacted"), "{said}");
    let output = kinspect(&["har", capture, "-o", plain.to_str().unwrap(), "--no-redact"]);
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("nothing redacted"));
    validate(&[&redacted, &plain]);

    // The field rules of DESIGN §8.
    let har: serde_json::Value = serde_json::from_slice(&std::fs::read(&plain).unwrap()).unwrap();
    let entries = har["log"]["entries"].as_array().unwrap();
    assert_eq!(entries.len(), flows.len());
    assert_eq!(har["log"]["pages"][0]["id"], "page_1");
    for entry in entries {
        assert_eq!(entry["pageref"], "page_1");
        assert!(entry["startedDateTime"].as_str().unwrap().ends_with('Z'));
        for key in ["cookies", "headers", "queryString"] {
            assert!(entry["request"][key].is_array(), "request.{key}");
        }
        assert_eq!(entry["response"]["redirectURL"], "");
        assert_eq!(entry["cache"], serde_json::json!({}));
        let t = &entry["timings"];
        for key in ["send", "wait", "receive"] {
            assert!(t[key].as_f64().unwrap() >= 0.0);
        }
        let sum: f64 = ["blocked", "dns", "connect", "send", "wait", "receive"]
            .iter()
            .map(|k| t[*k].as_f64().unwrap().max(0.0))
            .sum();
        assert!(
            (entry["time"].as_f64().unwrap() - sum).abs() < 0.01,
            "time = sum without ssl"
        );
    }
    let by_url = |part: &str| {
        entries
            .iter()
            .find(|e| e["request"]["url"].as_str().unwrap().contains(part))
            .unwrap()
    };
    let gzip = by_url("/gzip");
    assert_eq!(
        gzip["response"]["content"]["size"],
        support::GZIP_TEXT.len()
    );
    assert_eq!(
        gzip["response"]["content"]["text"],
        support::GZIP_TEXT,
        "decoded text"
    );
    let wire = gzip["response"]["bodySize"].as_i64().unwrap();
    assert_eq!(
        gzip["response"]["content"]["compression"],
        support::GZIP_TEXT.len() as i64 - wire
    );
    let upload = by_url("/echo/upload");
    assert_eq!(upload["request"]["postData"]["_encoding"], "base64");
    assert_eq!(upload["request"]["httpVersion"], "HTTP/1.1");
    let login = by_url("/login");
    assert_eq!(login["request"]["httpVersion"], "http/2.0");
    assert_eq!(login["_kinvey"]["requestId"].as_str().unwrap().len(), 32);
    let failed = by_url("/down");
    assert_eq!(failed["response"]["status"], 0);
    assert_eq!(failed["response"]["content"]["mimeType"], "x-unknown");
    assert!(failed["_error"].as_str().unwrap().contains("refused"));
    // Also where Chrome writes it.
    assert_eq!(failed["response"]["_error"], failed["_error"]);
    let batch = by_url("/anomaly/batch");
    assert_eq!(batch["_kinvey"]["anomalies"][0]["code"], "batch_errors");
    // Listed by its gravest element (FIX over RETRY); the other one beside it.
    assert_eq!(batch["_kinvey"]["error"], "ParameterValueOutOfRange");
    assert_eq!(batch["_kinvey"]["index"], 2);
    let others = &batch["_kinvey"]["otherErrors"];
    assert_eq!(others[0]["error"], "KinveyInternalErrorRetry");
    assert_eq!(
        (others[0]["index"].clone(), others[0]["class"].clone()),
        (1.into(), "retry".into())
    );
    assert_eq!(others.as_array().unwrap().len(), 1);
    assert_eq!(by_url("BLTimeoutError")["_kinvey"]["class"], "fix");

    // Round trip: the import keeps method, URL, status, headers, bodies and timings.
    let imported = har::import(&plain).unwrap();
    assert_eq!(imported.len(), flows.len());
    for original in &flows {
        let flow = &original.flow;
        let back = imported
            .iter()
            .find(|i| {
                i.flow.request.url == flow.request.url
                    && i.flow.request.method == flow.request.method
            })
            .unwrap_or_else(|| panic!("{} not imported", flow.request.url));
        let back_flow = &back.flow;
        assert_eq!(back_flow.request.headers, flow.request.headers);
        assert_eq!(
            back_flow.request.body.bytes, flow.request.body.bytes,
            "{}",
            flow.request.url
        );
        assert_eq!(back_flow.request.version, flow.request.version);
        assert_eq!(back_flow.client_addr, flow.client_addr);
        assert_eq!(
            back_flow.started_at,
            flow.started_at
                - Duration::from_nanos(
                    flow.started_at
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .subsec_nanos() as u64
                        % 1_000_000
                )
        );
        let close = |a: Duration, b: Duration| a.abs_diff(b) <= Duration::from_micros(1);
        assert!(close(back_flow.timings.wait, flow.timings.wait));
        assert!(close(back_flow.timings.send, flow.timings.send));
        assert_eq!(back_flow.timings.dns.is_some(), flow.timings.dns.is_some());
        match flow.response.as_ref().filter(|r| !r.from_proxy) {
            Some(response) => {
                let back_response = back_flow.response.as_ref().unwrap();
                assert_eq!(back_response.status, response.status);
                // Every field, Content-Encoding too: the decoded text is encoded again.
                assert_eq!(back_response.headers, response.headers);
                assert_eq!(
                    back_flow.decoded_response_body(),
                    flow.decoded_response_body()
                );
            }
            None => {
                assert!(back_flow.response.is_none());
                assert_eq!(
                    back_flow.error.as_ref().unwrap().kind,
                    FlowErrorKind::Connect
                );
            }
        }
        assert_eq!(
            back.kinvey.error, original.kinvey.error,
            "{}",
            flow.request.url
        );
        assert_eq!(back.kinvey.class, original.kinvey.class);
    }
    drop(proxy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redaction_removes_every_secret_unless_asked_not_to() {
    let (proxy, flows, _simulator, _origin) = varied_capture().await;
    let token = flows
        .iter()
        .find_map(|f| {
            let body = &f.flow.response.as_ref()?.body.bytes;
            let json: serde_json::Value = serde_json::from_slice(body).ok()?;
            json["_kmd"]["authtoken"].as_str().map(str::to_owned)
        })
        .expect("the login answered a session token");
    let dir = tempfile::tempdir().unwrap();
    let redacted = dir.path().join("r.har");
    let plain = dir.path().join("p.har");
    let capture = proxy.capture_path();
    let capture = capture.to_str().unwrap();
    assert!(
        kinspect(&["har", capture, "-o", redacted.to_str().unwrap()])
            .status
            .success()
    );
    assert!(
        kinspect(&["har", capture, "-o", plain.to_str().unwrap(), "--no-redact"])
            .status
            .success()
    );
    // Holding credentials, the unredacted export is the user's alone.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&plain), 0o600);
        let probe = dir.path().join("probe");
        std::fs::write(&probe, "").unwrap();
        assert_eq!(
            mode(&redacted),
            mode(&probe),
            "a redacted export is like any new file"
        );
    }
    let redacted = std::fs::read_to_string(&redacted).unwrap();
    let plain = std::fs::read_to_string(&plain).unwrap();
    let basic = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("{APP_KEY}:{APP_SECRET}"),
    );
    for secret in [
        &basic[..],
        APP_SECRET,
        "query-secret-1",
        "cookie-secret-2",
        "lovelace",
        "form%40secret-3",
        "form@secret-3",
        &token,
    ] {
        assert!(
            !redacted.contains(secret),
            "{secret} survived the redaction"
        );
    }
    // The app secret travels inside the Basic credentials.
    for secret in [
        &basic[..],
        "query-secret-1",
        "cookie-secret-2",
        "lovelace",
        "form%40secret-3",
        &token,
    ] {
        assert!(plain.contains(secret), "--no-redact keeps {secret}");
    }
    assert!(redacted.contains("[redacted]"));
    // The credentials' scheme stays: which one was used matters (and marks a Kinvey
    // exchange when the HAR is read again).
    assert!(
        redacted.contains(r#""value":"Basic [redacted]""#),
        "{redacted}"
    );
    // The form's fields are listed as postData.params, decoded, the password redacted.
    let har: serde_json::Value = serde_json::from_str(&redacted).unwrap();
    let form = har["log"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| {
            e["request"]["url"]
                .as_str()
                .unwrap()
                .ends_with("/oauth/token")
        })
        .expect("the form post was exported");
    assert_eq!(
        form["request"]["postData"]["params"],
        serde_json::json!([
            {"name": "grant_type", "value": "password"},
            {"name": "username", "value": "ada"},
            {"name": "password", "value": "[redacted]"},
        ])
    );
    assert_eq!(
        form["request"]["postData"]["text"],
        "grant_type=password&username=ada&password=[redacted]"
    );
}

#[test]
fn hars_from_chrome_firefox_and_mitmproxy_import() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    // Chrome writes IPv6 server addresses in brackets, which har-validator refuses:
    // that fixture is checked by the import alone.
    validate(&[
        &fixtures.join("firefox.har"),
        &fixtures.join("mitmproxy.har"),
    ]);

    let chrome = har::import(&fixtures.join("chrome.har")).unwrap();
    assert_eq!(chrome.len(), 2);
    let logo = &chrome[0].flow;
    assert_eq!(
        logo.request.url, "https://cdn.example/logo.png",
        "sorted by start"
    );
    assert_eq!(logo.request.version, HttpVersion::Http2, "h2");
    assert_eq!(
        &logo.response.as_ref().unwrap().body.bytes[..],
        b"\x89PNG\r\n\x1a\n",
        "base64 body"
    );
    assert_eq!(logo.timings.blocked, None, "-1 is absent");
    assert_eq!(logo.timings.connect, Some(Duration::from_millis(6)));
    let checkout = &chrome[1];
    assert!(
        checkout
            .flow
            .request
            .headers
            .iter()
            .all(|h| !h.name.starts_with(':')),
        "no pseudo-headers"
    );
    assert_eq!(
        checkout
            .flow
            .request
            .headers
            .get("x-kinvey-api-version")
            .as_deref(),
        Some("5")
    );
    assert_eq!(checkout.kinvey.error.as_deref(), Some("BLTimeoutError"));
    assert_eq!(
        checkout.kinvey.request_id.as_deref(),
        Some("c0ffee00c0ffee00c0ffee00c0ffee00")
    );
    assert_eq!(
        checkout.flow.server_ip,
        Some("2600:1f18::1".parse().unwrap())
    );
    assert_eq!(checkout.flow.response.as_ref().unwrap().body.wire_size, 100);

    let firefox = har::import(&fixtures.join("firefox.har")).unwrap();
    let order = &firefox[0];
    assert_eq!(order.flow.request.version, HttpVersion::Http2, "HTTP/2");
    assert_eq!(order.kinvey.error.as_deref(), Some("EntityNotFound"));
    let started = order
        .flow
        .started_at
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    assert_eq!(started.as_millis() % 1000, 431);
    assert!(firefox[1].flow.response.is_none(), "status 0: no response");
    assert!(firefox[1].flow.error.is_some());

    let mitmproxy = har::import(&fixtures.join("mitmproxy.har")).unwrap();
    let put = &mitmproxy[0];
    assert_eq!(put.kinvey.error.as_deref(), Some("JSONParseError"));
    assert_eq!(put.kinvey.anomalies[0].code, "non_json_content_type");
    assert_eq!(put.flow.timings.dns, None, "missing timings are absent");
    assert_eq!(put.flow.timings.wait, Duration::from_micros(36_500));

    // Every command reads HARs like captures.
    let report = kinspect(&[
        "report",
        fixtures.join("chrome.har").to_str().unwrap(),
        "--request-id",
        "c0ffee",
    ]);
    let text = String::from_utf8_lossy(&report.stdout);
    assert!(
        report.status.success(),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );
    assert!(
        text.contains("BLTimeoutError") && !text.contains("9f8e7d.session"),
        "{text}"
    );
    let listed = kinspect(&[
        "ls",
        fixtures.join("firefox.har").to_str().unwrap(),
        "--filter",
        "~k",
    ]);
    assert_eq!(String::from_utf8_lossy(&listed.stdout).lines().count(), 1);
}

#[test]
fn a_request_id_carried_by_two_flows_reports_both_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dup.har");
    let entry = |second: u32| {
        format!(
            r#"{{"startedDateTime":"2026-11-20T10:00:0{second}Z",
              "request":{{"method":"GET","url":"https://baas.kinvey.com/appdata/kid_x/books"}},
              "response":{{"status":500,"headers":[{{"name":"X-Kinvey-Request-ID","value":"dup0001"}}]}}}}"#
        )
    };
    std::fs::write(&path, har_of(&[&entry(0), &entry(1)])).unwrap();
    let report = kinspect(&["report", path.to_str().unwrap(), "--request-id", "dup0001"]);
    assert!(report.status.success(), "{report:?}");
    let text = String::from_utf8_lossy(&report.stdout);
    assert!(
        text.starts_with("2 flows carry request id dup0001"),
        "{text}"
    );
    assert_eq!(text.matches("Request ID:  dup0001").count(), 2, "{text}");

    // Pasted with blanks around it, it is found all the same.
    let pasted = kinspect(&[
        "report",
        path.to_str().unwrap(),
        "--request-id",
        " dup0001\n",
    ]);
    assert_eq!(pasted.stdout, report.stdout);

    let unknown = kinspect(&["report", path.to_str().unwrap(), "--request-id", "zzz"]);
    let said = String::from_utf8_lossy(&unknown.stderr);
    assert!(said.contains("`kinspect ls --json"), "{said}");
    assert!(said.contains("kinvey.request_id"), "{said}");
}

#[test]
fn har_urls_take_websocket_schemes_user_info_and_ports_that_are_none() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("urls.har");
    let entry = |method: &str, url: &str| {
        format!(
            r#"{{"startedDateTime":"2026-11-20T10:00:00Z","request":{{"method":"{method}","url":"{url}"}},"response":{{"status":101}}}}"#
        )
    };
    let entries = [
        entry("GET", "wss://live.example/socket"),
        entry("GET", "http://user:pw@a.example:8080/"),
        // As kinspect records requests it refused for their port: read back, port 0.
        entry("GET", "https://a.example:99999/"),
        entry("CONNECT", "127.0.0.1:-1"),
    ];
    std::fs::write(
        &path,
        har_of(&entries.iter().map(String::as_str).collect::<Vec<_>>()),
    )
    .unwrap();
    let flows = har::import(&path).unwrap();
    let ports: Vec<(&str, u16)> = flows
        .iter()
        .map(|f| (f.flow.scheme.as_str(), f.flow.port))
        .collect();
    assert_eq!(
        ports,
        [("https", 443), ("http", 8080), ("https", 0), ("http", 0)]
    );
}

/// A plain GET to https://a/ answered 200, as a HAR entry.
const A_GET: &str = r#"{"startedDateTime":"2026-11-20T10:00:00Z","request":{"method":"GET","url":"https://a/"},"response":{"status":200}}"#;

/// A HAR 1.2 document of `entries` (JSON objects).
/// `har_text` written as `in.har` in `dir` and exported redacted with `kinspect har`: the
/// exported HAR's text.
fn exported_redacted(dir: &Path, har_text: &str) -> String {
    let input = dir.join("in.har");
    std::fs::write(&input, har_text).unwrap();
    let output = dir.join("out.har");
    let out = kinspect(&[
        "har",
        input.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    std::fs::read_to_string(&output).unwrap()
}

fn har_of(entries: &[&str]) -> String {
    format!(
        r#"{{"log":{{"version":"1.2","entries":[{}]}}}}"#,
        entries.join(",")
    )
}

#[test]
fn a_broken_har_is_an_error_naming_the_entry_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.har");
    let url_not_a_string = r#"{"startedDateTime":"2026-11-20T10:00:01Z","request":{"method":"GET","url":42},"response":{"status":200}}"#;
    std::fs::write(&broken, har_of(&[A_GET, url_not_a_string])).unwrap();
    let err = har::import(&broken).unwrap_err().to_string();
    assert!(
        err.contains("broken.har")
            && err.contains("log.entries[1].request.url")
            && err.contains("expected a string"),
        "{err}"
    );
    // The commands read what they can and say what they left out.
    let output = kinspect(&["ls", broken.to_str().unwrap()]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout).lines().count(), 1);
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("left out: ") && said.contains("log.entries[1].request.url"),
        "{said}"
    );
    // With no entry readable, the file is an error.
    std::fs::write(&broken, har_of(&[url_not_a_string])).unwrap();
    let output = kinspect(&["ls", broken.to_str().unwrap()]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("log.entries[0].request.url"));
    // An entry JSON cannot hold (a lone UTF-16 surrogate, which serde_json will not
    // read into a string) is left out alone.
    let surrogate = r#"{"startedDateTime":"2026-11-20T10:00:02Z","request":{"method":"GET","url":"https://a/\ud800x"},"response":{"status":200}}"#;
    std::fs::write(&broken, har_of(&[A_GET, surrogate, A_GET])).unwrap();
    let output = kinspect(&["ls", broken.to_str().unwrap()]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout).lines().count(), 2);
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("log.entries[1]: not valid JSON"), "{said}");
    // A header's null value is no value; a number is as written.
    let odd_values = r#"{"startedDateTime":"2026-11-20T10:00:03Z","request":{"method":"GET","url":"https://a/","headers":[{"name":"x-null","value":null},{"name":"x-number","value":5}]},"response":{"status":200}}"#;
    let flows = har::import_bytes(har_of(&[odd_values]).as_bytes(), &broken).unwrap();
    let headers = &flows[0].flow.request.headers;
    assert_eq!(headers.get("x-null").as_deref(), Some(""));
    assert_eq!(headers.get("x-number").as_deref(), Some("5"));
    // Entries that are no array, a log that is no object: said as what they are.
    std::fs::write(&broken, r#"{"log": {"entries": 7}}"#).unwrap();
    let said = har::import(&broken).unwrap_err().to_string();
    assert!(
        said.contains("log.entries: expected an array, found a number"),
        "{said}"
    );
    std::fs::write(&broken, r#"{"log": null}"#).unwrap();
    let said = har::import(&broken).unwrap_err().to_string();
    assert!(
        said.contains("log: expected an object, found null"),
        "{said}"
    );
    std::fs::write(&broken, "[1, 2]").unwrap();
    let said = har::import(&broken).unwrap_err().to_string();
    assert!(
        said.contains("expected an object, found an array"),
        "{said}"
    );
    // JSON that is no HAR says so.
    std::fs::write(&broken, r#"{"entries": []}"#).unwrap();
    let said = har::import(&broken).unwrap_err().to_string();
    assert!(said.contains("this JSON is not a HAR"), "{said}");

    std::fs::write(&broken, "{ not json").unwrap();
    assert!(har::import(&broken)
        .unwrap_err()
        .to_string()
        .contains("not valid JSON"));

    let reader_ok = CaptureReader::open(&broken).is_err();
    assert!(reader_ok, "a HAR is not a capture");
    let _ = Detail::Full;
}

/// Writes a capture at `path` holding one GET of https://kvy.example/.
fn one_flow_capture(path: &Path) {
    use kinspect::capture::CaptureWriter;
    use kinspect::flow::Flow;
    use kinspect::kinvey::KinveySummary;

    let client = "127.0.0.1:40000".parse().unwrap();
    let stored = StoredFlow {
        flow: Flow::exchange(1, client, "GET", "https://kvy.example/", Some(200)),
        kinvey: KinveySummary::default(),
    };
    let mut writer = CaptureWriter::open(path).unwrap();
    writer.write_batch([&stored]).unwrap();
}

/// An export broken off by Ctrl-C leaves neither its destination nor the hidden file it
/// was writing beside it.
#[test]
#[cfg(unix)]
fn an_interrupted_export_leaves_no_partial_file() {
    use kinspect::capture::CaptureWriter;
    use kinspect::flow::{CapturedBody, Flow};
    use kinspect::kinvey::KinveySummary;
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("big.db");
    let client = "127.0.0.1:40000".parse().unwrap();
    let mut writer = CaptureWriter::open(&capture).unwrap();
    for batch in 0..10u64 {
        let flows: Vec<StoredFlow> = (1..=50)
            .map(|i| {
                let id = batch * 50 + i;
                let url = format!("https://kvy.example/{id}");
                let mut flow = Flow::exchange(id, client, "GET", &url, Some(200));
                let body = (0..200_000u32)
                    .map(|n| (n * 7 + id as u32) as u8)
                    .collect::<Vec<u8>>();
                flow.response.as_mut().unwrap().body = CapturedBody::whole(body);
                StoredFlow {
                    flow,
                    kinvey: KinveySummary::default(),
                }
            })
            .collect();
        writer.write_batch(&flows).unwrap();
    }
    drop(writer);
    let out = dir.path().join("out.har");
    let mut export = Command::new(env!("CARGO_BIN_EXE_kinspect"))
        .arg("har")
        .arg(&capture)
        .arg("-o")
        .arg(&out)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Partial files, and whether one has begun to be written (its removal on a signal
    // is set up between its creation and its first byte).
    let partial = || {
        let files: Vec<u64> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(".kinspect-export-")
            })
            .map(|e| e.metadata().map_or(0, |m| m.len()))
            .collect();
        (files.len(), files.iter().any(|&len| len > 0))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !partial().1 {
        assert!(std::time::Instant::now() < deadline, "the export began");
        assert!(
            export.try_wait().unwrap().is_none(),
            "the export ended too soon to interrupt"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(export.id() as i32, libc::SIGINT) };
    let status = export.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{status:?}");
    assert_eq!(partial().0, 0, "the partial file is gone");
    assert!(!out.exists());
}

#[test]
fn exporting_over_the_capture_itself_is_refused_and_the_capture_kept() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("capture.db");
    one_flow_capture(&capture);

    let capture_arg = capture.to_str().unwrap();
    let same = dir.path().join(".").join("capture.db");
    for output in [capture_arg, same.to_str().unwrap()] {
        let refused = kinspect(&["har", capture_arg, "-o", output]);
        assert!(!refused.status.success());
        let said = String::from_utf8_lossy(&refused.stderr);
        assert!(said.contains("is the capture being exported"), "{said}");
        assert_eq!(CaptureReader::open(&capture).unwrap().count().unwrap(), 1);
    }

    // A real export replaces an existing file whole and leaves nothing else beside it.
    let har_path = dir.path().join("out.har");
    std::fs::write(&har_path, "old").unwrap();
    let exported = kinspect(&["har", capture_arg, "-o", har_path.to_str().unwrap()]);
    assert!(exported.status.success(), "{exported:?}");
    assert_eq!(har::import(&har_path).unwrap().len(), 1);
    // With the permissions any new file gets there, not a temporary file's 0600.
    let probe = dir.path().join("probe");
    std::fs::write(&probe, "").unwrap();
    assert_eq!(
        std::fs::metadata(&har_path).unwrap().permissions(),
        std::fs::metadata(&probe).unwrap().permissions()
    );
    std::fs::remove_file(&probe).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("capture.db"))
        .collect();
    names.sort();
    assert_eq!(names, ["out.har"]);
}

#[test]
fn a_har_goes_to_standard_output_through_links_and_into_pipes_never_replacing_them() {
    let dir = tempfile::tempdir().unwrap();
    let har_in = dir.path().join("in.har");
    std::fs::write(&har_in, har_of(&[A_GET])).unwrap();
    let from = har_in.to_str().unwrap();

    let stdout = kinspect(&["har", from, "-o", "-"]);
    assert!(stdout.status.success(), "{stdout:?}");
    let document: serde_json::Value = serde_json::from_slice(&stdout.stdout).unwrap();
    assert_eq!(document["log"]["entries"].as_array().unwrap().len(), 1);
    assert!(String::from_utf8_lossy(&stdout.stderr).contains("wrote 1 entry to standard output"));
    assert!(!dir.path().join("-").exists());

    // A symbolic link stays one: its target gets the HAR.
    #[cfg(unix)]
    {
        let target = dir.path().join("target.har");
        let link = dir.path().join("link.har");
        std::fs::write(&target, "old").unwrap();
        std::os::unix::fs::symlink("target.har", &link).unwrap();
        let linked = kinspect(&["har", from, "-o", link.to_str().unwrap()]);
        assert!(linked.status.success(), "{linked:?}");
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(har::import(&target).unwrap().len(), 1);

        // A named pipe is written into, as a shell's `>` would, not replaced by a file.
        let fifo = dir.path().join("pipe.har");
        assert!(Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read(fifo).unwrap())
        };
        let piped = kinspect(&["har", from, "-o", fifo.to_str().unwrap()]);
        assert!(piped.status.success(), "{piped:?}");
        let through: serde_json::Value = serde_json::from_slice(&reader.join().unwrap()).unwrap();
        assert_eq!(through["log"]["entries"].as_array().unwrap().len(), 1);
        use std::os::unix::fs::FileTypeExt;
        assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());

        // /dev/stdout when standard output is a pipe: a link to no path (pipe:[N]).
        let piped = Command::new(env!("CARGO_BIN_EXE_kinspect"))
            .args(["har", from, "-o", "/dev/stdout"])
            .stdout(std::process::Stdio::piped())
            .output()
            .unwrap();
        assert!(piped.status.success(), "{piped:?}");
        let through: serde_json::Value = serde_json::from_slice(&piped.stdout).unwrap();
        assert_eq!(through["log"]["entries"].as_array().unwrap().len(), 1);
    }

    // A directory, or a directory that is missing: said plainly, without temporary names.
    let into_dir = kinspect(&["har", from, "-o", dir.path().to_str().unwrap()]);
    assert!(!into_dir.status.success());
    let said = String::from_utf8_lossy(&into_dir.stderr);
    assert!(said.contains("is a directory: name a file in it"), "{said}");
    let missing = dir.path().join("no-such-dir").join("x.har");
    let nowhere = kinspect(&["har", from, "-o", missing.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&nowhere.stderr);
    assert!(!nowhere.status.success());
    assert!(
        said.contains("no-such-dir does not exist") && !said.contains(".kinspect-export"),
        "{said}"
    );
}

#[test]
fn a_capture_named_har_is_still_read_as_a_capture() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("renamed.har");
    one_flow_capture(&capture);
    let listed = kinspect(&["ls", capture.to_str().unwrap()]);
    assert!(listed.status.success(), "{listed:?}");
    assert!(String::from_utf8_lossy(&listed.stdout).contains("https://kvy.example/"));
}

#[test]
fn a_har_with_a_byte_order_mark_reads_and_a_broken_har_file_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let entry = har_of(&[A_GET]);
    // As some Windows tools write it, under a name without .har.
    let bom = dir.path().join("from-windows.json");
    std::fs::write(&bom, [har::UTF8_BOM, entry.as_bytes()].concat()).unwrap();
    let listed = kinspect(&["ls", bom.to_str().unwrap()]);
    assert!(listed.status.success(), "{listed:?}");
    let line = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert_eq!(line.lines().count(), 1);
    // A HAR does not record the client: shown as unknown, not as 0.0.0.0:0.
    assert!(line.contains("Z - GET https://a/ 200"), "{line}");
    // In UTF-16 with its byte order mark, as PowerShell's `>` writes it.
    for (name, bom, unit) in [
        (
            "le.json",
            [0xFF, 0xFE],
            u16::to_le_bytes as fn(u16) -> [u8; 2],
        ),
        ("be.json", [0xFE, 0xFF], u16::to_be_bytes),
    ] {
        let path = dir.path().join(name);
        let mut bytes = bom.to_vec();
        bytes.extend(entry.encode_utf16().flat_map(unit));
        std::fs::write(&path, bytes).unwrap();
        let listed = kinspect(&["ls", path.to_str().unwrap()]);
        assert!(listed.status.success(), "{name}: {listed:?}");
        assert_eq!(listed.stdout, line.as_bytes(), "{name}");
    }

    // Named .har, so read as one: the error is about the JSON, not SQLite.
    for (content, expected) in [
        ("not json", "not valid JSON"),
        (
            "[1, 2]",
            "the top level: expected an object, found an array",
        ),
        ("{}", "no \"log\" object: this JSON is not a HAR"),
        (
            r#"{"log":{"entries":[{"startedDateTime":"2026-11-20T10:00:00Z","request":{"method":"GET","url":"https://a/"}}]}}"#,
            "log.entries[0].response: missing",
        ),
        (
            r#"{"log":{"entries":[{"startedDateTime":"2026-11-20T10:00:00Z","response":{"status":200}}]}}"#,
            "log.entries[0].request: missing",
        ),
    ] {
        let broken = dir.path().join("broken.har");
        std::fs::write(&broken, content).unwrap();
        let output = kinspect(&["ls", broken.to_str().unwrap()]);
        assert!(!output.status.success());
        let said = String::from_utf8_lossy(&output.stderr);
        assert!(
            said.contains("broken.har") && said.contains(expected) && !said.contains("SQLite"),
            "{content}: {said}"
        );
    }
}

#[test]
fn firefox_form_params_and_chrome_response_errors_import() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("browsers.har");
    std::fs::write(
        &path,
        har_of(&[
            r#"{"startedDateTime":"2026-11-20T10:00:00Z",
             "request":{"method":"POST","url":"https://auth.example/oauth/token",
                        "headers":[{"name":"Content-Type","value":"application/x-www-form-urlencoded"}],
                        "postData":{"mimeType":"application/x-www-form-urlencoded",
                                    "params":[{"name":"username","value":"ada"},{"name":"password","value":"p@ss word"}]}},
             "response":{"status":200,"content":{"size":0}}}"#,
            r#"{"startedDateTime":"2026-11-20T10:00:01Z",
             "request":{"method":"GET","url":"https://down.example/"},
             "response":{"status":0,"_error":"net::ERR_CONNECTION_REFUSED","content":{"size":0}}}"#,
            r#"{"startedDateTime":"2026-11-20T11:00:02.500+0100",
             "request":{"method":"GET","url":"https://basic-offset.example/"},
             "response":{"status":204}}"#,
            // Fields as params while the request says JSON: still a form, still redacted.
            r#"{"startedDateTime":"2026-11-20T10:00:03Z",
             "request":{"method":"POST","url":"https://auth.example/mislabelled",
                        "headers":[{"name":"Content-Type","value":"application/json"}],
                        "postData":{"mimeType":"application/json",
                                    "params":[{"name":"client_id","value":"app"},{"name":"client_secret","value":"s3cr3t-value"}]}},
             "response":{"status":200}}"#,
        ]),
    )
    .unwrap();
    let flows = har::import(&path).unwrap();
    assert_eq!(
        &flows[0].flow.request.body.bytes[..],
        b"username=ada&password=p%40ss%20word"
    );
    assert_eq!(
        &flows[3].flow.request.body.bytes[..],
        b"client_id=app&client_secret=s3cr3t-value"
    );
    assert_eq!(
        flows[1].flow.error.as_ref().unwrap().message,
        "net::ERR_CONNECTION_REFUSED"
    );
    // ISO 8601's basic offset form, as some tools write it.
    let at = flows[2]
        .flow
        .started_at
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    assert_eq!(
        at.as_millis(),
        1_795_168_802_500,
        "2026-11-20T10:00:02.500Z"
    );
    // The re-export keeps the form (its password redacted) and the reason.
    let out = dir.path().join("again.har");
    let exported = kinspect(&["har", path.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(exported.status.success(), "{exported:?}");
    let again = std::fs::read_to_string(&out).unwrap();
    assert!(
        again.contains("username=ada&password=[redacted]"),
        "{again}"
    );
    assert!(again.contains("net::ERR_CONNECTION_REFUSED"), "{again}");
    assert!(!again.contains("s3cr3t-value"), "{again}");
    assert!(
        again.contains("client_id=app&client_secret=[redacted]"),
        "{again}"
    );
}

#[test]
fn firefox_multipart_params_become_a_multipart_body() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("upload.har");
    std::fs::write(
        &path,
        har_of(&[r#"{"startedDateTime":"2026-11-20T10:00:00Z",
             "request":{"method":"POST","url":"https://up.example/files",
                        "postData":{"mimeType":"multipart/form-data; boundary=---------------------------41184676334",
                                    "params":[{"name":"note","value":"hi there"},
                                              {"name":"file","fileName":"a \"b\".txt","contentType":"text/plain","value":"hi"},
                                              {"name":"password","value":"multipart-pw-77"}]}},
             "response":{"status":200}}"#]),
    )
    .unwrap();
    let flows = har::import(&path).unwrap();
    let body = String::from_utf8(flows[0].flow.request.body.bytes.to_vec()).unwrap();
    let b = "---------------------------41184676334";
    assert_eq!(
        body,
        format!(
            "--{b}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi there\r\n\
             --{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a %22b%22.txt\"\r\n\
             Content-Type: text/plain\r\n\r\nhi\r\n\
             --{b}\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\nmultipart-pw-77\r\n\
             --{b}--\r\n"
        )
    );
    // Exported again: a multipart body, its password part redacted.
    let out = dir.path().join("again.har");
    let exported = kinspect(&["har", path.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(exported.status.success(), "{exported:?}");
    let again = std::fs::read_to_string(&out).unwrap();
    assert!(!again.contains("multipart-pw-77"), "{again}");
    assert!(again.contains("filename=\\\"a %22b%22.txt"), "{again}");
}

#[test]
fn bodies_cut_at_max_body_export_their_whole_size_and_decoded_start() {
    use kinspect::flow::{CapturedBody, Flow};
    use std::io::Write;
    let cut = |bytes: &[u8], keep: usize| CapturedBody {
        bytes: bytes[..keep].to_vec().into(),
        wire_size: bytes.len() as u64,
        truncated: true,
        incomplete: false,
    };
    let entry = |headers: &[(&str, &str)], body: CapturedBody| {
        let client = "127.0.0.1:40000".parse().unwrap();
        let mut flow = Flow::exchange(1, client, "GET", "http://localhost/a", Some(200));
        let response = flow.response.as_mut().unwrap();
        response.headers = headers.iter().copied().collect();
        response.body = body;
        let stored = StoredFlow {
            flow,
            kinvey: Default::default(),
        };
        har::har_entry(&stored, Default::default(), &mut 0)["response"]["content"].clone()
    };
    let json = [("content-type", "application/json")];
    let text: String = (0..2000).map(|i| format!("{{\"n\":{i}}},")).collect();

    let plain = entry(&json, cut(text.as_bytes(), 4096));
    assert_eq!(
        plain["size"],
        text.len(),
        "the whole size, as it was not encoded"
    );
    assert_eq!(plain["text"].as_str().unwrap(), &text[..4096]);
    assert_eq!(plain["_truncated"], true);
    assert!(plain.get("compression").is_none());

    // None of it kept (`--max-body 0`): still its size, an empty text marked cut; and a
    // request body so cut still has its postData.
    let none_kept = entry(&json, cut(text.as_bytes(), 0));
    assert_eq!(none_kept["size"], text.len());
    assert_eq!(none_kept["text"], "");
    assert_eq!(none_kept["_truncated"], true);
    let client = "127.0.0.1:40000".parse().unwrap();
    let mut upload = Flow::exchange(2, client, "POST", "http://localhost/a", Some(200));
    upload.request.headers = json.iter().copied().collect();
    upload.request.body = cut(text.as_bytes(), 0);
    let upload = StoredFlow {
        flow: upload,
        kinvey: Default::default(),
    };
    let request = har::har_entry(&upload, Default::default(), &mut 0)["request"].clone();
    assert_eq!(request["bodySize"], text.len());
    assert_eq!(request["postData"]["text"], "");
    assert_eq!(request["postData"]["_truncated"], true);

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(text.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    let gzipped = entry(
        &[json[0], ("content-encoding", "gzip")],
        cut(&gz, gz.len() / 2),
    );
    let start = gzipped["text"].as_str().expect("decoded text, not base64");
    assert!(gzipped.get("encoding").is_none());
    assert!(!start.is_empty() && text.starts_with(start), "{start}");

    // Encoding made this one larger: no negative bytes saved.
    let mut tiny = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    tiny.write_all(b"{}").unwrap();
    let tiny = entry(
        &[json[0], ("content-encoding", "gzip")],
        CapturedBody::whole(tiny.finish().unwrap()),
    );
    assert_eq!(tiny["text"], "{}");
    assert!(tiny.get("compression").is_none(), "{tiny}");
}

#[test]
fn urls_in_headers_and_fragments_and_api_key_headers_are_redacted() {
    use kinspect::flow::Flow;
    let client = "127.0.0.1:40000".parse().unwrap();
    let mut flow = Flow::exchange(1, client, "GET", "https://id.example/auth", Some(302));
    flow.request.headers = [
        (
            "Referer",
            "https://app.example/page?access_token=REFERERTOKEN1",
        ),
        ("X-Api-Key", "APIKEYVALUE1"),
        ("X-Auth-Token", "AUTHTOKENVALUE1"),
    ]
    .into_iter()
    .collect();
    flow.response.as_mut().unwrap().headers = [(
        "Location",
        "https://app.example/cb?code=OAUTHCODE1&state=s#access_token=FRAGMENTTOKEN1",
    )]
    .into_iter()
    .collect();
    let stored = StoredFlow {
        flow,
        kinvey: Default::default(),
    };
    let mut redactions = 0;
    let entry = har::har_entry(&stored, Default::default(), &mut redactions).to_string();
    for secret in [
        "REFERERTOKEN1",
        "APIKEYVALUE1",
        "AUTHTOKENVALUE1",
        "OAUTHCODE1",
        "FRAGMENTTOKEN1",
    ] {
        assert!(!entry.contains(secret), "{secret} leaked: {entry}");
    }
    assert!(entry.contains("state=s"), "{entry}");
    assert!(redactions >= 5, "{redactions}");
    let unredacted = har::har_entry(&stored, har::ExportOptions { redact: false }, &mut 0);
    assert!(unredacted.to_string().contains("FRAGMENTTOKEN1"));
}

#[test]
fn urls_with_unescaped_spaces_and_quoted_statuses_import() {
    let entry = |url: &str, status: &str| {
        format!(
            r#"{{"startedDateTime":"2026-11-20T10:00:01Z","request":{{"method":"GET","url":{}}},"response":{{"status":{status}}}}}"#,
            serde_json::to_string(url).unwrap()
        )
    };
    let har_text = har_of(&[
        &entry(
            r#"https://baas.kinvey.com/appdata/kid_x/books?query={"title":"a b"}"#,
            "200",
        ),
        &entry("https://baas.kinvey.com/appdata/kid_x/books", "\"404\""),
    ]);
    let flows = har::import_bytes(har_text.as_bytes(), Path::new("x.har")).unwrap();
    assert_eq!(flows.len(), 2);
    assert_eq!(
        flows[0].flow.request.url,
        "https://baas.kinvey.com/appdata/kid_x/books?query=%7B%22title%22:%22a%20b%22%7D"
    );
    assert_eq!(flows[1].flow.status(), Some(404));
}

#[test]
fn a_secret_of_one_flow_is_scrubbed_from_the_flows_after_it() {
    use kinspect::flow::{CapturedBody, Flow};
    let client = "127.0.0.1:40000".parse().unwrap();
    let token = "f2a9c1d0-session-token-77";
    let mut sends = Flow::exchange(1, client, "GET", "https://baas.kinvey.com/a", Some(200));
    sends.request.headers = [("Authorization", format!("Kinvey {token}").as_str())]
        .into_iter()
        .collect();
    let url = format!("https://baas.kinvey.com/blob/kid_x/{token}?t={token}");
    let mut echoes = Flow::exchange(2, client, "GET", &url, Some(401));
    let response = echoes.response.as_mut().unwrap();
    response.headers = [
        ("content-type", "application/json"),
        ("location", url.as_str()),
    ]
    .into_iter()
    .collect();
    response.body = CapturedBody::whole(format!(
        r#"{{"error":"InvalidCredentials","description":"d","debug":"token {token} expired"}}"#
    ));
    let flows = [sends, echoes].map(|flow| StoredFlow {
        kinvey: kinspect::kinvey::KinveySummary::new(&kinspect::kinvey::analyze(&flow), &[]),
        flow,
    });
    let mut out = Vec::new();
    let stats = har::export(&mut out, "t", flows, Default::default()).unwrap();
    let text = String::from_utf8(out).unwrap();
    // Everywhere: body, URL, query string, the Location header and redirectURL.
    assert!(!text.contains(token), "{text}");
    assert!(text.contains("token [redacted] expired"), "{text}");
    let har: serde_json::Value = serde_json::from_str(&text).unwrap();
    let second = &har["log"]["entries"][1];
    let redacted_url = "https://baas.kinvey.com/blob/kid_x/[redacted]?t=[redacted]";
    assert_eq!(second["request"]["url"], redacted_url);
    assert_eq!(second["response"]["redirectURL"], redacted_url);
    assert_eq!(second["request"]["queryString"][0]["value"], "[redacted]");
    assert!(stats.redactions >= 2);
}

#[test]
fn secrets_in_json_bodies_are_scrubbed_where_else_they_turn_up() {
    use kinspect::flow::{CapturedBody, Flow};
    let client = "127.0.0.1:40000".parse().unwrap();
    let (password, token) = ("lovelace-pw-1", "tok-abcdef-123456");
    let mut login = Flow::exchange(
        1,
        client,
        "POST",
        "https://baas.kinvey.com/login",
        Some(200),
    );
    login.request.headers = [("content-type", "application/json")].into_iter().collect();
    login.request.body =
        CapturedBody::whole(format!(r#"{{"username":"ada","password":"{password}"}}"#));
    let response = login.response.as_mut().unwrap();
    response.headers = [("content-type", "text/plain")].into_iter().collect();
    // Not JSON where it is echoed: only the value, learnt from the request, finds it.
    response.body = CapturedBody::whole(format!("welcome; your password {password} is weak"));
    let mut json_login = login.clone();
    json_login.id = 2;
    let response = json_login.response.as_mut().unwrap();
    response.headers = [("content-type", "application/json")].into_iter().collect();
    response.body = CapturedBody::whole(format!(r#"{{"_kmd":{{"authtoken":"{token}"}}}}"#));
    let later = Flow::exchange(
        3,
        client,
        "GET",
        &format!("https://baas.kinvey.com/blob/kid_x/{token}"),
        Some(200),
    );
    let flows = [login, json_login, later].map(|flow| StoredFlow {
        flow,
        kinvey: Default::default(),
    });
    let mut out = Vec::new();
    har::export(&mut out, "t", flows, Default::default()).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(!text.contains(password), "{text}");
    assert!(!text.contains(token), "{text}");
    assert!(text.contains("blob/kid_x/[redacted]"), "{text}");
}

#[test]
fn an_encoded_request_body_imports_encoded_again() {
    let entry = r#"{"startedDateTime":"2026-11-20T10:00:01Z",
        "request":{"method":"POST","url":"https://baas.kinvey.com/appdata/kid_x/books",
            "headers":[{"name":"Content-Encoding","value":"gzip"},
                       {"name":"Content-Type","value":"application/json"}],
            "postData":{"mimeType":"application/json","text":"{\"title\":\"Dune\"}"}},
        "response":{"status":201}}"#;
    let flows = har::import_bytes(har_of(&[entry]).as_bytes(), Path::new("x.har")).unwrap();
    let flow = &flows[0].flow;
    assert_eq!(
        flow.request.headers.get("content-encoding").as_deref(),
        Some("gzip")
    );
    assert_eq!(
        flow.decoded_request_body().as_deref(),
        Some(&b"{\"title\":\"Dune\"}"[..])
    );
}

#[test]
fn websocket_messages_export_as_chrome_does_redacted_and_import_back() {
    use kinspect::flow::Flow;
    use kinspect::websocket::{Message, MessageLog, BINARY, CLOSE, PING, TEXT};
    let client = "127.0.0.1:40000".parse().unwrap();
    let mut flow = Flow::exchange(1, client, "GET", "wss://live.kinvey.test/", Some(101));
    let at = std::time::UNIX_EPOCH + Duration::from_millis(1_764_000_000_250);
    let message = |from_client, opcode, payload: &[u8], size| Message {
        from_client,
        at,
        opcode,
        payload: payload.to_vec().into(),
        size,
    };
    flow.websocket = Some(Box::new(MessageLog {
        messages: vec![
            message(
                true,
                TEXT,
                br#"{"authtoken":"abcdef0123456789","op":"hello"}"#,
                46,
            ),
            message(false, PING, b"", 0),
            message(false, TEXT, b"{\"cut", 9000),
            message(false, BINARY, &[0, 0xff], 2),
            message(true, CLOSE, &[0x03, 0xe8], 2),
            // Cut inside a character, and not UTF-8 at all.
            message(false, TEXT, "aé".as_bytes().split_at(2).0, 1201),
            message(false, TEXT, b"caf\xe9 \xff", 6),
        ],
        dropped: 7,
        unreadable: Some("the server's frames: opcode 0x3 is reserved".into()),
    }));
    let stored = StoredFlow {
        flow,
        kinvey: Default::default(),
    };
    let entry = har::har_entry(&stored, Default::default(), &mut 0);
    let messages = entry["_webSocketMessages"].as_array().unwrap();
    assert_eq!(messages.len(), 7, "pings kept");
    assert_eq!(messages[0]["type"], "send");
    assert_eq!(messages[0]["opcode"], 1);
    assert_eq!(messages[0]["time"], 1_764_000_000.25);
    let data = messages[0]["data"].as_str().unwrap();
    assert!(
        !data.contains("abcdef0123456789") && data.contains("hello"),
        "{data}"
    );
    assert_eq!(
        (messages[2]["type"].as_str(), messages[2]["_size"].as_u64()),
        (Some("receive"), Some(9000))
    );
    assert_eq!(messages[3]["data"], "AP8=", "binary in base64");
    assert_eq!(messages[5]["data"], "a", "text cut inside a character");
    assert_eq!(
        (
            messages[6]["opcode"].as_u64(),
            messages[6]["_encoding"].as_str()
        ),
        (Some(1), Some("base64"))
    );
    assert_eq!(entry["_webSocketMessagesDropped"], 7);

    // Read back (unredacted), as kinspect reads Chrome's: the same log.
    let raw = har::har_entry(&stored, har::ExportOptions { redact: false }, &mut 0);
    let document = serde_json::json!({"log": {"version": "1.2", "entries": [raw]}});
    let imported = har::import_bytes(document.to_string().as_bytes(), Path::new("ws.har")).unwrap();
    let log = imported[0].flow.websocket.as_ref().unwrap();
    let mut original = stored.flow.websocket.as_deref().unwrap().clone();
    // The character cut in half is left out of the text.
    original.messages[5].payload = "a".into();
    assert_eq!(*log.as_ref(), original);

    // A time no clock can hold (or none) leaves the message out instead of failing.
    let mut odd = raw.clone();
    odd["_webSocketMessages"][0]["time"] = serde_json::json!(1e19);
    odd["_webSocketMessages"][1]["time"] = serde_json::json!(-5);
    let document = serde_json::json!({"log": {"version": "1.2", "entries": [odd]}});
    let imported = har::import_bytes(document.to_string().as_bytes(), Path::new("ws.har")).unwrap();
    let log = imported[0].flow.websocket.as_ref().unwrap();
    assert_eq!(log.messages.len(), original.messages.len() - 2);
}

#[test]
fn an_entry_timed_only_as_a_whole_keeps_its_time() {
    let entry = |time: &str, timings: &str| {
        format!(
            r#"{{"startedDateTime":"2026-11-20T10:00:01Z","time":{time},"timings":{timings},"request":{{"method":"GET","url":"https://baas.kinvey.com/a"}},"response":{{"status":200}}}}"#
        )
    };
    let har_text = har_of(&[
        // Only the whole is known: it is the flow's duration.
        &entry("12.5", r#"{"send":-1,"wait":-1,"receive":-1}"#),
        // With its connection timed: the rest of the whole is waiting.
        &entry("30", r#"{"connect":10,"send":-1,"wait":-1,"receive":-1}"#),
        // Phases timed: they are the duration, whatever `time` says.
        &entry("99", r#"{"send":1,"wait":2,"receive":3}"#),
    ]);
    let flows = har::import_bytes(har_text.as_bytes(), Path::new("x.har")).unwrap();
    let totals: Vec<f64> = flows
        .iter()
        .map(|f| f.flow.timings.total().as_secs_f64() * 1000.0)
        .collect();
    assert_eq!(totals, [12.5, 30.0, 6.0]);
    assert_eq!(flows[1].flow.timings.wait.as_millis(), 20);
}

#[test]
fn a_redacted_har_exported_again_is_unchanged_and_nothing_more_is_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let body = r#"{"_id":"u1","_kmd":{"authtoken":"secret-token-123"},"username":"ada"}"#;
    let entry = format!(
        r#"{{"startedDateTime":"2026-11-20T10:00:01Z","time":5,
          "request":{{"method":"POST","url":"https://baas.kinvey.com/user/kid_x/login",
            "headers":[{{"name":"Authorization","value":"Basic a2lkX3g6c2VjcmV0"}}],
            "postData":{{"mimeType":"application/json","text":"{{\"username\":\"ada\",\"password\":\"hunter22\"}}"}}}},
          "response":{{"status":200,"bodySize":{},
            "headers":[{{"name":"Content-Type","value":"application/json"}},
                       {{"name":"Set-Cookie","value":"sid=abc"}}],
            "content":{{"size":{},"mimeType":"application/json","text":{}}}}}}}"#,
        body.len(),
        body.len(),
        serde_json::to_string(body).unwrap()
    );
    let original = dir.path().join("original.har");
    std::fs::write(&original, har_of(&[&entry])).unwrap();
    let once = dir.path().join("once.har");
    let twice = dir.path().join("twice.har");
    let export = |from: &Path, to: &Path| {
        let out = kinspect(&["har", from.to_str().unwrap(), "-o", to.to_str().unwrap()]);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let said = export(&original, &once);
    assert!(!said.contains("(0 values redacted"), "{said}");
    let said = export(&once, &twice);
    assert!(said.contains("(0 values redacted"), "{said}");
    let read = |path: &Path| -> serde_json::Value {
        let har: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        har["log"]["entries"][0].clone()
    };
    let (once, twice) = (read(&once), read(&twice));
    let content = &once["response"]["content"];
    assert_eq!(
        content["size"],
        body.len(),
        "the size that came, not the redacted text's"
    );
    assert_eq!(content["compression"], 0);

    // An entry served from a cache: a body, none on the wire.
    let cached = r#"{"startedDateTime":"2026-11-20T10:00:01Z","request":{"method":"GET","url":"https://baas.kinvey.com/a"},
          "response":{"status":200,"bodySize":0,"content":{"size":5,"mimeType":"text/plain","text":"hello"}}}"#;
    std::fs::write(&original, har_of(&[cached])).unwrap();
    let exported = dir.path().join("cached.har");
    export(&original, &exported);
    let content = read(&exported)["response"]["content"].clone();
    assert_eq!(
        (&content["size"], &content["compression"]),
        (&5.into(), &0.into())
    );
    for part in ["request", "response"] {
        for field in ["headers", "cookies", "postData", "content", "bodySize"] {
            assert_eq!(once[part][field], twice[part][field], "{part}.{field}");
        }
    }

    // Phases finer than a microsecond: `time` is the sum of the phases as written, and
    // stays so when exported again.
    let timed = r#"{"startedDateTime":"2026-11-20T10:00:01Z","time":0.637,
          "request":{"method":"GET","url":"https://baas.kinvey.com/a"},
          "response":{"status":204,"content":{"size":0,"mimeType":""}},
          "timings":{"send":0.1234,"wait":0.2564,"receive":0.2572}}"#;
    std::fs::write(&original, har_of(&[timed])).unwrap();
    let (once_path, twice_path) = (dir.path().join("t1.har"), dir.path().join("t2.har"));
    export(&original, &once_path);
    export(&once_path, &twice_path);
    let (once, twice) = (read(&once_path), read(&twice_path));
    assert_eq!(once["time"], 0.636, "{once}");
    assert_eq!(
        (&once["time"], &once["timings"]),
        (&twice["time"], &twice["timings"])
    );
}

#[test]
fn every_cookie_of_a_set_cookie_field_is_redacted_however_it_is_written() {
    let dir = tempfile::tempdir().unwrap();
    // Each body repeats its cookie's value: scrubbed there too, from its own field's.
    let set_cookie = |value: &str, secret: &str| {
        format!(
            r#"{{"startedDateTime":"2026-11-20T10:00:01Z","request":{{"method":"GET","url":"https://baas.kinvey.com/a"}},
              "response":{{"status":200,"headers":[{{"name":"Set-Cookie","value":{}}}],
                "content":{{"mimeType":"text/plain","text":"seen: {secret}"}}}}}}"#,
            serde_json::to_string(value).unwrap()
        )
    };
    let har_text = har_of(&[
        // Chrome's and Firefox's HAR files: the cookies of a field one a line.
        &set_cookie(
            "lang=en; Path=/\nsession=SESSIONSECRET999; Path=/; HttpOnly",
            "SESSIONSECRET999",
        ),
        // Folded into one line with a comma, as some origins send them.
        &set_cookie(
            "pref=1; Path=/, token=FOLDEDSECRET777; Path=/",
            "FOLDEDSECRET777",
        ),
        &set_cookie(
            "a=1; Expires=Wed, 21 Oct 2026 07:28:00 GMT, b=DATEFOLDED555",
            "DATEFOLDED555",
        ),
        // An attribute kinspect does not know: its value may be anything.
        &set_cookie("c=1; X-Note=NOTESECRET444", "NOTESECRET444"),
        &set_cookie(
            "sid=PLAINSECRET333; Path=/; Secure; SameSite=Lax; Max-Age=3600",
            "PLAINSECRET333",
        ),
        // Quoted, and without a name.
        &set_cookie("q=\"QUOTEDSECRET222\"; Path=/", "QUOTEDSECRET222"),
        &set_cookie("NAMELESSSECRET111; Path=/", "NAMELESSSECRET111"),
    ]);
    let written = exported_redacted(dir.path(), &har_text);
    for secret in [
        "SESSIONSECRET999",
        "FOLDEDSECRET777",
        "DATEFOLDED555",
        "NOTESECRET444",
        "PLAINSECRET333",
        "QUOTEDSECRET222",
        "NAMELESSSECRET111",
    ] {
        assert!(!written.contains(secret), "{secret} in {written}");
    }
    let har: serde_json::Value = serde_json::from_str(&written).unwrap();
    let entries = har["log"]["entries"].as_array().unwrap();
    let field = |i: usize| entries[i]["response"]["headers"][0]["value"].clone();
    assert_eq!(
        field(0),
        "lang=[redacted]; Path=/\nsession=[redacted]; Path=/; HttpOnly"
    );
    assert_eq!(field(1), "[redacted]", "folded: all of it");
    assert_eq!(field(3), "[redacted]", "an unknown attribute: all of it");
    assert_eq!(
        field(4),
        "sid=[redacted]; Path=/; Secure; SameSite=Lax; Max-Age=3600"
    );
    let names: Vec<&str> = entries[0]["response"]["cookies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["lang", "session"]);
}

#[test]
fn a_kinvey_errors_description_is_redacted_too() {
    let dir = tempfile::tempdir().unwrap();
    let body = r#"{"error":"InvalidCredentials","description":"token SECKINVEY03 is expired","debug":"SECKINVEY03"}"#;
    let entry = format!(
        r#"{{"startedDateTime":"2026-11-20T10:00:01Z",
          "request":{{"method":"GET","url":"https://baas.kinvey.com/appdata/kid_x/books",
            "headers":[{{"name":"Authorization","value":"Kinvey SECKINVEY03"}},{{"name":"X-Kinvey-API-Version","value":"5"}}]}},
          "response":{{"status":401,"headers":[{{"name":"Content-Type","value":"application/json"}}],
            "content":{{"size":{},"mimeType":"application/json","text":{}}}}}}}"#,
        body.len(),
        serde_json::to_string(body).unwrap()
    );
    let written = exported_redacted(dir.path(), &har_of(&[&entry]));
    assert!(!written.contains("SECKINVEY03"), "{written}");
    let har: serde_json::Value = serde_json::from_str(&written).unwrap();
    let kinvey = &har["log"]["entries"][0]["_kinvey"];
    assert_eq!(kinvey["description"], "token [redacted] is expired");
}

#[test]
fn secrets_in_json_bodies_are_redacted_however_the_json_is_framed() {
    let dir = tempfile::tempdir().unwrap();
    let entry = |request: &str, response: &str| {
        format!(
            r#"{{"startedDateTime":"2026-11-20T10:00:01Z",
              "request":{{"method":"POST","url":"https://baas.kinvey.com/user/kid_x/login",
                "postData":{{"mimeType":"application/json","text":{}}}}},
              "response":{{"status":200,"content":{{"mimeType":"application/json","text":{}}}}}}}"#,
            serde_json::to_string(request).unwrap(),
            serde_json::to_string(response).unwrap()
        )
    };
    let har_text = har_of(&[
        // A byte-order mark before the JSON.
        &entry("\u{feff}{\"username\":\"ada\",\"password\":\"BOMPASSWORD1\"}", "{}"),
        // NDJSON: a document a line.
        &entry(
            "{\"password\":\"NDJSONPASS2\"}\n{\"password\":\"NDJSONPASS3\"}",
            "{}",
        ),
        // A secret-named field holding an object or an array.
        &entry(
            "{\"password\":{\"value\":\"NESTEDPASS4\"},\"secret\":[\"NESTEDPASS5\"]}",
            "{}",
        ),
        // Bytes after the JSON document.
        &entry(
            "{}",
            "{\"_kmd\":{\"authtoken\":\"TRAILINGTOKEN6\"},\"access_token\":\"TRAILINGTOKEN7\"}\n--end--",
        ),
        // NDJSON whose last line is cut (as at --max-body), documents one after
        // another, pretty documents, a document cut short.
        &entry(
            "{}",
            "{\"a\":1}\n{\"password\":\"NDJSONCUT8\"}\n{\"access_token\":\"NDJSONCUT9\"}\n{\"x\":",
        ),
        &entry("{}", "{\"a\":1}{\"password\":\"CONCAT10\"}"),
        &entry("{}", "{\n \"a\": 1\n}\n{\n \"password\": \"PRETTY11\"\n}"),
        &entry("{}", "[{\"password\":\"CUTSHORT12\"},{\"b\":"),
    ]);
    let written = exported_redacted(dir.path(), &har_text);
    for secret in [
        "BOMPASSWORD1",
        "NDJSONPASS2",
        "NDJSONPASS3",
        "NESTEDPASS4",
        "NESTEDPASS5",
        "TRAILINGTOKEN6",
        "TRAILINGTOKEN7",
        "NDJSONCUT8",
        "NDJSONCUT9",
        "CONCAT10",
        "PRETTY11",
        "CUTSHORT12",
    ] {
        assert!(!written.contains(secret), "{secret} in {written}");
    }
    // What is not secret stays, framing and all.
    assert!(
        written.contains("ada") && written.contains("--end--"),
        "{written}"
    );
}

#[test]
fn a_urls_password_and_a_redirects_code_are_scrubbed_wherever_they_turn_up() {
    let dir = tempfile::tempdir().unwrap();
    let echo = "seen USERINFOPASS8 and LOCATIONCODE9";
    let entry = format!(
        r#"{{"startedDateTime":"2026-11-20T10:00:01Z",
          "request":{{"method":"GET","url":"https://ada:USERINFOPASS8@baas.kinvey.com/a"}},
          "response":{{"status":302,"headers":[{{"name":"Location","value":"https://app.test/cb?code=LOCATIONCODE9&state=s"}}],
            "content":{{"mimeType":"text/plain","text":"{echo}"}}}}}}"#
    );
    let written = exported_redacted(dir.path(), &har_of(&[&entry]));
    for secret in ["USERINFOPASS8", "LOCATIONCODE9"] {
        assert!(!written.contains(secret), "{secret} in {written}");
    }
    assert!(
        written.contains("seen [redacted] and [redacted]"),
        "{written}"
    );

    // A Referer's ordinary `key` and `code`, and a secret-sounding JSON object that
    // holds no credential, stay.
    let entry = r#"{"startedDateTime":"2026-11-20T10:00:01Z",
          "request":{"method":"GET","url":"https://baas.kinvey.com/appdata/kid_x/books/b1",
            "headers":[{"name":"Referer","value":"https://console.app.test/list?key=books&code=shelf-view"}]},
          "response":{"status":200,"content":{"mimeType":"application/json",
            "text":"{\"collection\":\"books\",\"view\":\"shelf-view\",\"session\":{\"user\":{\"name\":\"ada\"}},\"passwordPolicy\":{\"minLength\":8}}"}}}"#;
    let written = exported_redacted(dir.path(), &har_of(&[entry]));
    for kept in [
        "/appdata/kid_x/books/b1",
        r#"\"collection\":\"books\""#,
        r#"\"view\":\"shelf-view\""#,
        r#"\"name\":\"ada\""#,
        r#"\"minLength\":8"#,
    ] {
        assert!(written.contains(kept), "{kept} not in {written}");
    }
}

#[test]
fn a_support_report_redacts_secret_fields_of_a_json_debug() {
    let dir = tempfile::tempdir().unwrap();
    let body = r#"{"error":"BLRuntimeError","description":"boom","debug":{"token":"RPTLEAK1234","session":"RPTSESS5678","signature":"RPTSIG9999","step":"save"}}"#;
    let entry = format!(
        r#"{{"startedDateTime":"2026-11-20T10:00:01Z",
          "request":{{"method":"POST","url":"https://baas.kinvey.com/rpc/kid_x/custom/x"}},
          "response":{{"status":400,"headers":[{{"name":"X-Kinvey-Request-ID","value":"rpt0001"}},{{"name":"Content-Type","value":"application/json"}}],
            "content":{{"mimeType":"application/json","text":{}}}}}}}"#,
        serde_json::to_string(body).unwrap()
    );
    let path = dir.path().join("in.har");
    std::fs::write(&path, har_of(&[&entry])).unwrap();
    let report = kinspect(&["report", path.to_str().unwrap(), "--request-id", "rpt0001"]);
    assert!(report.status.success(), "{report:?}");
    let text = String::from_utf8_lossy(&report.stdout);
    for secret in ["RPTLEAK1234", "RPTSESS5678", "RPTSIG9999"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    assert!(text.contains(r#""step":"save""#), "{text}");

    // A stack trace in `debug` keeps its lines, indented under the label.
    let body = r#"{"error":"BLRuntimeError","description":"boom","debug":"TypeError: x\r\n    at save (bl.js:3)"}"#;
    let entry = entry.replace("rpt0001", "rpt0002").replace(
        &serde_json::to_string(r#"{"error":"BLRuntimeError","description":"boom","debug":{"token":"RPTLEAK1234","session":"RPTSESS5678","signature":"RPTSIG9999","step":"save"}}"#).unwrap(),
        &serde_json::to_string(body).unwrap(),
    );
    std::fs::write(&path, har_of(&[&entry])).unwrap();
    let report = kinspect(&["report", path.to_str().unwrap(), "--request-id", "rpt0002"]);
    let text = String::from_utf8_lossy(&report.stdout);
    assert!(
        text.contains("Debug:       TypeError: x\n                 at save (bl.js:3)\n"),
        "{text}"
    );
}

#[test]
fn a_support_report_on_a_batch_names_its_gravest_element_and_every_other() {
    let dir = tempfile::tempdir().unwrap();
    let body = r#"{"entities":[{},{}],"errors":[{"index":0,"error":"JSONParseError","description":"bad"},{"index":1,"error":"KinveyInternalErrorStop","description":"gone"}]}"#;
    let entry = format!(
        r#"{{"startedDateTime":"2026-11-20T10:00:01Z",
          "request":{{"method":"POST","url":"https://baas.kinvey.com/appdata/kid_x/books"}},
          "response":{{"status":207,"headers":[{{"name":"X-Kinvey-Request-ID","value":"batch0001"}},{{"name":"Content-Type","value":"application/json"}}],
            "content":{{"mimeType":"application/json","text":{}}}}}}}"#,
        serde_json::to_string(body).unwrap()
    );
    let path = dir.path().join("in.har");
    std::fs::write(&path, har_of(&[&entry])).unwrap();
    let report = kinspect(&[
        "report",
        path.to_str().unwrap(),
        "--request-id",
        "batch0001",
    ]);
    assert!(report.status.success(), "{report:?}");
    let text = String::from_utf8_lossy(&report.stdout);
    assert!(
        text.contains("Error:       KinveyInternalErrorStop (element 1)"),
        "{text}"
    );
    assert!(
        text.contains("Also:        JSONParseError (element 0): bad"),
        "{text}"
    );
    assert_eq!(text.matches("KinveyInternalErrorStop").count(), 1, "{text}");

    // Filters find it by either element's error, not only the one it is listed by.
    for filter in ["~kerr ^JSONParseError$", "~kc fix", "~kc stop"] {
        let listed = kinspect(&["ls", path.to_str().unwrap(), "--filter", filter]);
        assert!(listed.status.success(), "{listed:?}");
        let text = String::from_utf8_lossy(&listed.stdout);
        assert!(text.contains("/appdata/kid_x/books"), "{filter}: {text}");
    }
    let listed = kinspect(&["ls", path.to_str().unwrap(), "--filter", "~kc retry"]);
    assert!(!String::from_utf8_lossy(&listed.stdout).contains("/books"));
}

#[test]
fn a_multipart_forms_password_is_redacted_beside_a_binary_file_and_wherever_it_turns_up() {
    use base64::Engine;
    use kinspect::flow::{CapturedBody, Flow};
    let client = "127.0.0.1:40000".parse().unwrap();
    let password = "multipart-pw-77";
    // An upload's `key` is the name its file is stored under, no secret.
    let object = "uploads/photo-2024.jpg";
    let mut upload = Flow::exchange(
        1,
        client,
        "POST",
        "https://baas.kinvey.com/user/kid_x/login",
        Some(200),
    );
    let boundary = "----WebKitFormBoundary7MA4YWxkTrZu0gW";
    let token = "sess-token-31337";
    upload.request.headers = [
        (
            "Content-Type",
            format!("multipart/form-data; boundary={boundary}"),
        ),
        ("Authorization", format!("Kinvey {token}")),
    ]
    .into_iter()
    .collect();
    let png = [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0xff, 0x00];
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\nada\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nmy token is {token}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\n{object}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"avatar\"; filename=\"a.png\"\r\n\
         Content-Type: image/png\r\n\r\n"
    )
    .into_bytes();
    body.extend(png);
    body.extend(
        format!(
            "\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\n\
             {password}\r\n--{boundary}--\r\n"
        )
        .bytes(),
    );
    upload.request.body = CapturedBody::whole(body);
    let response = upload.response.as_mut().unwrap();
    response.headers = [("content-type", "text/plain")].into_iter().collect();
    response.body = CapturedBody::whole(format!("signed in with {password}"));
    let later = Flow::exchange(
        2,
        client,
        "GET",
        &format!("https://baas.kinvey.com/{object}"),
        Some(200),
    );
    let flows = [upload, later].map(|flow| StoredFlow {
        flow,
        kinvey: Default::default(),
    });
    let mut out = Vec::new();
    let stats = har::export(&mut out, "t", flows, Default::default()).unwrap();
    let text = String::from_utf8(out).unwrap();
    let har: serde_json::Value = serde_json::from_str(&text).unwrap();
    let entry = &har["log"]["entries"][0];
    let post = &entry["request"]["postData"];
    // The file is no UTF-8, so the form is base64: redacted before it was encoded.
    assert_eq!(post["_encoding"], "base64", "{post}");
    let sent = base64::engine::general_purpose::STANDARD
        .decode(post["text"].as_str().unwrap())
        .unwrap();
    let sent_text = String::from_utf8_lossy(&sent);
    assert!(!sent_text.contains(password), "{sent_text}");
    // The flow's other secrets are scrubbed from a form written in base64 too.
    assert!(
        sent_text.contains("my token is [redacted]\r\n"),
        "{sent_text}"
    );
    assert!(
        sent_text.contains("name=\"password\"\r\n\r\n[redacted]\r\n"),
        "{sent_text}"
    );
    assert!(holds(&sent, &png), "the file was kept");
    assert!(sent_text.contains("name=\"username\"\r\n\r\nada\r\n"));
    assert!(sent_text.contains(&format!("name=\"key\"\r\n\r\n{object}\r\n")));
    let later_url = &har["log"]["entries"][1]["request"]["url"];
    assert_eq!(
        later_url.as_str(),
        Some(&*format!("https://baas.kinvey.com/{object}"))
    );
    assert_eq!(
        entry["response"]["content"]["text"], "signed in with [redacted]",
        "{entry}"
    );
    assert!(!text.contains(password));
    assert_eq!(
        stats.redactions, 4,
        "the header, the part, the token in the note, the echo"
    );
}

#[test]
fn a_body_whose_encoding_cannot_be_undone_round_trips_as_it_came() {
    use kinspect::flow::{CapturedBody, Flow};
    let client = "127.0.0.1:40000".parse().unwrap();
    let mut flow = Flow::exchange(1, client, "GET", "https://baas.kinvey.com/a", Some(200));
    let response = flow.response.as_mut().unwrap();
    response.headers = [("Content-Encoding", "gzip"), ("Content-Type", "text/plain")]
        .into_iter()
        .collect();
    response.body = CapturedBody::whole("not gzip at all");
    assert!(
        flow.decoded_response_body().is_none(),
        "it cannot be decoded"
    );
    let stored = StoredFlow {
        flow,
        kinvey: Default::default(),
    };
    let mut out = Vec::new();
    har::export(&mut out, "t", [stored], Default::default()).unwrap();
    let text = String::from_utf8(out.clone()).unwrap();
    assert!(text.contains(r#""_asSent":true"#), "{text}");
    let imported = har::import_bytes(&out, Path::new("t.har")).unwrap();
    let flow = &imported[0].flow;
    let response = flow.response.as_ref().unwrap();
    assert_eq!(
        &response.body.bytes[..],
        b"not gzip at all",
        "not gzipped again"
    );
    assert!(
        flow.decoded_response_body().is_none(),
        "still says it cannot"
    );
}

#[test]
fn secrets_in_gzipped_or_latin1_bodies_are_found_and_short_cookies_leave_files_alone() {
    use base64::Engine;
    use kinspect::flow::{CapturedBody, Flow};
    let client = "127.0.0.1:40000".parse().unwrap();
    let exchange = |id, request_headers: &[(&str, &str)], body: Vec<u8>, echo: &str| {
        let mut flow = Flow::exchange(id, client, "POST", "https://baas.kinvey.com/a", Some(200));
        flow.request.headers = request_headers.iter().copied().collect();
        flow.request.body = CapturedBody::whole(body);
        let response = flow.response.as_mut().unwrap();
        response.headers = [("Content-Type", "text/plain")].into_iter().collect();
        response.body = CapturedBody::whole(echo.to_owned());
        StoredFlow {
            flow,
            kinvey: Default::default(),
        }
    };
    let form = "application/x-www-form-urlencoded";
    let gzipped = support::gzip(b"user=bob&password=gz_form_PW_31337");
    let latin1_form = b"name=Jos\xe9&password=latin1_pw_SECRET&x=1".to_vec();
    let latin1_json = b"{\"name\":\"Jos\xe9\",\"password\":\"latin1_json_SECRET\"}".to_vec();
    // A file with bytes that happen to be cookie values.
    let mut file = vec![0x89, b'P', b'N', b'G', 0, 0xff];
    file.extend(b"theme dark lang en-US");
    let flows = [
        exchange(
            1,
            &[("Content-Type", form), ("Content-Encoding", "gzip")],
            gzipped,
            "you sent: user=bob&password=gz_form_PW_31337",
        ),
        exchange(
            2,
            &[("Content-Type", &format!("{form}; charset=iso-8859-1"))],
            latin1_form,
            "you sent latin1_pw_SECRET",
        ),
        exchange(
            3,
            &[("Content-Type", "application/json; charset=iso-8859-1")],
            latin1_json,
            "ok",
        ),
        exchange(
            4,
            &[
                ("Content-Type", "image/png"),
                ("Cookie", "theme=dark; lang=en-US"),
            ],
            file.clone(),
            "ok",
        ),
    ];
    let mut out = Vec::new();
    har::export(&mut out, "t", flows, Default::default()).unwrap();
    let har: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let entries = har["log"]["entries"].as_array().unwrap();
    let sent = |i: usize| -> Vec<u8> {
        let post = &entries[i]["request"]["postData"];
        let text = post["text"].as_str().unwrap();
        match post["_encoding"].as_str() {
            Some("base64") => base64::engine::general_purpose::STANDARD
                .decode(text)
                .unwrap(),
            _ => text.as_bytes().to_vec(),
        }
    };
    let text = String::from_utf8_lossy(&out);
    for secret in ["gz_form_PW_31337", "latin1_pw_SECRET", "latin1_json_SECRET"] {
        assert!(!text.contains(secret), "{secret} in {text}");
        for i in 0..3 {
            let body = sent(i);
            assert!(
                !holds(&body, secret.as_bytes()),
                "{secret} in entry {i}'s body"
            );
        }
    }
    assert_eq!(
        sent(3),
        file,
        "a file is not broken for short cookie values"
    );
}

#[test]
fn a_token_an_app_sends_in_a_websocket_message_is_scrubbed_from_every_message() {
    use kinspect::websocket::{Message, BINARY, TEXT};
    let token = "ws_text_SECRET_555";
    let message = |from_client, opcode, payload: Vec<u8>| Message {
        from_client,
        at: std::time::UNIX_EPOCH + Duration::from_secs(1_764_000_000),
        opcode,
        size: payload.len() as u64,
        payload: payload.into(),
    };
    let mut binary = vec![0];
    binary.extend(token.as_bytes());
    binary.push(0xff);
    let stored = websocket_exchange(vec![
        message(
            true,
            TEXT,
            format!(r#"{{"authtoken":"{token}"}}"#).into_bytes(),
        ),
        message(true, BINARY, binary.clone()),
        message(false, TEXT, format!("echo: {token}").into_bytes()),
        message(false, BINARY, binary),
    ]);
    let mut out = Vec::new();
    har::export(&mut out, "t", [stored], Default::default()).unwrap();
    let har: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let messages = har["log"]["entries"][0]["_webSocketMessages"]
        .as_array()
        .unwrap();
    assert_eq!(messages.len(), 4);
    for m in messages {
        let data = m["data"].as_str().unwrap();
        let bytes = match m["opcode"].as_u64() {
            Some(2) => {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .unwrap()
            }
            _ => data.as_bytes().to_vec(),
        };
        assert!(!holds(&bytes, token.as_bytes()), "{m}");
    }
}

/// A WebSocket exchange (`wss://live.kinvey.com/`, 101) that carried `messages`.
fn websocket_exchange(messages: Vec<kinspect::websocket::Message>) -> StoredFlow {
    let client = "127.0.0.1:40000".parse().unwrap();
    let mut flow =
        kinspect::flow::Flow::exchange(1, client, "GET", "wss://live.kinvey.com/", Some(101));
    flow.websocket = Some(Box::new(kinspect::websocket::MessageLog {
        messages,
        dropped: 0,
        unreadable: None,
    }));
    StoredFlow {
        flow,
        kinvey: Default::default(),
    }
}

/// True when `part` occurs in `bytes`.
fn holds(bytes: &[u8], part: &[u8]) -> bool {
    bytes.windows(part.len()).any(|w| w == part)
}

/// A message time finer than a microsecond is written to the microsecond, and read
/// back and written again unchanged.
#[test]
fn websocket_times_are_written_again_as_they_were_read() {
    use kinspect::websocket::{Message, TEXT};
    let stored = websocket_exchange(vec![Message {
        from_client: true,
        at: std::time::UNIX_EPOCH + Duration::from_nanos(1_764_000_553_691_113_537),
        opcode: TEXT,
        size: 2,
        payload: bytes::Bytes::from_static(b"hi"),
    }]);
    let export = |flows: Vec<StoredFlow>| {
        let mut out = Vec::new();
        har::export(&mut out, "t", flows, Default::default()).unwrap();
        out
    };
    let once = export(vec![stored]);
    let twice = export(har::import_bytes(&once, Path::new("t.har")).unwrap());
    let time = |out: &[u8]| {
        let har: serde_json::Value = serde_json::from_slice(out).unwrap();
        har["log"]["entries"][0]["_webSocketMessages"][0]["time"].clone()
    };
    assert_eq!(time(&once), 1_764_000_553.691114);
    assert_eq!(time(&once), time(&twice));
}

#[test]
fn a_hars_replays_and_redacted_credentials_raise_no_behaviour_warning() {
    let dir = tempfile::tempdir().unwrap();
    let entry = |connection: &str, at: &str, status: u16, error: &str, extra: &str| {
        let body = serde_json::to_string(&format!(r#"{{"error":"{error}"}}"#)).unwrap();
        format!(
            r#"{{"startedDateTime":"2026-11-20T10:00:0{at}Z","time":10,"connection":"{connection}",{extra}
              "request":{{"method":"POST","url":"https://baas.kinvey.com/user/kid_x/login",
                "headers":[{{"name":"Authorization","value":"Basic [redacted]"}}]}},
              "response":{{"status":{status},"headers":[{{"name":"Content-Type","value":"application/json"}}],
                "content":{{"mimeType":"application/json","text":{body}}}}}}}"#
        )
    };
    let listed = |entries: &[&str]| -> Vec<serde_json::Value> {
        let path = dir.path().join("in.har");
        std::fs::write(&path, har_of(entries)).unwrap();
        let out = kinspect(&["ls", path.to_str().unwrap(), "--json"]);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let warnings = |flow: &serde_json::Value| flow["kinvey"]["warnings"].as_array().unwrap().len();

    // Redacted credentials may have changed between attempts: no "re-sent unchanged".
    let denied = entry("7", "1", 401, "InvalidCredentials", "");
    let again = entry("8", "3", 401, "InvalidCredentials", "");
    let flows = listed(&[&denied, &again]);
    assert_eq!(warnings(&flows[1]), 0, "{}", flows[1]);

    // A STOP sent again from the UI is no re-send of the app's, and names its original
    // by the id it has once imported.
    let stop = entry("7", "1", 500, "KinveyInternalErrorStop", "");
    let replay = entry(
        "9",
        "3",
        500,
        "KinveyInternalErrorStop",
        r#""_replayOf":7,"#,
    );
    let flows = listed(&[&stop, &replay]);
    assert_eq!(warnings(&flows[1]), 0, "{}", flows[1]);
    assert_eq!(flows[1]["replay_of"], 1, "{}", flows[1]);
    // Its original left out of the HAR: still a replay, naming no flow.
    let flows = listed(&[
        &entry("3", "1", 500, "KinveyInternalErrorStop", ""),
        &replay,
    ]);
    assert_eq!(warnings(&flows[1]), 0, "{}", flows[1]);
    assert_eq!(flows[1]["replay_of"], serde_json::Value::Null);
    // The app's own re-send is still flagged.
    let resent = entry("9", "3", 500, "KinveyInternalErrorStop", "");
    let flows = listed(&[&stop, &resent]);
    assert_eq!(flows[1]["kinvey"]["warnings"][0]["code"], "stop_resent");

    // kinspect's own HAR keeps the verdict it was exported with, made before redaction.
    let verdict = r#""_kinvey":{"warnings":[{"code":"fix_resent_unchanged","message":"re-sent unchanged after InvalidCredentials (flow 7): change it"},{"code":"fix_resent_unchanged","message":"after (flow 99) too"}]},"#;
    let exported_again = entry("8", "3", 401, "InvalidCredentials", verdict);
    let flows = listed(&[&denied, &exported_again]);
    assert_eq!(warnings(&flows[1]), 2, "{}", flows[1]);
    assert_eq!(
        flows[1]["kinvey"]["warnings"][0]["code"],
        "fix_resent_unchanged"
    );
    // The flows it names are named by their ids once imported; one the file does not
    // hold (a filtered export) is left out.
    assert_eq!(
        flows[1]["kinvey"]["warnings"][0]["message"],
        "re-sent unchanged after InvalidCredentials (flow 1): change it"
    );
    assert_eq!(flows[1]["kinvey"]["warnings"][1]["message"], "after too");
    // And one exported without a warning raises none it did not have.
    let cleared = entry(
        "9",
        "3",
        500,
        "KinveyInternalErrorStop",
        r#""_kinvey":{"warnings":[]},"#,
    );
    let flows = listed(&[&stop, &cleared]);
    assert_eq!(warnings(&flows[1]), 0, "{}", flows[1]);
}

#[test]
fn a_support_report_scrubs_earlier_flows_tokens_but_not_names_a_short_password_is_part_of() {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let token = "CROSSFLOWTOKEN0123456789";
    // The app key's secret is `secret`: it is part of kinspect's own advice ("app
    // key/secret") and of no name, and stays; the token of the flow before goes.
    let basic = base64::engine::general_purpose::STANDARD.encode("kid_abc:secret");
    let signed_in = format!(
        r#"{{"startedDateTime":"2026-11-20T10:00:01Z","time":5,
          "request":{{"method":"GET","url":"https://baas.kinvey.com/appdata/kid_abc/books",
            "headers":[{{"name":"Authorization","value":"Kinvey {token}"}}]}},
          "response":{{"status":200,"content":{{"mimeType":"application/json","text":"[]"}}}}}}"#
    );
    let body = serde_json::to_string(&format!(
        r#"{{"error":"InvalidCredentials","description":"Invalid credentials. Please retry","debug":"session {token} expired"}}"#
    ))
    .unwrap();
    let failed = format!(
        r#"{{"startedDateTime":"2026-11-20T10:00:03Z","time":5,
          "request":{{"method":"POST","url":"https://baas.kinvey.com/user/kid_abc/login",
            "headers":[{{"name":"Authorization","value":"Basic {basic}"}}]}},
          "response":{{"status":401,"headers":[{{"name":"X-Kinvey-Request-ID","value":"cross0002"}},{{"name":"Content-Type","value":"application/json"}}],
            "content":{{"mimeType":"application/json","text":{body}}}}}}}"#
    );
    let path = dir.path().join("in.har");
    std::fs::write(&path, har_of(&[&signed_in, &failed])).unwrap();
    let report = kinspect(&[
        "report",
        path.to_str().unwrap(),
        "--request-id",
        "cross0002",
    ]);
    assert!(report.status.success(), "{report:?}");
    let text = String::from_utf8_lossy(&report.stdout);
    assert!(!text.contains(token), "{text}");
    assert!(text.contains("session [redacted] expired"), "{text}");
    assert!(!text.contains(&basic), "{text}");
    assert!(
        text.contains("Request:     POST https://baas.kinvey.com/user/kid_abc/login"),
        "{text}"
    );
    assert!(text.contains("Error:       InvalidCredentials"), "{text}");
    assert!(text.contains("app key/secret"), "{text}");
}

#[test]
fn bodies_kept_in_part_are_marked_so_and_read_back_so() {
    use kinspect::flow::{CapturedBody, Flow};
    let dir = tempfile::tempdir().unwrap();
    let mut flow = Flow::exchange(
        1,
        "127.0.0.1:40000".parse().unwrap(),
        "POST",
        "http://example.test/upload",
        Some(200),
    );
    // The first 100 of 600 bytes kept; a response that broke off after 11.
    flow.request.body = CapturedBody {
        bytes: vec![b'a'; 100].into(),
        wire_size: 600,
        truncated: true,
        incomplete: false,
    };
    flow.response.as_mut().unwrap().body = CapturedBody {
        bytes: vec![b'b'; 11].into(),
        wire_size: 11,
        truncated: false,
        incomplete: true,
    };
    let stored = StoredFlow {
        flow,
        kinvey: Default::default(),
    };
    let entry = har::har_entry(&stored, Default::default(), &mut 0);
    assert_eq!(entry["request"]["postData"]["_truncated"], true);
    assert!(entry["request"]["postData"].get("_incomplete").is_none());
    assert_eq!(entry["response"]["content"]["_incomplete"], true);
    assert!(entry["response"]["content"].get("_truncated").is_none());
    let path = dir.path().join("cut.har");
    std::fs::write(&path, har_of(&[&entry.to_string()])).unwrap();
    let back = &har::import(&path).unwrap()[0].flow;
    let (request, response) = (&back.request.body, &back.response.as_ref().unwrap().body);
    assert_eq!((request.truncated, request.incomplete), (true, false));
    assert_eq!((response.truncated, response.incomplete), (false, true));
    assert_eq!(request.wire_size, 600);
}

#[test]
fn urls_without_a_host_and_dates_out_of_range_are_left_out_naming_why() {
    let dir = tempfile::tempdir().unwrap();
    let entry = |date: &str, url: &str| {
        format!(
            r#"{{"startedDateTime":"{date}","request":{{"method":"GET","url":"{url}"}},"response":{{"status":200}}}}"#
        )
    };
    let ok = "2026-11-20T10:00:01Z";
    let path = dir.path().join("odd.har");
    std::fs::write(
        &path,
        har_of(&[
            &entry(ok, "/relative/path"),
            &entry(ok, "data:image/png;base64,iVBORw0KGgo="),
            &entry("9999-12-31T23:59:59.999Z", "https://example.test/late"),
            &entry("2025-01-10T10:00:00", "https://example.test/no-offset"),
        ]),
    )
    .unwrap();
    let listed = kinspect(&["ls", path.to_str().unwrap(), "--json"]);
    assert!(listed.status.success(), "{listed:?}");
    let said = String::from_utf8_lossy(&listed.stderr);
    assert!(
        said.contains("entries[0].request.url: not an absolute URL"),
        "{said}"
    );
    assert!(
        said.contains("entries[1].request.url: a data: URL"),
        "{said}"
    );
    assert!(
        said.contains("entries[2].startedDateTime: \"9999-12-31T23:59:59.999Z\" is outside"),
        "{said}"
    );
    // Without an offset: UTC.
    let flows: Vec<serde_json::Value> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0]["started_at"], "2025-01-10T10:00:00.000Z");
}

#[test]
fn a_kinvey_exchange_known_by_its_credentials_stays_one_through_a_redacted_har() {
    let dir = tempfile::tempdir().unwrap();
    let body = serde_json::to_string(r#"{"error":"ServiceUnavailable"}"#).unwrap();
    let entry = format!(
        r#"{{"startedDateTime":"2026-11-20T10:00:01Z",
          "request":{{"method":"GET","url":"https://api.example.test/appdata/kid_x/books",
            "headers":[{{"name":"Authorization","value":"Kinvey 0fd7bfe2.JfB4jPZq+k/Bls="}}]}},
          "response":{{"status":503,"content":{{"mimeType":"application/json","text":{body}}}}}}}"#
    );
    let path = dir.path().join("in.har");
    std::fs::write(&path, har_of(&[&entry])).unwrap();
    let error_of = |file: &Path| {
        let out = kinspect(&["ls", file.to_str().unwrap(), "--json"]);
        assert!(out.status.success(), "{out:?}");
        let flow: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        flow["kinvey"]["error"].clone()
    };
    assert_eq!(error_of(&path), "ServiceUnavailable");
    let mut from = path;
    for round in ["a.har", "b.har"] {
        let out = dir.path().join(round);
        let exported = kinspect(&["har", from.to_str().unwrap(), "-o", out.to_str().unwrap()]);
        assert!(exported.status.success(), "{exported:?}");
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(text.contains(r#""value":"Kinvey [redacted]""#), "{text}");
        assert!(!text.contains("JfB4jPZq"), "{text}");
        assert_eq!(error_of(&out), "ServiceUnavailable", "{round}");
        from = out;
    }
}

#[test]
fn a_password_that_is_a_word_of_kinspects_leaves_its_sentences_whole() {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let basic = base64::engine::general_purpose::STANDARD.encode("kid_abc:Kinvey");
    let body = serde_json::to_string(
        r#"{"error":"KinveyInternalErrorStop","description":"Kinvey failed","debug":"x"}"#,
    )
    .unwrap();
    let entry = format!(
        r#"{{"startedDateTime":"2026-11-20T10:00:01Z",
          "request":{{"method":"GET","url":"https://baas.kinvey.com/appdata/kid_abc/books",
            "headers":[{{"name":"Authorization","value":"Basic {basic}"}}]}},
          "response":{{"status":404,"headers":[{{"name":"X-Kinvey-Request-ID","value":"word0001"}},{{"name":"Content-Type","value":"application/json"}}],
            "content":{{"mimeType":"application/json","text":{body}}}}}}}"#
    );
    let path = dir.path().join("in.har");
    std::fs::write(&path, har_of(&[&entry])).unwrap();
    let report = kinspect(&["report", path.to_str().unwrap(), "--request-id", "word0001"]);
    let text = String::from_utf8_lossy(&report.stdout);
    assert!(
        text.contains("KinveyInternalErrorStop came with status 404; Kinvey sends it with 500"),
        "{text}"
    );
    assert!(
        text.contains("Kinvey only sends structured errors"),
        "{text}"
    );
    // What the server said is scrubbed still: the password standing alone.
    assert!(text.contains("Description: [redacted] failed"), "{text}");
    let out = dir.path().join("out.har");
    assert!(
        kinspect(&["har", path.to_str().unwrap(), "-o", out.to_str().unwrap()])
            .status
            .success()
    );
    let exported = std::fs::read_to_string(&out).unwrap();
    assert!(
        exported.contains("; Kinvey sends it with 500"),
        "{exported}"
    );
}

#[test]
fn a_password_escaped_in_json_or_percent_encoded_is_redacted_in_the_har() {
    let dir = tempfile::tempdir().unwrap();
    let request = serde_json::to_string(r#"{"username":"ada","password":"Pässwörd-ünï"}"#).unwrap();
    // As Python's json.dumps writes it: every non-ASCII letter escaped.
    let response = serde_json::to_string(
        r#"{"error":"InvalidCredentials","description":"d","debug":"pw P\u00e4ssw\u00f6rd-\u00fcn\u00ef"}"#,
    )
    .unwrap();
    let entry = format!(
        r#"{{"startedDateTime":"2026-11-20T10:00:01Z",
          "request":{{"method":"POST","url":"https://baas.kinvey.com/echo?dbg=pw%20P%C3%A4ssw%C3%B6rd-%C3%BCn%C3%AF",
            "headers":[{{"name":"Content-Type","value":"application/json"}}],
            "postData":{{"mimeType":"application/json","text":{request}}}}},
          "response":{{"status":401,"headers":[{{"name":"Content-Type","value":"application/json"}}],
            "content":{{"mimeType":"application/json","text":{response}}}}}}}"#
    );
    let path = dir.path().join("in.har");
    std::fs::write(&path, har_of(&[&entry])).unwrap();
    let out = dir.path().join("out.har");
    let exported = kinspect(&["har", path.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(exported.status.success(), "{exported:?}");
    let text = std::fs::read_to_string(&out).unwrap();
    for leak in ["Pässwörd", r"P\\u00e4ssw", "P%C3%A4ssw"] {
        assert!(!text.contains(leak), "{leak} in {text}");
    }
    let har: serde_json::Value = serde_json::from_str(&text).unwrap();
    let entry = &har["log"]["entries"][0];
    assert_eq!(
        entry["request"]["url"],
        "https://baas.kinvey.com/echo?dbg=pw%20[redacted]"
    );
    assert!(entry["response"]["content"]["text"]
        .as_str()
        .unwrap()
        .contains(r#""debug":"pw [redacted]""#));
}
