//! Connections to origins: DNS, TCP and TLS with each phase timed, HTTP/2 when the
//! origin offers it by ALPN.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::{ParentProxy, ProxyAddress, Target};
use crate::flow::{unbracketed, FlowErrorKind, TlsInfo};

/// Why a connection to an origin could not be made.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ConnectError {
    /// The category (dns, connect, tls, timeout).
    pub kind: FlowErrorKind,
    /// What failed, on which host, and what to do.
    pub message: String,
    /// The TCP connection made before TLS failed on it: the server's address and how
    /// long resolving, connecting and the failed handshake took.
    pub reached: Option<ConnectionInfo>,
}

impl ConnectError {
    pub(crate) fn new(kind: FlowErrorKind, message: String) -> Self {
        ConnectError {
            kind,
            message,
            reached: None,
        }
    }

    /// The same error, on a connection that was made.
    fn on(mut self, reached: ConnectionInfo) -> Self {
        self.reached = Some(reached);
        self
    }
}

/// What is known about an upstream connection, attached to every response it carries.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// The address connected to.
    pub server_addr: SocketAddr,
    /// TLS parameters, for HTTPS.
    pub tls: Option<Arc<TlsInfo>>,
    /// DNS resolution time (`None` for IP literals).
    pub dns: Option<Duration>,
    /// TCP connect time plus TLS handshake time.
    pub connect: Duration,
    /// TLS handshake time.
    pub ssl: Option<Duration>,
    /// The parent proxy this plain-HTTP connection goes to, which takes requests in
    /// absolute form (`--upstream-proxy`).
    pub(crate) forward_proxy: Option<Arc<ParentProxy>>,
    fresh: Arc<AtomicBool>,
    /// What becomes of kinspect's writes the origin no longer takes (see
    /// [`taken_or_lost`]): [`WRITES_TAKEN`], [`WRITES_LOST`] or [`WRITES_RELAYED`].
    writes: Arc<AtomicU8>,
}

/// An HTTP exchange's writes, taken by the origin so far.
const WRITES_TAKEN: u8 = 0;
/// The origin took no more of them (it closed or reset the connection).
const WRITES_LOST: u8 = 1;
/// The connection relays a switched protocol (a WebSocket): its write errors are the
/// relay's to see.
const WRITES_RELAYED: u8 = 2;

impl ConnectionInfo {
    /// True when the origin chose HTTP/2 by ALPN.
    pub(crate) fn is_http2(&self) -> bool {
        self.tls
            .as_ref()
            .is_some_and(|t| t.alpn.as_deref() == Some("h2"))
    }

    /// True exactly once: for the first exchange that uses this connection, which is the
    /// one whose timings include DNS, connect and TLS.
    pub fn take_fresh(&self) -> bool {
        self.fresh.swap(false, Ordering::Relaxed)
    }

    /// True once the origin closed or reset the connection while kinspect wrote to it
    /// (an upload it answered early and stopped reading): it takes no other request.
    pub(crate) fn stopped_taking(&self) -> bool {
        self.writes.load(Ordering::Relaxed) == WRITES_LOST
    }

    /// The connection switched protocols: from now on it relays bytes, and a write the
    /// origin does not take is the relay's error (see [`taken_or_lost`]).
    pub(crate) fn relay_begins(&self) {
        self.writes.store(WRITES_RELAYED, Ordering::Relaxed);
    }

    #[cfg(test)]
    pub(crate) fn for_test(
        dns: Option<Duration>,
        connect: Duration,
        ssl: Option<Duration>,
    ) -> Self {
        ConnectionInfo {
            server_addr: SocketAddr::from(([127, 0, 0, 1], 443)),
            tls: None,
            dns,
            connect,
            ssl,
            forward_proxy: None,
            fresh: Arc::new(AtomicBool::new(true)),
            writes: Arc::default(),
        }
    }
}

/// Host names that resolve to fixed addresses instead of through DNS.
#[derive(Debug, Clone, Default)]
pub struct HostOverrides(Arc<std::collections::HashMap<String, IpAddr>>);

impl HostOverrides {
    /// Overrides from (host name, address) pairs; names compare case-insensitively.
    pub fn new(pairs: impl IntoIterator<Item = (String, IpAddr)>) -> Self {
        HostOverrides(Arc::new(
            pairs
                .into_iter()
                .map(|(name, ip)| (name.to_ascii_lowercase(), ip))
                .collect(),
        ))
    }

    fn get(&self, host: &str) -> Option<IpAddr> {
        self.0.get(&host.to_ascii_lowercase()).copied()
    }
}

/// Opens TCP connections to origins (with `TCP_NODELAY`): host overrides first, then
/// DNS, each address in turn within the connect timeout, never back into the proxy; or
/// through a parent proxy, which resolves the names.
#[derive(Debug, Clone)]
pub struct Dialer {
    /// Host names resolved to fixed addresses.
    pub hosts: HostOverrides,
    /// Limit on DNS + TCP connect (+ TLS, for [`UpstreamConnector`]).
    pub timeout: Duration,
    /// The proxy's own addresses: connections there are refused as loops.
    pub itself: ProxyAddress,
    /// The proxy connections go through (`--upstream-proxy`), if any.
    pub parent: Option<Arc<ParentProxy>>,
}

impl Dialer {
    /// Resolves and connects; returns the stream, the address and the DNS time.
    pub async fn connect(
        &self,
        host: &str,
        port: u16,
    ) -> Result<(TcpStream, SocketAddr, Option<Duration>), ConnectError> {
        self.connect_at(host, None, port).await
    }

    /// [`Dialer::connect`], to `dial` instead of `host`'s addresses when given. Through
    /// a parent proxy ([`Dialer::parent_for`]) the stream is a CONNECT tunnel, the
    /// address the parent's and the DNS time `None` (the parent resolves the name).
    pub(crate) async fn connect_at(
        &self,
        host: &str,
        dial: Option<IpAddr>,
        port: u16,
    ) -> Result<(TcpStream, SocketAddr, Option<Duration>), ConnectError> {
        let Some(parent) = self.parent_for(host, dial) else {
            return self.connect_directly(host, dial, port).await;
        };
        let deadline = Instant::now() + self.timeout;
        let bare = unbracketed(host);
        let ip = dial.or_else(|| bare.parse::<IpAddr>().ok());
        let authority = match ip {
            Some(ip) => SocketAddr::new(ip, port).to_string(),
            None => format!("{bare}:{port}"),
        };
        if let Some(addr) = ip
            .map(|ip| SocketAddr::new(ip, port))
            .filter(|addr| self.itself.is(*addr))
        {
            return Err(loop_error(host, port, addr));
        }
        let (mut stream, addr) = self.connect_to_parent(parent).await?;
        parent.tunnel(&mut stream, &authority, deadline).await?;
        Ok((stream, addr, None))
    }

    /// The parent proxy a connection to `host` (or `dial`) goes through: none but with
    /// `--upstream-proxy`, and none to this machine's own servers (`localhost`, a
    /// loopback address) and the host overrides (the demo's simulator), which no parent
    /// proxy can reach.
    pub(crate) fn parent_for(&self, host: &str, dial: Option<IpAddr>) -> Option<&Arc<ParentProxy>> {
        let parent = self.parent.as_ref()?;
        let bare = unbracketed(host);
        let ip = dial.or_else(|| bare.parse::<IpAddr>().ok());
        let local = ip.map_or_else(|| is_localhost(bare), |ip| ip.is_loopback());
        (!local && self.hosts.get(bare).is_none()).then_some(parent)
    }

    /// A connection to `parent` itself.
    async fn connect_to_parent(
        &self,
        parent: &ParentProxy,
    ) -> Result<(TcpStream, SocketAddr), ConnectError> {
        let (stream, addr, _) = self
            .connect_directly(&parent.host, None, parent.port)
            .await
            .map_err(|mut e| {
                e.message = format!("the upstream proxy {parent}: {}", e.message);
                e
            })?;
        Ok((stream, addr))
    }

    /// [`Dialer::connect_at`] without the parent proxy.
    async fn connect_directly(
        &self,
        host: &str,
        dial: Option<IpAddr>,
        port: u16,
    ) -> Result<(TcpStream, SocketAddr, Option<Duration>), ConnectError> {
        let timeout = self.timeout;
        let deadline = Instant::now() + timeout;
        let bare = unbracketed(host);
        let fixed = dial
            .or_else(|| bare.parse::<IpAddr>().ok())
            .or_else(|| self.hosts.get(bare));
        let (addrs, dns) = match fixed {
            Some(ip) => (vec![SocketAddr::new(ip, port)], None),
            // This machine, whatever the resolver says of the name (RFC 6761; `*.localhost`
            // mostly resolves to nothing): both loopback addresses, as browsers and curl
            // try them, for a server listening on one of them alone.
            None if is_localhost(bare) => {
                let loopback = [
                    IpAddr::from([127, 0, 0, 1]),
                    IpAddr::from(Ipv6Addr::LOCALHOST),
                ];
                (loopback.map(|ip| SocketAddr::new(ip, port)).to_vec(), None)
            }
            None => {
                let started = Instant::now();
                let lookup = tokio::time::timeout(timeout, tokio::net::lookup_host((bare, port)));
                let addrs: Vec<SocketAddr> = match lookup.await {
                    Ok(Ok(addrs)) => addrs.collect(),
                    Ok(Err(e)) => {
                        return Err(ConnectError::new(
                            FlowErrorKind::Dns,
                            format!("cannot resolve upstream host {bare}: {e}. Check the host name and this machine's DNS"),
                        ))
                    }
                    Err(_) => {
                        return Err(ConnectError::new(
                            FlowErrorKind::Timeout,
                            format!("resolving upstream host {bare} took longer than {timeout:?}"),
                        ))
                    }
                };
                if addrs.is_empty() {
                    return Err(ConnectError::new(
                        FlowErrorKind::Dns,
                        format!("upstream host {bare} has no address"),
                    ));
                }
                (addrs, Some(started.elapsed()))
            }
        };
        if let Some(addr) = addrs.iter().find(|addr| self.itself.is(**addr)) {
            return Err(loop_error(host, port, *addr));
        }
        connect_first(host, port, addrs, deadline, timeout)
            .await
            .map(|(stream, addr)| (stream, addr, dns))
    }
}

/// The error of a connection to `host:port` that would reach kinspect itself at `addr`.
fn loop_error(host: &str, port: u16, addr: SocketAddr) -> ConnectError {
    ConnectError::new(
        FlowErrorKind::BadRequest,
        format!("{host}:{port} resolves to {addr}, which is kinspect itself: the request would loop back into the proxy"),
    )
}

/// Whether host name `host` names this machine (`localhost`, RFC 6761).
fn is_localhost(host: &str) -> bool {
    let host = host.trim_end_matches('.').as_bytes();
    let subdomain = b".localhost";
    host.eq_ignore_ascii_case(b"localhost")
        || host.len() > subdomain.len()
            && host[host.len() - subdomain.len()..].eq_ignore_ascii_case(subdomain)
}

/// Connects to the first of `addrs` that accepts before `deadline`.
async fn connect_first(
    host: &str,
    port: u16,
    addrs: Vec<SocketAddr>,
    deadline: Instant,
    timeout: Duration,
) -> Result<(TcpStream, SocketAddr), ConnectError> {
    let mut reported = None;
    for addr in addrs {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok((stream, addr));
            }
            // The first error is kept, unless a later one is a refusal: for
            // `localhost`, 127.0.0.1's "connection refused" says more than a missing
            // IPv6 loopback's "cannot assign requested address".
            Ok(Err(e)) => {
                let refused = e.kind() == std::io::ErrorKind::ConnectionRefused;
                if reported.is_none() || refused {
                    reported = Some((addr, e));
                }
            }
            Err(_) => {
                return Err(ConnectError::new(
                    FlowErrorKind::Timeout,
                    format!(
                    "connecting to upstream {host}:{port} ({addr}) took longer than {timeout:?}"
                ),
                ))
            }
        }
    }
    let (addr, e) = reported.expect("at least one address was tried");
    let hint = if e.kind() == std::io::ErrorKind::ConnectionRefused {
        "is the server running on that port?"
    } else {
        "check the address and the network"
    };
    Err(ConnectError::new(
        FlowErrorKind::Connect,
        format!("cannot connect to upstream {host}:{port} ({addr}): {e}; {hint}"),
    ))
}

/// Opens connections to origins, TLS included for `https` targets.
#[derive(Clone)]
pub struct UpstreamConnector {
    tls: TlsConnector,
    dialer: Dialer,
}

impl UpstreamConnector {
    /// A connector verifying origins with `tls_config`, connecting through `dialer`.
    pub fn new(tls_config: rustls::ClientConfig, dialer: Dialer) -> Self {
        UpstreamConnector {
            tls: TlsConnector::from(Arc::new(tls_config)),
            dialer,
        }
    }

    /// Connects to `target`: DNS, TCP, and TLS for `https`, each timed. Plain HTTP through
    /// a parent proxy goes to the parent itself, which takes its requests in absolute
    /// form (many proxies refuse a CONNECT to any port but 443).
    pub(crate) async fn open(&self, target: &Target) -> Result<UpstreamConnection, ConnectError> {
        let (host, port, https) = (target.host_for_url(), target.port, target.https);
        let started = Instant::now();
        let forward_proxy = match https {
            true => None,
            false => self.dialer.parent_for(&host, target.dial).cloned(),
        };
        let (tcp, server_addr, dns) = match &forward_proxy {
            Some(parent) => {
                let (tcp, addr) = self.dialer.connect_to_parent(parent).await?;
                (tcp, addr, None)
            }
            None => self.dialer.connect_at(&host, target.dial, port).await?,
        };
        if !https {
            let info = ConnectionInfo {
                server_addr,
                tls: None,
                dns,
                connect: started.elapsed() - dns.unwrap_or_default(),
                ssl: None,
                forward_proxy,
                fresh: Arc::new(AtomicBool::new(true)),
                writes: Arc::default(),
            };
            return Ok(UpstreamConnection {
                io: Stream::Plain(TokioIo::new(tcp)),
                info,
            });
        }

        let bare = unbracketed(&host).to_owned();
        let server_name = ServerName::try_from(bare.clone()).map_err(|_| {
            ConnectError::new(
                FlowErrorKind::Tls,
                format!("{bare:?} is not a valid TLS server name"),
            )
        })?;
        let tls_started = Instant::now();
        let handshake = self.tls.connect(server_name, tcp);
        let remaining = self.dialer.timeout.saturating_sub(started.elapsed());
        let outcome = tokio::time::timeout(remaining, handshake).await;
        let reached = || ConnectionInfo {
            server_addr,
            tls: None,
            dns,
            connect: started.elapsed() - dns.unwrap_or_default(),
            ssl: Some(tls_started.elapsed()),
            forward_proxy: None,
            fresh: Arc::new(AtomicBool::new(true)),
            writes: Arc::default(),
        };
        let stream = match outcome {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(tls_failure(&host, port, &e).on(reached())),
            Err(_) => {
                let timeout = ConnectError::new(
                    FlowErrorKind::Timeout,
                    format!(
                        "TLS handshake with upstream {host}:{port} took longer than {:?}",
                        self.dialer.timeout
                    ),
                );
                return Err(timeout.on(reached()));
            }
        };
        let ssl = tls_started.elapsed();
        let tls = session_info(Some(bare), stream.get_ref().1);
        let info = ConnectionInfo {
            server_addr,
            tls: Some(Arc::new(tls)),
            dns,
            connect: started.elapsed() - dns.unwrap_or_default(),
            ssl: Some(ssl),
            forward_proxy: None,
            fresh: Arc::new(AtomicBool::new(true)),
            writes: Arc::default(),
        };
        Ok(UpstreamConnection {
            io: Stream::Tls(Box::new(TokioIo::new(stream))),
            info,
        })
    }
}

/// The negotiated parameters of a TLS session (either side), with the SNI name seen.
pub(crate) fn session_info(sni: Option<String>, session: &rustls::CommonState) -> TlsInfo {
    TlsInfo {
        sni,
        alpn: session
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned()),
        // rustls names versions `TLSv1_3`; HAR and people write `TLSv1.3`.
        version: session
            .protocol_version()
            .and_then(|v| v.as_str())
            .map(|name| name.replace('_', ".")),
    }
}

fn tls_failure(host: &str, port: u16, error: &std::io::Error) -> ConnectError {
    let rustls_error = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>());
    let message = match rustls_error {
        Some(rustls::Error::InvalidCertificate(reason)) => {
            let (what, to_do) = describe_certificate_error(reason);
            format!(
                "upstream {host}:{port} presented a certificate that failed verification: \
                 {what}. {to_do}"
            )
        }
        Some(other) => format!("TLS handshake with upstream {host}:{port} failed: {other}"),
        None => format!("TLS handshake with upstream {host}:{port} failed: {error}"),
    };
    ConnectError::new(FlowErrorKind::Tls, message)
}

/// What is wrong with an origin's certificate, and what to do about it.
fn describe_certificate_error(error: &rustls::CertificateError) -> (String, &'static str) {
    use rustls::CertificateError as E;
    const OWN_CA: &str = "If this is your own test server, pass --upstream-ca FILE with its CA \
                          (--insecure-upstream turns verification off)";
    const FIX_OR_SKIP: &str = "If this is your own test server, give it a valid certificate \
                               (--insecure-upstream turns verification off)";
    match error {
        E::UnknownIssuer => (
            "it is signed by an unknown authority (UnknownIssuer)".into(),
            OWN_CA,
        ),
        E::Expired | E::ExpiredContext { .. } => ("it has expired (Expired)".into(), FIX_OR_SKIP),
        E::NotValidYet | E::NotValidYetContext { .. } => {
            ("it is not valid yet (NotValidYet)".into(), FIX_OR_SKIP)
        }
        E::NotValidForName | E::NotValidForNameContext { .. } => (
            "it is not valid for this host name (NotValidForName)".into(),
            FIX_OR_SKIP,
        ),
        E::Revoked => ("it has been revoked (Revoked)".into(), FIX_OR_SKIP),
        // What `openssl req -x509` makes by default: trusting it as a CA does not help.
        E::Other(other) if other.to_string().contains("CaUsedAsEndEntity") => (
            "it is a CA certificate (basic constraints CA:TRUE), which a server may not \
             present as its own (CaUsedAsEndEntity)"
                .into(),
            "If this is your own test server, sign a server certificate with that CA and \
             pass the CA with --upstream-ca FILE (certs/README.md shows how), or turn \
             verification off with --insecure-upstream",
        ),
        other => (other.to_string(), FIX_OR_SKIP),
    }
}

enum Stream {
    Plain(TokioIo<TcpStream>),
    Tls(Box<TokioIo<TlsStream<TcpStream>>>),
}

/// One connection to an origin, carrying its [`ConnectionInfo`].
pub struct UpstreamConnection {
    io: Stream,
    info: ConnectionInfo,
}

impl UpstreamConnection {
    /// What is known about the connection.
    pub(crate) fn info(&self) -> &ConnectionInfo {
        &self.info
    }
}

impl hyper::rt::Read for UpstreamConnection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().io {
            Stream::Plain(io) => Pin::new(io).poll_read(cx, buf),
            // An origin that closes without TLS's close_notify (Python's ssl, many
            // embedded servers) ends its connection as one in the clear does: as curl,
            // browsers and Node read it. A body with a length or chunks that stops short
            // is still found cut short by HTTP; one that ends with the connection is
            // whole.
            Stream::Tls(io) => match ready!(Pin::new(io.as_mut()).poll_read(cx, buf)) {
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Poll::Ready(Ok(())),
                result => Poll::Ready(result),
            },
        }
    }
}

/// The outcome of a write of `all` to an origin (`write`), unless the origin no longer
/// takes what is written: it closed or reset the connection, typically after answering
/// an upload early (a 413, a 401) without reading it. That write, and every one after it,
/// counts as done, so that hyper goes on to read the answer the origin sent before it
/// closed (as curl and browsers read it) instead of failing the exchange over the lost
/// write.
fn taken_or_lost<T>(
    info: &ConnectionInfo,
    all: T,
    write: impl FnOnce() -> Poll<std::io::Result<T>>,
) -> Poll<std::io::Result<T>> {
    match info.writes.load(Ordering::Relaxed) {
        WRITES_TAKEN => {}
        WRITES_LOST => return Poll::Ready(Ok(all)),
        _relayed => return write(),
    }
    match write() {
        Poll::Ready(Err(e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
            ) =>
        {
            tracing::debug!("upstream {} took no more writes: {e}", info.server_addr);
            info.writes.store(WRITES_LOST, Ordering::Relaxed);
            Poll::Ready(Ok(all))
        }
        other => other,
    }
}

impl hyper::rt::Write for UpstreamConnection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let UpstreamConnection { io, info } = self.get_mut();
        taken_or_lost(info, buf.len(), || match io {
            Stream::Plain(io) => Pin::new(io).poll_write(cx, buf),
            Stream::Tls(io) => Pin::new(io.as_mut()).poll_write(cx, buf),
        })
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let UpstreamConnection { io, info } = self.get_mut();
        let all = bufs.iter().map(|buf| buf.len()).sum();
        taken_or_lost(info, all, || match io {
            Stream::Plain(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            Stream::Tls(io) => Pin::new(io.as_mut()).poll_write_vectored(cx, bufs),
        })
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Stream::Plain(io) => io.is_write_vectored(),
            Stream::Tls(io) => io.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let UpstreamConnection { io, info } = self.get_mut();
        taken_or_lost(info, (), || match io {
            Stream::Plain(io) => Pin::new(io).poll_flush(cx),
            Stream::Tls(io) => Pin::new(io.as_mut()).poll_flush(cx),
        })
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let UpstreamConnection { io, info } = self.get_mut();
        taken_or_lost(info, (), || match io {
            Stream::Plain(io) => Pin::new(io).poll_shutdown(cx),
            Stream::Tls(io) => Pin::new(io.as_mut()).poll_shutdown(cx),
        })
    }
}
