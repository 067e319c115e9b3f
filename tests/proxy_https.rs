//! HTTPS interception: reqwest through kinspect, trusting only kinspect's CA.

mod support;

use kinspect::flow::{FlowKind, HttpVersion};
use std::time::Duration;
use support::{Origin, OriginKind, TestCa, TestProxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_http1_get_is_intercepted_and_recorded() {
    let origin = Origin::start(OriginKind::Https).await;
    let mut proxy = TestProxy::start(Some(&origin), |_| {}).await;
    let client = proxy.client_builder().http1_only().build().unwrap();

    let response = client.get(origin.url("/echo?q=1")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), http::Version::HTTP_11);
    let echo: serde_json::Value = response.json().await.unwrap();
    assert_eq!(echo["method"], "GET");
    // The origin offers h2, so kinspect speaks HTTP/2 upstream even for an HTTP/1.1 client.
    assert_eq!(echo["version"], "HTTP/2.0");

    let flow = proxy.next_flow().await;
    assert_eq!(flow.kind, FlowKind::Http);
    assert_eq!(flow.request.method, "GET");
    assert_eq!(flow.request.url, origin.url("/echo?q=1"));
    assert_eq!(flow.request.version, HttpVersion::Http11);
    assert_eq!(flow.scheme, "https");
    assert_eq!(flow.host, "localhost");
    assert_eq!(flow.port, origin.addr.port());
    let response = flow.response.as_ref().unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.version, HttpVersion::Http2);
    assert!(!response.from_proxy);
    assert_eq!(
        response.headers.get("X-Kinvey-Request-Id").as_deref(),
        Some("0123456789abcdef0123456789abcdef")
    );
    let body: serde_json::Value = serde_json::from_slice(&response.body.bytes).unwrap();
    assert_eq!(body, echo);
    assert_eq!(response.body.wire_size, response.body.bytes.len() as u64);
    assert!(flow.error.is_none(), "{:?}", flow.error);

    let client_tls = flow.client_tls.as_ref().unwrap();
    assert_eq!(client_tls.sni.as_deref(), Some("localhost"));
    assert_eq!(client_tls.alpn.as_deref(), Some("http/1.1"));
    assert_eq!(client_tls.version.as_deref(), Some("TLSv1.3"));
    let server_tls = flow.server_tls.as_ref().unwrap();
    assert_eq!(server_tls.alpn.as_deref(), Some("h2"));
    assert_eq!(flow.server_ip, Some("127.0.0.1".parse().unwrap()));
    // The first exchange opened the upstream connection: its set-up is timed.
    assert!(flow.timings.connect.is_some());
    assert!(flow.timings.ssl.is_some());
    assert!(flow.timings.ssl <= flow.timings.connect);
}

/// A client that offers only HTTP/1.0 by ALPN (`curl --http1.0`) is served, not refused
/// as if it did not trust kinspect's CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_client_offering_only_http10_is_served() {
    let origin = Origin::start(OriginKind::Https).await;
    let mut proxy = TestProxy::start(Some(&origin), |_| {}).await;
    let target = format!("localhost:{}", origin.addr.port());
    let tunnel = proxy.open_tunnel(&target).await;
    let mut tls = proxy
        .tls_connector(&[b"http/1.0"])
        .connect("localhost".try_into().unwrap(), tunnel)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.0"[..]));
    tls.write_all(b"GET /echo HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
    let flow = proxy.next_flow().await;
    assert_eq!(flow.request.version, HttpVersion::Http10);
    let alpn = flow.client_tls.as_ref().and_then(|tls| tls.alpn.as_deref());
    assert_eq!(alpn, Some("http/1.0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_http2_post_is_intercepted_and_the_connection_reused() {
    let origin = Origin::start(OriginKind::Https).await;
    let mut proxy = TestProxy::start(Some(&origin), |_| {}).await;
    let client = proxy.client();

    let payload = r#"{"username":"ada","password":"s3cret"}"#;
    for i in 0..3 {
        let response = client
            .post(origin.url("/echo/login"))
            .header("content-type", "application/json")
            .header("X-Kinvey-API-Version", "5")
            .body(payload)
            .send()
            .await
            .unwrap();
        assert_eq!(response.version(), http::Version::HTTP_2, "request {i}");
        let echo: serde_json::Value = response.json().await.unwrap();
        assert_eq!(echo["body"], payload);
        assert_eq!(echo["method"], "POST");
    }
    let flows = [
        proxy.next_flow().await,
        proxy.next_flow().await,
        proxy.next_flow().await,
    ];
    for flow in &flows {
        assert_eq!(flow.request.version, HttpVersion::Http2);
        assert_eq!(flow.request.method, "POST");
        assert_eq!(&flow.request.body.bytes[..], payload.as_bytes());
        assert_eq!(flow.request.body.wire_size, payload.len() as u64);
        assert!(!flow.request.body.truncated);
        assert_eq!(
            flow.request.headers.get("x-kinvey-api-version").as_deref(),
            Some("5")
        );
        assert_eq!(
            flow.client_tls.as_ref().unwrap().alpn.as_deref(),
            Some("h2")
        );
    }
    // One upstream connection serves all three: only one flow carries its set-up time.
    let with_setup = flows.iter().filter(|f| f.timings.connect.is_some()).count();
    assert_eq!(with_setup, 1);
    assert!(flows[0].id < flows[1].id && flows[1].id < flows[2].id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_client_to_http1_only_origin_is_translated() {
    let origin = Origin::start(OriginKind::HttpsH1Only).await;
    let mut proxy = TestProxy::start(Some(&origin), |_| {}).await;
    let response = proxy
        .client()
        .get(origin.url("/echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    let echo: serde_json::Value = response.json().await.unwrap();
    assert_eq!(echo["version"], "HTTP/1.1");
    let headers = echo["headers"].as_array().unwrap();
    let host = headers
        .iter()
        .find(|h| h[0] == "host")
        .expect("a Host header upstream");
    assert_eq!(host[1], format!("localhost:{}", origin.addr.port()));

    let flow = proxy.next_flow().await;
    assert_eq!(flow.request.version, HttpVersion::Http2);
    assert_eq!(flow.response.unwrap().version, HttpVersion::Http11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_and_gzip_responses_pass_through_byte_exact() {
    let origin = Origin::start(OriginKind::Https).await;
    let mut proxy = TestProxy::start(Some(&origin), |_| {}).await;
    let client = proxy.client_builder().http1_only().build().unwrap();

    let gz = client.get(origin.url("/gzip")).send().await.unwrap();
    assert_eq!(gz.headers()["content-encoding"], "gzip");
    let raw = gz.bytes().await.unwrap();
    assert_eq!(&raw[..], &support::gzip(support::GZIP_TEXT.as_bytes())[..]);
    let flow = proxy.next_flow().await;
    let response = flow.response.as_ref().unwrap();
    assert_eq!(
        response.body.bytes, raw,
        "the capture keeps the encoded bytes"
    );
    assert_eq!(
        &flow.decoded_response_body().unwrap()[..],
        support::GZIP_TEXT.as_bytes()
    );

    let chunked = client.get(origin.url("/chunked")).send().await.unwrap();
    assert!(chunked.headers().get("content-length").is_none());
    assert_eq!(chunked.text().await.unwrap(), "alpha-beta-gamma");
    let flow = proxy.next_flow().await;
    assert_eq!(&flow.response.unwrap().body.bytes[..], b"alpha-beta-gamma");
    assert!(flow.timings.receive >= std::time::Duration::from_millis(20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mib_body_streams_through_and_its_capture_stops_at_the_limit() {
    const SIZE: u64 = 100 * 1024 * 1024;
    const LIMIT: usize = 1024 * 1024;
    let origin = Origin::start(OriginKind::Https).await;
    let mut proxy = TestProxy::start(Some(&origin), |c| c.max_body = LIMIT).await;
    let client = proxy.client();

    let mut response = client
        .get(origin.url(&format!("/bytes/{SIZE}")))
        .send()
        .await
        .unwrap();
    let mut received = 0u64;
    while let Some(chunk) = response.chunk().await.unwrap() {
        for (i, b) in chunk.iter().enumerate() {
            assert_eq!(*b, support::pattern_byte(received + i as u64));
        }
        received += chunk.len() as u64;
    }
    assert_eq!(received, SIZE);

    let flow = proxy.next_flow().await;
    let body = &flow.response.as_ref().unwrap().body;
    assert_eq!(body.wire_size, SIZE);
    assert_eq!(body.bytes.len(), LIMIT);
    assert!(body.truncated);
    assert!(!body.incomplete);
    assert!(body
        .bytes
        .iter()
        .enumerate()
        .all(|(i, b)| *b == support::pattern_byte(i as u64)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_connections_to_one_host_mint_one_leaf() {
    let origin = Origin::start(OriginKind::Https).await;
    let mut proxy = TestProxy::start(Some(&origin), |_| {}).await;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        // A client each, so every request makes its own TLS handshake with kinspect.
        let client = proxy.client_builder().http1_only().build().unwrap();
        let url = origin.url("/status/204");
        tasks.push(tokio::spawn(async move {
            client.get(url).send().await.unwrap().status()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 204);
    }
    for _ in 0..16 {
        proxy.next_flow().await;
    }
    assert_eq!(proxy.handle.leaves_minted(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_hosts_are_intercepted_with_an_ip_certificate() {
    let origin = Origin::start(OriginKind::Https).await;
    let mut proxy = TestProxy::start(Some(&origin), |_| {}).await;
    let url = format!("https://127.0.0.1:{}/echo", origin.addr.port());
    let response = proxy.client().get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let flow = proxy.next_flow().await;
    assert_eq!(flow.host, "127.0.0.1");
    assert_eq!(
        flow.client_tls.unwrap().sni,
        None,
        "clients send no SNI for IPs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_to_an_ip_whose_tls_names_a_host_goes_to_that_ip() {
    // An app that resolves names itself (or a hosts entry on the device): CONNECT to an
    // address, TLS for a name. The name resolves nowhere, so only the address reaches
    // the origin; the name is what the flow shows and the origin's certificate names.
    let name = "app.kinspect.invalid";
    let ca = TestCa::new();
    let origin = Origin::start_tls(ca.leaf_config(&[name], None, &[b"http/1.1"]), ca).await;
    let mut proxy = TestProxy::start(Some(&origin), |_| {}).await;
    let tunnel = proxy.open_tunnel(&origin.addr.to_string()).await;
    let server_name = rustls_pki_types::ServerName::try_from(name).unwrap();
    let mut tls = proxy
        .tls_connector(&[b"http/1.1"])
        .connect(server_name, tunnel)
        .await
        .unwrap();
    let request = format!("GET /status/200 HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let flow = proxy.next_flow().await;
    assert_eq!(flow.status(), Some(200));
    assert_eq!(flow.host, name);
    assert_eq!(
        flow.request.url,
        format!("https://{name}:{}/status/200", origin.addr.port())
    );
    assert_eq!(flow.server_ip, Some(origin.addr.ip()));
    assert_eq!(flow.client_tls.unwrap().sni.as_deref(), Some(name));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_naming_an_ipv6_address_without_brackets_is_served() {
    // Python's http.client before 3.13 and `openssl s_client -proxy` write the target
    // of a tunnel to https://[::1]:PORT as `::1:PORT`.
    let mut proxy = TestProxy::start(None, |_| {}).await;
    // No origin listens there (nor, on a machine without IPv6, can): kinspect's 502.
    let port = {
        let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        unused.local_addr().unwrap().port()
    };
    let tunnel = proxy.open_tunnel(&format!("::1:{port}")).await;
    let server_name = rustls_pki_types::ServerName::try_from("::1").unwrap();
    let mut tls = proxy
        .tls_connector(&[b"http/1.1"])
        .connect(server_name, tunnel)
        .await
        .expect("a leaf for the address ::1");
    let request = format!("GET /x HTTP/1.1\r\nHost: [::1]:{port}\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
    let flow = proxy.next_flow().await;
    assert_eq!(flow.host, "::1");
    assert_eq!(flow.request.url, format!("https://[::1]:{port}/x"));
    assert!(flow.error.is_some());
}

/// The names of the fields an `/echo` origin received, in order.
fn echoed_names(echo: &serde_json::Value) -> Vec<String> {
    echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| pair[0].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_fields_keep_their_order_and_http2_origins_get_no_host_field() {
    for kind in [OriginKind::Https, OriginKind::HttpsH1Only] {
        let origin = Origin::start(kind).await;
        let mut proxy = TestProxy::start(Some(&origin), |_| {}).await;
        let client = proxy.client_builder().http1_only().build().unwrap();
        let echo: serde_json::Value = client
            .get(origin.url("/echo"))
            .header("X-First", "1")
            .header("Connection", "keep-alive")
            .header("X-Second", "2")
            .header("X-Third", "3")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let flow = proxy.next_flow().await;
        let received = echoed_names(&echo);
        let hosts = received.iter().filter(|n| *n == "host").count();
        if echo["version"] == "HTTP/2.0" {
            // :authority says it; nginx answers 400 to a Host field beside it.
            assert_eq!(hosts, 0, "{received:?}");
        } else {
            assert_eq!(hosts, 1, "{received:?}");
        }
        // Everything but the hop-by-hop fields (and Host over HTTP/2), in the order the
        // client sent: Host where it put it.
        let sent: Vec<String> = flow
            .request
            .headers
            .iter()
            .map(|h| h.name.to_lowercase().to_string())
            .filter(|n| n != "connection" && (hosts == 1 || n != "host"))
            .collect();
        assert_eq!(received, sent, "{:?}", echo["version"]);
        assert!(sent.starts_with(&["x-first".into(), "x-second".into(), "x-third".into()]));
    }

    // An HTTP/2 client sends no Host: an HTTP/1.1 origin gets one, first.
    let origin = Origin::start(OriginKind::HttpsH1Only).await;
    let proxy = TestProxy::start(Some(&origin), |_| {}).await;
    let echo: serde_json::Value = proxy
        .client()
        .get(origin.url("/echo"))
        .header("X-First", "1")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let received = echoed_names(&echo);
    assert_eq!(received[..2], ["host", "x-first"], "{received:?}");

    // A client's Host stays where it put it: here first, though it names the target.
    let origin = Origin::start(OriginKind::Plain).await;
    let proxy = TestProxy::start(None, |_| {}).await;
    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let url = origin.url("/echo");
    let authority = url.trim_start_matches("http://").trim_end_matches("/echo");
    let request = format!(
        "GET {url} HTTP/1.1\r\nHost: {authority}\r\nX-First: 1\r\nConnection: close\r\n\r\n"
    );
    tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes())
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut answer)
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    let body = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
    let echo: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(echoed_names(&echo), ["host", "x-first"]);
}

/// A TLS connection to `origin`, through a tunnel of `proxy`, that agreed on HTTP/2.
async fn h2_through_tunnel(
    proxy: &TestProxy,
    origin: &Origin,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let target = format!("localhost:{}", origin.addr.port());
    let tunnel = proxy.open_tunnel(&target).await;
    proxy
        .tls_connector(&[b"h2"])
        .connect("localhost".try_into().unwrap(), tunnel)
        .await
        .unwrap()
}

/// An HTTP/2 client that cancels one download (RST_STREAM) keeps its connection: the
/// flow says the request was cancelled, and the next request on it is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_stream_cancelled_by_its_client_is_recorded_as_cancelled() {
    use http_body_util::{BodyExt, Empty};
    let origin = Origin::start(OriginKind::Https).await;
    let mut proxy = TestProxy::start(Some(&origin), |_| {}).await;
    let tls = h2_through_tunnel(&proxy, &origin).await;
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let get = |path: &str| {
        http::Request::get(origin.url(path))
            .body(Empty::<bytes::Bytes>::new())
            .unwrap()
    };
    let response = sender.send_request(get("/bytes/1000000000")).await.unwrap();
    let mut body = response.into_body();
    body.frame().await.unwrap().unwrap();
    drop(body);
    let flow = proxy.next_flow().await;
    let error = flow.error.expect("recorded as cancelled");
    assert_eq!(error.kind, kinspect::flow::FlowErrorKind::ClientAbort);
    assert!(
        error.message.contains("cancelled the request"),
        "{}",
        error.message
    );
    let next = sender.send_request(get("/echo")).await.unwrap();
    assert_eq!(next.status(), 200);
    next.into_body().collect().await.unwrap();
    assert!(proxy.next_flow().await.error.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_stream_reset_right_behind_its_headers_is_recorded() {
    let origin = Origin::start(OriginKind::Https).await;
    let mut proxy = TestProxy::start(Some(&origin), |_| {}).await;
    let tls = h2_through_tunnel(&proxy, &origin).await;
    let (mut client, connection) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(connection);
    let request = http::Request::get(origin.url("/hang")).body(()).unwrap();
    let (_response, mut stream) = client.send_request(request, false).unwrap();
    // Queued behind the HEADERS frame: both go out in one write. Whether the stream's
    // task begins the exchange before it sees the reset or not, the flow is recorded
    // (this checks that it is never lost, not which way it went).
    stream.send_reset(h2::Reason::CANCEL);
    let flow = proxy.next_flow().await;
    assert_eq!(flow.request.url, origin.url("/hang"));
    assert_eq!(
        flow.error.expect("recorded").kind,
        kinspect::flow::FlowErrorKind::ClientAbort
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_upload_ended_by_an_empty_frame_to_an_http1_origin_is_recorded_whole() {
    // curl --http2 -d '': `content-length: 0`, then an empty DATA frame that ends the
    // stream; an HTTP/1.1 origin's connection sends the declared bytes and polls no
    // further, so the end comes after the response (or never).
    let origin = Origin::start(OriginKind::HttpsH1Only).await;
    let mut proxy = TestProxy::start(Some(&origin), |_| {}).await;
    let tls = h2_through_tunnel(&proxy, &origin).await;
    let (client, connection) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    for body in ["", "abc"] {
        let request = http::Request::post(origin.url("/echo"))
            .header("content-length", body.len().to_string())
            .body(())
            .unwrap();
        let (response, mut stream) = client.send_request(request, false).unwrap();
        if !body.is_empty() {
            stream.send_data(bytes::Bytes::from(body), false).unwrap();
        }
        stream.send_data(bytes::Bytes::new(), true).unwrap();
        let response = response.await.unwrap();
        assert_eq!(response.status(), 200);
        let flow = proxy.next_flow().await;
        assert_eq!(flow.request.method, "POST");
        assert_eq!(flow.request.body.wire_size, body.len() as u64);
        assert!(!flow.request.body.incomplete, "{body:?}: {:?}", flow.error);
        client = client.ready().await.unwrap();
    }
}

/// An HTTP/1.1 client's `Expect: 100-continue` upload to an HTTP/2 origin: hyper passes
/// no interim answer on from HTTP/2, so the body goes at once (the client is told to
/// send it straight away, not after the second kinspect waits for an origin's 100).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expect_100_continue_upload_to_an_http2_origin_goes_at_once() {
    let origin = Origin::start(OriginKind::Https).await;
    let mut proxy = TestProxy::start(Some(&origin), |_| {}).await;
    let target = format!("localhost:{}", origin.addr.port());
    let tunnel = proxy.open_tunnel(&target).await;
    let mut tls = proxy
        .tls_connector(&[b"http/1.1"])
        .connect("localhost".try_into().unwrap(), tunnel)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let ask = format!(
        "POST /echo HTTP/1.1\r\nHost: {target}\r\nContent-Length: 5\r\n\
         Expect: 100-continue\r\n\r\n"
    );
    tls.write_all(ask.as_bytes()).await.unwrap();
    let interim = support::read_head(&mut tls).await.unwrap();
    let interim = String::from_utf8_lossy(&interim).into_owned();
    assert!(interim.starts_with("HTTP/1.1 100"), "{interim}");
    assert!(
        started.elapsed() < std::time::Duration::from_millis(800),
        "told to send after {:?}",
        started.elapsed()
    );
    tls.write_all(b"hello").await.unwrap();
    let head = support::read_head(&mut tls).await.unwrap();
    assert!(String::from_utf8_lossy(&head).starts_with("HTTP/1.1 200"));
    let flow = proxy.next_flow().await;
    assert_eq!(flow.status(), Some(200));
    assert_eq!(&flow.request.body.bytes[..], b"hello");
    let echo: serde_json::Value =
        serde_json::from_slice(&flow.response.unwrap().body.bytes).unwrap();
    assert_eq!(echo["version"], "HTTP/2.0");
    assert_eq!(echo["body"], "hello");
}

/// An HTTP/2 origin that declares `declared` bytes, sends `sent` of them and resets the
/// stream with `NO_ERROR` `after` that (hyper reads such a reset as the body's end).
async fn short_http2_origin(declared: usize, sent: usize, after: Duration) -> Origin {
    let ca = TestCa::new();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(ca.server_config(&[b"h2"])));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let tls = acceptor.accept(stream).await.unwrap();
                let mut connection = h2::server::handshake(tls).await.unwrap();
                // The reset is sent from this loop, which drives the connection.
                let mut cut = None;
                let mut at = tokio::time::Instant::now();
                loop {
                    tokio::select! {
                        next = connection.accept() => {
                            let Some(Ok((_request, mut respond))) = next else { break };
                            let response = http::Response::builder()
                                .header("content-length", declared)
                                .body(())
                                .unwrap();
                            let mut stream = respond.send_response(response, false).unwrap();
                            let data = bytes::Bytes::from(vec![b'x'; sent]);
                            stream.send_data(data, false).unwrap();
                            cut = Some(stream);
                            at = tokio::time::Instant::now() + after;
                        }
                        () = tokio::time::sleep_until(at), if cut.is_some() => {
                            cut.take().unwrap().send_reset(h2::Reason::NO_ERROR);
                        }
                    }
                }
            });
        }
    });
    Origin::from_parts(addr, ca, task)
}

/// An HTTP/2 origin that ends a response short of its `content-length` with a
/// `NO_ERROR` reset: the flow says the body broke off (hyper takes it for the end).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_response_ended_short_of_its_declared_length_is_recorded_broken() {
    // Streamed: the client gets what came and no more.
    let origin = short_http2_origin(100_000, 40_000, Duration::from_millis(100)).await;
    let mut proxy = TestProxy::start(Some(&origin), |_| {}).await;
    let response = proxy.client().get(origin.url("/big")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.bytes().await.is_err(), "the body is short");
    let flow = proxy.next_flow().await;
    let response = flow.response.expect("its head");
    assert_eq!(response.status, 200);
    assert!(response.body.incomplete);
    assert_eq!(response.body.wire_size, 40_000);
    let error = flow.error.expect("an error");
    assert_eq!(error.kind, kinspect::flow::FlowErrorKind::Protocol);
    assert!(
        error
            .message
            .ends_with("it ended after 40000 of the 100000 bytes its Content-Length declared"),
        "{}",
        error.message
    );

    // Small, so read (for at most 10 ms) before its head goes out: broken off within
    // that, the client gets kinspect's 502 (past it, the head has gone as above).
    let origin = short_http2_origin(1000, 400, Duration::from_millis(2)).await;
    let mut proxy = TestProxy::start(Some(&origin), |_| {}).await;
    let response = proxy
        .client()
        .get(origin.url("/small"))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let flow = proxy.next_flow().await;
    assert_eq!(flow.status(), Some(status.as_u16()));
    if status == 502 {
        let body = flow.response.as_ref().unwrap().body.bytes.clone();
        assert!(String::from_utf8_lossy(&body).contains("UpstreamProtocolError"));
    } else {
        assert_eq!(status, 200);
        assert!(flow.response.as_ref().unwrap().body.incomplete);
    }
    let error = flow.error.expect("an error");
    assert!(
        error
            .message
            .contains("it ended after 400 of the 1000 bytes"),
        "{}",
        error.message
    );

    // The answer to a HEAD declares a length it does not carry: not short of it, even
    // when its stream ends after the head.
    let origin = short_http2_origin(1000, 0, Duration::from_millis(2)).await;
    let mut proxy = TestProxy::start(Some(&origin), |_| {}).await;
    let response = proxy
        .client()
        .head(origin.url("/head"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let flow = proxy.next_flow().await;
    assert!(flow.error.is_none(), "{:?}", flow.error);
    assert_eq!(flow.status(), Some(200));
}
