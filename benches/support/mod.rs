//! Shared parts of the benchmarks: a local origin, the kinspect binary as a child
//! process, a load generator, latency statistics, scenario selection and the result
//! table every scenario prints a row of.
//!
//! `examples/bench_origin.rs` uses this module too (the origin of
//! `scripts/compare-mitmproxy.sh`), so keep it free of anything only Cargo's bench
//! harness provides.
#![allow(dead_code)]

use std::convert::Infallible;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use kinspect::headless::HumanSize;
use rcgen::{CertificateParams, KeyPair};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;

/// A number from the environment, or `default`.
pub fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// True when scenario `name` should run: every scenario runs unless some are named, as
/// free arguments (`cargo bench -- https-h2 new-host`) or in `KINSPECT_BENCH_SCENARIOS`
/// (comma-separated).
pub fn selected(name: &str) -> bool {
    let mut chosen: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if let Ok(list) = std::env::var("KINSPECT_BENCH_SCENARIOS") {
        chosen.extend(
            list.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        );
    }
    chosen.is_empty() || chosen.iter().any(|c| c == name)
}

/// The domain whose every name (`h1.bench.test`, ...) the origin's certificate covers.
pub const BENCH_DOMAIN: &str = "bench.test";

/// What an origin speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginKind {
    /// Plain HTTP/1.1 (and HTTP/2 with prior knowledge).
    Plain,
    /// TLS offering only `http/1.1` by ALPN.
    Tls,
    /// TLS offering `h2` and `http/1.1` by ALPN.
    TlsH2,
}

/// A local origin on its own runtime thread(s). `GET /bytes/N` answers N bytes, streamed
/// in 64 KiB frames; any other request answers the origin's default body size.
pub struct Origin {
    /// Where it listens (127.0.0.1, a free port).
    pub addr: SocketAddr,
    /// Its self-signed certificate (`localhost`, `*.bench.test`), PEM.
    pub pem: String,
    /// Requests answered over HTTP/1.x and over HTTP/2.
    served: Arc<[AtomicU64; 2]>,
}

impl Origin {
    /// Starts an origin whose default answer is `body_size` bytes. It runs on
    /// `KINSPECT_BENCH_ORIGIN_THREADS` threads (default 1).
    pub fn start(kind: OriginKind, body_size: u64) -> Origin {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".into(), format!("*.{BENCH_DOMAIN}")])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let pem = cert.pem();
        let mut config =
            rustls::ServerConfig::builder_with_provider(kinspect::tls::crypto_provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(
                    vec![cert.der().clone()],
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
                )
                .unwrap();
        config.alpn_protocols = match kind {
            OriginKind::TlsH2 => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            _ => vec![b"http/1.1".to_vec()],
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let served: Arc<[AtomicU64; 2]> = Arc::default();
        let counters = served.clone();
        let threads = env_number("KINSPECT_BENCH_ORIGIN_THREADS", 1).max(1) as usize;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = if threads == 1 {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
            } else {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(threads)
                    .enable_all()
                    .build()
                    .unwrap()
            };
            rt.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let acceptor = acceptor.clone();
                    let counters = counters.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |req: hyper::Request<_>| {
                            let h2 = req.version() == http::Version::HTTP_2;
                            counters[usize::from(h2)].fetch_add(1, Ordering::Relaxed);
                            let size = req
                                .uri()
                                .path()
                                .strip_prefix("/bytes/")
                                .and_then(|n| n.parse().ok())
                                .unwrap_or(body_size);
                            async move {
                                Ok::<_, Infallible>(hyper::Response::new(Repeat::new(size)))
                            }
                        });
                        let builder =
                            hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                        if kind == OriginKind::Plain {
                            let _ = builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        } else if let Ok(tls) = acceptor.accept(stream).await {
                            let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                        }
                    });
                }
            });
        });
        Origin {
            addr: rx.recv().unwrap(),
            pem,
            served,
        }
    }

    /// Requests answered so far over HTTP/2.
    pub fn h2_requests(&self) -> u64 {
        self.served[1].load(Ordering::Relaxed)
    }

    /// Requests answered so far over HTTP/1.x.
    pub fn http1_requests(&self) -> u64 {
        self.served[0].load(Ordering::Relaxed)
    }

    /// Writes the certificate to `path` (for `--upstream-ca` and other tools).
    pub fn write_pem(&self, path: &Path) {
        std::fs::write(path, &self.pem).unwrap();
    }
}

/// A response body of `left` bytes sent as slices of one shared 64 KiB buffer, with an
/// exact size hint (so it has a `Content-Length`).
struct Repeat {
    chunk: Bytes,
    left: u64,
}

impl Repeat {
    fn new(size: u64) -> Repeat {
        static CHUNK: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
        Repeat {
            chunk: CHUNK
                .get_or_init(|| Bytes::from(vec![b'k'; 64 * 1024]))
                .clone(),
            left: size,
        }
    }
}

impl http_body::Body for Repeat {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(self.chunk.len() as u64) as usize;
        self.left -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n)))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

/// The kinspect binary running `--headless` as a child process, with a fresh CA and
/// capture file in a temporary home. Killed when dropped.
pub struct KinspectProcess {
    child: Child,
    /// The proxy's address.
    pub addr: SocketAddr,
    /// The CA certificate (PEM) its leaves chain to.
    pub ca_pem: String,
    home: tempfile::TempDir,
    printed: Arc<AtomicU64>,
}

impl KinspectProcess {
    /// Starts `kinspect --headless --listen 127.0.0.1:0` recording into a capture file in
    /// its home, trusting `origin_pem` for origins, with `extra` arguments and those in
    /// `KINSPECT_BENCH_ARGS` (whitespace-separated, e.g. `--max-body 1M`).
    pub fn start(origin_pem: Option<&str>, extra: &[&str]) -> KinspectProcess {
        let home = tempfile::tempdir().unwrap();
        // Set by Cargo for benches; the example sharing this module would use PATH's.
        let binary = option_env!("CARGO_BIN_EXE_kinspect").unwrap_or("kinspect");
        let mut command = Command::new(binary);
        command
            .args(["--headless", "--listen", "127.0.0.1:0", "--ca-dir"])
            .arg(home.path())
            .arg("--capture")
            .arg(home.path().join("capture.db"))
            .args(extra)
            .args(
                std::env::var("KINSPECT_BENCH_ARGS")
                    .unwrap_or_default()
                    .split_whitespace(),
            )
            .env("KINSPECT_HOME", home.path());
        if let Some(pem) = origin_pem {
            let file = home.path().join("origin.pem");
            std::fs::write(&file, pem).unwrap();
            command.arg("--upstream-ca").arg(file);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the kinspect binary runs");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut said = String::new();
        let addr = loop {
            let Some(Ok(line)) = lines.next() else {
                panic!("kinspect exited before listening:\n{said}");
            };
            if let Some(rest) = line.split("listening on http://").nth(1) {
                break rest.trim().parse().unwrap();
            }
            said.push_str(&line);
            said.push('\n');
        };
        std::thread::spawn(move || for _ in lines {});
        // Each --headless line is a flow already stored in the capture.
        let printed = Arc::new(AtomicU64::new(0));
        let counter = printed.clone();
        let mut stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut buf = vec![0; 64 * 1024];
            while let Ok(n @ 1..) = stdout.read(&mut buf) {
                let lines = buf[..n].iter().filter(|b| **b == b'\n').count();
                counter.fetch_add(lines as u64, Ordering::Relaxed);
            }
        });
        let ca_pem =
            std::fs::read_to_string(home.path().join(kinspect::ca::CERT_PEM_FILE)).unwrap();
        KinspectProcess {
            child,
            addr,
            ca_pem,
            home,
            printed,
        }
    }

    /// The capture file it records into.
    pub fn capture(&self) -> PathBuf {
        self.home.path().join("capture.db")
    }

    /// Its home directory (CA, capture).
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// Flows it has stored and printed so far.
    pub fn flows_stored(&self) -> u64 {
        self.printed.load(Ordering::Relaxed)
    }

    /// Its resident memory now and at its peak.
    pub fn memory(&self) -> Memory {
        memory(self.child.id())
    }

    /// Stops it and waits for it to exit; its home (capture, CA) stays until it is dropped.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for KinspectProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `examples/minimal_mitm.rs` as a child process: the intercepting proxy that records
/// nothing, run beside kinspect so a ratio to direct can be read against what this machine
/// allows any hyper + rustls proxy.
pub struct ReferenceProxy {
    child: Child,
    /// The proxy's address.
    pub addr: SocketAddr,
    /// The CA certificate (PEM) its leaves chain to.
    pub ca_pem: String,
    _home: tempfile::TempDir,
}

impl ReferenceProxy {
    /// Where Cargo puts the example beside this bench's executable (`cargo bench` builds
    /// it; `cargo bench --bench NAME` alone does not).
    pub fn binary() -> Option<PathBuf> {
        let exe = std::env::current_exe().ok()?;
        let profile_dir = exe.parent()?.parent()?;
        let binary = profile_dir.join("examples").join("minimal_mitm");
        binary.is_file().then_some(binary)
    }

    /// Starts the example from `binary` trusting `origin_pem` for origins.
    pub fn start(binary: &Path, origin_pem: &str) -> ReferenceProxy {
        let home = tempfile::tempdir().unwrap();
        let origin_ca = home.path().join("origin.pem");
        std::fs::write(&origin_ca, origin_pem).unwrap();
        let mut child = Command::new(binary)
            .arg(home.path())
            .arg(&origin_ca)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the minimal_mitm example runs");
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let addr = first
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("minimal_mitm said {first:?}, not its address"));
        let ca_pem =
            std::fs::read_to_string(home.path().join(kinspect::ca::CERT_PEM_FILE)).unwrap();
        ReferenceProxy {
            child,
            addr,
            ca_pem,
            _home: home,
        }
    }
}

impl Drop for ReferenceProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A process's resident memory, in bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    /// Resident now (VmRSS).
    pub now: u64,
    /// The peak so far (VmHWM).
    pub peak: u64,
}

/// The resident memory of process `pid`, from `/proc` (zero where unavailable).
pub fn memory(pid: u32) -> Memory {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kib| kib.parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    };
    Memory {
        now: field("VmRSS:"),
        peak: field("VmHWM:"),
    }
}

/// A process's peak resident set size in bytes, on Linux.
pub fn peak_rss(pid: u32) -> Option<u64> {
    Some(memory(pid).peak).filter(|&p| p > 0)
}

/// What a load run measured.
pub struct Outcome {
    /// Requests answered in full.
    pub requests: u64,
    /// Requests that failed.
    pub errors: u64,
    /// The first failure, for the report.
    pub first_error: Option<String>,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// One latency per answered request.
    pub latencies: Vec<Duration>,
}

impl Outcome {
    /// Answered requests per second.
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    /// The latency at quantile `p` (0..=1).
    pub fn percentile(&mut self, p: f64) -> Duration {
        self.latencies.sort_unstable();
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies.get(i).copied().unwrap_or_default()
    }

    /// Panics, showing the first failure, if any request failed.
    pub fn assert_no_errors(&self, what: &str) {
        assert_eq!(
            self.errors, 0,
            "{what}: {} requests failed; the first: {:?}",
            self.errors, self.first_error
        );
    }
}

/// When a load run stops.
#[derive(Clone, Copy)]
pub enum Until {
    /// After this long.
    Elapsed(Duration),
    /// After this many requests in all.
    Requests(u64),
}

/// `concurrency` clients sending GET requests until `until`. Request number `i` (counted
/// from zero in `started`, which the caller can watch) goes to `url(i)`. The connections
/// are the client's: keep-alive unless it was built otherwise.
pub async fn load<F>(
    client: reqwest::Client,
    url: F,
    concurrency: u64,
    until: Until,
    started: Arc<AtomicU64>,
) -> Outcome
where
    F: Fn(u64) -> String + Send + Sync + 'static,
{
    let start = Instant::now();
    let limit = match until {
        Until::Requests(n) => started.load(Ordering::Relaxed) + n,
        Until::Elapsed(_) => u64::MAX,
    };
    let deadline = match until {
        Until::Elapsed(d) => start + d,
        Until::Requests(_) => start + Duration::from_secs(24 * 3600),
    };
    let url = Arc::new(url);
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let client = client.clone();
        let url = url.clone();
        let started = started.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0;
            let mut first_error = None;
            while Instant::now() < deadline {
                let Ok(i) = started.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    (n < limit).then_some(n + 1)
                }) else {
                    break;
                };
                let t = Instant::now();
                let result = match client.get(url(i)).send().await {
                    Ok(r) => r.bytes().await.map(drop),
                    Err(e) => Err(e),
                };
                match result {
                    Ok(()) => latencies.push(t.elapsed()),
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| format!("{e:?}"));
                    }
                }
            }
            (latencies, errors, first_error)
        }));
    }
    let mut outcome = Outcome {
        requests: 0,
        errors: 0,
        first_error: None,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
    };
    for task in tasks {
        let (latencies, errors, first_error) = task.await.unwrap();
        outcome.requests += latencies.len() as u64;
        outcome.errors += errors;
        outcome.first_error = outcome.first_error.or(first_error);
        outcome.latencies.extend(latencies);
    }
    outcome.elapsed = start.elapsed();
    outcome
}

/// A client builder trusting only `roots`, through `proxy` if given; keep-alive pools.
pub fn client_builder(proxy: Option<SocketAddr>, roots: &[&str]) -> reqwest::ClientBuilder {
    let mut builder = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .pool_max_idle_per_host(1024)
        .no_proxy();
    for pem in roots {
        builder =
            builder.add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap());
    }
    if let Some(addr) = proxy {
        builder = builder.proxy(reqwest::Proxy::all(format!("http://{addr}")).unwrap());
    }
    builder
}

/// An HTTP/1.1 keep-alive client trusting only `roots`, through `proxy` if given.
pub fn client(proxy: Option<SocketAddr>, roots: &[&str]) -> reqwest::Client {
    client_builder(proxy, roots).http1_only().build().unwrap()
}

/// A multi-threaded runtime with two workers (this machine's cores) for load generators.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Milliseconds with two decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Prints the header of the table every scenario adds a row to.
pub fn print_table_header() {
    println!("| scenario | direct | through kinspect | ratio | p50 direct / through (added) | p99 direct / through | proxy RSS |");
    println!("|---|---|---|---|---|---|---|");
}

/// One row of the table.
pub struct Row<'a> {
    /// The scenario's name.
    pub scenario: &'a str,
    /// The direct measure, with its unit.
    pub direct: String,
    /// The same measure through kinspect.
    pub through: String,
    /// through / direct.
    pub ratio: f64,
    /// Median latencies, direct and through, if the scenario has them.
    pub p50: Option<(Duration, Duration)>,
    /// 99th-percentile latencies, direct and through.
    pub p99: Option<(Duration, Duration)>,
    /// The proxy's memory, as text.
    pub rss: String,
}

impl Row<'_> {
    /// Prints the row.
    pub fn print(&self) {
        let p50 = self.p50.map_or("—".to_owned(), |(d, t)| {
            format!("{} / {} (+{})", ms(d), ms(t), ms(t.saturating_sub(d)))
        });
        let p99 = self
            .p99
            .map_or("—".to_owned(), |(d, t)| format!("{} / {}", ms(d), ms(t)));
        println!(
            "| {} | {} | {} | {:.3} | {p50} | {p99} | {} |",
            self.scenario, self.direct, self.through, self.ratio, self.rss
        );
    }
}

/// A row comparing two load runs by requests per second.
pub fn rate_row<'a>(
    scenario: &'a str,
    direct: &mut Outcome,
    through: &mut Outcome,
    rss: String,
) -> Row<'a> {
    Row {
        scenario,
        direct: format!("{:.0} req/s", direct.rate()),
        through: format!("{:.0} req/s", through.rate()),
        ratio: through.rate() / direct.rate(),
        p50: Some((direct.percentile(0.5), through.percentile(0.5))),
        p99: Some((direct.percentile(0.99), through.percentile(0.99))),
        rss,
    }
}

/// Memory as the table shows it: the peak, and what it was before the measured part.
pub fn rss_text(before: Memory, after: Memory) -> String {
    format!(
        "peak {} (was {} before; +{})",
        HumanSize(after.peak),
        HumanSize(before.now),
        HumanSize(after.peak.saturating_sub(before.now))
    )
}
