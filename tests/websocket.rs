//! WebSocket (and other `Upgrade`) connections are relayed through kinspect, over plain
//! HTTP and inside intercepted TLS, and recorded with the bytes each way.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use support::{TestCa, TestProxy, STEP};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// RFC 6455's example: the accept value for `KEY`.
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

fn accept_for(key: &str) -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11").as_bytes(),
    );
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// Switches to "websocket" and echoes whatever bytes come after.
async fn echo_upgrade(mut req: Request<Incoming>) -> Result<Response<Empty<Bytes>>, Infallible> {
    let key = req
        .headers()
        .get("sec-websocket-key")
        .and_then(|k| k.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        if let Ok(upgraded) = upgrade.await {
            let mut io = TokioIo::new(upgraded);
            let mut buf = [0u8; 1024];
            while let Ok(n) = io.read(&mut buf).await {
                if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    });
    let response = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-accept", accept_for(&key))
        .body(Empty::new())
        .unwrap();
    Ok(response)
}

/// A WebSocket echo origin, plain or over TLS (offering h2 too, as real servers do).
async fn ws_origin(tls: Option<&TestCa>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tls.map(|ca| {
        tokio_rustls::TlsAcceptor::from(Arc::new(ca.server_config(&[b"h2", b"http/1.1"])))
    });
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let builder = hyper::server::conn::http1::Builder::new();
                let service = service_fn(echo_upgrade);
                match acceptor {
                    Some(acceptor) => {
                        if let Ok(tls) = acceptor.accept(stream).await {
                            let _ = builder
                                .serve_connection(TokioIo::new(tls), service)
                                .with_upgrades()
                                .await;
                        }
                    }
                    None => {
                        let _ = builder
                            .serve_connection(TokioIo::new(stream), service)
                            .with_upgrades()
                            .await;
                    }
                }
            });
        }
    });
    addr
}

async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(STEP, stream.read(&mut byte))
            .await
            .unwrap()
            .unwrap();
        assert!(
            n > 0,
            "closed before the response head: {}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

/// The handshake and an echo over `stream`, addressed with `target` (a path or a URL).
async fn handshake_and_echo<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    target: &str,
    host: &str,
) {
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let head = read_head(stream).await.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(
        head.contains(&format!(
            "sec-websocket-accept: {}",
            ACCEPT.to_ascii_lowercase()
        )),
        "{head}"
    );
    assert!(head.contains("upgrade: websocket"), "{head}");
    for message in [&b"hello"[..], b"kinvey live service"] {
        stream.write_all(message).await.unwrap();
        let mut echoed = vec![0u8; message.len()];
        tokio::time::timeout(STEP, stream.read_exact(&mut echoed))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(echoed, message);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_websockets_are_relayed_and_recorded() {
    let origin = ws_origin(None).await;
    let mut proxy = TestProxy::start(None, |_| {}).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    handshake_and_echo(
        &mut stream,
        &format!("http://{origin}/live"),
        &origin.to_string(),
    )
    .await;
    drop(stream);
    let flow = proxy.next_flow().await;
    assert_eq!(flow.status(), Some(101));
    assert_eq!(flow.request.url, format!("http://{origin}/live"));
    assert_eq!(flow.request.body.wire_size, 24, "client to server bytes");
    assert_eq!(flow.response.as_ref().unwrap().body.wire_size, 24);
    assert!(flow.error.is_none(), "{:?}", flow.error);
}

/// TLS with kinspect's leaf for `authority` (HTTP/1.1), through a CONNECT tunnel.
async fn tls_through(
    proxy: &TestProxy,
    authority: &str,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    try_tls_through(proxy, authority)
        .await
        .expect("the CONNECT is answered 200")
}

/// [`tls_through`], or None when the proxy does not answer the CONNECT with 200.
async fn try_tls_through(
    proxy: &TestProxy,
    authority: &str,
) -> Option<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut tunnel = TcpStream::connect(proxy.addr).await.unwrap();
    tunnel
        .write_all(format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    if !read_head(&mut tunnel).await.starts_with("HTTP/1.1 200") {
        return None;
    }
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(
        rustls_pki_types::CertificateDer::pem_slice_iter(proxy.ca_pem.as_bytes())
            .map(|c| c.unwrap()),
    );
    let mut config = rustls::ClientConfig::builder_with_provider(kinspect::tls::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host);
    let name = rustls_pki_types::ServerName::try_from(host.to_owned()).unwrap();
    Some(connector.connect(name, tunnel).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_websocket_keeps_its_connections_place_under_max_connections() {
    let origin_ca = TestCa::new();
    let plain = ws_origin(None).await;
    let secure = ws_origin(Some(&origin_ca)).await;
    let ca_path = origin_ca.pem_path.clone();
    let mut proxy = TestProxy::start(None, |c| {
        c.upstream_ca.push(ca_path);
        c.max_connections = 1;
    })
    .await;
    // Another connection while the socket is open: refused, as the limit says.
    let another = |proxy: std::net::SocketAddr| async move {
        let mut stream = TcpStream::connect(proxy).await.unwrap();
        let request = format!("GET http://{plain}/ HTTP/1.1\r\nHost: {plain}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        read_head(&mut stream).await
    };

    let mut socket = TcpStream::connect(proxy.addr).await.unwrap();
    handshake_and_echo(
        &mut socket,
        &format!("http://{plain}/live"),
        &plain.to_string(),
    )
    .await;
    assert!(another(proxy.addr).await.starts_with("HTTP/1.1 503"));
    assert_eq!(proxy.next_flow().await.status(), Some(503));
    drop(socket);
    assert_eq!(proxy.next_flow().await.status(), Some(101));

    let authority = format!("localhost:{}", secure.port());
    // The closed socket's place comes back when its connection's task ends, a moment
    // after its flow is recorded: a CONNECT before that is refused (and recorded).
    let mut socket = loop {
        match try_tls_through(&proxy, &authority).await {
            Some(socket) => break socket,
            None => {
                assert_eq!(proxy.next_flow().await.status(), Some(503));
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    };
    handshake_and_echo(&mut socket, "/live", &authority).await;
    assert!(another(proxy.addr).await.starts_with("HTTP/1.1 503"));
    assert_eq!(proxy.next_flow().await.status(), Some(503));
    drop(socket);
    assert_eq!(proxy.next_flow().await.status(), Some(101));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_websockets_are_intercepted_relayed_and_recorded() {
    let origin_ca = TestCa::new();
    let origin = ws_origin(Some(&origin_ca)).await;
    let ca_path = origin_ca.pem_path.clone();
    let mut proxy = TestProxy::start(None, |c| c.upstream_ca.push(ca_path)).await;

    let authority = format!("localhost:{}", origin.port());
    let mut tls = tls_through(&proxy, &authority).await;
    handshake_and_echo(&mut tls, "/live", &authority).await;
    drop(tls);

    let flow = proxy.next_flow().await;
    assert_eq!(flow.status(), Some(101));
    assert_eq!(flow.request.url, format!("https://{authority}/live"));
    assert_eq!(
        flow.response.as_ref().unwrap().version,
        kinspect::flow::HttpVersion::Http11
    );
    assert_eq!(
        flow.server_tls.as_ref().unwrap().alpn.as_deref(),
        Some("http/1.1"),
        "upgrades need HTTP/1.1 upstream"
    );
    assert_eq!(flow.request.body.wire_size, 24);
    // Its own connection to the origin, set-up timed.
    assert!(flow.timings.connect.is_some());
    assert!(flow.timings.ssl.is_some());
}

use rustls_pki_types::pem::PemObject;

/// One WebSocket frame as a peer writes it (payloads under 126 bytes).
fn frame(fin: bool, rsv1: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | (u8::from(rsv1) << 6) | opcode];
    out.push((u8::from(mask.is_some()) << 7) | payload.len() as u8);
    match mask {
        Some(mask) => {
            out.extend_from_slice(&mask);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// `text` as permessage-deflate sends it: raw deflate, synced, the sync tail cut.
fn deflated(text: &str) -> Vec<u8> {
    let mut compress = flate2::Compress::new(flate2::Compression::default(), false);
    let mut out = Vec::with_capacity(text.len() + 64);
    compress
        .compress_vec(text.as_bytes(), &mut out, flate2::FlushCompress::Sync)
        .unwrap();
    out.truncate(out.len() - 4);
    out
}

/// A WebSocket origin that agrees to permessage-deflate, greets with a compressed
/// message, then answers the client's one text message (frames of known sizes).
async fn greeting_origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let head = read_head(&mut stream).await;
        assert!(head.contains("permessage-deflate"), "{head}");
        let response = format!(
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Accept: {ACCEPT}\r\n\
             Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n\r\n"
        );
        stream.write_all(response.as_bytes()).await.unwrap();
        let greeting = deflated(r#"{"welcome":"kinvey live service"}"#);
        stream
            .write_all(&frame(true, true, 0x1, &greeting, None))
            .await
            .unwrap();
        // The client's masked "subscribe" (2 + 4 + 21 bytes), then an answer and a close.
        let mut message = [0u8; 27];
        stream.read_exact(&mut message).await.unwrap();
        stream
            .write_all(&frame(true, false, 0x1, br#"{"subscribed":true}"#, None))
            .await
            .unwrap();
        stream
            .write_all(&frame(true, false, 0x8, &1000u16.to_be_bytes(), None))
            .await
            .unwrap();
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_messages_are_read_as_they_pass_compressed_or_not() {
    let origin = greeting_origin().await;
    let mut proxy = TestProxy::start(None, |_| {}).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let request = format!(
        "GET http://{origin}/live HTTP/1.1\r\nHost: {origin}\r\nConnection: Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    assert!(read_head(&mut stream).await.starts_with("HTTP/1.1 101"));
    // The greeting first, so that the messages' order is known.
    let mut greeting = [0u8; 2];
    stream.read_exact(&mut greeting).await.unwrap();
    let mut compressed = vec![0u8; usize::from(greeting[1] & 0x7f)];
    stream.read_exact(&mut compressed).await.unwrap();
    let subscribe = frame(
        true,
        false,
        0x1,
        br#"{"subscribe":"books"}"#,
        Some([1, 2, 3, 4]),
    );
    stream.write_all(&subscribe).await.unwrap();
    // The answer and the close, relayed as they were.
    let mut relayed = Vec::new();
    tokio::time::timeout(STEP, stream.read_to_end(&mut relayed))
        .await
        .unwrap()
        .unwrap();
    assert!(relayed.ends_with(&frame(true, false, 0x8, &1000u16.to_be_bytes(), None)));
    drop(stream);

    let flow = proxy.next_flow().await;
    assert_eq!(flow.status(), Some(101));
    let log = flow.websocket.as_ref().expect("read as a WebSocket");
    let messages: Vec<(bool, &str, String)> = log
        .messages
        .iter()
        .map(|m| {
            (
                m.from_client,
                m.kind(),
                String::from_utf8_lossy(&m.payload).into_owned(),
            )
        })
        .collect();
    assert_eq!(
        messages,
        [
            (
                false,
                "text",
                r#"{"welcome":"kinvey live service"}"#.to_owned()
            ),
            (true, "text", r#"{"subscribe":"books"}"#.to_owned()),
            (false, "text", r#"{"subscribed":true}"#.to_owned()),
            // Status 1000 (0x03e8), not text.
            (false, "close", "\u{3}\u{fffd}".to_owned()),
        ]
    );
    assert_eq!(log.unreadable, None);
    // Stored and read back with the flow.
    let reader = kinspect::capture::CaptureReader::open(&proxy.capture_path()).unwrap();
    let stored = reader.flow(flow.id).unwrap().unwrap();
    assert_eq!(stored.flow.websocket, flow.websocket);

    // Listings count them each way.
    let ls = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_kinspect"))
            .arg("ls")
            .args(args)
            .arg(proxy.capture_path())
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    let line = ls(&[]);
    assert!(
        line.trim_end()
            .ends_with(" messages[1 from client, 3 from server]"),
        "{line}"
    );
    let object: serde_json::Value = serde_json::from_str(ls(&["--json"]).trim()).unwrap();
    assert_eq!(
        object["websocket"],
        serde_json::json!({
            "from_client": 1, "from_server": 3, "bytes_from_client": 21,
            "bytes_from_server": 54, "dropped": 0, "unreadable": null,
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_websockets_go_to_an_upstream_proxy_in_absolute_form() {
    let origin = ws_origin(None).await;
    let parent = support::FakeParent::start(None).await;
    let parent_url = format!("http://127.0.0.1:{}", parent.port);
    let mut proxy = TestProxy::start(None, |c| {
        c.upstream_proxy = Some(parent_url.parse().unwrap())
    })
    .await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    // A name only the parent resolves (to 127.0.0.1).
    let authority = format!("ws.test:{}", origin.port());
    handshake_and_echo(&mut stream, &format!("http://{authority}/live"), &authority).await;
    drop(stream);
    let flow = proxy.next_flow().await;
    assert_eq!(flow.status(), Some(101));
    assert!(flow.error.is_none(), "{:?}", flow.error);
    let heads = parent.heads();
    assert!(
        heads[0].starts_with(&format!("GET http://{authority}/live HTTP/1.1\r\n")),
        "{heads:?}"
    );
}
