//! Who may use the proxy and how long it waits: --proxy-auth, --max-connections, loops
//! back into the proxy, and the timeouts on clients (slowloris, idle keep-alive, TLS
//! handshake, idle HTTP/2) and on origins (connect, TLS handshake). After each case the
//! proxy still serves a normal request.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use kinspect::flow::FlowErrorKind;
use kinspect::proxy::{HostOverrides, ProxyCredentials};
use rustls_pki_types::ServerName;
use support::{Origin, OriginKind, TestProxy, STEP};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// Sends `request` and reads until the proxy closes the connection (or [`STEP`]).
async fn exchange_raw(proxy: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    stream.write_all(request).await.unwrap();
    read_to_close(&mut stream).await
}

async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(STEP, stream.read_to_end(&mut answer))
        .await
        .expect("the proxy answers and closes in time");
    String::from_utf8_lossy(&answer).into_owned()
}

/// The JSON body at the end of a raw HTTP/1 response.
fn json_body(response: &str) -> serde_json::Value {
    let body = response.split("\r\n\r\n").nth(1).expect("a body");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}"))
}

/// Waits until the peer closes `stream`; returns how long that took.
async fn closed_after(stream: &mut TcpStream) -> Duration {
    let started = Instant::now();
    let mut sink = Vec::new();
    tokio::time::timeout(STEP, stream.read_to_end(&mut sink))
        .await
        .expect("the proxy closes the connection")
        .ok();
    started.elapsed()
}

/// A client of `proxy` sending `dev:password` as its proxy credentials.
fn client_with_auth(proxy: &TestProxy, password: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .proxy(
            reqwest::Proxy::all(proxy.url())
                .unwrap()
                .basic_auth("dev", password),
        )
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(proxy.ca_pem.as_bytes()).unwrap())
        .timeout(STEP)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_auth_asks_for_credentials_and_never_records_them() {
    let origin = Origin::start(OriginKind::Https).await;
    let credentials: ProxyCredentials = "dev:s3cret".parse().unwrap();
    let mut proxy = TestProxy::start(Some(&origin), |c| c.proxy_auth = Some(credentials)).await;

    // No credentials: 407 with a challenge, for plain requests and for CONNECT.
    let plain = format!(
        "GET http://127.0.0.1:{}/echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        origin.addr.port()
    );
    let answer = exchange_raw(proxy.addr, plain.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 407"), "{answer}");
    assert!(answer
        .to_ascii_lowercase()
        .contains("proxy-authenticate: basic realm=\"kinspect\""));
    assert!(json_body(&answer)["debug"]
        .as_str()
        .unwrap()
        .contains("--proxy-auth"));
    // Refusals are recorded: a client set up without the credentials shows in the UI.
    let refused = |flow: kinspect::flow::Flow, said: &str| {
        let response = flow.response.as_ref().expect("the 407 is recorded");
        assert_eq!(response.status, 407);
        assert!(response.from_proxy);
        assert!(response.headers.get("proxy-authenticate").is_some());
        assert_eq!(
            response.headers.get("x-kinspect-error").as_deref(),
            Some("refused")
        );
        let error = flow.error.as_ref().unwrap();
        assert_eq!(error.kind, FlowErrorKind::Refused);
        assert!(error.message.contains(said), "{}", error.message);
        assert!(flow.request.headers.get("proxy-authorization").is_none());
        flow
    };
    let flow = refused(proxy.next_flow().await, "no proxy credentials");
    assert_eq!(
        flow.request.url,
        format!("http://127.0.0.1:{}/echo", origin.addr.port())
    );
    let connect =
        b"CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\nConnection: close\r\n\r\n";
    let answer = exchange_raw(proxy.addr, connect).await;
    assert!(answer.starts_with("HTTP/1.1 407"), "{answer}");
    let flow = refused(proxy.next_flow().await, "no proxy credentials");
    assert_eq!(
        (flow.request.method.as_str(), flow.request.url.as_str()),
        ("CONNECT", "localhost:443")
    );

    // Wrong password: still 407, saying so, and the wrong credentials are not kept.
    let wrong = client_with_auth(&proxy, "guess");
    let response = wrong.get(origin.url("/echo")).send().await;
    // reqwest reports a refused CONNECT as an error; either way nothing got through.
    if let Ok(response) = response {
        assert_eq!(response.status(), 407);
    }
    refused(proxy.next_flow().await, "rejected");

    // The right credentials: through, over HTTPS (CONNECT) and plain HTTP.
    let right = client_with_auth(&proxy, "s3cret");
    let response = right.get(origin.url("/echo")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let flow = proxy.next_flow().await;
    assert_eq!(flow.response.unwrap().status, 200);
    let plain_origin = Origin::start(OriginKind::Plain).await;
    let response = right.get(plain_origin.url("/echo")).send().await.unwrap();
    let echoed: serde_json::Value = response.json().await.unwrap();
    let flow = proxy.next_flow().await;
    // Neither the origin nor the capture sees kinspect's credentials.
    assert!(!echoed
        .to_string()
        .to_ascii_lowercase()
        .contains("proxy-authorization"));
    assert!(flow.request.headers.get("proxy-authorization").is_none());

    // The CA page, asked of kinspect itself, stays open.
    let answer = exchange_raw(
        proxy.addr,
        b"GET / HTTP/1.1\r\nHost: kinspect\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_get_a_503_and_the_next_one_after_a_close_is_served() {
    let origin = Origin::start(OriginKind::Plain).await;
    let mut proxy = TestProxy::start(None, |c| c.max_connections = 2).await;
    let first = TcpStream::connect(proxy.addr).await.unwrap();
    let second = TcpStream::connect(proxy.addr).await.unwrap();
    // Give the accept loop time to hand both permits out.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let request = format!("GET {} HTTP/1.1\r\nHost: x\r\n\r\n", origin.url("/echo"));
    let answer = exchange_raw(proxy.addr, request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"));
    assert!(json_body(&answer)["debug"]
        .as_str()
        .unwrap()
        .contains("--max-connections"));
    // Recorded, so that a device that cannot get through shows why.
    let refused = proxy.next_flow().await;
    assert_eq!(refused.request.url, origin.url("/echo"));
    assert_eq!(refused.status(), Some(503));
    assert_eq!(refused.error.unwrap().kind, FlowErrorKind::Refused);

    drop(first);
    drop(second);
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.assert_serves(&origin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_would_loop_back_into_the_proxy_are_refused() {
    let origin = Origin::start(OriginKind::Plain).await;
    // A name that resolves to the proxy's own address is only known to loop after DNS.
    let mut proxy = TestProxy::start(None, |c| {
        c.hosts = HostOverrides::new([("loop.test".to_owned(), "127.0.0.1".parse().unwrap())]);
    })
    .await;
    let port = proxy.addr.port();
    let url = format!("http://loop.test:{port}/again");
    let response = proxy.client().get(&url).send().await.unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["debug"].as_str().unwrap().contains("loop"), "{body}");
    let flow = proxy.next_flow().await;
    assert_eq!(flow.error.unwrap().kind, FlowErrorKind::BadRequest);

    // CONNECT to the proxy's own address is refused before any tunnel opens.
    let connect = format!(
        "CONNECT localhost:{port} HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n"
    );
    let answer = exchange_raw(proxy.addr, connect.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let flow = proxy.next_flow().await;
    assert_eq!(
        (flow.request.method.as_str(), flow.request.url.as_str()),
        ("CONNECT", &*format!("localhost:{port}"))
    );
    assert_eq!(flow.error.unwrap().kind, FlowErrorKind::BadRequest);
    proxy.assert_serves(&origin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_and_idle_keep_alive_connections_are_closed() {
    let origin = Origin::start(OriginKind::Plain).await;
    let limit = Duration::from_millis(600);
    let mut proxy = TestProxy::start(None, |c| c.client_header_timeout = limit).await;

    // Slowloris: a header line every 150 ms never finishes the head in time. It gets
    // kinspect's 408, and the flow quotes what came of its head.
    let mut slow = TcpStream::connect(proxy.addr).await.unwrap();
    let started = Instant::now();
    let request = format!(
        "GET {} HTTP/1.1\r\nCookie: sid=s3cret-v\r\n",
        origin.url("/echo")
    );
    slow.write_all(request.as_bytes()).await.unwrap();
    let mut dripped = 0;
    let mut answer = Vec::new();
    while slow.write_all(b"X-Drip: 1\r\n").await.is_ok() && started.elapsed() < STEP {
        dripped += 1;
        tokio::time::sleep(Duration::from_millis(150)).await;
        let mut probe = [0u8; 1];
        match tokio::time::timeout(Duration::from_millis(1), slow.read(&mut probe)).await {
            Ok(Ok(n)) => {
                answer.extend_from_slice(&probe[..n]);
                break;
            }
            Ok(Err(_)) => break,
            Err(_) => continue,
        }
    }
    let lasted = started.elapsed();
    assert!(
        lasted < limit * 4,
        "a dripping client was cut off after {lasted:?} ({dripped} lines)"
    );
    let _ = tokio::time::timeout(STEP, slow.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{answer}"
    );
    assert!(answer.contains("\"error\":\"ClientError\""), "{answer}");
    let flow = proxy.next_flow().await;
    assert_eq!(flow.request.url, origin.url("/echo"));
    assert_eq!(flow.status(), Some(408));
    // From its first byte, with the header lines that came whole; never sent again.
    assert!(flow.timings.send >= limit / 2, "{:?}", flow.timings);
    assert!(flow.started_at <= std::time::SystemTime::now() - limit / 2);
    assert_eq!(
        flow.request.headers.get("cookie").as_deref(),
        Some("sid=s3cret-v")
    );
    assert!(flow.request.body.incomplete);
    let error = flow.error.expect("recorded as an error");
    assert_eq!(error.kind, FlowErrorKind::ClientAbort);
    assert!(
        error
            .message
            .contains("only part of its request head within 600ms")
            && error.message.contains("X-Drip: 1")
            && error.message.contains("Cookie: [redacted]"),
        "{}",
        error.message
    );

    // Empty lines between requests (RFC 9112 §2.2) are no head: the idle connection
    // is closed with no answer and no flow (the next flow is assert_serves' below).
    let mut spaced = TcpStream::connect(proxy.addr).await.unwrap();
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: x\r\n\r\n\r\n",
        origin.url("/echo")
    );
    spaced.write_all(request.as_bytes()).await.unwrap();
    let answer = read_to_close(&mut spaced).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(!answer.contains("408"), "{answer}");
    proxy.next_flow().await;

    // Idle first, then half a head: the time ran from the idle start, and the error
    // says the head came late rather than slowly.
    let mut late = TcpStream::connect(proxy.addr).await.unwrap();
    tokio::time::sleep(limit * 3 / 4).await;
    late.write_all(b"GET /echo HTTP/1.1\r\nHo").await.unwrap();
    let answer = read_to_close(&mut late).await;
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    let error = proxy.next_flow().await.error.expect("recorded as an error");
    assert!(
        error.message.contains("before it ran out"),
        "{}",
        error.message
    );

    // A partial CONNECT is listed under its target, a target cut short not at all; a
    // reset is a break-off.
    let mut cut = TcpStream::connect(proxy.addr).await.unwrap();
    cut.write_all(b"CONNECT kvy.example:44").await.unwrap();
    drop(cut);
    let flow = proxy.next_flow().await;
    assert_eq!(flow.request.method, "CONNECT");
    assert!(
        !flow.request.url.contains("kvy.example"),
        "{}",
        flow.request.url
    );
    let mut reset = TcpStream::connect(proxy.addr).await.unwrap();
    reset
        .write_all(b"CONNECT kvy.example:443 HTTP/1.1\r\nHost: kvy")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    reset.set_zero_linger().unwrap();
    drop(reset);
    let flow = proxy.next_flow().await;
    assert_eq!(
        (flow.request.method.as_str(), flow.request.url.as_str()),
        ("CONNECT", "kvy.example:443")
    );
    let error = flow.error.expect("recorded as an error");
    assert_eq!(error.kind, FlowErrorKind::ClientAbort);
    assert!(error.message.contains("broke off"), "{}", error.message);

    // One that closes in the middle of its head is recorded as having gone away.
    let mut gone = TcpStream::connect(proxy.addr).await.unwrap();
    let request = format!("POST {} HTTP/1.1\r\nHost: x\r\n", origin.url("/upload"));
    gone.write_all(request.as_bytes()).await.unwrap();
    drop(gone);
    let flow = proxy.next_flow().await;
    assert_eq!(
        (flow.request.method.as_str(), flow.request.url.as_str()),
        ("POST", origin.url("/upload").as_str())
    );
    assert!(flow.response.is_none());
    let error = flow.error.expect("recorded as an error");
    assert_eq!(error.kind, FlowErrorKind::ClientAbort);
    assert!(
        error
            .message
            .contains("closed the connection in the middle of its request head"),
        "{}",
        error.message
    );

    // A keep-alive connection that goes quiet after one request is closed too.
    let mut idle = TcpStream::connect(proxy.addr).await.unwrap();
    let request = format!("GET {} HTTP/1.1\r\nHost: x\r\n\r\n", origin.url("/echo"));
    idle.write_all(request.as_bytes()).await.unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    proxy.next_flow().await;
    let waited = closed_after(&mut idle).await;
    assert!(waited < limit * 4, "idle connection kept {waited:?}");

    proxy.assert_serves(&origin).await;
}

/// Opens a CONNECT tunnel and returns the stream after the proxy's 200.
async fn tunnel(proxy: SocketAddr, target: &str) -> TcpStream {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    let request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200"));
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_tls_handshake_and_an_idle_http2_connection_are_closed() {
    let origin = Origin::start(OriginKind::Https).await;
    let limit = Duration::from_millis(600);
    let mut proxy = TestProxy::start(Some(&origin), |c| {
        c.client_header_timeout = limit;
        c.idle_timeout = limit;
    })
    .await;
    let target = format!("localhost:{}", origin.addr.port());

    // The first bytes of a ClientHello, then nothing.
    let mut stalled = tunnel(proxy.addr, &target).await;
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01])
        .await
        .unwrap();
    let waited = closed_after(&mut stalled).await;
    assert!(waited < limit * 4, "stalled handshake kept {waited:?}");
    let flow = proxy.next_flow().await;
    let error = flow.error.expect("the stalled handshake is recorded");
    assert_eq!(error.kind, FlowErrorKind::ClientTls);
    assert!(
        error.message.contains("did not finish its TLS handshake"),
        "{}",
        error.message
    );

    // Inside the tunnel's TLS, half a request head, then nothing: a 408 over TLS.
    let stream = tunnel(proxy.addr, &target).await;
    let mut tls = proxy
        .tls_connector(&[b"http/1.1"])
        .connect(ServerName::try_from("localhost").unwrap(), stream)
        .await
        .unwrap();
    tls.write_all(b"GET /echo HTTP/1.1\r\nHost: loc")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(STEP, tls.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    let flow = proxy.next_flow().await;
    assert_eq!(flow.request.url, origin.url("/echo"));
    assert_eq!(flow.status(), Some(408));
    assert!(flow.client_tls.is_some(), "the tunnel's TLS is recorded");

    // HTTP/2 inside the tunnel: one request, then silence until the proxy closes.
    let stream = tunnel(proxy.addr, &target).await;
    let tls = proxy
        .tls_connector(&[b"h2"])
        .connect(ServerName::try_from("localhost").unwrap(), stream)
        .await
        .unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    let connection = tokio::spawn(connection);
    let request = http::Request::get(origin.url("/echo"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.unwrap();
    proxy.next_flow().await;
    let started = Instant::now();
    tokio::time::timeout(STEP, connection)
        .await
        .expect("the proxy closes an idle HTTP/2 connection")
        .unwrap()
        .ok();
    let waited = started.elapsed();
    assert!(waited < limit * 4, "idle HTTP/2 connection kept {waited:?}");

    proxy.assert_serves(&origin).await;
}

/// A listener whose accept queue is full, so new connections to it hang in SYN_SENT.
async fn unresponsive_listener() -> (TcpListener, Vec<TcpStream>) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    // Fill the queue; never accept. Connects beyond the queue stall (their SYN is dropped).
    let mut fillers = Vec::new();
    for _ in 0..8 {
        match tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => fillers.push(stream),
            _ => break,
        }
    }
    (listener, fillers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origins_that_do_not_connect_or_do_not_finish_tls_are_504s() {
    let origin = Origin::start(OriginKind::Plain).await;
    let limit = Duration::from_millis(700);
    let mut proxy = TestProxy::start(None, |c| c.connect_timeout = limit).await;

    let (stalled, _fillers) = unresponsive_listener().await;
    let url = format!("http://{}/x", stalled.local_addr().unwrap());
    let started = Instant::now();
    let response = proxy.client().get(&url).send().await.unwrap();
    assert_eq!(response.status(), 504);
    assert!(started.elapsed() < limit * 6);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["debug"].as_str().unwrap().contains("took longer"),
        "{body}"
    );
    assert_eq!(
        proxy.next_flow().await.error.unwrap().kind,
        FlowErrorKind::Timeout
    );

    // An origin that accepts TCP but never speaks TLS.
    let mute = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mute_addr = mute.local_addr().unwrap();
    let _held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = mute.accept().await {
            held.push(stream);
        }
    });
    let url = format!("https://{mute_addr}/x");
    let response = proxy.client().get(&url).send().await.unwrap();
    assert_eq!(response.status(), 504);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["debug"].as_str().unwrap().contains("TLS handshake"),
        "{body}"
    );
    assert_eq!(
        proxy.next_flow().await.error.unwrap().kind,
        FlowErrorKind::Timeout
    );

    proxy.assert_serves(&origin).await;
}
