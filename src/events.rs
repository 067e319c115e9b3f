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

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

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
            in_flight: None,
            stopping: Arc::default(),
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
pub struct Acknowledgement {
    tx: Option<oneshot::Sender<()>>,
    /// Where the publisher waits, if its thread takes acknowledgements in batches.
    inbox: Option<AcknowledgementInbox>,
}

impl Acknowledgement {
    /// Acknowledges now (the same as dropping it).
    pub fn done(self) {}

    /// Acknowledges all of `acks`; those published on a connection thread are handed to
    /// it at once, to acknowledge there: waking a task from another thread costs a
    /// system call, waking it from its own thread does not.
    pub fn done_all(acks: impl IntoIterator<Item = Acknowledgement>) {
        let mut batches: Vec<(AcknowledgementInbox, Vec<oneshot::Sender<()>>)> = Vec::new();
        for mut ack in acks {
            // One without an inbox acknowledges as it goes.
            let Some(inbox) = ack.inbox.take() else {
                continue;
            };
            let Some(tx) = ack.tx.take() else {
                continue;
            };
            match batches.iter_mut().find(|(to, _)| to.same_channel(&inbox)) {
                Some((_, batch)) => batch.push(tx),
                None => batches.push((inbox, vec![tx])),
            }
        }
        for (inbox, batch) in batches {
            deliver(&inbox, batch);
        }
    }
}

impl Drop for Acknowledgement {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            match &self.inbox {
                Some(inbox) => deliver(inbox, vec![tx]),
                None => drop(tx.send(())),
            }
        }
    }
}

/// Where a thread takes the acknowledgements of its publishers.
pub(crate) type AcknowledgementInbox = mpsc::UnboundedSender<Vec<oneshot::Sender<()>>>;

thread_local! {
    static ACKNOWLEDGEMENT_INBOX: std::cell::RefCell<Option<AcknowledgementInbox>> =
        const { std::cell::RefCell::new(None) };
}

/// Hands `batch` to `inbox`. If its thread has stopped, the batch is dropped, which
/// releases its waiters as well ([`Stored`] takes a sender gone for the acknowledgement).
fn deliver(inbox: &AcknowledgementInbox, batch: Vec<oneshot::Sender<()>>) {
    let _ = inbox.send(batch);
}

/// An inbox for the acknowledgements of flows published on one thread, whose batches a
/// task on `runtime` hands out: the runtime of that thread alone (a current-thread
/// runtime, as each connection thread has). The thread takes it with
/// [`receive_acknowledgements_here`].
pub(crate) fn acknowledgement_inbox(runtime: &tokio::runtime::Handle) -> AcknowledgementInbox {
    let (inbox, mut batches) = mpsc::unbounded_channel::<Vec<oneshot::Sender<()>>>();
    runtime.spawn(async move {
        while let Some(batch) = batches.recv().await {
            for tx in batch {
                let _ = tx.send(());
            }
        }
    });
    inbox
}

/// Sends the acknowledgements of the flows published on this thread from now on to
/// `inbox` ([`acknowledgement_inbox`]).
pub(crate) fn receive_acknowledgements_here(inbox: AcknowledgementInbox) {
    ACKNOWLEDGEMENT_INBOX.with(|here| *here.borrow_mut() = Some(inbox));
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

/// The exchanges under way, for a viewer that shows them before they end (the UI):
/// each flow as it was when its exchange started (the request head) or, once it
/// switched to a WebSocket, with the response head and the messages so far; until the
/// flow is published.
#[derive(Clone, Debug, Default)]
pub struct InFlight(Arc<Mutex<BTreeMap<FlowId, UnderWay>>>);

/// One exchange under way.
#[derive(Debug)]
struct UnderWay {
    flow: Flow,
    /// Handed to the viewer already.
    listed: bool,
    /// The WebSocket it switched to, its messages read as they pass.
    websocket: Option<Arc<Mutex<crate::websocket::Connection>>>,
}

impl InFlight {
    fn board(&self) -> std::sync::MutexGuard<'_, BTreeMap<FlowId, UnderWay>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The exchanges under way that started before `before` and were not listed by this
    /// before, oldest first: each is handed over once.
    pub fn list_started_before(&self, before: SystemTime) -> Vec<Flow> {
        self.board()
            .values_mut()
            .filter(|under_way| !under_way.listed && under_way.flow.started_at < before)
            .map(|under_way| {
                under_way.listed = true;
                under_way.flow.clone()
            })
            .collect()
    }

    /// Exchange `id` as it stands now, if it is still under way: its request, the
    /// response head once it switched to a WebSocket, and the messages so far.
    pub fn current(&self, id: FlowId) -> Option<Flow> {
        // The board is held only to copy the entry: every exchange takes it twice.
        let (mut flow, websocket) = {
            let board = self.board();
            let under_way = board.get(&id)?;
            (under_way.flow.clone(), under_way.websocket.clone())
        };
        if let Some(websocket) = &websocket {
            let connection = websocket.lock().unwrap_or_else(|e| e.into_inner());
            // Closed: its flow is about to be published, with the log.
            connection.progress()?;
            let (up, down) = connection.relayed();
            flow.record_relayed(up, down);
            flow.websocket = Some(Box::new(connection.log().clone()));
        }
        Some(flow)
    }

    /// How far WebSocket exchange `id` has come, if it is one and still under way: a
    /// viewer copies it ([`InFlight::current`]) only when this changed.
    pub fn progress(&self, id: FlowId) -> Option<crate::websocket::Progress> {
        let websocket = self.board().get(&id)?.websocket.clone()?;
        let connection = websocket.lock().unwrap_or_else(|e| e.into_inner());
        connection.progress()
    }

    /// How many exchanges are under way.
    pub fn len(&self) -> usize {
        self.board().len()
    }

    /// True when no exchange is under way.
    pub fn is_empty(&self) -> bool {
        self.board().is_empty()
    }
}

/// The proxy's side: hands out flow ids and queue slots.
#[derive(Clone, Debug)]
pub struct FlowPublisher {
    tx: mpsc::Sender<FlowEvent>,
    next_id: Arc<AtomicU64>,
    in_flight: Option<InFlight>,
    /// Set once the proxy is stopping.
    stopping: Arc<std::sync::atomic::AtomicBool>,
}

impl FlowPublisher {
    /// Reserves a queue slot for one flow, waiting while the queue is full.
    pub async fn reserve(&self) -> FlowSlot {
        let permit = self.tx.clone().reserve_owned().await.ok();
        FlowSlot {
            permit,
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            in_flight: self.in_flight.clone(),
            stopping: self.stopping.clone(),
        }
    }

    /// The proxy is stopping: exchanges broken off from now on were cut short by that,
    /// not by their client ([`FlowSlot::proxy_stopping`]).
    pub fn announce_stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// Lists every exchange on `in_flight` from its start ([`FlowSlot::started`]) until
    /// its flow is published. Without it (headless), nothing is listed.
    pub fn list_in_flight(&mut self, in_flight: InFlight) {
        self.in_flight = Some(in_flight);
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
    in_flight: Option<InFlight>,
    stopping: Arc<std::sync::atomic::AtomicBool>,
}

impl FlowSlot {
    /// The id the flow must carry.
    pub fn id(&self) -> FlowId {
        self.id
    }

    /// True once the proxy is stopping ([`FlowPublisher::announce_stop`]).
    pub fn proxy_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// The exchange has started as `flow` says: listed as under way, if anyone is
    /// listing, until its flow is published.
    pub fn started(&self, flow: &Flow) {
        if let Some(in_flight) = &self.in_flight {
            let under_way = UnderWay {
                flow: flow.clone(),
                listed: false,
                websocket: None,
            };
            in_flight.board().insert(self.id, under_way);
        }
    }

    /// The exchange switched to a WebSocket (`flow` has its response head now) whose
    /// messages are read into `websocket`: a viewer sees them as they come.
    pub fn switched(&self, flow: &Flow, websocket: Arc<Mutex<crate::websocket::Connection>>) {
        if let Some(in_flight) = &self.in_flight {
            if let Some(under_way) = in_flight.board().get_mut(&self.id) {
                under_way.flow = flow.clone();
                under_way.websocket = Some(websocket);
                // Listed before it switched: listed again, with its 101.
                under_way.listed = false;
            }
        }
    }

    /// No longer under way: before the flow is sent, so that a viewer that has the
    /// published flow never sees it listed as under way afterwards.
    fn leave_in_flight(&mut self) {
        if let Some(in_flight) = self.in_flight.take() {
            in_flight.board().remove(&self.id);
        }
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
        let inbox = ACKNOWLEDGEMENT_INBOX.with(|here| here.borrow().clone());
        let ack = Acknowledgement {
            tx: Some(tx),
            inbox,
        };
        self.send(flow, ack);
        Stored::new(Some(rx))
    }

    fn send(mut self, flow: Flow, ack: Acknowledgement) {
        debug_assert_eq!(flow.id, self.id);
        self.leave_in_flight();
        if let Some(permit) = self.permit.take() {
            permit.send(FlowEvent { flow, ack });
        }
    }
}

impl Drop for FlowSlot {
    fn drop(&mut self) {
        self.leave_in_flight();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_websocket_under_way_shows_its_messages_so_far() {
        use crate::websocket::{Connection, Negotiated};
        let (mut publisher, _stream) = channel(4);
        let in_flight = InFlight::default();
        publisher.list_in_flight(in_flight.clone());
        let client = "127.0.0.1:5000".parse().unwrap();
        let slot = publisher.reserve().await;
        let mut flow = Flow::exchange(slot.id(), client, "GET", "http://a.test/live", None);
        slot.started(&flow);
        assert!(in_flight.current(slot.id()).unwrap().websocket.is_none());
        flow.response = Flow::exchange(1, client, "GET", "/", Some(101)).response;
        let connection = Arc::new(Mutex::new(Connection::new(Negotiated::default(), 1024)));
        let later = SystemTime::now() + Duration::from_secs(1);
        assert_eq!(in_flight.list_started_before(later).len(), 1);
        slot.switched(&flow, connection.clone());
        let listed = in_flight.list_started_before(later);
        assert_eq!(listed[0].status(), Some(101), "listed again, switched");
        // An unmasked text frame from the server: "hi".
        connection
            .lock()
            .unwrap()
            .server_sent(&[0x81, 2, b'h', b'i'], SystemTime::UNIX_EPOCH);
        let now = in_flight.current(slot.id()).unwrap();
        assert_eq!(now.status(), Some(101));
        assert_eq!(now.response.unwrap().body.wire_size, 4);
        let log = now.websocket.unwrap();
        assert_eq!(&log.messages[0].payload[..], b"hi");
        let id = slot.id();
        slot.publish(flow);
        assert!(in_flight.current(id).is_none(), "gone once published");
    }

    #[tokio::test]
    async fn an_exchange_is_listed_as_under_way_until_its_flow_is_published() {
        let (mut publisher, mut stream) = channel(4);
        let in_flight = InFlight::default();
        publisher.list_in_flight(in_flight.clone());
        let client = "127.0.0.1:5000".parse().unwrap();
        let (first, second) = (publisher.reserve().await, publisher.reserve().await);
        let flow = Flow::exchange(first.id(), client, "GET", "http://a.test/slow", None);
        first.started(&flow);
        second.started(&Flow::exchange(
            second.id(),
            client,
            "GET",
            "http://a.test/",
            None,
        ));
        let later = SystemTime::now() + Duration::from_secs(1);
        let listed = |in_flight: &InFlight| -> Vec<FlowId> {
            let flows = in_flight.list_started_before(later);
            flows.iter().map(|f| f.id).collect()
        };
        assert_eq!(listed(&in_flight), [1, 2]);
        assert!(listed(&in_flight).is_empty(), "each handed over once");
        assert!(in_flight
            .list_started_before(SystemTime::UNIX_EPOCH)
            .is_empty());

        first.publish(flow);
        assert_eq!(in_flight.len(), 1, "gone once published");
        assert_eq!(stream.recv().await.unwrap().flow.id, 1);
        drop(second);
        assert!(in_flight.is_empty(), "gone when its exchange is dropped");

        // Nobody listing: nothing is kept.
        let (quiet, _stream) = channel(1);
        let slot = quiet.reserve().await;
        slot.started(&Flow::exchange(
            slot.id(),
            client,
            "GET",
            "http://a.test/",
            None,
        ));
        assert!(slot.in_flight.is_none());
    }

    /// Publishes `n` flows durably on the current runtime.
    async fn publish_durably(publisher: &FlowPublisher, n: usize) -> Vec<Stored> {
        let client = "127.0.0.1:5000".parse().unwrap();
        let mut stored = Vec::new();
        for _ in 0..n {
            let slot = publisher.reserve().await;
            let flow = Flow::exchange(slot.id(), client, "GET", "http://a.test/", Some(200));
            stored.push(slot.publish_durable(flow));
        }
        stored
    }

    #[test]
    fn a_thread_that_takes_acknowledgements_in_batches_gets_every_one() {
        let (publisher, stream) = channel(8);
        let thread = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        receive_acknowledgements_here(acknowledgement_inbox(thread.handle()));
        let mut stream = thread.block_on(async {
            let stored = publish_durably(&publisher, 3).await;
            // The recorder's side, on a thread of its own.
            let recorder = std::thread::spawn(move || {
                let mut stream = stream;
                let acks: Vec<_> = (0..3)
                    .map(|_| stream.blocking_recv().unwrap().ack)
                    .collect();
                assert!(acks.iter().all(|ack| ack.inbox.is_some()));
                Acknowledgement::done_all(acks);
                stream
            });
            let all = futures_util::future::join_all(stored);
            // Well within STORE_WAIT_LIMIT, past which a response goes unacknowledged.
            tokio::time::timeout(Duration::from_secs(5), all)
                .await
                .expect("every flow acknowledged");
            recorder.join().unwrap()
        });

        // Once the thread's runtime is gone, its flows are released all the same.
        let stored = thread.block_on(publish_durably(&publisher, 1));
        drop(thread);
        Acknowledgement::done_all([stream.try_recv().unwrap().ack]);
        let elsewhere = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        elsewhere.block_on(async {
            let all = futures_util::future::join_all(stored);
            tokio::time::timeout(Duration::from_secs(5), all)
                .await
                .expect("acknowledged without the thread's runtime");
        });
    }
}
