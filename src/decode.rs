//! Undoing `Content-Encoding` (gzip, deflate, br, zstd) on captured bodies.

use std::io::Read;

use bytes::Bytes;

/// The most bytes undoing one content-encoding may produce. Captured bodies are at most
/// `--max-body` (16 MiB by default) and real text inflates some 5 to 20 times; a
/// decompression bomb (2 KB of brotli that inflate to 3 GiB) is refused here instead of
/// exhausting memory.
pub const MAX_DECODED: usize = 64 << 20;

/// The largest zstd window accepted: 8 MiB, the limit RFC 9659 sets for zstd as an HTTP
/// content-encoding. The decoder allocates the window a frame asks for up front.
const ZSTD_WINDOW_LOG_MAX: u32 = 23;

/// A body that could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The encoding is not one kinspect knows.
    #[error("unsupported content-encoding {0:?}")]
    Unsupported(String),
    /// The bytes are not valid for the encoding (or were truncated).
    #[error("body is not valid {encoding}: {source}")]
    Corrupt {
        /// The encoding that failed.
        encoding: String,
        /// The decoder's error.
        source: std::io::Error,
    },
    /// Undoing the encoding would produce more than the limit (a decompression bomb?).
    #[error("{encoding} body inflates to more than {} MiB: not decoded", limit >> 20)]
    TooLarge {
        /// The encoding whose output was too large.
        encoding: String,
        /// The limit, in bytes.
        limit: usize,
    },
}

/// Decodes `body` according to a `Content-Encoding` header value. Several encodings
/// (`gzip, br`) are undone in reverse order; `None`/`identity` return the body as is.
/// No step may produce more than [`MAX_DECODED`] bytes.
pub fn decode_body(body: &Bytes, content_encoding: Option<&str>) -> Result<Bytes, DecodeError> {
    decode_within(body, content_encoding, MAX_DECODED, Cut::Refused)
}

/// [`decode_body`] for the first part of a body (what `--max-body` kept): decoded as far
/// as its bytes go, instead of failing where they stop. Bytes that are not valid for
/// the encoding from the start still fail.
pub fn decode_prefix(body: &Bytes, content_encoding: Option<&str>) -> Result<Bytes, DecodeError> {
    decode_within(body, content_encoding, MAX_DECODED, Cut::Allowed)
}

/// The decoded start of `body`: at most `limit` bytes, decoded as far as its bytes go
/// (as [`decode_prefix`]). For reading what a body begins with when the whole of it
/// would inflate past [`MAX_DECODED`].
pub fn decode_start(
    body: &Bytes,
    content_encoding: Option<&str>,
    limit: usize,
) -> Result<Bytes, DecodeError> {
    decode_within(body, content_encoding, limit, Cut::Start)
}

/// Whether the input may stop short of the encoding's end, and whether the output stops
/// at the limit (the start of the body) instead of failing there.
#[derive(Clone, Copy, PartialEq)]
enum Cut {
    Allowed,
    Refused,
    Start,
}

/// [`decode_body`] with the output of each step limited to `limit` bytes.
fn decode_within(
    body: &Bytes,
    content_encoding: Option<&str>,
    limit: usize,
    cut: Cut,
) -> Result<Bytes, DecodeError> {
    let Some(header) = content_encoding else {
        return Ok(body.clone());
    };
    let mut data = body.clone();
    for encoding in header.rsplit(',').map(|e| e.trim().to_ascii_lowercase()) {
        if encoding.is_empty() || encoding == "identity" {
            continue;
        }
        let mut out = Vec::with_capacity(data.len().saturating_mul(4).min(limit));
        let result = match encoding.as_str() {
            "gzip" | "x-gzip" => read_within(
                flate2::read::MultiGzDecoder::new(&data[..]),
                limit,
                &mut out,
            ),
            "deflate" => decode_deflate(&data, limit, &mut out),
            "br" => read_within(brotli::Decompressor::new(&data[..], 4096), limit, &mut out),
            "zstd" => zstd::stream::read::Decoder::new(&data[..]).and_then(|mut d| {
                d.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
                read_within(d, limit, &mut out)
            }),
            _ => return Err(DecodeError::Unsupported(encoding)),
        };
        match result {
            // What came out before the bytes stopped is the start of the decoded body.
            Err(_) if cut != Cut::Refused && !out.is_empty() => {}
            result => result.map_err(|source| DecodeError::Corrupt {
                encoding: encoding.clone(),
                source,
            })?,
        }
        if out.len() > limit {
            match cut {
                Cut::Start => out.truncate(limit),
                _ => return Err(DecodeError::TooLarge { encoding, limit }),
            }
        }
        data = Bytes::from(out);
    }
    Ok(data)
}

/// `body` with `content_encoding` applied (the reverse of [`decode_body`]): to keep a
/// decoded body (a HAR's) with the header it was sent with. `None` for an encoding
/// kinspect cannot apply.
pub fn encode_body(body: &[u8], content_encoding: &str) -> Option<Bytes> {
    use std::io::Write;
    let mut data = body.to_vec();
    for encoding in content_encoding
        .split(',')
        .map(|e| e.trim().to_ascii_lowercase())
    {
        data = match encoding.as_str() {
            "" | "identity" => continue,
            "gzip" | "x-gzip" => {
                let mut out =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                out.write_all(&data).ok()?;
                out.finish().ok()?
            }
            "deflate" => {
                let mut out =
                    flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
                out.write_all(&data).ok()?;
                out.finish().ok()?
            }
            "br" => {
                let mut out = Vec::new();
                brotli::CompressorWriter::new(&mut out, 4096, 4, 22)
                    .write_all(&data)
                    .ok()?;
                out
            }
            "zstd" => zstd::encode_all(&data[..], 3).ok()?,
            _ => return None,
        };
    }
    Some(Bytes::from(data))
}

/// Reads `reader` to its end into `out`, stopping one byte past `limit`.
fn read_within(reader: impl Read, limit: usize, out: &mut Vec<u8>) -> std::io::Result<()> {
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader.take(cap).read_to_end(out).map(drop)
}

/// HTTP's "deflate" is meant to be zlib-wrapped, but many servers send raw deflate.
/// Raw deflate is tried when zlib fails before producing anything; a zlib stream that
/// breaks off later keeps what it produced (the start of a cut body).
fn decode_deflate(data: &[u8], limit: usize, out: &mut Vec<u8>) -> std::io::Result<()> {
    match read_within(flate2::read::ZlibDecoder::new(data), limit, out) {
        Ok(()) => Ok(()),
        Err(e) if !out.is_empty() => Err(e),
        Err(_) => read_within(flate2::read::DeflateDecoder::new(data), limit, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Bytes {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        Bytes::from(enc.finish().unwrap())
    }

    #[test]
    fn the_start_of_a_body_too_large_once_decoded_is_decoded() {
        let mut whole = b"{\"error\":\"KinveyInternalErrorStop\",\"debug\":\"".to_vec();
        whole.resize(MAX_DECODED + 10, b'x');
        let body = gzip(&whole);
        assert!(matches!(
            decode_body(&body, Some("gzip")),
            Err(DecodeError::TooLarge { .. })
        ));
        let start = decode_start(&body, Some("gzip"), 4096).unwrap();
        assert_eq!(&start[..], &whole[..4096]);
        // Two encodings: the second decodes the start the first left.
        let twice = gzip(&gzip(&whole));
        let start = decode_start(&twice, Some("gzip, gzip"), 4096).unwrap();
        assert_eq!(&start[..], &whole[..4096]);
    }

    #[test]
    fn identity_and_absent_return_the_body() {
        let body = Bytes::from_static(b"hello");
        assert_eq!(decode_body(&body, None).unwrap(), body);
        assert_eq!(decode_body(&body, Some("identity")).unwrap(), body);
    }

    #[test]
    fn gzip_brotli_zstd_and_deflate_decode() {
        let text = b"{\"error\":\"KinveyInternalErrorRetry\"}".repeat(20);
        assert_eq!(
            &decode_body(&gzip(&text), Some("gzip")).unwrap()[..],
            &text[..]
        );

        let mut br = Vec::new();
        brotli::CompressorWriter::new(&mut br, 4096, 5, 22)
            .write_all(&text)
            .unwrap();
        assert_eq!(
            &decode_body(&Bytes::from(br), Some("br")).unwrap()[..],
            &text[..]
        );

        let zst = zstd::encode_all(&text[..], 3).unwrap();
        assert_eq!(
            &decode_body(&Bytes::from(zst), Some("zstd")).unwrap()[..],
            &text[..]
        );

        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        raw.write_all(&text).unwrap();
        let raw = Bytes::from(raw.finish().unwrap());
        assert_eq!(&decode_body(&raw, Some("deflate")).unwrap()[..], &text[..]);
    }

    #[test]
    fn stacked_encodings_are_undone_in_reverse() {
        let text = b"stacked";
        let twice = gzip(&gzip(text));
        assert_eq!(&decode_body(&twice, Some("gzip, gzip")).unwrap()[..], text);
    }

    fn brotli(data: &[u8]) -> Bytes {
        let mut out = Vec::new();
        brotli::CompressorWriter::new(&mut out, 4096, 5, 22)
            .write_all(data)
            .unwrap();
        Bytes::from(out)
    }

    #[test]
    fn output_up_to_the_limit_decodes() {
        let text = vec![b'a'; 1000];
        assert_eq!(
            &decode_within(&gzip(&text), Some("gzip"), 1000, Cut::Refused).unwrap()[..],
            &text[..]
        );
        assert_eq!(
            &decode_within(&brotli(&text), Some("br"), 1000, Cut::Refused).unwrap()[..],
            &text[..]
        );
    }

    #[test]
    fn output_past_the_limit_is_too_large_for_every_encoding() {
        let text = vec![0u8; 1001];
        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        zlib.write_all(&text).unwrap();
        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        raw.write_all(&text).unwrap();
        for (body, encoding) in [
            (gzip(&text), "gzip"),
            (brotli(&text), "br"),
            (Bytes::from(zstd::encode_all(&text[..], 3).unwrap()), "zstd"),
            (Bytes::from(zlib.finish().unwrap()), "deflate"),
            (Bytes::from(raw.finish().unwrap()), "deflate"),
        ] {
            match decode_within(&body, Some(encoding), 1000, Cut::Refused) {
                Err(DecodeError::TooLarge { encoding: e, limit }) => {
                    assert_eq!((e.as_str(), limit), (encoding, 1000));
                }
                other => panic!("{encoding}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_first_part_of_an_encoded_body_decodes_as_far_as_it_goes() {
        let text: Vec<u8> = (0..20_000u32)
            .flat_map(|i| {
                format!("{{\"n\":{i},\"v\":{}}}", i.wrapping_mul(7919) % 10007).into_bytes()
            })
            .collect();
        let zstd = Bytes::from(zstd::encode_all(&text[..], 3).unwrap());
        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        zlib.write_all(&text).unwrap();
        let zlib = Bytes::from(zlib.finish().unwrap());
        let cases = [
            (gzip(&text), "gzip"),
            (brotli(&text), "br"),
            (zstd, "zstd"),
            (zlib, "deflate"),
        ];
        for (body, encoding) in cases {
            let first_part = body.slice(..body.len() / 2);
            assert!(
                decode_body(&first_part, Some(encoding)).is_err(),
                "{encoding}"
            );
            let decoded = decode_prefix(&first_part, Some(encoding)).unwrap();
            assert!(!decoded.is_empty(), "{encoding}");
            assert!(text.starts_with(&decoded), "{encoding}");
        }
        // Not the encoding at all: still an error.
        let garbage = Bytes::from_static(b"not gzip at all");
        assert!(decode_prefix(&garbage, Some("gzip")).is_err());
    }

    #[test]
    fn encoding_is_undone_by_decoding() {
        let text = b"{\"error\":\"EntityNotFound\"}".repeat(10);
        for encoding in ["gzip", "deflate", "br", "zstd", "gzip, br", "identity"] {
            let encoded = encode_body(&text, encoding).unwrap();
            assert_eq!(
                &decode_body(&encoded, Some(encoding)).unwrap()[..],
                &text[..],
                "{encoding}"
            );
        }
        assert!(encode_body(&text, "compress").is_none());
    }

    #[test]
    fn each_stacked_step_is_limited() {
        // The outer step's output (the inner gzip) fits; the inner step's does not.
        let inner = gzip(&[0u8; 1001]);
        let twice = gzip(&inner);
        assert!(inner.len() <= 1000);
        assert!(matches!(
            decode_within(&twice, Some("gzip, gzip"), 1000, Cut::Refused),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    #[test]
    fn too_large_names_the_encoding_and_the_limit() {
        let error = DecodeError::TooLarge {
            encoding: "br".into(),
            limit: MAX_DECODED,
        };
        assert_eq!(
            error.to_string(),
            "br body inflates to more than 64 MiB: not decoded"
        );
    }

    #[test]
    fn zstd_windows_over_8_mib_are_refused() {
        let text = b"window".repeat(100);
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        encoder.window_log(24).unwrap();
        encoder.include_contentsize(false).unwrap();
        encoder.write_all(&text).unwrap();
        let big_window = Bytes::from(encoder.finish().unwrap());
        assert!(matches!(
            decode_body(&big_window, Some("zstd")),
            Err(DecodeError::Corrupt { .. })
        ));
    }

    #[test]
    fn corrupt_and_unknown_encodings_are_errors() {
        let junk = Bytes::from_static(b"not gzip at all");
        assert!(matches!(
            decode_body(&junk, Some("gzip")),
            Err(DecodeError::Corrupt { .. })
        ));
        assert!(matches!(
            decode_body(&junk, Some("compress")),
            Err(DecodeError::Unsupported(_))
        ));
    }
}
