//! Closing client connections that sit idle: a stream wrapper that notes when bytes last
//! moved, and a driver that shuts a connection down gracefully once nothing has moved
//! for the idle timeout.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// When bytes last moved on a watched stream.
#[derive(Clone)]
pub(crate) struct Activity {
    since: Instant,
    /// Milliseconds after `since` of the last read or write.
    last_ms: Arc<AtomicU64>,
}

impl Activity {
    fn touch(&self) {
        let now = self.since.elapsed().as_millis() as u64;
        self.last_ms.store(now, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.since.elapsed().saturating_sub(last)
    }

    /// Drives `connection` to its end, calling `shutdown` on it (once) when no bytes have
    /// moved for `timeout`. A graceful shutdown lets requests in flight finish.
    pub(crate) fn close_when_idle<C: Future>(
        self,
        connection: C,
        timeout: Duration,
        shutdown: fn(Pin<&mut C>),
    ) -> CloseWhenIdle<C> {
        CloseWhenIdle {
            connection: Box::pin(connection),
            check: Box::pin(tokio::time::sleep(timeout)),
            activity: self,
            timeout,
            shutdown: Some(shutdown),
        }
    }
}

/// The future of [`Activity::close_when_idle`].
pub(crate) struct CloseWhenIdle<C> {
    connection: Pin<Box<C>>,
    check: Pin<Box<tokio::time::Sleep>>,
    activity: Activity,
    timeout: Duration,
    shutdown: Option<fn(Pin<&mut C>)>,
}

impl<C: Future> Future for CloseWhenIdle<C> {
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let this = self.get_mut();
        if let Poll::Ready(output) = this.connection.as_mut().poll(cx) {
            return Poll::Ready(output);
        }
        while this.shutdown.is_some() && this.check.as_mut().poll(cx).is_ready() {
            let idle = this.activity.idle_for();
            if idle >= this.timeout {
                if let Some(shutdown) = this.shutdown.take() {
                    shutdown(this.connection.as_mut());
                }
                // The shutdown has work to do (GOAWAY, closing): poll again.
                cx.waker().wake_by_ref();
            } else {
                let next = tokio::time::Instant::now() + (this.timeout - idle);
                this.check.as_mut().reset(next);
            }
        }
        Poll::Pending
    }
}

/// A stream that records activity on every read and write that moves bytes.
pub(crate) struct IdleWatch<I> {
    io: I,
    activity: Activity,
}

impl<I> IdleWatch<I> {
    /// Wraps `io`; the returned [`Activity`] observes it.
    pub(crate) fn new(io: I) -> (Self, Activity) {
        let activity = Activity {
            since: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        };
        let watch = IdleWatch {
            io,
            activity: activity.clone(),
        };
        (watch, activity)
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for IdleWatch<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.touch();
        }
        result
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for IdleWatch<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        result
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
