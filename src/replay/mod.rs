//! Sending a recorded request again through the running proxy, as a client would, so
//! that the new exchange is recorded and analysed like any other: the UI's `R` sends a
//! flow's request as it was, `e` lets the user change it first (Kinvey's FIX class:
//! change the request, then re-send).

mod client;
mod text;

pub use client::{Answer, ReplayOutcome, Replayer};
pub use text::ReplayRequest;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// The client addresses requests were sent again from, so that their exchanges are not
/// taken for the app's own: a STOP error sent again from the UI is not the app ignoring
/// "do not retry". At most [`ReplaySources::KEPT`] are kept.
#[derive(Clone, Debug, Default)]
pub struct ReplaySources(Arc<Mutex<Sources>>);

#[derive(Debug, Default)]
struct Sources {
    /// Each address and the flow whose request it sends again.
    known: HashMap<SocketAddr, crate::flow::FlowId>,
    order: VecDeque<SocketAddr>,
}

impl ReplaySources {
    /// How many addresses are remembered.
    pub const KEPT: usize = 1024;

    fn sources(&self) -> std::sync::MutexGuard<'_, Sources> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Flow `original`'s request is sent again from `addr` until the returned guard is
    /// dropped (its exchange is over: the proxy recorded it before the response ended),
    /// after which the port may be the app's again.
    pub(crate) fn sending_from(
        &self,
        addr: SocketAddr,
        original: crate::flow::FlowId,
    ) -> Sending<'_> {
        let mut sources = self.sources();
        if sources.known.insert(addr, original).is_none() {
            sources.order.push_back(addr);
        }
        while sources.order.len() > Self::KEPT {
            if let Some(oldest) = sources.order.pop_front() {
                sources.known.remove(&oldest);
            }
        }
        Sending {
            sources: self,
            addr,
        }
    }

    /// The flow whose request a flow from `addr` sends again, if it is a replay.
    pub fn original_of(&self, addr: SocketAddr) -> Option<crate::flow::FlowId> {
        self.sources().known.get(&addr).copied()
    }
}

/// A request being sent again from an address ([`ReplaySources::sending_from`]).
pub(crate) struct Sending<'a> {
    sources: &'a ReplaySources,
    addr: SocketAddr,
}

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        let mut sources = self.sources.sources();
        sources.known.remove(&self.addr);
        sources.order.retain(|addr| *addr != self.addr);
    }
}
