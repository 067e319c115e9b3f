//! The benchmarks' origin as a program, for `scripts/compare-mitmproxy.sh` when nginx is
//! not installed: every request is answered with BODY_BYTES bytes (default 1024), over
//! plain HTTP on one port and over HTTPS (HTTP/1.1, a self-signed certificate for
//! `localhost`) on another. Writes the certificate to PEM_FILE, then prints
//! `http=ADDR https=ADDR` once listening. Threads: KINSPECT_BENCH_ORIGIN_THREADS.
//!
//! `cargo run --release --example bench_origin -- PEM_FILE [BODY_BYTES]`

#[path = "../benches/support/mod.rs"]
mod support;

use support::{Origin, OriginKind};

fn main() {
    kinspect::tls::install_crypto_provider();
    const USAGE: &str = "usage: bench_origin PEM_FILE [BODY_BYTES]";
    let mut args = std::env::args().skip(1);
    let pem = match args.next() {
        Some(pem) if !pem.starts_with('-') => pem,
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    let body = args
        .next()
        .map_or(1024, |b| b.parse().expect("BODY_BYTES is a number"));
    let plain = Origin::start(OriginKind::Plain, body);
    let tls = Origin::start(OriginKind::Tls, body);
    tls.write_pem(std::path::Path::new(&pem));
    println!("http={} https={}", plain.addr, tls.addr);
    loop {
        std::thread::park();
    }
}
