//! Requests their client gave up on before kinspect began on them. hyper hands a request
//! to the service, then goes on reading the connection; when the client's side ends right
//! behind the request (it closed, or shut down its sending side as `nc -N` does), hyper
//! takes it as the client giving up — as nginx and Go's servers do — and drops the
//! exchange before it was ever polled, so nothing would be recorded. [`Unstarted`] holds
//! the request until the exchange begins, and records it if that never happens.

use std::net::SocketAddr;
use std::sync::Arc;

use http::Request;
use hyper::body::Incoming;

use super::forward::{record_given_up, ClientSide};
use super::{Shared, Target};

/// What an exchange needs to record its request as given up.
pub(crate) trait RecordsUnstarted: Send + 'static {
    /// Records `req`, given up before it began.
    fn record_unstarted(self, req: Request<Incoming>);
}

/// A request with what its exchange needs (`C`), until the exchange begins.
pub(crate) struct Unstarted<C: RecordsUnstarted> {
    held: Option<(Request<Incoming>, C)>,
}

impl<C: RecordsUnstarted> Unstarted<C> {
    pub(crate) fn new(req: Request<Incoming>, context: C) -> Unstarted<C> {
        Unstarted {
            held: Some((req, context)),
        }
    }

    /// The exchange begins: the request and its context are its own from here.
    pub(crate) fn begin(mut self) -> (Request<Incoming>, C) {
        self.held.take().expect("begun once")
    }
}

impl<C: RecordsUnstarted> Drop for Unstarted<C> {
    fn drop(&mut self) {
        if let Some((req, context)) = self.held.take() {
            context.record_unstarted(req);
        }
    }
}

/// Records `req` from `client` on a task of the connection's runtime (a drop cannot wait
/// for the flow's place in the queue); `target`: a tunnel's, else where the request is
/// addressed.
fn spawn_record(
    shared: Arc<Shared>,
    client: SocketAddr,
    tunnel: Option<(Option<Arc<crate::flow::TlsInfo>>, Target)>,
    req: Request<Incoming>,
) {
    // No runtime: the proxy itself is being torn down.
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let (tls, target) = match tunnel {
            Some((tls, target)) => (tls, target),
            None => {
                let target = super::connect::request_target(&shared, &req)
                    .unwrap_or_else(|| shared.itself.as_target());
                (None, target)
            }
        };
        let client = ClientSide {
            addr: client,
            tls,
            permit: None,
        };
        record_given_up(&shared, &client, &target, req).await;
    });
}

/// A request sent to the proxy (absolute URL, CONNECT, the CA page) by `SocketAddr`.
impl RecordsUnstarted for (Arc<Shared>, SocketAddr) {
    fn record_unstarted(self, req: Request<Incoming>) {
        let (shared, client) = self;
        spawn_record(shared, client, None, req);
    }
}

/// A request inside a tunnel: its client, its target and the connection's upstream.
impl RecordsUnstarted
    for (
        Arc<Shared>,
        Arc<(ClientSide, Target, Arc<super::KeptConnection>)>,
    )
{
    fn record_unstarted(self, req: Request<Incoming>) {
        let (shared, ends) = self;
        let (client, target, _) = &*ends;
        let tunnel = Some((client.tls.clone(), target.clone()));
        spawn_record(shared.clone(), client.addr, tunnel, req);
    }
}
