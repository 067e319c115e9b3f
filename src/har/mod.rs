//! HAR 1.2: export of captures that Chrome DevTools, Firefox, mitmproxy and
//! har-validator accept (redacted by default), and import of HARs written by Chrome,
//! Firefox, mitmproxy, Charles and kinspect, so a customer's HAR can be analysed like a
//! live capture.

mod export;
mod import;

pub use export::{export, har_entry, ExportOptions, ExportStats, HarWriter};
pub use import::{
    import, import_bytes, import_leniently, import_to_capture, utf8_json, HarError, Imported,
    UTF8_BOM,
};

/// `httpVersion` as HAR writers spell it (`HTTP/1.1`, `http/2.0`).
pub(crate) fn har_version(version: crate::flow::HttpVersion) -> &'static str {
    match version {
        crate::flow::HttpVersion::Http10 => "HTTP/1.0",
        crate::flow::HttpVersion::Http11 => "HTTP/1.1",
        crate::flow::HttpVersion::Http2 => "http/2.0",
        crate::flow::HttpVersion::Other => "unknown",
    }
}
