//! Plain HTTP forward proxying (absolute-form requests).

mod support;

use kinspect::flow::HttpVersion;
use support::{Origin, OriginKind, TestProxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_get_and_post_are_forwarded_and_recorded() {
    let origin = Origin::start(OriginKind::Plain).await;
    let mut proxy = TestProxy::start(None, |_| {}).await;
    let client = proxy.client();

    let response = client
        .get(origin.url("/echo?collection=books"))
        .header("X-Custom", "kept")
        .header("Connection", "keep-alive, X-Hop")
        .header("X-Hop", "dropped")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let echo: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        echo["uri"], "/echo?collection=books",
        "origin-form upstream"
    );
    let names: Vec<&str> = echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h[0].as_str().unwrap())
        .collect();
    assert!(names.contains(&"x-custom"));
    assert!(
        !names.contains(&"x-hop"),
        "headers named in Connection are hop-by-hop"
    );
    assert!(!names.contains(&"proxy-connection"));

    let flow = proxy.next_flow().await;
    assert_eq!(flow.scheme, "http");
    assert_eq!(flow.request.url, origin.url("/echo?collection=books"));
    assert_eq!(flow.request.version, HttpVersion::Http11);
    assert!(flow.client_tls.is_none() && flow.server_tls.is_none());
    // The recorded request is what the client sent, hop-by-hop fields included.
    assert_eq!(
        flow.request.headers.get("x-hop").as_deref(),
        Some("dropped")
    );

    let body = vec![b'k'; 200_000];
    let response = client
        .post(origin.url("/echo"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    let echo: serde_json::Value = response.json().await.unwrap();
    assert_eq!(echo["body_len"], 200_000);
    let flow = proxy.next_flow().await;
    assert_eq!(flow.request.method, "POST");
    assert_eq!(&flow.request.body.bytes[..], &body[..]);
    assert!(!flow.request.body.incomplete);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_beyond_the_limit_are_counted_not_kept() {
    let origin = Origin::start(OriginKind::Plain).await;
    let mut proxy = TestProxy::start(None, |c| c.max_body = 1000).await;
    let response = proxy
        .client()
        .put(origin.url("/echo"))
        .body(vec![7u8; 5000])
        .send()
        .await
        .unwrap();
    let echo: serde_json::Value = response.json().await.unwrap();
    assert_eq!(echo["body_len"], 5000, "the origin gets the whole body");
    let flow = proxy.next_flow().await;
    assert_eq!(flow.request.body.bytes.len(), 1000);
    assert_eq!(flow.request.body.wire_size, 5000);
    assert!(flow.request.body.truncated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_looping_back_into_the_proxy_is_refused() {
    let mut proxy = TestProxy::start(None, |_| {}).await;
    let url = format!("http://127.0.0.1:{}/anything", proxy.addr.port());
    let response = proxy.client().get(&url).send().await.unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "BadProxyRequest");
    assert!(body["debug"].as_str().unwrap().contains("loop"));
    let flow = proxy.next_flow().await;
    assert_eq!(
        flow.error.unwrap().kind,
        kinspect::flow::FlowErrorKind::BadRequest
    );
    // The proxy still serves.
    let origin = Origin::start(OriginKind::Plain).await;
    let ok = proxy
        .client()
        .get(origin.url("/status/200"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_sent_to_the_proxy_as_a_server_gets_the_ca_page() {
    let proxy = TestProxy::start(None, |_| {}).await;
    let response = reqwest::get(proxy.url()).await.unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(text.contains("Trust the kinspect CA"), "{text}");
    assert!(text.contains("kinspect-ca.pem"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_gets_the_origins_header_fields_and_no_others() {
    // An origin that sends no Date (nothing obliges it to).
    let answer = "HTTP/1.1 200 OK\r\nX-Only: 1\r\nContent-Length: 2\r\n\r\nok";
    let (port, origin) = support::one_answer_origin(answer).await;
    let mut proxy = TestProxy::start(None, |_| {}).await;
    let url = format!("http://127.0.0.1:{port}/");
    let response = proxy.client().get(&url).send().await.unwrap();
    let names: Vec<&str> = response.headers().keys().map(|n| n.as_str()).collect();
    assert_eq!(names, ["x-only", "content-length"]);
    assert_eq!(response.text().await.unwrap(), "ok");
    let flow = proxy.next_flow().await;
    assert!(flow.response.unwrap().headers.get("date").is_none());
    origin.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_with_trailers_is_recorded_whole() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A chunked response ending in trailers, to every request on a connection.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let origin = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                while let Ok(byte) = stream.read_u8().await {
                    head.push(byte);
                    if head.ends_with(b"\r\n\r\n") {
                        head.clear();
                        let answer = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\
                                      trailer: x-checksum\r\n\r\n\
                                      5\r\nhello\r\n6\r\n world\r\n0\r\nx-checksum: abc\r\n\r\n";
                        stream.write_all(answer.as_bytes()).await.unwrap();
                    }
                }
            });
        }
    });
    let mut proxy = support::TestProxy::start(None, |_| {}).await;
    let client = proxy.client();
    for te in [None, Some("trailers")] {
        let mut request = client.get(format!("http://127.0.0.1:{port}/t"));
        if let Some(te) = te {
            request = request.header("te", te);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.text().await.unwrap(), "hello world");
        let flow = proxy.next_flow().await;
        assert!(flow.error.is_none(), "TE {te:?}: {:?}", flow.error);
        let body = &flow.response.as_ref().unwrap().body;
        assert!(!body.incomplete, "TE {te:?}");
        assert_eq!(&body.bytes[..], b"hello world");
    }
    origin.abort();
}

/// An origin that answers its one request with a head and the start of a small body at
/// once, then the rest of the body `after` later; its port.
async fn slow_small_body_origin(after: std::time::Duration) -> u16 {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                if support::read_head(&mut stream).await.is_none() {
                    return;
                }
                let head = "HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nfirst";
                stream.write_all(head.as_bytes()).await.unwrap();
                tokio::time::sleep(after).await;
                let _ = stream.write_all(b"-rest").await;
                let _ = tokio::io::AsyncReadExt::read_u8(&mut stream).await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_body_that_comes_slowly_streams_after_its_head() {
    let port = slow_small_body_origin(std::time::Duration::from_millis(1500)).await;
    let mut proxy = TestProxy::start(None, |_| {}).await;
    let started = std::time::Instant::now();
    let mut response = proxy
        .client()
        .get(format!("http://127.0.0.1:{port}/slow"))
        .send()
        .await
        .unwrap();
    let head_after = started.elapsed();
    assert_eq!(response.status(), 200);
    let first = response.chunk().await.unwrap().unwrap();
    let first_after = started.elapsed();
    assert_eq!(&first[..], b"first");
    // The head and the first bytes as the origin sent them, not after its last byte.
    assert!(
        head_after < std::time::Duration::from_millis(1000)
            && first_after < std::time::Duration::from_millis(1000),
        "head after {head_after:?}, first bytes after {first_after:?}"
    );
    assert_eq!(&response.bytes().await.unwrap()[..], b"-rest");
    let flow = proxy.next_flow().await;
    assert!(flow.error.is_none(), "{:?}", flow.error);
    assert_eq!(&flow.response.unwrap().body.bytes[..], b"first-rest");

    // A client that gives up while the body is still coming is recorded giving up.
    let port = slow_small_body_origin(std::time::Duration::from_secs(30)).await;
    let quick = proxy
        .client_builder()
        .timeout(std::time::Duration::from_millis(300))
        .build()
        .unwrap();
    let gave_up = quick
        .get(format!("http://127.0.0.1:{port}/gone"))
        .send()
        .await;
    if let Ok(response) = gave_up {
        assert!(response.bytes().await.is_err(), "the body never ended");
    }
    let flow = proxy.next_flow().await;
    assert!(flow.request.url.ends_with("/gone"));
    let error = flow.error.expect("an error");
    assert_eq!(
        error.kind,
        kinspect::flow::FlowErrorKind::ClientAbort,
        "{error:?}"
    );
}

/// A client that leaves while kinspect waits (at most 10 ms) for the rest of a small
/// body, before any byte of the response went to it, still has its flow recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_while_a_small_body_is_awaited_has_its_flow_recorded() {
    use tokio::io::AsyncWriteExt;
    let mut proxy = TestProxy::start(None, |_| {}).await;
    // The client must leave after kinspect has the origin's head and within the wait:
    // a try where it left before the head was read is made again.
    for attempt in 1..=5 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (head_sent_tx, head_sent) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            support::read_head(&mut stream).await.unwrap();
            let head = "HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nfirst";
            stream.write_all(head.as_bytes()).await.unwrap();
            let _ = head_sent_tx.send(());
            // The rest never comes while the client is there.
            let _ = tokio::io::AsyncReadExt::read_u8(&mut stream).await;
        });
        let mut client = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
        let request =
            format!("GET http://127.0.0.1:{port}/left HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
        client.write_all(request.as_bytes()).await.unwrap();
        head_sent.await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(4)).await;
        // Gone without a byte of the answer.
        drop(client);
        let flow = proxy.next_flow().await;
        assert!(flow.request.url.ends_with("/left"), "{}", flow.request.url);
        let error = flow.error.expect("an error");
        assert_eq!(
            error.kind,
            kinspect::flow::FlowErrorKind::ClientAbort,
            "{error:?}"
        );
        if flow.response.is_none() && attempt < 5 {
            assert!(error
                .message
                .contains("before the response headers arrived"));
            continue;
        }
        let response = flow.response.expect("its head recorded");
        assert_eq!(response.status, 200);
        assert_eq!(&response.body.bytes[..], b"first");
        return;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_waits_for_the_origin_to_ask_for_the_body() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let proxy = TestProxy::start(None, |_| {}).await;
    let ask = |port: u16, length: usize| {
        format!(
            "POST http://127.0.0.1:{port}/up HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
             Content-Length: {length}\r\nExpect: 100-continue\r\n\r\n"
        )
    };

    // An origin that turns the upload down at once: the client is not told to send it,
    // and the origin gets none of it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let refusing = listener.local_addr().unwrap().port();
    let (count_tx, count) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let head = support::read_head(&mut stream).await.unwrap();
        assert!(String::from_utf8_lossy(&head)
            .to_ascii_lowercase()
            .contains("expect: 100-continue"));
        let no = "HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n";
        stream.write_all(no.as_bytes()).await.unwrap();
        let mut received = 0;
        let mut buffer = [0u8; 65536];
        let reading = async {
            while let Ok(n @ 1..) = stream.read(&mut buffer).await {
                received += n;
            }
        };
        let _ = tokio::time::timeout(std::time::Duration::from_millis(1500), reading).await;
        let _ = count_tx.send(received);
    });
    let mut client = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    client
        .write_all(ask(refusing, 100_000).as_bytes())
        .await
        .unwrap();
    let head = support::read_head(&mut client).await.unwrap();
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    // The client stays: kinspect closes its connection (it was never told to send the
    // body, so what it sends next is no body), past the second it would wait for a 100
    // at most, and nothing reached the origin.
    let closed = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.map(|_| rest)
    })
    .await
    .expect("the connection closed");
    assert!(closed.map_or(true, |rest| rest.is_empty()));
    assert_eq!(
        count.await.unwrap(),
        0,
        "no byte of the body reached the origin"
    );

    // An origin that asks for it: its 100 Continue reaches the client at once (well
    // within the second kinspect would wait for one), then the body goes through.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let asking = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        support::read_head(&mut stream).await.unwrap();
        stream
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .unwrap();
        let mut body = [0u8; 5];
        stream.read_exact(&mut body).await.unwrap();
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\ngot {}",
            String::from_utf8_lossy(&body[1..])
        );
        stream.write_all(answer.as_bytes()).await.unwrap();
        let _ = stream.read_u8().await;
    });
    let mut client = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let started = std::time::Instant::now();
    client.write_all(ask(asking, 5).as_bytes()).await.unwrap();
    let interim = support::read_head(&mut client).await.unwrap();
    assert!(
        String::from_utf8_lossy(&interim).starts_with("HTTP/1.1 100"),
        "{}",
        String::from_utf8_lossy(&interim)
    );
    assert!(
        started.elapsed() < std::time::Duration::from_millis(800),
        "{:?}",
        started.elapsed()
    );
    client.write_all(b"hello").await.unwrap();
    let head = support::read_head(&mut client).await.unwrap();
    assert!(String::from_utf8_lossy(&head).starts_with("HTTP/1.1 200"));
    let mut body = [0u8; 8];
    client.read_exact(&mut body).await.unwrap();
    assert_eq!(&body, b"got ello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2c_upgrade_goes_on_as_a_plain_request() {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (head_tx, head_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let head = support::read_head(&mut stream).await.unwrap();
        let _ = head_tx.send(String::from_utf8_lossy(&head).to_ascii_lowercase());
        let answer = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        stream.write_all(answer.as_bytes()).await.unwrap();
        let _ = tokio::io::AsyncReadExt::read_u8(&mut stream).await;
    });
    let mut proxy = TestProxy::start(None, |_| {}).await;
    let response = proxy
        .client()
        .get(format!("http://127.0.0.1:{port}/h2c"))
        .header("connection", "Upgrade, HTTP2-Settings")
        .header("upgrade", "h2c")
        .header("http2-settings", "AAMAAABkAARAAAAAAAIAAAAA")
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "ok");
    let head = head_rx.await.unwrap();
    assert!(
        !head.contains("upgrade") && !head.contains("http2-settings"),
        "{head}"
    );
    assert!(proxy.next_flow().await.error.is_none());
}

/// `localhost` and `*.localhost` are this machine whatever the resolver says (RFC 6761):
/// kinspect tries both loopback addresses, as browsers and curl do, so a server on
/// `[::1]` alone and a name such as `app.localhost` are reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn localhost_names_reach_either_loopback_address() {
    let mut proxy = TestProxy::start(None, |_| {}).await;
    let origin = Origin::start(OriginKind::Plain).await;
    let port = origin.addr.port();
    let url = format!("http://app.localhost:{port}/status/200");
    let response = proxy.client().get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let flow = proxy.next_flow().await;
    assert_eq!(flow.server_ip, Some("127.0.0.1".parse().unwrap()));

    let Ok(listener) = tokio::net::TcpListener::bind("[::1]:0").await else {
        eprintln!("skipped the [::1] part: this machine has no IPv6 loopback");
        return;
    };
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let (mut stream, _) = listener.accept().await.unwrap();
        support::read_head(&mut stream).await.unwrap();
        let answer = "HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nv6!!";
        stream.write_all(answer.as_bytes()).await.unwrap();
        let _ = tokio::io::AsyncReadExt::read_u8(&mut stream).await;
    });
    let response = proxy
        .client()
        .get(format!("http://localhost:{port}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "v6!!");
    let flow = proxy.next_flow().await;
    assert_eq!(flow.server_ip, Some("::1".parse().unwrap()));
}
