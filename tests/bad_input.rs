//! Bad input from clients and origins: each case gets a clear error response (or a clean
//! close), a recorded flow wherever an exchange existed, and the proxy keeps serving.
//!
//! Non-TLS bytes after CONNECT are covered by
//! `tunnel.rs::non_tls_bytes_after_connect_pass_through_unchanged`: they become a blind
//! tunnel.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kinspect::flow::{Flow, FlowErrorKind, FlowKind};
use support::{
    self_signed_config, tls_server_config, Origin, OriginKind, TestCa, TestProxy, Validity, STEP,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Reads until the peer closes (or breaks) the connection; panics if it stays open
/// longer than [`STEP`].
async fn read_until_close<S: AsyncRead + Unpin>(stream: &mut S) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let read = tokio::time::timeout(STEP, stream.read(&mut buf))
            .await
            .expect("the proxy closes the connection in time");
        match read {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// What the peer has sent so far: one read, within [`STEP`] (a response on a
/// connection kept open).
async fn read_some<S: AsyncRead + Unpin>(stream: &mut S) -> Vec<u8> {
    let mut buf = vec![0u8; 64 * 1024];
    let n = tokio::time::timeout(STEP, stream.read(&mut buf))
        .await
        .expect("an answer in time")
        .unwrap();
    buf.truncate(n);
    buf
}

/// Sends `bytes` on a new connection to `addr` (a write cut short because the proxy
/// answered and closed early is fine) and returns everything it answers until it closes.
async fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(bytes).await;
    read_until_close(&mut stream).await
}

/// A raw HTTP/1.1 response: status, headers (names lower-cased) and body.
#[derive(Debug)]
struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    /// The body as text (lossy): kinspect's error bodies are JSON.
    body: String,
}

impl RawResponse {
    /// The first response in `bytes`, if there is one.
    fn parse(bytes: &[u8]) -> Option<RawResponse> {
        let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&bytes[..end]);
        let mut lines = head.split("\r\n");
        let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let rest = &bytes[end + 4..];
        let body = match headers.iter().find(|(n, _)| n == "content-length") {
            Some((_, len)) => &rest[..len.parse::<usize>().ok()?.min(rest.len())],
            None => rest,
        };
        let body = String::from_utf8_lossy(body).into_owned();
        Some(RawResponse {
            status,
            headers,
            body,
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The Kinvey-shaped JSON body of a kinspect error.
    fn kinspect_error(&self) -> serde_json::Value {
        assert_eq!(
            self.header("content-type"),
            Some("application/json; charset=utf-8"),
            "{self:?}"
        );
        assert!(self.header("x-kinspect-error").is_some(), "{self:?}");
        let body: serde_json::Value = serde_json::from_str(&self.body).unwrap();
        for field in ["error", "description", "debug"] {
            assert!(body[field].is_string(), "{body}");
        }
        body
    }
}

/// Asserts that `bytes` is either nothing (a clean close) or one of `statuses`; returns
/// the response if there was one.
fn error_or_close(bytes: &[u8], statuses: &[u16]) -> Option<RawResponse> {
    if bytes.is_empty() {
        return None;
    }
    let response = RawResponse::parse(bytes)
        .unwrap_or_else(|| panic!("not an HTTP response: {:?}", String::from_utf8_lossy(bytes)));
    assert!(
        statuses.contains(&response.status),
        "expected one of {statuses:?}: {response:?}"
    );
    Some(response)
}

/// Asserts that `answer` is kinspect's JSON error with `status` for a request head hyper
/// could not parse (in place of hyper's bare one), and that the next flow records it.
async fn assert_rejected_head(proxy: &mut TestProxy, answer: &[u8], status: u16) -> Flow {
    let response = RawResponse::parse(answer).unwrap_or_else(|| {
        panic!(
            "not an HTTP response: {:?}",
            String::from_utf8_lossy(answer)
        )
    });
    assert_eq!(response.status, status, "{response:?}");
    let body = response.kinspect_error();
    assert!(
        body["debug"]
            .as_str()
            .unwrap()
            .contains("could not be parsed"),
        "{body}"
    );
    let flow = proxy.next_flow().await;
    assert_eq!(flow.status(), Some(status));
    let error = flow.error.as_ref().expect("recorded as an error");
    assert_eq!(error.kind, FlowErrorKind::BadRequest);
    assert_eq!(error.message, body["debug"].as_str().unwrap());
    flow
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bytes_get_a_400_or_a_close() {
    let origin = Origin::start(OriginKind::Plain).await;
    let mut proxy = TestProxy::start(None, |_| {}).await;
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .chain(*b"\r\n\r\n")
        .collect();
    // Also binary noise that starts like TLS (a client that forgot the proxy is a proxy).
    let tls = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";
    for (name, noise) in [
        ("garbage", &garbage[..]),
        ("TLS to the proxy port", &tls[..]),
    ] {
        let answer = raw_exchange(proxy.addr, noise).await;
        let response = error_or_close(&answer, &[400]);
        eprintln!("{name}: {:?}", response.as_ref().map(|r| r.status));
        match response {
            Some(response) if noise == tls => {
                // Said plainly: the proxy's address was written with https://.
                let body = response.kinspect_error();
                let debug = body["debug"].as_str().unwrap();
                assert!(debug.contains("spoke TLS (HTTPS) to kinspect"), "{debug}");
                assert_eq!(proxy.next_flow().await.status(), Some(400));
            }
            Some(_) => {
                assert_rejected_head(&mut proxy, &answer, 400).await;
            }
            None => {}
        }
    }
    proxy.assert_serves(&origin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_request_lines_get_a_400() {
    let origin = Origin::start(OriginKind::Plain).await;
    let mut proxy = TestProxy::start(None, |_| {}).await;
    let target = origin.addr;
    for request in [
        "GET\r\n\r\n".to_string(),
        format!("GET http://{target}/status/200 HTTP/9.9\r\nHost: {target}\r\n\r\n"),
        format!("G E T http://{target}/ HTTP/1.1\r\nHost: {target}\r\n\r\n"),
        format!("GET http://{target}/a b c HTTP/1.1\r\nHost: {target}\r\n\r\n"),
        format!("GET http://{target}/\x7f HTTP/1.1\r\nHost: {target}\r\n\r\n"),
        format!("GET http://{target}/ HTTP/1.1\r\nBad Header: x\r\nHost: {target}\r\n\r\n"),
    ] {
        // hyper rejects the head; the client gets kinspect's JSON and the flow is kept.
        let answer = raw_exchange(proxy.addr, request.as_bytes()).await;
        let flow = assert_rejected_head(&mut proxy, &answer, 400).await;
        eprintln!("{request:.40?}: {}", flow.error.unwrap().message);
    }
    // A URL with characters hyper refuses in a target (curl sends `"` as it is): still a
    // 400, listed with the URL it names, those characters percent-encoded.
    let request =
        format!("GET http://{target}/echo?q=\"json\"&<é> HTTP/1.1\r\nHost: {target}\r\n\r\n");
    let answer = raw_exchange(proxy.addr, request.as_bytes()).await;
    let flow = assert_rejected_head(&mut proxy, &answer, 400).await;
    assert_eq!(
        flow.request.url,
        format!("http://{target}/echo?q=%22json%22&%3C%C3%A9%3E")
    );
    assert_eq!(flow.port, target.port());
    // A CONNECT target needs its port, and only http and https are proxied (kinspect's
    // own 400s).
    for (request, url) in [
        (
            "CONNECT localhost HTTP/1.1\r\nHost: localhost\r\n\r\n",
            "localhost",
        ),
        (
            "GET ftp://localhost/file HTTP/1.1\r\nHost: localhost\r\n\r\n",
            "ftp://localhost/file",
        ),
    ] {
        let answer = raw_exchange(proxy.addr, request.as_bytes()).await;
        let response = RawResponse::parse(&answer).unwrap();
        assert_eq!(response.status, 400, "{request:?}: {response:?}");
        let body = response.kinspect_error();
        let flow = proxy.next_flow().await;
        assert_eq!(flow.request.url, url);
        assert_eq!(flow.error.unwrap().message, body["debug"].as_str().unwrap());
    }
    proxy.assert_serves(&origin).await;
}

/// A port past 65535 or an empty host is a 400 saying so; before, a port that did not
/// fit was taken for no port, and the request went to port 80 or 443 instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_out_of_range_or_an_empty_host_is_a_400_not_another_port() {
    let origin = Origin::start(OriginKind::Plain).await;
    let mut proxy = TestProxy::start(None, |_| {}).await;
    let port = origin.addr.port();
    for (request, said) in [
        (
            format!("GET http://127.0.0.1:{port}999/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
            "port is not a number from 1 to 65535",
        ),
        (
            "GET https://127.0.0.1:65536/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_string(),
            "port is not a number from 1 to 65535",
        ),
        (
            format!("GET http://:{port}/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
            "host is empty",
        ),
        (
            "CONNECT 127.0.0.1:99999 HTTP/1.1\r\nHost: 127.0.0.1:99999\r\n\r\n".to_string(),
            "the port must be a number from 1 to 65535",
        ),
        (
            "CONNECT 127.0.0.1:-1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_string(),
            "the port must be a number from 1 to 65535",
        ),
        (
            "CONNECT :443 HTTP/1.1\r\nHost: x\r\n\r\n".to_string(),
            "the host is missing",
        ),
    ] {
        let answer = raw_exchange(proxy.addr, request.as_bytes()).await;
        let response = RawResponse::parse(&answer)
            .unwrap_or_else(|| panic!("{request:?}: {:?}", String::from_utf8_lossy(&answer)));
        assert_eq!(response.status, 400, "{request:?}: {response:?}");
        let body = response.kinspect_error();
        assert!(body.to_string().contains(said), "{request:?}: {body}");
        let flow = proxy.next_flow().await;
        assert_eq!(flow.error.unwrap().kind, FlowErrorKind::BadRequest);
    }
    proxy.assert_serves(&origin).await;
}

/// Inside an intercepted HTTPS tunnel too, a head hyper cannot parse gets kinspect's
/// JSON, and its flow carries the tunnel's URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_head_inside_a_tunnel_is_answered_and_recorded() {
    let origin = Origin::start(OriginKind::Plain).await;
    let mut proxy = TestProxy::start(None, |_| {}).await;
    let tunnel = proxy.open_tunnel("kvy.example:443").await;
    let name = rustls_pki_types::ServerName::try_from("kvy.example").unwrap();
    let mut tls = proxy
        .tls_connector(&[b"http/1.1"])
        .connect(name, tunnel)
        .await
        .unwrap();
    tls.write_all(b"GET /appdata/kid HTTP/1.1\r\nHost: kvy.example\r\nX-Bad\x01: 1\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_close(&mut tls).await;
    let flow = assert_rejected_head(&mut proxy, &answer, 400).await;
    assert_eq!(flow.request.url, "https://kvy.example/appdata/kid");
    assert!(flow.client_tls.is_some(), "the tunnel's TLS is recorded");
    proxy.assert_serves(&origin).await;
}

/// A bad head pipelined behind a good one is quoted and recorded as itself; after an
/// HTTP/1.0 keep-alive exchange it is answered in HTTP/1.0; one full of escape
/// sequences is recorded with a `?` method and the proxy's own URL, never its bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_http10_and_hostile_bad_heads_are_recorded_as_themselves() {
    let origin = Origin::start(OriginKind::Plain).await;
    let mut proxy = TestProxy::start(None, |_| {}).await;
    let good = origin.url("/status/200");
    let bad = format!(
        "GET {} HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n",
        origin.url("/bad")
    );

    let together = format!("GET {good} HTTP/1.1\r\nHost: x\r\n\r\n{bad}");
    let answer = raw_exchange(proxy.addr, together.as_bytes()).await;
    let second = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let second = answer[second..]
        .windows(5)
        .position(|w| w == b"HTTP/")
        .unwrap()
        + second;
    assert_eq!(proxy.next_flow().await.request.url, good);
    let flow = assert_rejected_head(&mut proxy, &answer[second..], 400).await;
    assert_eq!(flow.request.url, origin.url("/bad"));
    let message = flow.error.unwrap().message;
    assert!(
        message.contains("name is not valid") && message.contains("it began: GET http"),
        "{message}"
    );
    assert!(message.contains("/bad"), "{message}");

    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let old = format!("GET {good} HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n");
    stream.write_all(old.as_bytes()).await.unwrap();
    let first = read_some(&mut stream).await;
    assert!(
        first.starts_with(b"HTTP/1.0 200"),
        "{:?}",
        String::from_utf8_lossy(&first)
    );
    proxy.next_flow().await;
    stream.write_all(bad.as_bytes()).await.unwrap();
    let answer = read_until_close(&mut stream).await;
    assert!(
        answer.starts_with(b"HTTP/1.0 400"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    assert_rejected_head(&mut proxy, &answer, 400).await;

    let hostile = b"\x1b]0;PWNED\x07\x1b[2JGET http://a/\x1b[5m HTTP/1.1\r\nHost: a\r\n\r\n";
    let answer = raw_exchange(proxy.addr, hostile).await;
    let flow = assert_rejected_head(&mut proxy, &answer, 400).await;
    assert_eq!(flow.request.method, "?");
    assert_eq!(flow.request.url, format!("http://{}/", proxy.addr));
    assert!(!flow.error.unwrap().message.contains('\x1b'));
    proxy.assert_serves(&origin).await;
}

/// An origin's answer that happens to be byte for byte what hyper sends for a head it
/// cannot parse is the origin's, and reaches the client unchanged: only a response
/// written with no exchange open is hyper's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_answer_like_hypers_own_is_passed_unchanged() {
    const LIKE_HYPERS: &str =
        "HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
    let (addr, _server) = raw_origin(|mut stream| async move {
        let _ = stream.write_all(LIKE_HYPERS.as_bytes()).await;
        let _ = read_until_close(&mut stream).await;
    })
    .await;
    let origin = Origin::start(OriginKind::Plain).await;
    let mut proxy = TestProxy::start(None, |_| {}).await;
    // After an exchange on the same connection, so that the watch has been idle.
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let first = origin.url("/status/200");
    let second = format!("http://{addr}/like-hypers");
    for (url, connection) in [(&first, "keep-alive"), (&second, "close")] {
        let request = format!("GET {url} HTTP/1.1\r\nHost: x\r\nConnection: {connection}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let response = RawResponse::parse(&read_some(&mut stream).await).unwrap();
        assert_eq!(response.header("x-kinspect-error"), None, "{response:?}");
        let flow = proxy.next_flow().await;
        assert_eq!(&flow.request.url, url);
        assert_eq!(flow.status(), Some(response.status));
        assert!(!flow.response.unwrap().from_proxy);
    }
    proxy.assert_serves(&origin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_and_too_many_fields_get_a_431() {
    let origin = Origin::start(OriginKind::Plain).await;
    let mut proxy = TestProxy::start(None, |_| {}).await;
    let max_bytes = kinspect::proxy::ProxyConfig::default().max_header_bytes;
    let max_fields = kinspect::proxy::ProxyConfig::default().max_headers;
    assert_eq!((max_bytes, max_fields), (64 * 1024, 100));
    let target = origin.addr;

    // One field larger than the whole limit.
    let big = format!(
        "GET http://{target}/status/200 HTTP/1.1\r\nHost: {target}\r\nX-Big: {}\r\n\r\n",
        "b".repeat(max_bytes + 1024)
    );
    // Many fields, each small, together larger than the limit.
    let many_bytes = format!(
        "GET http://{target}/status/200 HTTP/1.1\r\nHost: {target}\r\n{}\r\n",
        (0..80)
            .map(|i| format!("X-F{i}: {}\r\n", "m".repeat(1000)))
            .collect::<String>()
    );
    // More fields than the count limit, each tiny.
    let many_fields = format!(
        "GET http://{target}/status/200 HTTP/1.1\r\nHost: {target}\r\n{}\r\n",
        (0..max_fields)
            .map(|i| format!("X-F{i}: {i}\r\n"))
            .collect::<String>()
    );
    // Past the 16 KiB kinspect keeps of a head, under 64 KiB: either limit may be it.
    let larger = "its head is longer than the 16 KiB kinspect keeps, with at least";
    let more = "it has 101 header fields, more than --max-headers (100) allows";
    for (name, request, said) in [
        ("one huge field", &big, larger),
        ("many large fields", &many_bytes, larger),
        ("too many fields", &many_fields, more),
    ] {
        let answer = raw_exchange(proxy.addr, request.as_bytes()).await;
        let flow = assert_rejected_head(&mut proxy, &answer, 431).await;
        assert_eq!(
            flow.request.url,
            format!("http://{target}/status/200"),
            "{name}"
        );
        let message = flow.error.expect("an error").message;
        assert!(message.contains(said), "{name}: {message}");
    }
    // Just under both limits is served.
    let fine = format!(
        "GET http://{target}/status/200 HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n{}\r\n",
        (0..max_fields - 3)
            .map(|i| format!("X-F{i}: {}\r\n", "f".repeat(400)))
            .collect::<String>()
    );
    assert!(fine.len() < max_bytes);
    let answer = raw_exchange(proxy.addr, fine.as_bytes()).await;
    assert_eq!(RawResponse::parse(&answer).unwrap().status, 200);
    let flow = proxy.next_flow().await;
    assert_eq!(flow.request.headers.len(), max_fields - 1);
    proxy.assert_serves(&origin).await;
}

/// Header fields to send, in order.
type Fields = Vec<(String, String)>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_http2_header_list_gets_kinspects_431_and_a_flow() {
    let origin = Origin::start(OriginKind::Https).await;
    let mut proxy = TestProxy::start(Some(&origin), |_| {}).await;
    let defaults = kinspect::proxy::ProxyConfig::default();
    let (max_bytes, max_fields) = (defaults.max_header_bytes, defaults.max_headers);
    let client = proxy
        .client_builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let url = origin.url("/status/200");
    let big = "b".repeat(max_bytes + 1024);
    let cases: [(&str, Fields, &str); 3] = [
        (
            "one huge field",
            vec![("x-big".into(), big.clone())],
            "--max-header-bytes",
        ),
        (
            "many large fields",
            (0..80)
                .map(|i| (format!("x-f{i}"), "m".repeat(1000)))
                .collect(),
            "--max-header-bytes",
        ),
        (
            "too many fields",
            (0..max_fields + 1)
                .map(|i| (format!("x-f{i}"), i.to_string()))
                .collect(),
            "--max-headers",
        ),
    ];
    for (name, fields, limit) in cases {
        let mut request = client.get(&url);
        for (field, value) in &fields {
            request = request.header(field, value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 431, "{name}");
        assert_eq!(response.version(), reqwest::Version::HTTP_2);
        assert!(
            response.headers().contains_key("x-kinspect-error"),
            "{name}: kinspect's own answer, not the HTTP/2 layer's"
        );
        let body: serde_json::Value = response.json().await.unwrap();
        let debug = body["debug"].as_str().unwrap();
        assert!(debug.contains(limit), "{name}: {debug}");
        // Recorded, with what was sent: the user sees which field made it too large.
        let flow = proxy.next_flow().await;
        assert_eq!(flow.status(), Some(431), "{name}");
        assert_eq!(flow.request.url, url, "{name}");
        let error = flow.error.as_ref().expect("recorded as an error");
        assert_eq!(error.kind, FlowErrorKind::BadRequest);
        assert_eq!(error.message, debug);
        // Its fields as sent, each value's first KiB, 16 KiB in all at most.
        let (field, value) = &fields[0];
        let kept = flow.request.headers.get(field).unwrap().into_owned();
        match value.len() > 1024 {
            true => assert_eq!(kept, format!("{}...", &value[..1024]), "{name}"),
            false => assert_eq!(&kept, value, "{name}"),
        }
        let stored: usize = flow
            .request
            .headers
            .iter()
            .map(|f| f.name.len() + f.value.len())
            .sum();
        assert!(stored <= 16 * 1024, "{name}: {stored} bytes kept");
    }
    // Just under both limits is served.
    let mut request = client.get(&url);
    // (The origin, hyper's HTTP/2 server, takes 16 KiB of header list.) Cookies sent as a
    // field each count as the one field they make over HTTP/1.
    for i in 0..max_fields - 5 {
        request = request.header(format!("x-f{i}"), "f".repeat(100));
    }
    for i in 0..20 {
        request = request.header("cookie", format!("c{i}=v"));
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    let flow = proxy.next_flow().await;
    assert_eq!(flow.status(), Some(200));
    let cookies = flow
        .request
        .headers
        .iter()
        .filter(|f| f.name.eq_ignore_ascii_case("cookie"));
    assert_eq!(cookies.count(), 20);
    let sent = flow.request.headers.len() - 20 + 1;
    assert!(
        (max_fields - 5..=max_fields).contains(&sent),
        "{sent} fields"
    );
    // Past what the HTTP/2 layer decodes at all, it refuses the stream itself, unseen.
    let limit = kinspect::proxy::http2_header_list_limit(max_bytes) as usize;
    let response = client
        .get(&url)
        .header("x-huge", "h".repeat(limit))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 431);
    assert!(!response.headers().contains_key("x-kinspect-error"));
    proxy.assert_serves(&origin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_chunked_encoding_in_a_request_body_is_a_400_and_recorded() {
    let origin = Origin::start(OriginKind::Plain).await;
    let mut proxy = TestProxy::start(None, |_| {}).await;
    let target = origin.addr;
    let request = format!(
        "POST http://{target}/echo HTTP/1.1\r\nHost: {target}\r\nTransfer-Encoding: chunked\r\n\r\n\
         5\r\nhello\r\nnot-a-size\r\nworld\r\n0\r\n\r\n"
    );
    let answer = raw_exchange(proxy.addr, request.as_bytes()).await;
    // The request reached kinspect and the origin: kinspect answers, saying what was wrong
    // with what the client sent (not that the client went away).
    let response = error_or_close(&answer, &[400]).expect("kinspect answers");
    let body = response.kinspect_error();
    eprintln!("invalid chunk: {} {body}", response.status);
    assert_eq!(body["error"], "BadProxyRequest");
    assert!(body["debug"].as_str().unwrap().contains("chunk"), "{body}");

    let flow = proxy.next_flow().await;
    assert_eq!(flow.request.url, format!("http://{target}/echo"));
    let error = flow.error.as_ref().expect("the broken upload is an error");
    eprintln!("invalid chunk flow: {:?} {}", error.kind, error.message);
    assert_eq!(error.kind, FlowErrorKind::BadRequest, "{error:?}");
    assert!(error.message.contains("chunk"), "{error:?}");
    assert_eq!(flow.status(), Some(400));
    assert!(flow.request.body.incomplete, "{:?}", flow.request.body);
    assert_eq!(&flow.request.body.bytes[..], b"hello");
    proxy.assert_serves(&origin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_content_lengths_get_a_400() {
    let origin = Origin::start(OriginKind::Plain).await;
    let mut proxy = TestProxy::start(None, |_| {}).await;
    let target = origin.addr;
    for length in [
        "Content-Length: abc\r\n",
        "Content-Length: -5\r\n",
        "Content-Length: 5\r\nContent-Length: 6\r\n",
        "Content-Length: 5, 6\r\n",
        "Content-Length: 99999999999999999999999\r\n",
    ] {
        let request =
            format!("POST http://{target}/echo HTTP/1.1\r\nHost: {target}\r\n{length}\r\nhello!");
        let answer = raw_exchange(proxy.addr, request.as_bytes()).await;
        let flow = assert_rejected_head(&mut proxy, &answer, 400).await;
        assert_eq!(flow.request.method, "POST", "{length:?}");
    }
    proxy.assert_serves(&origin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_host_fields_get_a_400_and_are_not_forwarded() {
    let origin = Origin::start(OriginKind::Plain).await;
    let mut proxy = TestProxy::start(None, |_| {}).await;
    let target = origin.addr;
    let request = format!(
        "GET http://{target}/echo HTTP/1.1\r\nHost: {target}\r\nHost: evil.example\r\n\r\n"
    );
    let answer = raw_exchange(proxy.addr, request.as_bytes()).await;
    let response = RawResponse::parse(&answer).expect("an answer");
    assert_eq!(response.status, 400, "{response:?}");
    let body = response.kinspect_error();
    assert!(body["debug"]
        .as_str()
        .unwrap()
        .contains("more than one Host"));
    let flow = proxy.next_flow().await;
    assert_eq!(flow.status(), Some(400));
    assert_eq!(flow.error.unwrap().kind, FlowErrorKind::BadRequest);
    let hosts = flow
        .request
        .headers
        .iter()
        .filter(|f| f.name == "host")
        .count();
    assert_eq!(hosts, 2, "both are recorded");
    proxy.assert_serves(&origin).await;

    // In reverse-proxy mode, where kinspect writes the origin's name into one Host.
    let base: http::Uri = format!("http://{target}").parse().unwrap();
    let mut reverse = TestProxy::start(None, |c| c.reverse = Some(base)).await;
    let request = "GET /echo HTTP/1.1\r\nHost: kinspect\r\nHost: evil.example\r\n\r\n";
    let answer = raw_exchange(reverse.addr, request.as_bytes()).await;
    let response = RawResponse::parse(&answer).expect("an answer");
    assert_eq!(response.status, 400, "{response:?}");
    assert_eq!(reverse.next_flow().await.status(), Some(400));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_client_ends_its_side_right_behind_it_is_recorded() {
    // `nc -N`, scripts and small embedded stacks send the request, then shut down their
    // sending side; a client that gives up closes. Both end the client's side: kinspect
    // (as nginx does) takes it as the client giving up, and records the request.
    let origin = Origin::start(OriginKind::Plain).await;
    let mut proxy = TestProxy::start(None, |_| {}).await;
    let target = origin.addr;
    for request in [
        format!("GET http://{target}/status/200 HTTP/1.1\r\nHost: {target}\r\n\r\n"),
        format!("GET http://{target}/status/200 HTTP/1.0\r\n\r\n"),
        format!(
            "POST http://{target}/echo HTTP/1.1\r\nHost: {target}\r\nContent-Length: 3\r\n\r\nabc"
        ),
    ] {
        let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        stream.shutdown().await.unwrap();
        let _ = read_until_close(&mut stream).await;
        let flow = proxy.next_flow().await;
        let path = match request.starts_with("POST") {
            true => "/echo",
            false => "/status/200",
        };
        assert_eq!(flow.request.url, format!("http://{target}{path}"));
        let error = flow.error.expect("recorded as given up");
        assert_eq!(error.kind, FlowErrorKind::ClientAbort, "{request:?}");
        given_up(&error.message);
    }
    // The same inside a tunnel (recorded by the tunnel's connection, or, when the end
    // came in a read of its own, by the exchange: never lost either way).
    let mut tunnel = proxy.open_tunnel(&target.to_string()).await;
    let request = format!("GET /status/200 HTTP/1.1\r\nHost: {target}\r\n\r\n");
    tunnel.write_all(request.as_bytes()).await.unwrap();
    tunnel.shutdown().await.unwrap();
    let _ = read_until_close(&mut tunnel).await;
    let flow = proxy.next_flow().await;
    assert_eq!(flow.request.url, format!("http://{target}/status/200"));
    given_up(&flow.error.expect("recorded as given up").message);
    proxy.assert_serves(&origin).await;
}

/// Asserts that `message` says the client gave up: before kinspect began on its request
/// (hyper dropped it in the read that brought the end, most often), or while kinspect
/// waited for the answer (the end came in a read of its own).
fn given_up(message: &str) {
    assert!(
        message.contains("nc -N") || message.contains("went away"),
        "{message}"
    );
}

/// The first flight of a real TLS client: a ClientHello for `name`.
fn client_hello(name: &str) -> Vec<u8> {
    let config = rustls::ClientConfig::builder_with_provider(kinspect::tls::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let mut client = rustls::ClientConnection::new(
        std::sync::Arc::new(config),
        name.to_owned().try_into().unwrap(),
    )
    .unwrap();
    let mut hello = Vec::new();
    client.write_tls(&mut hello).unwrap();
    hello
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_or_corrupt_client_hello_is_recorded_as_a_client_tls_failure() {
    let origin = Origin::start(OriginKind::Https).await;
    let mut proxy = TestProxy::start(Some(&origin), |_| {}).await;
    let target = format!("localhost:{}", origin.addr.port());
    let hello = client_hello("localhost");
    assert!(hello.len() > 100);
    let mut corrupt = hello.clone();
    // Keep the record header (so it sniffs as TLS), scramble the handshake message.
    for byte in &mut corrupt[5..] {
        *byte ^= 0x5a;
    }
    for (name, bytes) in [
        ("truncated", &hello[..hello.len() / 2]),
        ("corrupt", &corrupt[..]),
    ] {
        let mut tunnel = proxy.open_tunnel(&target).await;
        tunnel.write_all(bytes).await.unwrap();
        // Truncated: the client gives up and closes. Corrupt: the proxy closes (after a
        // TLS alert, if any).
        if name == "truncated" {
            drop(tunnel);
        } else {
            let answer = read_until_close(&mut tunnel).await;
            assert!(
                answer.is_empty() || answer[0] == 0x15,
                "{name}: nothing or a TLS alert: {answer:?}"
            );
        }
        let flow = proxy.next_flow().await;
        assert_eq!(flow.request.method, "CONNECT", "{name}");
        assert_eq!(flow.request.url, target, "{name}");
        let error = flow.error.expect("the failed handshake is recorded");
        eprintln!("{name} ClientHello: {:?} {}", error.kind, error.message);
        assert_eq!(error.kind, FlowErrorKind::ClientTls, "{name}");
        assert!(error.message.contains("ClientHello"), "{name}: {error:?}");
    }
    proxy.assert_serves(&origin).await;
}

/// One HTTP/2 frame.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut frame = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// An HPACK block of literal fields, without indexing or Huffman coding.
fn hpack_literals(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in fields {
        assert!(name.len() < 127 && value.len() < 127);
        block.push(0x00);
        block.push(name.len() as u8);
        block.extend_from_slice(name.as_bytes());
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    }
    block
}

/// The error code of the first GOAWAY frame among `bytes` (frames the server sent).
fn goaway_code(bytes: &[u8]) -> Option<u32> {
    let mut rest = bytes;
    while rest.len() >= 9 {
        let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
        let kind = rest[3];
        let payload = rest.get(9..9 + len)?;
        if kind == 0x7 && len >= 8 {
            return Some(u32::from_be_bytes(payload[4..8].try_into().unwrap()));
        }
        rest = &rest[9 + len..];
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_protocol_errors_close_the_connection_with_goaway() {
    let origin = Origin::start(OriginKind::Https).await;
    let mut proxy = TestProxy::start(Some(&origin), |_| {}).await;
    let port = origin.addr.port();
    let target = format!("localhost:{port}");
    let settings = h2_frame(0x4, 0, 0, &[]);
    let request = h2_frame(
        0x1,
        0x4 | 0x1, // END_HEADERS | END_STREAM
        1,
        &hpack_literals(&[
            (":method", "GET"),
            (":scheme", "https"),
            (":authority", &target),
            (":path", "/hang"),
        ]),
    );
    // FRAME_SIZE_ERROR (6): a frame longer than the default 16 KiB maximum.
    let mut garbage = vec![0xff; 9];
    garbage.extend_from_slice(&[0xa5; 64]);
    // PROTOCOL_ERROR (1): DATA on stream 0.
    let data_on_zero = h2_frame(0x0, 0, 0, b"oops");
    // FRAME_SIZE_ERROR (6): a PING must carry 8 bytes.
    let short_ping = h2_frame(0x6, 0, 0, b"abc");
    let cases: [(&str, Vec<Vec<u8>>); 4] = [
        ("garbage after the preface", vec![garbage]),
        ("DATA on stream 0", vec![settings.clone(), data_on_zero]),
        (
            "bad HPACK",
            vec![settings.clone(), h2_frame(0x1, 0x5, 1, &[0xff; 16])],
        ),
        (
            "a short PING while a request is in flight",
            vec![settings.clone(), request, short_ping],
        ),
    ];
    let connector = proxy.tls_connector(&[b"h2"]);
    for (name, frames) in cases {
        let tunnel = proxy.open_tunnel(&target).await;
        let mut tls = connector
            .connect("localhost".try_into().unwrap(), tunnel)
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        tls.write_all(H2_PREFACE).await.unwrap();
        let in_flight = frames.len() == 3;
        for (i, frame) in frames.iter().enumerate() {
            if in_flight && i == 2 {
                // Let the request reach the proxy's service before the connection breaks.
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            tls.write_all(frame).await.unwrap();
        }
        tls.flush().await.unwrap();
        let answer = read_until_close(&mut tls).await;
        let code = goaway_code(&answer);
        eprintln!("h2 {name}: GOAWAY {code:?}");
        assert!(
            matches!(code, Some(c) if c != 0),
            "{name}: a GOAWAY with an error code: {answer:?}"
        );
        if in_flight {
            // The exchange that existed is recorded as abandoned by the client.
            let flow = proxy.next_flow().await;
            assert_eq!(flow.request.url, origin.url("/hang"), "{name}");
            let error = flow.error.expect("the broken exchange is an error");
            assert_eq!(error.kind, FlowErrorKind::ClientAbort, "{name}: {error:?}");
        }
    }
    proxy.assert_serves(&origin).await;
}

/// HTTP/2 with prior knowledge straight to the listener (served only inside a tunnel)
/// is told to use HTTP/1.1 in HTTP/2's own terms, and recorded; so in reverse mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_without_tls_to_the_listener_is_told_to_use_http11_and_recorded() {
    let origin = Origin::start(OriginKind::Plain).await;
    let reverse = origin.url("/");
    let mut proxy = TestProxy::start(None, |c| c.reverse = Some(reverse.parse().unwrap())).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream.write_all(H2_PREFACE).await.unwrap();
    stream.write_all(&h2_frame(0x4, 0, 0, &[])).await.unwrap();
    let answer = read_until_close(&mut stream).await;
    assert_eq!(
        goaway_code(&answer),
        Some(0xd),
        "HTTP_1_1_REQUIRED: {answer:?}"
    );
    let flow = proxy.next_flow().await;
    assert_eq!(flow.request.method, "PRI");
    assert_eq!(flow.request.url, origin.url("/"), "`*` is no path");
    assert!(flow.response.is_none());
    let error = flow.error.expect("recorded as an error");
    assert_eq!(error.kind, FlowErrorKind::BadRequest);
    assert!(
        error
            .message
            .contains("HTTP/2 with prior knowledge straight to kinspect")
            && error.message.contains("--reverse mode HTTP/1.1 only"),
        "{}",
        error.message
    );
    let direct = reqwest::Client::builder().no_proxy().build().unwrap();
    let response = direct
        .get(format!("{}/echo", proxy.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "reverse mode still serves HTTP/1.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_mid_upload_is_recorded_as_aborted() {
    const DECLARED: usize = 1024 * 1024;
    const SENT: usize = 100 * 1024;
    let origin = Origin::start(OriginKind::Plain).await;
    let mut proxy = TestProxy::start(None, |_| {}).await;
    let target = origin.addr;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let head = format!(
        "POST http://{target}/echo HTTP/1.1\r\nHost: {target}\r\nContent-Length: {DECLARED}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&vec![b'u'; SENT]).await.unwrap();
    stream.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(stream);

    let flow = proxy.next_flow().await;
    assert_eq!(flow.request.url, format!("http://{target}/echo"));
    let error = flow
        .error
        .as_ref()
        .expect("the abandoned upload is an error");
    eprintln!(
        "mid-upload close: {:?} {} ({} of {DECLARED} bytes)",
        error.kind, error.message, flow.request.body.wire_size
    );
    assert_eq!(error.kind, FlowErrorKind::ClientAbort, "{error:?}");
    assert!(flow.response.is_none(), "no answer reached the client");
    assert!(flow.request.body.incomplete);
    assert!(flow.request.body.wire_size <= SENT as u64);
    proxy.assert_serves(&origin).await;
}

/// A raw origin: for each connection, once a request head has arrived, `answer` gets
/// the stream (the body, if any, still unread).
async fn raw_origin<F, A>(answer: A) -> (SocketAddr, tokio::task::JoinHandle<()>)
where
    A: Fn(TcpStream) -> F + Send + Sync + 'static,
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let answer = Arc::new(answer);
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                while !head.ends_with(b"\r\n\r\n") {
                    match stream.read_u8().await {
                        Ok(byte) => head.push(byte),
                        Err(_) => return,
                    }
                }
                answer(stream).await;
            });
        }
    });
    (addr, task)
}

/// An origin that answers every request with a 1 MiB `Content-Length`, sends `sent`
/// bytes of it, then resets the connection (SO_LINGER 0).
async fn resetting_origin(sent: usize) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    raw_origin(move |mut stream| async move {
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            1024 * 1024
        );
        stream.write_all(answer.as_bytes()).await.unwrap();
        stream.write_all(&vec![b'r'; sent]).await.unwrap();
        stream.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        stream.set_zero_linger().unwrap();
        drop(stream);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_that_resets_mid_body_is_an_error_for_the_client_and_the_flow() {
    const SENT: usize = 64 * 1024;
    let (reset_addr, _server) = resetting_origin(SENT).await;
    let origin = Origin::start(OriginKind::Plain).await;
    let mut proxy = TestProxy::start(None, |_| {}).await;
    let url = format!("http://{reset_addr}/download");
    let response = proxy.client().get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200, "the head came through");
    let body = response.bytes().await;
    assert!(body.is_err(), "the client sees the body break off");

    let flow = proxy.next_flow().await;
    assert_eq!(flow.request.url, url);
    let error = flow.error.as_ref().expect("the broken body is an error");
    eprintln!("origin reset: {:?} {}", error.kind, error.message);
    assert_eq!(error.kind, FlowErrorKind::Protocol, "{error:?}");
    assert!(error.message.contains("broke off"), "{error:?}");
    let response = flow.response.as_ref().unwrap();
    assert_eq!(response.status, 200);
    assert!(response.body.incomplete);
    assert!(response.body.wire_size <= SENT as u64);
    proxy.assert_serves(&origin).await;
}

/// A small response (read whole before its head goes out) that breaks off, or a 101 the
/// request never asked for: nothing has reached the client, which gets kinspect's 502
/// (before: a connection closed with no answer, and a bare 101).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_body_breaking_off_or_an_unasked_101_is_a_502() {
    let (short, _short_server) = raw_origin(|mut stream| async move {
        let answer = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort";
        let _ = stream.write_all(answer.as_bytes()).await;
    })
    .await;
    let (switching, _switching_server) = raw_origin(|mut stream| async move {
        let answer =
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = read_until_close(&mut stream).await;
    })
    .await;
    let origin = Origin::start(OriginKind::Plain).await;
    let mut proxy = TestProxy::start(None, |_| {}).await;
    for (addr, said) in [(short, "broke off"), (switching, "switched protocols")] {
        let request = format!("GET http://{addr}/ HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let answer = read_some(&mut stream).await;
        let response = RawResponse::parse(&answer)
            .unwrap_or_else(|| panic!("{said}: {:?}", String::from_utf8_lossy(&answer)));
        assert_eq!(response.status, 502, "{response:?}");
        let body = response.kinspect_error();
        assert_eq!(body["error"], "UpstreamProtocolError");
        assert!(body.to_string().contains(said), "{body}");
        // The flow records what the client got.
        let flow = proxy.next_flow().await;
        let recorded = flow.response.as_ref().unwrap();
        assert_eq!((recorded.status, recorded.from_proxy), (502, true));
        let error = flow.error.expect("recorded as an error");
        assert_eq!(error.kind, FlowErrorKind::Protocol);
        assert_eq!(error.message, body["debug"].as_str().unwrap());
    }
    proxy.assert_serves(&origin).await;
}

/// A response framed by both `Content-Length` and chunked `Transfer-Encoding` is read
/// chunked (RFC 9112 §6.3), and the client gets the whole body without the stale length
/// (before, it got `Content-Length: 3` and a body cut to 3 bytes, with no error).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_with_a_length_and_chunked_framing_reaches_the_client_whole() {
    let (addr, _server) = raw_origin(|mut stream| async move {
        let answer = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n\
                      5\r\nhello\r\n0\r\n\r\n";
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = read_until_close(&mut stream).await;
    })
    .await;
    let mut proxy = TestProxy::start(None, |_| {}).await;
    let response = proxy
        .client()
        .get(format!("http://{addr}/framed"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers().get("content-length"), None);
    assert_eq!(response.text().await.unwrap(), "hello");
    let flow = proxy.next_flow().await;
    assert!(flow.error.is_none(), "{:?}", flow.error);
    assert_eq!(flow.response.unwrap().body.wire_size, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origins_with_bad_certificates_are_a_502_saying_why() {
    let alpn: &[&[u8]] = &[b"h2", b"http/1.1"];
    let names = ["localhost", "127.0.0.1"];

    let ca = TestCa::new();
    let config = ca.leaf_config(&names, Some(Validity::expired()), alpn);
    let expired = Origin::start_tls(config, ca).await;

    // kinspect trusts a test CA, but the origin's certificate signs itself.
    let self_signed = Origin::start_tls(self_signed_config(&names, alpn), TestCa::new()).await;

    let ca = TestCa::new();
    let config = ca.leaf_config(&["other.example"], None, alpn);
    let wrong_host = Origin::start_tls(config, ca).await;

    // What `openssl req -x509` makes: a CA certificate presented as the server's own,
    // trusted as a CA all the same.
    let (ca, cert, key) = TestCa::named(&names);
    let ca_as_server = Origin::start_tls(tls_server_config(vec![cert], key, alpn), ca).await;

    // One proxy trusting every origin's CA, the good one's too.
    let good = Origin::start(OriginKind::Https).await;
    let bad = [
        ("expired", &expired, "(Expired)"),
        ("self-signed", &self_signed, "(UnknownIssuer)"),
        ("wrong host", &wrong_host, "(NotValidForName)"),
        ("CA as server", &ca_as_server, "CA:TRUE"),
    ];
    let mut proxy = TestProxy::start(Some(&good), |c| {
        c.upstream_ca
            .extend(bad.iter().map(|(_, origin, _)| origin.ca_path()))
    })
    .await;
    for (name, origin, reason) in bad {
        let response = proxy
            .client()
            .get(origin.url("/echo"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 502, "{name}");
        assert_eq!(response.headers()["x-kinspect-error"], "tls");
        assert_eq!(
            response.headers()["content-type"],
            "application/json; charset=utf-8"
        );
        let body: serde_json::Value = response.json().await.unwrap();
        eprintln!("{name}: 502 {body}");
        assert_eq!(body["error"], "UpstreamTLSFailure");
        let debug = body["debug"].as_str().unwrap();
        assert!(debug.contains(reason), "{name}: {debug}");
        assert!(debug.contains(&format!("localhost:{}", origin.addr.port())));

        let flow = proxy.next_flow().await;
        assert_eq!(flow.kind, FlowKind::Http);
        assert_eq!(flow.request.url, origin.url("/echo"));
        let error = flow
            .error
            .as_ref()
            .expect("the rejected origin is an error");
        assert_eq!(error.kind, FlowErrorKind::Tls, "{name}");
        assert_eq!(
            error.message, debug,
            "{name}: the flow records the same reason"
        );
        assert_eq!(flow.status(), Some(502));
        assert!(flow.response.as_ref().unwrap().from_proxy);
        // The connection was made before its certificate was refused: who answered, and
        // how long connecting and the failed handshake took.
        assert_eq!(flow.server_ip, Some(origin.addr.ip()), "{name}");
        let ssl = flow.timings.ssl.expect("the handshake's time");
        assert!(flow.timings.connect.is_some_and(|c| c >= ssl), "{name}");
        assert!(flow.server_tls.is_none(), "no session was agreed");
    }
    proxy.assert_serves(&good).await;
}

/// An origin that answers `status` (with a body, and `connection` among its fields) as
/// soon as it has a request's head and closes the connection without reading the body
/// (as an upload limit or a missing handler does): its close resets the connection, as
/// data it never read is left.
async fn early_answering_origin(
    status: &'static str,
    connection: &'static str,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    raw_origin(move |mut stream| async move {
        let answer = format!("HTTP/1.1 {status}\r\nContent-Length: 8\r\n{connection}\r\ntoo big!");
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = stream.flush().await;
        drop(stream);
    })
    .await
}

/// The origin's early answer reaches the client, and the flow, whole, however the
/// origin's close meets kinspect's upload (as curl direct reads it); that connection
/// takes no other request, even when the answer did not say it closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_refusing_an_upload_early_gets_its_answer_through() {
    let origin = Origin::start(OriginKind::Plain).await;
    let mut proxy = TestProxy::start(None, |_| {}).await;
    let client = proxy.client_builder().http1_only().build().unwrap();
    for connection in ["Connection: close\r\n", ""] {
        let (refusing, _server) = early_answering_origin("413 Payload Too Large", connection).await;
        let url = format!("http://{refusing}/upload");
        for attempt in 0..6 {
            let said = format!("attempt {attempt} with {connection:?}");
            let response = client
                .post(&url)
                .body(vec![b'u'; 4 * 1024 * 1024])
                .send()
                .await
                .unwrap_or_else(|e| panic!("{said}: {e:?}"));
            assert_eq!(response.status(), 413, "{said}");
            assert_eq!(&response.bytes().await.unwrap()[..], b"too big!");
            let flow = proxy.next_flow().await;
            assert_eq!(flow.status(), Some(413), "{said}: {:?}", flow.error);
            let answer = flow.response.as_ref().unwrap();
            assert!(!answer.from_proxy && !answer.body.incomplete, "{said}");
            assert_eq!(&answer.body.bytes[..], b"too big!");
        }
    }
    proxy.assert_serves(&origin).await;
}
