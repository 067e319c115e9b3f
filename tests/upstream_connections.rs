//! Connections to origins are kept and reused: by the same client connection, by the
//! next client connection, and replaced when the origin has closed them.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::{Origin, OriginKind, TestProxy};
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
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(ca.server_config(&[b"http/1.1"])));
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

/// Reads a request head; `None` when the connection ends first.
async fn read_head<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(stream.read_u8().await.ok()?);
    }
    Some(head)
}

async fn connection_number(client: &reqwest::Client, url: &str) -> String {
    let response = client.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
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
    tokio::time::sleep(Duration::from_millis(500)).await;
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
