//! The flow event stream: the proxy publishes every completed or failed flow; one
//! consumer (the recorder: capture store, printers, UI) takes them in order.
//!
//! Delivery is lossless and bounded. An exchange reserves its slot in the queue when it
//! starts ([`FlowPublisher::reserve`]) and fills it when it ends, so a flow is never
//! dropped and never has to wait for room at the end of an exchange; if the consumer
//! falls behind, new exchanges wait for a slot (backpressure) instead of memory growing
//! without limit.
//!
//! Durability: a flow published with [`FlowSlot::publish_durable`] comes with an
//! acknowledgement that the consumer gives once the flow is safely stored (by dropping
//! the event's [`Acknowledgement`]). The proxy holds back the last bytes of the response
//! until then, so a client that has received a whole response can count on its flow
//! being in the capture, even if the proxy is killed the next instant.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::flow::{Flow, FlowId};

/// Default number of flows in flight plus queued.
pub const DEFAULT_CAPACITY: usize = 8192;

/// Creates a publisher/stream pair holding at most `capacity` flows in flight and queued;
/// flow ids start at 1.
pub fn channel(capacity: usize) -> (FlowPublisher, FlowStream) {
    channel_from(capacity, 1)
}

/// Like [`channel`], with flow ids starting at `first_id` (to append to a capture).
pub fn channel_from(capacity: usize, first_id: FlowId) -> (FlowPublisher, FlowStream) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (
        FlowPublisher {
            tx,
            next_id: Arc::new(AtomicU64::new(first_id)),
        },
        FlowStream { rx },
    )
}

/// A published flow and the acknowledgement its publisher may be waiting for.
#[derive(Debug)]
pub struct FlowEvent {
    /// The flow.
    pub flow: Flow,
    /// Dropped (or [`Acknowledgement::done`]) once the flow is stored.
    pub ack: Acknowledgement,
}

/// Tells a waiting publisher that its flow is safely stored, when dropped.
#[derive(Debug, Default)]
pub struct Acknowledgement(Option<oneshot::Sender<()>>);

impl Acknowledgement {
    /// Acknowledges now (the same as dropping it).
    pub fn done(self) {}
}

impl Drop for Acknowledgement {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

/// Longest a response is held back for its flow to be stored. Past it the response is
/// released with a warning: a stalled disk must not hang every client.
pub const STORE_WAIT_LIMIT: Duration = Duration::from_secs(10);

/// Resolves once the consumer has stored (or dropped) a durably published flow, or
/// after [`STORE_WAIT_LIMIT`].
#[derive(Debug)]
pub struct Stored {
    rx: Option<oneshot::Receiver<()>>,
    limit: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Stored {
    fn new(rx: Option<oneshot::Receiver<()>>) -> Self {
        Stored { rx, limit: None }
    }
}

impl Future for Stored {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(rx) = self.rx.as_mut() else {
            return Poll::Ready(());
        };
        if Pin::new(rx).poll(cx).is_ready() {
            return Poll::Ready(());
        }
        let limit = self
            .limit
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(STORE_WAIT_LIMIT)));
        if limit.as_mut().poll(cx).is_ready() {
            tracing::warn!(
                "a flow waited more than {STORE_WAIT_LIMIT:?} to be stored; releasing its response"
            );
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

/// The proxy's side: hands out flow ids and queue slots.
#[derive(Clone, Debug)]
pub struct FlowPublisher {
    tx: mpsc::Sender<FlowEvent>,
    next_id: Arc<AtomicU64>,
}

impl FlowPublisher {
    /// Reserves a queue slot for one flow, waiting while the queue is full.
    pub async fn reserve(&self) -> FlowSlot {
        let permit = self.tx.clone().reserve_owned().await.ok();
        FlowSlot {
            permit,
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// The number of flows that could still be reserved right now.
    pub fn free_slots(&self) -> usize {
        self.tx.capacity()
    }
}

/// A reserved place in the queue for one flow, with the flow's id.
#[derive(Debug)]
pub struct FlowSlot {
    permit: Option<mpsc::OwnedPermit<FlowEvent>>,
    id: FlowId,
}

impl FlowSlot {
    /// The id the flow must carry.
    pub fn id(&self) -> FlowId {
        self.id
    }

    /// Publishes the flow without waiting for it to be stored (nobody is waiting on
    /// this exchange any more). Never blocks: the slot was reserved up front.
    pub fn publish(self, flow: Flow) {
        self.send(flow, Acknowledgement::default());
    }

    /// Publishes the flow; the returned future resolves once the consumer has stored it.
    pub fn publish_durable(self, flow: Flow) -> Stored {
        if self.permit.is_none() {
            return Stored::new(None);
        }
        let (tx, rx) = oneshot::channel();
        self.send(flow, Acknowledgement(Some(tx)));
        Stored::new(Some(rx))
    }

    fn send(self, flow: Flow, ack: Acknowledgement) {
        debug_assert_eq!(flow.id, self.id);
        if let Some(permit) = self.permit {
            permit.send(FlowEvent { flow, ack });
        }
    }
}

/// The consumer's side: every published flow, in publication order.
#[derive(Debug)]
pub struct FlowStream {
    rx: mpsc::Receiver<FlowEvent>,
}

impl FlowStream {
    /// The next event; `None` once every publisher is gone and the queue is empty.
    pub async fn recv(&mut self) -> Option<FlowEvent> {
        self.rx.recv().await
    }

    /// The next event, blocking the current (non-async) thread.
    pub fn blocking_recv(&mut self) -> Option<FlowEvent> {
        self.rx.blocking_recv()
    }

    /// An event if one is queued right now.
    pub fn try_recv(&mut self) -> Option<FlowEvent> {
        self.rx.try_recv().ok()
    }

    /// Flows queued right now (the recorder's backlog).
    pub fn backlog(&self) -> usize {
        self.rx.len()
    }
}
