//! The real `kinspect` binary under load: 1,000 concurrent keep-alive connections lose
//! no request and no flow, and a SIGKILL in the middle of a load loses no flow whose
//! response a client received in full.

mod support;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use kinspect::capture::{CaptureReader, CaptureWriter, Detail};
use support::{KinspectProcess, Origin, OriginKind, STEP};
use tokio::net::TcpStream;

/// The load tests run one at a time: each wants the machine's cores to itself.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What the `/status/200` fixture answers.
const BODY: &[u8] = b"{\"status\":200}";

/// One client connection to the proxy, speaking HTTP/1.1 with keep-alive.
async fn open_connection(proxy: SocketAddr) -> SendRequest<Empty<Bytes>> {
    let stream = TcpStream::connect(proxy).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(async move {
        // Ends when the sender is dropped or the proxy goes away.
        let _ = connection.await;
    });
    sender
}

/// `n` connections, opened at most 100 at a time (the listen backlog is finite).
async fn open_connections(proxy: SocketAddr, n: usize) -> Vec<SendRequest<Empty<Bytes>>> {
    tokio::time::timeout(
        STEP,
        futures_util::stream::iter(0..n)
            .map(|_| open_connection(proxy))
            .buffer_unordered(100)
            .collect::<Vec<_>>(),
    )
    .await
    .expect("every connection opens in time")
}

/// One proxied GET of `url` (absolute-form), its body read in full.
async fn get(sender: &mut SendRequest<Empty<Bytes>>, url: &str) -> Result<(), String> {
    sender.ready().await.map_err(|e| format!("{url}: {e}"))?;
    let uri: http::Uri = url.parse().unwrap();
    let request = Request::get(uri.clone())
        .header(http::header::HOST, uri.authority().unwrap().as_str())
        .body(Empty::new())
        .unwrap();
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if response.status() != 200 {
        return Err(format!("{url}: status {}", response.status()));
    }
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{url}: body: {e}"))?
        .to_bytes();
    if &body[..] != BODY {
        return Err(format!("{url}: body {body:?}"));
    }
    Ok(())
}

/// When a load stops: `stop` ends it after the current requests; `killed` says that
/// the proxy was killed, so failures from then on are expected.
#[derive(Clone, Default)]
struct Control {
    stop: Arc<AtomicBool>,
    killed: Arc<AtomicBool>,
}

/// What one connection did: the URLs whose responses it received in full, and the
/// error that ended it, if any, with whether the proxy had been killed by then.
struct Worked {
    completed: Vec<String>,
    error: Option<(String, bool)>,
}

/// Sends requests with unique URLs on `sender`, one after the other, until told to stop
/// or one fails.
async fn work(
    mut sender: SendRequest<Empty<Bytes>>,
    origin: SocketAddr,
    connection: usize,
    control: Control,
) -> Worked {
    let mut completed = Vec::new();
    for i in 0.. {
        if control.stop.load(Ordering::Relaxed) {
            break;
        }
        let url = format!("http://{origin}/status/200?c={connection}&r={i}");
        match get(&mut sender, &url).await {
            Ok(()) => completed.push(url),
            Err(e) => {
                let killed = control.killed.load(Ordering::Relaxed);
                return Worked {
                    completed,
                    error: Some((e, killed)),
                };
            }
        }
    }
    Worked {
        completed,
        error: None,
    }
}

/// Runs one worker per connection until `until` resolves, then stops them (after
/// `on_stop`) and gathers what they did.
async fn run_load(
    senders: Vec<SendRequest<Empty<Bytes>>>,
    origin: SocketAddr,
    until: impl std::future::Future<Output = ()>,
    on_stop: impl FnOnce(&Control),
) -> Vec<Worked> {
    let control = Control::default();
    let workers: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(c, sender)| tokio::spawn(work(sender, origin, c, control.clone())))
        .collect();
    until.await;
    on_stop(&control);
    control.stop.store(true, Ordering::Relaxed);
    let mut worked = Vec::new();
    for worker in workers {
        worked.push(
            tokio::time::timeout(STEP, worker)
                .await
                .expect("every connection finishes its last request in time")
                .unwrap(),
        );
    }
    worked
}

/// Every request URL in the capture, and the highest flow id.
fn captured_urls(capture: &Path) -> (Vec<String>, u64) {
    let reader = CaptureReader::open(capture).unwrap();
    let mut urls = Vec::new();
    let mut max_id = 0;
    reader
        .for_each(Detail::Summary, |stored| {
            let flow = stored.flow;
            assert_eq!(flow.status(), Some(200), "{}", flow.request.url);
            assert!(flow.error.is_none(), "{:?}", flow.error);
            max_id = max_id.max(flow.id);
            urls.push(flow.request.url);
        })
        .unwrap();
    assert_eq!(reader.count().unwrap(), urls.len() as u64);
    (urls, max_id)
}

/// Raises this process's open-files limit: the test holds every client socket and the
/// origin every server socket.
fn enough_open_files(wanted: u64) {
    let limit = rlimit::increase_nofile_limit(wanted).unwrap();
    assert!(
        limit >= wanted,
        "this test needs {wanted} open files; the hard limit (ulimit -Hn) is {limit}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_keep_alive_connections_for_ten_seconds_lose_nothing() {
    const CONNECTIONS: usize = 1000;
    const LOAD: Duration = Duration::from_secs(10);
    let _serial = SERIAL.lock().await;
    enough_open_files(3 * CONNECTIONS as u64 + 512);
    let origin = Origin::start(OriginKind::Plain).await;
    let home = tempfile::tempdir().unwrap();
    let capture = home.path().join("load.db");
    let process = KinspectProcess::start(home.path(), &capture, |_| {});

    let setup = Instant::now();
    let senders = open_connections(process.addr, CONNECTIONS).await;
    eprintln!(
        "{CONNECTIONS} connections opened in {:.1?}",
        setup.elapsed()
    );
    let started = Instant::now();
    let worked = run_load(senders, origin.addr, tokio::time::sleep(LOAD), |_| {}).await;
    let idle = worked.iter().filter(|w| w.completed.is_empty()).count();
    let failures: Vec<String> = worked
        .iter()
        .filter_map(|w| w.error.as_ref().map(|(e, _)| e.clone()))
        .collect();
    let completed: Vec<String> = worked.into_iter().flat_map(|w| w.completed).collect();
    let elapsed = started.elapsed();
    eprintln!(
        "{} requests on {CONNECTIONS} connections in {elapsed:.1?}: {:.0} requests/s",
        completed.len(),
        completed.len() as f64 / elapsed.as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} failed requests, e.g. {:?}; kinspect said: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)],
        process.stderr.lock().unwrap()
    );
    assert_eq!(idle, 0, "every connection was served during the load");

    let read = Instant::now();
    let (stored, _) = captured_urls(&capture);
    eprintln!("{} flows read back in {:.1?}", stored.len(), read.elapsed());
    let stored_set: HashSet<&String> = stored.iter().collect();
    let completed_set: HashSet<&String> = completed.iter().collect();
    assert_eq!(stored_set.len(), stored.len(), "no flow is stored twice");
    let missing: Vec<_> = completed_set.difference(&stored_set).take(5).collect();
    let extra: Vec<_> = stored_set.difference(&completed_set).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{} completed, {} stored; missing e.g. {missing:?}, extra e.g. {extra:?}",
        completed.len(),
        stored.len()
    );
    drop(process);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_no_flow_whose_response_was_received() {
    const CONNECTIONS: usize = 50;
    let _serial = SERIAL.lock().await;
    let origin = Origin::start(OriginKind::Plain).await;
    let home = tempfile::tempdir().unwrap();
    let capture = home.path().join("killed.db");
    // A slow disk: every commit stalls, so responses wait on their flows more often.
    let mut process = KinspectProcess::start(home.path(), &capture, |command| {
        command.env("KINSPECT_FAULT_COMMIT_DELAY_MS", "10");
    });
    let senders = open_connections(process.addr, CONNECTIONS).await;
    let started = Instant::now();
    let mut killed_after = Duration::ZERO;
    let worked = run_load(
        senders,
        origin.addr,
        tokio::time::sleep(Duration::from_secs(2)),
        |control| {
            // Errors from here on are the kill's doing; before it, none is allowed.
            control.killed.store(true, Ordering::Relaxed);
            process.kill();
            killed_after = started.elapsed();
        },
    )
    .await;
    let before_kill: Vec<&String> = worked
        .iter()
        .filter_map(|w| match &w.error {
            Some((e, false)) => Some(e),
            _ => None,
        })
        .collect();
    assert!(
        before_kill.is_empty(),
        "failed before the kill: {before_kill:?}"
    );
    let broken = worked.iter().filter(|w| w.error.is_some()).count();
    let completed: Vec<String> = worked.into_iter().flat_map(|w| w.completed).collect();
    eprintln!(
        "{} responses received in full; SIGKILL at {killed_after:.1?}, after which \
         {broken} of {CONNECTIONS} connections failed mid-request",
        completed.len()
    );
    assert!(completed.len() > 100, "the load ran: {}", completed.len());

    // The capture reopens, intact, and holds every response the clients saw end.
    let (stored, max_id) = captured_urls(&capture);
    let stored_set: HashSet<&String> = stored.iter().collect();
    let missing: Vec<&String> = completed
        .iter()
        .filter(|url| !stored_set.contains(url))
        .collect();
    eprintln!(
        "{} flows stored ({} of them still being received when killed)",
        stored.len(),
        stored.len().saturating_sub(completed.len())
    );
    assert!(
        missing.is_empty(),
        "{} of {} received responses are not in the capture, e.g. {:?}",
        missing.len(),
        completed.len(),
        &missing[..missing.len().min(5)]
    );
    let conn = rusqlite::Connection::open(&capture).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    drop(conn);
    let writer = CaptureWriter::open(&capture).unwrap();
    assert_eq!(writer.next_id().unwrap(), max_id + 1, "ids continue");
}
