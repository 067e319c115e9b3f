//! Capturing at volume (`cargo bench --bench capture`, scenario `capture`): N flows
//! (default 100,000; KINSPECT_BENCH_FLOWS) with 10 KiB response bodies, plain HTTP, C
//! keep-alive clients, direct and through the kinspect binary, which records every one
//! into a capture file. Reports the table row (flows/s vs direct, latencies, the proxy's
//! peak RSS), whether the capture writer keeps up, that every flow is in the file, and a
//! HAR export of the whole capture.
//!
//! Keeping up: kinspect holds back the end of each response until its flow is stored, so
//! the queue to the writer can never exceed the exchanges in flight; a writer that could
//! not keep up would show as throughput lost, not as memory. What is measured from
//! outside, every 100 ms: requests the clients have started minus flows kinspect has
//! stored (each `--headless` line is printed after its flow is committed). If the writer
//! keeps up, that stays at about the number of clients and does not grow over the run.

mod support;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kinspect::capture::CaptureReader;
use kinspect::headless::HumanSize;
use support::{
    client, env_number, load, memory, print_table_header, rate_row, runtime, selected,
    KinspectProcess, Origin, OriginKind, Until,
};

/// Issue 9's ceiling on the proxy's RSS after capturing 100k flows.
const MAX_RSS: u64 = 200 * 1000 * 1000;

/// Started-minus-stored samples over a run.
struct Backlog {
    samples: Vec<(Duration, u64)>,
}

impl Backlog {
    /// The largest sample in the given fraction range of the run (`0.0..0.25`, say).
    fn max_in(&self, from: f64, to: f64) -> u64 {
        let end = self.samples.last().map_or(Duration::ZERO, |s| s.0);
        self.samples
            .iter()
            .filter(|(t, _)| {
                let f = t.as_secs_f64() / end.as_secs_f64().max(1e-9);
                f >= from && f <= to
            })
            .map(|s| s.1)
            .max()
            .unwrap_or(0)
    }
}

fn main() {
    if !selected("capture") {
        return;
    }
    kinspect::tls::install_crypto_provider();
    let flows = env_number("KINSPECT_BENCH_FLOWS", 100_000);
    let concurrency = env_number("KINSPECT_BENCH_CONCURRENCY", 32);
    let origin = Origin::start(OriginKind::Plain, 10 * 1024);
    let mut kinspect = KinspectProcess::start(None, &[]);
    let rt = runtime();
    let url = format!("http://localhost:{}/", origin.addr.port());
    let run = |proxy, started: Arc<AtomicU64>| {
        let url = url.clone();
        rt.block_on(load(
            client(proxy, &[]),
            move |_| url.clone(),
            concurrency,
            Until::Requests(flows),
            started,
        ))
    };
    let mut direct = run(None, Arc::default());
    let before = kinspect.memory();

    let started = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let (mut through, backlog) = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let t0 = Instant::now();
            let mut samples = Vec::new();
            while !done.load(Ordering::Relaxed) {
                let stored = kinspect.flows_stored();
                let started = started.load(Ordering::Relaxed);
                samples.push((t0.elapsed(), started.saturating_sub(stored)));
                std::thread::sleep(Duration::from_millis(100));
            }
            Backlog { samples }
        });
        let outcome = run(Some(kinspect.addr), started.clone());
        done.store(true, Ordering::Relaxed);
        (outcome, sampler.join().unwrap())
    });
    let stored_at_end = kinspect.flows_stored();
    let after = kinspect.memory();
    std::thread::sleep(Duration::from_millis(500));
    kinspect.stop();
    let capture = kinspect.capture();
    let stored = CaptureReader::open(&capture).unwrap().count().unwrap();
    let size: u64 = ["", "-wal"]
        .iter()
        .filter_map(|suffix| std::fs::metadata(format!("{}{suffix}", capture.display())).ok())
        .map(|m| m.len())
        .sum();

    // Export the whole capture as HAR; the exporter's memory must stay flat.
    let har = kinspect.home().join("bench.har");
    let export_started = Instant::now();
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
        export_rss = export_rss.max(memory(export.id()).peak);
        std::thread::sleep(Duration::from_millis(20));
    }
    let export_time = export_started.elapsed();
    let har_size = std::fs::metadata(&har).map(|m| m.len()).unwrap_or(0);

    println!("kinspect capture: {flows} requests, 10 KiB responses, {concurrency} keep-alive clients, plain HTTP, every flow recorded");
    print_table_header();
    let rss = support::rss_text(before, after);
    let row = rate_row(
        "100k-flow capture (plain HTTP, 10 KiB)",
        &mut direct,
        &mut through,
        rss,
    );
    row.print();
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| failed requests (direct / through) | {} / {} |",
        direct.errors, through.errors
    );
    println!(
        "| flows stored when the load ended / in the capture | {stored_at_end} / {stored} of {} |",
        through.requests
    );
    println!(
        "| started − stored, max in each quarter of the run | {} / {} / {} / {} |",
        backlog.max_in(0.0, 0.25),
        backlog.max_in(0.25, 0.5),
        backlog.max_in(0.5, 0.75),
        backlog.max_in(0.75, 1.0)
    );
    println!("| capture file (db + wal) | {} |", HumanSize(size));
    println!(
        "| HAR export of the capture: time, file, exporter peak RSS | {:.1?}, {}, {} |",
        export_time,
        HumanSize(har_size),
        HumanSize(export_rss)
    );
    println!();
    let keeps_up = backlog.max_in(0.75, 1.0) <= 2 * backlog.max_in(0.0, 0.25).max(concurrency);
    let verdict = |met: bool| if met { "met:    " } else { "NOT MET:" };
    println!(
        "- {} proxy peak RSS {} ≤ 200 MB",
        verdict(after.peak <= MAX_RSS),
        HumanSize(after.peak)
    );
    println!(
        "- {} the writer keeps up: started − stored stays bounded (last quarter {} vs first {}; {concurrency} clients)",
        verdict(keeps_up),
        backlog.max_in(0.75, 1.0),
        backlog.max_in(0.0, 0.25)
    );
    println!(
        "- {} every flow is in the capture ({stored} of {})",
        verdict(stored >= through.requests),
        through.requests
    );
}
