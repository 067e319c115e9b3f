//! Connections to origins are kept and reused: by the same client connection, by the
//! next client connection, and replaced when the origin has closed them.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::{read_head, Origin, OriginKind, TestProxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A plain HTTP/1.1 origin answering every request with the number of the TCP
/// connection it came on (1, 2, ...); with `close_after` it closes each connection that
/// long after its first answer, without saying so in the response and without reading
/// anything more.
struct NumberingOrigin {
    port: u16,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for NumberingOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl NumberingOrigin {
    async fn start(close_after: Option<Duration>) -> NumberingOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let number = counter.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while stream.read(&mut byte).await.unwrap_or(0) == 1 {
                        head.push(byte[0]);
                        if !head.ends_with(b"\r\n\r\n") {
                            continue;
                        }
                        head.clear();
                        let body = number.to_string();
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if stream.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                        if let Some(after) = close_after {
                            tokio::time::sleep(after).await;
                            return;
                        }
                    }
                });
            }
        });
        NumberingOrigin {
            port,
            connections,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/n", self.port)
    }
}

/// An HTTPS origin (HTTP/1.1, a leaf from `ca`) whose every connection `serve` handles
/// once its TLS is up; returns its port and task.
async fn tls_origin<F, Fut>(ca: &support::TestCa, serve: F) -> (u16, tokio::task::JoinHandle<()>)
where
    F: Fn(tokio_rustls::server::TlsStream<tokio::net::TcpStream>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    tls_origin_speaking(ca, b"http/1.1", serve).await
}

/// [`tls_origin`] offering `alpn` alone.
async fn tls_origin_speaking<F, Fut>(
    ca: &support::TestCa,
    alpn: &[u8],
    serve: F,
) -> (u16, tokio::task::JoinHandle<()>)
where
    F: Fn(tokio_rustls::server::TlsStream<tokio::net::TcpStream>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(ca.server_config(&[alpn])));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let serve = Arc::new(serve);
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, serve) = (acceptor.clone(), serve.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(stream).await {
                    serve(tls).await;
                }
            });
        }
    });
    (port, task)
}

async fn connection_number(client: &reqwest::Client, url: &str) -> String {
    let response = client.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let number = response.text().await.unwrap();
    // reqwest's pool takes its connection back a moment after the body ends: a request
    // sent before that opens another connection to the proxy (and the proxy, for it,
    // another to the origin), which is no reuse to test.
    tokio::time::sleep(Duration::from_millis(20)).await;
    number
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_keeps_its_origin_connection_and_the_next_client_reuses_it() {
    let origin = NumberingOrigin::start(None).await;
    let mut proxy = TestProxy::start(None, |_| {}).await;

    let first = proxy.client();
    for _ in 0..3 {
        assert_eq!(connection_number(&first, &origin.url()).await, "1");
    }
    drop(first);
    // The proxy notices the client connection's end and keeps its origin connection.
    // Nothing outside says when: the wait leaves room for CI, where the other tests of
    // this file load both cores (500 ms once fell short there).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let second = proxy.client();
    for _ in 0..2 {
        assert_eq!(connection_number(&second, &origin.url()).await, "1");
    }
    assert_eq!(origin.connections.load(Ordering::SeqCst), 1);

    let opened = proxy.next_flow().await;
    assert!(opened.timings.connect.is_some(), "the first flow opened it");
    for _ in 0..4 {
        let flow = proxy.next_flow().await;
        assert!(flow.error.is_none(), "{:?}", flow.error);
        assert_eq!(
            flow.timings.connect, None,
            "a reused connection has no set-up"
        );
        assert_eq!(flow.server_ip, Some("127.0.0.1".parse().unwrap()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_names_that_differ_in_case_share_a_connection() {
    let origin = NumberingOrigin::start(None).await;
    let mut proxy = TestProxy::start(None, |_| {}).await;
    // Raw requests: HTTP clients lower-case the host name before sending.
    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    for host in ["localhost", "LocalHost", "LOCALHOST"] {
        let request = format!(
            "GET http://{host}:{port}/n HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n",
            port = origin.port
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        while !answer.ends_with(b"\r\n\r\n1") {
            answer.push(stream.read_u8().await.unwrap());
        }
        let flow = proxy.next_flow().await;
        assert_eq!(
            flow.host, host,
            "the flow keeps the name as the client wrote it"
        );
        assert!(flow.error.is_none(), "{:?}", flow.error);
    }
    assert_eq!(origin.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_the_origin_closed_is_replaced_without_an_error() {
    let origin = NumberingOrigin::start(Some(Duration::ZERO)).await;
    let mut proxy = TestProxy::start(None, |_| {}).await;
    let client = proxy.client();
    for expected in 1..=4 {
        assert_eq!(
            connection_number(&client, &origin.url()).await,
            expected.to_string()
        );
        let flow = proxy.next_flow().await;
        assert!(flow.error.is_none(), "{:?}", flow.error);
        assert!(flow.timings.connect.is_some(), "each request opened one");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_the_origin_dropped_with_its_connection_is_sent_again_a_post_is_not() {
    // The origin closes each connection 300 ms after its first answer, with the next
    // request unread: that request was sent and got no answer.
    let origin = NumberingOrigin::start(Some(Duration::from_millis(300))).await;
    let mut proxy = TestProxy::start(None, |_| {}).await;
    let client = proxy.client();
    assert_eq!(connection_number(&client, &origin.url()).await, "1");
    proxy.next_flow().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Idempotent and without a body: sent again on a new connection.
    assert_eq!(connection_number(&client, &origin.url()).await, "2");
    let flow = proxy.next_flow().await;
    assert!(flow.error.is_none(), "{:?}", flow.error);
    assert!(
        flow.timings.connect.is_some(),
        "it went out on a new connection"
    );

    tokio::time::sleep(Duration::from_millis(100)).await;
    // A POST may have done its work already: the failure is reported, not repeated.
    let response = client.post(origin.url()).send().await.unwrap();
    assert_eq!(response.status(), 502);
    let flow = proxy.next_flow().await;
    assert_eq!(flow.request.method, "POST");
    assert!(flow.error.is_some());
    assert_eq!(origin.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_http2_requests_to_an_http1_origin_do_not_wait_for_each_other() {
    let origin = Origin::start(OriginKind::HttpsH1Only).await;
    let mut proxy = TestProxy::start(Some(&origin), |_| {}).await;
    let client = proxy.client();

    // A request the origin never answers holds its origin connection.
    let hanging = tokio::spawn({
        let (client, url) = (client.clone(), origin.url("/hang"));
        async move { client.get(url).send().await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..2 {
        let response = client.get(origin.url("/echo")).send().await.unwrap();
        assert_eq!(response.version(), http::Version::HTTP_2);
        assert_eq!(response.status(), 200);
        let echo: serde_json::Value = response.json().await.unwrap();
        assert_eq!(echo["version"], "HTTP/1.1");
    }
    assert!(!hanging.is_finished(), "the first request is still waiting");
    hanging.abort();
    for _ in 0..2 {
        let flow = proxy.next_flow().await;
        assert!(flow.request.url.ends_with("/echo"), "{}", flow.request.url);
        assert!(flow.error.is_none(), "{:?}", flow.error);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_still_taking_an_upload_does_not_hold_up_the_next_request() {
    // An HTTPS origin that answers a POST at once, then reads its 10-byte body as it
    // comes, then serves the next request on the same connection.
    let ca = support::TestCa::new();
    let (port, server) = tls_origin(&ca, |mut tls| async move {
        while let Some(head) = read_head(&mut tls).await {
            let post = head.starts_with(b"POST");
            let body = if post { "early" } else { "get" };
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            tls.write_all(answer.as_bytes()).await.unwrap();
            let mut upload = [0u8; 10];
            if post && tls.read_exact(&mut upload).await.is_err() {
                return;
            }
        }
    })
    .await;
    let mut proxy = TestProxy::start(None, |c| {
        c.upstream_ca.push(ca.pem_path.clone());
        c.upstream_timeout = Duration::from_secs(1);
    })
    .await;
    let client = proxy.client();
    let url = format!("https://localhost:{port}/");

    // Half the upload now, the rest after 1.5 s.
    let chunks = futures_util::stream::unfold(0, |i| async move {
        let chunk: &'static [u8] = match i {
            0 => b"01234",
            1 => {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                b"56789"
            }
            _ => return None,
        };
        Some((
            Ok::<_, std::io::Error>(bytes::Bytes::from_static(chunk)),
            i + 1,
        ))
    });
    let post = client
        .post(&url)
        .header("content-length", "10")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(post.version(), http::Version::HTTP_2);
    assert_eq!(post.text().await.unwrap(), "early");

    // The POST's connection is still taking its upload: this one gets its own.
    let get = client.get(&url).send().await.unwrap();
    assert_eq!(get.status(), 200, "not held up behind the upload");
    assert_eq!(get.text().await.unwrap(), "get");
    let flows = [proxy.next_flow().await, proxy.next_flow().await];
    let get_flow = flows.iter().find(|f| f.request.method == "GET").unwrap();
    assert!(get_flow.error.is_none(), "{:?}", get_flow.error);
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_204_with_a_content_length_reaches_an_http2_client_as_no_content() {
    // An HTTPS origin answering 204 with a Content-Length (and bytes) it must not send.
    let ca = support::TestCa::new();
    let (port, server) = tls_origin(&ca, |mut tls| async move {
        if read_head(&mut tls).await.is_some() {
            let answer = "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello";
            let _ = tls.write_all(answer.as_bytes()).await;
            let _ = tls.shutdown().await;
        }
    })
    .await;
    let mut proxy = TestProxy::start(None, |c| c.upstream_ca.push(ca.pem_path.clone())).await;
    let response = proxy
        .client()
        .get(format!("https://localhost:{port}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), 204);
    assert!(response.headers().get("content-length").is_none());
    assert_eq!(response.headers()["x-a"], "1");
    assert!(response.bytes().await.unwrap().is_empty());
    let flow = proxy.next_flow().await;
    assert!(flow.error.is_none(), "{:?}", flow.error);
    // The capture keeps what the origin said.
    let recorded = flow.response.unwrap();
    assert_eq!(recorded.headers.get("content-length").as_deref(), Some("5"));
    server.abort();
}

/// HTTP/2 frame types and flags the hand-framed origin below uses (RFC 9113 §6).
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const REFUSED_STREAM: u32 = 0x7;

fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut frame = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    frame.extend([kind, flags]);
    frame.extend(stream.to_be_bytes());
    frame.extend(payload);
    frame
}

/// Reads one frame: its type, flags, stream and payload.
async fn read_h2_frame<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
) -> Option<(u8, u8, u32, Vec<u8>)> {
    let mut head = [0u8; 9];
    stream.read_exact(&mut head).await.ok()?;
    let length = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let mut payload = vec![0; length];
    stream.read_exact(&mut payload).await.ok()?;
    Some((head[3], head[4], id, payload))
}

/// How the hand-framed origin's first connection treats its last request.
#[derive(Clone, Copy)]
enum LastRequest {
    /// A GOAWAY naming the stream before it as the last it processed, and the
    /// connection closed: it was never processed.
    GoAwayBefore,
    /// A GOAWAY naming its stream, and the connection closed unanswered: it may have
    /// been processed.
    GoAwayAfter,
    /// RST_STREAM with REFUSED_STREAM.
    Refused,
}

/// An HTTPS origin speaking HTTP/2 frame by frame: every request is answered 200 with
/// no body once its stream ends, except request number `last` on the first connection,
/// treated as `how` says. Returns its port, the number of connections it took and the bodies
/// of the requests it answered, in order.
async fn refusing_h2_origin(
    ca: &support::TestCa,
    last: usize,
    how: LastRequest,
) -> (
    u16,
    Arc<AtomicUsize>,
    Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
    tokio::task::JoinHandle<()>,
) {
    let connections = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (counter, bodies) = (connections.clone(), answered.clone());
    let (port, task) = tls_origin_speaking(ca, b"h2", move |mut tls| {
        let number = counter.fetch_add(1, Ordering::SeqCst) + 1;
        let bodies = bodies.clone();
        async move {
            let mut preface = [0u8; 24];
            if tls.read_exact(&mut preface).await.is_err() {
                return;
            }
            tls.write_all(&h2_frame(SETTINGS, 0, 0, &[])).await.unwrap();
            let mut streams = 0;
            let mut pending: std::collections::HashMap<u32, Vec<u8>> = Default::default();
            while let Some((kind, flags, id, payload)) = read_h2_frame(&mut tls).await {
                match kind {
                    SETTINGS if flags & ACK == 0 => {
                        tls.write_all(&h2_frame(SETTINGS, ACK, 0, &[]))
                            .await
                            .unwrap();
                        continue;
                    }
                    HEADERS => {
                        streams += 1;
                        if number == 1 && streams == last {
                            let (last_processed, close) = match how {
                                LastRequest::GoAwayBefore => (id - 2, true),
                                LastRequest::GoAwayAfter => (id, true),
                                LastRequest::Refused => {
                                    let code = REFUSED_STREAM.to_be_bytes();
                                    let reset = h2_frame(RST_STREAM, 0, id, &code);
                                    tls.write_all(&reset).await.unwrap();
                                    continue;
                                }
                            };
                            let mut goaway = last_processed.to_be_bytes().to_vec();
                            goaway.extend(0u32.to_be_bytes());
                            tls.write_all(&h2_frame(GOAWAY, 0, 0, &goaway))
                                .await
                                .unwrap();
                            if close {
                                let _ = tls.shutdown().await;
                                return;
                            }
                        }
                        pending.insert(id, Vec::new());
                    }
                    DATA => {
                        if let Some(body) = pending.get_mut(&id) {
                            body.extend(&payload);
                        }
                    }
                    _ => continue,
                }
                if flags & END_STREAM != 0 {
                    if let Some(body) = pending.remove(&id) {
                        bodies.lock().unwrap().push(body);
                        // `:status: 200`, indexed in HPACK's static table.
                        let status = h2_frame(HEADERS, END_HEADERS | END_STREAM, id, &[0x88]);
                        tls.write_all(&status).await.unwrap();
                    }
                }
            }
        }
    })
    .await;
    (port, connections, answered, task)
}

/// Sends `gets` GETs then a POST (over HTTP/1.1 to the proxy) to a
/// [`refusing_h2_origin`] treating the POST as `how` says; returns the POST's status and
/// flow, the connections the origin took and the bodies it answered.
async fn post_after(
    gets: usize,
    how: LastRequest,
) -> (u16, kinspect::flow::Flow, usize, Vec<Vec<u8>>) {
    let ca = support::TestCa::new();
    let (port, connections, answered, server) = refusing_h2_origin(&ca, gets + 1, how).await;
    let mut proxy = TestProxy::start(None, |c| c.upstream_ca.push(ca.pem_path.clone())).await;
    let client = proxy.client_builder().http1_only().build().unwrap();
    let url = format!("https://localhost:{port}/kv");
    for _ in 0..gets {
        assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
        proxy.next_flow().await;
    }
    let response = client
        .post(&url)
        .body("{\"name\":\"kinvey\"}")
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let flow = proxy.next_flow().await;
    server.abort();
    let bodies = answered.lock().unwrap().clone();
    (status, flow, connections.load(Ordering::SeqCst), bodies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_an_http2_origin_left_unprocessed_is_sent_again_on_a_new_connection() {
    // On a connection that served a GET before, and on the POST's own new connection.
    let cases = [
        (1, LastRequest::GoAwayBefore),
        (1, LastRequest::Refused),
        (0, LastRequest::Refused),
    ];
    for (gets, how) in cases {
        let (status, flow, connections, bodies) = post_after(gets, how).await;
        assert_eq!(status, 200, "{:?}", flow.error);
        assert!(flow.error.is_none(), "{:?}", flow.error);
        assert_eq!(connections, 2);
        // The GETs on the first connection, the POST with its body on the second.
        let mut expected = vec![Vec::new(); gets];
        expected.push(b"{\"name\":\"kinvey\"}".to_vec());
        assert_eq!(bodies, expected);
        assert_eq!(&flow.request.body.bytes[..], b"{\"name\":\"kinvey\"}");
        assert!(!flow.request.body.incomplete);
        assert!(
            flow.timings.connect.is_some(),
            "it went out on a new connection"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_an_http2_origin_may_have_processed_is_not_sent_again() {
    let (status, flow, connections, bodies) = post_after(1, LastRequest::GoAwayAfter).await;
    assert_eq!(status, 502);
    assert!(flow.error.is_some());
    assert_eq!(connections, 1);
    assert_eq!(bodies, [b"".to_vec()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_ended_by_a_close_without_close_notify_is_whole() {
    // An HTTPS origin that ends each response by closing the connection without TLS's
    // close_notify (as Python's ssl does): the body without a length is whole, the one
    // with a length that stops short is not.
    let ca = support::TestCa::new();
    let (port, server) = tls_origin(&ca, |mut tls| async move {
        let Some(head) = read_head(&mut tls).await else {
            return;
        };
        let answer: Vec<u8> = if head.starts_with(b"GET /whole") {
            let mut answer = b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n".to_vec();
            answer.extend(std::iter::repeat_n(b'w', 100_000));
            answer
        } else {
            b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part".to_vec()
        };
        tls.write_all(&answer).await.unwrap();
        tls.flush().await.unwrap();
        // Dropped without shutdown: no close_notify, the TCP connection just closes.
    })
    .await;
    let mut proxy = TestProxy::start(None, |c| c.upstream_ca.push(ca.pem_path.clone())).await;
    for client in [
        proxy.client_builder().http1_only().build().unwrap(),
        proxy.client(),
    ] {
        let response = client
            .get(format!("https://localhost:{port}/whole"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.bytes().await.unwrap().len(), 100_000);
        let flow = proxy.next_flow().await;
        assert!(flow.error.is_none(), "{:?}", flow.error);
        let body = &flow.response.as_ref().unwrap().body;
        assert_eq!((body.wire_size, body.incomplete), (100_000, false));

        let response = client
            .get(format!("https://localhost:{port}/short"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            502,
            "a length that was not met is no end"
        );
        assert!(proxy.next_flow().await.error.is_some());
    }
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_connection_thread_shares_an_http2_connection_of_its_own() {
    let ca = support::TestCa::new();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    let (port, h2) = tls_origin_speaking(&ca, b"h2", move |tls| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move {
            let service = hyper::service::service_fn(|_| async {
                Ok::<_, std::convert::Infallible>(http::Response::new(String::from("ok")))
            });
            let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
        }
    })
    .await;
    let mut proxy = TestProxy::start(None, |c| c.upstream_ca.push(ca.pem_path.clone())).await;
    let url = format!("https://localhost:{port}/");
    // Two clients, each on a connection of its own to the proxy, which serves the
    // second on its other connection thread (the less busy).
    let (a, b) = (proxy.client(), proxy.client());
    for client in [&a, &b, &a, &b] {
        let response = client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), "ok");
        assert!(proxy.next_flow().await.error.is_none());
    }
    // A request on another thread's connection would wake that thread to go out, and
    // its own when answered: each thread has one.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(2));
    assert_eq!(connections.load(Ordering::SeqCst), threads);
    h2.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_with_long_header_fields_pass_and_too_many_fields_are_said() {
    // HTTP/1.1: 300 fields.
    let mut answer = String::from("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n");
    for i in 0..300 {
        answer.push_str(&format!("x-field-{i}: {i}\r\n"));
    }
    answer.push_str("\r\nok");
    let answer_of_300 = answer.clone();
    let (plain_port, plain) = support::one_answer_origin(answer).await;
    // HTTP/2: one field of 40 KB (hyper's default takes 16 KiB in all).
    let ca = support::TestCa::new();
    let (h2_port, h2) = tls_origin_speaking(&ca, b"h2", |tls| async move {
        let service = hyper::service::service_fn(|_| async {
            let response = http::Response::builder()
                .header("x-long", "l".repeat(40_000))
                .body(String::from("ok"))
                .unwrap();
            Ok::<_, std::convert::Infallible>(response)
        });
        let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
            .await;
    })
    .await;
    let mut proxy = TestProxy::start(None, |c| c.upstream_ca.push(ca.pem_path.clone())).await;
    // HTTP/1.1 to the proxy: reqwest's own HTTP/2 takes 16 KiB of fields.
    let client = proxy.client_builder().http1_only().build().unwrap();

    // More than hyper's 100: a 502 that says why.
    let response = client
        .get(format!("http://127.0.0.1:{plain_port}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    let said = response.text().await.unwrap();
    assert!(
        said.contains("more than 100 header fields (raise --max-headers)"),
        "{said}"
    );
    assert!(proxy.next_flow().await.error.is_some());
    // With --max-headers raised past them, they pass.
    let (again_port, again) = support::one_answer_origin(answer_of_300.clone()).await;
    let mut raised = TestProxy::start(None, |c| c.max_headers = 400).await;
    // (A raw client: reqwest's hyper takes 100 fields too.)
    let mut client_stream = tokio::net::TcpStream::connect(raised.addr).await.unwrap();
    let ask = format!(
        "GET http://127.0.0.1:{again_port}/ HTTP/1.1\r\nHost: 127.0.0.1:{again_port}\r\n\
         Connection: close\r\n\r\n"
    );
    tokio::io::AsyncWriteExt::write_all(&mut client_stream, ask.as_bytes())
        .await
        .unwrap();
    let mut got = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut client_stream, &mut got)
        .await
        .unwrap();
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(got.contains("x-field-299: 299\r\n"), "{got}");
    let flow = raised.next_flow().await;
    assert!(flow.error.is_none(), "{:?}", flow.error);
    assert_eq!(flow.response.unwrap().headers.len(), 301);
    again.abort();

    let response = client
        .get(format!("https://localhost:{h2_port}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-long"].len(), 40_000);
    assert!(proxy.next_flow().await.error.is_none());
    plain.abort();
    h2.abort();
}
