//! Throughput and latency through kinspect vs direct to the same local origin, measured
//! side by side in one run (`cargo bench --bench throughput`).
//!
//! The origin serves a 1 KiB body over plain HTTP and HTTPS (HTTP/1.1); the load is C
//! concurrent keep-alive clients for D seconds (KINSPECT_BENCH_CONCURRENCY, default 32;
//! KINSPECT_BENCH_SECS, default 5). kinspect runs in-process with its flows consumed by a
//! counting thread, so every flow is produced as in real use.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kinspect::ca::CertificateAuthority;
use kinspect::events;
use kinspect::proxy::{Proxy, ProxyConfig};
use support::{client, env_number, load, start_origin, Until};

/// Starts kinspect on its own runtime (two worker threads, as the binary on this machine
/// would use) with a thread taking and counting flows. Returns the address and CA PEM.
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

fn main() {
    kinspect::tls::install_crypto_provider();
    let concurrency = env_number("KINSPECT_BENCH_CONCURRENCY", 32);
    let duration = Duration::from_secs(env_number("KINSPECT_BENCH_SECS", 5));
    let (plain_origin, _) = start_origin(false, 1024);
    let (tls_origin, origin_pem) = start_origin(true, 1024);
    let origin_ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(origin_ca.path(), &origin_pem).unwrap();
    let flows = Arc::new(AtomicU64::new(0));
    let (proxy, kinspect_pem, _ca_dir) = start_kinspect(origin_ca.path(), flows.clone());

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "kinspect throughput: {concurrency} keep-alive clients, {duration:?} per run, 1 KiB responses"
    );
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
        let mut d = rt.block_on(load(
            direct,
            url.clone(),
            concurrency,
            Until::Elapsed(duration),
        ));
        let mut t = rt.block_on(load(through, url, concurrency, Until::Elapsed(duration)));
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
