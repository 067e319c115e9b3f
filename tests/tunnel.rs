//! CONNECT tunnels that are not intercepted: non-TLS services, silent clients, and
//! hosts passed through with --ignore-hosts.

mod support;

use std::time::Duration;

use kinspect::flow::{Flow, FlowKind};
use regex::Regex;
use support::{tls_connector_trusting, Origin, OriginKind, TestCa, TestProxy, STEP};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// A line service that greets first (like SMTP) and then echoes lines back upper-cased.
async fn greeting_echo_server() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                write.write_all(b"220 greetings\r\n").await.unwrap();
                let mut lines = BufReader::new(read).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let reply = format!("{}\r\n", line.to_uppercase());
                    if write.write_all(reply.as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, task)
}

/// Opens a CONNECT tunnel through the proxy and returns the stream after the 200.
async fn connect_through(proxy: &TestProxy, target: &str) -> BufReader<TcpStream> {
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    reader.read_line(&mut status).await.unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).await.unwrap();
        if line == "\r\n" {
            break;
        }
    }
    reader
}

async fn read_line(reader: &mut BufReader<TcpStream>) -> String {
    let mut line = String::new();
    tokio::time::timeout(STEP, reader.read_line(&mut line))
        .await
        .expect("a line in time")
        .unwrap();
    line
}

/// Through a tunnel to a [`greeting_echo_server`] at `addr`: waits for the greeting,
/// has one line echoed, closes; returns the tunnel's flow.
async fn greeted_through(proxy: &mut TestProxy, addr: std::net::SocketAddr) -> Flow {
    let mut tunnel = connect_through(proxy, &addr.to_string()).await;
    assert_eq!(read_line(&mut tunnel).await, "220 greetings\r\n");
    tunnel.get_mut().write_all(b"hello\r\n").await.unwrap();
    assert_eq!(read_line(&mut tunnel).await, "HELLO\r\n");
    drop(tunnel);
    let flow = proxy.next_flow().await;
    assert_eq!(flow.kind, FlowKind::Tunnel);
    flow
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_speaks_first_service_passes_through_after_silence() {
    let (addr, _server) = greeting_echo_server().await;
    let mut proxy = TestProxy::start(None, |c| c.sniff_timeout = Duration::from_millis(200)).await;
    // The client waits for the greeting: kinspect sees silence and opens a blind tunnel.
    let flow = greeted_through(&mut proxy, addr).await;
    assert_eq!(flow.request.method, "CONNECT");
    assert_eq!(flow.request.url, addr.to_string());
    assert_eq!(flow.request.body.wire_size, 7, "client to server bytes");
    assert_eq!(
        flow.response.as_ref().unwrap().body.wire_size,
        22,
        "server to client bytes"
    );
    assert!(flow.error.is_none(), "{:?}", flow.error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_speaks_first_is_heard_long_before_the_sniff_timeout() {
    let (addr, _server) = greeting_echo_server().await;
    // A sniff timeout longer than the test waits for a line (STEP): only a greeting
    // passed on before it is over arrives.
    let mut proxy = TestProxy::start(None, |c| c.sniff_timeout = STEP * 3).await;
    let flow = greeted_through(&mut proxy, addr).await;
    assert!(flow.timings.connect.is_some());
    assert!(flow.error.is_none(), "{:?}", flow.error);

    // A client slower to start its TLS than the origin is dialled is still intercepted:
    // the origin, which waits for the client, says nothing first.
    let origin = Origin::start(OriginKind::Https).await;
    let proxy = TestProxy::start(Some(&origin), |c| c.sniff_timeout = STEP * 3).await;
    let authority = format!("localhost:{}", origin.addr.port());
    let tunnel = connect_through(&proxy, &authority).await.into_inner();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let tls = proxy
        .tls_connector(&[b"http/1.1"])
        .connect(name, tunnel)
        .await
        .expect("kinspect's own certificate: intercepted");
    drop(tls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_tls_bytes_after_connect_pass_through_unchanged() {
    let (addr, _server) = greeting_echo_server().await;
    let mut proxy = TestProxy::start(None, |_| {}).await;
    let mut tunnel = connect_through(&proxy, &addr.to_string()).await;
    // Lower-case text is neither TLS nor an HTTP request line.
    tunnel
        .get_mut()
        .write_all(b"ssh-ish client hello\r\n")
        .await
        .unwrap();
    assert_eq!(read_line(&mut tunnel).await, "220 greetings\r\n");
    assert_eq!(read_line(&mut tunnel).await, "SSH-ISH CLIENT HELLO\r\n");
    drop(tunnel);
    let flow = proxy.next_flow().await;
    assert_eq!(flow.kind, FlowKind::Tunnel);
    assert_eq!(flow.request.body.wire_size, 22);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_records_its_connect_fields_but_the_proxy_credential() {
    let (addr, _server) = greeting_echo_server().await;
    let mut proxy = TestProxy::start(None, |_| {}).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let request = format!(
        "CONNECT {addr} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: okhttp/4.12.0\r\n\
         Proxy-Authorization: Basic dTpw\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut tunnel = BufReader::new(stream);
    let mut status = String::new();
    tunnel.read_line(&mut status).await.unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert_eq!(read_line(&mut tunnel).await, "\r\n");
    assert_eq!(read_line(&mut tunnel).await, "220 greetings\r\n");
    drop(tunnel);
    let flow = proxy.next_flow().await;
    assert_eq!(flow.kind, FlowKind::Tunnel);
    let headers = &flow.request.headers;
    assert_eq!(headers.get("user-agent").as_deref(), Some("okhttp/4.12.0"));
    assert_eq!(headers.get("proxy-authorization"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_inside_connect_is_served_as_http() {
    let origin = Origin::start(OriginKind::Plain).await;
    let mut proxy = TestProxy::start(None, |_| {}).await;
    let target = origin.addr.to_string();
    let mut tunnel = connect_through(&proxy, &target).await;
    let request =
        format!("GET /status/201 HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n");
    tunnel
        .get_mut()
        .write_all(request.as_bytes())
        .await
        .unwrap();
    let mut response = String::new();
    tokio::time::timeout(STEP, tunnel.read_to_string(&mut response))
        .await
        .unwrap()
        .unwrap();
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    let flow = proxy.next_flow().await;
    assert_eq!(flow.kind, FlowKind::Http);
    assert_eq!(flow.request.url, format!("http://{target}/status/201"));
    assert_eq!(flow.status(), Some(201));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignored_hosts_are_tunnelled_without_interception() {
    let origin = Origin::start(OriginKind::Https).await;
    let mut proxy = TestProxy::start(None, |c| {
        c.ignore_hosts = Some(Regex::new("^localhost$").unwrap())
    })
    .await;
    // A client that trusts only the origin's own CA (a pinned app) still connects.
    let client = reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(proxy.url()).unwrap())
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(origin.ca.as_ref().unwrap().pem.as_bytes()).unwrap(),
        )
        .timeout(STEP)
        .build()
        .unwrap();
    let response = client.get(origin.url("/status/200")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    drop(response);
    drop(client);
    let flow = proxy.next_flow().await;
    assert_eq!(flow.kind, FlowKind::Tunnel);
    assert_eq!(flow.host, "localhost");
    assert!(flow.request.body.wire_size > 0);
    assert_eq!(proxy.handle.leaves_minted(), 0, "nothing was intercepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_to_an_address_is_ignored_by_the_name_its_tls_asks_for() {
    // A pinned app that resolves names itself: CONNECT to an address, TLS for a name.
    let (ignored, other) = ("ignored.kinspect.invalid", "other.kinspect.invalid");
    let ca = TestCa::new();
    let pinned = tls_connector_trusting(&ca.pem, &[b"http/1.1"]);
    let config = ca.leaf_config(&[ignored, other], None, &[b"http/1.1"]);
    let origin = Origin::start_tls(config, ca).await;
    let mut proxy = TestProxy::start(Some(&origin), |c| {
        c.ignore_hosts = Some(Regex::new(r"^ignored\.").unwrap())
    })
    .await;
    let address = origin.addr.to_string();
    let tunnel = proxy.open_tunnel(&address).await;
    let name = rustls_pki_types::ServerName::try_from(ignored).unwrap();
    let mut tls = pinned
        .connect(name, tunnel)
        .await
        .expect("the origin's own certificate: passed through");
    let request =
        format!("GET /status/200 HTTP/1.1\r\nHost: {ignored}\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(tls);
    let flow = proxy.next_flow().await;
    assert_eq!(flow.kind, FlowKind::Tunnel);
    // Listed under the name it was passed through for, dialled at the address.
    assert_eq!(flow.host, ignored);
    assert_eq!(flow.server_ip, Some(origin.addr.ip()));
    assert_eq!(proxy.handle.leaves_minted(), 0, "nothing was intercepted");

    // Another name at the same address is intercepted: the pinned app refuses the leaf.
    let tunnel = proxy.open_tunnel(&address).await;
    let name = rustls_pki_types::ServerName::try_from(other).unwrap();
    assert!(pinned.connect(name, tunnel).await.is_err());
    assert_eq!(proxy.handle.leaves_minted(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_rejects_the_certificate_is_recorded_with_advice() {
    let origin = Origin::start(OriginKind::Https).await;
    let mut proxy = TestProxy::start(Some(&origin), |_| {}).await;
    // This client trusts only the origin's CA, not kinspect's.
    let client = reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(proxy.url()).unwrap())
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(origin.ca.as_ref().unwrap().pem.as_bytes()).unwrap(),
        )
        .timeout(STEP)
        .build()
        .unwrap();
    assert!(client.get(origin.url("/echo")).send().await.is_err());
    let flow = proxy.next_flow().await;
    let error = flow.error.unwrap();
    assert_eq!(error.kind, kinspect::flow::FlowErrorKind::ClientTls);
    assert!(
        error.message.contains("trust the kinspect CA"),
        "{}",
        error.message
    );
}
