//! Upstream failures answer 502/504 with a Kinvey-shaped JSON body and an
//! `X-Kinspect-Error` header, and are recorded as flows carrying the error.

mod support;

use std::time::Duration;

use kinspect::flow::FlowErrorKind;
use support::{Origin, OriginKind, TestProxy};

async fn error_body(response: reqwest::Response) -> serde_json::Value {
    assert_eq!(
        response.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    response.json().await.unwrap()
}

/// A port nobody listens on (a listener bound and dropped).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_port_is_a_502_and_a_recorded_flow() {
    let port = closed_port();
    let mut proxy = TestProxy::start(None, |_| {}).await;
    for url in [
        format!("http://127.0.0.1:{port}/x"),
        format!("https://127.0.0.1:{port}/x"),
    ] {
        let response = proxy.client().get(&url).send().await;
        let flow = proxy.next_flow().await;
        let error = flow.error.as_ref().expect("the flow carries the error");
        if url.starts_with("http:") {
            let response = response.unwrap();
            assert_eq!(response.status(), 502);
            assert_eq!(response.headers()["x-kinspect-error"], "connect");
            let body = error_body(response).await;
            assert_eq!(body["error"], "UpstreamConnectFailure");
            assert!(body["description"].is_string());
            assert!(body["debug"].as_str().unwrap().contains(&port.to_string()));
            assert_eq!(error.kind, FlowErrorKind::Connect);
            assert_eq!(flow.response.as_ref().unwrap().status, 502);
            assert!(flow.response.as_ref().unwrap().from_proxy);
        } else {
            // After CONNECT the tunnel is intercepted first, so the client still gets
            // its 502 inside TLS.
            assert_eq!(response.unwrap().status(), 502);
            assert_eq!(error.kind, FlowErrorKind::Connect);
        }
        assert!(error.message.contains("refused"), "{}", error.message);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_to_an_unreachable_origin_keeps_its_body() {
    let port = closed_port();
    let mut proxy = TestProxy::start(None, |_| {}).await;
    let origin = Origin::start(OriginKind::Plain).await;
    let https = proxy.client();
    for url in [
        format!("http://127.0.0.1:{port}/orders"),
        format!("https://127.0.0.1:{port}/orders"),
    ] {
        // The payload is what one wants to see when the backend is down.
        let payload = r#"{"item":"book","quantity":2}"#;
        let response = https.post(&url).body(payload).send().await.unwrap();
        assert_eq!(response.status(), 502, "{url}");
        let flow = proxy.next_flow().await;
        assert_eq!(flow.error.as_ref().unwrap().kind, FlowErrorKind::Connect);
        assert_eq!(&flow.request.body.bytes[..], payload.as_bytes(), "{url}");
        assert_eq!(flow.request.body.wire_size, payload.len() as u64);
        assert!(!flow.request.body.incomplete, "{url}");
    }
    proxy.assert_serves(&origin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_origin_certificate_is_a_502_saying_why() {
    let origin = Origin::start(OriginKind::Https).await;
    // No --upstream-ca: the origin's test CA is unknown to kinspect.
    let mut proxy = TestProxy::start(None, |_| {}).await;
    let response = proxy
        .client()
        .get(origin.url("/echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    assert_eq!(response.headers()["x-kinspect-error"], "tls");
    let body = error_body(response).await;
    assert_eq!(body["error"], "UpstreamTLSFailure");
    let debug = body["debug"].as_str().unwrap();
    assert!(debug.contains("UnknownIssuer"), "{debug}");
    assert!(debug.contains("--upstream-ca"), "{debug}");
    let flow = proxy.next_flow().await;
    assert_eq!(flow.error.unwrap().kind, FlowErrorKind::Tls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_upstream_accepts_an_untrusted_origin() {
    let origin = Origin::start(OriginKind::Https).await;
    let mut proxy = TestProxy::start(None, |c| c.insecure_upstream = true).await;
    let response = proxy
        .client()
        .get(origin.url("/echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(proxy.next_flow().await.error.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_that_never_answers_is_a_504() {
    let origin = Origin::start(OriginKind::Https).await;
    let mut proxy = TestProxy::start(Some(&origin), |c| {
        c.upstream_timeout = Duration::from_millis(500)
    })
    .await;
    let response = proxy
        .client()
        .get(origin.url("/hang"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 504);
    assert_eq!(response.headers()["x-kinspect-error"], "timeout");
    let body = error_body(response).await;
    assert_eq!(body["error"], "UpstreamTimeout");
    assert!(body["debug"]
        .as_str()
        .unwrap()
        .contains("--upstream-timeout"));
    let flow = proxy.next_flow().await;
    assert_eq!(flow.error.as_ref().unwrap().kind, FlowErrorKind::Timeout);
    assert_eq!(flow.status(), Some(504));
    assert_eq!(
        flow.server_ip,
        Some("127.0.0.1".parse().unwrap()),
        "it did connect"
    );
    // The proxy keeps serving.
    let ok = proxy
        .client()
        .get(origin.url("/status/200"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_abandons_a_download_is_recorded_as_aborted() {
    let origin = Origin::start(OriginKind::Https).await;
    let mut proxy = TestProxy::start(Some(&origin), |_| {}).await;
    let client = proxy.client_builder().http1_only().build().unwrap();
    let mut response = client
        .get(origin.url("/bytes/1073741824"))
        .send()
        .await
        .unwrap();
    response.chunk().await.unwrap();
    drop(response);
    drop(client);
    let flow = proxy.next_flow().await;
    let error = flow.error.expect("an abandoned download is an error");
    assert_eq!(error.kind, FlowErrorKind::ClientAbort);
    let body = &flow.response.unwrap().body;
    assert!(body.incomplete);
    assert!(body.wire_size < 1073741824);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_gives_up_before_the_response_headers_is_still_recorded() {
    let origin = Origin::start(OriginKind::Https).await;
    let mut proxy = TestProxy::start(Some(&origin), |c| {
        c.upstream_timeout = Duration::from_secs(60)
    })
    .await;
    // HTTP/2: the client's own timeout resets the stream.
    let impatient = proxy
        .client_builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    assert!(impatient.get(origin.url("/hang")).send().await.is_err());
    let flow = proxy.next_flow().await;
    let error = flow.error.expect("the abandoned exchange is recorded");
    assert_eq!(error.kind, FlowErrorKind::ClientAbort);
    assert!(
        error.message.contains("before the response headers"),
        "{}",
        error.message
    );
    assert!(flow.response.is_none());
    assert!(flow.timings.wait >= Duration::from_millis(250));
    // It had gone out: the connection it went on is recorded, set-up included.
    assert_eq!(flow.server_ip, Some("127.0.0.1".parse().unwrap()));
    assert!(flow.server_tls.is_some());
    assert!(flow.timings.connect.is_some());

    // HTTP/1.1 in plain HTTP: the client closes its connection.
    let plain = Origin::start(OriginKind::Plain).await;
    let mut socket = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: localhost\r\n\r\n",
        plain.url("/hang")
    );
    tokio::io::AsyncWriteExt::write_all(&mut socket, request.as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(socket);
    let flow = proxy.next_flow().await;
    assert_eq!(flow.error.unwrap().kind, FlowErrorKind::ClientAbort);
    assert_eq!(flow.request.url, plain.url("/hang"));
    assert_eq!(flow.server_ip, Some("127.0.0.1".parse().unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upload_is_not_an_upstream_timeout() {
    let origin = Origin::start(OriginKind::Plain).await;
    let mut proxy =
        TestProxy::start(None, |c| c.upstream_timeout = Duration::from_millis(400)).await;
    // Three chunks 300 ms apart: 900 ms of upload against a 400 ms limit.
    let chunks = futures_util::stream::unfold(0u8, |i| async move {
        if i == 3 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        Some((
            Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'u'; 1000])),
            i + 1,
        ))
    });
    let response = proxy
        .client()
        .post(origin.url("/echo"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        200,
        "the origin answered once the upload ended"
    );
    let echo: serde_json::Value = response.json().await.unwrap();
    assert_eq!(echo["body_len"], 3000);
    let flow = proxy.next_flow().await;
    assert!(flow.error.is_none(), "{:?}", flow.error);
}
