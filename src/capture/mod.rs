//! The capture store: every flow persisted to an SQLite file (WAL, batched transactions),
//! readable by kinspect and by any SQLite tool while it is still being written.

mod reader;
mod recorder;
mod schema;
mod writer;

pub use reader::{CaptureReader, Detail, LeftOut};
pub use recorder::{FlowViewer, Recorder, RecorderStats};
pub use schema::{fold_left_log, wal_of, APPLICATION_ID, SCHEMA, SCHEMA_VERSION};
pub use writer::CaptureWriter;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::flow::Flow;
use crate::kinvey::KinveySummary;

/// A flow as the capture holds it: the flow and its Kinvey results.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredFlow {
    /// The flow.
    pub flow: Flow,
    /// What the Kinvey analysis and the behaviour checks found.
    pub kinvey: KinveySummary,
}

/// Why a capture could not be opened, read or written. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The file or its directory could not be accessed.
    #[error("cannot open capture {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not a kinspect capture.
    #[error("{path} is not a kinspect capture: {reason}")]
    NotACapture {
        /// The file.
        path: PathBuf,
        /// What it is instead.
        reason: String,
    },
    /// The file was written by a newer kinspect.
    #[error("{path} was written by a newer kinspect (capture schema {found}; this kinspect reads schema {supported}): upgrade kinspect to open it")]
    NewerSchema {
        /// The file.
        path: PathBuf,
        /// Its schema version.
        found: i64,
        /// The version this build reads.
        supported: i64,
    },
    /// The file was written by an older kinspect whose schema cannot be read.
    #[error("{path} was written by an older kinspect (capture schema {found}; this kinspect reads schema {supported}): open it with that version, or export it as HAR there")]
    OlderSchema {
        /// The file.
        path: PathBuf,
        /// Its schema version.
        found: i64,
        /// The version this build reads.
        supported: i64,
    },
    /// The file was written by an older kinspect: it can be read, not appended to.
    #[error("cannot record into {path}: it was written by an older kinspect (capture schema {found}); record into a new --capture file (this kinspect still reads the old one)")]
    AppendToOlder {
        /// The file.
        path: PathBuf,
        /// Its schema version.
        found: i64,
    },
    /// Another kinspect is recording into the file.
    #[error("another kinspect is recording into {path}: stop it, or record into another file with --capture")]
    InUse {
        /// The file.
        path: PathBuf,
    },
    /// SQLite failed. Its error is in the message (once), not a source to print again.
    #[error("capture {path}: {}", sqlite_message(.sqlite, path))]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// What SQLite said.
        sqlite: rusqlite::Error,
    },
}

/// What SQLite said (once: its message repeats its code's text), and what to do when
/// the file is damaged or the disk full.
fn sqlite_message(error: &rusqlite::Error, path: &Path) -> String {
    let rusqlite::Error::SqliteFailure(failure, message) = error else {
        return error.to_string();
    };
    let said = message.clone().unwrap_or_else(|| failure.to_string());
    match failure.code {
        rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase => format!(
            "{said}: the file is damaged. `sqlite3 '{path}' .recover | sqlite3 recovered.db` \
             may save what is left into a new database (with a sqlite3 whose .recover fails, \
             as Debian's: `(sqlite3 '{path}' .dump | sed 's/^ROLLBACK; -- due to errors$/COMMIT;/'; \
             echo \"PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = \
             $(sqlite3 '{path}' 'PRAGMA user_version');\") | sqlite3 recovered.db`); record into a \
             new --capture file",
            path = path.display(),
        ),
        rusqlite::ErrorCode::DiskFull => format!("{said}: free space on its disk"),
        _ => said,
    }
}

/// The file a run captures to when `--capture` is not given:
/// `<home>/captures/<UTC time>.db`, made unique if that name is taken.
pub fn default_capture_path(home: &Path, now: SystemTime) -> PathBuf {
    const FORMAT: &[time::format_description::FormatItem<'static>] =
        time::macros::format_description!("[year]-[month]-[day]T[hour]-[minute]-[second]Z");
    let stamp = time::OffsetDateTime::from(now)
        .format(FORMAT)
        .unwrap_or_else(|_| "capture".into());
    let dir = home.join("captures");
    let mut path = dir.join(format!("{stamp}.db"));
    let mut n = 2;
    while path.exists() {
        path = dir.join(format!("{stamp}-{n}.db"));
        n += 1;
    }
    path
}
