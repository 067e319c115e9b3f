//! The capture store: every Flow field round-trips, bad files are clear errors, a
//! killed proxy loses no flow, and a growing capture can be read.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use kinspect::capture::{CaptureError, CaptureReader, CaptureWriter, Detail, StoredFlow};
use kinspect::flow::{
    CapturedBody, Flow, FlowError, FlowErrorKind, FlowKind, HeaderField, Headers, HttpVersion,
    RequestRecord, ResponseRecord, Timings, TlsInfo,
};
use kinspect::kinvey::{ErrorClass, Finding, KinveySummary, OtherError};
use support::{
    headless_command, headless_command_on, refused_at_start, KinspectProcess, Origin, OriginKind,
};

/// Runs `command` (the kinspect binary), expecting it to succeed: its stdout and stderr.
fn succeeded(mut command: Command) -> (String, String) {
    let output = command.output().unwrap();
    let said = String::from_utf8(output.stderr).unwrap();
    assert!(output.status.success(), "{said}");
    (String::from_utf8(output.stdout).unwrap(), said)
}

fn header(name: &str, value: &[u8]) -> HeaderField {
    HeaderField {
        name: name.into(),
        value: Bytes::copy_from_slice(value),
    }
}

fn full_flow(id: u64) -> Flow {
    let binary: Vec<u8> = (0..=255u8).cycle().take(300).collect();
    Flow {
        id,
        kind: FlowKind::Http,
        client_addr: "[::1]:51234".parse().unwrap(),
        started_at: UNIX_EPOCH + Duration::new(1_764_000_000, 123_456_789),
        scheme: "https".into(),
        host: "baas.kinvey.com".into(),
        port: 443,
        request: RequestRecord {
            method: "POST".into(),
            url: "https://baas.kinvey.com/blob/kid_x?tls=true".into(),
            version: HttpVersion::Http2,
            headers: Headers(vec![
                header("authorization", b"Kinvey secret-token"),
                header("x-kinvey-api-version", b"5"),
                header("x-odd", &[0xff, 0xfe, b'a']),
                header("x-kinvey-api-version", b"duplicate kept in order"),
            ]),
            body: CapturedBody {
                bytes: Bytes::from(binary.clone()),
                wire_size: 9000,
                truncated: true,
                incomplete: false,
            },
        },
        response: Some(ResponseRecord {
            status: 500,
            version: HttpVersion::Http11,
            headers: Headers(vec![
                header("content-type", b"application/json"),
                header("X-Kinvey-Request-ID", b"abc123"),
            ]),
            body: CapturedBody {
                bytes: Bytes::from_static(br#"{"error":"KinveyInternalErrorRetry"}"#),
                wire_size: 36,
                truncated: false,
                incomplete: true,
            },
            from_proxy: false,
        }),
        timings: Timings {
            blocked: None,
            dns: Some(Duration::from_nanos(1_234_567)),
            connect: Some(Duration::from_nanos(9_876_543)),
            ssl: Some(Duration::from_nanos(5_000_001)),
            send: Duration::from_nanos(17),
            wait: Duration::from_millis(250),
            receive: Duration::from_nanos(3_333_333_333),
        },
        server_ip: Some("2001:db8::7".parse().unwrap()),
        client_tls: Some(Arc::new(TlsInfo {
            sni: Some("baas.kinvey.com".into()),
            alpn: Some("h2".into()),
            version: Some("TLSv1.3".into()),
        })),
        server_tls: Some(Arc::new(TlsInfo {
            sni: Some("baas.kinvey.com".into()),
            alpn: None,
            version: Some("TLSv1.2".into()),
        })),
        error: Some(FlowError {
            kind: FlowErrorKind::Protocol,
            message: "upstream broke off the response body".into(),
        }),
        websocket: None,
        replay_of: None,
    }
}

fn tunnel_flow(id: u64) -> Flow {
    Flow {
        id,
        kind: FlowKind::Tunnel,
        client_addr: SocketAddr::from(([127, 0, 0, 1], 40000)),
        started_at: UNIX_EPOCH + Duration::from_secs(1_764_000_100),
        scheme: "https".into(),
        host: "pinned.example".into(),
        port: 443,
        request: RequestRecord {
            method: "CONNECT".into(),
            url: "pinned.example:443".into(),
            version: HttpVersion::Http11,
            headers: Headers::default(),
            body: CapturedBody::default(),
        },
        response: None,
        timings: Timings::default(),
        server_ip: None,
        client_tls: None,
        server_tls: None,
        error: None,
        websocket: None,
        replay_of: None,
    }
}

#[test]
fn every_flow_field_round_trips_through_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("round-trip.db");
    let mut writer = CaptureWriter::open(&path).unwrap();
    assert_eq!(writer.next_id().unwrap(), 1);
    let kinvey = KinveySummary {
        request_id: Some("abc123".into()),
        error: Some("KinveyInternalErrorRetry".into()),
        class: Some(ErrorClass::Retry),
        known: true,
        other_errors: Vec::new(),
        anomalies: vec![Finding {
            code: "missing_api_version".into(),
            message: "no version".into(),
        }],
        warnings: vec![Finding {
            code: "retry_without_backoff".into(),
            message: "retried 3 ms after".into(),
        }],
    };
    let flows = [
        StoredFlow {
            flow: full_flow(1),
            kinvey,
        },
        StoredFlow {
            flow: tunnel_flow(2),
            kinvey: KinveySummary {
                known: true,
                ..KinveySummary::default()
            },
        },
    ];
    writer.write_batch(&flows).unwrap();
    assert_eq!(writer.next_id().unwrap(), 3);

    let reader = CaptureReader::open(&path).unwrap();
    assert_eq!(reader.count().unwrap(), 2);
    assert_eq!(reader.flow(1).unwrap().unwrap(), flows[0]);
    assert_eq!(reader.flow(2).unwrap().unwrap(), flows[1]);
    assert!(reader.flow(3).unwrap().is_none());
    let hit = vec![("abc123".to_string(), 1)];
    assert_eq!(reader.find_request_id("abc123").unwrap(), hit);
    assert_eq!(reader.find_request_id("abc").unwrap(), hit, "by prefix");
    assert!(reader.find_request_id("abd").unwrap().is_empty());
    // As `~rid` and the UI do, case is ignored (ids are pasted from logs in either case).
    assert_eq!(reader.find_request_id("ABC123").unwrap(), hit);
    assert_eq!(reader.find_request_id("aBc").unwrap(), hit, "by prefix");

    let mut summaries = Vec::new();
    reader
        .for_each(Detail::Summary, |f| summaries.push(f.flow))
        .unwrap();
    assert_eq!(summaries.len(), 2);
    assert!(
        summaries[0].request.headers.is_empty(),
        "summaries skip headers"
    );
    assert_eq!(summaries[0].request.body.wire_size, 9000);
    assert_eq!(summaries[0].status(), Some(500));

    // SQL users see the values they expect.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let (rid, wait, url): (String, f64, String) = conn
        .query_row(
            "SELECT kinvey_request_id, time_wait_ms, url FROM flows WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(rid, "abc123");
    assert_eq!(wait, 250.0);
    assert!(url.ends_with("?tls=true"));
    let api: String = conn
        .query_row(
            "SELECT value FROM headers WHERE flow_id = 1 AND side = 'request' AND name = 'x-kinvey-api-version' ORDER BY position LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(api, "5");
}

/// A capture holds every credential that crossed the proxy: only its owner reads it.
#[test]
#[cfg(unix)]
fn a_new_capture_and_its_directory_are_its_owners_alone() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("made/for/it/capture.db");
    let mut writer = CaptureWriter::open(&path).unwrap();
    let stored = StoredFlow {
        flow: full_flow(1),
        kinvey: KinveySummary::default(),
    };
    writer.write_batch(&[stored]).unwrap();
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&path.with_file_name("capture.db-wal")), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    assert_eq!(mode(&dir.path().join("made")), 0o700);
    drop(writer);

    // Not a file: refused before SQLite makes a journal beside it.
    let err = CaptureWriter::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
}

/// A flow whose row is damaged (a hand edit, a flipped byte) is left out, said with its
/// id; the flows after it are still read, by the reader and by `ls` and `har`.
#[test]
fn a_damaged_row_leaves_out_its_flow_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("damaged.db");
    let mut writer = CaptureWriter::open(&path).unwrap();
    let flows: Vec<StoredFlow> = (1..=4)
        .map(|id| StoredFlow {
            flow: full_flow(id),
            kinvey: KinveySummary::default(),
        })
        .collect();
    writer.write_batch(&flows).unwrap();
    drop(writer);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "UPDATE flows SET client_addr = 'garbage' WHERE id = 2;
         UPDATE flows SET status = 'abc' WHERE id = 3;",
    )
    .unwrap();
    drop(conn);

    let reader = CaptureReader::open(&path).unwrap();
    let mut read = Vec::new();
    reader
        .for_each(Detail::Full, |stored| read.push(stored.flow.id))
        .unwrap();
    assert_eq!(read, [1, 4]);
    let left_out = reader.take_left_out();
    assert_eq!(left_out.iter().map(|l| l.id).collect::<Vec<_>>(), [2, 3]);
    assert!(left_out[0]
        .to_string()
        .starts_with("flow 2: it cannot be read ("));
    assert!(
        left_out[0].reason.contains("client_addr"),
        "{}",
        left_out[0]
    );
    assert!(reader.take_left_out().is_empty(), "taken once");
    // Read again, a left-out flow is not listed twice.
    reader.for_each(Detail::Summary, |_| {}).unwrap();
    assert!(reader.take_left_out().is_empty(), "each once");
    // A support report of flow 4 still reads the secrets of flow 1 past the damaged ones.
    assert!(reader.secrets_before(4).is_ok());
    drop(reader);

    let run = |args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kinspect"));
        command
            .args(args)
            .arg(&path)
            .env("KINSPECT_HOME", dir.path());
        succeeded(command)
    };
    let (listed, said) = run(&["ls"]);
    let ids: Vec<&str> = listed
        .lines()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(ids, ["1", "4"]);
    let prefix = format!("left out: {}: flow 2: it cannot be read (", path.display());
    assert!(said.contains(&prefix), "{said}");
    assert!(said.contains(": flow 3: it cannot be read ("), "{said}");
    let (har, said) = run(&["har", "-o", "-"]);
    let har: serde_json::Value = serde_json::from_str(&har).unwrap();
    assert_eq!(har["log"]["entries"].as_array().unwrap().len(), 2);
    assert!(said.contains(": flow 2: it cannot be read ("), "{said}");
}

#[test]
fn newer_unrelated_and_non_sqlite_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();

    let newer = dir.path().join("newer.db");
    CaptureWriter::open(&newer).unwrap();
    rusqlite::Connection::open(&newer)
        .unwrap()
        .execute_batch("PRAGMA user_version = 99")
        .unwrap();
    let err = CaptureReader::open(&newer).unwrap_err();
    assert!(
        matches!(err, CaptureError::NewerSchema { found: 99, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("newer.db") && err.to_string().contains("upgrade"));
    assert!(CaptureWriter::open(&newer).is_err(), "never written over");

    let random = dir.path().join("random.db");
    let noise: Vec<u8> = (0..8192u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&random, &noise).unwrap();
    let err = CaptureReader::open(&random).unwrap_err();
    assert!(matches!(err, CaptureError::NotACapture { .. }), "{err}");
    assert!(err.to_string().contains("random.db"), "{err}");
    assert!(CaptureWriter::open(&random).is_err());
    assert_eq!(std::fs::read(&random).unwrap(), noise, "left untouched");

    let err = CaptureReader::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("is a directory"), "{err}");
    assert!(CaptureWriter::open(dir.path()).is_err());

    let unrelated = dir.path().join("unrelated.db");
    rusqlite::Connection::open(&unrelated)
        .unwrap()
        .execute_batch("CREATE TABLE t (x)")
        .unwrap();
    let err = CaptureReader::open(&unrelated).unwrap_err();
    assert!(err.to_string().contains("not one kinspect wrote"), "{err}");

    let missing = dir.path().join("missing.db");
    let err = CaptureReader::open(&missing).unwrap_err();
    assert!(err.to_string().contains("missing.db"), "{err}");
    assert!(!missing.exists(), "reading never creates a file");

    // The CLI says the same and exits non-zero.
    let output = Command::new(env!("CARGO_BIN_EXE_kinspect"))
        .arg("ls")
        .arg(&random)
        .env("KINSPECT_HOME", dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("random.db") && stderr.contains("not a kinspect capture"),
        "{stderr}"
    );
}

/// kinspect capturing into `capture`, trusting `origin`'s CA, on a slow disk: every
/// commit stalls, so a flow not yet stored is easy to lose.
fn start_capturing(home: &Path, capture: &Path, origin: &Origin) -> KinspectProcess {
    KinspectProcess::start(home, capture, |command| {
        command.env("KINSPECT_FAULT_COMMIT_DELAY_MS", "30");
        if origin.ca.is_some() {
            command.arg("--upstream-ca").arg(origin.ca_path());
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_right_after_the_last_response_loses_no_flow() {
    const N: usize = 300;
    let origin = Origin::start(OriginKind::Https).await;
    let home = tempfile::tempdir().unwrap();
    let capture = home.path().join("killed.db");
    let mut running = start_capturing(home.path(), &capture, &origin);
    let client = running.client();
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let client = client.clone();
        let origin_url = origin.url("");
        tasks.push(tokio::spawn(async move {
            for i in (worker..N).step_by(8) {
                let url = format!("{origin_url}/echo/{i}");
                let response = client
                    .post(&url)
                    .body(format!("body {i}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
                response.bytes().await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    // Every response has been received in full: kill at once, without any grace.
    running.kill();

    // Its latest flows are in the log beside the file: `kinspect ls` folds it back in,
    // so that the file alone (copied to send, say) holds every flow.
    let wal = home.path().join("killed.db-wal");
    assert!(std::fs::metadata(&wal).unwrap().len() > 0);
    let listed = Command::new(env!("CARGO_BIN_EXE_kinspect"))
        .arg("ls")
        .arg(&capture)
        .env("KINSPECT_HOME", home.path())
        .output()
        .unwrap();
    assert!(listed.status.success(), "{listed:?}");
    assert_eq!(String::from_utf8_lossy(&listed.stdout).lines().count(), N);
    let said = String::from_utf8_lossy(&listed.stderr);
    assert!(said.contains("folded back in"), "{said}");
    assert!(!wal.exists());
    let copy = home.path().join("copy.db");
    std::fs::copy(&capture, &copy).unwrap();
    assert_eq!(
        CaptureReader::open(&copy).unwrap().count().unwrap(),
        N as u64
    );

    let reader = CaptureReader::open(&capture).unwrap();
    assert_eq!(reader.count().unwrap(), N as u64);
    let mut seen = vec![false; N];
    reader
        .for_each(Detail::Full, |stored| {
            let flow = stored.flow;
            let i: usize = flow
                .request
                .url
                .rsplit('/')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(&flow.request.body.bytes[..], format!("body {i}").as_bytes());
            assert_eq!(flow.status(), Some(200));
            seen[i] = true;
        })
        .unwrap();
    assert!(seen.iter().all(|s| *s));
    let conn = rusqlite::Connection::open(&capture).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    drop(conn);

    // The killed capture reopens for appending: ids continue.
    let writer = CaptureWriter::open(&capture).unwrap();
    assert_eq!(writer.next_id().unwrap(), N as u64 + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_growing_capture_can_be_listed_while_the_proxy_writes() {
    let origin = Origin::start(OriginKind::Plain).await;
    let home = tempfile::tempdir().unwrap();
    let capture = home.path().join("live.db");
    let running = start_capturing(home.path(), &capture, &origin);
    let client = running.client();
    let ls = |capture: &Path| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kinspect"));
        command.arg("ls").arg(capture);
        succeeded(command).0
    };

    for i in 0..5 {
        let response = client
            .get(origin.url(&format!("/status/20{i}")))
            .send()
            .await
            .unwrap();
        response.bytes().await.unwrap();
    }
    let listing = ls(&capture);
    assert_eq!(listing.lines().count(), 5, "{listing}");
    assert!(listing.contains("/status/203 203"), "{listing}");

    // A reader holding the file open does not block the writer.
    let reader = CaptureReader::open(&capture).unwrap();
    let mut first = Vec::new();
    reader
        .for_each(Detail::Full, |f| first.push(f.flow))
        .unwrap();
    for i in 5..10 {
        let response = client
            .get(origin.url(&format!("/status/20{i}")))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
        // A response read in full is a stored flow.
        response.bytes().await.unwrap();
    }
    assert_eq!(reader.count().unwrap(), 10);
    let json = Command::new(env!("CARGO_BIN_EXE_kinspect"))
        .args(["ls", "--json"])
        .arg(&capture)
        .output()
        .unwrap();
    let objects: Vec<serde_json::Value> = String::from_utf8(json.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(objects.len(), 10);
    assert_eq!(objects[9]["id"], 10);
    assert!(!objects[0]["response"]["headers"]
        .as_array()
        .unwrap()
        .is_empty());
    drop(running);
}

/// Builds a capture of an older schema `version` from its frozen `schema` and `rows`
/// (one flow: request headers `host` and `x-kinvey-api-version: 5`, a response header
/// `x-raw` of the bytes ff 00, request body `{}\n\n`, response body `ok`), then checks
/// that it reads back whole and that kinspect refuses to append to it.
fn an_old_capture_is_read_and_never_appended_to(version: i64, schema: &str, rows: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("v{version}.db"));
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(schema).unwrap();
    conn.execute_batch(&format!(
        "PRAGMA application_id = {};
         PRAGMA user_version = {version};
         {rows}",
        kinspect::capture::APPLICATION_ID
    ))
    .unwrap();
    drop(conn);

    let reader = CaptureReader::open(&path).unwrap();
    let mut flows = Vec::new();
    reader
        .for_each_after(0, Detail::Full, |f| flows.push(f))
        .unwrap();
    assert_eq!(flows.len(), 1);
    let flow = &flows[0].flow;
    assert_eq!(
        flow.request.headers.get("x-kinvey-api-version").as_deref(),
        Some("5")
    );
    assert_eq!(&flow.request.body.bytes[..], b"{}\n\n");
    let response = flow.response.as_ref().unwrap();
    assert_eq!(
        &response.headers.iter().next().unwrap().value[..],
        b"\xff\x00"
    );
    assert_eq!(&response.body.bytes[..], b"ok");

    let err = CaptureWriter::open(&path).unwrap_err();
    assert!(
        matches!(err, CaptureError::AppendToOlder { found, .. } if found == version),
        "{err}"
    );
    let message = err.to_string();
    assert!(message.contains(&format!("v{version}.db")) && message.contains("new --capture"));
}

/// The columns of `flows` that schema 1 already had, for the old-capture tests.
const FLOW_COLUMNS_OF_SCHEMA_1: &str = "id, kind, started_at, started_at_ns, client_addr,
    scheme, host, port, method, url, request_http_version, request_body_size,
    request_body_truncated, request_body_incomplete, status, response_http_version,
    response_from_proxy, response_body_size, response_body_truncated,
    response_body_incomplete, time_send_ms, time_wait_ms, time_receive_ms, duration_ms,
    client_tls, server_tls";

/// Their values for the old-capture tests' flow.
const FLOW_VALUES_OF_SCHEMA_1: &str = "1, 'http', '2026-11-29T20:00:00.000Z',
    1795723200000000000, '127.0.0.1:40000', 'http', 'example.test', 80, 'POST',
    'http://example.test/', 'HTTP/1.1', 4, 0, 0, 201, 'HTTP/1.1', 0, 2, 0, 0, 0.1, 1.0, 0.1,
    1.2, 0, 0";

#[test]
fn captures_of_schema_1_are_still_read_and_never_appended_to() {
    an_old_capture_is_read_and_never_appended_to(
        1,
        include_str!("support/capture_schema_1.sql"),
        &format!(
            "INSERT INTO flows ({FLOW_COLUMNS_OF_SCHEMA_1}) VALUES ({FLOW_VALUES_OF_SCHEMA_1});
             INSERT INTO headers VALUES (1, 'request', 0, 'host', 'example.test');
             INSERT INTO headers VALUES (1, 'request', 1, 'x-kinvey-api-version', '5');
             INSERT INTO headers VALUES (1, 'response', 0, 'x-raw', X'ff00');
             INSERT INTO bodies VALUES (1, 'request', X'7b7d0a0a');
             INSERT INTO bodies VALUES (1, 'response', X'6f6b');"
        ),
    );
}

#[test]
fn captures_of_schema_2_are_still_read_and_never_appended_to() {
    an_old_capture_is_read_and_never_appended_to(
        2,
        include_str!("support/capture_schema_2.sql"),
        &format!(
            r#"INSERT INTO flows ({FLOW_COLUMNS_OF_SCHEMA_1}, request_headers, response_headers)
               VALUES ({FLOW_VALUES_OF_SCHEMA_1},
                   '[["host","example.test"],["x-kinvey-api-version","5"]]',
                   '[["x-raw",[255,0]]]');
               INSERT INTO bodies VALUES (1, 'request', X'7b7d0a0a');
               INSERT INTO bodies VALUES (1, 'response', X'6f6b');"#
        ),
    );
}

#[test]
fn header_values_that_are_not_utf8_survive_the_capture() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("capture.db");
    let mut writer = CaptureWriter::open(&path).unwrap();
    let mut flow = Flow::exchange(
        1,
        "127.0.0.1:40000".parse().unwrap(),
        "GET",
        "http://example.test/",
        Some(200),
    );
    flow.request.headers = [
        ("x-raw", &b"\xff\xfeok"[..]),
        ("x-text", &b"caf\xc3\xa9"[..]),
    ]
    .into_iter()
    .collect();
    writer
        .write_batch(&[StoredFlow {
            flow,
            kinvey: KinveySummary::default(),
        }])
        .unwrap();
    let mut flows = Vec::new();
    CaptureReader::open(&path)
        .unwrap()
        .for_each_after(0, Detail::Headers, |f| flows.push(f))
        .unwrap();
    let fields: Vec<(&str, &[u8])> = flows[0]
        .flow
        .request
        .headers
        .iter()
        .map(|f| (f.name.as_str(), &f.value[..]))
        .collect();
    assert_eq!(
        fields,
        [
            ("x-raw", &b"\xff\xfeok"[..]),
            ("x-text", &b"caf\xc3\xa9"[..])
        ]
    );
    // SQL sees every field through the `headers` view, text as text.
    let text: String = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row(
            "SELECT value FROM headers WHERE flow_id = 1 AND name = 'x-text'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(text, "café");
}

#[test]
fn a_second_kinspect_recording_into_the_same_capture_is_refused() {
    let home = tempfile::tempdir().unwrap();
    let capture = home.path().join("shared.db");
    let first = CaptureWriter::open(&capture).unwrap();
    let err = CaptureWriter::open(&capture).unwrap_err();
    assert!(matches!(err, CaptureError::InUse { .. }), "{err}");
    let said = err.to_string();
    assert!(
        said.contains("shared.db") && said.contains("--capture"),
        "{said}"
    );
    // Readers are not writers: listing the capture still works meanwhile.
    assert_eq!(CaptureReader::open(&capture).unwrap().count().unwrap(), 0);
    drop(first);
    CaptureWriter::open(&capture).unwrap();

    // Two proxies: the second stops at start-up with that message, the first goes on.
    let running = KinspectProcess::start(home.path(), &capture, |_| {});
    let second = refused_at_start(headless_command(home.path(), &capture));
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(
        said.contains("another kinspect is recording into"),
        "{said}"
    );
    drop(running);

    // A --capture in a directory that does not exist: said, and nothing created (not
    // even a CA in a fresh home). Killed rather than left serving if it starts anyway.
    let fresh = tempfile::tempdir().unwrap();
    let missing = fresh.path().join("no-such-dir").join("x.db");
    let said =
        String::from_utf8_lossy(&refused_at_start(headless_command(fresh.path(), &missing)).stderr)
            .into_owned();
    assert!(said.contains("no-such-dir does not exist"), "{said}");
    assert_eq!(
        std::fs::read_dir(fresh.path()).unwrap().count(),
        0,
        "nothing created"
    );
}

#[test]
fn a_proxy_that_cannot_start_leaves_no_capture_behind() {
    let home = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port_in_use = taken.local_addr().unwrap().to_string();
    let missing_ca = home.path().join("no-such-ca.pem");
    let capture = home.path().join("new.db");
    let with_args = |args: &[&std::ffi::OsStr]| {
        let mut command = headless_command(home.path(), &capture);
        command.args(args);
        command
    };
    let not_a_dir = home.path().join("a-file");
    std::fs::write(&not_a_dir, "").unwrap();
    let cases = [
        (
            "a port in use",
            headless_command_on(home.path(), &capture, &port_in_use),
            port_in_use.as_str(),
        ),
        (
            "a directory as --capture",
            headless_command(home.path(), home.path()),
            "it is a directory; name a file in it",
        ),
        (
            "a file as --ca-dir",
            headless_command(&not_a_dir, &capture),
            "is a file, not a directory",
        ),
        (
            "an --upstream-ca that is not there",
            with_args(&["--upstream-ca".as_ref(), missing_ca.as_os_str()]),
            "no-such-ca.pem",
        ),
        (
            "--proxy-auth with --reverse (the app sends no proxy credentials)",
            with_args(&[
                "--reverse".as_ref(),
                "http://127.0.0.1:9/".as_ref(),
                "--proxy-auth".as_ref(),
                "dev:pw".as_ref(),
            ]),
            "--proxy-auth cannot guard --reverse",
        ),
        (
            "the same with --insecure-upstream",
            with_args(&[
                "--upstream-ca".as_ref(),
                missing_ca.as_os_str(),
                "--insecure-upstream".as_ref(),
            ]),
            "no-such-ca.pem",
        ),
    ];
    for (what, command, named) in cases {
        let refused = refused_at_start(command);
        let said = String::from_utf8_lossy(&refused.stderr);
        assert!(said.contains(named), "{what}: {said}");
        let left: Vec<_> = std::fs::read_dir(home.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("new.db"))
            .collect();
        assert!(left.is_empty(), "{what}: {left:?} left behind");
    }
    // A capture that was there before stays.
    let kept = home.path().join("kept.db");
    CaptureWriter::open(&kept).unwrap();
    let mut command = headless_command(home.path(), &kept);
    command.args(["--upstream-ca", "/no/such/ca.pem"]);
    refused_at_start(command);
    assert!(kept.exists());
}

#[test]
fn a_closed_capture_is_one_file_and_recording_into_it_again_waits_for_a_reader() {
    let home = tempfile::tempdir().unwrap();
    let capture = home.path().join("again.db");
    let flow = StoredFlow {
        flow: full_flow(1),
        kinvey: KinveySummary::default(),
    };
    let mut writer = CaptureWriter::open(&capture).unwrap();
    writer.write_batch([&flow]).unwrap();
    drop(writer);
    assert!(!home.path().join("again.db-wal").exists());
    // A reader in the middle of a read while a new proxy opens the capture.
    let reader = rusqlite::Connection::open(&capture).unwrap();
    reader
        .execute_batch("BEGIN; SELECT count(*) FROM flows;")
        .unwrap();
    let finishing = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        reader.execute_batch("COMMIT").unwrap();
    });
    let mut writer = CaptureWriter::open(&capture).unwrap();
    finishing.join().unwrap();
    let second = StoredFlow {
        flow: full_flow(2),
        kinvey: KinveySummary::default(),
    };
    writer.write_batch([&second]).unwrap();
    // Back in WAL mode (out of it, every commit would sync a rollback journal).
    assert!(home.path().join("again.db-wal").exists(), "not in WAL mode");
    assert_eq!(CaptureReader::open(&capture).unwrap().count().unwrap(), 2);
}

/// The POSIX (`fcntl`) locks this process holds on `path`'s file, from /proc/locks:
/// SQLite's.
#[cfg(target_os = "linux")]
fn posix_locks_on(path: &Path) -> usize {
    use std::os::unix::fs::MetadataExt;
    let inode = std::fs::metadata(path).unwrap().ino().to_string();
    let pid = std::process::id().to_string();
    std::fs::read_to_string("/proc/locks")
        .unwrap()
        .lines()
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(1) == Some(&"POSIX")
                && fields.get(4) == Some(&pid.as_str())
                && fields.get(5).and_then(|f| f.rsplit(':').next()) == Some(inode.as_str())
        })
        .count()
}

#[test]
#[cfg(target_os = "linux")]
fn a_reader_in_the_writers_process_leaves_the_writers_locks_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("capture.db");
    let stored = |id| StoredFlow {
        flow: full_flow(id),
        kinvey: KinveySummary::default(),
    };
    let mut writer = CaptureWriter::open(&path).unwrap();
    writer.write_batch([&stored(1)]).unwrap();
    // SQLite's shared lock on the file tells another process closing the capture that
    // it is not the last user (which would fold the WAL back and delete it under the
    // writer). Closing any file of this process on it would drop that lock.
    let held = posix_locks_on(&path);
    assert!(held > 0, "the writer holds SQLite's lock");
    // The UI opens the live capture in the proxy's own process.
    drop(CaptureReader::open(&path).unwrap());
    assert_eq!(posix_locks_on(&path), held, "the writer's locks are kept");
    writer.write_batch([&stored(2)]).unwrap();
    assert_eq!(CaptureReader::open(&path).unwrap().count().unwrap(), 2);
}

/// Flows that could not be stored (a full disk; here the file size limit of
/// `ulimit -f`) make kinspect end with an error that says how many, instead of a
/// success that leaves the user believing the capture whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg(target_os = "linux")]
async fn flows_that_could_not_be_stored_are_said_when_kinspect_stops() {
    use std::os::unix::process::CommandExt;
    let origin = Origin::start(OriginKind::Plain).await;
    let home = tempfile::tempdir().unwrap();
    let capture = home.path().join("small.db");
    let mut kinspect = KinspectProcess::start(home.path(), &capture, |command| {
        // SAFETY: only async-signal-safe calls between fork and exec. An ignored signal
        // stays ignored across exec: writes past the limit fail (EFBIG) instead of
        // killing the process.
        unsafe {
            command.pre_exec(|| {
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                let limit = libc::rlimit {
                    rlim_cur: 1 << 20,
                    rlim_max: 1 << 20,
                };
                libc::setrlimit(libc::RLIMIT_FSIZE, &limit);
                Ok(())
            });
        }
    });
    let client = kinspect.client();
    for _ in 0..12 {
        let response = client
            .get(origin.url("/bytes/200000"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.bytes().await.unwrap().len(), 200_000);
    }
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(kinspect.child.id() as i32, libc::SIGTERM) };
    let deadline = std::time::Instant::now() + support::STEP;
    let status = loop {
        if let Some(status) = kinspect.child.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "kinspect stops");
        std::thread::sleep(Duration::from_millis(50));
    };
    let said = kinspect.stderr.lock().unwrap().join("\n");
    assert!(!status.success(), "{said}");
    assert!(said.contains("could not be stored in"), "{said}");
    assert!(said.contains("others are in it"), "{said}");
}

#[test]
#[cfg(unix)]
fn stopping_kinspect_records_the_tunnels_and_requests_still_open() {
    use std::io::{BufRead, Read, Write};
    // A service that greets first, then keeps its connection open.
    let greeter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let greeter_addr = greeter.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut stream, _) = greeter.accept().unwrap();
        stream.write_all(b"220 hi\r\n").unwrap();
        let _ = stream.read_to_end(&mut Vec::new());
    });
    // An origin that reads a request and never answers it.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let (asked, request_read) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (stream, _) = silent.accept().unwrap();
        let mut reader = std::io::BufReader::new(stream);
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 2 {
            line.clear();
        }
        asked.send(()).unwrap();
        let _ = reader.read_to_end(&mut Vec::new());
    });

    let home = tempfile::tempdir().unwrap();
    let capture = home.path().join("c.db");
    let mut kinspect = KinspectProcess::start(home.path(), &capture, |_| {});
    let mut tunnel = std::net::TcpStream::connect(kinspect.addr).unwrap();
    write!(
        tunnel,
        "CONNECT {greeter_addr} HTTP/1.1\r\nHost: {greeter_addr}\r\n\r\n"
    )
    .unwrap();
    let mut tunnel = std::io::BufReader::new(tunnel);
    let mut line = String::new();
    while line != "220 hi\r\n" {
        line.clear();
        assert!(
            tunnel.read_line(&mut line).unwrap() > 0,
            "the greeting comes"
        );
    }
    let mut request = std::net::TcpStream::connect(kinspect.addr).unwrap();
    write!(
        request,
        "GET http://127.0.0.1:{silent_port}/wait HTTP/1.1\r\nHost: 127.0.0.1:{silent_port}\r\n\r\n"
    )
    .unwrap();
    request_read.recv_timeout(support::STEP).unwrap();

    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(kinspect.child.id() as i32, libc::SIGTERM) };
    let deadline = std::time::Instant::now() + support::STEP;
    while kinspect.child.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "kinspect stops on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let reader = CaptureReader::open(&capture).unwrap();
    let mut flows = Vec::new();
    reader
        .for_each_after(0, Detail::Headers, |stored| flows.push(stored.flow))
        .unwrap();
    let stopped = |flow: &Flow| flow.error.as_ref().map(|e| e.kind) == Some(FlowErrorKind::Stopped);
    let open_tunnel = flows
        .iter()
        .find(|f| f.kind == FlowKind::Tunnel)
        .unwrap_or_else(|| panic!("the open tunnel is recorded: {flows:?}"));
    assert!(stopped(open_tunnel), "{:?}", open_tunnel.error);
    assert_eq!(open_tunnel.response.as_ref().unwrap().body.wire_size, 8);
    let waiting = flows
        .iter()
        .find(|f| f.request.url.ends_with("/wait"))
        .unwrap_or_else(|| panic!("the waiting request is recorded: {flows:?}"));
    assert!(stopped(waiting), "{:?}", waiting.error);
}

#[test]
fn of_two_request_ids_that_differ_only_in_case_the_one_written_as_given_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("capture.db");
    let stored = |id, request_id: &str| StoredFlow {
        flow: full_flow(id),
        kinvey: KinveySummary {
            request_id: Some(request_id.into()),
            ..KinveySummary::default()
        },
    };
    let mut writer = CaptureWriter::open(&path).unwrap();
    writer
        .write_batch(&[
            stored(1, "casedup1"),
            stored(2, "CASEDUP1"),
            stored(3, "CaseRID123"),
            stored(4, "50%_off"),
            stored(5, "AbC1"),
            stored(6, "abc12"),
            stored(7, "MiXeD_01"),
            stored(8, "mixed_01"),
        ])
        .unwrap();
    let reader = CaptureReader::open(&path).unwrap();
    let found = |query| reader.find_request_id(query).unwrap();
    assert_eq!(found("casedup1"), [("casedup1".to_string(), 1)]);
    assert_eq!(found("CASEDUP1"), [("CASEDUP1".to_string(), 2)]);
    assert_eq!(
        found("CaseDup1").len(),
        2,
        "neither written so: both, to choose"
    );
    // Written in mixed case: found in any case, whole or by a prefix.
    let mixed = [("CaseRID123".to_string(), 3)];
    assert_eq!(found("caserid123"), mixed);
    assert_eq!(found("caserid"), mixed);
    assert_eq!(found("CASErid1"), mixed);
    // Two that differ only in case, one in a spelling of the query: both, to choose.
    let both: Vec<String> = found("MIXED_01").into_iter().map(|(id, _)| id).collect();
    assert_eq!(both, ["MiXeD_01", "mixed_01"]);
    // A whole id in mixed case before another id the query starts.
    assert_eq!(found("abc1"), [("AbC1".to_string(), 5)]);
    // LIKE's wildcards in a query are its characters.
    assert_eq!(found("50%_OFF"), [("50%_off".to_string(), 4)]);
    assert!(found("5_").is_empty());
}

/// A WebSocket flow with messages each way, one cut short, one binary, a close.
fn websocket_flow(id: u64) -> Flow {
    use kinspect::websocket::{Message, MessageLog, BINARY, CLOSE, TEXT};
    let mut flow = Flow::exchange(
        id,
        "127.0.0.1:5000".parse().unwrap(),
        "GET",
        "wss://live.kinvey.test/",
        Some(101),
    );
    let at = |ms: u64| UNIX_EPOCH + Duration::from_millis(1_764_000_000_000 + ms);
    let message = |from_client, ms, opcode, payload: &[u8], size| Message {
        from_client,
        at: at(ms),
        opcode,
        payload: Bytes::copy_from_slice(payload),
        size,
    };
    flow.websocket = Some(Box::new(MessageLog {
        messages: vec![
            message(true, 1, TEXT, br#"{"subscribe":"books"}"#, 21),
            message(false, 2, TEXT, b"{\"cut", 70_000),
            message(false, 3, BINARY, &[0, 0xff, 7], 3),
            message(true, 4, CLOSE, &[0x03, 0xe8], 2),
        ],
        dropped: 12,
        unreadable: Some("the server's frames: opcode 0x3 is reserved".into()),
    }));
    flow
}

#[test]
fn websocket_messages_round_trip_and_a_schema_3_capture_gains_their_tables() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("older.db");
    // A capture as kinspect wrote it before WebSocket messages were kept (schema 3).
    let stored = |flow| StoredFlow {
        flow,
        kinvey: KinveySummary {
            known: true,
            ..KinveySummary::default()
        },
    };
    drop(CaptureWriter::open(&path).unwrap());
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "DROP TABLE websocket_messages; DROP TABLE websockets;
             ALTER TABLE flows DROP COLUMN replay_of;
             ALTER TABLE flows DROP COLUMN kinvey_other_errors; PRAGMA user_version = 3;",
        )
        .unwrap();
    }
    let mut writer = CaptureWriter::open(&path).unwrap();
    let mut replayed = tunnel_flow(2);
    replayed.replay_of = Some(1);
    let flows = [stored(websocket_flow(1)), stored(replayed)];
    writer.write_batch(&flows).unwrap();
    drop(writer);
    let reader = CaptureReader::open(&path).unwrap();
    assert_eq!(reader.flow(1).unwrap().unwrap(), flows[0]);
    assert_eq!(reader.flow(2).unwrap().unwrap(), flows[1]);
    let mut listed = Vec::new();
    reader
        .for_each(Detail::Headers, |f| listed.push(f.flow))
        .unwrap();
    assert!(listed[0].websocket.is_none(), "the list loads no messages");
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 5);
    let sizes: Vec<i64> = conn
        .prepare("SELECT size FROM websocket_messages WHERE flow_id = 1 ORDER BY position")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(sizes, [21, 70_000, 3, 2]);
}

#[test]
fn a_batchs_other_errors_round_trip_and_a_schema_4_capture_gains_their_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v4.db");
    let batch = |id| StoredFlow {
        flow: full_flow(id),
        kinvey: KinveySummary {
            error: Some("KinveyInternalErrorStop".into()),
            class: Some(ErrorClass::Stop),
            known: true,
            other_errors: vec![
                OtherError {
                    error: "JSONParseError".into(),
                    class: ErrorClass::Fix,
                    known: true,
                },
                OtherError {
                    error: "MadeUp".into(),
                    class: ErrorClass::Retry,
                    known: false,
                },
            ],
            ..KinveySummary::default()
        },
    };
    // A capture as kinspect wrote it before a batch's other errors were kept.
    let mut writer = CaptureWriter::open(&path).unwrap();
    let mut older = batch(1);
    writer.write_batch(std::slice::from_ref(&older)).unwrap();
    drop(writer);
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "ALTER TABLE flows DROP COLUMN kinvey_other_errors; PRAGMA user_version = 4;",
        )
        .unwrap();
    }
    let reader = CaptureReader::open(&path).unwrap();
    older.kinvey.other_errors.clear();
    assert_eq!(reader.flow(1).unwrap().unwrap(), older, "read as it is");
    drop(reader);

    let mut writer = CaptureWriter::open(&path).unwrap();
    let newer = batch(2);
    writer.write_batch(std::slice::from_ref(&newer)).unwrap();
    drop(writer);
    let reader = CaptureReader::open(&path).unwrap();
    assert_eq!(reader.flow(1).unwrap().unwrap(), older);
    assert_eq!(reader.flow(2).unwrap().unwrap(), newer);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let (version, stored): (i64, String) = conn
        .query_row(
            "SELECT (SELECT user_version FROM pragma_user_version), kinvey_other_errors
             FROM flows WHERE id = 2",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(version, 5);
    assert_eq!(
        stored,
        r#"[{"error":"JSONParseError","class":"fix","known":true},{"error":"MadeUp","class":"retry","known":false}]"#
    );
}

/// A capture at `path` of 40 flows with 3,000-byte request bodies (many pages to damage).
fn capture_of_40_flows(path: &Path) {
    let mut writer = CaptureWriter::open(path).unwrap();
    let flows: Vec<StoredFlow> = (1..=40)
        .map(|id| {
            let mut flow = full_flow(id);
            flow.request.body = kinspect::flow::CapturedBody::whole(vec![b'x'; 3000]);
            StoredFlow {
                flow,
                kinvey: KinveySummary::default(),
            }
        })
        .collect();
    writer.write_batch(&flows).unwrap();
}

#[test]
fn the_command_a_damaged_capture_error_gives_saves_what_is_left() {
    if !support::tool_available("sqlite3") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("damaged.db");
    capture_of_40_flows(&path);
    // One page of bodies overwritten, near the end of the file.
    let mut bytes = std::fs::read(&path).unwrap();
    let page = bytes.len() / 4096 - 3;
    bytes[page * 4096..(page + 1) * 4096].fill(0xff);
    std::fs::write(&path, bytes).unwrap();
    let exported = Command::new(env!("CARGO_BIN_EXE_kinspect"))
        .args(["har", "damaged.db", "-o", "out.har"])
        .current_dir(dir.path())
        .env("KINSPECT_HOME", dir.path())
        .output()
        .unwrap();
    assert!(!exported.status.success());
    let said = String::from_utf8_lossy(&exported.stderr);
    // The command for a sqlite3 whose .recover fails, run as given.
    let start = said.find("`(sqlite3").expect("the .dump command");
    let command = said[start + 1..].split('`').next().unwrap();
    let ran = Command::new("sh")
        .args(["-c", command])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(ran.status.success(), "{command}: {ran:?}");
    let recovered = CaptureReader::open(&dir.path().join("recovered.db")).unwrap();
    assert_eq!(recovered.count().unwrap(), 40, "the flows' rows are whole");
    let mut bodies = 0;
    recovered
        .for_each(Detail::Full, |stored| {
            bodies += usize::from(!stored.flow.request.body.bytes.is_empty())
        })
        .unwrap();
    assert!((30..40).contains(&bodies), "{bodies} of 40 bodies saved");
}

#[test]
fn a_capture_damaged_on_disk_is_an_error_that_says_so_and_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("damaged.db");
    capture_of_40_flows(&path);
    // Every page but the first (the header, the schema) overwritten.
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 16 * 4096, "{} bytes", bytes.len());
    for byte in &mut bytes[4096..] {
        *byte = 0x5a;
    }
    std::fs::write(&path, bytes).unwrap();
    let reader = CaptureReader::open(&path);
    let error = match reader {
        Err(e) => e,
        Ok(reader) => reader.for_each(Detail::Full, |_| {}).unwrap_err(),
    };
    let said = error.to_string();
    assert!(said.contains("the file is damaged"), "{said}");
    assert!(said.contains(".recover"), "{said}");
    // Debian's sqlite3 fails .recover: .dump, and the marks of a capture it leaves out
    // (the file's own schema version). A .dump that met damage ends in ROLLBACK: made a
    // COMMIT, or it keeps nothing.
    assert!(
        said.contains(".dump | sed 's/^ROLLBACK; -- due to errors$/COMMIT;/'"),
        "{said}"
    );
    assert!(
        said.contains("PRAGMA application_id = 1263095379; PRAGMA user_version = $(sqlite3 '"),
        "{said}"
    );
    assert_eq!(
        said.matches("malformed").count(),
        1,
        "SQLite's words once: {said}"
    );
}
