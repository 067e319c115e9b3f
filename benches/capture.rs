//! Capturing at volume (`cargo bench --bench capture`): N flows (default 100,000;
//! KINSPECT_BENCH_FLOWS) with 10 KiB response bodies through the kinspect binary, which
//! records every one into a capture file. Reports flows/s, the file's size, the proxy's
//! peak RSS, and that every flow is in the file.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use kinspect::capture::CaptureReader;
use kinspect::headless::human_size;
use support::{client, env_number, load, peak_rss, start_origin, Until};

fn main() {
    kinspect::tls::install_crypto_provider();
    let flows = env_number("KINSPECT_BENCH_FLOWS", 100_000);
    let concurrency = env_number("KINSPECT_BENCH_CONCURRENCY", 32);
    let (origin, _) = start_origin(false, 10 * 1024);
    let home = tempfile::tempdir().unwrap();
    let capture = home.path().join("bench.db");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kinspect"))
        .args(["--listen", "127.0.0.1:0", "--headless", "--capture"])
        .arg(&capture)
        .env("KINSPECT_HOME", home.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the kinspect binary runs");
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut lines = stderr.lines();
    let addr = loop {
        let line = lines.next().expect("kinspect starts").unwrap();
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.trim().parse().unwrap();
        }
    };
    std::thread::spawn(move || for _ in lines {});

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let url = format!("http://localhost:{}/", origin.port());
    let direct = rt.block_on(load(
        client(None, &[]),
        url.clone(),
        concurrency,
        Until::Requests(flows),
    ));
    let rss_before = peak_rss(child.id()).unwrap_or(0);
    let mut outcome = rt.block_on(load(
        client(Some(addr), &[]),
        url,
        concurrency,
        Until::Requests(flows),
    ));
    let rss = peak_rss(child.id());
    std::thread::sleep(Duration::from_millis(500));
    let _ = child.kill();
    let _ = child.wait();

    let stored = CaptureReader::open(&capture).unwrap().count().unwrap();

    // Export the whole capture as HAR; the exporter's memory must stay flat.
    let har = home.path().join("bench.har");
    let started = std::time::Instant::now();
    let mut export = Command::new(env!("CARGO_BIN_EXE_kinspect"))
        .arg("har")
        .arg(&capture)
        .arg("-o")
        .arg(&har)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut export_rss = 0;
    while export.try_wait().unwrap().is_none() {
        export_rss = export_rss.max(peak_rss(export.id()).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(20));
    }
    let export_time = started.elapsed();
    let har_size = std::fs::metadata(&har).map(|m| m.len()).unwrap_or(0);
    let size: u64 = ["", "-wal"]
        .iter()
        .filter_map(|suffix| std::fs::metadata(format!("{}{suffix}", capture.display())).ok())
        .map(|m| m.len())
        .sum();
    println!("kinspect capture: {flows} requests, 10 KiB responses, {concurrency} keep-alive clients, plain HTTP");
    println!("| measure | value |");
    println!("|---|---|");
    println!("| requests/s direct to the origin | {:.0} |", direct.rate());
    println!(
        "| flows/s through kinspect (each stored before its response completed) | {:.0} ({:.2} of direct) |",
        outcome.rate(),
        outcome.rate() / direct.rate()
    );
    println!(
        "| p50 / p99 latency | {:.2?} / {:.2?} |",
        outcome.percentile(0.5),
        outcome.percentile(0.99)
    );
    println!("| failed requests | {} |", outcome.errors);
    println!(
        "| flows in the capture | {stored} of {} |",
        outcome.requests
    );
    println!("| capture file (db + wal) | {} |", human_size(size));
    println!(
        "| proxy peak RSS at start / after the run | {} / {} |",
        human_size(rss_before),
        rss.map_or("n/a".into(), human_size)
    );
    println!(
        "| HAR export of the capture: time, file, exporter peak RSS | {:.1?}, {}, {} |",
        export_time,
        human_size(har_size),
        human_size(export_rss)
    );
}
