//! The body tee: frames stream through untouched while a capture copy of at most
//! `--max-body` bytes is kept; the full size is still counted.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};

use crate::events::Stored;
use crate::flow::CapturedBody;

/// The capture copy of one body while it streams.
#[derive(Debug)]
pub struct BodyCapture {
    max: usize,
    /// The kept bytes while the body streams: copied, so the peer's read buffers are
    /// reused instead of pinned by slices for as long as the flow lives.
    kept: BytesMut,
    /// The kept bytes once the body has ended (snapshots are then free).
    frozen: Option<Bytes>,
    wire_size: u64,
    truncated: bool,
    ended_at: Option<Instant>,
    failed: bool,
    failure: Option<BodyFailure>,
    /// The length the body declared (`Content-Length`), when it did.
    declared: Option<u64>,
}

/// Why a body's source failed.
#[derive(Debug, Clone)]
pub struct BodyFailure {
    /// The error and its causes.
    pub message: String,
    /// The peer sent bytes that do not parse (a bad chunk size, say), rather than
    /// stopping or resetting.
    pub malformed: bool,
}

impl BodyFailure {
    /// Describes `error`; an `InvalidInput`/`InvalidData` I/O error anywhere in its chain
    /// (how hyper reports unparseable chunked framing) makes it malformed.
    pub fn of(error: &(dyn std::error::Error + 'static)) -> Self {
        let mut malformed = false;
        let mut source = Some(error);
        while let Some(e) = source {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                malformed |= matches!(
                    io.kind(),
                    std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData
                );
            }
            source = e.source();
        }
        BodyFailure {
            message: super::forward::error_chain(error),
            malformed,
        }
    }
}

impl BodyCapture {
    /// An empty capture keeping at most `max` bytes.
    pub fn new(max: usize) -> Self {
        BodyCapture {
            max,
            kept: BytesMut::new(),
            frozen: None,
            wire_size: 0,
            truncated: false,
            ended_at: None,
            failed: false,
            failure: None,
            declared: None,
        }
    }

    /// Makes room up front for a body of declared `length` (up to the limit), so a large
    /// body is kept in one allocation instead of a chain of doubling copies.
    pub fn expect(&mut self, length: u64) {
        self.declared = Some(length);
        let keep = usize::try_from(length).unwrap_or(usize::MAX).min(self.max);
        self.kept.reserve(keep.saturating_sub(self.kept.len()));
    }

    /// Records one data frame: counted in full, kept up to the limit.
    pub fn push(&mut self, data: &Bytes) {
        self.wire_size += data.len() as u64;
        let room = self.max.saturating_sub(self.kept.len());
        if data.len() > room {
            self.truncated = true;
        }
        let keep = &data[..data.len().min(room)];
        if !keep.is_empty() && self.frozen.is_none() {
            self.kept.extend_from_slice(keep);
        }
    }

    /// Marks the body as ended normally now.
    pub fn end(&mut self) {
        if self.ended_at.is_none() {
            self.ended_at = Some(Instant::now());
            self.frozen = Some(std::mem::take(&mut self.kept).freeze());
        }
    }

    /// Marks the body as broken off now: by its source (`failure`) or abandoned.
    pub fn fail(&mut self, failure: Option<BodyFailure>) {
        self.failed = true;
        self.failure = self.failure.take().or(failure);
        self.end();
    }

    /// The whole body, when it ended normally and every byte of it was kept.
    pub fn whole(&self) -> Option<Bytes> {
        let whole = self.ended_at.is_some() && !self.failed && !self.truncated;
        whole.then(|| self.frozen.clone().unwrap_or_default())
    }

    /// The body's message carries none, whatever length it declares (an answer to a
    /// HEAD, a 204, a 304): it is not short of it.
    pub fn declares_nothing(&mut self) {
        self.declared = None;
    }

    /// Why a body that ends now is short, when fewer bytes came than it declared: an
    /// HTTP/2 peer that resets a stream with `NO_ERROR` ends it for hyper as if whole.
    fn short_of_declared(&self) -> Option<BodyFailure> {
        let declared = self
            .declared
            .filter(|&declared| self.wire_size < declared)?;
        Some(BodyFailure {
            message: format!(
                "it ended after {} of the {declared} bytes its Content-Length declared",
                self.wire_size
            ),
            malformed: false,
        })
    }

    /// Why the body's source failed, when it did.
    pub fn failure(&self) -> Option<&BodyFailure> {
        self.failure.as_ref()
    }

    /// Bytes received so far (kept or not).
    pub fn received(&self) -> u64 {
        self.wire_size
    }

    /// True when the body broke off instead of ending.
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// When the body ended, if it has.
    pub fn ended_at(&self) -> Option<Instant> {
        self.ended_at
    }

    /// The captured body so far; `incomplete` unless it ended normally.
    pub fn snapshot(&self) -> CapturedBody {
        let bytes = match &self.frozen {
            Some(bytes) => bytes.clone(),
            None => Bytes::copy_from_slice(&self.kept),
        };
        CapturedBody {
            bytes,
            wire_size: self.wire_size,
            truncated: self.truncated,
            incomplete: self.failed || self.ended_at.is_none(),
        }
    }
}

/// A capture shared between a tee and whoever reads it afterwards.
pub type SharedCapture = Arc<Mutex<BodyCapture>>;

/// How a teed body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEnd {
    /// The last frame was passed on.
    Complete,
    /// The body's source failed mid-way (peer reset or protocol error).
    SourceFailed,
    /// The body was dropped before its end (the reader went away).
    Abandoned,
}

/// Called once when a teed body ends, however it ends.
pub trait OnBodyEnd: Send + 'static {
    /// The body ended; `capture` holds its copy and `error` the source's error text.
    /// When it returns a [`Stored`] future, the tee holds back the body's last frame (or
    /// its end) until that future resolves.
    fn body_ended(
        self: Box<Self>,
        capture: &SharedCapture,
        end: BodyEnd,
        error: Option<String>,
    ) -> Option<Stored>;
}

/// What a tee holds back while its flow is being stored.
enum Held {
    Frame(Frame<Bytes>),
    End,
}

/// A body passed through unchanged while teed into a [`BodyCapture`].
pub struct TeeBody<B: Body> {
    inner: B,
    capture: SharedCapture,
    on_end: Option<Box<dyn OnBodyEnd>>,
    held: Option<(Held, Stored)>,
}

impl<B: Body> TeeBody<B> {
    /// Tees `inner` into `capture`, calling `on_end` (if any) when it ends.
    pub fn new(inner: B, capture: SharedCapture, on_end: Option<Box<dyn OnBodyEnd>>) -> Self {
        // Declared empty (`content-length: 0`) and nobody to tell: it has come whole,
        // whether or not it is ever polled (an HTTP/1.1 origin's connection sends the
        // declared nothing without polling, and may hold the body past the response).
        if on_end.is_none() && declared_all_come(&inner) {
            capture.lock().unwrap_or_else(|e| e.into_inner()).end();
        }
        TeeBody {
            inner,
            capture,
            on_end,
            held: None,
        }
    }

    /// The capture this body is teed into.
    pub fn capture(&self) -> &SharedCapture {
        &self.capture
    }

    /// Calls `on_end` when the body ends, from now on (a tee made without one, read in
    /// part, then passed on).
    pub fn ending_with(mut self, on_end: Box<dyn OnBodyEnd>) -> Self {
        self.on_end = Some(on_end);
        self
    }

    fn finish(&mut self, mut end: BodyEnd, mut failure: Option<BodyFailure>) -> Option<Stored> {
        {
            let mut capture = self.capture.lock().unwrap_or_else(|e| e.into_inner());
            if end == BodyEnd::Complete {
                if let Some(short) = capture.short_of_declared() {
                    end = BodyEnd::SourceFailed;
                    failure = Some(short);
                }
            }
            match end {
                BodyEnd::Complete => capture.end(),
                BodyEnd::SourceFailed | BodyEnd::Abandoned => capture.fail(failure.clone()),
            }
        }
        let error = failure.map(|f| f.message);
        let on_end = self.on_end.take()?;
        on_end.body_ended(&self.capture, end, error)
    }
}

impl<B> Body for TeeBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::error::Error + 'static,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        loop {
            if let Some((_, stored)) = this.held.as_mut() {
                ready!(Pin::new(stored).poll(cx));
                let (held, _) = this.held.take().expect("held is set");
                return Poll::Ready(match held {
                    Held::Frame(frame) => Some(Ok(frame)),
                    Held::End => None,
                });
            }
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        this.capture
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(data);
                    }
                    // Trailers are always the last frame, whether or not the body
                    // says it has ended yet (HTTP/1.1's does only when polled again);
                    // so is the one that brings the last declared byte (an HTTP/2
                    // stream may end in an empty frame nobody polls for).
                    if frame.is_trailers()
                        || this.inner.is_end_stream()
                        || declared_all_come(&this.inner)
                    {
                        if let Some(stored) = this.finish(BodyEnd::Complete, None) {
                            this.held = Some((Held::Frame(frame), stored));
                            continue;
                        }
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                Some(Err(e)) => {
                    // Nobody waits for a broken body: it is published without holding it.
                    drop(this.finish(BodyEnd::SourceFailed, Some(BodyFailure::of(&e))));
                    return Poll::Ready(Some(Err(e)));
                }
                None => {
                    if let Some(stored) = this.finish(BodyEnd::Complete, None) {
                        this.held = Some((Held::End, stored));
                        continue;
                    }
                    return Poll::Ready(None);
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.held.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A body some of whose frames were read already: those first, then the rest of `inner`.
pub struct Resumed<B> {
    read: std::collections::VecDeque<Frame<Bytes>>,
    inner: B,
}

impl<B> Resumed<B> {
    /// `read`, the frames taken from `inner` so far, then `inner`.
    pub fn new(read: Vec<Frame<Bytes>>, inner: B) -> Self {
        Resumed {
            read: read.into(),
            inner,
        }
    }
}

impl<B> Body for Resumed<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.read.pop_front() {
            Some(frame) => Poll::Ready(Some(Ok(frame))),
            None => Pin::new(&mut self.inner).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.read.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let read: u64 = (self.read.iter())
            .filter_map(|frame| frame.data_ref())
            .map(|data| data.len() as u64)
            .sum();
        let rest = self.inner.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower() + read);
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + read);
        }
        hint
    }
}

/// True when `body` declared its length and all of it has come (hyper counts an HTTP/2
/// body's `content-length` down as its frames come; it ends only at `END_STREAM`).
fn declared_all_come<B: Body>(body: &B) -> bool {
    body.size_hint().exact() == Some(0)
}

impl<B: Body> Drop for TeeBody<B> {
    fn drop(&mut self) {
        let unfinished = self
            .capture
            .lock()
            .map(|c| c.ended_at.is_none())
            .unwrap_or(false);
        if self.on_end.is_some() || unfinished {
            // An empty body may never be polled: it ended, it was not abandoned.
            let end = if self.inner.is_end_stream() {
                BodyEnd::Complete
            } else {
                BodyEnd::Abandoned
            };
            drop(self.finish(end, None));
        }
    }
}

/// Holds back a request body whose client asked `Expect: 100-continue` until the origin
/// says to send it (its 100 Continue opens the gate), or [`CONTINUE_WAIT`] passes (an
/// origin that ignores the field, as curl waits for one), or the connection it goes out
/// on opens it (HTTP/2, whose interim answers hyper does not pass on). Until then the
/// client's body is not read, so the client is not told to send it: an origin that
/// answers at once (a 401, a 413) does not get the whole upload first. Such a final
/// answer stops the wait ([`ContinueGate::answered`]), and at the exchange's end the
/// body is refused ([`ContinueGate::refuse`]): it ends unsent, the client never having
/// been told to send it.
#[derive(Debug, Clone, Default)]
pub struct ContinueGate(Arc<Mutex<GateState>>);

#[derive(Debug, Default)]
struct GateState {
    at: Gate,
    waiting: Option<std::task::Waker>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Gate {
    /// Waiting for the origin's word, or for [`CONTINUE_WAIT`].
    #[default]
    Shut,
    /// The origin answered without asking for the body: no more waiting for the time.
    Answered,
    /// The body goes.
    Open,
    /// The exchange ended before the body was asked for: it ends unsent.
    Refused,
}

/// Longest a request body waits at its [`ContinueGate`].
pub const CONTINUE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

impl ContinueGate {
    /// Lets the body through, unless the origin has answered already.
    pub fn open(&self) {
        self.moved(&[Gate::Shut], Gate::Open);
    }

    /// The origin's final answer came while the body waited: it waits on, for
    /// [`ContinueGate::refuse`], not for the time.
    pub fn answered(&self) {
        self.moved(&[Gate::Shut], Gate::Answered);
    }

    /// The exchange is over: a body still waiting ends unsent.
    pub fn refuse(&self) {
        self.moved(&[Gate::Shut, Gate::Answered], Gate::Refused);
    }

    fn moved(&self, from: &[Gate], to: Gate) {
        let waiting = {
            let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
            if !from.contains(&state.at) {
                return;
            }
            state.at = to;
            state.waiting.take()
        };
        if let Some(waker) = waiting {
            waker.wake();
        }
    }

    /// Where it is; `cx` is woken when it moves on from waiting.
    fn poll_at(&self, cx: &mut Context<'_>) -> Gate {
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if matches!(state.at, Gate::Shut | Gate::Answered) {
            state.waiting = Some(cx.waker().clone());
        }
        state.at
    }
}

/// Where a request body goes back to when the upstream side let go of it unread.
pub type UnreadSlot<B> = Arc<Mutex<Option<B>>>;

/// The body given back to `slot`, if it was.
pub fn take_unread<B>(slot: &UnreadSlot<B>) -> Option<B> {
    slot.lock().unwrap_or_else(|e| e.into_inner()).take()
}

/// A request body that, dropped before it was ever read (the connection to the origin
/// failed first), goes back to its [`UnreadSlot`] instead of away, so that the exchange
/// can still read it from the client and record it. A body without a slot (an empty
/// one: nothing to give back) is dropped as usual.
pub struct ReturnedIfUnread<B> {
    inner: Option<B>,
    slot: Option<UnreadSlot<B>>,
    read: bool,
    /// For a request sent again: its whole body, already read from the client and
    /// recorded the first time (sent as one frame, not teed again).
    again: Option<Bytes>,
    /// Held back until the origin asks for it, with the wait's end once it began.
    gate: Option<(ContinueGate, Option<Pin<Box<tokio::time::Sleep>>>)>,
    /// Takes the body when it is dropped read in part (see [`ReturnedIfUnread::lingering`]).
    linger: Option<fn(B)>,
}

impl<B> ReturnedIfUnread<B> {
    /// Wraps `inner`, giving it back to `slot` if it is dropped unread.
    pub fn new(inner: B, slot: Option<UnreadSlot<B>>) -> Self {
        ReturnedIfUnread {
            inner: Some(inner),
            slot,
            read: false,
            again: None,
            gate: None,
            linger: None,
        }
    }

    /// Hands the body to `linger` if the upstream side lets go of it after reading part
    /// of it (an origin that answered early and reset its stream, or whose connection
    /// failed): the client may still be sending it.
    pub fn lingering(mut self, linger: fn(B)) -> Self {
        self.linger = Some(linger);
        self
    }

    /// Holds the body back at `gate` (see [`ContinueGate`]).
    pub fn hold_at(&mut self, gate: ContinueGate) {
        self.gate = Some((gate, None));
    }

    /// The body of a request sent again: `bytes`, read and recorded the first time.
    pub fn again(bytes: Bytes) -> Self {
        ReturnedIfUnread {
            inner: None,
            slot: None,
            read: false,
            again: (!bytes.is_empty()).then_some(bytes),
            gate: None,
            linger: None,
        }
    }

    /// The body it wraps, unless it is a body sent again.
    pub fn inner(&self) -> Option<&B> {
        self.inner.as_ref()
    }
}

impl<B> Body for ReturnedIfUnread<B>
where
    B: Body + Unpin,
    B::Data: From<Bytes>,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        if let Some((gate, waited)) = self.gate.as_mut() {
            loop {
                match gate.poll_at(cx) {
                    Gate::Open => break,
                    // The time's up: open, unless the origin answered meanwhile.
                    Gate::Shut => {
                        let waited = waited
                            .get_or_insert_with(|| Box::pin(tokio::time::sleep(CONTINUE_WAIT)));
                        ready!(waited.as_mut().poll(cx));
                        gate.open();
                    }
                    Gate::Answered => return Poll::Pending,
                    Gate::Refused => {
                        // Never read: the client was not told to send it.
                        self.gate = None;
                        self.read = true;
                        self.inner = None;
                        return Poll::Ready(None);
                    }
                }
            }
            self.gate = None;
        }
        self.read = true;
        match self.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_frame(cx),
            None => Poll::Ready(self.again.take().map(|bytes| Ok(Frame::data(bytes.into())))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.again.is_none() && self.inner.as_ref().is_none_or(B::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.inner, &self.again) {
            (Some(inner), _) => inner.size_hint(),
            (None, Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            (None, None) => SizeHint::with_exact(0),
        }
    }
}

impl<B> Drop for ReturnedIfUnread<B> {
    fn drop(&mut self) {
        let Some(inner) = self.inner.take() else {
            return;
        };
        match (self.read, &self.slot, self.linger) {
            (false, Some(slot), _) => *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(inner),
            (true, _, Some(linger)) => linger(inner),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_up_to_the_limit_and_counts_everything() {
        let mut capture = BodyCapture::new(10);
        capture.push(&Bytes::from_static(b"hello"));
        capture.push(&Bytes::from_static(b"world!!"));
        capture.push(&Bytes::from_static(b"more"));
        capture.end();
        let body = capture.snapshot();
        assert_eq!(&body.bytes[..], b"helloworld");
        assert_eq!(body.wire_size, 16);
        assert!(body.truncated);
        assert!(!body.incomplete);
    }

    #[test]
    fn a_body_without_an_end_is_incomplete() {
        let mut capture = BodyCapture::new(10);
        capture.push(&Bytes::from_static(b"abc"));
        assert!(capture.snapshot().incomplete);
        capture.fail(None);
        assert!(capture.snapshot().incomplete);
    }

    #[test]
    fn a_declared_length_is_kept_in_one_allocation() {
        let mut capture = BodyCapture::new(10);
        capture.expect(1 << 40);
        assert!(capture.kept.capacity() >= 10 && capture.kept.capacity() < 1 << 20);
        let reserved = capture.kept.as_ptr();
        capture.push(&Bytes::from_static(b"hello"));
        capture.push(&Bytes::from_static(b"world!!"));
        assert_eq!(capture.kept.as_ptr(), reserved);
        capture.end();
        assert_eq!(&capture.snapshot().bytes[..], b"helloworld");
    }

    #[test]
    fn a_zero_limit_keeps_nothing() {
        let mut capture = BodyCapture::new(0);
        capture.push(&Bytes::from_static(b"abc"));
        capture.end();
        let body = capture.snapshot();
        assert!(body.bytes.is_empty());
        assert!(body.truncated);
        assert_eq!(body.wire_size, 3);
    }
}
