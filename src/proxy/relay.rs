//! Relaying bytes both ways between two streams (blind tunnels, switched WebSocket
//! connections), counting them even when the relay ends in an error.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How a relay ended.
#[derive(Debug)]
pub(crate) struct Relayed {
    /// Bytes from the client to the server.
    pub(crate) up: u64,
    /// Bytes from the server to the client.
    pub(crate) down: u64,
    /// Why it broke off, if it did not end with a clean close on both sides.
    pub(crate) error: Option<io::Error>,
}

/// Copies `client` ↔ `server` until both sides close.
pub(crate) async fn relay<C, S>(client: C, mut server: S) -> Relayed
where
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let read = Arc::new(AtomicU64::new(0));
    let written = Arc::new(AtomicU64::new(0));
    let mut client = Counted {
        inner: client,
        read: read.clone(),
        written: written.clone(),
    };
    let result = tokio::io::copy_bidirectional(&mut client, &mut server).await;
    // A peer that closes TLS without close_notify has still closed.
    let error = result
        .err()
        .filter(|e| e.kind() != io::ErrorKind::UnexpectedEof);
    Relayed {
        up: read.load(Ordering::Relaxed),
        down: written.load(Ordering::Relaxed),
        error,
    }
}

/// A stream that counts the bytes read from and written to it.
struct Counted<I> {
    inner: I,
    read: Arc<AtomicU64>,
    written: Arc<AtomicU64>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Counted<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        self.read.fetch_add(n, Ordering::Relaxed);
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Counted<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &polled {
            self.written.fetch_add(*n as u64, Ordering::Relaxed);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn counts_both_ways_and_ends_on_close() {
        let (mut client, client_side) = tokio::io::duplex(64);
        let (server_side, mut server) = tokio::io::duplex(64);
        let relay = tokio::spawn(relay(client_side, server_side));
        client.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        server.read_exact(&mut buf).await.unwrap();
        server.write_all(b"pong!").await.unwrap();
        let mut buf = [0u8; 5];
        client.read_exact(&mut buf).await.unwrap();
        drop(client);
        drop(server);
        let relayed = relay.await.unwrap();
        assert_eq!((relayed.up, relayed.down), (4, 5));
        assert!(relayed.error.is_none(), "{:?}", relayed.error);
    }
}
