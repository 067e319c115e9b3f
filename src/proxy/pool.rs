//! Connections to origins, kept for reuse. An HTTP/1.1 connection stays with the client
//! connection that used it, so that client's next request goes out on it at once, with
//! no shared pool to look through and no task to hand it back; it joins an idle list
//! when that client connection ends, for the next client to the same origin (one on the
//! same connection thread first). An HTTP/2 connection is shared by every request to its
//! origin on its connection thread.
//!
//! Measured (an HTTPS proxy on hyper + rustls, nginx origin): hyper-util's pooled client
//! cost 14% of the throughput a connection kept this way reaches.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::headers::remove_in_order;
use super::tee::SharedCapture;
use super::upstream::{ConnectError, ConnectionInfo, UpstreamConnector};
use super::{ReturnedIfUnread, Target, UpstreamBody};

/// How long an unused connection is kept open.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Most header fields hyper's HTTP/1.1 client takes in a response by default: kept
/// unless `--max-headers` asks for more (any other limit parses every response into a
/// heap-allocated table: measured 1-2 µs per request against nginx, 2-3% of kinspect's
/// CPU).
pub(crate) const MAX_RESPONSE_FIELDS: usize = 100;

/// Most bytes of header fields taken in an origin's HTTP/2 response: what hyper's
/// HTTP/1.1 client takes (about 400 KB), where its HTTP/2 default is 16 KiB.
pub(crate) const MAX_RESPONSE_HEAD_BYTES: u32 = 400 * 1024;

/// Most unused HTTP/1.1 connections kept per origin.
const MAX_IDLE_PER_ORIGIN: usize = 32;

/// How a request goes out on a connection.
enum Sender {
    Http1(http1::SendRequest<UpstreamBody>),
    Http2(http2::SendRequest<UpstreamBody>),
}

/// A connection to an origin.
struct Connection {
    /// Where it goes, as an [`origin_key`].
    target: Target,
    sender: Sender,
    info: ConnectionInfo,
    /// When it was last handed back unused.
    idle_since: Instant,
    /// The runtime (connection thread) its task runs on.
    runtime: Option<tokio::runtime::Id>,
}

impl Connection {
    /// Another handle on a shared HTTP/2 connection; `None` for HTTP/1.1.
    fn share(&self) -> Option<Connection> {
        match &self.sender {
            Sender::Http2(sender) => Some(Connection {
                target: self.target.clone(),
                sender: Sender::Http2(sender.clone()),
                info: self.info.clone(),
                idle_since: self.idle_since,
                runtime: self.runtime,
            }),
            Sender::Http1(_) => None,
        }
    }

    fn is_open(&self) -> bool {
        // One whose origin stopped taking writes takes no other request.
        let closed = match &self.sender {
            Sender::Http1(sender) => sender.is_closed(),
            Sender::Http2(sender) => sender.is_closed(),
        };
        !closed && !self.info.stopped_taking()
    }

    fn is_http2(&self) -> bool {
        matches!(self.sender, Sender::Http2(_))
    }

    /// Whether it can take a request now (an HTTP/1.1 connection may still be sending
    /// the last request's body to an origin that answered early).
    fn is_ready(&self) -> bool {
        match &self.sender {
            Sender::Http1(sender) => sender.is_ready(),
            Sender::Http2(sender) => sender.is_ready(),
        }
    }

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<hyper::Result<()>> {
        match &mut self.sender {
            Sender::Http1(sender) => sender.poll_ready(cx),
            Sender::Http2(sender) => sender.poll_ready(cx),
        }
    }

    /// Sends `req` (its URI absolute) once the connection can take it. A request that
    /// never went out comes back with the error, as it was given.
    async fn send(
        &mut self,
        mut req: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, (hyper::Error, Option<Request<UpstreamBody>>)> {
        match &mut self.sender {
            Sender::Http1(sender) => {
                if let Err(e) = sender.ready().await {
                    return Err((e, Some(req)));
                }
                let undo = match &self.info.forward_proxy {
                    Some(parent) => proxy_form(&mut req, parent.authorization()),
                    None => origin_form(&mut req),
                };
                sender.try_send_request(req).await.map_err(|mut e| {
                    let unsent = e.take_message().map(|req| undo.apply(req));
                    (e.into_error(), unsent)
                })
            }
            Sender::Http2(sender) => {
                if let Err(e) = sender.ready().await {
                    return Err((e, Some(req)));
                }
                // hyper passes no interim answer on from HTTP/2: the body goes at once.
                if let Some(gate) = req.extensions().get::<super::tee::ContinueGate>() {
                    gate.open();
                }
                // `:authority` names the target: origins such as nginx refuse a `Host`
                // field beside it (400). One naming something else is the client's own.
                let target = &self.target;
                remove_in_order(req.headers_mut(), |name, value| {
                    name == http::header::HOST && target.is_named_by_host_field(value.as_bytes())
                });
                sender.try_send_request(req).await.map_err(|mut e| {
                    let unsent = e.take_message();
                    (e.into_error(), unsent)
                })
            }
        }
    }
}

/// What is kept of a request to send it once more when the connection it goes out on
/// fails before any answer.
struct Replay {
    head: Request<()>,
    /// The body's capture; `None` for a request without a body.
    body: Option<SharedCapture>,
    /// Without a body and with a method that asks nothing more when repeated (RFC 9110
    /// §9.2.2): safe to send again after any failure before an answer on a reused
    /// connection, which fails so when the origin closed it as the request went out
    /// (RFC 9112 §9.3.1).
    idempotent: bool,
}

impl Replay {
    /// What to keep of `req` before it goes out on `conn`: nothing unless some failure
    /// there could allow sending it again — any request over HTTP/2, whose origin may
    /// refuse its stream unprocessed.
    fn of(req: &Request<UpstreamBody>, conn: &Connection) -> Option<Replay> {
        let bodyless = http_body::Body::is_end_stream(req.body());
        let idempotent = bodyless && req.method().is_idempotent();
        if !idempotent && !conn.is_http2() {
            return None;
        }
        let mut head = Request::new(());
        *head.method_mut() = req.method().clone();
        *head.uri_mut() = req.uri().clone();
        *head.version_mut() = req.version();
        *head.headers_mut() = req.headers().clone();
        let body = match bodyless {
            true => None,
            false => Some(req.body().inner()?.capture().clone()),
        };
        Some(Replay {
            head,
            body,
            idempotent,
        })
    }

    /// The request again after `error`, when sending it again is safe: an idempotent
    /// request without a body after a failure on a `reused` connection, or any request
    /// whose stream the origin refused unprocessed ([`refused_unprocessed`]) if its body
    /// was read whole from the client (and so can be sent from the capture).
    fn after(self, error: &hyper::Error, reused: bool) -> Option<Request<UpstreamBody>> {
        let safe = (self.idempotent && reused) || refused_unprocessed(error);
        if !safe {
            return None;
        }
        let body = match &self.body {
            None => Bytes::new(),
            Some(capture) => capture.lock().unwrap_or_else(|e| e.into_inner()).whole()?,
        };
        Some(self.head.map(|()| ReturnedIfUnread::again(body)))
    }
}

/// Whether `error` says the origin did not process the request: an HTTP/2 stream
/// above the last one the origin's GOAWAY names (RFC 9113 §6.8), or one it reset with
/// REFUSED_STREAM (§8.7). Such a request may go out again whatever its method.
fn refused_unprocessed(error: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            return h2.is_remote()
                && (h2.is_go_away() || h2.reason() == Some(h2::Reason::REFUSED_STREAM));
        }
        source = e.source();
    }
    false
}

/// Turns `req`'s absolute URI into the origin form HTTP/1.1 sends (`/path?query`), with
/// a `Host` field from it unless the request has one (where the client put it): first,
/// as RFC 9110 §7.2 asks of a client.
pub(crate) fn origin_form<B>(req: &mut Request<B>) -> OriginForm {
    let absolute = std::mem::take(req.uri_mut());
    let added_host = add_host_field(req, &absolute);
    if let Some(path) = absolute.path_and_query().filter(|p| p.as_str() != "/") {
        *req.uri_mut() = Uri::from(path.clone());
    }
    OriginForm {
        absolute,
        added_host,
        added_authorization: false,
    }
}

/// Keeps `req`'s absolute URI, as a request to a forward proxy goes (RFC 9112 §3.2.2),
/// with the `Host` field [`origin_form`] adds and the proxy's `authorization`.
fn proxy_form<B>(req: &mut Request<B>, authorization: Option<HeaderValue>) -> OriginForm {
    let absolute = req.uri().clone();
    let added_host = add_host_field(req, &absolute);
    let added_authorization = authorization.is_some();
    if let Some(value) = authorization {
        req.headers_mut()
            .insert(http::header::PROXY_AUTHORIZATION, value);
    }
    OriginForm {
        absolute,
        added_host,
        added_authorization,
    }
}

/// Adds a `Host` field from `absolute` to `req` unless it has one (where the client put
/// it): first, as RFC 9110 §7.2 asks of a client. Says whether it did.
fn add_host_field<B>(req: &mut Request<B>, absolute: &Uri) -> bool {
    if req.headers().contains_key(http::header::HOST) {
        return false;
    }
    let Some(host) = absolute.authority().and_then(|a| host_field(absolute, a)) else {
        return false;
    };
    let rest = std::mem::take(req.headers_mut());
    let headers = req.headers_mut();
    headers.reserve(rest.len() + 1);
    headers.insert(http::header::HOST, host);
    headers.extend(rest);
    true
}

/// The `Host` field for `uri`: its authority, the scheme's default port left out.
fn host_field(uri: &Uri, authority: &http::uri::Authority) -> Option<HeaderValue> {
    let default = if uri.scheme_str() == Some("https") {
        443
    } else {
        80
    };
    let host = match authority.port_u16() {
        Some(port) if port != default => authority.as_str(),
        _ => authority.host(),
    };
    HeaderValue::from_str(host).ok()
}

/// What [`origin_form`] (or [`proxy_form`]) changed, to undo for a request that goes
/// out on another connection (which may speak HTTP/2: absolute URI, no `Host`).
pub(crate) struct OriginForm {
    /// The request's absolute URI.
    pub(crate) absolute: Uri,
    added_host: bool,
    added_authorization: bool,
}

impl OriginForm {
    fn apply<B>(self, mut req: Request<B>) -> Request<B> {
        *req.uri_mut() = self.absolute;
        if self.added_host {
            req.headers_mut().remove(http::header::HOST);
        }
        if self.added_authorization {
            req.headers_mut().remove(http::header::PROXY_AUTHORIZATION);
        }
        req
    }
}

/// The runtime the calling task runs on: where it spawns the tasks it starts.
fn current_runtime() -> Option<tokio::runtime::Id> {
    tokio::runtime::Handle::try_current().ok().map(|h| h.id())
}

/// The key connections to `target` are kept under: host names compare case-insensitively.
fn origin_key(target: &Target) -> Target {
    Target {
        https: target.https,
        host: target.host.to_ascii_lowercase(),
        port: target.port,
        dial: target.dial,
    }
}

/// Whether `kept` (an [`origin_key`]) is where `target` goes.
fn same_origin(kept: &Target, target: &Target) -> bool {
    kept.https == target.https
        && kept.port == target.port
        && kept.host.eq_ignore_ascii_case(&target.host)
        && kept.dial == target.dial
}

/// Why a request got no response.
pub(crate) enum SendError {
    /// No connection to the origin could be made.
    Connect(ConnectError),
    /// The connection failed before a response head came.
    Http(hyper::Error),
}

/// Every connection to origins a proxy keeps.
pub(crate) struct Upstreams {
    connector: UpstreamConnector,
    /// For requests that switch protocols (WebSocket): offers origins HTTP/1.1 only,
    /// since upgrades do not exist in HTTP/2.
    http1_connector: UpstreamConnector,
    idle: Mutex<Idle>,
    /// Most header fields taken in an HTTP/1.1 response (see [`MAX_RESPONSE_FIELDS`]).
    response_fields: usize,
}

/// The connections no client connection holds.
struct Idle {
    http1: HashMap<Target, Vec<Connection>>,
    /// One per origin and connection thread: a request on another thread's connection
    /// would wake that thread to go out, and its own again when answered.
    http2: HashMap<(Target, Option<tokio::runtime::Id>), Connection>,
    swept_at: Instant,
}

impl Idle {
    /// Closes the connections that are closing or were unused for [`IDLE_TIMEOUT`].
    fn sweep(&mut self, now: Instant) {
        self.swept_at = now;
        self.http1.retain(|_, list| {
            list.retain(|c| c.is_open() && now.duration_since(c.idle_since) < IDLE_TIMEOUT);
            !list.is_empty()
        });
        self.http2
            .retain(|_, c| c.is_open() && now.duration_since(c.idle_since) < IDLE_TIMEOUT);
    }
}

/// How often unused connections are looked over.
const SWEEP_EVERY: Duration = Duration::from_secs(IDLE_TIMEOUT.as_secs() / 4);

impl Upstreams {
    /// Connects through `connector`, and through `http1_connector` to switch protocols;
    /// HTTP/1.1 responses may carry `response_fields` header fields (at least
    /// [`MAX_RESPONSE_FIELDS`]). Unused connections are closed in the background until
    /// the last handle goes.
    pub(crate) fn start(
        connector: UpstreamConnector,
        http1_connector: UpstreamConnector,
        response_fields: usize,
    ) -> Arc<Self> {
        let upstreams = Arc::new(Upstreams {
            connector,
            http1_connector,
            response_fields: response_fields.max(MAX_RESPONSE_FIELDS),
            idle: Mutex::new(Idle {
                http1: HashMap::new(),
                http2: HashMap::new(),
                swept_at: Instant::now(),
            }),
        });
        let weak = Arc::downgrade(&upstreams);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(SWEEP_EVERY).await;
                let Some(upstreams) = weak.upgrade() else {
                    return;
                };
                upstreams.idle().sweep(Instant::now());
            }
        });
        upstreams
    }

    fn idle(&self) -> MutexGuard<'_, Idle> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends `req` (its URI absolute, naming `target`) to the origin: on the connection
    /// `kept` holds when it goes there, else on an idle one, else on a new one. A request
    /// that a reused connection could not take (the origin had closed it) goes out on
    /// the next one; one that a connection failed under before any answer goes out once
    /// more on a new one if that is safe ([`Replay::after`]). `switching`: the request
    /// asks to switch protocols; it gets a connection of its own. `used` is the last
    /// connection the request was given to, known even if this is dropped (timed out)
    /// before it answers.
    pub(crate) async fn send(
        &self,
        kept: &Arc<KeptConnection>,
        target: &Target,
        mut req: Request<UpstreamBody>,
        switching: bool,
        used: &mut Option<ConnectionInfo>,
    ) -> Result<(Response<Incoming>, Lease), SendError> {
        let mut replayed = false;
        if !switching {
            while let Some(mut conn) = kept.take_for(target).or_else(|| self.checkout(target)) {
                *used = Some(conn.info.clone());
                let replay = Replay::of(&req, &conn);
                match conn.send(req).await {
                    Ok(response) => return Ok((response, Lease::of(conn, kept))),
                    Err((_, Some(unsent))) => req = unsent,
                    // Sent, and no answer came: once more, on a connection of its own.
                    Err((error, None)) => match replay.and_then(|r| r.after(&error, true)) {
                        Some(again) => {
                            req = again;
                            replayed = true;
                            break;
                        }
                        None => return Err(SendError::Http(error)),
                    },
                }
            }
        }
        let connector = match switching {
            true => &self.http1_connector,
            false => &self.connector,
        };
        loop {
            // A connection that could not take the request is not the one it waits on now.
            *used = None;
            let mut conn = self.open(connector, target, used).await?;
            // An HTTP/2 origin may refuse a stream on a new connection too (going away
            // as it starts): once more then, but only once in all.
            let replay = (!replayed && conn.is_http2())
                .then(|| Replay::of(&req, &conn))
                .flatten();
            match conn.send(req).await {
                Ok(response) if switching => {
                    let lease = Lease {
                        info: conn.info,
                        kept: None,
                    };
                    return Ok((response, lease));
                }
                Ok(response) => return Ok((response, Lease::of(conn, kept))),
                Err((error, _)) => match replay.and_then(|r| r.after(&error, false)) {
                    Some(again) => {
                        req = again;
                        replayed = true;
                    }
                    None => return Err(SendError::Http(error)),
                },
            }
        }
    }

    /// An idle connection to `target` that is still open: this connection thread's
    /// HTTP/2 one shared, or an HTTP/1.1 one taken, one driven on this thread first. One
    /// from another thread costs two wake-ups across threads for every request it
    /// carries (measured, HTTPS to nginx after the clients reconnected: 11% more CPU per
    /// request).
    fn checkout(&self, target: &Target) -> Option<Connection> {
        let key = origin_key(target);
        let here = current_runtime();
        let now = Instant::now();
        let mut idle = self.idle();
        let shared_key = (key.clone(), here);
        if let Some(shared) = idle.http2.get_mut(&shared_key) {
            if shared.is_open() {
                // In use: the sweep leaves it open for another IDLE_TIMEOUT.
                shared.idle_since = now;
                return shared.share();
            }
            idle.http2.remove(&shared_key);
        }
        let list = idle.http1.get_mut(&key)?;
        list.retain(|conn| conn.is_open() && now.duration_since(conn.idle_since) < IDLE_TIMEOUT);
        let found = match list.iter().rposition(|conn| conn.runtime == here) {
            Some(at) => Some(list.remove(at)),
            None => list.pop(),
        };
        if list.is_empty() {
            idle.http1.remove(&key);
        }
        found
    }

    /// Keeps an unused HTTP/1.1 connection for later, unless it is closed or there are
    /// enough for its origin.
    fn keep_idle(&self, mut conn: Connection) {
        if !conn.is_open() {
            return;
        }
        let now = Instant::now();
        conn.idle_since = now;
        let mut idle = self.idle();
        // A busy proxy sweeps as it goes, between the background sweeps.
        if now.duration_since(idle.swept_at) >= SWEEP_EVERY {
            idle.sweep(now);
        }
        let list = idle.http1.entry(conn.target.clone()).or_default();
        // Full: the oldest goes, the one an origin is likeliest to have closed.
        if list.len() >= MAX_IDLE_PER_ORIGIN {
            list.remove(0);
        }
        list.push(conn);
    }

    /// Opens a connection to `target` and starts driving it on a task of its own.
    async fn open(
        &self,
        connector: &UpstreamConnector,
        target: &Target,
        used: &mut Option<ConnectionInfo>,
    ) -> Result<Connection, SendError> {
        let io = connector.open(target).await.map_err(SendError::Connect)?;
        let info = io.info().clone();
        *used = Some(info.clone());
        let failed = SendError::Http;
        let sender = if info.is_http2() {
            let (sender, connection) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .max_header_list_size(MAX_RESPONSE_HEAD_BYTES)
                .handshake(io)
                .await
                .map_err(failed)?;
            tokio::spawn(connection);
            Sender::Http2(sender)
        } else {
            let mut builder = http1::Builder::new();
            builder.preserve_header_case(true);
            // A response with more is a 502 that says so (`classify_upstream_error`).
            if self.response_fields > MAX_RESPONSE_FIELDS {
                builder.max_headers(self.response_fields);
            }
            let (sender, connection) = builder.handshake(io).await.map_err(failed)?;
            tokio::spawn(connection.with_upgrades());
            Sender::Http1(sender)
        };
        let conn = Connection {
            target: origin_key(target),
            sender,
            info,
            idle_since: Instant::now(),
            runtime: current_runtime(),
        };
        if let Some(shared) = conn.share() {
            let key = (shared.target.clone(), shared.runtime);
            self.idle().http2.insert(key, shared);
        }
        Ok(conn)
    }
}

/// The HTTP/1.1 connection a client connection keeps between its requests; handed to
/// the idle list when the client connection ends.
pub(crate) struct KeptConnection {
    upstreams: Arc<Upstreams>,
    conn: Mutex<Option<Connection>>,
}

impl KeptConnection {
    /// Nothing kept yet, for a new client connection.
    pub(crate) fn new(upstreams: &Arc<Upstreams>) -> Arc<Self> {
        Arc::new(KeptConnection {
            upstreams: upstreams.clone(),
            conn: Mutex::new(None),
        })
    }

    fn slot(&self) -> MutexGuard<'_, Option<Connection>> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The kept connection if it goes to `target`; one to elsewhere goes idle.
    fn take_for(&self, target: &Target) -> Option<Connection> {
        let conn = self.slot().take()?;
        // Closed, or its origin stopped taking writes, since it was kept: it goes.
        if !conn.is_open() {
            return None;
        }
        if same_origin(&conn.target, target) {
            return Some(conn);
        }
        self.upstreams.keep_idle(conn);
        None
    }

    /// Keeps `conn` unless a connection is kept already (a concurrent HTTP/2 request
    /// took another), in which case it goes idle.
    fn keep(&self, conn: Connection) {
        let mut slot = self.slot();
        if slot.is_none() {
            *slot = Some(conn);
        } else {
            drop(slot);
            self.upstreams.keep_idle(conn);
        }
    }
}

impl Drop for KeptConnection {
    fn drop(&mut self) {
        let kept = self.slot().take();
        if let Some(conn) = kept {
            self.upstreams.keep_idle(conn);
        }
    }
}

/// A response's hold on the connection it came on.
pub(crate) struct Lease {
    /// The connection it came on.
    pub(crate) info: ConnectionInfo,
    kept: Option<(Connection, Arc<KeptConnection>)>,
}

impl Lease {
    /// The lease of a response that came on `conn`: an HTTP/1.1 connection goes back to
    /// `kept` when the response has been read; an HTTP/2 one is shared and stays where
    /// it is.
    fn of(conn: Connection, kept: &Arc<KeptConnection>) -> Lease {
        let info = conn.info.clone();
        match conn.sender {
            Sender::Http1(_) => Lease {
                info,
                kept: Some((conn, kept.clone())),
            },
            Sender::Http2(_) => Lease { info, kept: None },
        }
    }

    /// The response has been read to its end: the connection can take the next request.
    /// `request_sent`: the request body has ended too, so the connection is idle or a
    /// moment from it (hyper's dispatch may not have seen the response's end yet): it is
    /// kept for the client's next request, which waits that moment rather than open
    /// another. (A lease dropped instead closes an HTTP/1.1 connection: what is left of
    /// the response would be read as the next one's.)
    pub(crate) fn release(self, request_sent: bool) {
        let Some((conn, kept)) = self.kept else {
            return;
        };
        if request_sent || conn.is_ready() {
            kept.keep(conn);
            return;
        }
        // Still sending the request body to an origin that answered early: the client's
        // next request must not wait behind it. Idle once it is done.
        let upstreams = kept.upstreams.clone();
        let mut conn = conn;
        tokio::spawn(async move {
            let ready = std::future::poll_fn(|cx| conn.poll_ready(cx));
            let ready = tokio::time::timeout(IDLE_TIMEOUT, ready).await;
            if let Ok(Ok(())) = ready {
                upstreams.keep_idle(conn);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(uri: &str, host: Option<&str>) -> Request<()> {
        let mut builder = Request::builder().uri(uri);
        if let Some(host) = host {
            builder = builder.header(http::header::HOST, host);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn http1_gets_the_origin_form_and_a_host_field_from_the_uri() {
        let mut req = request("http://example.com:8080/a/b?c=d", None);
        let undo = origin_form(&mut req);
        assert_eq!(req.uri(), "/a/b?c=d");
        assert_eq!(req.headers()["host"], "example.com:8080");
        // Undone for another connection: as it was given.
        let req = undo.apply(req);
        assert_eq!(req.uri(), "http://example.com:8080/a/b?c=d");
        assert!(!req.headers().contains_key("host"));

        let mut req = request("https://[::1]:443", None);
        origin_form(&mut req);
        assert_eq!(req.uri(), "/");
        assert_eq!(req.headers()["host"], "[::1]");

        // The client's own Host (one naming another name) goes as it is.
        let mut req = request("http://10.0.0.1/x", Some("api.example"));
        let undo = origin_form(&mut req);
        assert_eq!(req.uri(), "/x");
        assert_eq!(req.headers()["host"], "api.example");
        assert_eq!(undo.apply(req).headers()["host"], "api.example");
    }

    fn connection_thread() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn an_idle_connection_is_taken_on_the_thread_that_drives_it_when_there_is_one() {
        crate::tls::install_crypto_provider();
        let origin = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target = Target {
            https: false,
            host: "127.0.0.1".into(),
            port: origin.local_addr().unwrap().port(),
            dial: None,
        };
        // The origin holds its connections open.
        let held = std::thread::spawn(move || {
            (0..2)
                .map(|_| origin.accept().unwrap().0)
                .collect::<Vec<_>>()
        });
        let tls = rustls::ClientConfig::builder()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let dialer = super::super::upstream::Dialer {
            hosts: Default::default(),
            timeout: Duration::from_secs(5),
            itself: super::super::ProxyAddress::of_listener("127.0.0.1:9".parse().unwrap()),
            parent: None,
        };
        let (a, b) = (connection_thread(), connection_thread());
        let upstreams = a.block_on(async {
            Upstreams::start(
                UpstreamConnector::new(tls.clone(), dialer.clone()),
                UpstreamConnector::new(tls, dialer),
                MAX_RESPONSE_FIELDS,
            )
        });
        let open = |thread: &tokio::runtime::Runtime| {
            thread
                .block_on(upstreams.open(&upstreams.connector, &target, &mut None))
                .unwrap_or_else(|_| panic!("no connection to the origin"))
        };
        let (on_a, on_b) = (open(&a), open(&b));
        assert_eq!(on_a.runtime, Some(a.handle().id()));
        assert_eq!(on_b.runtime, Some(b.handle().id()));
        let _held = held.join().unwrap();

        // The last one kept would be next; each thread takes its own instead.
        upstreams.keep_idle(on_a);
        upstreams.keep_idle(on_b);
        let checkout = |thread: &tokio::runtime::Runtime| {
            thread.block_on(async { upstreams.checkout(&target) })
        };
        let runtime = |conn: &Option<Connection>| conn.as_ref().and_then(|conn| conn.runtime);
        let taken_by_a = checkout(&a);
        let taken_by_b = checkout(&b);
        assert_eq!(runtime(&taken_by_a), Some(a.handle().id()));
        assert_eq!(runtime(&taken_by_b), Some(b.handle().id()));
        assert!(checkout(&a).is_none(), "both were taken");

        // With none of its own, a thread takes another's rather than open one.
        upstreams.keep_idle(taken_by_b.unwrap());
        assert_eq!(runtime(&checkout(&a)), Some(b.handle().id()));
    }
}
