//! Reading flows back from a capture (also while it is still being written).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rusqlite::types::{Type, ValueRef};
use rusqlite::{params, Connection, Row};

use super::schema::{headers_from_json, open_for_reading};
use super::{CaptureError, StoredFlow};
use crate::flow::{
    CapturedBody, Flow, FlowError, FlowId, HeaderField, Headers, RequestRecord, ResponseRecord,
    Timings, TlsInfo,
};
use crate::kinvey::KinveySummary;
use crate::redact::{EarlierSecrets, Secrets};
use crate::websocket::{Message, MessageCounts, MessageLog};

/// How much of each flow to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// The flow's row only: no headers, no body bytes (sizes are there).
    Summary,
    /// The row and the headers.
    Headers,
    /// Everything, bodies included.
    Full,
}

/// Reads a capture file.
pub struct CaptureReader {
    conn: Connection,
    path: PathBuf,
    /// The file's schema version: from 2 on, headers are columns of `flows`; from 3 on,
    /// a flow's bodies are one row of `bodies`; from 4 on, WebSocket messages are kept.
    schema: i64,
    /// The flows passed over because their row could not be read, not taken yet, and
    /// the ids of all those passed over (each is kept once, however often it is read).
    left_out: std::sync::Mutex<(Vec<LeftOut>, std::collections::HashSet<FlowId>)>,
}

/// A flow a reader passed over: its row cannot be read (a damaged file, a hand edit
/// that broke a column), while the flows around it can.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftOut {
    /// The flow.
    pub id: FlowId,
    /// What could not be read.
    pub reason: String,
}

impl std::fmt::Display for LeftOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "flow {}: it cannot be read ({})", self.id, self.reason)
    }
}

/// True for an error of one row's contents (a value of the wrong type or out of range,
/// text that is no UTF-8, JSON that does not parse), as opposed to the file's.
fn is_row_damage(error: &rusqlite::Error) -> bool {
    matches!(
        error,
        rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::IntegralValueOutOfRange(..)
            | rusqlite::Error::Utf8Error(..)
    )
}

impl std::fmt::Debug for CaptureReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureReader")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

const SELECT_FLOWS: &str = "SELECT * FROM flows";

/// How many flows before a support report's are read for secrets to scrub from it.
pub const SECRETS_LOOKED_BACK: FlowId = 1000;

/// How many bytes of those flows' bodies are read at most.
pub const SECRETS_BODY_BUDGET: usize = 32 << 20;

/// Flows with one request id (an exact lookup on the request-id index).
pub(crate) const FIND_REQUEST_ID: &str =
    "SELECT kinvey_request_id, id FROM flows WHERE kinvey_request_id = ?1 ORDER BY id";

/// Flows with a request id in `[?1, ?2)` (a prefix lookup on the request-id index).
pub(crate) const FIND_REQUEST_ID_RANGE: &str = "SELECT kinvey_request_id, id FROM flows
     WHERE kinvey_request_id >= ?1 AND kinvey_request_id < ?2
     ORDER BY kinvey_request_id, id";

/// Flows whose request id is LIKE ?1 (`\\` escapes): ASCII case ignored, every id read.
const FIND_REQUEST_ID_LIKE: &str = "SELECT kinvey_request_id, id FROM flows
     WHERE kinvey_request_id LIKE ?1 ESCAPE '\\'
     ORDER BY kinvey_request_id, id";

impl CaptureReader {
    /// Opens `path`, checking it is a capture of the schema this kinspect reads.
    pub fn open(path: &Path) -> Result<CaptureReader, CaptureError> {
        let (conn, schema) = open_for_reading(path)?;
        Ok(CaptureReader {
            conn,
            path: path.to_owned(),
            schema,
            left_out: Default::default(),
        })
    }

    /// The flows passed over since the last call, because their rows could not be read
    /// ([`CaptureReader::for_each_in`]); each once, however often it was read.
    pub fn take_left_out(&self) -> Vec<LeftOut> {
        std::mem::take(&mut self.left_out.lock().unwrap_or_else(|e| e.into_inner()).0)
    }

    /// The capture file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, source: rusqlite::Error) -> CaptureError {
        CaptureError::Sqlite {
            path: self.path.clone(),
            sqlite: source,
        }
    }

    /// The number of flows stored.
    pub fn count(&self) -> Result<u64, CaptureError> {
        self.conn
            .query_row("SELECT count(*) FROM flows", [], |row| row.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(|e| self.error(e))
    }

    /// Calls `each` with every flow whose id is above `after`, in id order.
    pub fn for_each_after(
        &self,
        after: FlowId,
        detail: Detail,
        each: impl FnMut(StoredFlow),
    ) -> Result<(), CaptureError> {
        self.for_each_in(after.saturating_add(1)..FlowId::MAX, detail, each)
    }

    /// Calls `each` with every flow whose id is in `ids`, in id order. A flow whose row
    /// cannot be read is passed over, and kept for [`CaptureReader::take_left_out`]: one
    /// damaged row does not hide every flow after it.
    pub fn for_each_in(
        &self,
        ids: std::ops::Range<FlowId>,
        detail: Detail,
        mut each: impl FnMut(StoredFlow),
    ) -> Result<(), CaptureError> {
        let sql = format!("{SELECT_FLOWS} WHERE id >= ?1 AND id < ?2 ORDER BY id");
        let mut statement = self.conn.prepare_cached(&sql).map_err(|e| self.error(e))?;
        let bound = |id: FlowId| i64::try_from(id).unwrap_or(i64::MAX);
        let mut rows = statement
            .query(params![bound(ids.start), bound(ids.end)])
            .map_err(|e| self.error(e))?;
        while let Some(row) = rows.next().map_err(|e| self.error(e))? {
            let read = stored_from_row(row)
                .map_err(|e| self.error(e))
                .and_then(|mut stored| {
                    self.load_detail(row, &mut stored.flow, detail)?;
                    Ok(stored)
                });
            match read {
                Ok(stored) => each(stored),
                Err(CaptureError::Sqlite { sqlite, .. }) if is_row_damage(&sqlite) => {
                    let id = row.get::<_, i64>("id").unwrap_or_default();
                    let left_out = LeftOut {
                        id: FlowId::try_from(id).unwrap_or_default(),
                        reason: sqlite.to_string(),
                    };
                    let mut left_out_so_far =
                        self.left_out.lock().unwrap_or_else(|e| e.into_inner());
                    if left_out_so_far.1.insert(left_out.id) {
                        left_out_so_far.0.push(left_out);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The secrets of the flows before flow `id`, to scrub from its support report: a
    /// token a login answered turns up in a later error's `debug`. The latest first, at
    /// most [`SECRETS_LOOKED_BACK`] flows and [`SECRETS_BODY_BUDGET`] bytes of bodies (a
    /// report is made at once, even in a capture of large downloads).
    pub fn secrets_before(&self, id: FlowId) -> Result<EarlierSecrets, CaptureError> {
        let mut earlier = EarlierSecrets::default();
        let mut bodies = 0;
        let from = id.saturating_sub(SECRETS_LOOKED_BACK).max(1);
        for before in (from..id).rev() {
            // A damaged row holds no secret to read: the flows around it still count.
            let stored = match self.flow(before) {
                Ok(Some(stored)) => stored,
                Ok(None) => continue,
                Err(CaptureError::Sqlite { sqlite, .. }) if is_row_damage(&sqlite) => continue,
                Err(e) => return Err(e),
            };
            let flow = &stored.flow;
            earlier.add(&Secrets::of(flow));
            bodies += flow.request.body.bytes.len()
                + flow.response.as_ref().map_or(0, |r| r.body.bytes.len());
            if bodies > SECRETS_BODY_BUDGET {
                break;
            }
        }
        Ok(earlier)
    }

    /// Calls `each` with every flow, in id order.
    pub fn for_each(
        &self,
        detail: Detail,
        each: impl FnMut(StoredFlow),
    ) -> Result<(), CaptureError> {
        self.for_each_after(0, detail, each)
    }

    /// The flows whose `X-Kinvey-Request-ID` is `query`, or, when none is, starts with
    /// it, ignoring ASCII case as the UI and the `~rid` filter do: (request id, flow id)
    /// pairs in request-id order.
    pub fn find_request_id(&self, query: &str) -> Result<Vec<(String, FlowId)>, CaptureError> {
        let query = query.trim();
        let ids = |sql: &str, args: &[&dyn rusqlite::ToSql]| {
            let mut statement = self.conn.prepare_cached(sql).map_err(|e| self.error(e))?;
            let found = statement
                .query_map(args, |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)? as FlowId))
                })
                .map_err(|e| self.error(e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| self.error(e))?;
            Ok::<_, CaptureError>(found)
        };
        // Written as stored: the index finds it at once (of two ids that differ only in
        // case, the one written as given).
        let exact = ids(FIND_REQUEST_ID, &[&query])?;
        if !exact.is_empty() || query.is_empty() {
            return Ok(exact);
        }
        // Whole, ignoring case: every id compared (a scan of the index, tens of
        // milliseconds for 100,000 flows), so that one in mixed case (`CaseRID123`) is
        // found, and two that differ only in case are both offered, before any id is
        // taken for a prefix.
        let escaped: String = query
            .chars()
            .flat_map(|c| match c {
                '%' | '_' | '\\' => vec!['\\', c],
                _ => vec![c],
            })
            .collect();
        let whole = ids(FIND_REQUEST_ID_LIKE, &[&escaped])?;
        if !whole.is_empty() {
            return Ok(whole);
        }
        // A prefix. Request ids are hex written in one case: the query as given, in lower
        // and in upper case finds them with a range on the index (every string that
        // starts with the prefix sorts below it followed by the highest code point).
        let mut spellings = vec![
            query.to_owned(),
            query.to_ascii_lowercase(),
            query.to_ascii_uppercase(),
        ];
        spellings.sort();
        spellings.dedup();
        let mut prefixed = Vec::new();
        for spelling in &spellings {
            let upper = format!("{spelling}\u{10FFFF}");
            prefixed.extend(ids(FIND_REQUEST_ID_RANGE, &[spelling, &upper])?);
        }
        prefixed.sort();
        prefixed.dedup();
        if !prefixed.is_empty() {
            return Ok(prefixed);
        }
        // In mixed case, ignoring it: every id compared.
        ids(FIND_REQUEST_ID_LIKE, &[&format!("{escaped}%")])
    }

    /// One flow with everything, if it exists.
    pub fn flow(&self, id: FlowId) -> Result<Option<StoredFlow>, CaptureError> {
        let sql = format!("{SELECT_FLOWS} WHERE id = ?1");
        let mut statement = self.conn.prepare_cached(&sql).map_err(|e| self.error(e))?;
        let mut rows = statement
            .query(params![id as i64])
            .map_err(|e| self.error(e))?;
        let Some(row) = rows.next().map_err(|e| self.error(e))? else {
            return Ok(None);
        };
        let mut stored = stored_from_row(row).map_err(|e| self.error(e))?;
        self.load_detail(row, &mut stored.flow, Detail::Full)?;
        Ok(Some(stored))
    }

    fn load_detail(
        &self,
        row: &Row<'_>,
        flow: &mut Flow,
        detail: Detail,
    ) -> Result<(), CaptureError> {
        if detail == Detail::Summary {
            return Ok(());
        }
        if self.schema >= 2 {
            headers_from_row(row, flow).map_err(|e| self.error(e))?;
        } else {
            self.headers_from_table(flow)?;
        }
        if detail == Detail::Headers {
            return Ok(());
        }
        // Rows of (side, data) from either layout of `bodies`.
        let sql = if self.schema >= 3 {
            "SELECT 'request', request FROM bodies WHERE flow_id = ?1 AND request IS NOT NULL
             UNION ALL
             SELECT 'response', response FROM bodies WHERE flow_id = ?1 AND response IS NOT NULL"
        } else {
            "SELECT side, data FROM bodies WHERE flow_id = ?1"
        };
        let mut statement = self.conn.prepare_cached(sql).map_err(|e| self.error(e))?;
        let mut rows = statement
            .query(params![flow.id as i64])
            .map_err(|e| self.error(e))?;
        while let Some(row) = rows.next().map_err(|e| self.error(e))? {
            let side: String = row.get(0).map_err(|e| self.error(e))?;
            let data: Vec<u8> = row.get(1).map_err(|e| self.error(e))?;
            match (side.as_str(), flow.response.as_mut()) {
                ("response", Some(response)) => response.body.bytes = Bytes::from(data),
                // Only a hand-edited file has a response body without a response.
                ("response", None) => {}
                _ => flow.request.body.bytes = Bytes::from(data),
            }
        }
        // Only a flow that switched protocols can have messages.
        if flow.status() == Some(101) {
            flow.websocket = self.websocket_messages(flow.id)?.map(Box::new);
        }
        Ok(())
    }

    /// The `websockets` row of flow `id` (messages not kept, why reading stopped), if it
    /// was read as a WebSocket.
    fn websocket_row(&self, id: FlowId) -> Result<Option<(u64, Option<String>)>, CaptureError> {
        if self.schema < 4 {
            return Ok(None);
        }
        let error = |e| self.error(e);
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT messages_dropped, unreadable FROM websockets WHERE flow_id = ?1",
            )
            .map_err(error)?;
        let mut rows = statement.query(params![id as i64]).map_err(error)?;
        match rows.next().map_err(error)? {
            Some(row) => Ok(Some((
                row.get::<_, i64>(0).map_err(error)? as u64,
                row.get(1).map_err(error)?,
            ))),
            None => Ok(None),
        }
    }

    /// The messages of WebSocket flow `id` counted, if it was read as one: what
    /// [`MessageLog::counts`] gives, without reading the payloads.
    pub fn websocket_counts(&self, id: FlowId) -> Result<Option<MessageCounts>, CaptureError> {
        let Some((dropped, unreadable)) = self.websocket_row(id)? else {
            return Ok(None);
        };
        let error = |e| self.error(e);
        let mut counts = MessageCounts {
            dropped,
            unreadable,
            ..MessageCounts::default()
        };
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT from_client, count(*), total(size) FROM websocket_messages
                 WHERE flow_id = ?1 GROUP BY from_client",
            )
            .map_err(error)?;
        let mut rows = statement.query(params![id as i64]).map_err(error)?;
        while let Some(row) = rows.next().map_err(error)? {
            let n = row.get::<_, i64>(1).map_err(error)? as u64;
            let bytes = row.get::<_, f64>(2).map_err(error)? as u64;
            match row.get::<_, bool>(0).map_err(error)? {
                true => (counts.from_client, counts.bytes_from_client) = (n, bytes),
                false => (counts.from_server, counts.bytes_from_server) = (n, bytes),
            }
        }
        Ok(Some(counts))
    }

    /// The messages of WebSocket flow `id`, if it was read as one.
    pub fn websocket_messages(&self, id: FlowId) -> Result<Option<MessageLog>, CaptureError> {
        let Some((dropped, unreadable)) = self.websocket_row(id)? else {
            return Ok(None);
        };
        let error = |e| self.error(e);
        let mut log = MessageLog {
            messages: Vec::new(),
            dropped,
            unreadable,
        };
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT from_client, at_ns, opcode, size, payload FROM websocket_messages
                 WHERE flow_id = ?1 ORDER BY position",
            )
            .map_err(error)?;
        let mut rows = statement.query(params![id as i64]).map_err(error)?;
        while let Some(row) = rows.next().map_err(error)? {
            log.messages.push(Message {
                from_client: row.get(0).map_err(error)?,
                at: system_time_from_nanos(row.get(1).map_err(error)?),
                opcode: row.get(2).map_err(error)?,
                size: row.get::<_, i64>(3).map_err(error)? as u64,
                payload: Bytes::from(row.get::<_, Vec<u8>>(4).map_err(error)?),
            });
        }
        Ok(Some(log))
    }

    /// Schema 1 kept a row per header field in a `headers` table.
    fn headers_from_table(&self, flow: &mut Flow) -> Result<(), CaptureError> {
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT side, name, value FROM headers WHERE flow_id = ?1 ORDER BY side, position",
            )
            .map_err(|e| self.error(e))?;
        let mut rows = statement
            .query(params![flow.id as i64])
            .map_err(|e| self.error(e))?;
        while let Some(row) = rows.next().map_err(|e| self.error(e))? {
            let side: String = row.get(0).map_err(|e| self.error(e))?;
            let name: String = row.get(1).map_err(|e| self.error(e))?;
            let value = match row.get_ref(2).map_err(|e| self.error(e))? {
                ValueRef::Text(bytes) | ValueRef::Blob(bytes) => Bytes::copy_from_slice(bytes),
                other => Bytes::from(format!("{other:?}")),
            };
            let field = HeaderField {
                name: name.into(),
                value,
            };
            match (side.as_str(), flow.response.as_mut()) {
                ("response", Some(response)) => response.headers.0.push(field),
                _ => flow.request.headers.0.push(field),
            }
        }
        Ok(())
    }
}

/// The header columns of a flow's row (schema 2 on).
fn headers_from_row(row: &Row<'_>, flow: &mut Flow) -> rusqlite::Result<()> {
    let decode = |column: &'static str, json: &str| {
        headers_from_json(json).map_err(|reason| bad(row, column, reason))
    };
    let request: String = row.get("request_headers")?;
    flow.request.headers = decode("request_headers", &request)?;
    let response: Option<String> = row.get("response_headers")?;
    if let (Some(record), Some(json)) = (flow.response.as_mut(), response) {
        record.headers = decode("response_headers", &json)?;
    }
    Ok(())
}

/// A column whose text kinspect cannot have written.
#[derive(Debug)]
struct BadColumn {
    column: &'static str,
    reason: String,
}

impl std::fmt::Display for BadColumn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "column {}: {}", self.column, self.reason)
    }
}

impl std::error::Error for BadColumn {}

fn parsed<T: FromStr<Err = String>>(row: &Row<'_>, column: &'static str) -> rusqlite::Result<T> {
    let text: String = row.get(column)?;
    text.parse().map_err(|reason| bad(row, column, reason))
}

fn parsed_opt<T: FromStr<Err = String>>(
    row: &Row<'_>,
    column: &'static str,
) -> rusqlite::Result<Option<T>> {
    let text: Option<String> = row.get(column)?;
    text.map(|t| t.parse().map_err(|reason| bad(row, column, reason)))
        .transpose()
}

fn bad(row: &Row<'_>, column: &'static str, reason: String) -> rusqlite::Error {
    let index = row.as_ref().column_index(column).unwrap_or(0);
    rusqlite::Error::FromSqlConversionFailure(
        index,
        Type::Text,
        Box::new(BadColumn { column, reason }),
    )
}

fn duration(ms: f64) -> Duration {
    Duration::from_nanos((ms * 1e6).round().max(0.0) as u64)
}

fn opt_duration(row: &Row<'_>, column: &str) -> rusqlite::Result<Option<Duration>> {
    Ok(row.get::<_, Option<f64>>(column)?.map(duration))
}

fn tls(row: &Row<'_>, prefix: &str) -> rusqlite::Result<Option<Arc<TlsInfo>>> {
    if !row.get::<_, bool>(prefix)? {
        return Ok(None);
    }
    Ok(Some(Arc::new(TlsInfo {
        sni: row.get(format!("{prefix}_sni").as_str())?,
        alpn: row.get(format!("{prefix}_alpn").as_str())?,
        version: row.get(format!("{prefix}_version").as_str())?,
    })))
}

/// The JSON array in `column`; empty when NULL, or when the capture's schema has no
/// such column.
fn json_list<T: serde::de::DeserializeOwned>(
    row: &Row<'_>,
    column: &'static str,
) -> rusqlite::Result<Vec<T>> {
    match row.get::<_, Option<String>>(column) {
        Err(rusqlite::Error::InvalidColumnName(_)) | Ok(None) => Ok(Vec::new()),
        Err(e) => Err(e),
        Ok(Some(json)) => serde_json::from_str(&json).map_err(|e| bad(row, column, e.to_string())),
    }
}

fn stored_from_row(row: &Row<'_>) -> rusqlite::Result<StoredFlow> {
    let kinvey = KinveySummary {
        request_id: row.get("kinvey_request_id")?,
        error: row.get("kinvey_error")?,
        class: parsed_opt(row, "kinvey_class")?,
        known: row.get::<_, Option<bool>>("kinvey_known")?.unwrap_or(true),
        // Schema 5 on.
        other_errors: json_list(row, "kinvey_other_errors")?,
        anomalies: json_list(row, "kinvey_anomalies")?,
        warnings: json_list(row, "kinvey_warnings")?,
    };
    Ok(StoredFlow {
        flow: flow_from_row(row)?,
        kinvey,
    })
}

fn flow_from_row(row: &Row<'_>) -> rusqlite::Result<Flow> {
    let started_at = system_time_from_nanos(row.get("started_at_ns")?);
    let client_addr: SocketAddr = parsed_client(row)?;
    let request = RequestRecord {
        method: row.get("method")?,
        url: row.get("url")?,
        version: parsed(row, "request_http_version")?,
        headers: Headers::default(),
        body: CapturedBody {
            bytes: Bytes::new(),
            wire_size: row.get::<_, i64>("request_body_size")? as u64,
            truncated: row.get("request_body_truncated")?,
            incomplete: row.get("request_body_incomplete")?,
        },
    };
    let response = match row.get::<_, Option<u16>>("status")? {
        None => None,
        Some(status) => Some(ResponseRecord {
            status,
            version: parsed(row, "response_http_version")?,
            headers: Headers::default(),
            body: CapturedBody {
                bytes: Bytes::new(),
                wire_size: row.get::<_, i64>("response_body_size")? as u64,
                truncated: row.get("response_body_truncated")?,
                incomplete: row.get("response_body_incomplete")?,
            },
            from_proxy: row.get("response_from_proxy")?,
        }),
    };
    let error = match parsed_opt(row, "error_kind")? {
        Some(kind) => Some(FlowError {
            kind,
            message: row
                .get::<_, Option<String>>("error_message")?
                .unwrap_or_default(),
        }),
        None => None,
    };
    Ok(Flow {
        id: row.get::<_, i64>("id")? as FlowId,
        kind: parsed(row, "kind")?,
        client_addr,
        started_at,
        scheme: row.get("scheme")?,
        host: row.get("host")?,
        port: row.get("port")?,
        request,
        response,
        timings: Timings {
            blocked: opt_duration(row, "time_blocked_ms")?,
            dns: opt_duration(row, "time_dns_ms")?,
            connect: opt_duration(row, "time_connect_ms")?,
            ssl: opt_duration(row, "time_ssl_ms")?,
            send: duration(row.get("time_send_ms")?),
            wait: duration(row.get("time_wait_ms")?),
            receive: duration(row.get("time_receive_ms")?),
        },
        server_ip: parsed_opt_ip(row)?,
        client_tls: tls(row, "client_tls")?,
        server_tls: tls(row, "server_tls")?,
        error,
        websocket: None,
        // Schema 4 on; an older capture has no such column.
        replay_of: row
            .get::<_, Option<i64>>("replay_of")
            .unwrap_or(None)
            .map(|id| id as FlowId),
    })
}

fn parsed_client(row: &Row<'_>) -> rusqlite::Result<SocketAddr> {
    let text: String = row.get("client_addr")?;
    text.parse()
        .map_err(|e: std::net::AddrParseError| bad(row, "client_addr", e.to_string()))
}

fn parsed_opt_ip(row: &Row<'_>) -> rusqlite::Result<Option<std::net::IpAddr>> {
    let text: Option<String> = row.get("server_ip")?;
    text.map(|t| {
        t.parse()
            .map_err(|e: std::net::AddrParseError| bad(row, "server_ip", e.to_string()))
    })
    .transpose()
}

/// The inverse of the writer's `epoch_nanos`.
fn system_time_from_nanos(nanos: i64) -> SystemTime {
    if nanos >= 0 {
        UNIX_EPOCH + Duration::from_nanos(nanos as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(nanos.unsigned_abs())
    }
}
