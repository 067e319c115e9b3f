//! Requests whose head hyper cannot parse. hyper answers them itself, with a bare 400
//! (431, 414) and no body, and never calls the service, so nothing would be recorded.
//! [`HeadWatch`] sits between hyper and an HTTP/1 client connection: it keeps the bytes
//! of the head being read, puts kinspect's JSON error in place of hyper's answer, and
//! leaves the rejected head for the connection to record as a flow.
//!
//! hyper writes to the client only for an exchange the service is answering, or for its
//! own answer to a head it could not parse. So [`ExchangeState`] follows each exchange
//! from the service's call until its response is flushed whole: a response written when
//! none is open is hyper's own.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::errors::ProxyFailure;
use super::forward::{new_flow, ClientSide};
use super::{BoxError, ProxyBody, Shared, Target};
use crate::flow::{CapturedBody, FlowErrorKind, FlowKind, Headers, HttpVersion, RequestRecord};

/// Bytes kept of what may be a head, for its flow and its error message: more than
/// nearly every head (big cookies and tokens included), so that what is wrong is found
/// wherever it is, yet a small copy when an upload's first read brings its body along.
pub(crate) const HEAD_KEPT: usize = 16 * 1024;

/// Bytes of the head quoted in the error message.
const HEAD_QUOTED: usize = 160;

/// No exchange open: anything written is hyper's own answer.
const IDLE: u8 = 0;
/// The service has a request; its response is not written whole yet.
const BUSY: u8 = 1;
/// The response body has ended; the next flush sends its last bytes.
const TAIL: u8 = 2;
/// The connection became a tunnel or another protocol: its bytes are not HTTP/1.
const UPGRADED: u8 = 3;

/// Where a client connection is between its exchanges, shared by its service and its
/// [`HeadWatch`].
#[derive(Debug, Default)]
pub(crate) struct ExchangeState {
    phase: AtomicU8,
    /// Exchanges begun: tells the watch that the head it kept has been parsed.
    begun: AtomicU64,
    rejected: Mutex<Option<RejectedHead>>,
}

/// A request head hyper could not parse, as kinspect answered it.
#[derive(Debug)]
pub(crate) struct RejectedHead {
    /// The head's first bytes (at most 16 KiB); empty when they were not kept (a head
    /// sent behind another request with a body, or while one was answered).
    pub(crate) head: Vec<u8>,
    /// kinspect's answer: what the client got.
    pub(crate) failure: ProxyFailure,
}

impl ExchangeState {
    /// The service got a request: busy until its response is out, also when the last
    /// one's end is not flushed yet (hyper may read the next head meanwhile).
    pub(crate) fn begin(&self) {
        self.begun.fetch_add(1, Ordering::Relaxed);
        let _ = self
            .phase
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |phase| {
                (phase != UPGRADED).then_some(BUSY)
            });
    }

    /// The service's `response` goes out: its body tells when it has ended. A switch of
    /// protocols, or an accepted CONNECT (`connect`), ends the HTTP/1 exchanges for good.
    pub(crate) fn respond(
        self: &Arc<Self>,
        connect: bool,
        response: Response<ProxyBody>,
    ) -> Response<EndsExchange> {
        let status = response.status();
        if status == StatusCode::SWITCHING_PROTOCOLS || (connect && status.is_success()) {
            self.phase.store(UPGRADED, Ordering::Release);
        }
        response.map(|body| EndsExchange {
            body,
            state: self.clone(),
        })
    }

    /// The head hyper rejected, if it did and kinspect answered it.
    pub(crate) fn take_rejected(&self) -> Option<RejectedHead> {
        self.rejected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    fn phase(&self) -> u8 {
        self.phase.load(Ordering::Acquire)
    }

    fn flushed(&self) {
        let _ = self
            .phase
            .compare_exchange(TAIL, IDLE, Ordering::AcqRel, Ordering::Relaxed);
    }
}

/// A response body that ends its exchange when hyper is done with it.
#[derive(Debug)]
pub(crate) struct EndsExchange {
    body: ProxyBody,
    state: Arc<ExchangeState>,
}

impl Body for EndsExchange {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for EndsExchange {
    fn drop(&mut self) {
        let _ = self
            .state
            .phase
            .compare_exchange(BUSY, TAIL, Ordering::AcqRel, Ordering::Relaxed);
    }
}

/// An HTTP/1 client connection as hyper's server sees it: see the module's description.
#[derive(Debug)]
pub(crate) struct HeadWatch<I> {
    io: Option<I>,
    state: Arc<ExchangeState>,
    /// The first bytes read since the exchange `head_of` began.
    head: Vec<u8>,
    /// When the first of them came.
    head_started: Option<SystemTime>,
    head_of: u64,
    /// The exchange being answered has no body: what is read meanwhile is a head.
    bodiless: bool,
    /// kinspect's answer in place of hyper's, and how much of it is written.
    answer: Option<(Bytes, usize)>,
    /// Where the connection goes when hyper drops it in the middle of a head.
    stalled: StalledSlot<I>,
    limits: HeadLimits,
}

/// The request-head limits hyper holds a head to (`--max-header-bytes`,
/// `--max-headers`), answering a bare 431 past either: kinspect's answer says which.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeadLimits {
    pub(crate) bytes: usize,
    pub(crate) fields: usize,
}

impl HeadLimits {
    pub(crate) fn of(config: &super::ProxyConfig) -> HeadLimits {
        HeadLimits {
            bytes: config.max_header_bytes,
            fields: config.max_headers,
        }
    }
}

impl Default for HeadLimits {
    fn default() -> Self {
        HeadLimits::of(&super::ProxyConfig::default())
    }
}

/// A request head hyper gave up on before it was whole (the client stalled past
/// `--client-timeout`, or closed), with the client connection to answer on.
#[derive(Debug)]
pub(crate) struct StalledHead<I> {
    /// The head's first bytes (at most 16 KiB).
    pub(crate) head: Vec<u8>,
    /// When they began to come.
    pub(crate) started: SystemTime,
    pub(crate) io: I,
}

/// Filled by a [`HeadWatch`] dropped in the middle of a head.
pub(crate) type StalledSlot<I> = Arc<Mutex<Option<StalledHead<I>>>>;

impl<I> HeadWatch<I> {
    /// Watches `io`; the state is for the connection's service, the slot for the
    /// connection after hyper is done with it.
    pub(crate) fn new(
        io: I,
        limits: HeadLimits,
    ) -> (HeadWatch<I>, Arc<ExchangeState>, StalledSlot<I>) {
        let state = Arc::new(ExchangeState::default());
        let stalled = StalledSlot::default();
        let watch = HeadWatch {
            io: Some(io),
            state: state.clone(),
            head: Vec::new(),
            head_started: None,
            head_of: 0,
            bodiless: false,
            answer: None,
            stalled: stalled.clone(),
            limits,
        };
        (watch, state, stalled)
    }

    /// The connection, there until the watch is dropped.
    fn io(&mut self) -> Pin<&mut I>
    where
        I: Unpin,
    {
        Pin::new(self.io.as_mut().expect("taken only when dropped"))
    }

    /// The bytes of a head begun and not parsed, with no exchange open and no answer of
    /// kinspect's under way; the empty lines a client may send between requests
    /// (RFC 9112 §2.2) are no head.
    fn unfinished_head(&self) -> Option<&[u8]> {
        if self.state.phase() != IDLE || self.answer.is_some() {
            return None;
        }
        let head = self.rejected_head()?;
        let start = head.iter().position(|b| !b"\r\n".contains(b))?;
        Some(&head[start..])
    }

    /// Keeps what was just read when it may be a head hyper is about to parse: between
    /// exchanges, or during one without a body (a request sent behind it in one write).
    fn keep(&mut self, read: &[u8]) {
        let phase = self.state.phase();
        if read.is_empty() || phase == UPGRADED {
            return;
        }
        let begun = self.state.begun.load(Ordering::Relaxed);
        if begun != self.head_of {
            // The heads hyper has parsed since go; the bytes after them stay.
            match self.begun_heads_len() {
                Some(length) => {
                    self.head.drain(..length);
                    self.bodiless = true;
                }
                None => {
                    self.head.clear();
                    self.bodiless = false;
                }
            }
            self.head_of = begun;
            self.head_started = None;
        }
        if phase == BUSY && !self.bodiless {
            return;
        }
        if self.head_started.is_none() {
            self.head_started = Some(SystemTime::now());
        }
        let room = HEAD_KEPT.saturating_sub(self.head.len());
        self.head.extend_from_slice(&read[..read.len().min(room)]);
    }

    /// If `written` is hyper's own answer to a head it could not parse, puts kinspect's
    /// in its place and leaves the head for the connection to record.
    fn replace_hypers_answer(&mut self, written: &[u8]) -> bool {
        if self.state.phase() != IDLE {
            return false;
        }
        let Some((version, status)) = hypers_answer(written) else {
            return false;
        };
        let head = self.rejected_head().map(<[u8]>::to_vec).unwrap_or_default();
        let failure = failure_for(status, &head, self.limits);
        self.answer = Some((answer_bytes(version, &failure), 0));
        *self
            .state
            .rejected
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(RejectedHead { head, failure });
        true
    }

    /// The head hyper rejected, from what was kept.
    fn rejected_head(&self) -> Option<&[u8]> {
        self.begun_heads_len().map(|length| &self.head[length..])
    }

    /// How many of the kept bytes are the heads of exchanges begun since they were kept
    /// (requests sent together in one write); `None` when one of those had a body
    /// (where it ends is not known here) or they are not there whole.
    fn begun_heads_len(&self) -> Option<usize> {
        let begun = self.state.begun.load(Ordering::Relaxed);
        let mut length = 0;
        for _ in self.head_of..begun {
            let mut fields = [httparse::EMPTY_HEADER; 128];
            let mut earlier = httparse::Request::new(&mut fields);
            let Ok(httparse::Status::Complete(head)) = earlier.parse(&self.head[length..]) else {
                return None;
            };
            let has_body = earlier.headers.iter().any(|field| {
                field.name.eq_ignore_ascii_case("transfer-encoding")
                    || (field.name.eq_ignore_ascii_case("content-length")
                        && field.value.trim_ascii() != b"0")
            });
            if has_body {
                return None;
            }
            length += head;
        }
        Some(length)
    }
}

impl<I> Drop for HeadWatch<I> {
    /// Hands the connection over when hyper gives it up in the middle of a head.
    fn drop(&mut self) {
        let Some(head) = self.unfinished_head().map(<[u8]>::to_vec) else {
            return;
        };
        let started = self.head_started.unwrap_or_else(SystemTime::now);
        if let Some(io) = self.io.take() {
            *self.stalled.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(StalledHead { head, started, io });
        }
    }
}

impl<I: AsyncWrite + Unpin> HeadWatch<I> {
    /// Writes what is left of kinspect's answer.
    fn poll_answer(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = &mut self.answer {
            if *written == bytes.len() {
                break;
            }
            let n =
                std::task::ready!(Pin::new(self.io.as_mut().expect("taken only when dropped"))
                    .poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for HeadWatch<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = this.io().poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = read {
            if buf.filled()[before..].starts_with(CONNECT_LINE_START) && this.state.phase() == IDLE
            {
                bracket_connect_ipv6(buf, before);
            }
            this.keep(&buf.filled()[before..]);
        }
        read
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for HeadWatch<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.answer.is_some() || this.replace_hypers_answer(buf) {
            // hyper's bytes count as written; kinspect's go out in their place.
            let _ = this.poll_answer(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        this.io().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // Only hyper's own answer is written with no exchange open: joined to be read.
        if this.answer.is_none() && this.state.phase() == IDLE {
            let joined: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            if this.replace_hypers_answer(&joined) {
                let _ = this.poll_answer(cx)?;
                return Poll::Ready(Ok(joined.len()));
            }
        }
        if this.answer.is_some() {
            let _ = this.poll_answer(cx)?;
            return Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()));
        }
        this.io().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.as_ref().is_some_and(|io| io.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_answer(cx))?;
        let flushed = this.io().poll_flush(cx);
        if let Poll::Ready(Ok(())) = flushed {
            // hyper flushes after writing everything it holds: a response whose body
            // has ended is now out whole.
            this.state.flushed();
        }
        flushed
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_answer(cx))?;
        this.io().poll_shutdown(cx)
    }
}

/// How a CONNECT's request line begins.
const CONNECT_LINE_START: &[u8] = b"CONNECT ";

/// Puts brackets around an IPv6 address that the CONNECT request line read into `buf`
/// from `start` names without them (`CONNECT ::1:8443`, as Python's `http.client` before
/// 3.13 and `openssl s_client -proxy` write it), which no URI parser takes: the port is
/// what follows the last colon. Left as it is when the line is not there whole, the
/// rest is no IPv6 address, or the buffer has no room for two more bytes.
fn bracket_connect_ipv6(buf: &mut ReadBuf<'_>, start: usize) {
    let read = &buf.filled()[start..];
    let Some(line_end) = memchr::memchr(b'\n', read) else {
        return;
    };
    let after_method = CONNECT_LINE_START.len();
    let target_len = read[after_method..line_end]
        .iter()
        .position(|&b| b == b' ' || b == b'\r')
        .unwrap_or(line_end - after_method);
    let target = &read[after_method..after_method + target_len];
    let Some(colon) = target.iter().rposition(|&b| b == b':') else {
        return;
    };
    let (host, port) = (&target[..colon], &target[colon + 1..]);
    let is_ipv6 = std::str::from_utf8(host)
        .ok()
        .and_then(|host| host.parse::<std::net::Ipv6Addr>().ok())
        .is_some();
    if !is_ipv6 || port.is_empty() || !port.iter().all(u8::is_ascii_digit) || buf.remaining() < 2 {
        return;
    }
    let mut line = Vec::with_capacity(read.len() + 2);
    line.extend_from_slice(&read[..after_method]);
    line.push(b'[');
    line.extend_from_slice(host);
    line.extend_from_slice(b"]:");
    line.extend_from_slice(&read[after_method + colon + 1..]);
    buf.set_filled(start);
    buf.put_slice(&line);
}

/// Records a head hyper rejected as a flow from `client`: inside a tunnel to `tunnel`,
/// else sent to the proxy itself.
async fn record_rejected(
    shared: &Shared,
    client: &ClientSide,
    tunnel: Option<&Target>,
    rejected: RejectedHead,
) {
    let RejectedHead { head, failure } = rejected;
    let ended = EndedHead {
        head: &head,
        started: SystemTime::now(),
        failure,
        answered: true,
        unfinished: false,
    };
    record_head(shared, client, tunnel, ended).await;
}

/// A request head to record as a flow, and how it ended.
struct EndedHead<'a> {
    head: &'a [u8],
    /// When its first bytes came.
    started: SystemTime,
    failure: ProxyFailure,
    /// The client got `failure` as its answer.
    answered: bool,
    /// The head never came whole (the client stalled or went away): its whole header
    /// lines are kept, and the request is incomplete (it is not sent again).
    unfinished: bool,
}

/// Records what hyper left of a connection's heads once done with it (`error`, if it
/// ended in one): a head it gave up on midway, and a head it rejected, which kinspect
/// answered.
pub(crate) async fn record_left_heads<I: AsyncRead + AsyncWrite + Unpin>(
    shared: &Shared,
    client: &ClientSide,
    tunnel: Option<&Target>,
    error: Option<&hyper::Error>,
    exchanges: &ExchangeState,
    stalled: &StalledSlot<I>,
) {
    if let Some(error) = error {
        record_stalled(shared, client, tunnel, error, stalled).await;
    }
    if let Some(rejected) = exchanges.take_rejected() {
        record_rejected(shared, client, tunnel, rejected).await;
    }
}

/// Longest kinspect tries to send its 408 to a client that stalled.
const STALLED_ANSWER_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Answers and records a head hyper gave up on with `error`, if it did: a client that
/// stalled in the middle of its head past `--client-timeout` gets kinspect's 408, and
/// one that closed in the middle of it a flow of its abort. (A connection idle between
/// requests left no head, and is no flow.)
async fn record_stalled<I: AsyncRead + AsyncWrite + Unpin>(
    shared: &Shared,
    client: &ClientSide,
    tunnel: Option<&Target>,
    error: &hyper::Error,
    stalled: &StalledSlot<I>,
) {
    let taken = stalled.lock().unwrap_or_else(|e| e.into_inner()).take();
    let Some(StalledHead {
        head,
        started,
        mut io,
    }) = taken
    else {
        return;
    };
    let began = began(&head);
    // kinspect's failure, and what it sends the client: its HTTP answer or not.
    let (failure, answer, answered) = if head.starts_with(HTTP2_PREFACE_START) {
        // HTTP/2 where kinspect reads HTTP/1: told so in HTTP/2 (an empty SETTINGS, then
        // GOAWAY HTTP_1_1_REQUIRED) for the client to come again in HTTP/1.1.
        let why = match (tunnel, &client.tls) {
            (None, _) if shared.config.reverse.is_some() => {
                "straight to kinspect, which serves an app in --reverse mode HTTP/1.1 only"
            }
            (None, _) => {
                "straight to kinspect, which serves HTTP/2 only to clients that use it as \
                 their proxy (CONNECT)"
            }
            (Some(_), None) => {
                "in a tunnel, but its preface did not come first and whole, so kinspect read \
                 the tunnel as HTTP/1.1"
            }
            (Some(_), Some(_)) => {
                "over TLS without offering h2 by ALPN, so kinspect read the connection as \
                 HTTP/1.1"
            }
        };
        let failure = ProxyFailure::new(
            FlowErrorKind::BadRequest,
            format!(
                "the client spoke HTTP/2 with prior knowledge {why} (kinspect answered GOAWAY \
                 with HTTP_1_1_REQUIRED)"
            ),
        );
        (
            failure,
            Some(Bytes::from_static(HTTP2_HTTP_1_1_REQUIRED)),
            false,
        )
    } else if error.is_timeout() {
        // The time runs from when the connection began to wait for a head: after an idle
        // keep-alive spell, the head itself may have come late rather than slowly.
        let limit = shared.config.client_header_timeout;
        let sending = SystemTime::now()
            .duration_since(started)
            .unwrap_or_default();
        let when = match sending < limit / 2 {
            true => format!(
                "within {limit:?} (--client-timeout, counted from the end of the \
                 connection's last exchange; the head began {sending:.1?} before it ran out)"
            ),
            false => format!("within {limit:?} (--client-timeout)"),
        };
        let mut failure = ProxyFailure::new(
            FlowErrorKind::ClientAbort,
            format!("the client sent only part of its request head {when}{began}"),
        );
        failure.status = StatusCode::REQUEST_TIMEOUT;
        let answer = answer_bytes(request_line(&head, true).2.as_str(), &failure);
        (failure, Some(answer), true)
    } else {
        // A close (FIN), a reset, a TLS connection cut without its close_notify.
        let how = match error.is_incomplete_message() {
            true => "closed the connection".to_owned(),
            false => format!("broke off ({})", super::forward::error_chain(error)),
        };
        let failure = ProxyFailure::new(
            FlowErrorKind::ClientAbort,
            format!("the client {how} in the middle of its request head{began}"),
        );
        (failure, None, false)
    };
    if let Some(answer) = &answer {
        let _ = tokio::time::timeout(STALLED_ANSWER_WAIT, async {
            io.write_all(answer).await?;
            io.shutdown().await
        })
        .await;
    }
    let ended = EndedHead {
        head: &head,
        started,
        answered,
        unfinished: true,
        failure,
    };
    record_head(shared, client, tunnel, ended).await;
    if answer.is_some() {
        // Read on to the client's close: closing with its bytes unread would reset the
        // connection, and the client might lose the answer.
        let _ = tokio::time::timeout(STALLED_ANSWER_WAIT, async {
            let mut unread = [0u8; 4096];
            while io.read(&mut unread).await? > 0 {}
            Ok::<(), std::io::Error>(())
        })
        .await;
    }
}

/// How an HTTP/2 client's connection preface begins.
const HTTP2_PREFACE_START: &[u8] = b"PRI * HTTP/2.0";

/// An empty SETTINGS frame (an HTTP/2 server's preface), then a GOAWAY frame with error
/// HTTP_1_1_REQUIRED (0xd) and no stream processed (RFC 9113 §6.5, §6.8, §7).
const HTTP2_HTTP_1_1_REQUIRED: &[u8] = &[
    0, 0, 0, 0x4, 0, 0, 0, 0, 0, // SETTINGS, no parameters
    0, 0, 8, 0x7, 0, 0, 0, 0, 0, // GOAWAY, 8 bytes, stream 0
    0, 0, 0, 0, // last stream id 0
    0, 0, 0, 0xd, // HTTP_1_1_REQUIRED
];

/// The method, target and version of `head`'s request line, as far as they are valid:
/// a method (a token) or `?`, and the version HTTP/1.1 unless it says HTTP/1.0. In an
/// `unfinished` head (its client stopped within it) a line without its end may end in a
/// cut word (`CONNECT api.example.com:44`), which is not taken.
fn request_line(head: &[u8], unfinished: bool) -> (String, Option<http::Uri>, HttpVersion) {
    let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let mut words = request_line_words(head);
    if unfinished && line_end == head.len() && !head.ends_with(b" ") {
        words.pop();
    }
    let mut words = words.into_iter();
    let method = words
        .next()
        .and_then(|word| http::Method::from_bytes(word).ok())
        .filter(|method| method.as_str().len() <= 32)
        .map_or_else(|| "?".to_owned(), |method| method.as_str().to_owned());
    // A target with characters a URL may not hold (`"`, `<`, bytes past ASCII), which
    // is why hyper refused it, is named with them percent-encoded: where it went shows.
    // Not behind a method that is none: such a line is no request's.
    let named = words.next().and_then(|word| {
        http::Uri::try_from(word).ok().or_else(|| {
            (method != "?").then(|| http::Uri::try_from(crate::flow::escaped_url(word)).ok())?
        })
    });
    let version = match words.next().map(<[u8]>::trim_ascii) {
        Some(b"HTTP/1.0") => HttpVersion::Http10,
        _ => HttpVersion::Http11,
    };
    (method, named, version)
}

/// The words (parted by spaces) of `head`'s first line, its line ending left out.
fn request_line_words(head: &[u8]) -> Vec<&[u8]> {
    let line_end = memchr::memchr(b'\n', head).unwrap_or(head.len());
    head[..line_end]
        .split(|&b| b == b' ')
        .filter(|word| !word.trim_ascii().is_empty())
        .collect()
}

/// Records `ended` as a flow from `client`: inside a tunnel to `tunnel`, else sent to
/// the proxy itself. The method and URL are what the request line names when they are
/// valid (a token; an absolute URL, a CONNECT's host and port, or a path on the tunnel's
/// or the reverse proxy's origin), else `?` and where the request went; the head itself
/// is quoted, escaped, in the error.
async fn record_head(
    shared: &Shared,
    client: &ClientSide,
    tunnel: Option<&Target>,
    ended: EndedHead<'_>,
) {
    let EndedHead {
        head,
        started,
        failure,
        answered,
        unfinished,
    } = ended;
    let (method, named, version) = request_line(head, unfinished);
    // `*` (`OPTIONS *`, HTTP/2's `PRI *`) is no path of a URL.
    let path = named
        .as_ref()
        .and_then(|uri| uri.path_and_query())
        .map(|path| path.as_str())
        .filter(|path| path.starts_with('/'))
        .unwrap_or("/");
    let connect_to = named
        .as_ref()
        .filter(|_| tunnel.is_none() && method == "CONNECT")
        .and_then(|uri| super::connect::connect_target(uri).ok());
    let target = match (tunnel, &connect_to, named.as_ref().and_then(Target::of_uri)) {
        (Some(tunnel), _, _) => tunnel.clone(),
        (None, Some(to), _) => to.clone(),
        (None, None, Some(named)) => named,
        (None, None, None) => (shared.config.reverse.as_ref())
            .and_then(Target::of_uri)
            .unwrap_or_else(|| shared.itself.as_target()),
    };
    let url = match &connect_to {
        Some(to) => to.authority(),
        None => target.url(path),
    };
    let headers = match unfinished {
        true => whole_header_lines(head),
        false => Headers::default(),
    };
    let request = RequestRecord {
        method,
        url,
        version,
        headers,
        body: CapturedBody {
            incomplete: unfinished,
            ..CapturedBody::default()
        },
    };
    let slot = shared.publisher.reserve().await;
    let mut flow = new_flow(&slot, FlowKind::Http, client, started, &target, request);
    flow.timings.send = SystemTime::now()
        .duration_since(started)
        .unwrap_or_default();
    if answered {
        let body = failure.body();
        flow.response = Some(failure.recorded(&failure.response(()), &body, version));
    }
    flow.error = Some(failure.error);
    slot.publish(flow);
}

/// The header fields of the lines of `head` after its request line that came whole
/// (ended by a line feed) and read as fields; the rest is left out.
fn whole_header_lines(head: &[u8]) -> Headers {
    let whole = match head.iter().rposition(|&b| b == b'\n') {
        Some(end) => &head[..end],
        None => return Headers::default(),
    };
    let fields: Vec<(&str, &[u8])> = whole
        .split(|&b| b == b'\n')
        .skip(1)
        .filter_map(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let colon = line.iter().position(|&b| b == b':')?;
            let name = std::str::from_utf8(&line[..colon]).ok()?;
            let valid = http::HeaderName::from_bytes(name.as_bytes()).is_ok();
            valid.then(|| (name, line[colon + 1..].trim_ascii()))
        })
        .collect();
    fields.into_iter().collect()
}

/// The version and status of `written` if it is hyper's answer to a head it could not
/// parse: a bodiless 400, 414 or 431 (all hyper makes), in HTTP/1.1 or, after an
/// HTTP/1.0 request, 1.0.
fn hypers_answer(written: &[u8]) -> Option<(&'static str, StatusCode)> {
    let text = std::str::from_utf8(written).ok()?;
    let version = ["HTTP/1.1", "HTTP/1.0"]
        .into_iter()
        .find(|version| text.starts_with(version))?;
    let status = text.get(version.len() + 1..version.len() + 4)?;
    let status: StatusCode = status.parse().ok()?;
    let hypers = [
        StatusCode::BAD_REQUEST,
        StatusCode::URI_TOO_LONG,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
    ];
    let answer = hypers.contains(&status)
        && text.ends_with("\r\n\r\n")
        && text
            .to_ascii_lowercase()
            .contains("\r\ncontent-length: 0\r\n");
    answer.then_some((version, status))
}

/// kinspect's error for a head hyper answered with `status`, saying what is wrong with
/// it as far as the head shows (held to `limits`).
fn failure_for(status: StatusCode, head: &[u8], limits: HeadLimits) -> ProxyFailure {
    let mut fields = [httparse::EMPTY_HEADER; 256];
    if super::sniff::detect(head) == Some(super::sniff::Sniffed::Tls) {
        let mut failure = ProxyFailure::new(
            FlowErrorKind::BadRequest,
            "the client spoke TLS (HTTPS) to kinspect, which listens for plain HTTP: write \
             kinspect's address with http:// (the proxy's URL, or the base URL in --reverse \
             mode); HTTPS requests go through the proxy with CONNECT",
        );
        failure.status = status;
        return failure;
    }
    let what = match (status, httparse::Request::new(&mut fields).parse(head)) {
        _ if head.is_empty() => {
            "it came behind another request on this connection, and kinspect did not keep it"
        }
        (StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, _) => &too_large(head, limits),
        (StatusCode::URI_TOO_LONG, _) => "its URL is longer than kinspect accepts",
        (_, Ok(httparse::Status::Partial)) if head.len() >= HEAD_KEPT => {
            "something past its first 16 KiB (all kinspect keeps of a head) is not valid"
        }
        (_, Err(httparse::Error::HeaderName)) => {
            "a header field's name is not valid (a space in it, or no colon after it?)"
        }
        (_, Err(httparse::Error::HeaderValue)) => {
            "a header field's value has a character not allowed there (a control character?)"
        }
        (_, Err(httparse::Error::NewLine)) => "a line does not end with CRLF",
        (_, Err(httparse::Error::Token)) => "the request line's method or target is not valid",
        (_, Err(httparse::Error::Version)) if request_line_words(head).len() > 3 => {
            "its request line has more than three words: a space in the URL? (write it as %20)"
        }
        (_, Err(httparse::Error::Version)) => "its HTTP version is not HTTP/1.0 or HTTP/1.1",
        _ => "its target, Content-Length or Transfer-Encoding is not valid",
    };
    let message = format!("the request could not be parsed: {what}{}", began(head));
    let mut failure = ProxyFailure::new(FlowErrorKind::BadRequest, message);
    failure.status = status;
    failure
}

/// Which of `limits` a head hyper found too large passed, as far as the kept bytes show.
fn too_large(head: &[u8], limits: HeadLimits) -> String {
    let lines = head.split(|&b| b == b'\n').map(<[u8]>::trim_ascii);
    // The request line, then fields up to the empty line that ends the head.
    let fields = lines.skip(1).take_while(|line| !line.is_empty()).count();
    let whole = head
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|end| end + 4);
    if fields > limits.fields {
        let at_least = if whole.is_some() { "" } else { "at least " };
        return format!(
            "it has {at_least}{fields} header fields, more than --max-headers ({}) allows",
            limits.fields
        );
    }
    match whole {
        Some(size) if size > limits.bytes => format!(
            "its head is {size} bytes, more than --max-header-bytes ({}) allows",
            limits.bytes
        ),
        None if head.len() > limits.bytes => format!(
            "its head is larger than --max-header-bytes ({}) allows",
            limits.bytes
        ),
        // Cut at what kinspect keeps, under both limits so far: either may be passed.
        None if head.len() >= HEAD_KEPT => format!(
            "its head is longer than the {} KiB kinspect keeps, with at least {fields} header \
             fields: larger than --max-header-bytes ({}) or with more fields than \
             --max-headers ({}) allows",
            HEAD_KEPT / 1024,
            limits.bytes,
            limits.fields
        ),
        _ => format!(
            "its head is larger than --max-header-bytes ({}) or has more fields than \
             --max-headers ({}) allows",
            limits.bytes, limits.fields
        ),
    }
}

/// `; it began: …` quoting the start of `head` escaped, its secret fields redacted;
/// nothing for no head.
fn began(head: &[u8]) -> String {
    if head.is_empty() {
        return String::new();
    }
    let head = quotable(head);
    let quoted = head[..head.len().min(HEAD_QUOTED)].escape_ascii();
    let more = if head.len() > HEAD_QUOTED { "..." } else { "" };
    format!("; it began: {quoted}{more}")
}

/// `head` with the values of its secret fields (`Cookie`, `Authorization`, a token's)
/// [`REDACTED`](crate::redact::REDACTED): the error quotes it wherever it is shown, and
/// an oversized `Cookie` is the usual cause of a 431.
fn quotable(head: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(head.len());
    // Lines end at CR or LF alike here: a head with bare CRs is one that gets quoted.
    let mut in_secret = false;
    for (i, line) in head
        .split_inclusive(|&b| b == b'\n' || b == b'\r')
        .enumerate()
    {
        let end = line.len()
            - line
                .iter()
                .rev()
                .take_while(|b| b"\r\n".contains(b))
                .count();
        let (text, ending) = line.split_at(end);
        if i == 0 {
            // The request line: its target's secret parameters and password; bytes that
            // are no text quoted as they came.
            for (j, word) in text.split(|&b| b == b' ').enumerate() {
                if j > 0 {
                    out.push(b' ');
                }
                match std::str::from_utf8(word) {
                    Ok(word) if word.contains('?') || word.contains('@') => {
                        out.extend_from_slice(crate::redact::redact_url(word).as_bytes())
                    }
                    _ => out.extend_from_slice(word),
                }
            }
        } else if text.is_empty() {
            // The CR of a CRLF, or the blank line ending the head.
        } else if text.starts_with(b" ") || text.starts_with(b"\t") {
            // A folded line goes on with the field above it.
            match in_secret {
                true => {
                    out.extend_from_slice(b" ");
                    out.extend_from_slice(crate::redact::REDACTED.as_bytes());
                }
                false => out.extend_from_slice(text),
            }
        } else {
            let colon = text.iter().position(|&b| b == b':');
            in_secret = colon.is_some_and(|colon| {
                crate::redact::is_secret_header(String::from_utf8_lossy(&text[..colon]).trim())
            });
            match (in_secret, colon) {
                (true, Some(colon)) => {
                    out.extend_from_slice(&text[..=colon]);
                    out.extend_from_slice(b" ");
                    out.extend_from_slice(crate::redact::REDACTED.as_bytes());
                }
                _ => out.extend_from_slice(text),
            }
        }
        out.extend_from_slice(ending);
    }
    out
}

/// `failure` as the bytes of a response in `version` that closes the connection.
fn answer_bytes(version: &str, failure: &ProxyFailure) -> Bytes {
    let body = failure.body();
    let head = failure.response(());
    let mut out = format!(
        "{version} {} {}\r\n",
        head.status().as_str(),
        head.status().canonical_reason().unwrap_or("")
    );
    for (name, value) in head.headers() {
        out.push_str(name.as_str());
        out.push_str(": ");
        out.push_str(&String::from_utf8_lossy(value.as_bytes()));
        out.push_str("\r\n");
    }
    out.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    ));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&body);
    bytes.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_connect_target_without_brackets_gets_them() {
        let bracketed = |read: &[u8], capacity: usize| {
            let mut storage = vec![0u8; capacity];
            let mut buf = ReadBuf::new(&mut storage);
            buf.put_slice(b"xx");
            buf.put_slice(read);
            bracket_connect_ipv6(&mut buf, 2);
            String::from_utf8(buf.filled().to_vec()).unwrap()
        };
        let line = b"CONNECT ::1:8443 HTTP/1.0\r\nHost: x\r\n\r\n";
        assert_eq!(
            bracketed(line, 64),
            "xxCONNECT [::1]:8443 HTTP/1.0\r\nHost: x\r\n\r\n"
        );
        assert_eq!(
            bracketed(b"CONNECT 2001:db8::7:443 HTTP/1.1\n\n", 64),
            "xxCONNECT [2001:db8::7]:443 HTTP/1.1\n\n"
        );
        // Left alone: already bracketed, a name, no port, not whole, no room.
        for unchanged in [
            &b"CONNECT [::1]:8443 HTTP/1.1\r\n\r\n"[..],
            b"CONNECT example.com:443 HTTP/1.1\r\n\r\n",
            b"CONNECT ::1 HTTP/1.1\r\n\r\n",
            b"CONNECT fe80::1:x HTTP/1.1\r\n\r\n",
            b"CONNECT ::1:8443 HTT",
        ] {
            let expected = format!("xx{}", String::from_utf8_lossy(unchanged));
            assert_eq!(bracketed(unchanged, 64), expected);
        }
        let full = format!("xx{}", String::from_utf8_lossy(line));
        assert_eq!(bracketed(line, line.len() + 3), full);
    }

    #[test]
    fn hypers_own_answers_are_told_from_other_responses() {
        type Expected = Option<(&'static str, u16)>;
        let answers: [(&[u8], Expected); 7] = [
            (
                b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
                Some(("HTTP/1.1", 400)),
            ),
            (
                b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
                Some(("HTTP/1.1", 431)),
            ),
            // After an HTTP/1.0 request.
            (
                b"HTTP/1.0 400 Bad Request\r\ncontent-length: 0\r\n\r\n",
                Some(("HTTP/1.0", 400)),
            ),
            (b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", None),
            // Statuses hyper never makes itself, as origins send them.
            (b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n", None),
            (b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}", None),
            (b"\x17\x03\x03", None),
        ];
        for (written, expected) in answers {
            let found = hypers_answer(written).map(|(v, s)| (v, s.as_u16()));
            assert_eq!(found, expected, "{}", written.escape_ascii());
        }
    }

    #[test]
    fn a_quoted_head_with_bare_crs_folded_fields_or_a_token_in_its_url_has_no_secret() {
        let heads: [&[u8]; 3] = [
            b"GET http://h.test/ HTTP/1.1\rCookie: sid=BARECR1\rAuthorization: Bearer BARECR2\r\r",
            b"GET / HTTP/1.1\r\nAuthorization: Bearer\r\n FOLDED3xyz\r\nBad Header: x\r\n\r\n",
            b"GET http://h.test/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa?access_token=CUTTOKEN4ABCDEFGHIJKLMNOPQRSTUVWXYZ HTTP/1.1\r\nBad Header: x\r\n\r\n",
        ];
        for head in heads {
            let message = failure_for(StatusCode::BAD_REQUEST, head, HeadLimits::default())
                .error
                .message;
            for secret in ["BARECR", "FOLDED3", "CUTTOKEN4"] {
                assert!(!message.contains(secret), "{message}");
            }
        }
    }

    #[test]
    fn a_space_in_the_url_is_named_as_such() {
        let spaced = failure_for(
            StatusCode::BAD_REQUEST,
            b"GET http://h/a b HTTP/1.1\r\n\r\n",
            HeadLimits::default(),
        );
        assert!(
            spaced.error.message.contains("a space in the URL"),
            "{spaced:?}"
        );
        let version = failure_for(
            StatusCode::BAD_REQUEST,
            b"GET http://h/a HTTP/3.0\r\n\r\n",
            HeadLimits::default(),
        );
        assert!(
            version.error.message.contains("HTTP version"),
            "{version:?}"
        );
    }

    #[test]
    fn a_request_line_that_is_no_text_is_quoted_as_it_came() {
        let quoted = quotable(b"GE\xffT /x?token=abcdef HTTP/1.1\r\nHost: h\r\n");
        assert_eq!(
            quoted,
            b"GE\xffT /x?token=[redacted] HTTP/1.1\r\nHost: h\r\n".to_vec()
        );
    }

    #[test]
    fn a_stalled_head_keeps_its_whole_header_lines_and_blank_lines_are_no_head() {
        let fields =
            whole_header_lines(b"GET / HTTP/1.1\r\nHost: h\r\nBad Field\r\nX-A:  1 \nCooki");
        assert_eq!(fields, [("Host", "h"), ("X-A", "1")].into_iter().collect());
        assert_eq!(whole_header_lines(b"GET / HTT"), Headers::default());

        let (mut watch, state, stalled) = HeadWatch::new((), HeadLimits::default());
        watch.keep(b"GET / HTTP/1.1\r\n\r\n");
        state.begin();
        drop(state.respond(false, Response::new(ProxyBody::default())));
        state.flushed();
        watch.keep(b"\r\n\r\n");
        assert_eq!(
            watch.unfinished_head(),
            None,
            "empty lines between requests"
        );
        watch.keep(b"GET /next HT");
        assert_eq!(watch.unfinished_head(), Some(&b"GET /next HT"[..]));
        drop(watch);
        let handed = stalled
            .lock()
            .unwrap()
            .take()
            .expect("handed over when dropped");
        assert_eq!(handed.head, b"GET /next HT");
    }

    #[test]
    fn the_quoted_head_has_no_secret_field_values() {
        let head = b"GET http://h/secret:x HTTP/1.1\r\nCookie: sid=SECRET1\r\nAuthorization: Bearer SECRET2\r\nX-Auth-Token: SECRET3\nBad Header: x\r\n\r\n";
        let message = failure_for(StatusCode::BAD_REQUEST, head, HeadLimits::default())
            .error
            .message;
        assert!(!message.contains("SECRET"), "{message}");
        assert!(
            message.contains(r"GET http://h/secret:x HTTP/1.1\r\nCookie: [redacted]\r\nAuthorization: [redacted]\r\nX-Auth-Token: [redacted]\nBad"),
            "{message}"
        );
    }

    #[test]
    fn the_error_says_what_is_wrong_and_quotes_the_head() {
        let head = b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n";
        let failure = failure_for(StatusCode::BAD_REQUEST, head, HeadLimits::default());
        let message = &failure.error.message;
        assert!(message.contains("name is not valid"), "{message}");
        assert!(
            message.contains(r"it began: GET / HTTP/1.1\r\nBad Header: x"),
            "{message}"
        );
        let bytes = answer_bytes("HTTP/1.1", &failure);
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
        assert!(text.contains("\r\nconnection: close\r\n"), "{text}");
        let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
        assert!(
            text.contains(&format!("content-length: {}\r\n", body.len())),
            "{text}"
        );
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"], "BadProxyRequest");

        let large = failure_for(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            &[b'a'; 4096],
            HeadLimits::default(),
        );
        assert_eq!(large.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        assert!(
            large.error.message.ends_with("..."),
            "{}",
            large.error.message
        );

        // Which limit a 431 is for.
        let limits = HeadLimits {
            bytes: 1024,
            fields: 5,
        };
        let said = |head: &[u8]| {
            let failure = failure_for(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, head, limits);
            failure.error.message
        };
        let many = b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n";
        assert!(
            said(many).contains(": it has 6 header fields, more than --max-headers (5) allows"),
            "{}",
            said(many)
        );
        let big = format!(
            "GET / HTTP/1.1\r\nHost: h\r\nCookie: {}\r\n\r\n",
            "c".repeat(1100)
        );
        assert!(
            said(big.as_bytes())
                .contains(": its head is 1137 bytes, more than --max-header-bytes (1024) allows"),
            "{}",
            said(big.as_bytes())
        );
        let unended = format!("GET / HTTP/1.1\r\nCookie: {}", "c".repeat(1100));
        assert!(
            said(unended.as_bytes())
                .contains(": its head is larger than --max-header-bytes (1024) allows;"),
            "{}",
            said(unended.as_bytes())
        );

        // Cut at the 16 KiB kept, under both limits so far: both are named.
        let mut cut = b"GET / HTTP/1.1\r\n".to_vec();
        while cut.len() < HEAD_KEPT {
            cut.extend_from_slice(format!("X-F: {}\r\n", "v".repeat(170)).as_bytes());
        }
        cut.truncate(HEAD_KEPT);
        let message = failure_for(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            &cut,
            HeadLimits::default(),
        )
        .error
        .message;
        assert!(
            message.contains(
                "longer than the 16 KiB kinspect keeps, with at least 93 header \
                 fields: larger than --max-header-bytes (65536) or with more fields than \
                 --max-headers (100) allows"
            ),
            "{message}"
        );

        // Past the first kilobytes of valid fields, the bad one is still found.
        let mut long = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..100 {
            long.extend_from_slice(format!("X-Field-{i}: {}\r\n", "v".repeat(40)).as_bytes());
        }
        long.extend_from_slice(b"Bad Header: y\r\n\r\n");
        let message = failure_for(StatusCode::BAD_REQUEST, &long, HeadLimits::default())
            .error
            .message;
        assert!(message.contains("name is not valid"), "{message}");
    }

    #[test]
    fn an_exchange_is_open_from_its_call_until_its_response_is_flushed() {
        let state = Arc::new(ExchangeState::default());
        let body = || ProxyBody::default();
        state.begin();
        let first = state.respond(false, Response::new(body()));
        drop(first);
        assert_eq!(state.phase(), TAIL, "its end is not flushed yet");
        // hyper may read the next head before flushing: that exchange is open too.
        state.begin();
        state.flushed();
        assert_eq!(state.phase(), BUSY);
        drop(state.respond(false, Response::new(body())));
        state.flushed();
        assert_eq!(state.phase(), IDLE);
        // After a tunnel or a switch of protocols, nothing more is HTTP/1.
        state.begin();
        let mut switched = Response::new(body());
        *switched.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        drop(state.respond(false, switched));
        state.begin();
        state.flushed();
        assert_eq!(state.phase(), UPGRADED);
    }

    #[test]
    fn a_head_kept_behind_bodiless_requests_is_found_and_behind_a_body_is_not() {
        let (mut watch, state, _) = HeadWatch::new((), HeadLimits::default());
        let good = b"GET /one HTTP/1.1\r\nHost: a\r\n\r\n";
        let bad = b"GET /two HTTP/1.1\r\nBad Header: x\r\n\r\n";
        watch.keep(&[&good[..], &bad[..]].concat());
        assert_eq!(
            watch.rejected_head(),
            Some(&[&good[..], &bad[..]].concat()[..])
        );
        // hyper parsed the first and called the service for it.
        state.begin();
        assert_eq!(watch.rejected_head(), Some(&bad[..]));

        let (mut watch, state, _) = HeadWatch::new((), HeadLimits::default());
        let post = b"POST /one HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}";
        watch.keep(&[&post[..], &bad[..]].concat());
        state.begin();
        assert_eq!(
            watch.rejected_head(),
            None,
            "where the body ends is not known here"
        );
        // Read on while the first is answered, a long head is kept whole; a body is not.
        let (mut watch, state, _) = HeadWatch::new((), HeadLimits::default());
        watch.keep(&[&good[..], &bad[..10]].concat());
        state.begin();
        watch.keep(&bad[10..]);
        assert_eq!(watch.rejected_head(), Some(&bad[..]));
        let (mut watch, state, _) = HeadWatch::new((), HeadLimits::default());
        watch.keep(&post[..]);
        state.begin();
        watch.keep(b"more of the body");
        drop(state.respond(false, Response::new(ProxyBody::default())));
        state.flushed();
        watch.keep(&bad[..]);
        assert_eq!(
            watch.rejected_head(),
            Some(&bad[..]),
            "the next head, not the body"
        );

        let failure = failure_for(StatusCode::BAD_REQUEST, &[], HeadLimits::default());
        assert!(
            failure.error.message.contains("behind another request"),
            "{}",
            failure.error.message
        );
    }
}
