//! The capture file's schema, its version, and the checks that a file is a capture
//! this kinspect can read.

use std::path::Path;

use rusqlite::{Connection, ErrorCode, OpenFlags};

use bytes::Bytes;
use compact_str::CompactString;

use super::CaptureError;
use crate::flow::{HeaderField, Headers};

/// `PRAGMA application_id` of kinspect captures ("KINS").
pub const APPLICATION_ID: i64 = 0x4B49_4E53;

/// `PRAGMA user_version` of the schema this kinspect writes and reads.
pub const SCHEMA_VERSION: i64 = 5;

/// The oldest schema this kinspect still reads (it appends only to its own, and to
/// schemas 3 and 4, which it brings up to 5).
pub const OLDEST_READABLE_SCHEMA: i64 = 1;

/// Schema 3's tables; with [`SCHEMA_4_ADDITIONS`], schema 4, and with
/// [`SCHEMA_5_ADDITIONS`] too, schema 5 (documented for users in the README).
pub const SCHEMA: &str = r#"
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE flows (
    id                        INTEGER PRIMARY KEY,
    kind                      TEXT    NOT NULL,
    started_at                TEXT    NOT NULL,
    started_at_ns             INTEGER NOT NULL,
    client_addr               TEXT    NOT NULL,
    scheme                    TEXT    NOT NULL,
    host                      TEXT    NOT NULL,
    port                      INTEGER NOT NULL,
    method                    TEXT    NOT NULL,
    url                       TEXT    NOT NULL,
    request_http_version      TEXT    NOT NULL,
    request_body_size         INTEGER NOT NULL,
    request_body_truncated    INTEGER NOT NULL,
    request_body_incomplete   INTEGER NOT NULL,
    status                    INTEGER,
    response_http_version     TEXT,
    response_from_proxy       INTEGER,
    response_body_size        INTEGER,
    response_body_truncated   INTEGER,
    response_body_incomplete  INTEGER,
    response_content_type     TEXT,
    time_blocked_ms           REAL,
    time_dns_ms               REAL,
    time_connect_ms           REAL,
    time_ssl_ms               REAL,
    time_send_ms              REAL    NOT NULL,
    time_wait_ms              REAL    NOT NULL,
    time_receive_ms           REAL    NOT NULL,
    duration_ms               REAL    NOT NULL,
    server_ip                 TEXT,
    client_tls                INTEGER NOT NULL,
    client_tls_sni            TEXT,
    client_tls_alpn           TEXT,
    client_tls_version        TEXT,
    server_tls                INTEGER NOT NULL,
    server_tls_sni            TEXT,
    server_tls_alpn           TEXT,
    server_tls_version        TEXT,
    error_kind                TEXT,
    error_message             TEXT,
    kinvey_request_id         TEXT,
    kinvey_error              TEXT,
    kinvey_class              TEXT,
    kinvey_known              INTEGER,
    kinvey_anomalies          TEXT,
    kinvey_warnings           TEXT,
    -- JSON arrays of [name, value] in received order; a value that is not UTF-8 is an
    -- array of its bytes. One column instead of a row per field: a row per field was
    -- a third of the recorder's time.
    request_headers           TEXT    NOT NULL,
    response_headers          TEXT
);

-- Every header as a row, for SQL (`SELECT ... FROM headers WHERE name = ...`).
CREATE VIEW headers (flow_id, side, position, name, value) AS
    SELECT flows.id, 'request', field.key, json_extract(field.value, '$[0]'),
           json_extract(field.value, '$[1]')
    FROM flows, json_each(flows.request_headers) AS field
    UNION ALL
    SELECT flows.id, 'response', field.key, json_extract(field.value, '$[0]'),
           json_extract(field.value, '$[1]')
    FROM flows, json_each(flows.response_headers) AS field;

-- One row per flow with a body, keyed by the flow's id. Schema 2 kept a row per side
-- keyed by (flow_id, side): that key was a second b-tree to write on every commit.
CREATE TABLE bodies (
    flow_id   INTEGER PRIMARY KEY REFERENCES flows(id),
    request   BLOB,
    response  BLOB
);

-- Partial: flows without a request id (most non-Kinvey traffic) cost no index entry.
CREATE INDEX flows_kinvey_request_id ON flows(kinvey_request_id)
    WHERE kinvey_request_id IS NOT NULL;
"#;

/// What schema 4 added to schema 3: the messages of WebSocket flows, and which flow a
/// request sent again from the UI repeats. A schema 3 capture is brought up to 4 when
/// appended to.
pub const SCHEMA_4_ADDITIONS: &str = r#"
-- The flow whose request this one sent again (the UI's R or e), if it did.
ALTER TABLE flows ADD COLUMN replay_of INTEGER;

-- A row per flow that switched to a WebSocket: what of its messages was not kept.
CREATE TABLE websockets (
    flow_id           INTEGER PRIMARY KEY REFERENCES flows(id),
    messages_dropped  INTEGER NOT NULL,
    unreadable        TEXT
);

-- Its messages (and control frames), in the order they were completed; payloads
-- decompressed, as far as --max-body kept them (size is the whole payload's).
CREATE TABLE websocket_messages (
    flow_id      INTEGER NOT NULL REFERENCES flows(id),
    position     INTEGER NOT NULL,
    from_client  INTEGER NOT NULL,
    at_ns        INTEGER NOT NULL,
    opcode       INTEGER NOT NULL,
    size         INTEGER NOT NULL,
    payload      BLOB    NOT NULL,
    PRIMARY KEY (flow_id, position)
) WITHOUT ROWID;
"#;

/// What schema 5 added to schema 4: the errors of a 207 batch other than the one its
/// flow is listed by, so that filters find a flow by any of them. A schema 3 or 4
/// capture is brought up to 5 when appended to (its flows keep no others).
pub const SCHEMA_5_ADDITIONS: &str = r#"
-- A JSON array of {"error", "class", "known"}: a batch's errors besides kinvey_error.
ALTER TABLE flows ADD COLUMN kinvey_other_errors TEXT;
"#;

/// A side's header fields as the capture stores them: a JSON array of `[name, value]`,
/// a value that is not UTF-8 as an array of its bytes.
pub(crate) fn headers_to_json(headers: &Headers) -> String {
    // Sized up front (names, values, quotes and commas) rather than grown by doubling.
    let capacity = headers
        .iter()
        .map(|f| f.name.len() + f.value.len() + 8)
        .sum::<usize>()
        + 2;
    let mut json = serde_json::Serializer::new(Vec::with_capacity(capacity));
    let stored = headers.iter().map(|field| {
        let value = match std::str::from_utf8(&field.value) {
            Ok(text) => StoredValue::Text(text),
            Err(_) => StoredValue::Bytes(&field.value),
        };
        (field.name.as_str(), value)
    });
    match serde::Serializer::collect_seq(&mut json, stored) {
        // serde_json writes only UTF-8.
        Ok(()) => String::from_utf8(json.into_inner()).unwrap_or_else(|_| "[]".into()),
        Err(_) => "[]".into(),
    }
}

/// The header fields [`headers_to_json`] stored.
pub(crate) fn headers_from_json(json: &str) -> Result<Headers, String> {
    let fields: Vec<(CompactString, OwnedValue)> =
        serde_json::from_str(json).map_err(|e| format!("not a list of header fields: {e}"))?;
    Ok(Headers(
        fields
            .into_iter()
            .map(|(name, value)| HeaderField {
                name,
                value: match value {
                    OwnedValue::Text(text) => Bytes::from(text),
                    OwnedValue::Bytes(bytes) => Bytes::from(bytes),
                },
            })
            .collect(),
    ))
}

#[derive(serde::Serialize)]
#[serde(untagged)]
enum StoredValue<'a> {
    Text(&'a str),
    Bytes(&'a [u8]),
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum OwnedValue {
    Text(String),
    Bytes(Vec<u8>),
}

/// What a database file turned out to hold.
enum Contents {
    /// Nothing yet: a new file.
    Empty,
    /// A kinspect capture of a schema this kinspect reads, with its version.
    Capture(i64),
}

pub(super) fn sqlite_error(path: &Path, error: rusqlite::Error) -> CaptureError {
    match &error {
        rusqlite::Error::SqliteFailure(e, _) if e.code == ErrorCode::NotADatabase => {
            CaptureError::NotACapture {
                path: path.to_owned(),
                reason: "it is not an SQLite database".into(),
            }
        }
        _ => CaptureError::Sqlite {
            path: path.to_owned(),
            sqlite: error,
        },
    }
}

fn inspect(conn: &Connection, path: &Path) -> Result<Contents, CaptureError> {
    let pragma = |name: &str| -> Result<i64, CaptureError> {
        conn.query_row(&format!("PRAGMA {name}"), [], |row| row.get(0))
            .map_err(|e| sqlite_error(path, e))
    };
    let application_id = pragma("application_id")?;
    let version = pragma("user_version")?;
    if application_id != APPLICATION_ID {
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get(0))
            .map_err(|e| sqlite_error(path, e))?;
        if application_id == 0 && version == 0 && tables == 0 {
            return Ok(Contents::Empty);
        }
        return Err(CaptureError::NotACapture {
            path: path.to_owned(),
            reason: "it is an SQLite database, but not one kinspect wrote".into(),
        });
    }
    if version > SCHEMA_VERSION {
        return Err(CaptureError::NewerSchema {
            path: path.to_owned(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    if version < OLDEST_READABLE_SCHEMA {
        return Err(CaptureError::OlderSchema {
            path: path.to_owned(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(Contents::Capture(version))
}

/// Opens (creating if needed) a capture for writing: WAL mode, schema checked or created.
/// Commits never checkpoint (which fsyncs): a [`super::writer::Checkpointer`] does that
/// on its own connection, so the writer's commits stay short.
///
/// The returned file holds an exclusive advisory lock (`flock`; SQLite's own locks are
/// `fcntl` ones, which it does not touch) for as long as it is kept: two writers would
/// hand out the same flow ids, and the second one's flows would fail to store.
///
/// A capture holds every credential that crossed the proxy: a new one is made readable
/// by its owner alone (0600; SQLite gives its `-wal` and `-shm` files the same mode),
/// and so are the directories made for it (0700).
pub(crate) fn open_for_writing(path: &Path) -> Result<(Connection, std::fs::File), CaptureError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        let mut dirs = std::fs::DirBuilder::new();
        dirs.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut dirs, 0o700);
        dirs.create(parent).map_err(|source| CaptureError::Io {
            path: parent.to_owned(),
            source,
        })?;
    }
    let io_error = |source| CaptureError::Io {
        path: path.to_owned(),
        source,
    };
    // SQLite would take a device (`/dev/null`) and fail later with "disk I/O error",
    // leaving a journal beside it.
    if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
        return Err(CaptureError::NotACapture {
            path: path.to_owned(),
            reason: "it is not a regular file (a directory or a device): record into a file".into(),
        });
    }
    // An empty file is what SQLite makes of a new database anyway.
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let lock = options.open(path).map_err(io_error)?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(CaptureError::InUse {
                path: path.to_owned(),
            })
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io_error(e)),
    }
    let conn = Connection::open(path).map_err(|e| sqlite_error(path, e))?;
    let contents = inspect(&conn, path)?;
    if let Contents::Capture(found) = contents {
        if found == 3 || found == 4 {
            // Schemas 4 and 5 only added columns and tables: an older capture gains them.
            // A kinspect older than the schema then no longer reads the file.
            let additions = match found {
                3 => format!("{SCHEMA_4_ADDITIONS} {SCHEMA_5_ADDITIONS}"),
                _ => SCHEMA_5_ADDITIONS.to_owned(),
            };
            tracing::info!(
                "{}: capture schema {found} brought up to {SCHEMA_VERSION} (WebSocket \
                 messages, replays, a batch's every Kinvey error)",
                path.display()
            );
            conn.execute_batch(&format!(
                "BEGIN; {additions} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            ))
            .map_err(|e| sqlite_error(path, e))?;
        } else if found != SCHEMA_VERSION {
            return Err(CaptureError::AppendToOlder {
                path: path.to_owned(),
                found,
            });
        }
    }
    // The checkpointer restarts the WAL past WAL_LIMIT; a file that a burst grew past
    // twice that is cut back when the writer wraps to its start.
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = OFF;
         PRAGMA wal_autocheckpoint = 0;
         PRAGMA journal_size_limit = {};",
        2 * super::writer::WAL_LIMIT
    ))
    .map_err(|e| sqlite_error(path, e))?;
    if let Contents::Empty = contents {
        let created = crate::flow::utc_timestamp(std::time::SystemTime::now());
        let script = format!(
            "BEGIN;
             {SCHEMA}
             {SCHEMA_4_ADDITIONS}
             {SCHEMA_5_ADDITIONS}
             INSERT INTO meta (key, value) VALUES ('created_at', '{created}');
             INSERT INTO meta (key, value) VALUES ('kinspect_version', '{version}');
             PRAGMA application_id = {APPLICATION_ID};
             PRAGMA user_version = {SCHEMA_VERSION};
             COMMIT;",
            version = env!("CARGO_PKG_VERSION"),
        );
        conn.execute_batch(&script)
            .map_err(|e| sqlite_error(path, e))?;
    }
    Ok((conn, lock))
}

/// Opens an existing capture for reading only (works while another process writes it);
/// returns it with its schema version.
pub(crate) fn open_for_reading(path: &Path) -> Result<(Connection, i64), CaptureError> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(CaptureError::Io {
                path: path.to_owned(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            })
        }
        // Permission denied on a directory on the way, say.
        Err(source) => {
            return Err(CaptureError::Io {
                path: path.to_owned(),
                source,
            })
        }
        Ok(_) => {}
    }
    if path.is_dir() {
        return Err(CaptureError::NotACapture {
            path: path.to_owned(),
            reason: "it is a directory; name a capture file in it".into(),
        });
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| {
        // SQLite says only "unable to open database file" for a file this user may not
        // read. Only looked at now: closing a file of our own would drop every lock
        // this process holds on it (POSIX), the proxy's writer's SQLite locks with them.
        match std::fs::File::open(path) {
            Err(source) => CaptureError::Io {
                path: path.to_owned(),
                source,
            },
            Ok(_) => sqlite_error(path, e),
        }
    })?;
    let conn = match conn.query_row("PRAGMA schema_version", [], |row| row.get::<_, i64>(0)) {
        Err(e) if cannot_share(&e) => open_immutable(path)?,
        _ => conn,
    };
    match inspect(&conn, path)? {
        Contents::Capture(version) => Ok((conn, version)),
        Contents::Empty => Err(CaptureError::NotACapture {
            path: path.to_owned(),
            reason: "it is empty".into(),
        }),
    }
}

/// True when SQLite could not set up the shared-memory file a capture in WAL mode (one
/// a proxy was still writing, or copied while it was) needs beside it, in a directory
/// this user may not write.
fn cannot_share(error: &rusqlite::Error) -> bool {
    use rusqlite::ffi;
    matches!(error, rusqlite::Error::SqliteFailure(e, _) if matches!(
        e.extended_code,
        ffi::SQLITE_READONLY_DIRECTORY | ffi::SQLITE_READONLY_CANTINIT
    ))
}

/// The write-ahead log SQLite keeps beside the capture at `path`.
pub fn wal_of(path: &Path) -> std::path::PathBuf {
    path.with_file_name(format!(
        "{}-wal",
        path.file_name().unwrap_or_default().to_string_lossy()
    ))
}

/// Folds the log a kinspect that was killed left beside the capture at `path` back into
/// it, so that the file alone holds every flow again, as after a clean stop. Nothing
/// happens while a kinspect records into it (its lock is held), to a file that is not a
/// capture, or where the file or its directory cannot be written: readers read the log
/// as it is. True when a log was folded in. Call it before this process opens the file
/// otherwise (closing its file here would drop SQLite's locks on it).
pub fn fold_left_log(path: &Path) -> bool {
    if !std::fs::metadata(wal_of(path)).is_ok_and(|m| m.len() > 0) {
        return false;
    }
    let Ok(lock) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
    else {
        return false;
    };
    if lock.try_lock().is_err() {
        return false;
    }
    let Ok(conn) = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE) else {
        return false;
    };
    if !matches!(inspect(&conn, path), Ok(Contents::Capture(_))) {
        return false;
    }
    let _ = conn.query_row("PRAGMA journal_mode = DELETE", [], |row| {
        row.get::<_, String>(0)
    });
    drop(conn);
    // Folded when the log is gone (a reader in another process keeps it).
    !wal_of(path).exists()
}

/// Opens a capture in WAL mode from a directory this user may not write: as an
/// immutable file (no locks, no shared memory), which is exact when no log is beside it.
fn open_immutable(path: &Path) -> Result<Connection, CaptureError> {
    let wal = wal_of(path);
    if std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
        return Err(CaptureError::Io {
            path: path.to_owned(),
            source: std::io::Error::other(format!(
                "its latest flows are in {}, which SQLite cannot read from a directory you \
                 may not write: copy both files to a directory you can write",
                wal.display()
            )),
        });
    }
    let absolute = std::path::absolute(path).map_err(|source| CaptureError::Io {
        path: path.to_owned(),
        source,
    })?;
    // A URI: `%`, `?` and `#` in the path are escaped.
    let mut uri = String::from("file:");
    for c in absolute.to_string_lossy().chars() {
        match c {
            '%' | '?' | '#' => uri.push_str(&format!("%{:02X}", c as u32)),
            c => uri.push(c),
        }
    }
    uri.push_str("?immutable=1");
    Connection::open_with_flags(
        &uri,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| sqlite_error(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::reader::{FIND_REQUEST_ID, FIND_REQUEST_ID_RANGE};

    /// The way in for a WAL-mode capture in a directory the user may not write (as root
    /// the directory never refuses, so the fallback itself is called here).
    #[test]
    fn a_capture_opens_immutable_unless_a_log_beside_it_holds_flows() {
        let dir = tempfile::tempdir().unwrap();
        // Characters a URI would take for its own.
        let path = dir.path().join("100% #1?.db");
        let (conn, lock) = open_for_writing(&path).unwrap();
        conn.execute_batch("INSERT INTO meta VALUES ('k', 'v')")
            .unwrap();
        drop((conn, lock));
        let wal = dir.path().join("100% #1?.db-wal");
        assert!(!wal.exists(), "closing folds the log back in");
        let immutable = open_immutable(&path).unwrap();
        assert!(matches!(
            inspect(&immutable, &path),
            Ok(Contents::Capture(SCHEMA_VERSION))
        ));
        let value: String = immutable
            .query_row("SELECT value FROM meta WHERE key = 'k'", [], |row| {
                row.get(0)
            })
            .unwrap();
        assert_eq!(value, "v");

        std::fs::write(&wal, b"frames").unwrap();
        let refused = open_immutable(&path).unwrap_err().to_string();
        assert!(refused.contains("copy both files"), "{refused}");
    }

    /// The request-id index is partial: the reader's lookups must still be able to use
    /// it (their comparisons imply `IS NOT NULL`), or every lookup scans the capture.
    #[test]
    fn request_id_lookups_use_the_partial_index() {
        let dir = tempfile::tempdir().unwrap();
        let (conn, _lock) = open_for_writing(&dir.path().join("capture.db")).unwrap();
        for (sql, args) in [(FIND_REQUEST_ID, 1), (FIND_REQUEST_ID_RANGE, 2)] {
            let explain = format!("EXPLAIN QUERY PLAN {sql}");
            let mut statement = conn.prepare(&explain).unwrap();
            let params: Vec<&dyn rusqlite::ToSql> = vec![&"abc"; args];
            let plan: Vec<String> = statement
                .query_map(&params[..], |row| row.get::<_, String>(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert!(
                plan.iter()
                    .any(|step| step.contains("INDEX flows_kinvey_request_id")),
                "{sql}: {plan:?}"
            );
        }
    }
}
