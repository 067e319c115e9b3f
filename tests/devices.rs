//! Pointing real devices and programs at kinspect: the CA page and its downloads, curl,
//! Python and Node configured only from `kinspect env`, reverse-proxy mode, and
//! `kinspect ca`.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use kinspect::demo::simulator::Simulator;
use kinspect::kinvey::ErrorClass;
use support::{tool_available, Origin, OriginKind, TestProxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ca_page_and_both_downloads() {
    let proxy = TestProxy::start(None, |_| {}).await;
    // Through the proxy, as a phone would: http://kinspect.ca.
    let client = reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(proxy.url()).unwrap())
        .build()
        .unwrap();
    let page = client.get("http://kinspect.ca/").send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = page.text().await.unwrap();
    assert!(html.contains("/cert/pem") && html.contains("iOS") && html.contains("Android"));

    let pem = client
        .get("http://kinspect.ca/cert/pem")
        .send()
        .await
        .unwrap();
    assert_eq!(pem.headers()["content-type"], "application/x-x509-ca-cert");
    assert!(pem.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains("kinspect-ca.pem"));
    assert_eq!(pem.text().await.unwrap(), proxy.ca_pem);
    let der = client
        .get("http://kinspect.ca/cert/cer")
        .send()
        .await
        .unwrap();
    assert_eq!(der.headers()["content-type"], "application/x-x509-ca-cert");
    let der = der.bytes().await.unwrap();
    assert_eq!(
        der,
        std::fs::read(proxy.ca_dir.path().join("kinspect-ca.cer")).unwrap()
    );

    // Over HTTPS too, once the CA is trusted; and at the proxy's own address.
    let https = proxy
        .client()
        .get("https://kinspect.ca/cert/pem")
        .send()
        .await
        .unwrap();
    assert_eq!(https.text().await.unwrap(), proxy.ca_pem);
    let direct = reqwest::get(format!("{}/cert/cer", proxy.url()))
        .await
        .unwrap();
    assert_eq!(direct.bytes().await.unwrap(), der);
}

/// The variables `kinspect env` exports for `proxy`.
fn kinspect_env(proxy: &TestProxy) -> HashMap<String, String> {
    kinspect_env_with(proxy, |_| {})
}

/// The variables `kinspect env`, adjusted by `configure`, exports for `proxy`.
fn kinspect_env_with(
    proxy: &TestProxy,
    configure: impl FnOnce(&mut Command),
) -> HashMap<String, String> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kinspect"));
    command
        .args(["env", "--listen", &proxy.addr.to_string(), "--ca-dir"])
        .arg(proxy.ca_dir.path())
        .env_remove("KINSPECT_PROXY_AUTH");
    configure(&mut command);
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| line.strip_prefix("export "))
        .map(|assignment| {
            let (name, value) = assignment.split_once('=').unwrap();
            (name.to_owned(), value.trim_matches('\'').to_owned())
        })
        .collect()
}

/// `program` with the machine's own proxy and CA settings removed and `env` set.
fn configured(program: &str, env: &HashMap<String, String>) -> Command {
    let mut command = Command::new(program);
    for name in [
        "ALL_PROXY",
        "all_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "NO_PROXY",
        "no_proxy",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "NODE_EXTRA_CA_CERTS",
        "NODE_USE_ENV_PROXY",
    ] {
        command.env_remove(name);
    }
    command.envs(env);
    command
}

/// Runs curl, configured only by `env`, on `url`; asserts that it succeeds.
async fn curl_configured_by(env: &HashMap<String, String>, url: &str) {
    let mut curl = configured("curl", env);
    curl.args(["-sS", "--max-time", "20", url]);
    let output = run(curl).await;
    assert!(
        output.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

async fn run(mut command: Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_python_and_node_configured_by_kinspect_env_go_through_the_proxy() {
    let origin = Origin::start(OriginKind::Https).await;
    let mut proxy = TestProxy::start(Some(&origin), |_| {}).await;
    let env = kinspect_env(&proxy);
    assert_eq!(env["HTTPS_PROXY"], proxy.url());
    assert_eq!(env["NO_PROXY"], "");
    // Port 0 is no port a program can be pointed at.
    let zero = Command::new(env!("CARGO_BIN_EXE_kinspect"))
        .args(["env", "--listen", "127.0.0.1:0", "--ca-dir"])
        .arg(proxy.ca_dir.path())
        .output()
        .unwrap();
    assert!(!zero.status.success());
    assert!(String::from_utf8_lossy(&zero.stderr).contains("port 0"));
    let clients = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients");
    let mut expected = Vec::new();

    if tool_available("curl") {
        curl_configured_by(&env, &origin.url("/echo?from=curl")).await;
        expected.push("curl");
    }
    if tool_available("python3") {
        let mut python = configured("python3", &env);
        python
            .arg(clients.join("urllib_get.py"))
            .arg(origin.url("/echo?from=python"));
        let output = run(python).await;
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "python: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(stdout.starts_with("200"), "{stdout}");
        expected.push("python");
    }
    if tool_available("node") {
        let mut node = configured("node", &env);
        node.arg(clients.join("https_via_proxy.js"))
            .arg(origin.url("/echo?from=node"));
        let output = run(node).await;
        assert!(
            output.status.success(),
            "node: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        expected.push("node");
    }
    for client in expected {
        let flow = proxy.next_flow().await;
        assert!(
            flow.request.url.ends_with(&format!("from={client}")),
            "{}",
            flow.request.url
        );
        assert_eq!(flow.status(), Some(200));
        assert!(
            flow.client_tls.is_some(),
            "{client}'s HTTPS was intercepted"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinspect_env_carries_the_proxy_credentials_for_curl() {
    if !tool_available("curl") {
        return;
    }
    let origin = Origin::start(OriginKind::Https).await;
    let credentials = "dev:p@ss w:rd%";
    let mut proxy = TestProxy::start(Some(&origin), |c| {
        c.proxy_auth = Some(credentials.parse().unwrap());
    })
    .await;
    // Taken from the variable the proxy reads too.
    let env = kinspect_env_with(&proxy, |c| {
        c.env("KINSPECT_PROXY_AUTH", credentials);
    });
    let expected = format!("http://dev:p%40ss%20w%3Ard%25@{}", proxy.addr);
    assert_eq!(env["HTTPS_PROXY"], expected);
    assert_eq!(env["http_proxy"], expected);
    curl_configured_by(&env, &origin.url("/echo?from=curl")).await;
    let flow = proxy.next_flow().await;
    assert_eq!(flow.status(), Some(200), "{:?}", flow.error);
    assert!(flow.request.url.ends_with("from=curl"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reverse_mode_records_and_classifies_flows() {
    kinspect::tls::install_crypto_provider();
    let simulator = Simulator::start(&["localhost"]).await.unwrap();
    let base: http::Uri = format!("https://localhost:{}", simulator.addr().port())
        .parse()
        .unwrap();
    let root = simulator.ca_der().clone();
    let mut proxy = TestProxy::start(None, |c| {
        c.upstream_roots.push(root);
        c.reverse = Some(base);
    })
    .await;
    // An SDK whose base URL is kinspect: plain HTTP, no proxy settings, no CA.
    let sdk = reqwest::Client::new();
    let ping = sdk
        .get(format!("{}/appdata/kid_demo", proxy.url()))
        .header("X-Kinvey-API-Version", "5")
        .send()
        .await
        .unwrap();
    assert_eq!(ping.status(), 200);
    assert!(ping.text().await.unwrap().contains("hello"));
    let failing = sdk
        .get(format!("{}/simulate/error/BLInternalError", proxy.url()))
        .header("X-Kinvey-API-Version", "5")
        .send()
        .await
        .unwrap();
    assert_eq!(failing.status(), 550);
    failing.bytes().await.unwrap();

    let first = proxy.next_stored().await;
    assert_eq!(first.flow.host, "localhost");
    assert_eq!(first.flow.scheme, "https");
    assert!(first.kinvey.request_id.is_some());
    let second = proxy.next_stored().await;
    assert_eq!(second.kinvey.error.as_deref(), Some("BLInternalError"));
    assert_eq!(second.kinvey.class, Some(ErrorClass::Stop));
    assert!(second
        .flow
        .request
        .url
        .ends_with("/simulate/error/BLInternalError"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reverse_mode_is_no_forward_proxy() {
    use tokio::io::AsyncWriteExt;
    let origin = Origin::start(OriginKind::Plain).await;
    let base: http::Uri = origin.url("/").parse().unwrap();
    let mut proxy = TestProxy::start(None, |c| c.reverse = Some(base)).await;
    // A client that takes kinspect for its proxy: refused, whatever it asks for, and
    // recorded. The URL names a port nothing listens on: it is never dialled.
    let elsewhere = "http://127.0.0.1:9/appdata/x";
    let refused = proxy.client().get(elsewhere).send().await.unwrap();
    assert_eq!(refused.status(), 400);
    let said = refused.text().await.unwrap();
    assert!(said.contains("not proxy requests"), "{said}");
    let flow = proxy.next_flow().await;
    assert_eq!(flow.request.url, elsewhere);
    assert!(flow.error.is_some_and(|e| e.message.contains("--reverse")));

    let mut tunnel = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    tunnel
        .write_all(b"CONNECT 127.0.0.1:9 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n")
        .await
        .unwrap();
    let head = support::read_head(&mut tunnel).await.unwrap();
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    assert!(proxy.next_flow().await.error.is_some());

    // A path is a request to the origin, and so is a URL naming kinspect itself (the
    // absolute form, which a server takes too: RFC 9112 §3.2.2).
    let sdk = reqwest::Client::new();
    let answer = sdk.get(format!("{}/status/200", proxy.url())).send().await;
    assert_eq!(answer.unwrap().status(), 200);
    assert_eq!(
        proxy.next_flow().await.request.url,
        origin.url("/status/200")
    );
    let to_itself = format!(
        "GET http://{}/status/200 HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        proxy.addr, proxy.addr
    );
    let mut raw = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    raw.write_all(to_itself.as_bytes()).await.unwrap();
    let head = support::read_head(&mut raw).await.unwrap();
    assert!(String::from_utf8_lossy(&head).starts_with("HTTP/1.1 200"));
    assert_eq!(
        proxy.next_flow().await.request.url,
        origin.url("/status/200")
    );
}

#[test]
fn kinspect_ca_shows_and_exports_without_the_key_unless_asked() {
    let home = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let ca = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_kinspect"))
            .args(["ca", "--ca-dir"])
            .arg(home.path())
            .args(args)
            .output()
            .unwrap()
    };
    let shown = ca(&[]);
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.status.success());
    assert!(
        text.contains("SHA-256:") && text.contains("Valid:") && text.contains("kinspect.ca"),
        "{text}"
    );

    let exported = ca(&["--export", out.path().to_str().unwrap()]);
    assert!(
        exported.status.success(),
        "{}",
        String::from_utf8_lossy(&exported.stderr)
    );
    assert!(out.path().join("kinspect-ca.pem").exists());
    assert!(out.path().join("kinspect-ca.cer").exists());
    assert!(
        !out.path().join("kinspect-ca-key.pem").exists(),
        "never the key unless asked"
    );

    assert!(
        ca(&["--export", out.path().to_str().unwrap(), "--with-key"])
            .status
            .success()
    );
    let key = out.path().join("kinspect-ca-key.pem");
    assert!(key.exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    // A file where the directory should be: said so, nothing written.
    let file = out.path().join("kinspect-ca.pem");
    let refused = ca(&["--export", file.to_str().unwrap()]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("--export takes a directory") && stderr.contains("is a file"),
        "{stderr}"
    );
}

#[test]
fn kinspect_ca_export_never_overwrites_a_ca() {
    let run = |home: &std::path::Path, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_kinspect"))
            .args(["ca", "--ca-dir"])
            .arg(home)
            .args(args)
            .output()
            .unwrap()
    };
    let files = ["kinspect-ca.pem", "kinspect-ca.cer", "kinspect-ca-key.pem"];
    let contents = |dir: &std::path::Path| files.map(|f| std::fs::read(dir.join(f)).unwrap());
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    assert!(run(a.path(), &[]).status.success() && run(b.path(), &[]).status.success());
    let (a_files, b_files) = (contents(a.path()), contents(b.path()));

    // Into the CA's own directory, key included: nothing to do, nothing emptied.
    let own = run(
        a.path(),
        &["--export", a.path().to_str().unwrap(), "--with-key"],
    );
    assert!(own.status.success(), "{own:?}");
    assert!(String::from_utf8_lossy(&own.stdout).contains("already there"));
    assert_eq!(contents(a.path()), a_files);
    assert!(run(a.path(), &[]).status.success(), "the CA still loads");

    // Into another CA's directory: refused, naming the file; that CA is untouched.
    let other = run(a.path(), &["--export", b.path().to_str().unwrap()]);
    assert!(!other.status.success());
    let said = String::from_utf8_lossy(&other.stderr);
    assert!(
        said.contains("kinspect-ca.pem already exists and is not this CA's"),
        "{said}"
    );
    assert_eq!(contents(b.path()), b_files);
}

#[test]
fn kinspect_env_exports_absolute_paths_and_an_empty_kinspect_home_is_unset() {
    let dir = tempfile::tempdir().unwrap();
    // A CA directory given relative to where the shell was: the variables it evaluates
    // still name the files after a `cd`.
    let output = Command::new(env!("CARGO_BIN_EXE_kinspect"))
        .args(["env", "--listen", "127.0.0.1:18080", "--ca-dir", "rel-ca"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    for name in ["SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS", "KINSPECT_CA"] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("export {name}=")))
            .unwrap();
        let path = line.split_once('=').unwrap().1.trim_matches('\'');
        assert!(Path::new(path).is_absolute(), "{line}");
        assert!(
            Path::new(path).starts_with(dir.path().join("rel-ca")),
            "{line}"
        );
        assert!(Path::new(path).is_file(), "{line}");
    }
    // KINSPECT_HOME= is no home in the current directory: the CA goes under HOME.
    let home = dir.path().join("home");
    let output = Command::new(env!("CARGO_BIN_EXE_kinspect"))
        .arg("ca")
        .env("KINSPECT_HOME", "")
        .env("HOME", &home)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(home.join(".kinspect/kinspect-ca.pem").is_file());
    assert!(!dir.path().join("kinspect-ca.pem").exists());
}
