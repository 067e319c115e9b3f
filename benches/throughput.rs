//! Throughput and latency through kinspect vs direct to the same local origin, measured
//! side by side in one run (`cargo bench --bench throughput`).
//!
//! The origin serves a 1 KiB body over plain HTTP and HTTPS (HTTP/1.1); the load is C
//! concurrent keep-alive clients for D seconds (KINSPECT_BENCH_CONCURRENCY, default 32;
//! KINSPECT_BENCH_SECS, default 5). kinspect runs with its flows consumed by a counting
//! recorder thread, so every flow is produced as in real use.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use kinspect::ca::CertificateAuthority;
use kinspect::events;
use kinspect::proxy::{Proxy, ProxyConfig};
use rcgen::{CertificateParams, KeyPair};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;

const BODY: [u8; 1024] = [b'k'; 1024];

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Starts the origin on its own runtime thread; returns its address and CA PEM.
fn start_origin(tls: bool) -> (SocketAddr, String) {
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let pem = cert.pem();
    let mut config = rustls::ServerConfig::builder_with_provider(kinspect::tls::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let _ = stream.set_nodelay(true);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let service = service_fn(|_req| async {
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                            &BODY,
                        ))))
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    if tls {
                        if let Ok(tls) = acceptor.accept(stream).await {
                            let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                        }
                    } else {
                        let _ = builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    }
                });
            }
        });
    });
    (rx.recv().unwrap(), pem)
}

/// Starts kinspect on its own runtime (two worker threads, as the binary on this machine
/// would use) with a recorder thread counting flows. Returns the address and CA PEM.
fn start_kinspect(
    origin_ca: &std::path::Path,
    flows: Arc<AtomicU64>,
) -> (SocketAddr, String, tempfile::TempDir) {
    let ca_dir = tempfile::tempdir().unwrap();
    let ca = Arc::new(CertificateAuthority::load_or_create(ca_dir.path()).unwrap());
    let pem = ca.cert_pem().to_owned();
    let origin_ca = origin_ca.to_owned();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let (publisher, mut stream) = events::channel(events::DEFAULT_CAPACITY);
            std::thread::spawn(move || {
                while stream.blocking_recv().is_some() {
                    flows.fetch_add(1, Ordering::Relaxed);
                }
            });
            let config = ProxyConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                upstream_ca: vec![origin_ca],
                ..ProxyConfig::default()
            };
            let proxy = Proxy::bind(config, ca, publisher).await.unwrap();
            tx.send(proxy.local_addr()).unwrap();
            proxy.run().await;
        });
    });
    (rx.recv().unwrap(), pem, ca_dir)
}

struct Outcome {
    requests: u64,
    errors: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Outcome {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&mut self, p: f64) -> Duration {
        self.latencies.sort_unstable();
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies.get(i).copied().unwrap_or_default()
    }
}

async fn load(
    client: reqwest::Client,
    url: String,
    concurrency: u64,
    duration: Duration,
) -> Outcome {
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let client = client.clone();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0;
            while Instant::now() < deadline {
                let t = Instant::now();
                match client.get(&url).send().await {
                    Ok(r) => match r.bytes().await {
                        Ok(_) => latencies.push(t.elapsed()),
                        Err(_) => errors += 1,
                    },
                    Err(_) => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    let mut outcome = Outcome {
        requests: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
    };
    for task in tasks {
        let (latencies, errors) = task.await.unwrap();
        outcome.requests += latencies.len() as u64;
        outcome.errors += errors;
        outcome.latencies.extend(latencies);
    }
    outcome.elapsed = start.elapsed();
    outcome
}

fn client(proxy: Option<SocketAddr>, roots: &[&str]) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .http1_only()
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
    builder.build().unwrap()
}

fn main() {
    kinspect::tls::install_crypto_provider();
    let concurrency = env_number("KINSPECT_BENCH_CONCURRENCY", 32);
    let duration = Duration::from_secs(env_number("KINSPECT_BENCH_SECS", 5));
    let (plain_origin, _) = start_origin(false);
    let (tls_origin, origin_pem) = start_origin(true);
    let origin_ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(origin_ca.path(), &origin_pem).unwrap();
    let flows = Arc::new(AtomicU64::new(0));
    let (proxy, kinspect_pem, _ca_dir) = start_kinspect(origin_ca.path(), flows.clone());

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("kinspect throughput: {concurrency} keep-alive clients, {duration:?} per run, 1 KiB responses");
    println!("| path | requests/s | p50 | p99 | errors | through / direct |");
    println!("|---|---|---|---|---|---|");
    let scenarios = [
        (
            "plain HTTP",
            format!("http://localhost:{}/", plain_origin.port()),
        ),
        (
            "HTTPS (HTTP/1.1)",
            format!("https://localhost:{}/", tls_origin.port()),
        ),
    ];
    for (name, url) in scenarios {
        let direct = client(None, &[&origin_pem]);
        let through = client(Some(proxy), &[&kinspect_pem]);
        let before = flows.load(Ordering::Relaxed);
        let mut d = rt.block_on(load(direct, url.clone(), concurrency, duration));
        let mut t = rt.block_on(load(through, url, concurrency, duration));
        std::thread::sleep(Duration::from_millis(200));
        let recorded = flows.load(Ordering::Relaxed) - before;
        println!(
            "| {name} direct | {:.0} | {:.2?} | {:.2?} | {} | 1 |",
            d.rate(),
            d.percentile(0.5),
            d.percentile(0.99),
            d.errors
        );
        println!(
            "| {name} through kinspect | {:.0} | {:.2?} | {:.2?} | {} | {:.2} |",
            t.rate(),
            t.percentile(0.5),
            t.percentile(0.99),
            t.errors,
            t.rate() / d.rate()
        );
        println!(
            "  flows recorded: {recorded} of {} requests",
            t.requests + t.errors
        );
    }
}
