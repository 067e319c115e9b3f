//! `kinspect demo --headless`: the simulator and the scripted app run through the proxy,
//! print their flows, record them all, and exit.

use std::collections::HashSet;
use std::process::Command;

use kinspect::capture::{CaptureReader, Detail};
use kinspect::kinvey::DICTIONARY;

#[test]
fn the_headless_demo_records_realistic_kinvey_traffic_and_exits() {
    let home = tempfile::tempdir().unwrap();
    let capture = home.path().join("demo.db");
    let output = Command::new(env!("CARGO_BIN_EXE_kinspect"))
        .args(["demo", "--headless", "--capture"])
        .arg(&capture)
        .env("KINSPECT_HOME", home.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");

    let sent: usize = stderr
        .lines()
        .find_map(|l| {
            l.strip_prefix("demo: ")?
                .split(" requests sent")
                .next()?
                .parse()
                .ok()
        })
        .expect("the demo says how many requests it sent");
    assert_eq!(stdout.lines().count(), sent, "one line per flow");
    for badge in [" RETRY ", " FIX ", " STOP ", " ?RETRY "] {
        assert!(stdout.contains(badge), "no {badge} in:\n{stdout}");
    }
    for warning in [
        "stop_resent",
        "fix_resent_unchanged",
        "retry_without_backoff",
    ] {
        assert!(stdout.contains(warning), "no {warning}");
    }

    // A clean exit leaves the capture as one file holding every flow.
    let beside = |suffix: &str| {
        let mut name = capture.clone().into_os_string();
        name.push(suffix);
        std::path::PathBuf::from(name).exists()
    };
    assert!(
        !beside("-wal") && !beside("-shm"),
        "a WAL left beside the capture"
    );
    let reader = CaptureReader::open(&capture).unwrap();
    assert_eq!(reader.count().unwrap(), sent as u64);
    let mut errors = HashSet::new();
    let mut anomalies = HashSet::new();
    reader
        .for_each(Detail::Summary, |stored| {
            assert!(stored.flow.error.is_none(), "{:?}", stored.flow.error);
            // Every answer but the load balancer's own page, which never reached Kinvey.
            let gateway = stored
                .flow
                .request
                .url
                .ends_with("/simulate/anomaly/gateway");
            assert_eq!(
                stored.kinvey.request_id.is_some(),
                !gateway,
                "every answer of Kinvey's has a request id"
            );
            errors.extend(stored.kinvey.error);
            anomalies.extend(stored.kinvey.anomalies.into_iter().map(|a| a.code));
        })
        .unwrap();
    for entry in DICTIONARY {
        assert!(
            errors.contains(entry.name),
            "{} missing from the demo",
            entry.name
        );
    }
    for code in [
        "status_mismatch",
        "unknown_name",
        "stray_whitespace",
        "unparseable_body",
        "non_json_content_type",
        "name_message_variant",
        "debug_is_object",
        "wrapped_body",
        "batch_errors",
        "no_error_body",
        "missing_api_version",
    ] {
        assert!(anomalies.contains(code), "{code} missing: {anomalies:?}");
    }
    drop(reader);
    assert!(
        !beside("-wal") && !beside("-shm"),
        "reading it made none either"
    );
}

#[test]
fn the_demo_app_sends_the_proxy_credentials_when_asked_for_them() {
    let home = tempfile::tempdir().unwrap();
    let capture = home.path().join("demo.db");
    let output = Command::new(env!("CARGO_BIN_EXE_kinspect"))
        .args([
            "demo",
            "--headless",
            "--proxy-auth",
            "dev:s3cret",
            "--capture",
        ])
        .arg(&capture)
        .env("KINSPECT_HOME", home.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let reader = CaptureReader::open(&capture).unwrap();
    let mut flows = 0;
    reader
        .for_each(Detail::Headers, |stored| {
            flows += 1;
            assert_ne!(stored.flow.status(), Some(407));
            assert!(stored
                .flow
                .request
                .headers
                .get("proxy-authorization")
                .is_none());
        })
        .unwrap();
    assert!(
        flows > 50,
        "the script ran through the proxy: {flows} flows"
    );
}
