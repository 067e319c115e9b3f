//! The flow event stream: the proxy publishes every completed or failed flow; one
//! consumer (the recorder: capture store, printers, UI) takes them in order.
//!
//! Delivery is lossless and bounded. An exchange reserves its slot in the queue when it
//! starts ([`FlowPublisher::reserve`]) and fills it when it ends, so a flow is never
//! dropped and never has to wait at the end of an exchange; if the consumer falls behind,
//! new exchanges wait for a slot (backpressure) instead of memory growing without limit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::flow::{Flow, FlowId};

/// Default number of flows in flight plus queued.
pub const DEFAULT_CAPACITY: usize = 8192;

/// Creates a publisher/stream pair holding at most `capacity` flows in flight and queued.
pub fn channel(capacity: usize) -> (FlowPublisher, FlowStream) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (
        FlowPublisher {
            tx,
            next_id: Arc::new(AtomicU64::new(1)),
        },
        FlowStream { rx },
    )
}

/// The proxy's side: hands out flow ids and queue slots.
#[derive(Clone, Debug)]
pub struct FlowPublisher {
    tx: mpsc::Sender<Flow>,
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
    permit: Option<mpsc::OwnedPermit<Flow>>,
    id: FlowId,
}

impl FlowSlot {
    /// The id the flow must carry.
    pub fn id(&self) -> FlowId {
        self.id
    }

    /// Publishes the flow. Never waits: the slot was reserved up front.
    pub fn publish(self, flow: Flow) {
        debug_assert_eq!(flow.id, self.id);
        if let Some(permit) = self.permit {
            permit.send(flow);
        }
    }
}

/// The consumer's side: every published flow, in publication order.
#[derive(Debug)]
pub struct FlowStream {
    rx: mpsc::Receiver<Flow>,
}

impl FlowStream {
    /// The next flow; `None` once every publisher is gone and the queue is empty.
    pub async fn recv(&mut self) -> Option<Flow> {
        self.rx.recv().await
    }

    /// The next flow, blocking the current (non-async) thread.
    pub fn blocking_recv(&mut self) -> Option<Flow> {
        self.rx.blocking_recv()
    }

    /// A flow if one is queued right now.
    pub fn try_recv(&mut self) -> Option<Flow> {
        self.rx.try_recv().ok()
    }

    /// Flows queued right now (the recorder's backlog).
    pub fn backlog(&self) -> usize {
        self.rx.len()
    }
}
