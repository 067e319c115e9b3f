//! Undoing `Content-Encoding` (gzip, deflate, br, zstd) on captured bodies.

use std::io::Read;

use bytes::Bytes;

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
}

/// Decodes `body` according to a `Content-Encoding` header value. Several encodings
/// (`gzip, br`) are undone in reverse order; `None`/`identity` return the body as is.
pub fn decode_body(body: &Bytes, content_encoding: Option<&str>) -> Result<Bytes, DecodeError> {
    let Some(header) = content_encoding else {
        return Ok(body.clone());
    };
    let mut data = body.clone();
    for encoding in header.rsplit(',').map(|e| e.trim().to_ascii_lowercase()) {
        if encoding.is_empty() || encoding == "identity" {
            continue;
        }
        let mut out = Vec::with_capacity(data.len() * 4);
        let result = match encoding.as_str() {
            "gzip" | "x-gzip" => flate2::read::MultiGzDecoder::new(&data[..]).read_to_end(&mut out),
            "deflate" => decode_deflate(&data, &mut out),
            "br" => brotli::Decompressor::new(&data[..], 4096).read_to_end(&mut out),
            "zstd" => zstd::stream::read::Decoder::new(&data[..])
                .and_then(|mut d| d.read_to_end(&mut out)),
            _ => return Err(DecodeError::Unsupported(encoding)),
        };
        result.map_err(|source| DecodeError::Corrupt {
            encoding: encoding.clone(),
            source,
        })?;
        data = Bytes::from(out);
    }
    Ok(data)
}

/// HTTP's "deflate" is meant to be zlib-wrapped, but many servers send raw deflate.
fn decode_deflate(data: &[u8], out: &mut Vec<u8>) -> std::io::Result<usize> {
    match flate2::read::ZlibDecoder::new(data).read_to_end(out) {
        Ok(n) => Ok(n),
        Err(_) => {
            out.clear();
            flate2::read::DeflateDecoder::new(data).read_to_end(out)
        }
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
