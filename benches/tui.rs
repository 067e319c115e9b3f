//! Does the terminal UI slow the proxy? (`cargo bench --bench tui`, needs tmux.)
//!
//! The same load — C keep-alive clients for D seconds against a local origin, 1 KiB
//! responses, plain HTTP — through two kinspect binaries running side by side for the
//! whole bench, each in tmux: one with the UI drawing, one `--headless` (lines to
//! /dev/null). They take turns in alternating rounds; the bench reports requests/s of
//! each round, the median ratio and the overall ratio. Scenario `tui`.

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use support::{client, env_number, load, runtime, selected, Origin, OriginKind, Until};

fn run_load(addr: SocketAddr, url: &str, concurrency: u64, duration: Duration) -> f64 {
    let url = url.to_owned();
    let outcome = runtime().block_on(load(
        client(Some(addr), &[]),
        move |_| url.clone(),
        concurrency,
        Until::Elapsed(duration),
        Arc::default(),
    ));
    outcome.assert_no_errors("tui bench");
    outcome.rate()
}

/// kinspect running in its own session of a detached tmux server (200x50), stopped on
/// drop. Both modes run this way: each tmux pane is a new login session, and Linux's
/// scheduler (autogroup) shares the CPU fairly between sessions, so a kinspect started
/// from the bench's own session would get a different share of the cores than one in
/// tmux, whatever its UI costs.
struct UiSession {
    socket: String,
    addr: SocketAddr,
}

impl UiSession {
    /// `kinspect --listen … {args}` (a shell command line) with its home in `home`.
    fn start(home: &std::path::Path, name: &str, args: &str) -> UiSession {
        let socket = format!("kinspect-bench-{}-{name}", std::process::id());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let command = format!(
            "KINSPECT_HOME={} {} --listen 127.0.0.1:{port} {args}",
            home.display(),
            env!("CARGO_BIN_EXE_kinspect")
        );
        let session = UiSession {
            socket,
            addr: format!("127.0.0.1:{port}").parse().unwrap(),
        };
        session.tmux(&[
            "new-session",
            "-d",
            "-s",
            "ui",
            "-x",
            "200",
            "-y",
            "50",
            &command,
        ]);
        while std::net::TcpStream::connect(session.addr).is_err() {
            std::thread::sleep(Duration::from_millis(50));
        }
        session
    }

    fn tmux(&self, args: &[&str]) -> String {
        let output = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for UiSession {
    fn drop(&mut self) {
        self.tmux(&["kill-server"]);
    }
}

/// 100k flows in the UI's state: how long a filter over all of them and a frame take.
fn hundred_thousand_flows() {
    use kinspect::capture::StoredFlow;
    use kinspect::filter::Filter;
    use kinspect::flow::*;
    use kinspect::kinvey::{ErrorClass, KinveySummary};
    use kinspect::tui::state::{App, SourceInfo};
    use ratatui::backend::TestBackend;
    use std::time::{Instant, UNIX_EPOCH};

    let mut app = App::new(SourceInfo::default());
    for id in 1..=100_000u64 {
        let status = [200, 200, 404, 500, 200][id as usize % 5];
        let class = match status {
            404 => Some(ErrorClass::Fix),
            500 => Some(ErrorClass::Retry),
            _ => None,
        };
        let mut flow = Flow::exchange(
            id,
            "127.0.0.1:5000".parse().unwrap(),
            "GET",
            &format!("https://baas.kinvey.com/appdata/kid_x/books/{id}"),
            Some(status),
        );
        flow.started_at = UNIX_EPOCH + Duration::from_millis(id);
        app.push(Box::new(StoredFlow {
            flow,
            kinvey: KinveySummary {
                request_id: Some(format!("{id:032x}")),
                error: class.map(|_| "SomeError".to_owned()),
                class,
                known: true,
                ..KinveySummary::default()
            },
        }));
    }
    let started = Instant::now();
    app.filter = Some(Filter::parse("~kc retry | ~c 404 & ~u books").unwrap());
    app.refilter();
    let filtered = started.elapsed();
    let shown = app.view.len();
    let mut terminal = ratatui::Terminal::new(TestBackend::new(160, 50)).unwrap();
    let started = Instant::now();
    for _ in 0..20 {
        terminal
            .draw(|frame| kinspect::tui::view::draw(frame, &app))
            .unwrap();
    }
    let frame = started.elapsed() / 20;
    println!("100,000 flows in the UI: a filter over all of them took {filtered:.2?} ({shown} shown); a frame takes {frame:.2?}");
}

fn main() {
    if !selected("tui") {
        return;
    }
    hundred_thousand_flows();
    if Command::new("tmux").arg("-V").output().is_err() {
        println!("SKIPPED: tmux is not installed (apt-get install tmux)");
        return;
    }
    let concurrency = env_number("KINSPECT_BENCH_CONCURRENCY", 32);
    let duration = Duration::from_secs(env_number("KINSPECT_BENCH_SECS", 5));
    let origin = Origin::start(OriginKind::Plain, 1024);
    let url = format!("http://localhost:{}/", origin.addr.port());
    let rounds = env_number("KINSPECT_BENCH_ROUNDS", 5);
    let home = tempfile::tempdir().unwrap();
    // Both run for the whole bench and take turns under the same load, so that the
    // machine's drift (other processes, thermal) falls on both alike.
    let headless_home = tempfile::tempdir().unwrap();
    // The headless lines go to /dev/null: the UI is measured against the proxy's work.
    let headless = UiSession::start(headless_home.path(), "headless", "--headless >/dev/null");
    let ui = UiSession::start(home.path(), "ui", "");
    let mut ratios = Vec::new();
    let (mut headless_total, mut ui_total) = (0.0, 0.0);
    println!("kinspect with the UI vs --headless: {concurrency} keep-alive clients, {rounds} alternating rounds of {duration:?}, 1 KiB responses, plain HTTP");
    println!("| round | --headless req/s | terminal UI (tmux) req/s | UI / headless |");
    println!("|---|---|---|---|");
    for round in 1..=rounds {
        // Each goes first in every other round, so that neither always runs on a
        // machine the other has just warmed (or heated).
        let (headless_rate, ui_rate) = if round % 2 == 1 {
            let headless_rate = run_load(headless.addr, &url, concurrency, duration);
            (
                headless_rate,
                run_load(ui.addr, &url, concurrency, duration),
            )
        } else {
            let ui_rate = run_load(ui.addr, &url, concurrency, duration);
            (
                run_load(headless.addr, &url, concurrency, duration),
                ui_rate,
            )
        };
        let ratio = ui_rate / headless_rate;
        println!("| {round} | {headless_rate:.0} | {ui_rate:.0} | {ratio:.2} |");
        ratios.push(ratio);
        headless_total += headless_rate;
        ui_total += ui_rate;
    }
    let screen = ui.tmux(&["capture-pane", "-p", "-t", "ui"]);
    assert!(screen.contains("flows "), "the UI was drawing:\n{screen}");
    ratios.sort_by(f64::total_cmp);
    println!(
        "UI / headless: median of rounds {:.2}, all requests {:.2}",
        ratios[ratios.len() / 2],
        ui_total / headless_total
    );
}
