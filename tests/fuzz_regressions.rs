//! Inputs the fuzz targets (see fuzz/README.md) crashed or stalled on, replayed through
//! the code the fuzzer ran (fuzz/harness.rs), and the committed seed corpora, so the
//! harness itself stays compiled and exercised by `cargo test`.

#[path = "../fuzz/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::time::Instant;

use bytes::Bytes;
use kinspect::decode::{decode_body, DecodeError, MAX_DECODED};
use kinspect::har::HarError;
use kinspect::proxy::sniff::Sniffed;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every file of `dir`, sorted by name.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path, bytes)
        })
        .collect()
}

/// The regression inputs and the seeds of `target`.
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut all = files(&root().join("tests/fuzz_regressions").join(target));
    all.extend(files(&root().join("fuzz/seeds").join(target)));
    assert!(!all.is_empty(), "no inputs for {target}");
    all
}

/// One regression input.
fn regression(target: &str, name: &str) -> Vec<u8> {
    let path = root()
        .join("tests/fuzz_regressions")
        .join(target)
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn filter_parse_inputs() {
    for (path, bytes) in inputs("filter_parse") {
        eprintln!("{}", path.display());
        harness::filter_parse(&bytes);
    }
}

#[test]
fn kinvey_detect_inputs() {
    for (path, bytes) in inputs("kinvey_detect") {
        eprintln!("{}", path.display());
        harness::kinvey_detect(&bytes);
    }
}

#[test]
fn har_import_inputs() {
    for (path, bytes) in inputs("har_import") {
        eprintln!("{}", path.display());
        let _ = harness::har_import(&bytes);
    }
}

#[test]
fn connect_sniff_inputs() {
    for (path, bytes) in inputs("connect_sniff") {
        eprintln!("{}", path.display());
        harness::connect_sniff(&bytes);
    }
}

#[test]
fn the_seeds_are_realistic() {
    // Seeds that parse, import and sniff as what they imitate, so the fuzzer starts
    // from inputs that reach deep into each parser.
    for (path, bytes) in files(&root().join("fuzz/seeds/filter_parse")) {
        let text = std::str::from_utf8(&bytes).expect("UTF-8");
        kinspect::filter::Filter::parse(text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    for (path, bytes) in files(&root().join("fuzz/seeds/har_import")) {
        let flows =
            harness::har_import(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(!flows.is_empty(), "{}", path.display());
    }
    for (path, bytes) in files(&root().join("fuzz/seeds/kinvey_detect")) {
        let analysis = harness::kinvey_detect(&bytes);
        let name = path.file_name().unwrap().to_string_lossy();
        // A proxy-made answer is not Kinvey's (a gzip body cut at --max-body decodes as
        // far as its kept bytes go: its error is read).
        let no_error = name.starts_with("proxy-made");
        assert_eq!(analysis.errors.is_empty(), no_error, "{name}");
    }
    let verdicts: Vec<Sniffed> = files(&root().join("fuzz/seeds/connect_sniff"))
        .iter()
        .map(|(_, bytes)| harness::connect_sniff(bytes))
        .collect();
    for verdict in [Sniffed::Http, Sniffed::Tls, Sniffed::Other] {
        assert!(verdicts.contains(&verdict), "no seed sniffs as {verdict:?}");
    }
}

/// filter_parse stalled on slow units: a hundred `~b \w{200}` (1 KB) took 7 s and
/// 1.2 GB to compile (release build) before a filter's regexes shared a size budget.
#[test]
fn hundred_big_regexes_are_refused_instead_of_compiled() {
    let bytes = regression("filter_parse", "hundred-big-regexes");
    let text = std::str::from_utf8(&bytes).expect("UTF-8");
    let error = kinspect::filter::Filter::parse(text).unwrap_err();
    assert_eq!(error.column, 15, "{error}");
    assert!(
        error
            .message
            .contains("regexes together compile to more than"),
        "{error}"
    );
}

/// har_import panicked: `"wait": 33333333333333333333330` (ms) overflowed
/// `Duration::from_secs_f64`.
#[test]
fn huge_timings_are_an_error_naming_the_field() {
    let bytes = regression("har_import", "timing-too-big");
    match harness::har_import(&bytes) {
        Err(HarError::Field { field, problem, .. }) => {
            assert_eq!(field, "log.entries[0].timings.wait");
            assert!(problem.contains("longer than a year"), "{problem}");
        }
        other => panic!("{other:?}"),
    }
}

/// kinvey_detect ran out of memory (gzip of gzip, 3.6 KB to 1 GiB) or time (brotli,
/// 2.4 KB to 3 GiB) decoding response bodies: each decoding step is now limited.
#[test]
fn decompression_bombs_are_refused() {
    for (name, encoding) in [("br-bomb", "br"), ("gzip-gzip-bomb", "gzip")] {
        let bytes = regression("kinvey_detect", name);
        let started = Instant::now();
        let analysis = harness::kinvey_detect(&bytes);
        assert!(analysis.errors.is_empty(), "{name}: {analysis:?}");
        let header = harness_encoding(bytes[0]);
        match decode_body(&Bytes::copy_from_slice(&bytes[3..]), Some(header)) {
            Err(DecodeError::TooLarge { encoding: e, limit }) => {
                assert_eq!((e.as_str(), limit), (encoding, MAX_DECODED), "{name}")
            }
            other => panic!("{name}: {other:?}"),
        }
        eprintln!("{name}: {:?}", started.elapsed());
    }
}

/// The `Content-Encoding` kinvey_detect gives an input whose first byte is `first`.
fn harness_encoding(first: u8) -> &'static str {
    harness::ENCODINGS[usize::from(first) % harness::ENCODINGS.len()].expect("an encoding")
}

/// connect_sniff's assertion failed: 20 letters (the longest method) were judged Other
/// before the space after them arrived, so the verdict depended on how the request was
/// split into reads.
#[test]
fn a_twenty_letter_method_is_http_however_it_is_split() {
    let bytes = regression("connect_sniff", "twenty-letter-method");
    assert_eq!(harness::connect_sniff(&bytes), Sniffed::Http);
    for chunk in 1..=40u8 {
        let mut split = bytes.clone();
        split[0] = chunk - 1;
        assert_eq!(
            harness::connect_sniff(&split),
            Sniffed::Http,
            "reads of {chunk}"
        );
    }
}
