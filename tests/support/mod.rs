//! Shared fixtures of the integration tests: a local origin (HTTP and HTTPS, HTTP/1.1 and
//! HTTP/2, with its own test CA), an in-process kinspect proxy, and clients through it.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

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
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tempfile::TempDir;
use tokio::net::TcpListener;
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
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "kinspect test origin CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let pem_path = dir.path().join("origin-ca.pem");
        std::fs::write(&pem_path, cert.pem()).unwrap();
        TestCa {
            pem: cert.pem(),
            dir,
            pem_path,
            issuer: Issuer::new(params, key),
        }
    }

    /// A TLS server config for `localhost` and `127.0.0.1` signed by this CA.
    pub fn server_config(&self, alpn: &[&[u8]]) -> rustls::ServerConfig {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let mut config =
            rustls::ServerConfig::builder_with_provider(kinspect::tls::crypto_provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![cert.der().clone()], der)
                .unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config
    }
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
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (ca, acceptor) = match kind {
            OriginKind::Plain => (None, None),
            OriginKind::Https | OriginKind::HttpsH1Only => {
                let ca = TestCa::new();
                let alpn: &[&[u8]] = match kind {
                    OriginKind::Https => &[b"h2", b"http/1.1"],
                    _ => &[b"http/1.1"],
                };
                let config = ca.server_config(alpn);
                (
                    Some(ca),
                    Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
                )
            }
        };
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
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

    /// `https://localhost:PORT{path}` (or http for plain origins).
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.ca.is_some() { "https" } else { "http" };
        format!("{scheme}://localhost:{}{path}", self.addr.port())
    }

    pub fn ca_path(&self) -> PathBuf {
        self.ca.as_ref().expect("an HTTPS origin").pem_path.clone()
    }
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
            let body = req.into_body().collect().await.unwrap().to_bytes();
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
        let recorder = Recorder::start(writer, stream, move |stored| {
            let _ = tx.send(stored);
        })
        .unwrap();
        drop(recorder);
        let proxy = Proxy::bind(config, ca.clone(), publisher).await.unwrap();
        TestProxy {
            addr: proxy.local_addr(),
            ca_pem: ca.cert_pem().to_owned(),
            ca_dir,
            flows,
            handle: proxy.spawn(),
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
