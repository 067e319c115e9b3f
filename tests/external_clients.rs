//! Real outside clients through kinspect: curl (HTTP/1.1 and HTTP/2) and OpenSSL's own
//! verification of the chain kinspect serves. CI installs both; locally a missing tool
//! skips with a printed reason.

mod support;

use std::process::{Command, Output};

use support::{tool_available, Origin, OriginKind, TestProxy};

async fn run(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().expect("the tool runs"))
        .await
        .unwrap()
}

fn curl(proxy: &TestProxy, version_flag: &str, url: &str) -> Command {
    let mut command = Command::new("curl");
    command
        .args(["-sS", "--max-time", "20", "-x", &proxy.url(), "--cacert"])
        .arg(proxy.ca_pem_path())
        .args([version_flag, "-w", "\n%{http_version}", url])
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy");
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_through_kinspect_over_http1_and_http2() {
    if !tool_available("curl") {
        return;
    }
    let origin = Origin::start(OriginKind::Https).await;
    let mut proxy = TestProxy::start(Some(&origin), |_| {}).await;
    for (flag, version) in [("--http1.1", "1.1"), ("--http2", "2")] {
        let output = run(curl(&proxy, flag, &origin.url("/echo?from=curl"))).await;
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "curl {flag} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let (body, http_version) = stdout.rsplit_once('\n').unwrap();
        assert_eq!(http_version, version, "curl {flag}");
        let echo: serde_json::Value = serde_json::from_str(body).unwrap();
        // An HTTP/2 origin sees the full URI, an HTTP/1.1 one the path.
        assert!(echo["uri"].as_str().unwrap().ends_with("/echo?from=curl"));
        let flow = proxy.next_flow().await;
        assert_eq!(flow.request.url, origin.url("/echo?from=curl"));
        assert!(flow
            .request
            .headers
            .get("user-agent")
            .unwrap()
            .starts_with("curl/"));
    }
}

/// An HTTP/2 origin that answers an upload at once without reading it resets its
/// stream (`NO_ERROR`): kinspect reads on the rest of the client's upload, so that curl,
/// over HTTP/1.1 or HTTP/2, finishes sending and reads the answer. Before, its stream
/// was reset mid-upload (curl: "stream 1 closed", no answer; exit 92) or its
/// connection closed (exit 55).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_gets_the_answer_an_http2_origin_gives_an_upload_early() {
    if !tool_available("curl") {
        return;
    }
    let origin = Origin::start(OriginKind::Https).await;
    let mut proxy = TestProxy::start(Some(&origin), |_| {}).await;
    let upload = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(upload.path(), vec![b'u'; 5_000_000]).unwrap();
    let data = format!("@{}", upload.path().display());
    for flag in ["--http1.1", "--http2"] {
        for attempt in 0..3 {
            let mut command = curl(&proxy, flag, &origin.url("/status/413"));
            command.args(["-H", "Expect:", "--data-binary", &data]);
            let output = run(command).await;
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.status.success(),
                "curl {flag}, attempt {attempt}: {:?} {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
            assert!(stdout.starts_with("{\"status\":413}"), "{stdout}");
            let flow = proxy.next_flow().await;
            assert_eq!(flow.status(), Some(413), "{:?}", flow.error);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_verifies_the_served_chain() {
    if !tool_available("openssl") {
        return;
    }
    let origin = Origin::start(OriginKind::Https).await;
    let proxy = TestProxy::start(Some(&origin), |_| {}).await;
    let mut s_client = Command::new("openssl");
    s_client
        .args(["s_client", "-proxy", &proxy.addr.to_string()])
        .args(["-connect", &format!("localhost:{}", origin.addr.port())])
        .args(["-servername", "localhost", "-showcerts"])
        .stdin(std::process::Stdio::null());
    let output = run(s_client).await;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let certs: Vec<String> = text
        .split("-----BEGIN CERTIFICATE-----")
        .skip(1)
        .map(|rest| {
            let body = rest.split("-----END CERTIFICATE-----").next().unwrap();
            format!("-----BEGIN CERTIFICATE-----{body}-----END CERTIFICATE-----\n")
        })
        .collect();
    assert_eq!(certs.len(), 2, "leaf + CA served; s_client said:\n{text}");

    let dir = tempfile::tempdir().unwrap();
    let leaf = dir.path().join("leaf.pem");
    std::fs::write(&leaf, &certs[0]).unwrap();
    let mut verify = Command::new("openssl");
    verify
        .args([
            "verify",
            "-purpose",
            "sslserver",
            "-verify_hostname",
            "localhost",
            "-CAfile",
        ])
        .arg(proxy.ca_pem_path())
        .arg(&leaf);
    let output = run(verify).await;
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(said.contains(": OK"), "{said}");

    let mut wrong_host = Command::new("openssl");
    wrong_host
        .args([
            "verify",
            "-verify_hostname",
            "not-localhost.example",
            "-CAfile",
        ])
        .arg(proxy.ca_pem_path())
        .arg(&leaf);
    assert!(!run(wrong_host).await.status.success());
}
