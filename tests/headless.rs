//! The `kinspect` binary in --headless mode: start-up, one line (or JSON object) per
//! flow, CA reuse across runs, and clear errors.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use support::{Origin, OriginKind, STEP};

/// A running kinspect process, killed when dropped.
struct KinspectProcess {
    child: Child,
    addr: String,
    fingerprint: String,
    stdout: mpsc::Receiver<String>,
    /// Kept open so kinspect's later stderr lines have a reader.
    _stderr: mpsc::Receiver<String>,
}

impl Drop for KinspectProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The kinspect binary with its home (and so its captures) inside `dir`, never the
/// user's ~/.kinspect.
fn kinspect(dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kinspect"));
    command.env("KINSPECT_HOME", dir);
    command
}

fn lines_of(stream: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn start(ca_dir: &std::path::Path, extra: &[&str]) -> KinspectProcess {
    let mut child = kinspect(ca_dir)
        .args(["--listen", "127.0.0.1:0", "--headless", "--ca-dir"])
        .arg(ca_dir)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = lines_of(child.stderr.take().unwrap());
    let stdout = lines_of(child.stdout.take().unwrap());
    let mut addr = None;
    let mut fingerprint = None;
    while addr.is_none() || fingerprint.is_none() {
        let line = stderr
            .recv_timeout(STEP)
            .expect("kinspect announces itself");
        if let Some(rest) = line.split("listening on http://").nth(1) {
            addr = Some(rest.trim().to_owned());
        }
        if let Some(rest) = line.split("SHA-256 ").nth(1) {
            fingerprint = Some(rest.trim_end_matches(')').to_owned());
        }
    }
    KinspectProcess {
        child,
        addr: addr.unwrap(),
        fingerprint: fingerprint.unwrap(),
        stdout,
        _stderr: stderr,
    }
}

fn client(process: &KinspectProcess, ca_dir: &std::path::Path) -> reqwest::Client {
    let pem = std::fs::read(ca_dir.join("kinspect-ca.pem")).unwrap();
    reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(format!("http://{}", process.addr)).unwrap())
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .timeout(STEP)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonl_prints_one_object_per_flow() {
    let origin = Origin::start(OriginKind::Https).await;
    let ca_dir = tempfile::tempdir().unwrap();
    let origin_ca = origin.ca_path();
    let process = start(
        ca_dir.path(),
        &["--jsonl", "--upstream-ca", origin_ca.to_str().unwrap()],
    );
    let client = client(&process, ca_dir.path());
    let response = client.get(origin.url("/status/404")).send().await.unwrap();
    assert_eq!(response.status(), 404);

    let line = process.stdout.recv_timeout(STEP).expect("a JSON line");
    let flow: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(flow["method"], "GET");
    assert_eq!(flow["url"], origin.url("/status/404"));
    assert_eq!(flow["status"], 404);
    assert_eq!(flow["kind"], "http");
    assert!(flow["duration_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(flow["response"]["body_size"], "{\"status\":404}".len());
    assert_eq!(flow["client_tls"]["sni"], "localhost");
    assert!(flow["error"].is_null());
    assert!(flow["kinvey"]["known"].is_null(), "no Kinvey error to know");
    assert_eq!(flow["request"]["body_incomplete"], false);
    assert_eq!(flow["response"]["body_incomplete"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_lines_show_status_size_duration_and_errors() {
    let origin = Origin::start(OriginKind::Plain).await;
    let ca_dir = tempfile::tempdir().unwrap();
    let process = start(ca_dir.path(), &[]);
    let client = client(&process, ca_dir.path());
    client.get(origin.url("/status/201")).send().await.unwrap();
    let line = process.stdout.recv_timeout(STEP).unwrap();
    assert!(
        line.contains(&format!("GET {} 201 ", origin.url("/status/201"))),
        "{line}"
    );
    assert!(line.ends_with("ms"), "{line}");

    // A refused port: the line carries the error.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    client
        .get(format!("http://127.0.0.1:{port}/"))
        .send()
        .await
        .unwrap();
    let line = process.stdout.recv_timeout(STEP).unwrap();
    assert!(line.contains("502 (kinspect)"), "{line}");
    assert!(line.contains("error[connect]"), "{line}");
}

#[test]
fn the_ca_is_created_once_private_and_reused() {
    let ca_dir = tempfile::tempdir().unwrap();
    let first = start(ca_dir.path(), &[]).fingerprint.clone();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let key = ca_dir.path().join("kinspect-ca-key.pem");
        let mode = std::fs::metadata(key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let second = start(ca_dir.path(), &[]).fingerprint.clone();
    assert_eq!(first, second);
    assert_eq!(first.len(), 32 * 3 - 1, "colon-separated SHA-256: {first}");
}

#[test]
fn a_corrupt_ca_is_a_clear_error_naming_the_file() {
    let ca_dir = tempfile::tempdir().unwrap();
    drop(start(ca_dir.path(), &[]));
    let cert = ca_dir.path().join("kinspect-ca.pem");
    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nnope\n").unwrap();
    let output = kinspect(ca_dir.path())
        .args(["--listen", "127.0.0.1:0", "--headless", "--ca-dir"])
        .arg(ca_dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(cert.to_str().unwrap()), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&cert).unwrap(),
        "-----BEGIN CERTIFICATE-----\nnope\n",
        "never replaced"
    );
}

#[test]
fn a_busy_listen_address_is_a_clear_error() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let ca_dir = tempfile::tempdir().unwrap();
    let output = kinspect(ca_dir.path())
        .args(["--listen", &addr, "--headless", "--ca-dir"])
        .arg(ca_dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&addr) && stderr.contains("--listen"),
        "{stderr}"
    );
}

#[test]
fn the_ui_without_a_terminal_is_a_clear_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("capture.db");
    // Output piped (as in a script or CI): no terminal to draw on.
    let proxy = kinspect(dir.path())
        .args(["--listen", "127.0.0.1:0", "--ca-dir"])
        .arg(dir.path())
        .arg("--capture")
        .arg(&capture)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let refused = |output: std::process::Output, advice: &str| {
        let said = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(output.status.code(), Some(1), "{said}");
        assert!(
            said.contains("needs a terminal") && said.contains(advice),
            "{said}"
        );
    };
    refused(proxy, "--headless");
    assert!(!capture.exists(), "stopped before recording anything");

    kinspect::capture::CaptureWriter::open(&capture).unwrap();
    let open = kinspect(dir.path())
        .arg("open")
        .arg(&capture)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let open_advice = format!("kinspect ls '{}'` instead", capture.display());
    refused(open, &open_advice);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_or_sigterm_stops_cleanly_and_leaves_the_capture_as_one_file() {
    let origin = Origin::start(OriginKind::Plain).await;
    for signal in ["INT", "TERM", "HUP"] {
        let dir = tempfile::tempdir().unwrap();
        let capture = dir.path().join("stopped.db");
        let mut process = start(dir.path(), &["--capture", capture.to_str().unwrap()]);
        let client = client(&process, dir.path());
        for _ in 0..3 {
            let response = client.get(origin.url("/status/200")).send().await.unwrap();
            assert_eq!(response.status(), 200);
        }
        // The shell's own kill: no procps needed.
        let signalled = Command::new("sh")
            .arg("-c")
            .arg(format!("kill -{signal} {}", process.child.id()))
            .status()
            .unwrap();
        assert!(signalled.success());
        let started = std::time::Instant::now();
        let status = loop {
            if let Some(status) = process.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                started.elapsed() < STEP,
                "kinspect did not stop on SIG{signal}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert!(status.success(), "SIG{signal}: {status:?}");
        for suffix in ["-wal", "-shm"] {
            let beside = dir.path().join(format!("stopped.db{suffix}"));
            assert!(
                !beside.exists(),
                "SIG{signal}: {} left behind",
                beside.display()
            );
        }
        let reader = kinspect::capture::CaptureReader::open(&capture).unwrap();
        assert_eq!(reader.count().unwrap(), 3, "SIG{signal}");
    }
}

#[test]
fn the_start_up_hint_works_as_printed_with_proxy_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let process = start(dir.path(), &["--proxy-auth", "ada:s3cret-pass"]);
    let hint = loop {
        let line = process
            ._stderr
            .recv_timeout(STEP)
            .expect("kinspect prints a curl hint");
        if line.contains("try: curl") {
            break line;
        }
    };
    assert!(hint.contains("--proxy-user 'ada:PASSWORD'"), "{hint}");
    assert!(!hint.contains("s3cret-pass"), "never the password: {hint}");
    assert!(
        hint.contains(&format!("-x http://{}", process.addr)),
        "{hint}"
    );
}
