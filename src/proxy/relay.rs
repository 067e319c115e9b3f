//! Relaying bytes both ways between two streams (blind tunnels, switched WebSocket
//! connections), counting them even when the relay ends in an error, reading a
//! WebSocket's messages as they pass, and recording the relay's flow even when kinspect
//! stops while it is open.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::events::FlowSlot;
use crate::flow::{Flow, FlowError, FlowErrorKind};
use crate::websocket;

/// The bytes relayed each way so far, and a WebSocket's messages when it is one.
#[derive(Debug, Clone, Default)]
pub(crate) struct Counts {
    up: Arc<AtomicU64>,
    down: Arc<AtomicU64>,
    websocket: Option<Arc<Mutex<websocket::Connection>>>,
}

impl Counts {
    fn up(&self) -> u64 {
        self.up.load(Ordering::Relaxed)
    }

    fn down(&self) -> u64 {
        self.down.load(Ordering::Relaxed)
    }
}

/// Copies `client` ↔ `server` until both sides close, counting into `counts`; the
/// error it broke off with, if it did not end with a clean close on both sides.
pub(crate) async fn relay<C, S>(client: C, mut server: S, counts: &Counts) -> Option<io::Error>
where
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut client = Counted {
        inner: client,
        read: counts.up.clone(),
        written: counts.down.clone(),
        websocket: counts.websocket.clone(),
    };
    let result = tokio::io::copy_bidirectional(&mut client, &mut server).await;
    // A peer that closes TLS without close_notify has still closed; so has a WebSocket
    // whose closing handshake is done, whatever its connection does next (a reset).
    let closed_cleanly = counts.websocket.as_ref().is_some_and(|websocket| {
        websocket
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .closed_cleanly()
    });
    result
        .err()
        .filter(|e| e.kind() != io::ErrorKind::UnexpectedEof && !closed_cleanly)
}

/// The flow of a relayed connection (a tunnel, a switched WebSocket), published however
/// the relay ends: by its owner once it is over ([`RelayRecord::finish`]), or, dropped
/// while still open (kinspect stopping), with the bytes relayed so far and why.
pub(crate) struct RelayRecord {
    parts: Option<(FlowSlot, Flow)>,
    counts: Counts,
    opened: Instant,
}

impl RelayRecord {
    /// The record of `flow`, whose relay's time (HAR's `receive`) counts from `opened`.
    pub(crate) fn new(slot: FlowSlot, flow: Flow, opened: Instant) -> Self {
        RelayRecord {
            parts: Some((slot, flow)),
            counts: Counts::default(),
            opened,
        }
    }

    /// Reads the relayed bytes as the WebSocket `connection` (a flow switched to one),
    /// its messages shown as they come to a viewer of the exchanges under way.
    pub(crate) fn reading_websocket(mut self, connection: websocket::Connection) -> Self {
        let websocket = Arc::new(Mutex::new(connection));
        if let Some((slot, flow)) = &self.parts {
            slot.switched(flow, websocket.clone());
        }
        self.counts.websocket = Some(websocket);
        self
    }

    /// Where the relay counts its bytes.
    pub(crate) fn counts(&self) -> &Counts {
        &self.counts
    }

    /// The relay is over: its slot and its flow, the bytes each way recorded.
    pub(crate) fn finish(mut self) -> (FlowSlot, Flow) {
        let (slot, mut flow) = self.parts.take().expect("finished once");
        self.record_bytes(&mut flow);
        (slot, flow)
    }

    fn record_bytes(&self, flow: &mut Flow) {
        flow.record_relayed(self.counts.up(), self.counts.down());
        if let Some(websocket) = &self.counts.websocket {
            // A reader that panicked left what it had read.
            let mut connection = websocket.lock().unwrap_or_else(|e| e.into_inner());
            flow.websocket = Some(Box::new(connection.take_log()));
        }
        flow.timings.receive = self.opened.elapsed();
    }
}

impl Drop for RelayRecord {
    fn drop(&mut self) {
        let Some((slot, mut flow)) = self.parts.take() else {
            return;
        };
        self.record_bytes(&mut flow);
        let (host, port, open_for) = (&flow.host, flow.port, self.opened.elapsed());
        flow.error = Some(match slot.proxy_stopping() {
            true => FlowError {
                kind: FlowErrorKind::Stopped,
                message: format!(
                    "kinspect stopped with the connection to {host}:{port} still open, \
                     after {open_for:.1?}"
                ),
            },
            false => FlowError {
                kind: FlowErrorKind::Protocol,
                message: format!(
                    "the relay of the connection to {host}:{port} ended unexpectedly, after \
                     {open_for:.1?}"
                ),
            },
        });
        slot.publish(flow);
    }
}

/// A stream (the client's side) that counts the bytes read from and written to it, and
/// reads them as WebSocket frames when given a connection to read them into.
struct Counted<I> {
    inner: I,
    read: Arc<AtomicU64>,
    written: Arc<AtomicU64>,
    websocket: Option<Arc<Mutex<websocket::Connection>>>,
}

impl<I> Counted<I> {
    /// Hands `bytes` to the WebSocket reader, if there is one.
    fn read_messages(&self, bytes: &[u8], from_client: bool) {
        let Some(websocket) = &self.websocket else {
            return;
        };
        if bytes.is_empty() {
            return;
        }
        let mut connection = websocket.lock().unwrap_or_else(|e| e.into_inner());
        match from_client {
            true => connection.client_sent(bytes, SystemTime::now()),
            false => connection.server_sent(bytes, SystemTime::now()),
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Counted<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = &buf.filled()[before..];
        self.read.fetch_add(read.len() as u64, Ordering::Relaxed);
        self.read_messages(read, true);
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
            self.read_messages(&buf[..*n], false);
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
        let counts = Counts::default();
        let relay = tokio::spawn({
            let counts = counts.clone();
            async move { relay(client_side, server_side, &counts).await }
        });
        client.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        server.read_exact(&mut buf).await.unwrap();
        server.write_all(b"pong!").await.unwrap();
        let mut buf = [0u8; 5];
        client.read_exact(&mut buf).await.unwrap();
        drop(client);
        drop(server);
        let error = relay.await.unwrap();
        assert_eq!((counts.up(), counts.down()), (4, 5));
        assert!(error.is_none(), "{error:?}");
    }
}
