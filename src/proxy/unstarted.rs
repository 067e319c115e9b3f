//! Requests their client gave up on before kinspect began on them. hyper hands an HTTP/1
//! request to the service, then goes on reading the connection; when the client's side
//! ends right behind the request (it closed, or shut down its sending side as `nc -N`
//! does), hyper takes it as the client giving up — as nginx and Go's servers do — and
//! drops the exchange before it was ever polled, so nothing would be recorded.
//! [`Unstarted`] holds the request until the exchange begins; dropped before, it leaves
//! the request in its connection's [`UnstartedSlot`], which the connection records once
//! hyper is done with it (still holding its place under `--max-connections`, so that
//! such clients cannot pile up recordings).

use std::sync::{Arc, Mutex};

use http::Request;
use hyper::body::Incoming;

/// Where a connection's request given up before it began is left. An HTTP/1 connection
/// has one exchange at a time, and hyper gives up the connection with it.
pub(crate) type UnstartedSlot = Arc<Mutex<Option<Request<Incoming>>>>;

/// A request, until its exchange begins.
pub(crate) struct Unstarted {
    req: Option<Request<Incoming>>,
    slot: UnstartedSlot,
}

impl Unstarted {
    /// Holds `req`, to be left in `slot` if its exchange never begins.
    pub(crate) fn new(req: Request<Incoming>, slot: &UnstartedSlot) -> Unstarted {
        Unstarted {
            req: Some(req),
            slot: slot.clone(),
        }
    }

    /// The exchange begins: the request is its own from here.
    pub(crate) fn begin(mut self) -> Request<Incoming> {
        self.req.take().expect("begun once")
    }
}

impl Drop for Unstarted {
    fn drop(&mut self) {
        if let Some(req) = self.req.take() {
            *self.slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(req);
        }
    }
}

/// The request left in `slot`, if one was.
pub(crate) fn take(slot: &UnstartedSlot) -> Option<Request<Incoming>> {
    slot.lock().unwrap_or_else(|e| e.into_inner()).take()
}
