//! What each fuzz target does with one input. The targets in `fuzz_targets/` and the
//! regression tests in `tests/fuzz_regressions.rs` both include this file, so a crasher
//! replays through exactly the code the fuzzer ran.

#![allow(dead_code)] // Each fuzz target uses one function.

use std::io::Write;
use std::path::Path;
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use kinspect::capture::StoredFlow;
use kinspect::filter::Filter;
use kinspect::flow::{CapturedBody, Flow, FlowError, FlowErrorKind, Headers};
use kinspect::har::HarError;
use kinspect::kinvey::{self, BehaviourTracker, KinveySummary};
use kinspect::proxy::sniff::{self, Rewind, Sniffed};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

fn headers(pairs: &[(&str, &[u8])]) -> Headers {
    pairs
        .iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), *value))
        .collect()
}

fn body(bytes: &[u8]) -> CapturedBody {
    CapturedBody::whole(Bytes::copy_from_slice(bytes))
}

fn stored(flow: Flow) -> StoredFlow {
    let analysis = kinvey::analyze(&flow);
    StoredFlow {
        kinvey: KinveySummary::new(&analysis, &[]),
        flow,
    }
}

/// Flows a filter is evaluated against: a gzip-encoded Kinvey error with headers and
/// bodies on both sides, and a failed request without a response.
static FLOWS: LazyLock<Vec<StoredFlow>> = LazyLock::new(|| {
    let mut kinvey = Flow::exchange(
        1,
        "10.0.0.2:50000".parse().expect("an address"),
        "POST",
        "https://baas.kinvey.com/appdata/kid_x/books?query=%7B%7D",
        Some(401),
    );
    kinvey.request.headers = headers(&[
        ("X-Kinvey-API-Version", b"5"),
        ("Content-Type", b"application/json"),
        ("Authorization", b"Kinvey token"),
    ]);
    kinvey.request.body = body(br#"{"title":"Dune"}"#);
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gzip.write_all(br#"{"error":"InsufficientCredentials","description":"no","debug":""}"#)
        .expect("writing to a Vec");
    let response = kinvey.response.as_mut().expect("a response");
    response.headers = headers(&[
        ("Content-Type", b"application/json; charset=utf-8"),
        ("Content-Encoding", b"gzip"),
        ("X-Kinvey-Request-ID", b"0123456789abcdef"),
        ("X-Odd", b"caf\xe9"),
    ]);
    response.body = body(&gzip.finish().expect("gzip"));

    let mut failed = Flow::exchange(
        2,
        "[::1]:40000".parse().expect("an address"),
        "GET",
        "http://[::1]:8080/health",
        None,
    );
    failed.request.body = body(b"\x00\xff binary");
    failed.error = Some(FlowError {
        kind: FlowErrorKind::Connect,
        message: "connection refused by [::1]:8080".into(),
    });
    vec![stored(kinvey), stored(failed)]
});

/// `filter_parse`: parses `data` as a filter; a filter that parses is evaluated, an error
/// is displayed and pointed at.
pub fn filter_parse(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Filter::parse(text) {
        Ok(filter) => {
            assert_eq!(filter.text(), text);
            let _ = (filter.needs_headers(), filter.needs_bodies());
            for flow in FLOWS.iter() {
                let _ = filter.matches(flow);
            }
        }
        Err(error) => {
            let columns = text.chars().count() + 1;
            assert!(
                (1..=columns).contains(&error.column),
                "column {} outside 1..={columns}",
                error.column
            );
            let _ = error.to_string();
            let pointer = error.pointer(text);
            assert_eq!(pointer.lines().count(), 2, "{pointer:?}");
        }
    }
}

/// The response encodings `kinvey_detect` chooses from (first byte).
pub const ENCODINGS: &[Option<&str>] = &[
    None,
    Some("gzip"),
    Some("deflate"),
    Some("br"),
    Some("zstd"),
    Some("identity"),
    Some("x-gzip"),
    Some("gzip, gzip"),
    Some("br, gzip"),
    Some("zstd, deflate"),
];

/// The statuses `kinvey_detect` chooses from (second byte).
pub const STATUSES: &[u16] = &[
    200, 201, 204, 207, 400, 401, 403, 404, 409, 429, 500, 501, 502, 503, 550, 599,
];

/// `kinvey_detect`: byte 0 picks the response's `Content-Encoding`, byte 1 its status,
/// byte 2 flags (JSON content type, request id, API version, truncated, made by the
/// proxy); the rest is the response body. Analyses it and summarises the analysis.
pub fn kinvey_detect(data: &[u8]) -> kinvey::KinveyAnalysis {
    let [encoding, status, flags, rest @ ..] = data else {
        return kinvey::KinveyAnalysis::default();
    };
    let encoding = ENCODINGS[usize::from(*encoding) % ENCODINGS.len()];
    let status = STATUSES[usize::from(*status) % STATUSES.len()];
    let flag = |bit: u8| flags & (1 << bit) != 0;
    let mut flow = Flow::exchange(
        7,
        "10.0.0.2:50000".parse().expect("an address"),
        "GET",
        "https://baas.kinvey.com/appdata/kid_x/books",
        Some(status),
    );
    if flag(2) {
        flow.request.headers = headers(&[("X-Kinvey-API-Version", b"5")]);
    }
    let response = flow.response.as_mut().expect("a response");
    let mut fields: Vec<(&str, &[u8])> = Vec::new();
    if flag(0) {
        fields.push(("Content-Type", b"application/json"));
    }
    if flag(1) {
        fields.push(("X-Kinvey-Request-ID", b" 5ad0a1 "));
    }
    if let Some(encoding) = encoding {
        fields.push(("Content-Encoding", encoding.as_bytes()));
    }
    response.headers = headers(&fields);
    response.body = body(rest);
    response.body.truncated = flag(3);
    response.from_proxy = flag(4);

    let analysis = kinvey::analyze(&flow);
    for error in &analysis.errors {
        let _ = (error.badge(), error.next_step(), error.entry());
    }
    for anomaly in &analysis.anomalies {
        let _ = (anomaly.code(), anomaly.message());
    }
    // The same request twice: the second is judged against the first.
    let mut tracker = BehaviourTracker::new();
    tracker.observe(&flow, &analysis);
    let warnings = tracker.observe(&flow, &analysis);
    let summary = KinveySummary::new(&analysis, &warnings);
    assert_eq!(summary.error.is_some(), !analysis.errors.is_empty());
    let _ = summary.badge();
    analysis
}

/// `har_import`: imports `data` as a HAR; a HAR that imports gets its flows' durations
/// and Kinvey badges computed, as the list view does.
pub fn har_import(data: &[u8]) -> Result<Vec<StoredFlow>, HarError> {
    let result = kinspect::har::import_bytes(data, Path::new("fuzz.har"));
    match &result {
        Ok(flows) => {
            for (i, stored) in flows.iter().enumerate() {
                assert_eq!(stored.flow.id, i as u64 + 1);
                let _ = (stored.flow.duration(), stored.kinvey.badge());
            }
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
    result
}

/// An always-ready reader that hands out `data` at most `chunk` bytes per read.
struct Chunked<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl AsyncRead for Chunked<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = self.data.len().min(self.chunk).min(buf.remaining());
        buf.put_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Poll::Ready(Ok(()))
    }
}

/// `connect_sniff`: byte 0 sets the read sizes (1 to 64 bytes); the rest is what a
/// client sends after CONNECT. Checks that [`sniff::detect`] never changes its verdict
/// once it has one, that `sniff` agrees with it, and that [`Rewind`] replays every byte
/// in order. Returns the verdict.
pub fn connect_sniff(data: &[u8]) -> Sniffed {
    let Some((&first, stream)) = data.split_first() else {
        return Sniffed::Closed;
    };
    let chunk = usize::from(first % 64) + 1;

    let mut decided = None;
    for end in 0..=stream.len() {
        let verdict = sniff::detect(&stream[..end]);
        if let Some(earlier) = decided {
            assert_eq!(verdict, Some(earlier), "verdict changed at {end} bytes");
        }
        decided = decided.or(verdict);
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let mut client = Chunked {
            data: stream,
            chunk,
        };
        let (verdict, prefix) = sniff::sniff(&mut client, Duration::from_secs(5))
            .await
            .expect("reading a slice cannot fail");
        assert!(
            stream.starts_with(&prefix),
            "sniffed bytes are not the input's start"
        );
        let expected = if stream.is_empty() {
            Sniffed::Closed
        } else {
            sniff::detect(&prefix).unwrap_or(Sniffed::Other)
        };
        assert_eq!(verdict, expected);

        let mut rewound = Rewind::new(prefix, client);
        let mut replayed = Vec::with_capacity(stream.len());
        let mut buf = vec![0; chunk];
        loop {
            let n = rewound.read(&mut buf).await.expect("reading a slice");
            if n == 0 {
                break;
            }
            replayed.extend_from_slice(&buf[..n]);
        }
        assert_eq!(replayed, stream, "Rewind did not replay the input");
        verdict
    })
}
