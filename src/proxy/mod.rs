//! The intercepting proxy: listener, CONNECT handling with protocol sniffing, TLS
//! termination, the kept upstream connections, body tees and proxy-made errors.

mod access;
mod bad_head;
mod ca_page;
mod connect;
mod cores;
mod errors;
mod forward;
pub(crate) mod headers;
mod idle;
mod parent;
mod pool;
mod relay;
pub mod sniff;
mod tee;
mod unstarted;
mod upstream;

pub use access::{is_public, ProxyCredentials, Refusal};
pub use ca_page::CA_HOST;
pub use errors::{ProxyFailure, KINSPECT_ERROR_HEADER};
pub use forward::http2_header_list_limit;
pub use headers::strip_hop_by_hop;
pub use parent::ParentProxy;
pub(crate) use pool::origin_form;
pub use tee::{BodyCapture, ReturnedIfUnread, TeeBody};

/// A request body on its way upstream: teed into the flow's capture, and given back if
/// the connection to the origin fails before it is read.
pub(crate) type UpstreamBody = ReturnedIfUnread<TeeBody<Incoming>>;
pub use upstream::{ConnectError, ConnectionInfo, Dialer, HostOverrides, UpstreamConnector};

use std::borrow::Cow;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bad_head::HeadWatch;
use bytes::Bytes;
use forward::ClientSide;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use pool::{KeptConnection, Upstreams};
use regex::Regex;
use rustls_pki_types::CertificateDer;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use unstarted::{Unstarted, UnstartedSlot};

use crate::ca::{CertificateAuthority, LeafCache, LeafError};
use crate::events::FlowPublisher;
use crate::tls::{upstream_client_config, TlsSetupError};

/// Error type of bodies the proxy sends to clients.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body of every response the proxy sends to a client.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// Default `--max-body`: bytes of each body kept in the capture.
pub const DEFAULT_MAX_BODY: usize = 16 * 1024 * 1024;

/// Everything the proxy needs to know to run.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Address to listen on (`127.0.0.1:8080` by default).
    pub listen: SocketAddr,
    /// Extra PEM files of CAs trusted for origins (`--upstream-ca`).
    pub upstream_ca: Vec<PathBuf>,
    /// Extra CA certificates trusted for origins, in memory (the demo's simulator).
    pub upstream_roots: Vec<CertificateDer<'static>>,
    /// Host names resolved to fixed addresses instead of by DNS, like `/etc/hosts`.
    pub hosts: HostOverrides,
    /// Turn off upstream certificate verification (`--insecure-upstream`).
    pub insecure_upstream: bool,
    /// Hosts passed through as blind tunnels without interception (`--ignore-hosts`).
    pub ignore_hosts: Option<Regex>,
    /// Bytes of each body kept in the capture (`--max-body`).
    pub max_body: usize,
    /// How long to wait for a client's first bytes after CONNECT before tunnelling.
    pub sniff_timeout: Duration,
    /// Limit on DNS + TCP connect + TLS handshake to an origin.
    pub connect_timeout: Duration,
    /// Limit on waiting for an origin's response headers (`--upstream-timeout`).
    pub upstream_timeout: Duration,
    /// Limit on reading a client's request headers (slowloris), on an idle HTTP/1
    /// keep-alive connection, and on a client's TLS handshake.
    pub client_header_timeout: Duration,
    /// Limit on an HTTP/2 client connection with no bytes moving and no open stream.
    pub idle_timeout: Duration,
    /// Largest request head accepted (start line and headers; HTTP/2 header list), bytes.
    pub max_header_bytes: usize,
    /// Most header fields accepted in an HTTP/1 request.
    pub max_headers: usize,
    /// Most client connections served at once (`--max-connections`); more get a 503.
    pub max_connections: usize,
    /// Serve clients from public IP ranges (`--allow-public`).
    pub allow_public: bool,
    /// Credentials every proxy request must carry (`--proxy-auth USER:PASS`).
    pub proxy_auth: Option<ProxyCredentials>,
    /// Hosts whose minted leaf is kept.
    pub leaf_cache_size: usize,
    /// Reverse-proxy mode (`--reverse URL`): requests addressed to kinspect itself go
    /// to this base URL.
    pub reverse: Option<http::Uri>,
    /// The proxy connections to origins go through (`--upstream-proxy URL`).
    pub upstream_proxy: Option<ParentProxy>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            upstream_ca: Vec::new(),
            upstream_roots: Vec::new(),
            hosts: HostOverrides::default(),
            insecure_upstream: false,
            ignore_hosts: None,
            max_body: DEFAULT_MAX_BODY,
            sniff_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(10),
            upstream_timeout: Duration::from_secs(120),
            client_header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            max_connections: 4096,
            allow_public: false,
            proxy_auth: None,
            leaf_cache_size: 1024,
            reverse: None,
            upstream_proxy: None,
        }
    }
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyStartError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}. Is another proxy already running there? Choose another address with --listen")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The upstream TLS configuration failed.
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    /// The leaf cache could not be set up.
    #[error(transparent)]
    Leaf(#[from] LeafError),
    /// The threads that serve connections could not be started.
    #[error("cannot start the proxy's connection threads: {0}")]
    Threads(std::io::Error),
}

/// State shared by every connection of one proxy.
pub(crate) struct Shared {
    pub(crate) config: ProxyConfig,
    pub(crate) listen_addr: SocketAddr,
    /// Where the proxy can be reached, for refusing loops.
    pub(crate) itself: ProxyAddress,
    /// Opens upstream connections (blind tunnels use it directly).
    pub(crate) dialer: Dialer,
    /// One permit per client connection being served.
    pub(crate) connections: Arc<Semaphore>,
    pub(crate) leaves: LeafCache,
    /// The connections to origins.
    pub(crate) upstreams: Arc<Upstreams>,
    pub(crate) publisher: FlowPublisher,
    pub(crate) ca: Arc<CertificateAuthority>,
}

/// A bound proxy, ready to run.
pub struct Proxy {
    shared: Arc<Shared>,
    listener: TcpListener,
    cores: cores::Cores,
}

impl Proxy {
    /// Binds the listen address and prepares TLS; flows go to `publisher`.
    pub async fn bind(
        config: ProxyConfig,
        ca: Arc<CertificateAuthority>,
        publisher: FlowPublisher,
    ) -> Result<Proxy, ProxyStartError> {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ProxyStartError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let listen_addr = listener
            .local_addr()
            .map_err(|source| ProxyStartError::Bind {
                addr: config.listen,
                source,
            })?;
        let tls = upstream_client_config(
            &config.upstream_ca,
            &config.upstream_roots,
            config.insecure_upstream,
        )?;
        let mut http1_tls = tls.clone();
        http1_tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let itself = ProxyAddress::of_listener(listen_addr);
        let dialer = Dialer {
            hosts: config.hosts.clone(),
            timeout: config.connect_timeout,
            itself: itself.clone(),
            parent: config.upstream_proxy.clone().map(Arc::new),
        };
        let upstreams = Upstreams::start(
            UpstreamConnector::new(tls, dialer.clone()),
            UpstreamConnector::new(http1_tls, dialer.clone()),
            config.max_headers,
        );
        let leaves = LeafCache::new(ca.clone(), config.leaf_cache_size)?;
        Ok(Proxy {
            shared: Arc::new(Shared {
                connections: Arc::new(Semaphore::new(config.max_connections)),
                config,
                listen_addr,
                itself,
                dialer,
                leaves,
                upstreams,
                publisher,
                ca,
            }),
            listener,
            cores: cores::Cores::start().map_err(ProxyStartError::Threads)?,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.listen_addr
    }

    /// How many leaf certificates have been minted so far.
    pub fn leaves_minted(&self) -> u64 {
        self.shared.leaves.minted()
    }

    /// Accepts clients and serves them on the connection threads until the task is
    /// cancelled; cancelled, it stops them.
    pub async fn run(self) {
        loop {
            match self.listener.accept().await {
                Ok((stream, peer)) => {
                    let shared = self.shared.clone();
                    let admitted = if !shared.config.allow_public && is_public(peer.ip()) {
                        Err(Refusal::PublicClient)
                    } else {
                        shared
                            .connections
                            .clone()
                            .try_acquire_owned()
                            .map_err(|_| Refusal::TooManyConnections)
                    };
                    match admitted {
                        Ok(permit) => {
                            let permit = Arc::new(permit);
                            self.cores.serve(stream, move |stream| {
                                serve_client(shared, stream, peer, permit)
                            });
                        }
                        Err(refusal) => {
                            tracing::warn!("refused client {peer}: {refusal:?}");
                            tokio::spawn(refuse(shared, stream, peer, refusal));
                        }
                    }
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    /// Runs the proxy on the current runtime (its connections on the proxy's own
    /// threads); dropping the handle stops accepting and ends the connections.
    pub fn spawn(self) -> ProxyHandle {
        let addr = self.local_addr();
        let shared = self.shared.clone();
        ProxyHandle {
            addr,
            shared,
            task: tokio::spawn(self.run()),
        }
    }
}

/// A running proxy.
pub struct ProxyHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl ProxyHandle {
    /// The address the proxy listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many leaf certificates have been minted so far.
    pub fn leaves_minted(&self) -> u64 {
        self.shared.leaves.minted()
    }

    /// Waits until the proxy stops (it only stops when aborted).
    pub async fn wait(&mut self) {
        let _ = (&mut self.task).await;
    }
}

impl Drop for ProxyHandle {
    /// Stops accepting, and the connection threads once the accepting task is gone: the
    /// exchanges under way end, each recorded as stopped by kinspect rather than by its
    /// client.
    fn drop(&mut self) {
        self.shared.publisher.announce_stop();
        self.task.abort();
    }
}

/// Held for as long as a client connection (or the tunnel it became) is served.
pub(crate) type ConnectionPermit = Arc<OwnedSemaphorePermit>;

/// Serves one client connection: HTTP/1.1 proxy requests, with CONNECT upgrades.
async fn serve_client(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    permit: ConnectionPermit,
) {
    let _ = stream.set_nodelay(true);
    let builder = http1_server(&shared.config);
    let kept = KeptConnection::new(&shared.upstreams);
    let (stream, exchanges, stalled) =
        HeadWatch::new(stream, bad_head::HeadLimits::of(&shared.config));
    let service_shared = shared.clone();
    let service_exchanges = exchanges.clone();
    let unstarted = UnstartedSlot::default();
    let service_unstarted = unstarted.clone();
    // The connection's place is held until what hyper left of it is recorded.
    let _place = permit.clone();
    let service = service_fn(move |req| {
        let permit = permit.clone();
        let kept = kept.clone();
        let exchanges = service_exchanges.clone();
        exchanges.begin();
        let connect = req.method() == http::Method::CONNECT;
        let shared = service_shared.clone();
        let unstarted = Unstarted::new(req, &service_unstarted);
        async move {
            let req = unstarted.begin();
            let response = connect::route(shared, peer, permit, &kept, req).await;
            Ok::<_, Infallible>(exchanges.respond(connect, response))
        }
    });
    let result = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await;
    let client = ClientSide {
        addr: peer,
        tls: None,
        permit: None,
    };
    if let Err(e) = &result {
        tracing::debug!("client {peer}: {e}");
    }
    let error = result.as_ref().err();
    bad_head::record_left_heads(&shared, &client, None, error, &exchanges, &stalled).await;
    if let Some(mut req) = unstarted::take(&unstarted) {
        let target = connect::given_up_target(&shared, &mut req);
        forward::record_given_up(&shared, &client, &target, req).await;
    }
}

/// The HTTP/1 server settings for clients: header limits and the header read timeout;
/// no `Date` field of hyper's own (the client gets the origin's fields, no others).
pub(crate) fn http1_server(config: &ProxyConfig) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .preserve_header_case(true)
        .auto_date_header(false)
        .timer(TokioTimer::new())
        .header_read_timeout(config.client_header_timeout)
        .max_header_size(config.max_header_bytes)
        .max_buf_size(config.max_header_bytes.max(DEFAULT_READ_BUFFER));
    // hyper keeps the default count on the stack; a set one costs an allocation.
    if config.max_headers != DEFAULT_MAX_HEADERS {
        builder.max_headers(config.max_headers);
    }
    builder
}

/// hyper's default read buffer limit and header count.
const DEFAULT_READ_BUFFER: usize = 8192 + 4096 * 100;
const DEFAULT_MAX_HEADERS: usize = 100;

/// Answers a refused connection's first request with the refusal and records it (a device
/// that cannot use the proxy shows why), then closes.
async fn refuse(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr, refusal: Refusal) {
    let mut builder = http1_server(&shared.config);
    builder.keep_alive(false);
    let service_shared = shared.clone();
    let service = service_fn(move |req| {
        let shared = service_shared.clone();
        async move {
            let client = ClientSide {
                addr: peer,
                tls: None,
                permit: None,
            };
            let response = forward::refuse_as_sent(&shared, &client, req, refusal.failure());
            Ok::<_, Infallible>(response.await)
        }
    });
    let serve = builder.serve_connection(TokioIo::new(stream), service);
    let _ = tokio::time::timeout(shared.config.client_header_timeout, serve).await;
}

/// `[user@]host[:port]` as its host and the text of the port it names, if it names one
/// (`[::1]:8443` and `host:8443` do; a bare IPv6 literal has colons but no brackets and
/// does not). The text may not be a port number (`host:99999`, `host:-1`): callers say so
/// rather than take it for no port, as `Uri::port_u16` does.
pub(crate) fn split_port(authority: &str) -> (&str, Option<&str>) {
    let authority = authority
        .rsplit_once('@')
        .map_or(authority, |(_, rest)| rest);
    match authority.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && (!host.contains(':') || host.ends_with(']')) => {
            (host, Some(port))
        }
        _ => (authority, None),
    }
}

/// The port `text` names: a number from 1 to 65535.
pub(crate) fn port_number(text: &str) -> Option<u16> {
    text.parse().ok().filter(|port| *port != 0)
}

/// Where an exchange goes: scheme, host (without brackets) and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Target {
    pub(crate) https: bool,
    pub(crate) host: String,
    pub(crate) port: u16,
    /// The address to connect to instead of resolving `host`: a CONNECT to an IP whose
    /// TLS names the host (an app that resolves names itself, a hosts entry on the
    /// device); the host is still what the origin's certificate must name.
    pub(crate) dial: Option<IpAddr>,
}

impl Target {
    /// The target of an absolute URL (`http`/`https` with a host and, if it names one, a
    /// port from 1 to 65535), if it is one.
    pub(crate) fn of_uri(uri: &http::Uri) -> Option<Target> {
        let https = match uri.scheme_str()? {
            "http" => false,
            "https" => true,
            _ => return None,
        };
        let host = crate::flow::unbracketed(uri.host()?);
        let port = match split_port(uri.authority()?.as_str()).1 {
            Some(port) => port_number(port)?,
            None if https => 443,
            None => 80,
        };
        (!host.is_empty()).then(|| Target {
            https,
            host: host.to_owned(),
            port,
            dial: None,
        })
    }

    /// This target, a CONNECT to an address, as the host `name` its client's TLS asks
    /// for, dialled at that address; `None` when the target is no address.
    pub(crate) fn named(&self, name: &str) -> Option<Target> {
        let ip = self.host.parse::<IpAddr>().ok()?;
        Some(Target {
            host: name.to_owned(),
            dial: Some(ip),
            ..self.clone()
        })
    }

    /// The `Host` header value for this target (default port left out).
    pub(crate) fn host_header(&self) -> String {
        let mut host = String::new();
        self.push_host_header(&mut host);
        host
    }

    fn push_host_header(&self, out: &mut String) {
        out.push_str(&self.host_for_url());
        if self.port != self.default_port() {
            let _ = write!(out, ":{}", self.port);
        }
    }

    pub(crate) fn scheme(&self) -> &'static str {
        if self.https {
            "https"
        } else {
            "http"
        }
    }

    /// True when a `Host` field `value` names this target (host case-insensitive, the
    /// default port written or not).
    pub(crate) fn is_named_by_host_field(&self, value: &[u8]) -> bool {
        let Ok(value) = std::str::from_utf8(value) else {
            return false;
        };
        let (host, port) = split_port(value.trim());
        let port = match port {
            Some(port) => match port_number(port) {
                Some(port) => port,
                None => return false,
            },
            None => self.default_port(),
        };
        let host = crate::flow::unbracketed(host);
        host.eq_ignore_ascii_case(&self.host) && port == self.port
    }

    fn default_port(&self) -> u16 {
        if self.https {
            443
        } else {
            80
        }
    }

    /// `host:port`, with brackets around IPv6 literals.
    pub(crate) fn authority(&self) -> String {
        format!("{}:{}", self.host_for_url(), self.port)
    }

    pub(crate) fn host_for_url(&self) -> Cow<'_, str> {
        if self.host.contains(':') {
            Cow::Owned(format!("[{}]", self.host))
        } else {
            Cow::Borrowed(&self.host)
        }
    }

    /// The URL of `path_and_query` on this target (default port left out).
    pub(crate) fn url(&self, path_and_query: &str) -> String {
        // Built in one buffer: it is made for every exchange.
        let scheme = self.scheme();
        let mut url = String::with_capacity(
            scheme.len() + "://[]:65535".len() + self.host.len() + path_and_query.len(),
        );
        url.push_str(scheme);
        url.push_str("://");
        self.push_host_header(&mut url);
        url.push_str(path_and_query);
        url
    }
}

/// Where this proxy can be reached: a request sent there would loop back into it.
#[derive(Debug, Clone)]
pub struct ProxyAddress {
    port: u16,
    ips: Arc<Vec<IpAddr>>,
    answers_localhost: bool,
}

impl ProxyAddress {
    /// The addresses of a listener bound to `listen`: that address, or every address of
    /// this machine when it is unspecified: its IPv4 ones for `0.0.0.0` (such a socket
    /// takes no IPv6 connection), all of them for `::` (which takes IPv4 too).
    pub fn of_listener(listen: SocketAddr) -> Self {
        let ip = listen.ip();
        let mut ips = vec![ip];
        if ip.is_unspecified() {
            let machine = if_addrs::get_if_addrs()
                .unwrap_or_default()
                .iter()
                .map(|interface| interface.ip())
                .chain([
                    IpAddr::from(std::net::Ipv4Addr::LOCALHOST),
                    IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
                ])
                .collect::<Vec<_>>();
            ips.extend(machine.into_iter().filter(|a| ip.is_ipv6() || a.is_ipv4()));
        }
        ProxyAddress {
            port: listen.port(),
            ips: Arc::new(ips),
            answers_localhost: ip.is_loopback() || ip.is_unspecified(),
        }
    }

    /// This proxy as a plain-HTTP target (loopback for an unspecified listener): where
    /// a request for no other target went.
    pub(crate) fn as_target(&self) -> Target {
        let ip = match self.ips[0] {
            ip if ip.is_unspecified() => IpAddr::from(std::net::Ipv4Addr::LOCALHOST),
            ip => ip,
        };
        Target {
            https: false,
            host: ip.to_string(),
            port: self.port,
            dial: None,
        }
    }

    /// True when a connection to `addr` would reach this proxy.
    pub fn is(&self, addr: SocketAddr) -> bool {
        addr.port() == self.port
            && (addr.ip().is_unspecified()
                || self
                    .ips
                    .iter()
                    .any(|ip| canonical(*ip) == canonical(addr.ip())))
    }

    /// True when `host:port`, named before any DNS lookup, is this proxy.
    pub(crate) fn is_target(&self, target: &Target) -> bool {
        // Dialled where the client's CONNECT said, whatever its TLS named.
        if let Some(ip) = target.dial {
            return self.is(SocketAddr::new(ip, target.port));
        }
        match target.host.parse::<IpAddr>() {
            Ok(ip) => self.is(SocketAddr::new(ip, target.port)),
            Err(_) => {
                self.answers_localhost
                    && target.port == self.port
                    && target.host.eq_ignore_ascii_case("localhost")
            }
        }
    }
}

/// IPv4-mapped IPv6 addresses compare as their IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_authority_names_its_port_after_any_user_info() {
        assert_eq!(
            split_port("user:pw@example.com:8080"),
            ("example.com", Some("8080"))
        );
        assert_eq!(split_port("user:pw@example.com"), ("example.com", None));
        assert_eq!(split_port("[::1]:8443"), ("[::1]", Some("8443")));
        assert_eq!(split_port("::1"), ("::1", None));
        assert_eq!(split_port("host:-1"), ("host", Some("-1")));
        let uri: http::Uri = "http://user:pw@example.com:8080/".parse().unwrap();
        assert_eq!(Target::of_uri(&uri).map(|t| t.port), Some(8080));
        let uri: http::Uri = "http://example.com:99999/".parse().unwrap();
        assert_eq!(Target::of_uri(&uri), None);
    }

    #[test]
    fn target_urls_leave_out_default_ports_and_bracket_ipv6() {
        let t = Target {
            https: true,
            host: "api.kinvey.com".into(),
            port: 443,
            dial: None,
        };
        assert_eq!(t.url("/appdata/kid"), "https://api.kinvey.com/appdata/kid");
        assert_eq!(t.authority(), "api.kinvey.com:443");
        let v6 = Target {
            https: false,
            host: "::1".into(),
            port: 8081,
            dial: None,
        };
        assert_eq!(v6.url("/"), "http://[::1]:8081/");
        assert_eq!(v6.host_header(), "[::1]:8081");
        let plain = Target {
            https: false,
            host: "localhost".into(),
            port: 80,
            dial: None,
        };
        assert_eq!(plain.url("/x?y=1"), "http://localhost/x?y=1");
        assert_eq!(plain.host_header(), "localhost");

        // Host fields naming the target, whichever way they are written, and not.
        for value in ["api.kinvey.com", "API.Kinvey.com:443", " api.kinvey.com "] {
            assert!(t.is_named_by_host_field(value.as_bytes()), "{value}");
        }
        for value in ["api.kinvey.com:8443", "other.example", "api.kinvey.com:x"] {
            assert!(!t.is_named_by_host_field(value.as_bytes()), "{value}");
        }
        assert!(v6.is_named_by_host_field(b"[::1]:8081"));
        assert!(!v6.is_named_by_host_field(b"[::1]"), "port 80 is not 8081");
        assert!(plain.is_named_by_host_field(b"localhost:80"));
        assert!(!plain.is_named_by_host_field(b"\xff"));
    }

    #[test]
    fn loops_back_into_the_proxy_are_recognised() {
        let itself = ProxyAddress::of_listener("127.0.0.1:8080".parse().unwrap());
        let t = |host: &str, port| Target {
            https: false,
            host: host.into(),
            port,
            dial: None,
        };
        assert!(itself.is_target(&t("127.0.0.1", 8080)));
        let dialled = |host: &str, ip: &str| Target {
            dial: Some(ip.parse().unwrap()),
            ..t(host, 8080)
        };
        assert!(itself.is_target(&dialled("api.kinvey.com", "127.0.0.1")));
        assert!(!itself.is_target(&dialled("localhost", "10.1.2.3")));
        assert!(itself.is_target(&t("localhost", 8080)));
        assert!(itself.is_target(&t("::ffff:127.0.0.1", 8080)));
        assert!(!itself.is_target(&t("localhost", 8081)));
        assert!(!itself.is_target(&t("example.com", 8080)));
        assert!(!itself.is_target(&t("127.0.0.2", 8080)));

        let everywhere = ProxyAddress::of_listener("0.0.0.0:8080".parse().unwrap());
        assert!(everywhere.is_target(&t("127.0.0.1", 8080)));
        assert!(everywhere.is_target(&t("0.0.0.0", 8080)));
        // An IPv4 socket takes no IPv6 connection: [::1] is another server.
        assert!(!everywhere.is_target(&t("::1", 8080)));
        let dual = ProxyAddress::of_listener("[::]:8080".parse().unwrap());
        assert!(dual.is_target(&t("::1", 8080)) && dual.is_target(&t("127.0.0.1", 8080)));
        for interface in if_addrs::get_if_addrs().unwrap() {
            let addr = SocketAddr::new(interface.ip(), 8080);
            assert_eq!(everywhere.is(addr), addr.is_ipv4(), "{addr}");
            assert!(dual.is(addr), "{addr}");
        }
        let lan = ProxyAddress::of_listener("192.0.2.7:8080".parse().unwrap());
        assert!(!lan.is_target(&t("localhost", 8080)));
        assert!(lan.is("192.0.2.7:8080".parse().unwrap()));
    }
}
