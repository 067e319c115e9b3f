//! `--upstream-proxy`: every connection to an origin goes through a parent proxy, with its
//! credentials (HTTPS in a CONNECT tunnel, plain HTTP in absolute form), but to this
//! machine's own servers; a parent that refuses is a 502 that says what it answered.
//!
//! The origins listen on 127.0.0.1 but are named `origin.test` (a name kinspect never
//! resolves: the parent does, here to 127.0.0.1), as origins beyond a parent proxy are.

mod support;

use support::{FakeParent, Origin, OriginKind, TestProxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origins_are_reached_through_the_upstream_proxy_with_its_credentials() {
    let parent = FakeParent::start(None).await;
    let plain = Origin::start(OriginKind::Plain).await;
    let tls = Origin::start_https_named(&["origin.test"]).await;
    let url = format!("http://corp%40me:s3cr%3At@127.0.0.1:{}", parent.port);
    let mut proxy = TestProxy::start(Some(&tls), |c| {
        c.upstream_proxy = Some(url.parse().unwrap());
    })
    .await;
    let client = proxy.client();
    let urls = [
        format!("http://origin.test:{}/echo", plain.addr.port()),
        format!("https://origin.test:{}/echo", tls.addr.port()),
    ];
    for url in &urls {
        let response = client.get(url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let flow = proxy.next_flow().await;
        assert!(flow.error.is_none(), "{:?}", flow.error);
        assert_eq!(flow.status(), Some(200));
        // The parent's address is the one connected to; its password is never recorded.
        assert_eq!(flow.server_ip, Some("127.0.0.1".parse().unwrap()));
        assert!(flow.request.headers.get("proxy-authorization").is_none());
    }
    let heads = parent.heads();
    assert_eq!(heads.len(), 2, "{heads:?}");
    // Plain HTTP as a forward proxy takes it; HTTPS in a tunnel.
    assert!(heads[0].starts_with(&format!(
        "GET http://origin.test:{}/echo HTTP/1.1\r\n",
        plain.addr.port()
    )));
    assert!(heads[1].starts_with(&format!(
        "CONNECT origin.test:{port} HTTP/1.1\r\nHost: origin.test:{port}\r\n",
        port = tls.addr.port()
    )));
    // Basic base64("corp@me:s3cr:t").
    let credentials = "proxy-authorization: basic y29ycebtztpzm2nyonq=\r\n";
    assert!(
        heads
            .iter()
            .all(|head| head.to_ascii_lowercase().contains(credentials)),
        "{heads:?}"
    );
    // The origin got the request whole, the parent's credentials not among its fields.
    let plain_again = client.get(&urls[0]).send().await.unwrap();
    let echoed: serde_json::Value = plain_again.json().await.unwrap();
    assert_eq!(
        echoed["uri"],
        format!("http://origin.test:{}/echo", plain.addr.port())
    );
    let fields = echoed["headers"].to_string().to_ascii_lowercase();
    assert!(
        fields.contains(&format!("origin.test:{}", plain.addr.port())),
        "{fields}"
    );
    assert!(proxy.next_flow().await.error.is_none());
    assert_eq!(
        parent.heads().len(),
        2,
        "the kept connection to the parent was reused"
    );

    // This machine's own servers are no parent's to reach.
    let local = [
        plain.url("/echo"),
        format!("http://127.0.0.1:{}/echo", plain.addr.port()),
    ];
    for url in &local {
        let response = client.get(url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(proxy.next_flow().await.error.is_none());
    }
    assert_eq!(parent.heads().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_proxy_that_refuses_is_a_502_that_says_what_it_answered() {
    let parent =
        FakeParent::start(Some("HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")).await;
    let origin = Origin::start(OriginKind::Plain).await;
    let parent_url = format!("http://127.0.0.1:{}", parent.port);
    let mut proxy = TestProxy::start(None, |c| {
        c.upstream_proxy = Some(parent_url.parse().unwrap())
    })
    .await;
    let url = format!("http://origin.test:{}/", origin.addr.port());
    let response = proxy.client().get(&url).send().await.unwrap();
    assert_eq!(response.status(), 502);
    let said = response.text().await.unwrap();
    assert!(said.contains("407 Proxy Authentication Required"), "{said}");
    assert!(
        said.contains("KINSPECT_UPSTREAM_PROXY=http://USER:PASS@127.0.0.1:"),
        "{said}"
    );
    let flow = proxy.next_flow().await;
    assert!(flow.error.unwrap().message.contains("answered"));
    // The proxy keeps serving.
    let again = proxy.client().get(&url).send().await.unwrap();
    assert_eq!(again.status(), 502);
    assert_eq!(parent.heads().len(), 2);
}

/// Runs the kinspect binary with `args` in a home of its own, `KINSPECT_UPSTREAM_PROXY`
/// set to `variable` if given; returns whether it succeeded and what it said on stderr.
/// One still running after 20 s (a proxy that started) is stopped, and has failed.
fn kinspect(args: &[&str], variable: Option<&str>) -> (bool, String) {
    let home = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_kinspect"));
    command
        .args(args)
        .env("KINSPECT_HOME", home.path())
        .env_remove("KINSPECT_UPSTREAM_PROXY")
        .current_dir(home.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    if let Some(value) = variable {
        command.env("KINSPECT_UPSTREAM_PROXY", value);
    }
    let mut child = command.spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut said = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut said).unwrap();
    (status.is_some_and(|s| s.success()), said)
}

#[test]
fn a_bad_upstream_proxy_is_said_without_its_password_and_itself_is_refused() {
    let secret = "http://me:s3cret@proxy.example";
    for (args, variable) in [
        (vec!["--headless", "--upstream-proxy", secret], None),
        (vec!["--headless"], Some(secret)),
    ] {
        let (ok, said) = kinspect(&args, variable);
        assert!(!ok);
        assert!(said.contains("--upstream-proxy"), "{said}");
        assert!(said.contains("no port"), "{said}");
        assert!(!said.contains("s3cret"), "{said}");
    }
    // The variable is the proxy's alone: other commands do not read it.
    let (ok, said) = kinspect(&["ca"], Some(secret));
    assert!(ok, "{said}");

    // A parent that is kinspect itself would loop: refused at the start.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let parent = format!("http://localhost:{port}");
    let (ok, said) = kinspect(
        &[
            "--headless",
            "--listen",
            &listen,
            "--upstream-proxy",
            &parent,
        ],
        None,
    );
    assert!(!ok);
    assert!(said.contains("is kinspect itself"), "{said}");
}
