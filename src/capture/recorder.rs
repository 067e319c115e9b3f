//! The recorder: the one consumer of the flow stream. It stores flows in batches, then
//! acknowledges them (releasing the responses the proxy held back) and hands them on to
//! the viewers (printer, UI).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::writer::{CheckpointPolicy, Checkpointer};
use super::{CaptureWriter, StoredFlow};
use crate::events::{Acknowledgement, FlowEvent, FlowStream};
use crate::kinvey::{self, BehaviourTracker, KinveySummary};
use crate::replay::ReplaySources;

/// Most flows stored per transaction.
const MAX_BATCH: usize = 1024;

/// Fault injection for tests: milliseconds to stall before each commit, as a slow disk
/// would. Lets a test show that a client never sees the end of a response whose flow is
/// not yet stored.
const COMMIT_DELAY_ENV: &str = "KINSPECT_FAULT_COMMIT_DELAY_MS";

/// Counters a recorder keeps while it runs.
#[derive(Debug, Default)]
pub struct RecorderStats {
    /// Flows stored.
    pub stored: AtomicU64,
    /// Transactions committed.
    pub batches: AtomicU64,
    /// Flows that could not be stored (the error was reported on stderr).
    pub failed: AtomicU64,
    /// Flows handed on to the viewer after storing (or failing to store) them.
    pub delivered: AtomicU64,
}

/// What the recorder hands each stored flow to: a printer, the UI. Any
/// `FnMut(StoredFlow)` closure is one.
pub trait FlowViewer: Send + 'static {
    /// Shows one flow, already stored (or that failed to store).
    fn show(&mut self, flow: StoredFlow);

    /// Called after each batch of flows has been shown: the moment to flush buffered
    /// output, so it costs one write per batch rather than one per flow.
    fn batch_shown(&mut self) {}
}

impl<F: FnMut(StoredFlow) + Send + 'static> FlowViewer for F {
    fn show(&mut self, flow: StoredFlow) {
        self(flow)
    }
}

/// A running recorder thread.
pub struct Recorder {
    thread: Option<JoinHandle<()>>,
    stats: Arc<RecorderStats>,
}

impl Recorder {
    /// Starts recording every flow of `stream` into `writer` with its Kinvey analysis and
    /// behaviour warnings, then showing it to `viewer`. Runs until the stream ends
    /// (every publisher dropped).
    pub fn start(
        writer: CaptureWriter,
        stream: FlowStream,
        viewer: impl FlowViewer,
    ) -> std::io::Result<Recorder> {
        Recorder::start_ignoring_replays(writer, stream, viewer, ReplaySources::default())
    }

    /// [`Recorder::start`], the exchanges of requests sent again from `replays` kept
    /// out of the client-behaviour checks (they are the user's, not the app's).
    pub fn start_ignoring_replays(
        mut writer: CaptureWriter,
        mut stream: FlowStream,
        mut viewer: impl FlowViewer,
        replays: ReplaySources,
    ) -> std::io::Result<Recorder> {
        let checkpointer = Checkpointer::start(writer.path(), CheckpointPolicy::DEFAULT)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let stats = Arc::new(RecorderStats::default());
        let counters = stats.clone();
        let commit_delay = std::env::var(COMMIT_DELAY_ENV)
            .ok()
            .and_then(|ms| ms.parse().ok())
            .map(std::time::Duration::from_millis);
        let thread = std::thread::Builder::new()
            .name("kinspect-recorder".into())
            .spawn(move || {
                let _checkpointer = checkpointer;
                let mut behaviour = BehaviourTracker::new();
                let mut batch: Vec<StoredFlow> = Vec::with_capacity(MAX_BATCH);
                let mut acks: Vec<Acknowledgement> = Vec::with_capacity(MAX_BATCH);
                let mut take =
                    |event: FlowEvent, batch: &mut Vec<StoredFlow>, acks: &mut Vec<_>| {
                        let FlowEvent { mut flow, ack } = event;
                        let analysis = kinvey::analyze(&flow);
                        flow.replay_of = replays.original_of(flow.client_addr);
                        let warnings = match flow.replay_of {
                            Some(_) => Vec::new(),
                            None => behaviour.observe(&flow, &analysis),
                        };
                        let kinvey = KinveySummary::new(&analysis, &warnings);
                        batch.push(StoredFlow { flow, kinvey });
                        acks.push(ack);
                    };
                while let Some(first) = stream.blocking_recv() {
                    take(first, &mut batch, &mut acks);
                    while batch.len() < MAX_BATCH {
                        match stream.try_recv() {
                            Some(event) => take(event, &mut batch, &mut acks),
                            None => break,
                        }
                    }
                    let n = batch.len() as u64;
                    if let Some(delay) = commit_delay {
                        std::thread::sleep(delay);
                    }
                    match writer.write_batch(&batch) {
                        Ok(_) => {
                            counters.stored.fetch_add(n, Ordering::Relaxed);
                            counters.batches.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            counters.failed.fetch_add(n, Ordering::Relaxed);
                            tracing::error!("{n} flows could not be stored: {e}");
                        }
                    }
                    // Acknowledge the whole batch first: the proxy is waiting on them.
                    Acknowledgement::done_all(acks.drain(..));
                    for stored in batch.drain(..) {
                        let id = stored.flow.id;
                        if catch_unwind(AssertUnwindSafe(|| viewer.show(stored))).is_err() {
                            tracing::error!("showing flow {id} failed (it is stored)");
                        }
                        counters.delivered.fetch_add(1, Ordering::Relaxed);
                    }
                    if catch_unwind(AssertUnwindSafe(|| viewer.batch_shown())).is_err() {
                        tracing::error!("flushing the viewer failed (the flows are stored)");
                    }
                }
            })?;
        Ok(Recorder {
            thread: Some(thread),
            stats,
        })
    }

    /// The recorder's counters.
    pub fn stats(&self) -> &Arc<RecorderStats> {
        &self.stats
    }

    /// Waits at most `limit` for the stream to end and the capture to be closed; past it
    /// the recorder is left to the process's exit (every flow it acknowledged is stored
    /// either way; a capture not closed keeps its WAL file beside it).
    pub fn finish_within(mut self, limit: std::time::Duration) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        let deadline = std::time::Instant::now() + limit;
        while !thread.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        if thread.is_finished() {
            let _ = thread.join();
        } else {
            tracing::warn!("the recorder did not finish within {limit:?}");
        }
    }

    /// Waits until the stream has ended and every flow is stored.
    pub fn join(mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
