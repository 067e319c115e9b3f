//! Shared fixtures of the integration tests: a local origin (HTTP and HTTPS, HTTP/1.1 and
//! HTTP/2, with its own test CA), an in-process kinspect proxy, and clients through it.
#![allow(dead_code)]

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use kinspect::ca::CertificateAuthority;
use kinspect::capture::{CaptureWriter, Recorder, StoredFlow};
use kinspect::events;
use kinspect::flow::Flow;
use kinspect::proxy::{Proxy, ProxyConfig, ProxyHandle};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tempfile::TempDir;
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Any test step that waits gives up after this long.
pub const STEP: Duration = Duration::from_secs(20);

pub type TestBody = BoxBody<Bytes, Infallible>;

/// The JSON text that `/gzip` serves gzip-compressed.
pub const GZIP_TEXT: &str = "{\"error\":\"KinveyInternalErrorRetry\",\"description\":\"The Kinvey server encountered an unexpected error. Please retry your request\",\"debug\":\"gzip fixture\"}";

/// A certificate authority of the tests' own, standing for a public CA that origins use.
pub struct TestCa {
    pub pem: String,
    pub dir: TempDir,
    pub pem_path: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new() -> TestCa {
        TestCa::named(&[]).0
    }

    /// A CA whose certificate also names `names` (as `openssl req -x509` makes one for a
    /// test server: CA:TRUE), and that certificate with its key.
    pub fn named(names: &[&str]) -> (TestCa, CertificateDer<'static>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let mut params = leaf_params(names, None);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "kinspect test origin CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        let (der, private) = (cert.der().clone(), private_key(&key));
        let dir = tempfile::tempdir().unwrap();
        let pem_path = dir.path().join("origin-ca.pem");
        std::fs::write(&pem_path, cert.pem()).unwrap();
        let ca = TestCa {
            pem: cert.pem(),
            dir,
            pem_path,
            issuer: Issuer::new(params, key),
        };
        (ca, der, private)
    }

    /// A TLS server config for `localhost` and `127.0.0.1` signed by this CA.
    pub fn server_config(&self, alpn: &[&[u8]]) -> rustls::ServerConfig {
        self.leaf_config(&["localhost", "127.0.0.1"], None, alpn)
    }

    /// A leaf certificate signed by this CA for `names` (DNS names or IP addresses),
    /// valid for `validity` (rcgen's default, 1975 to 4096, when `None`), and its key.
    pub fn leaf(
        &self,
        names: &[&str],
        validity: Option<Validity>,
    ) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let mut params = leaf_params(names, validity);
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            names.first().copied().unwrap_or("leaf"),
        );
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.der().clone(), private_key(&key))
    }

    /// A TLS server config presenting a fresh [`TestCa::leaf`] for `names`, valid for
    /// `validity`.
    pub fn leaf_config(
        &self,
        names: &[&str],
        validity: Option<Validity>,
        alpn: &[&[u8]],
    ) -> rustls::ServerConfig {
        let (cert, key) = self.leaf(names, validity);
        tls_server_config(vec![cert], key, alpn)
    }
}

/// When a minted test certificate is valid.
#[derive(Debug, Clone, Copy)]
pub struct Validity {
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// Valid from `days_before` days ago until `days_after` days from now (negative:
    /// in the past).
    pub fn days(days_before: i64, days_after: i64) -> Validity {
        let now = OffsetDateTime::now_utc();
        Validity {
            not_before: now - time::Duration::days(days_before),
            not_after: now + time::Duration::days(days_after),
        }
    }

    /// Expired yesterday, after a month of validity.
    pub fn expired() -> Validity {
        Validity::days(30, -1)
    }
}

fn leaf_params(names: &[&str], validity: Option<Validity>) -> CertificateParams {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names).unwrap();
    if let Some(validity) = validity {
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
    }
    params
}

fn private_key(key: &KeyPair) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()))
}

/// A TLS connector trusting only the CA certificates of `pem`, offering `alpn`.
pub fn tls_connector_trusting(pem: &str, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(kinspect::tls::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// A TLS server config presenting `chain` with `key`, offering `alpn`.
pub fn tls_server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    alpn: &[&[u8]],
) -> rustls::ServerConfig {
    let mut config = rustls::ServerConfig::builder_with_provider(kinspect::tls::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// A TLS server config presenting a self-signed certificate for `names` (no CA).
pub fn self_signed_config(names: &[&str], alpn: &[&[u8]]) -> rustls::ServerConfig {
    let key = KeyPair::generate().unwrap();
    let cert = leaf_params(names, None).self_signed(&key).unwrap();
    tls_server_config(vec![cert.der().clone()], private_key(&key), alpn)
}

/// How a test origin is served.
#[derive(Clone, Copy, Debug)]
pub enum OriginKind {
    /// Plain HTTP (HTTP/1.1, or HTTP/2 with prior knowledge).
    Plain,
    /// HTTPS offering `h2` and `http/1.1`.
    Https,
    /// HTTPS offering only `http/1.1`.
    HttpsH1Only,
}

/// A local origin server.
pub struct Origin {
    pub addr: SocketAddr,
    pub ca: Option<TestCa>,
    task: JoinHandle<()>,
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Origin {
    pub async fn start(kind: OriginKind) -> Origin {
        kinspect::tls::install_crypto_provider();
        match kind {
            OriginKind::Plain => Origin::serve(None, None).await,
            OriginKind::Https | OriginKind::HttpsH1Only => {
                let ca = TestCa::new();
                let alpn: &[&[u8]] = match kind {
                    OriginKind::Https => &[b"h2", b"http/1.1"],
                    _ => &[b"http/1.1"],
                };
                let config = ca.server_config(alpn);
                Origin::serve(Some(ca), Some(config)).await
            }
        }
    }

    /// An HTTPS origin serving the fixtures with `config` (any certificate, valid or
    /// not); `ca` is the CA a proxy started with this origin trusts (`--upstream-ca`),
    /// whether or not it signed the certificate.
    pub async fn start_tls(config: rustls::ServerConfig, ca: TestCa) -> Origin {
        kinspect::tls::install_crypto_provider();
        Origin::serve(Some(ca), Some(config)).await
    }

    async fn serve(ca: Option<TestCa>, tls: Option<rustls::ServerConfig>) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tls.map(|config| tokio_rustls::TlsAcceptor::from(Arc::new(config)));
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    // Out of file descriptors and the like: back off, keep serving.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let service = service_fn(origin_service);
                    match acceptor {
                        Some(acceptor) => {
                            if let Ok(tls) = acceptor.accept(stream).await {
                                let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                            }
                        }
                        None => {
                            let _ = builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                    }
                });
            }
        });
        Origin { addr, ca, task }
    }

    /// An HTTPS origin served by `task` (a test's own) on `addr`, with a certificate of `ca`.
    pub fn from_parts(addr: SocketAddr, ca: TestCa, task: JoinHandle<()>) -> Origin {
        Origin {
            addr,
            ca: Some(ca),
            task,
        }
    }

    /// An HTTPS origin (HTTP/1.1) whose certificate names `names` alone.
    pub async fn start_https_named(names: &[&str]) -> Origin {
        kinspect::tls::install_crypto_provider();
        let ca = TestCa::new();
        let config = ca.leaf_config(names, None, &[b"http/1.1"]);
        Origin::serve(Some(ca), Some(config)).await
    }

    /// `https://localhost:PORT{path}` (or http for plain origins).
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.ca.is_some() { "https" } else { "http" };
        format!("{scheme}://localhost:{}{path}", self.addr.port())
    }

    pub fn ca_path(&self) -> PathBuf {
        self.ca.as_ref().expect("an HTTPS origin").pem_path.clone()
    }
}

/// Reads a request head; `None` when the connection ends first.
pub async fn read_head<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(stream.read_u8().await.ok()?);
    }
    Some(head)
}

/// A plain origin that reads one request head, writes `answer` as it is, then waits for
/// the client to close; its port, and its task (to abort or await).
pub async fn one_answer_origin(answer: impl Into<Vec<u8>>) -> (u16, JoinHandle<()>) {
    let answer = answer.into();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        read_head(&mut stream).await.unwrap();
        stream.write_all(&answer).await.unwrap();
        let _ = stream.read_u8().await;
    });
    (port, task)
}

/// Byte `i` of every `/bytes/N` body.
pub fn pattern_byte(i: u64) -> u8 {
    (i % 251) as u8
}

/// A streamed body of `remaining` pattern bytes in 64 KiB frames.
pub struct PatternBody {
    sent: u64,
    total: u64,
}

impl Body for PatternBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.sent >= self.total {
            return Poll::Ready(None);
        }
        let n = (self.total - self.sent).min(64 * 1024);
        let chunk: Vec<u8> = (self.sent..self.sent + n).map(pattern_byte).collect();
        self.sent += n;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
    }

    fn is_end_stream(&self) -> bool {
        self.sent >= self.total
    }
}

/// The body of `/chunked`: frames sent one by one, with pauses, without a length.
struct SlowChunks(Vec<&'static str>, Option<Pin<Box<tokio::time::Sleep>>>);

impl Body for SlowChunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(sleep) = self.1.as_mut() {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        if self.0.is_empty() {
            return Poll::Ready(None);
        }
        let chunk = self.0.remove(0);
        self.1 = Some(Box::pin(tokio::time::sleep(Duration::from_millis(20))));
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(chunk.as_bytes())))))
    }
}

use std::future::Future;

pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn full(bytes: impl Into<Bytes>) -> TestBody {
    Full::new(bytes.into()).boxed()
}

async fn origin_service(req: Request<Incoming>) -> Result<Response<TestBody>, Infallible> {
    let path = req.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let response = match segments.as_slice() {
        ["echo"] | ["echo", ..] => {
            let method = req.method().to_string();
            let version = format!("{:?}", req.version());
            let uri = req.uri().to_string();
            let headers: Vec<(String, String)> = req
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
                .collect();
            let body = match req.into_body().collect().await {
                Ok(body) => body.to_bytes(),
                // The upload broke off (a test of exactly that): nobody reads the answer.
                Err(e) => {
                    return Ok(Response::builder()
                        .status(400)
                        .body(full(format!("broken upload: {e}")))
                        .unwrap())
                }
            };
            let json = serde_json::json!({
                "method": method,
                "version": version,
                "uri": uri,
                "headers": headers,
                "body_len": body.len(),
                "body": String::from_utf8_lossy(&body),
            });
            Response::builder()
                .header("content-type", "application/json")
                .header("x-kinvey-request-id", "0123456789abcdef0123456789abcdef")
                .body(full(json.to_string()))
                .unwrap()
        }
        ["bytes", n] => {
            let total: u64 = n.parse().unwrap();
            Response::builder()
                .header("content-type", "application/octet-stream")
                .body(PatternBody { sent: 0, total }.boxed())
                .unwrap()
        }
        ["gzip"] => Response::builder()
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .body(full(gzip(GZIP_TEXT.as_bytes())))
            .unwrap(),
        ["chunked"] => Response::builder()
            .header("content-type", "text/plain")
            .body(SlowChunks(vec!["alpha-", "beta-", "gamma"], None).boxed())
            .unwrap(),
        ["hang"] => {
            std::future::pending::<()>().await;
            unreachable!()
        }
        ["status", code] => {
            let status = StatusCode::from_u16(code.parse().unwrap()).unwrap();
            Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(full(format!("{{\"status\":{}}}", status.as_u16())))
                .unwrap()
        }
        _ => Response::builder()
            .status(404)
            .body(full("no such fixture"))
            .unwrap(),
    };
    Ok(response)
}

/// A kinspect proxy running in this test's runtime, with its own CA in a temp dir and
/// a real recorder writing a real capture file there.
pub struct TestProxy {
    pub addr: SocketAddr,
    pub ca_pem: String,
    pub ca_dir: TempDir,
    /// Every flow, in the order the recorder stored it.
    pub flows: tokio::sync::mpsc::UnboundedReceiver<StoredFlow>,
    pub handle: ProxyHandle,
    /// Where a replayer through this proxy notes the addresses it sends from.
    pub replays: kinspect::replay::ReplaySources,
}

impl TestProxy {
    /// Starts a proxy trusting `origin`'s CA (if any), adjusted by `configure`.
    pub async fn start(
        origin: Option<&Origin>,
        configure: impl FnOnce(&mut ProxyConfig),
    ) -> TestProxy {
        kinspect::tls::install_crypto_provider();
        let ca_dir = tempfile::tempdir().unwrap();
        let ca = Arc::new(CertificateAuthority::load_or_create(ca_dir.path()).unwrap());
        let mut config = ProxyConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            connect_timeout: Duration::from_secs(5),
            ..ProxyConfig::default()
        };
        if let Some(path) = origin
            .and_then(|o| o.ca.as_ref())
            .map(|ca| ca.pem_path.clone())
        {
            config.upstream_ca.push(path);
        }
        configure(&mut config);
        let (publisher, stream) = events::channel(1024);
        let writer = CaptureWriter::open(&ca_dir.path().join("capture.db")).unwrap();
        let (tx, flows) = tokio::sync::mpsc::unbounded_channel();
        // The recorder thread ends with the stream, when the proxy is dropped.
        let replays = kinspect::replay::ReplaySources::default();
        let recorder = Recorder::start_ignoring_replays(
            writer,
            stream,
            move |stored| {
                let _ = tx.send(stored);
            },
            replays.clone(),
        )
        .unwrap();
        drop(recorder);
        let proxy = Proxy::bind(config, ca.clone(), publisher).await.unwrap();
        TestProxy {
            addr: proxy.local_addr(),
            ca_pem: ca.cert_pem().to_owned(),
            ca_dir,
            flows,
            handle: proxy.spawn(),
            replays,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn ca_pem_path(&self) -> PathBuf {
        self.ca_dir.path().join("kinspect-ca.pem")
    }

    /// The next recorded flow; panics if none comes within [`STEP`].
    pub async fn next_flow(&mut self) -> Flow {
        self.next_stored().await.flow
    }

    /// The next recorded flow with its Kinvey results.
    pub async fn next_stored(&mut self) -> StoredFlow {
        tokio::time::timeout(STEP, self.flows.recv())
            .await
            .expect("a flow is recorded in time")
            .expect("the flow stream is open")
    }

    /// The capture file the proxy records into.
    pub fn capture_path(&self) -> PathBuf {
        self.ca_dir.path().join("capture.db")
    }

    /// A client using this proxy and trusting only its CA.
    pub fn client(&self) -> reqwest::Client {
        self.client_builder().build().unwrap()
    }

    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .proxy(reqwest::Proxy::all(self.url()).unwrap())
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).unwrap())
            .timeout(STEP)
    }
}

impl TestProxy {
    /// Sends `CONNECT target` on a new connection and returns it after the proxy's 200
    /// head, with nothing read beyond that head.
    pub async fn open_tunnel(&self, target: &str) -> TcpStream {
        let mut stream = TcpStream::connect(self.addr).await.unwrap();
        let request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let byte = tokio::time::timeout(STEP, stream.read_u8())
                .await
                .expect("the CONNECT answer in time")
                .expect("the CONNECT answer");
            head.push(byte);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        stream
    }

    /// A TLS connector trusting only this proxy's CA, offering `alpn`.
    pub fn tls_connector(&self, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
        tls_connector_trusting(&self.ca_pem, alpn)
    }

    /// Asserts that the proxy still serves a normal request to `origin` and that the
    /// next recorded flow is that request (so nothing else was recorded in between).
    pub async fn assert_serves(&mut self, origin: &Origin) {
        let url = origin.url("/status/200");
        let response = self.client().get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200, "the proxy still serves");
        assert_eq!(&response.bytes().await.unwrap()[..], b"{\"status\":200}");
        let flow = self.next_flow().await;
        assert_eq!(flow.request.url, url, "the next flow is the normal request");
        assert_eq!(flow.status(), Some(200));
        assert!(flow.error.is_none(), "{:?}", flow.error);
    }
}

/// The real `kinspect` binary running `--headless` as a child process, with its CA and
/// home in a directory of the test's; killed (SIGKILL) when dropped.
pub struct KinspectProcess {
    pub child: Child,
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Its CA certificate (PEM).
    pub ca_pem: String,
    /// Its stderr lines so far, for diagnostics.
    pub stderr: Arc<std::sync::Mutex<Vec<String>>>,
}

/// `kinspect --headless --listen 127.0.0.1:0 --ca-dir HOME --capture CAPTURE` with
/// `KINSPECT_HOME=HOME`, its stdout discarded and its stderr piped.
pub fn headless_command(home: &Path, capture: &Path) -> Command {
    headless_command_on(home, capture, "127.0.0.1:0")
}

/// [`headless_command`] listening on `listen`.
pub fn headless_command_on(home: &Path, capture: &Path, listen: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kinspect"));
    command
        .env("KINSPECT_HOME", home)
        .args(["--headless", "--listen", listen])
        .arg("--ca-dir")
        .arg(home)
        .arg("--capture")
        .arg(capture)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// Runs `command` (a [`headless_command`]) expecting kinspect to refuse to start: its
/// output once it has exited; killed, and the test failed, if it is still running after
/// 10 s.
pub fn refused_at_start(mut command: Command) -> std::process::Output {
    let mut child = command.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("kinspect started: {command:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    assert!(!output.status.success());
    output
}

impl KinspectProcess {
    /// Starts [`headless_command`]; `configure` adds arguments and environment. Returns
    /// once it announces its address.
    pub fn start(home: &Path, capture: &Path, configure: impl FnOnce(&mut Command)) -> Self {
        let mut command = headless_command(home, capture);
        configure(&mut command);
        let mut child = command.spawn().unwrap();
        let stderr = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let kept = stderr.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let _ = tx.send(rest.trim().to_owned());
                }
                kept.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(STEP) {
            Ok(addr) => addr.parse().unwrap(),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("kinspect did not start: {:?}", stderr.lock().unwrap());
            }
        };
        let ca_pem = std::fs::read_to_string(home.join("kinspect-ca.pem")).unwrap();
        KinspectProcess {
            child,
            addr,
            ca_pem,
            stderr,
        }
    }

    /// Kills it at once (SIGKILL on Unix), without any grace, and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A client using this proxy and trusting only its CA.
    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .proxy(reqwest::Proxy::all(format!("http://{}", self.addr)).unwrap())
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).unwrap())
            .timeout(STEP)
            .build()
            .unwrap()
    }
}

impl Drop for KinspectProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// True when `program` can be run; prints why a test is skipped otherwise. In CI
/// (`CI=true`) a missing tool is a failure, never a skip.
pub fn tool_available(program: &str) -> bool {
    let found = std::process::Command::new(program)
        .arg("--version")
        .output()
        .or_else(|_| std::process::Command::new(program).arg("version").output())
        .is_ok();
    if !found {
        if std::env::var_os("CI").is_some() {
            panic!("{program} is required in CI (.ci/run installs it)");
        }
        eprintln!("SKIPPED: {program} is not installed here; CI installs it");
    }
    found
}

/// A stand-in parent proxy that remembers each request head and passes it on to
/// 127.0.0.1, whatever the host: a CONNECT as a tunnel, a request in absolute form as it
/// is (with what follows on its connection). With `answer`, it answers that instead.
pub struct FakeParent {
    pub port: u16,
    heads: Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeParent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeParent {
    pub async fn start(answer: Option<&'static str>) -> FakeParent {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let heads = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = heads.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let Some(head) = read_head(&mut client).await else {
                        return;
                    };
                    let head = String::from_utf8(head).unwrap();
                    seen.lock().unwrap().push(head.clone());
                    if let Some(answer) = answer {
                        let _ = client.write_all(answer.as_bytes()).await;
                        return;
                    }
                    // CONNECT host:port, or GET http://host:port/path.
                    let target = head.split_whitespace().nth(1).unwrap();
                    let authority = target.trim_start_matches("http://").split('/').next();
                    let port: u16 = authority
                        .unwrap()
                        .rsplit(':')
                        .next()
                        .unwrap()
                        .parse()
                        .unwrap();
                    let mut origin = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
                    match head.starts_with("CONNECT ") {
                        true => client
                            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                            .await
                            .unwrap(),
                        false => origin.write_all(head.as_bytes()).await.unwrap(),
                    }
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut origin).await;
                });
            }
        });
        FakeParent { port, heads, task }
    }

    /// The request heads it was sent, in order.
    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}
