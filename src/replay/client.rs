//! The client that sends requests again through the proxy: plain requests in absolute
//! form, HTTPS through a CONNECT tunnel with TLS trusting kinspect's CA.

use std::net::SocketAddr;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio_rustls::TlsConnector;

use super::{ReplayRequest, ReplaySources};
use crate::flow::FlowId;
use crate::proxy::headers::remove_in_order;
use crate::proxy::Target;

/// Longest a replayed exchange may take, its response body included.
const REPLAY_TIMEOUT: Duration = Duration::from_secs(300);

/// Sends requests again through the proxy listening at one address, one task each, and
/// says how each went.
pub struct Replayer {
    proxy: SocketAddr,
    /// TLS through a tunnel, offering HTTP/2 and HTTP/1.1.
    tls_h2: TlsConnector,
    /// TLS through a tunnel, offering HTTP/1.1 only (the original came over HTTP/1).
    tls_h1: TlsConnector,
    proxy_authorization: Option<HeaderValue>,
    sources: ReplaySources,
    runtime: tokio::runtime::Handle,
    said: Sender<ReplayOutcome>,
    heard: Receiver<ReplayOutcome>,
}

impl Replayer {
    /// A replayer through the proxy listening on `listen`, trusting its CA `ca`, with
    /// its `--proxy-auth` credentials (a `Proxy-Authorization` value) if it asks for
    /// them; the addresses it sends from go into `sources`. It sends on the current
    /// tokio runtime: it panics when called outside one.
    pub fn new(
        listen: SocketAddr,
        ca: &CertificateDer<'static>,
        proxy_authorization: Option<HeaderValue>,
        sources: ReplaySources,
    ) -> anyhow::Result<Replayer> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.clone())?;
        let config = rustls::ClientConfig::builder_with_provider(crate::tls::crypto_provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let offering = |protocols: &[&[u8]]| {
            let mut config = config.clone();
            config.alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
            TlsConnector::from(Arc::new(config))
        };
        let (said, heard) = std::sync::mpsc::channel();
        Ok(Replayer {
            proxy: crate::setup::local_proxy_addr(listen),
            tls_h2: offering(&[b"h2", b"http/1.1"]),
            tls_h1: offering(&[b"http/1.1"]),
            proxy_authorization,
            sources,
            runtime: tokio::runtime::Handle::current(),
            said,
            heard,
        })
    }

    /// Sends `request` (flow `id`'s, maybe changed) in the background; what came of it is
    /// said by [`Replayer::outcome`].
    pub fn send(&self, id: FlowId, request: ReplayRequest) {
        let said = self.said.clone();
        let tls = match request.http2 {
            true => self.tls_h2.clone(),
            false => self.tls_h1.clone(),
        };
        let (proxy, auth) = (self.proxy, self.proxy_authorization.clone());
        let sources = self.sources.clone();
        self.runtime.spawn(async move {
            let started = Instant::now();
            let mut from = None;
            let answer = tokio::time::timeout(
                REPLAY_TIMEOUT,
                exchange(
                    proxy,
                    &tls,
                    auth.as_ref(),
                    (&sources, id),
                    request,
                    &mut from,
                ),
            )
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {REPLAY_TIMEOUT:?}")));
            let outcome = ReplayOutcome {
                original: id,
                from,
                answer,
                took: started.elapsed(),
            };
            let _ = said.send(outcome);
        });
    }

    /// What came of a request sent since the last call, if anything did.
    pub fn outcome(&self) -> Option<ReplayOutcome> {
        self.heard.try_recv().ok()
    }
}

/// A client connection through the proxy.
enum ProxyConnection {
    Http1(http1::SendRequest<Full<Bytes>>),
    Http2(http2::SendRequest<Full<Bytes>>),
}

/// Methods whose empty body is said with `Content-Length: 0` (RFC 9110 §8.6): an
/// HTTP/1.1 client writes no length for an empty body otherwise.
fn expects_a_body(method: &Method) -> bool {
    [Method::POST, Method::PUT, Method::PATCH].contains(method)
}

/// One exchange through the proxy, from the address it puts in `from`. The response
/// body is read to its end (the proxy records the exchange once it ends). Returns how
/// it was answered.
async fn exchange(
    proxy: SocketAddr,
    tls: &TlsConnector,
    auth: Option<&HeaderValue>,
    (sources, original): (&ReplaySources, FlowId),
    request: ReplayRequest,
    from: &mut Option<SocketAddr>,
) -> Result<Answer, String> {
    let target = Target::of_uri(&request.url)
        .ok_or_else(|| format!("{} is not a URL the proxy can send to", request.url))?;
    let tcp = tokio::net::TcpStream::connect(proxy)
        .await
        .map_err(|e| format!("cannot reach the proxy at {proxy}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    *from = tcp.local_addr().ok();
    let _sending = from.map(|from| sources.sending_from(from, original));
    let mut connection = match target.https {
        true => {
            let tunnel = connect_tunnel(tcp, &target, auth).await?;
            let name = ServerName::try_from(target.host.clone())
                .map_err(|_| format!("{:?} is not a TLS server name", target.host))?;
            let stream = tls.connect(name, TokioIo::new(tunnel)).await.map_err(|e| {
                format!(
                    "TLS through the proxy failed: {e} (a host in --ignore-hosts is passed \
                         through untouched: kinspect cannot send its requests again)"
                )
            })?;
            match stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                true => http2_connection(TokioIo::new(stream)).await?,
                false => http1_connection(TokioIo::new(stream)).await?,
            }
        }
        false => http1_connection(TokioIo::new(tcp)).await?,
    };
    let ReplayRequest {
        method,
        url,
        mut headers,
        body,
        ..
    } = request;
    if body.is_empty() && expects_a_body(&method) && !headers.contains_key(header::CONTENT_LENGTH) {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    }
    let mut outgoing = Request::new(Full::new(body));
    *outgoing.method_mut() = method;
    *outgoing.uri_mut() = url;
    *outgoing.headers_mut() = headers;
    let response = match &mut connection {
        ProxyConnection::Http1(sender) => {
            // Through a tunnel the origin gets the origin form; a plain request goes to
            // the proxy in absolute form. Host first, where a client writes it.
            let form = crate::proxy::origin_form(&mut outgoing);
            if !target.https {
                *outgoing.uri_mut() = form.absolute;
                if let Some(auth) = auth {
                    outgoing
                        .headers_mut()
                        .insert(header::PROXY_AUTHORIZATION, auth.clone());
                }
            }
            sender.send_request(outgoing).await
        }
        ProxyConnection::Http2(sender) => {
            // HTTP/2 names the host in :authority, from the URL.
            remove_in_order(outgoing.headers_mut(), |name, _| name == header::HOST);
            sender.send_request(outgoing).await
        }
    }
    .map_err(|e| format!("the proxy did not answer: {e}"))?;
    let answer = Answer {
        status: response.status().as_u16(),
        by_kinspect: response
            .headers()
            .contains_key(crate::proxy::KINSPECT_ERROR_HEADER),
    };
    let mut body = response.into_body();
    while let Some(frame) = body.frame().await {
        frame.map_err(|e| format!("the response broke off: {e}"))?;
    }
    Ok(answer)
}

/// What came of a request sent again.
#[derive(Debug)]
pub struct ReplayOutcome {
    /// The flow whose request was sent.
    pub original: FlowId,
    /// The address it was sent from, once connected to the proxy: the new flow's client.
    pub from: Option<SocketAddr>,
    /// How the proxy answered, or why it did not.
    pub answer: Result<Answer, String>,
    /// From sending to the response's end (or the failure).
    pub took: Duration,
}

impl ReplayOutcome {
    /// True when the proxy answered: the exchange is then a new flow, which repeats
    /// [`ReplayOutcome::original`].
    pub fn answered(&self) -> bool {
        self.answer.is_ok()
    }

    /// One line saying how it went.
    pub fn message(&self) -> String {
        let id = self.original;
        match &self.answer {
            Ok(answer) => format!(
                "flow {id} sent again: {}{} in {} ms (a new flow)",
                answer.status,
                match answer.by_kinspect {
                    true => " made by kinspect (see the new flow's error)",
                    false => "",
                },
                self.took.as_millis()
            ),
            Err(e) => format!("sending flow {id} again failed: {e}"),
        }
    }
}

/// How a request sent again was answered.
#[derive(Debug)]
pub struct Answer {
    /// The response's status.
    pub status: u16,
    /// kinspect answered itself: the origin could not be reached or did not answer.
    pub by_kinspect: bool,
}

async fn http1_connection<I>(io: I) -> Result<ProxyConnection, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, connection) = http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP/1.1 with the proxy failed: {e}"))?;
    tokio::spawn(connection);
    Ok(ProxyConnection::Http1(sender))
}

async fn http2_connection<I>(io: I) -> Result<ProxyConnection, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, connection) = http2::handshake(TokioExecutor::new(), io)
        .await
        .map_err(|e| format!("HTTP/2 with the proxy failed: {e}"))?;
    tokio::spawn(connection);
    Ok(ProxyConnection::Http2(sender))
}

/// Asks the proxy on `tcp` for a tunnel to `target`.
async fn connect_tunnel(
    tcp: tokio::net::TcpStream,
    target: &Target,
    auth: Option<&HeaderValue>,
) -> Result<hyper::upgrade::Upgraded, String> {
    let (mut sender, connection) = http1::handshake::<_, Full<Bytes>>(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("cannot talk to the proxy: {e}"))?;
    tokio::spawn(connection.with_upgrades());
    let authority = target.authority();
    let mut connect = Request::new(Full::new(Bytes::new()));
    *connect.method_mut() = Method::CONNECT;
    *connect.uri_mut() = authority
        .parse()
        .map_err(|_| format!("{authority:?} cannot be a CONNECT target"))?;
    let host = HeaderValue::from_str(&authority)
        .map_err(|_| format!("{authority:?} cannot be a Host field"))?;
    connect.headers_mut().insert(header::HOST, host);
    if let Some(auth) = auth {
        connect
            .headers_mut()
            .insert(header::PROXY_AUTHORIZATION, auth.clone());
    }
    let response = sender
        .send_request(connect)
        .await
        .map_err(|e| format!("the proxy did not answer the CONNECT: {e}"))?;
    if !response.status().is_success() {
        return Err(format!(
            "the proxy refused the tunnel: {}",
            response.status()
        ));
    }
    hyper::upgrade::on(response)
        .await
        .map_err(|e| format!("the tunnel did not open: {e}"))
}
