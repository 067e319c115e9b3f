//! One HTTP exchange through the proxy, in phases: request head recorded, upstream
//! request sent, response head recorded, response body streamed back; the flow is
//! published when the response body ends (or the exchange fails).

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::{Request, Response, Uri, Version};
use http_body::Body as _;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

use super::errors::ProxyFailure;
use super::headers::{remove_in_order, strip_hop_by_hop};
use super::pool::{KeptConnection, Lease, SendError};
use super::relay::RelayRecord;
use super::tee::{
    take_unread, BodyCapture, BodyEnd, ContinueGate, OnBodyEnd, Resumed, ReturnedIfUnread,
    SharedCapture, TeeBody, UnreadSlot,
};
use super::upstream::ConnectionInfo;
use super::{
    port_number, split_port, BoxError, ConnectionPermit, ProxyBody, Shared, Target, UpstreamBody,
};
use crate::events::{FlowSlot, Stored};
use crate::flow::{
    unbracketed, CapturedBody, Flow, FlowError, FlowErrorKind, FlowKind, Headers, RequestRecord,
    ResponseRecord, Timings, TlsInfo,
};

/// The client end of an exchange.
#[derive(Debug, Clone)]
pub(crate) struct ClientSide {
    pub(crate) addr: SocketAddr,
    pub(crate) tls: Option<Arc<TlsInfo>>,
    /// The client connection's place under `--max-connections`, for what outlives the
    /// connection's HTTP serving (a WebSocket relay) to hold; none for a refusal.
    pub(crate) permit: Option<ConnectionPermit>,
}

/// A flow with only its request side known yet, listed as under way
/// ([`FlowSlot::started`]).
pub(crate) fn new_flow(
    slot: &FlowSlot,
    kind: FlowKind,
    client: &ClientSide,
    started_at: SystemTime,
    target: &Target,
    request: RequestRecord,
) -> Flow {
    let flow = Flow {
        id: slot.id(),
        kind,
        client_addr: client.addr,
        started_at,
        scheme: target.scheme().to_owned(),
        host: target.host.clone(),
        port: target.port,
        request,
        response: None,
        timings: Timings::default(),
        server_ip: None,
        client_tls: client.tls.clone(),
        server_tls: None,
        error: None,
        websocket: None,
        replay_of: None,
    };
    slot.started(&flow);
    flow
}

/// Takes kinspect's own credential (`--proxy-auth`, right or wrong) out of `headers`:
/// never recorded, never forwarded.
pub(crate) fn without_proxy_credentials(headers: &mut http::HeaderMap) {
    remove_in_order(headers, |name, _| name == http::header::PROXY_AUTHORIZATION);
}

/// What a client is told with an answer after which kinspect reads no more of its
/// connection (a request it refuses outright): `Connection: close`, over HTTP/1 (an
/// HTTP/2 stream is one request: nothing to close).
pub(crate) fn closing(mut response: Response<ProxyBody>, version: Version) -> Response<ProxyBody> {
    if version <= Version::HTTP_11 {
        response.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    response
}

/// The request side of a flow, its body still to come.
fn request_record(parts: &http::request::Parts, url: String) -> RequestRecord {
    RequestRecord {
        method: parts.method.as_str().to_owned(),
        url,
        version: parts.version.into(),
        headers: Headers::from_map(&parts.headers),
        body: CapturedBody::default(),
    }
}

/// Answers `req` (for `target`) with `failure` without sending it anywhere, and records
/// the exchange: a request refused for want of the `--proxy-auth` credentials.
pub(crate) async fn refuse(
    shared: &Arc<Shared>,
    client: &ClientSide,
    target: &Target,
    req: Request<Incoming>,
    failure: ProxyFailure,
) -> Response<ProxyBody> {
    let (mut parts, _unread) = req.into_parts();
    let url = recorded_url(target, &parts);
    let pending = Pending::start(shared, client, target, &mut parts, url).await;
    pending.answer(None, failure).await
}

/// Records `req` (for `target`), which its client gave up on before kinspect began on it
/// (see `unstarted`): its connection ended right behind the request.
pub(crate) async fn record_given_up(
    shared: &Arc<Shared>,
    client: &ClientSide,
    target: &Target,
    req: Request<Incoming>,
) {
    let (mut parts, _unread) = req.into_parts();
    let url = recorded_url(target, &parts);
    let mut pending = Pending::start(shared, client, target, &mut parts, url).await;
    let (slot, mut flow) = pending.take();
    flow.error = Some(FlowError {
        kind: FlowErrorKind::ClientAbort,
        message: "the client's side of the connection ended right behind this request (a close, \
                  or a shut-down sending side as `nc -N` does): kinspect, like nginx, takes \
                  that as the client giving up, and did not send the request on"
            .into(),
    });
    slot.publish(flow);
}

/// The URL a flow of a request for `target` records.
fn recorded_url(target: &Target, parts: &http::request::Parts) -> String {
    if parts.method == http::Method::CONNECT {
        target.authority()
    } else {
        target.url(parts.uri.path_and_query().map_or("/", |p| p.as_str()))
    }
}

/// Answers `req` with `failure` and records it with its URL as sent: a request kinspect
/// cannot forward at all (no usable target), its host and port taken as far as they go.
pub(crate) async fn refuse_as_sent(
    shared: &Arc<Shared>,
    client: &ClientSide,
    req: Request<Incoming>,
    failure: ProxyFailure,
) -> Response<ProxyBody> {
    let (mut parts, _unread) = req.into_parts();
    let uri = &parts.uri;
    let target = Target {
        https: parts.method == http::Method::CONNECT || uri.scheme_str() == Some("https"),
        host: unbracketed(uri.host().unwrap_or_default()).to_owned(),
        port: uri
            .authority()
            .and_then(|a| port_number(split_port(a.as_str()).1?))
            .unwrap_or(0),
        dial: None,
    };
    let url = uri.to_string();
    let pending = Pending::start(shared, client, &target, &mut parts, url).await;
    pending.answer(None, failure).await
}

/// kinspect's 431 for an HTTP/2 request over the head limits hyper holds HTTP/1 heads
/// to (`--max-header-bytes`, `--max-headers`), or `None`. The HTTP/2 layer lets larger
/// header lists through (see [`http2_header_list_limit`]) so that such a request is
/// answered and recorded here, as an HTTP/1 one is, instead of refused unseen. A list's
/// size is counted as HTTP/2 counts it: each field's name and value plus 32 bytes,
/// pseudo-fields included (RFC 9113 §6.5.2).
fn oversized_http2_head(
    req: &Request<Incoming>,
    config: &super::ProxyConfig,
) -> Option<ProxyFailure> {
    if req.version() != Version::HTTP_2 {
        return None;
    }
    let uri = req.uri();
    let pseudo = [
        (":method".len(), req.method().as_str().len()),
        (":scheme".len(), uri.scheme_str().map_or(0, str::len)),
        (
            ":authority".len(),
            uri.authority().map_or(0, |a| a.as_str().len()),
        ),
        (
            ":path".len(),
            uri.path_and_query().map_or(0, |p| p.as_str().len()),
        ),
    ];
    let fields = req
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str().len(), value.len()));
    let size: usize = pseudo
        .into_iter()
        .filter(|&(_, value)| value > 0)
        .chain(fields)
        .map(|(name, value)| name + value + 32)
        .sum();
    // An HTTP/2 client may send its cookies as a field each; over HTTP/1 they are one.
    let cookies = req.headers().get_all(http::header::COOKIE).iter().count();
    let count = req.headers().len() - cookies.saturating_sub(1);
    let what = if size > config.max_header_bytes {
        format!(
            "its header list is {size} bytes as HTTP/2 counts it (each field's name and value \
             plus 32), more than --max-header-bytes ({}) allows",
            config.max_header_bytes
        )
    } else if count > config.max_headers {
        format!(
            "it has {count} header fields, more than --max-headers ({}) allows",
            config.max_headers
        )
    } else {
        return None;
    };
    let mut failure = ProxyFailure::new(
        FlowErrorKind::BadRequest,
        format!("the request is too large to proxy: {what} (the capture keeps its fields' first 16 KiB)"),
    );
    failure.status = http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
    Some(failure)
}

/// The header list the HTTP/2 layer decodes before refusing a request unseen (with its
/// own bare 431): past `max_header_bytes`, so that kinspect answers and records requests
/// over that limit, yet bounded, since a list is held whole while decoded (and each of
/// a connection's streams may hold one).
pub fn http2_header_list_limit(max_header_bytes: usize) -> u32 {
    let limit = max_header_bytes.saturating_mul(2).max(128 << 10);
    u32::try_from(limit).unwrap_or(u32::MAX)
}

/// Bytes of a value kept in the flow of a request refused for its head's size.
const OVERSIZED_VALUE_KEPT: usize = 1024;

/// What the flow of a request refused for its head's size keeps of its fields: each
/// value's first KiB (`...` after a cut one), fields in order until
/// [`HEAD_KEPT`](super::bad_head::HEAD_KEPT) bytes, as for an HTTP/1 head; enough to
/// see which field made it too large, little to store however large it was.
fn head_kept(headers: &http::HeaderMap) -> http::HeaderMap {
    let mut kept = http::HeaderMap::new();
    let mut room = super::bad_head::HEAD_KEPT;
    for (name, value) in headers {
        let bytes = value.as_bytes();
        let cut = bytes.len().min(OVERSIZED_VALUE_KEPT);
        let shown = match cut < bytes.len() {
            true => [&bytes[..cut], b"..."].concat(),
            false => bytes.to_vec(),
        };
        let Some(left) = room.checked_sub(name.as_str().len() + shown.len()) else {
            break;
        };
        room = left;
        if let Ok(value) = http::HeaderValue::from_bytes(&shown) {
            kept.append(name.clone(), value);
        }
    }
    kept
}

/// Proxies one request to `target` and returns the response to send to the client.
pub(crate) async fn forward(
    shared: &Arc<Shared>,
    client: &ClientSide,
    kept: &Arc<KeptConnection>,
    target: &Target,
    mut req: Request<Incoming>,
) -> Response<ProxyBody> {
    if let Some(failure) = oversized_http2_head(&req, &shared.config) {
        let kept = head_kept(req.headers());
        *req.headers_mut() = kept;
        return refuse(shared, client, target, req, failure).await;
    }
    if req
        .headers()
        .get_all(http::header::HOST)
        .iter()
        .nth(1)
        .is_some()
    {
        // RFC 9112 §3.2: which host is meant cannot be told, and servers behind could
        // each take another one.
        let failure = ProxyFailure::new(
            FlowErrorKind::BadRequest,
            "the request has more than one Host field: send one",
        );
        // What the client sends next on this connection is no more to be trusted.
        let version = req.version();
        return closing(refuse(shared, client, target, req, failure).await, version);
    }
    if super::ca_page::is_ca_host(&target.host) {
        return super::ca_page::respond(&shared.ca, req.uri().path()).map(full_body);
    }
    let upgrade = upgrade_protocol(req.headers());
    let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    // Default ports left out: an HTTP/2 origin takes the authority as its Host.
    let url = target.url(path);
    let upstream_uri = Uri::try_from(url.as_str());
    let mut pending = Pending::start(shared, client, target, &mut parts, url).await;
    let t0 = pending.t0;

    if shared.itself.is_target(target) {
        let failure = ProxyFailure::new(
            FlowErrorKind::BadRequest,
            format!(
                "{} is kinspect itself: the request would loop back into the proxy",
                target.authority()
            ),
        );
        return pending.answer(None, failure).await;
    }
    let uri = match upstream_uri {
        Ok(uri) => uri,
        Err(e) => {
            let failure = ProxyFailure::new(
                FlowErrorKind::BadRequest,
                format!(
                    "cannot build an upstream URL for {}: {e}",
                    target.authority()
                ),
            );
            return pending.answer(None, failure).await;
        }
    };
    parts.uri = uri;
    if parts.version == Version::HTTP_2 {
        join_cookies(&mut parts.headers);
    }
    parts.version = Version::HTTP_11;
    // The target's authority travels in the URI too: the upstream connection decides
    // what becomes of the client's `Host` (see `pool`).
    strip_hop_by_hop(&mut parts.headers);
    if let Some(protocol) = &upgrade {
        keep_upgrade(&mut parts.headers, protocol);
    }

    let max_body = shared.config.max_body;
    let req_capture: SharedCapture = Arc::new(Mutex::new(expecting(max_body, &body)));
    pending.req_capture = Some(req_capture.clone());
    // An empty body has nothing to give back: no slot, no allocation.
    let unread: Option<UnreadSlot<TeeBody<Incoming>>> =
        (!body.is_end_stream()).then(|| Arc::new(Mutex::new(None)));
    let teed = TeeBody::new(body, req_capture.clone(), None);
    let body = ReturnedIfUnread::new(teed, unread.clone()).lingering(linger);
    let mut upstream_req = Request::from_parts(parts, body);
    // Refused when this exchange ends, unless the response's end takes it over.
    let mut waiting_body = held_for_continue(&mut upstream_req);
    let timeout = shared.config.upstream_timeout;
    let sent = shared.upstreams.send(
        kept,
        target,
        upstream_req,
        upgrade.is_some(),
        &mut pending.used,
    );
    let (mut response, lease) = match headers_within(timeout, sent, &req_capture).await {
        Ok(Ok(answered)) => {
            if let Some(gate) = &waiting_body.0 {
                gate.answered();
            }
            answered
        }
        Ok(Err(e)) => {
            let (reached, failure) = match e {
                SendError::Connect(e) => (e.reached, ProxyFailure::new(e.kind, e.message)),
                SendError::Http(error) => {
                    let fields = shared.config.max_headers;
                    let failure = classify_upstream_error(&error, target, &req_capture, fields);
                    (None, failure)
                }
            };
            // The origin was never reached: the body is still the client's to send, and
            // the flow's to keep.
            if let Some(body) = unread.as_ref().and_then(take_unread) {
                read_unsent(body).await;
            }
            return pending.answer(reached, failure).await;
        }
        Err(_) => {
            let failure = ProxyFailure::new(
                FlowErrorKind::Timeout,
                format!(
                    "upstream {} sent no response headers within {timeout:?}; \
                     if it is just slow, raise --upstream-timeout",
                    target.authority()
                ),
            );
            return pending.answer(None, failure).await;
        }
    };

    // The parent proxy's own refusal, not the origin's answer: never for the client to
    // take as kinspect asking it for credentials.
    if let (Some(parent), http::StatusCode::PROXY_AUTHENTICATION_REQUIRED) =
        (&lease.info.forward_proxy, response.status())
    {
        let status_line = format!("{:?} {}", response.version(), response.status());
        let asked = format!("the request to {}", target.authority());
        let failure =
            ProxyFailure::new(FlowErrorKind::Connect, parent.refused(&status_line, &asked));
        return pending.answer(Some(lease.info.clone()), failure).await;
    }
    let t_headers = Instant::now();
    if let (Some(client_upgrade), http::StatusCode::SWITCHING_PROTOCOLS) =
        (client_upgrade, response.status())
    {
        let upstream_upgrade = hyper::upgrade::on(&mut response);
        lease.info.relay_begins();
        let (slot, flow) = pending.take();
        return switch_protocols(
            slot,
            flow,
            response,
            &lease.info,
            Upgrades {
                client: client_upgrade,
                upstream: upstream_upgrade,
                max_body,
                permit: client.permit.clone(),
            },
            t0,
            t_headers,
        );
    }
    if response.status() == http::StatusCode::SWITCHING_PROTOCOLS {
        let failure = ProxyFailure::new(
            FlowErrorKind::Protocol,
            format!(
                "upstream {} switched protocols (101) though the request asked for no upgrade",
                target.authority()
            ),
        );
        return pending.answer(None, failure).await;
    }
    let (slot, mut flow) = pending.take();
    let (mut rparts, rbody) = record_response_head(&mut flow, response, &lease.info);
    strip_hop_by_hop(&mut rparts.headers);
    rparts.version = Version::HTTP_11;
    // A 204 has no content, whatever a Content-Length says (RFC 9110 §8.6): an HTTP/2
    // client takes a length without DATA as a broken stream. The flow keeps the field.
    if rparts.status == http::StatusCode::NO_CONTENT {
        remove_in_order(&mut rparts.headers, |name, _| {
            name == http::header::CONTENT_LENGTH
        });
    }

    let end = ExchangeEnd {
        slot,
        flow,
        req_capture,
        t0,
        t_headers,
        fresh_conn: lease.info.take_fresh().then(|| lease.info.clone()),
        lease,
        waiting_body: waiting_body.0.take(),
    };
    let mut capture = expecting(max_body, &rbody);
    // An answer to a HEAD, a 204 and a 304 carry no body whatever length they declare
    // (hyper's HTTP/2 client takes it for the body's all the same).
    let bodiless_status = matches!(rparts.status.as_u16(), 204 | 304);
    if bodiless_status || end.flow.request.method.eq_ignore_ascii_case("HEAD") {
        capture.declares_nothing();
    }
    let capture = Arc::new(Mutex::new(capture));
    if rbody.is_end_stream() {
        // An empty body is never polled, so there is no last frame to hold back: store
        // the flow before the head goes out.
        lock(&capture).end();
        let (slot, flow) = end.into_flow(&capture, BodyEnd::Complete, None);
        slot.publish_durable(flow).await;
        return Response::from_parts(rparts, empty_body());
    }
    let small = rbody
        .size_hint()
        .exact()
        .is_some_and(|length| length <= WHOLE_BODY_LIMIT);
    if small {
        // The last frame waits for the store in any case: a body that comes at once (with
        // its head, as it mostly does) goes out with the head in one write. One still
        // coming after WHOLE_BODY_WAIT streams as any other, so that an origin that
        // sends its head first is not held back to its last byte.
        let mut tee = TeeBody::new(rbody, capture.clone(), None);
        let unfinished = Unfinished(Some((end, capture.clone())));
        let mut read = Vec::new();
        let waited = tokio::time::sleep(WHOLE_BODY_WAIT);
        tokio::pin!(waited);
        let outcome = loop {
            tokio::select! {
                biased;
                frame = tee.frame() => match frame {
                    // Its last declared byte ends it, whenever the end is signalled.
                    Some(Ok(frame)) => {
                        read.push(frame);
                        if lock(&capture).ended_at().is_some() {
                            break Ok(true);
                        }
                    }
                    None => break Ok(true),
                    Some(Err(e)) => break Err(e),
                },
                () = &mut waited => break Ok(false),
            }
        };
        let end = unfinished.take();
        // A body that ended short of its declared length is one that broke off.
        let short = lock(&capture)
            .failure()
            .map(|failure| failure.message.clone());
        let outcome = match (outcome, short) {
            (Ok(true), Some(short)) => Err(short),
            (outcome, _) => outcome.map_err(|e| error_chain(&e)),
        };
        return match outcome {
            Ok(true) => {
                let (slot, flow) = end.into_flow(&capture, BodyEnd::Complete, None);
                slot.publish_durable(flow).await;
                let whole = Resumed::new(read, http_body_util::Empty::new());
                Response::from_parts(rparts, whole.map_err(|never| match never {}).boxed_unsync())
            }
            Ok(false) => {
                let rest = Resumed::new(read, tee.ending_with(Box::new(end)));
                Response::from_parts(rparts, rest.map_err(BoxError::from).boxed_unsync())
            }
            // Nothing has gone to the client yet: it gets kinspect's 502 instead of a
            // connection closed unanswered, and the flow records that 502.
            Err(cause) => {
                let (slot, mut flow) = end.into_flow(&capture, BodyEnd::SourceFailed, Some(cause));
                let broke = flow.error.take().map(|e| e.message).unwrap_or_default();
                let failure = ProxyFailure::new(
                    FlowErrorKind::Protocol,
                    format!(
                        "{broke} (after a {} head); kinspect answered 502",
                        rparts.status
                    ),
                );
                let (head, body) = (failure.response(()), failure.body());
                flow.response = Some(failure.recorded(&head, &body, flow.request.version));
                flow.error = Some(failure.error);
                slot.publish_durable(flow).await;
                head.map(|()| full_body(body))
            }
        };
    }
    let tee = TeeBody::new(rbody, capture, Some(Box::new(end)));
    Response::from_parts(rparts, tee.map_err(BoxError::from).boxed_unsync())
}

/// A capture keeping at most `max_body` bytes, with room made for `body`'s declared length.
fn expecting(max_body: usize, body: &Incoming) -> BodyCapture {
    let mut capture = BodyCapture::new(max_body);
    if let Some(length) = body.size_hint().exact() {
        capture.expect(length);
    }
    capture
}

/// Responses with a declared length up to this are read whole before their head goes
/// out, when they come within [`WHOLE_BODY_WAIT`]: the last frame waits for the store in
/// any case.
const WHOLE_BODY_LIMIT: u64 = 64 * 1024;

/// Longest a response head waits for the rest of a small body (see [`WHOLE_BODY_LIMIT`]).
const WHOLE_BODY_WAIT: std::time::Duration = std::time::Duration::from_millis(10);

/// An exchange's end while its small response body is read before the head goes out:
/// a client that goes away meanwhile (the exchange is dropped) leaves its flow recorded
/// as given up, not lost.
struct Unfinished(Option<(ExchangeEnd, SharedCapture)>);

impl Unfinished {
    fn take(mut self) -> ExchangeEnd {
        self.0.take().expect("taken once").0
    }
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        if let Some((end, capture)) = self.0.take() {
            drop(Box::new(end).body_ended(&capture, BodyEnd::Abandoned, None));
        }
    }
}

/// Longest spent reading a request body the origin never got, to record it.
const UNSENT_BODY_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads a request body that never went upstream (its tee records it), for at most
/// [`UNSENT_BODY_WAIT`]: a body still coming after that is recorded as incomplete.
async fn read_unsent(mut body: TeeBody<Incoming>) {
    let _ = tokio::time::timeout(UNSENT_BODY_WAIT, async {
        while let Some(Ok(_)) = body.frame().await {}
    })
    .await;
}

/// Reads on (and keeps, within `--max-body`) a request body the origin stopped reading
/// part-way, for at most [`UNSENT_BODY_WAIT`]: the client finishes its upload and reads
/// the answer, instead of having its stream reset or its connection closed mid-upload
/// (as nginx lingers). An origin that answers an upload early (a 413) and resets its
/// HTTP/2 stream lets go of it so.
fn linger(body: TeeBody<Incoming>) {
    if body.is_end_stream() {
        return;
    }
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(read_unsent(body));
    }
}

/// Awaits `response`, giving up when no response head came within `limit` of the
/// request body's end: an upload, however slow, is not a silent origin, but one that
/// made no progress for `limit` is.
async fn headers_within<F: std::future::Future>(
    limit: std::time::Duration,
    response: F,
    request_body: &SharedCapture,
) -> Result<F::Output, tokio::time::error::Elapsed> {
    let mut response = std::pin::pin!(response);
    let mut uploaded = 0;
    loop {
        match tokio::time::timeout(limit, response.as_mut()).await {
            Ok(output) => return Ok(output),
            Err(elapsed) => {
                let (sent_at, received) = {
                    let body = lock(request_body);
                    (body.ended_at(), body.received())
                };
                match sent_at {
                    None if received > uploaded => uploaded = received,
                    None => return Err(elapsed),
                    Some(sent_at) if sent_at.elapsed() < limit => {
                        let rest = limit - sent_at.elapsed();
                        return tokio::time::timeout(rest, response.as_mut()).await;
                    }
                    Some(_) => return Err(elapsed),
                }
            }
        }
    }
}

/// Records the response head and the connection it came on; hands back its parts.
fn record_response_head(
    flow: &mut Flow,
    response: Response<Incoming>,
    conn: &ConnectionInfo,
) -> (http::response::Parts, Incoming) {
    let (parts, body) = response.into_parts();
    flow.response = Some(ResponseRecord {
        status: parts.status.as_u16(),
        version: parts.version.into(),
        headers: Headers::from_map(&parts.headers),
        body: CapturedBody::default(),
        from_proxy: false,
    });
    apply_connection(flow, Some(conn));
    (parts, body)
}

/// The protocol a request asks to switch to (`Upgrade: websocket` with
/// `Connection: upgrade`), if any.
fn upgrade_protocol(headers: &http::HeaderMap) -> Option<http::HeaderValue> {
    let asks = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    // HTTP/2 over cleartext by upgrade (RFC 9113 dropped it) is the hop's own business:
    // the request goes on as a plain one, without the upgrade half its fields were
    // stripped from.
    asks.then(|| headers.get(http::header::UPGRADE).cloned())
        .flatten()
        .filter(|protocol| !protocol.as_bytes().eq_ignore_ascii_case(b"h2c"))
}

/// Puts back the hop-by-hop fields an upgrade needs on the next hop.
fn keep_upgrade(headers: &mut http::HeaderMap, protocol: &http::HeaderValue) {
    headers.insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("upgrade"),
    );
    headers.insert(http::header::UPGRADE, protocol.clone());
}

/// Both ends of a switched connection, once hyper hands them over, and how much of a
/// WebSocket's messages to keep.
struct Upgrades {
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    /// Payload bytes kept (`--max-body`).
    max_body: usize,
    /// The client connection's place, held while the relay runs.
    permit: Option<ConnectionPermit>,
}

/// Answers a 101 to the client and relays the switched connection (WebSocket) in both
/// directions; the flow is recorded when it closes, with the bytes each way.
fn switch_protocols(
    slot: FlowSlot,
    mut flow: Flow,
    response: Response<Incoming>,
    conn: &ConnectionInfo,
    upgrades: Upgrades,
    t0: Instant,
    t_headers: Instant,
) -> Response<ProxyBody> {
    let (mut rparts, _) = record_response_head(&mut flow, response, conn);
    // An upgrade always opens its own connection: its set-up is part of the time.
    let fresh = Some(conn).filter(|c| c.take_fresh());
    flow.timings = exchange_timings(t0, Some(t0), t_headers, t_headers, fresh);
    let protocol = upgrade_protocol(&rparts.headers);
    strip_hop_by_hop(&mut rparts.headers);
    if let Some(protocol) = &protocol {
        keep_upgrade(&mut rparts.headers, protocol);
    }
    let mut record = RelayRecord::new(slot, flow, t_headers);
    let websocket = protocol
        .as_ref()
        .is_some_and(|p| p.as_bytes().eq_ignore_ascii_case(b"websocket"));
    if websocket {
        let extensions = rparts
            .headers
            .get_all(http::header::SEC_WEBSOCKET_EXTENSIONS)
            .iter()
            .filter_map(|v| v.to_str().ok());
        let negotiated = crate::websocket::Negotiated::from_extensions(extensions);
        record = record.reading_websocket(crate::websocket::Connection::new(
            negotiated,
            upgrades.max_body as u64,
        ));
    }
    tokio::spawn(async move {
        let _permit = upgrades.permit;
        let error = match tokio::try_join!(upgrades.client, upgrades.upstream) {
            Ok((client, upstream)) => super::relay::relay(
                hyper_util::rt::TokioIo::new(client),
                hyper_util::rt::TokioIo::new(upstream),
                record.counts(),
            )
            .await
            .map(|e| e.to_string()),
            Err(e) => Some(e.to_string()),
        };
        let (slot, mut flow) = record.finish();
        if let Some(e) = error {
            flow.error = Some(FlowError {
                kind: FlowErrorKind::Protocol,
                message: format!(
                    "the switched connection to {}:{} broke: {e}",
                    flow.host, flow.port
                ),
            });
        }
        slot.publish(flow);
    });
    Response::from_parts(rparts, empty_body())
}

/// HTTP/2 clients send each cookie as its own field; HTTP/1 origins expect one `Cookie`
/// line (RFC 9113 §8.2.3).
fn join_cookies(headers: &mut http::HeaderMap) {
    let cookies: Vec<&[u8]> = headers
        .get_all(http::header::COOKIE)
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    if cookies.len() < 2 {
        return;
    }
    let joined = cookies.join(&b"; "[..]);
    if let Ok(value) = http::HeaderValue::from_bytes(&joined) {
        headers.insert(http::header::COOKIE, value);
    }
}

/// An exchange waiting for its answer. If it is dropped unanswered — the client went
/// away before the response headers came — it still records its flow.
struct Pending {
    parts: Option<(FlowSlot, Flow)>,
    t0: Instant,
    req_capture: Option<SharedCapture>,
    /// The connection the request went out on, once it did.
    used: Option<ConnectionInfo>,
}

impl Pending {
    /// An exchange of `parts` on `url` starting now: its queue slot reserved and its
    /// request recorded, without kinspect's own credential (`--proxy-auth`, right or
    /// wrong: never recorded, never forwarded).
    async fn start(
        shared: &Shared,
        client: &ClientSide,
        target: &Target,
        parts: &mut http::request::Parts,
        url: String,
    ) -> Pending {
        let t0 = Instant::now();
        let started_at = SystemTime::now();
        let slot = shared.publisher.reserve().await;
        without_proxy_credentials(&mut parts.headers);
        let request = request_record(parts, url);
        let flow = new_flow(&slot, FlowKind::Http, client, started_at, target, request);
        Pending {
            parts: Some((slot, flow)),
            t0,
            req_capture: None,
            used: None,
        }
    }

    /// The slot and flow, for the exchange that got its answer.
    fn take(&mut self) -> (FlowSlot, Flow) {
        self.parts.take().expect("an exchange is answered once")
    }

    /// Records what is known of an exchange that got no response head: the request body
    /// so far, the connection `conn` it went out on, and the time it waited.
    fn record_unanswered(&self, flow: &mut Flow, conn: Option<&ConnectionInfo>) {
        if let Some(capture) = &self.req_capture {
            flow.request.body = lock(capture).snapshot();
        }
        apply_connection(flow, conn);
        flow.timings.wait = self.t0.elapsed();
        // A connection made for this exchange: its setup is part of the time, as for an
        // answered exchange.
        if let Some(conn) = conn.filter(|c| c.take_fresh()) {
            let setup = conn.dns.unwrap_or_default() + conn.connect;
            flow.timings.dns = conn.dns;
            flow.timings.connect = Some(conn.connect);
            flow.timings.ssl = conn.ssl;
            flow.timings.wait = flow.timings.wait.saturating_sub(setup);
        }
    }

    /// Records the flow with `failure` and returns the proxy's JSON error response.
    /// `reached`: the connection a failed connect made, when the request went out on
    /// none.
    async fn answer(
        mut self,
        reached: Option<ConnectionInfo>,
        failure: ProxyFailure,
    ) -> Response<ProxyBody> {
        let (slot, mut flow) = self.take();
        let conn = self.used.take().or(reached);
        let body = failure.body();
        let response = failure.response(());
        // A client that went away in the middle of its upload gets no answer.
        if failure.error.kind != FlowErrorKind::ClientAbort {
            flow.response = Some(failure.recorded(&response, &body, flow.request.version));
        }
        self.record_unanswered(&mut flow, conn.as_ref());
        flow.error = Some(failure.error);
        slot.publish_durable(flow).await;
        response.map(|()| full_body(body))
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let Some((slot, mut flow)) = self.parts.take() else {
            return;
        };
        let used = self.used.take();
        self.record_unanswered(&mut flow, used.as_ref());
        let waited = self.t0.elapsed();
        flow.error = Some(match slot.proxy_stopping() {
            true => FlowError {
                kind: FlowErrorKind::Stopped,
                message: format!(
                    "kinspect stopped after {waited:.1?}, before the response headers arrived"
                ),
            },
            false => FlowError {
                kind: FlowErrorKind::ClientAbort,
                message: format!(
                    "the client went away after {waited:.1?}, before the response headers arrived"
                ),
            },
        });
        slot.publish(flow);
    }
}

/// Finishes the flow when the response body ends.
struct ExchangeEnd {
    slot: FlowSlot,
    flow: Flow,
    req_capture: SharedCapture,
    t0: Instant,
    t_headers: Instant,
    fresh_conn: Option<ConnectionInfo>,
    /// Released for the next request once the response body has been read whole.
    lease: Lease,
    /// A request body held for the origin's 100 Continue: refused once the response ends
    /// (while the response streams, ending the request unsent would cut it).
    waiting_body: Option<ContinueGate>,
}

/// Refuses a request body still held for a 100 Continue when dropped: the exchange is
/// over without the origin asking for it.
struct RefusedAtEnd(Option<ContinueGate>);

/// Holds `req`'s body for the origin's 100 Continue when its client asked for one (see
/// [`ContinueGate`]); the gate comes back in a guard that refuses the body when dropped.
fn held_for_continue(req: &mut Request<UpstreamBody>) -> RefusedAtEnd {
    let asks = !req.body().is_end_stream()
        && (req.headers().get(http::header::EXPECT))
            .is_some_and(|e| e.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if !asks {
        return RefusedAtEnd(None);
    }
    let gate = ContinueGate::default();
    req.body_mut().hold_at(gate.clone());
    let continued = gate.clone();
    hyper::ext::on_informational(req, move |answer| {
        if answer.status() == http::StatusCode::CONTINUE {
            continued.open();
        }
    });
    // For the connection to open when it cannot pass the origin's 100 on (HTTP/2).
    req.extensions_mut().insert(gate.clone());
    RefusedAtEnd(Some(gate))
}

impl Drop for RefusedAtEnd {
    fn drop(&mut self) {
        if let Some(gate) = &self.0 {
            gate.refuse();
        }
    }
}

impl ExchangeEnd {
    /// The finished flow, given how the response body ended.
    fn into_flow(
        self,
        capture: &SharedCapture,
        end: BodyEnd,
        error: Option<String>,
    ) -> (FlowSlot, Flow) {
        let ExchangeEnd {
            slot,
            mut flow,
            req_capture,
            t0,
            t_headers,
            fresh_conn,
            lease,
            waiting_body,
        } = self;
        drop(RefusedAtEnd(waiting_body));
        let (request_body, request_end) = {
            let capture = lock(&req_capture);
            (capture.snapshot(), capture.ended_at())
        };
        if matches!(end, BodyEnd::Complete) {
            lease.release(request_end.is_some());
        }
        let (response_body, t_end) = {
            let capture = lock(capture);
            (
                capture.snapshot(),
                capture.ended_at().unwrap_or_else(Instant::now),
            )
        };
        flow.request.body = request_body;
        if let Some(response) = flow.response.as_mut() {
            response.body = response_body;
        }
        flow.timings = exchange_timings(t0, request_end, t_headers, t_end, fresh_conn.as_ref());
        flow.error = match end {
            BodyEnd::Complete => None,
            BodyEnd::SourceFailed => Some(FlowError {
                kind: FlowErrorKind::Protocol,
                message: format!(
                    "upstream {}:{} broke off the response body: {}",
                    flow.host,
                    flow.port,
                    error.unwrap_or_else(|| "connection closed".into())
                ),
            }),
            BodyEnd::Abandoned if slot.proxy_stopping() => Some(FlowError {
                kind: FlowErrorKind::Stopped,
                message: "kinspect stopped before the response body ended".into(),
            }),
            BodyEnd::Abandoned => Some(FlowError {
                kind: FlowErrorKind::ClientAbort,
                message: match flow.request.version {
                    // A stream is cancelled alone; its connection may serve on.
                    crate::flow::HttpVersion::Http2 => {
                        "the client cancelled the request (reset its stream, or closed the \
                         connection) before the response body ended"
                            .into()
                    }
                    _ => "the client closed the connection before the response body ended".into(),
                },
            }),
        };
        (slot, flow)
    }
}

impl OnBodyEnd for ExchangeEnd {
    fn body_ended(
        self: Box<Self>,
        capture: &SharedCapture,
        end: BodyEnd,
        error: Option<String>,
    ) -> Option<Stored> {
        let (slot, flow) = self.into_flow(capture, end, error);
        match end {
            // The client is still receiving: hold its last bytes until the flow is stored.
            BodyEnd::Complete => Some(slot.publish_durable(flow)),
            BodyEnd::SourceFailed | BodyEnd::Abandoned => {
                slot.publish(flow);
                None
            }
        }
    }
}

fn lock(capture: &SharedCapture) -> std::sync::MutexGuard<'_, BodyCapture> {
    capture.lock().unwrap_or_else(|e| e.into_inner())
}

/// HAR phases from the instants the proxy saw. `conn` is the connection's set-up when
/// this exchange opened it.
fn exchange_timings(
    t0: Instant,
    request_end: Option<Instant>,
    t_headers: Instant,
    t_end: Instant,
    conn: Option<&ConnectionInfo>,
) -> Timings {
    let dns = conn.and_then(|c| c.dns);
    let connect = conn.map(|c| c.connect);
    let ssl = conn.and_then(|c| c.ssl);
    let setup = dns.unwrap_or_default() + connect.unwrap_or_default();
    let sent_at = request_end.map_or(t_headers, |e| e.min(t_headers));
    let send = sent_at.saturating_duration_since(t0).saturating_sub(setup);
    let wait = t_headers
        .saturating_duration_since(t0)
        .saturating_sub(setup + send);
    Timings {
        blocked: None,
        dns,
        connect,
        ssl,
        send,
        wait,
        receive: t_end.saturating_duration_since(t_headers),
    }
}

fn apply_connection(flow: &mut Flow, conn: Option<&ConnectionInfo>) {
    if let Some(conn) = conn {
        flow.server_ip = Some(conn.server_addr.ip());
        flow.server_tls = conn.tls.clone();
    }
}

/// What a connection's failure before any response head means for the flow.
fn classify_upstream_error(
    error: &hyper::Error,
    target: &Target,
    req_capture: &SharedCapture,
    max_headers: usize,
) -> ProxyFailure {
    let capture = lock(req_capture);
    if let Some(failure) = capture.failure().filter(|f| f.malformed) {
        return ProxyFailure::new(
            FlowErrorKind::BadRequest,
            format!(
                "the client's request body was malformed: {}",
                failure.message
            ),
        );
    }
    // The client's body itself broke. A body that was only dropped unfinished was let go
    // by the upstream side (an origin that answered early and closed, say): that is the
    // upstream's failure below.
    if capture.failed() && capture.failure().is_some() {
        return ProxyFailure::new(
            FlowErrorKind::ClientAbort,
            "the client stopped sending the request body before it was complete",
        );
    }
    if error.is_parse_too_large() {
        return ProxyFailure::new(
            FlowErrorKind::Protocol,
            format!(
                "upstream {} sent a response head kinspect cannot take: more than {} header \
                 fields (raise --max-headers), or over {} KiB over HTTP/1.1",
                target.authority(),
                max_headers.max(super::pool::MAX_RESPONSE_FIELDS),
                super::pool::MAX_RESPONSE_HEAD_BYTES / 1024
            ),
        );
    }
    ProxyFailure::new(
        FlowErrorKind::Protocol,
        format!(
            "upstream {} failed before sending a response: {}",
            target.authority(),
            error_chain(error)
        ),
    )
}

/// An error and its causes, joined with ": ".
pub(crate) fn error_chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// An empty body.
pub(crate) fn empty_body() -> ProxyBody {
    Full::new(Bytes::new())
        .map_err(BoxError::from)
        .boxed_unsync()
}

/// A full body.
pub(crate) fn full_body(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(BoxError::from)
        .boxed_unsync()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timings_split_the_exchange_without_overlap() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let info = ConnectionInfo::for_test(Some(ms(2)), ms(5), Some(ms(3)));
        let t = exchange_timings(t0, Some(t0 + ms(10)), t0 + ms(30), t0 + ms(45), Some(&info));
        assert_eq!(t.dns, Some(ms(2)));
        assert_eq!(t.connect, Some(ms(5)));
        assert_eq!(t.ssl, Some(ms(3)));
        assert_eq!(t.send, ms(3));
        assert_eq!(t.wait, ms(20));
        assert_eq!(t.receive, ms(15));
        assert_eq!(t.total(), ms(45));

        let reused = exchange_timings(t0, None, t0 + ms(30), t0 + ms(31), None);
        assert_eq!(reused.dns, None);
        assert_eq!(reused.connect, None);
        assert_eq!(reused.send + reused.wait, ms(30));
    }
}
