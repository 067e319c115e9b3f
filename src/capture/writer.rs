//! Writing flows into a capture, many per transaction.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, ToSql};

use super::schema::{headers_to_json, open_for_writing, sqlite_error};
use super::{CaptureError, StoredFlow};
use crate::flow::{utc_timestamp, CapturedBody, FlowId, TlsInfo};

/// Appends flows to a capture file.
pub struct CaptureWriter {
    conn: Connection,
    path: PathBuf,
    /// Held for the writer's life: no second kinspect records into the same file.
    _lock: std::fs::File,
}

impl std::fmt::Debug for CaptureWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureWriter")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

const INSERT_FLOW: &str = "INSERT INTO flows (
    id, kind, started_at, started_at_ns, client_addr, scheme, host, port, method, url,
    request_http_version, request_body_size, request_body_truncated, request_body_incomplete,
    status, response_http_version, response_from_proxy, response_body_size,
    response_body_truncated, response_body_incomplete, response_content_type,
    time_blocked_ms, time_dns_ms, time_connect_ms, time_ssl_ms, time_send_ms, time_wait_ms,
    time_receive_ms, duration_ms, server_ip,
    client_tls, client_tls_sni, client_tls_alpn, client_tls_version,
    server_tls, server_tls_sni, server_tls_alpn, server_tls_version,
    error_kind, error_message, kinvey_request_id, kinvey_error, kinvey_class, kinvey_known,
    kinvey_anomalies, kinvey_warnings, request_headers, response_headers, replay_of,
    kinvey_other_errors
) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
          ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32, ?33, ?34,
          ?35, ?36, ?37, ?38, ?39, ?40, ?41, ?42, ?43, ?44, ?45, ?46, ?47, ?48, ?49, ?50)";
const INSERT_BODIES: &str = "INSERT INTO bodies (flow_id, request, response) VALUES (?1, ?2, ?3)";
const INSERT_WEBSOCKET: &str =
    "INSERT INTO websockets (flow_id, messages_dropped, unreadable) VALUES (?1, ?2, ?3)";
const INSERT_MESSAGE: &str = "INSERT INTO websocket_messages
    (flow_id, position, from_client, at_ns, opcode, size, payload)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

/// Stores the messages of WebSocket flow `id`.
fn insert_messages(
    tx: &rusqlite::Transaction<'_>,
    id: FlowId,
    log: &crate::websocket::MessageLog,
) -> rusqlite::Result<()> {
    let id = id as i64;
    tx.prepare_cached(INSERT_WEBSOCKET)?.execute(params![
        id,
        log.dropped as i64,
        log.unreadable
    ])?;
    let mut insert = tx.prepare_cached(INSERT_MESSAGE)?;
    for (position, message) in log.messages.iter().enumerate() {
        insert.execute(params![
            id,
            position as i64,
            message.from_client,
            epoch_nanos(message.at),
            message.opcode,
            message.size as i64,
            &message.payload[..],
        ])?;
    }
    Ok(())
}

/// Milliseconds as stored in the `time_*_ms` columns.
pub(crate) fn millis(d: Duration) -> f64 {
    d.as_nanos() as f64 / 1e6
}

/// Nanoseconds since the Unix epoch (negative before it).
pub(crate) fn epoch_nanos(at: SystemTime) -> i64 {
    // Past 2262 (a time from a hand-made HAR): the furthest that can be stored.
    match at.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_nanos()).map_or(i64::MIN, |n| -n),
    }
}

impl Drop for CaptureWriter {
    /// Leaves the capture as one self-contained file: the WAL folded back in and the file
    /// switched out of WAL mode, so that copying the .db file alone copies every flow and
    /// reading it later creates no -wal/-shm files beside it. Only possible when nobody
    /// else has it open (a reader, the checkpointer); then it stays in WAL mode, which
    /// loses nothing either. The next writer switches it back.
    fn drop(&mut self) {
        let _ = self.conn.busy_timeout(Duration::ZERO);
        let _ = self
            .conn
            .query_row("PRAGMA journal_mode = DELETE", [], |_| Ok(()));
    }
}

impl CaptureWriter {
    /// Opens `path` for appending, creating it (and its directory) if needed.
    pub fn open(path: &Path) -> Result<CaptureWriter, CaptureError> {
        let (conn, lock) = open_for_writing(path)?;
        // The checkpointer may hold the write lock for a moment.
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(|sqlite| CaptureError::Sqlite {
                path: path.to_owned(),
                sqlite,
            })?;
        Ok(CaptureWriter {
            conn,
            path: path.to_owned(),
            _lock: lock,
        })
    }

    /// The capture file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The id the next flow must take: one past the highest stored.
    pub fn next_id(&self) -> Result<FlowId, CaptureError> {
        let max: Option<i64> = self
            .conn
            .query_row("SELECT max(id) FROM flows", [], |row| row.get(0))
            .map_err(|e| self.error(e))?;
        Ok(max.map_or(1, |m| m as FlowId + 1))
    }

    fn error(&self, source: rusqlite::Error) -> CaptureError {
        CaptureError::Sqlite {
            path: self.path.clone(),
            sqlite: source,
        }
    }

    /// Stores `flows` in one transaction.
    pub fn write_batch<'a>(
        &mut self,
        flows: impl IntoIterator<Item = &'a StoredFlow>,
    ) -> Result<usize, CaptureError> {
        write_in_transaction(&mut self.conn, flows).map_err(|e| self.error(e))
    }
}

fn write_in_transaction<'a>(
    conn: &mut Connection,
    flows: impl IntoIterator<Item = &'a StoredFlow>,
) -> rusqlite::Result<usize> {
    let tx = conn.transaction()?;
    let mut written = 0;
    {
        let mut insert_flow = tx.prepare_cached(INSERT_FLOW)?;
        let mut insert_bodies = tx.prepare_cached(INSERT_BODIES)?;
        for flow in flows {
            insert_one(flow, &mut insert_flow, &mut insert_bodies)?;
            if let Some(log) = &flow.flow.websocket {
                insert_messages(&tx, flow.flow.id, log)?;
            }
            written += 1;
        }
    }
    tx.commit()?;
    Ok(written)
}

/// Bytes of the header before each page in the WAL.
const WAL_FRAME_HEADER: u64 = 24;

/// Copies the WAL back into the database file in the background (SQLite's passive
/// checkpoint), on its own connection so that the writer never waits for it.
pub(crate) struct Checkpointer {
    stop: std::sync::mpsc::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// When the checkpointer copies the WAL back and when it restarts it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CheckpointPolicy {
    /// How often it runs. Each checkpoint syncs the WAL and the database file; a sync
    /// stalls the writer's appends to the WAL meanwhile (measured: one every 250 ms
    /// cost 4-5% of HTTPS throughput), and commits are not synced in between, so this
    /// is also how many seconds of flows a power cut may lose (never the file).
    pub(crate) interval: Duration,
    /// Past this much content the WAL is restarted: passive checkpoints alone never
    /// let the writer wrap back to its start while flows keep coming.
    pub(crate) wal_limit: u64,
}

impl CheckpointPolicy {
    /// What a running proxy uses.
    pub(crate) const DEFAULT: CheckpointPolicy = CheckpointPolicy {
        interval: Duration::from_secs(1),
        wal_limit: WAL_LIMIT,
    };
}

/// Longest the checkpointer waits for the writer's lock and for readers to move on.
const RESTART_WAIT: Duration = Duration::from_millis(20);

/// The default [`CheckpointPolicy::wal_limit`].
pub(crate) const WAL_LIMIT: u64 = 64 * 1024 * 1024;

impl Checkpointer {
    /// Starts checkpointing `path` as `policy` says until dropped.
    pub(crate) fn start(
        path: &Path,
        policy: CheckpointPolicy,
    ) -> Result<Checkpointer, CaptureError> {
        let conn = Connection::open(path).map_err(|e| sqlite_error(path, e))?;
        // A RESTART holds the writer's lock while it waits for readers of older snapshots
        // (a HAR export of the live capture, say): it gives up soon rather than hold
        // every response back.
        let _ = conn.busy_timeout(RESTART_WAIT);
        let frame_bytes = conn
            .query_row("PRAGMA page_size", [], |row| row.get::<_, i64>(0))
            .map_err(|e| sqlite_error(path, e))?
            .unsigned_abs()
            + WAL_FRAME_HEADER;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("kinspect-checkpoint".into())
            .spawn(move || loop {
                let frames = conn
                    .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
                        row.get::<_, i64>(1)
                    })
                    .unwrap_or(0);
                if frames.unsigned_abs() * frame_bytes > policy.wal_limit {
                    // RESTART, not TRUNCATE: the writer wraps to the start of the file and
                    // overwrites blocks it already has, where a truncated file would have
                    // to be allocated again (measured: 5% of HTTPS throughput). Most
                    // frames are already copied, so the writer waits only briefly.
                    // Readers of older snapshots make it fail (after RESTART_WAIT);
                    // the next run tries again.
                    let _ = conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()));
                }
                match stopped.recv_timeout(policy.interval) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                    _ => break,
                }
            })
            .map_err(|source| CaptureError::Io {
                path: path.to_owned(),
                source,
            })?;
        Ok(Checkpointer {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let _ = self.stop.send(());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn tls_columns(tls: Option<&TlsInfo>) -> (bool, Option<&str>, Option<&str>, Option<&str>) {
    match tls {
        Some(t) => (
            true,
            t.sni.as_deref(),
            t.alpn.as_deref(),
            t.version.as_deref(),
        ),
        None => (false, None, None, None),
    }
}

/// The bytes of a body to store, `None` (NULL) when none were kept.
fn kept(body: &CapturedBody) -> Option<&[u8]> {
    (!body.bytes.is_empty()).then_some(&body.bytes[..])
}

fn insert_one(
    stored: &StoredFlow,
    insert_flow: &mut rusqlite::CachedStatement<'_>,
    insert_bodies: &mut rusqlite::CachedStatement<'_>,
) -> rusqlite::Result<()> {
    let StoredFlow { flow, kinvey } = stored;
    let id = flow.id as i64;
    let request = &flow.request;
    let response = flow.response.as_ref();
    let t = &flow.timings;
    let (c_tls, c_sni, c_alpn, c_version) = tls_columns(flow.client_tls.as_deref());
    let (s_tls, s_sni, s_alpn, s_version) = tls_columns(flow.server_tls.as_deref());
    let content_type = response.and_then(|r| r.headers.get("content-type"));
    fn json_unless_empty<T: serde::Serialize>(items: &[T]) -> Option<String> {
        (!items.is_empty()).then(|| serde_json::to_string(items).unwrap_or_default())
    }
    let request_headers = headers_to_json(&request.headers);
    let response_headers = response.map(|r| headers_to_json(&r.headers));
    let replay_of = flow.replay_of.map(|id| id as i64);
    let other_errors = json_unless_empty(&kinvey.other_errors);
    let values: [&dyn ToSql; 50] = [
        &id,
        &flow.kind.as_str(),
        &utc_timestamp(flow.started_at),
        &epoch_nanos(flow.started_at),
        &flow.client_addr.to_string(),
        &flow.scheme,
        &flow.host,
        &flow.port,
        &request.method,
        &request.url,
        &request.version.as_str(),
        &(request.body.wire_size as i64),
        &request.body.truncated,
        &request.body.incomplete,
        &response.map(|r| r.status),
        &response.map(|r| r.version.as_str()),
        &response.map(|r| r.from_proxy),
        &response.map(|r| r.body.wire_size as i64),
        &response.map(|r| r.body.truncated),
        &response.map(|r| r.body.incomplete),
        &content_type.as_deref(),
        &t.blocked.map(millis),
        &t.dns.map(millis),
        &t.connect.map(millis),
        &t.ssl.map(millis),
        &millis(t.send),
        &millis(t.wait),
        &millis(t.receive),
        &millis(t.total()),
        &flow.server_ip.map(|ip| ip.to_string()),
        &c_tls,
        &c_sni,
        &c_alpn,
        &c_version,
        &s_tls,
        &s_sni,
        &s_alpn,
        &s_version,
        &flow.error.as_ref().map(|e| e.kind.as_str()),
        &flow.error.as_ref().map(|e| e.message.as_str()),
        &kinvey.request_id,
        &kinvey.error,
        &kinvey.class.map(|c| c.as_str()),
        &kinvey.known_error(),
        &json_unless_empty(&kinvey.anomalies),
        &json_unless_empty(&kinvey.warnings),
        &request_headers,
        &response_headers,
        &replay_of,
        &other_errors,
    ];
    insert_flow.execute(&values[..])?;
    let request_body = kept(&request.body);
    let response_body = response.and_then(|r| kept(&r.body));
    if request_body.is_some() || response_body.is_some() {
        insert_bodies.execute(params![id, request_body, response_body])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{CapturedBody, Flow};
    use crate::kinvey::KinveySummary;

    fn flow_with_body(id: FlowId, body_bytes: usize) -> StoredFlow {
        let client = "127.0.0.1:40000".parse().unwrap();
        let mut flow = Flow::exchange(id, client, "POST", "http://localhost/upload", None);
        flow.request.body = CapturedBody::whole(vec![b'x'; body_bytes]);
        StoredFlow {
            flow,
            kinvey: KinveySummary::default(),
        }
    }

    #[test]
    fn the_wal_is_restarted_past_its_limit_while_flows_keep_coming() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("capture.db");
        let mut writer = CaptureWriter::open(&path).unwrap();
        let policy = CheckpointPolicy {
            interval: Duration::from_millis(5),
            wal_limit: 256 * 1024,
        };
        let checkpointer = Checkpointer::start(&path, policy).unwrap();
        let (batches, per_batch, body_bytes) = (400, 5, 4096);
        for first in (1..).step_by(per_batch).take(batches) {
            let batch: Vec<StoredFlow> = (first..first + per_batch as FlowId)
                .map(|id| flow_with_body(id, body_bytes))
                .collect();
            writer.write_batch(&batch).unwrap();
            std::thread::sleep(Duration::from_micros(200));
        }
        let wal = std::fs::metadata(dir.path().join("capture.db-wal"))
            .unwrap()
            .len();
        drop(checkpointer);
        let written = (batches * per_batch * body_bytes) as u64;
        // Never restarted, the WAL would hold every page written: more than the bodies.
        assert!(
            wal < written / 4,
            "the WAL grew to {wal} bytes for {written} bytes of bodies"
        );
        let reader = crate::capture::CaptureReader::open(&path).unwrap();
        assert_eq!(reader.count().unwrap(), (batches * per_batch) as u64);
    }

    #[test]
    fn a_long_reader_does_not_stall_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("capture.db");
        let mut writer = CaptureWriter::open(&path).unwrap();
        writer.write_batch(&[flow_with_body(1, 4096)]).unwrap();
        // A reader in the middle of a long read, as an export of the live capture is.
        let reader = Connection::open(&path).unwrap();
        reader
            .execute_batch("BEGIN; SELECT count(*) FROM flows;")
            .unwrap();
        let policy = CheckpointPolicy {
            interval: Duration::from_millis(50),
            wal_limit: 64 * 1024,
        };
        let checkpointer = Checkpointer::start(&path, policy).unwrap();
        let mut slowest = Duration::ZERO;
        for id in 2..200 {
            let started = std::time::Instant::now();
            writer.write_batch(&[flow_with_body(id, 4096)]).unwrap();
            slowest = slowest.max(started.elapsed());
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(checkpointer);
        reader.execute_batch("COMMIT").unwrap();
        // The restarts keep failing on the reader; each may hold the writer up to
        // RESTART_WAIT, never the old busy timeout of a second.
        assert!(
            slowest < Duration::from_millis(250),
            "a write took {slowest:?}"
        );
    }
}
