//! Routing of what clients send to the proxy: absolute-form requests are forwarded;
//! CONNECT opens a tunnel whose first bytes decide between TLS interception, plain HTTP
//! and a blind tunnel.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use http::{Method, Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::LazyConfigAcceptor;

use super::access::credentials_refused;
use super::bad_head::{record_left_heads, HeadWatch};
use super::forward::{
    closing, empty_body, error_chain, forward, full_body, new_flow, record_given_up, refuse,
    refuse_as_sent, without_proxy_credentials, ClientSide,
};
use super::idle::IdleWatch;
use super::pool::KeptConnection;
use super::relay::RelayRecord;
use super::sniff::{client_hello_name, sniff_into, Rewind, Sniffed};
use super::unstarted::{self, Unstarted, UnstartedSlot};
use super::upstream::{session_info, ConnectError};
use super::{
    ca_page, http1_server, port_number, split_port, ConnectionPermit, ProxyBody, ProxyFailure,
    Shared, Target,
};
use crate::flow::{
    unbracketed, CapturedBody, FlowError, FlowErrorKind, FlowKind, Headers, HttpVersion,
    RequestRecord, ResponseRecord, TlsInfo,
};

/// The first handling of every request a client sends to the proxy.
pub(crate) async fn route(
    shared: Arc<Shared>,
    peer: SocketAddr,
    permit: ConnectionPermit,
    kept: &Arc<KeptConnection>,
    mut req: Request<Incoming>,
) -> Response<ProxyBody> {
    if let Some(credentials) = &shared.config.proxy_auth {
        // The CA page stays open: it is public, and devices fetch it before setting up.
        let ca_page = req.method() != Method::CONNECT
            && Target::of_uri(req.uri()).is_none()
            && shared.config.reverse.is_none();
        if !ca_page && !credentials.admit(req.headers()) {
            tracing::warn!("client {peer} sent no or wrong --proxy-auth credentials");
            let failure = credentials_refused(req.headers());
            // Recorded, so that a client set up without the credentials shows in the UI.
            return match request_target(&shared, &req) {
                Some(target) => {
                    let client = ClientSide {
                        addr: peer,
                        tls: None,
                        permit: None,
                    };
                    refuse(&shared, &client, &target, req, failure).await
                }
                None => failure.response(full_body(failure.body())),
            };
        }
    }
    if shared.config.reverse.is_some() {
        if let Err(problem) = as_reverse_request(&shared, &mut req) {
            return refuse_outright(&shared, peer, req, problem).await;
        }
    }
    if req.method() == Method::CONNECT {
        return handle_connect(shared, peer, permit, req).await;
    }
    if req
        .uri()
        .scheme_str()
        .is_some_and(|s| !s.eq_ignore_ascii_case("http") && !s.eq_ignore_ascii_case("https"))
    {
        return refuse_outright(
            &shared,
            peer,
            req,
            "kinspect proxies http:// and https:// URLs only",
        )
        .await;
    }
    let client = ClientSide {
        addr: peer,
        tls: None,
        permit: Some(permit),
    };
    if let Some(target) = Target::of_uri(req.uri()) {
        return forward(&shared, &client, kept, &target, req).await;
    }
    if req.uri().scheme().is_some() {
        let problem = "the URL's host is empty or its port is not a number from 1 to 65535";
        return refuse_outright(&shared, peer, req, problem).await;
    }
    // An origin-form request: addressed to kinspect itself.
    match shared.config.reverse.as_ref().and_then(Target::of_uri) {
        Some(target) => {
            if !onto_reverse_base(&shared, &target, &mut req) {
                return refuse_outright(&shared, peer, req, "bad request path").await;
            }
            forward(&shared, &client, kept, &target, req).await
        }
        None => ca_page::respond(&shared.ca, req.uri().path()).map(full_body),
    }
}

/// In reverse-proxy mode kinspect is the app's server, not a proxy: a CONNECT or a URL
/// naming another host is refused (nothing could guard such requests: `--proxy-auth`
/// cannot be set with `--reverse`). A URL naming kinspect itself by an address of its
/// own or `localhost` is taken as its path (a server takes the absolute form too, RFC
/// 9112 §3.2.2; another name of the machine's is refused with the rest); one naming the
/// CA page host is served as usual.
fn as_reverse_request(shared: &Shared, req: &mut Request<Incoming>) -> Result<(), &'static str> {
    const NOT_A_PROXY: &str = "kinspect runs as a reverse proxy here (--reverse): it answers \
        requests for its own address, not proxy requests (a CONNECT, or a URL naming \
        another host); to proxy those too, run a second kinspect without --reverse";
    if req.method() == Method::CONNECT {
        return Err(NOT_A_PROXY);
    }
    match Target::of_uri(req.uri()) {
        None => Ok(()),
        Some(target) if ca_page::is_ca_host(&target.host) => Ok(()),
        Some(target) if shared.itself.is_target(&target) => {
            let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
            *req.uri_mut() = path.parse().map_err(|_| "bad request path")?;
            Ok(())
        }
        Some(_) => Err(NOT_A_PROXY),
    }
}

/// In reverse-proxy mode, makes `req` (sent to kinspect itself) a request to `target`,
/// the base URL's origin: its path under the base URL's, and the origin's name in its
/// `Host` field. False when the path cannot be put there.
fn onto_reverse_base(shared: &Shared, target: &Target, req: &mut Request<Incoming>) -> bool {
    let base = (shared.config.reverse.as_ref()).map_or("", |b| b.path().trim_end_matches('/'));
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    match format!("{base}{path}").parse() {
        Ok(uri) => *req.uri_mut() = uri,
        Err(_) => return false,
    }
    // The origin expects its own name, not kinspect's address: in the client's Host,
    // where it put it. Without one (an HTTP/2 client), the upstream connection writes it
    // from the URL. Two are left for the forwarding to refuse.
    let hosts = req.headers().get_all(http::header::HOST).iter().count();
    if hosts == 1 {
        if let Ok(host) = http::HeaderValue::from_str(&target.host_header()) {
            req.headers_mut().insert(http::header::HOST, host);
        }
    }
    true
}

/// Where [`route`] would have sent `req`, a request given up before it began (see
/// `unstarted`), made a request to it as route makes it: a CONNECT's target, an absolute
/// URL's, the reverse proxy's base URL's; kinspect itself for the rest (the CA page, a
/// target it cannot use). What route refuses (no `--proxy-auth` credentials, a scheme
/// other than http and https) is recorded as given up all the same.
pub(crate) fn given_up_target(shared: &Shared, req: &mut Request<Incoming>) -> Target {
    let origin_form = req.method() != Method::CONNECT && req.uri().authority().is_none();
    let reverse = shared.config.reverse.as_ref().and_then(Target::of_uri);
    match reverse.filter(|_| origin_form) {
        Some(base) => {
            onto_reverse_base(shared, &base, req);
            base
        }
        None => request_target(shared, req).unwrap_or_else(|| shared.itself.as_target()),
    }
}

/// A CONNECT request's target, or what is wrong with it.
pub(crate) fn connect_target(uri: &http::Uri) -> Result<Target, &'static str> {
    let Some(authority) = uri.authority() else {
        return Err("CONNECT needs a host:port target");
    };
    // RFC 9110 §9.3.6: the target is host and port; no port is not "443".
    let port = match split_port(authority.as_str()).1 {
        Some(port) => port_number(port)
            .ok_or("CONNECT needs a host:port target: the port must be a number from 1 to 65535")?,
        None => return Err("CONNECT needs a host:port target: the port is missing"),
    };
    let host = unbracketed(authority.host());
    if host.is_empty() {
        return Err("CONNECT needs a host:port target: the host is missing");
    }
    Ok(Target {
        https: true,
        host: host.to_owned(),
        port,
        dial: None,
    })
}

/// Where a request to the proxy would go: a CONNECT's target, an absolute URL's, or in
/// reverse-proxy mode the base URL's; `None` for a request to kinspect itself.
pub(crate) fn request_target(shared: &Shared, req: &Request<Incoming>) -> Option<Target> {
    if req.method() == Method::CONNECT {
        return connect_target(req.uri()).ok();
    }
    Target::of_uri(req.uri()).or_else(|| shared.config.reverse.as_ref().and_then(Target::of_uri))
}

async fn handle_connect(
    shared: Arc<Shared>,
    peer: SocketAddr,
    permit: ConnectionPermit,
    mut req: Request<Incoming>,
) -> Response<ProxyBody> {
    let target = match connect_target(req.uri()) {
        Ok(target) => target,
        Err(problem) => return refuse_outright(&shared, peer, req, problem).await,
    };
    if shared.itself.is_target(&target) {
        let problem = "CONNECT to kinspect itself would loop back into the proxy";
        return refuse_outright(&shared, peer, req, problem).await;
    }
    without_proxy_credentials(req.headers_mut());
    let started = ConnectRequest {
        at: SystemTime::now(),
        t0: Instant::now(),
        headers: Headers::from_map(req.headers()),
    };
    tokio::spawn(async move {
        // The tunnel outlives the HTTP connection it came from: it keeps the permit.
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => {
                let io = TokioIo::new(upgraded);
                intercept(shared, (peer, permit), target, io, started).await;
            }
            Err(e) => tracing::debug!("CONNECT upgrade from {peer} failed: {e}"),
        }
    });
    Response::new(empty_body())
}

/// kinspect's JSON 400 for a request it refuses outright (a target it cannot use, a
/// loop back into the proxy), recorded as sent; the connection closes after it.
async fn refuse_outright(
    shared: &Arc<Shared>,
    peer: SocketAddr,
    req: Request<Incoming>,
    problem: &'static str,
) -> Response<ProxyBody> {
    let client = ClientSide {
        addr: peer,
        tls: None,
        permit: None,
    };
    let failure = ProxyFailure::new(FlowErrorKind::BadRequest, problem);
    let version = req.version();
    closing(refuse_as_sent(shared, &client, req, failure).await, version)
}

/// Decides what to do with a CONNECT tunnel and does it.
async fn intercept<I>(
    shared: Arc<Shared>,
    (peer, permit): (SocketAddr, ConnectionPermit),
    target: Target,
    mut io: I,
    started: ConnectRequest,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ignored = shared
        .config
        .ignore_hosts
        .as_ref()
        .is_some_and(|re| re.is_match(&target.host));
    if ignored {
        return blind_tunnel(&shared, peer, &target, io, started, None).await;
    }
    let (verdict, mut prefix, dialled) = match sniff_tunnel(&shared, &target, &mut io).await {
        Ok(sniffed) => sniffed,
        Err(e) => {
            tracing::debug!("tunnel from {peer} to {}: {e}", target.authority());
            return;
        }
    };
    // A CONNECT to an address: the name its TLS asks for is the host to check (a
    // certificate-pinning app that resolves names itself).
    if let (Some(ignore), Sniffed::Tls, Ok(_)) = (
        &shared.config.ignore_hosts,
        verdict,
        target.host.parse::<IpAddr>(),
    ) {
        let mut hello = bytes::BytesMut::from(&prefix[..]);
        let limit = shared.config.client_header_timeout;
        let name = client_hello_name(&mut io, &mut hello, limit).await;
        prefix = hello.freeze();
        // Listed under the name it was passed through for, dialled at the address.
        let passed = name.filter(|name| ignore.is_match(name));
        if let Some(named) = passed.and_then(|name| target.named(&name)) {
            let io = Rewind::new(prefix, io);
            return blind_tunnel(&shared, peer, &named, io, started, dialled).await;
        }
    }
    let io = Rewind::new(prefix.clone(), io);
    match verdict {
        Sniffed::Tls => terminate_tls(shared, (peer, permit), target, io, started).await,
        Sniffed::Http => {
            let plain = Target {
                https: false,
                ..target
            };
            let h2 = prefix.starts_with(b"PRI * HTTP/2.0");
            let client = ClientSide {
                addr: peer,
                tls: None,
                permit: Some(permit),
            };
            serve_http(shared, client, plain, io, h2).await;
        }
        Sniffed::Other | Sniffed::Silence => {
            blind_tunnel(&shared, peer, &target, io, started, dialled).await
        }
        Sniffed::Closed => {}
    }
}

/// A client that speaks first after CONNECT (TLS, HTTP) does so at once. One quiet this
/// long may be waiting for a server that speaks first (SSH, SMTP, FTP): the origin is
/// then dialled, and whichever side speaks first decides, instead of the client waiting
/// out the whole sniff timeout for a banner.
const SERVER_FIRST_AFTER: std::time::Duration = std::time::Duration::from_millis(300);

/// A connection to an origin made for a blind tunnel, with its timings.
struct Dialled {
    server: tokio::net::TcpStream,
    addr: SocketAddr,
    dns: Option<std::time::Duration>,
    connect: std::time::Duration,
}

impl Dialled {
    async fn dial(shared: &Shared, target: &Target) -> Result<Dialled, ConnectError> {
        let started = Instant::now();
        let dialer = &shared.dialer;
        let (server, addr, dns) = dialer
            .connect_at(&target.host, target.dial, target.port)
            .await?;
        Ok(Dialled {
            server,
            addr,
            dns,
            connect: started.elapsed() - dns.unwrap_or_default(),
        })
    }
}

/// What the client speaks inside a CONNECT tunnel, the bytes read to tell, and the
/// origin connection when it was dialled because the client kept quiet.
async fn sniff_tunnel<I: AsyncRead + Unpin>(
    shared: &Shared,
    target: &Target,
    io: &mut I,
) -> std::io::Result<(Sniffed, bytes::Bytes, Option<Dialled>)> {
    let mut buf = bytes::BytesMut::with_capacity(1024);
    let started = Instant::now();
    let timeout = shared.config.sniff_timeout;
    let verdict = sniff_into(io, SERVER_FIRST_AFTER.min(timeout), &mut buf).await?;
    if verdict != Sniffed::Silence || timeout <= SERVER_FIRST_AFTER {
        return Ok((verdict, buf.freeze(), None));
    }
    let dialled = Dialled::dial(shared, target).await.ok();
    let remaining = timeout.saturating_sub(started.elapsed());
    let Some(dialled) = dialled else {
        // Unreachable: the client still decides (the tunnel records the failure).
        let verdict = sniff_into(io, remaining, &mut buf).await?;
        return Ok((verdict, buf.freeze(), None));
    };
    let client_first = tokio::select! {
        verdict = sniff_into(io, remaining, &mut buf) => Some(verdict?),
        _ = dialled.server.readable() => None,
    };
    let verdict = match client_first {
        Some(verdict) => verdict,
        // The server spoke (or closed) first: a tunnel, whatever the client sent so far.
        None if buf.is_empty() => Sniffed::Silence,
        None => Sniffed::Other,
    };
    Ok((verdict, buf.freeze(), Some(dialled)))
}

async fn terminate_tls<I>(
    shared: Arc<Shared>,
    (peer, permit): (SocketAddr, ConnectionPermit),
    target: Target,
    io: I,
    started: ConnectRequest,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    match accept_tls(&shared, &target, io).await {
        Ok((tls, client_tls, upstream)) => {
            let h2 = client_tls.alpn.as_deref() == Some("h2");
            let client = ClientSide {
                addr: peer,
                tls: Some(Arc::new(client_tls)),
                permit: Some(permit),
            };
            serve_http(shared, client, upstream, tls, h2).await;
        }
        Err(message) => {
            let kind = FlowErrorKind::ClientTls;
            record_tunnel_failure(&shared, peer, &target, started, kind, message).await;
        }
    }
}

/// A TLS handshake with the client, presenting a leaf for its SNI name (else the CONNECT
/// host): the stream, the client's TLS parameters and where to forward to; `Err` says
/// why the handshake failed or that it stalled.
async fn accept_tls<I>(
    shared: &Shared,
    target: &Target,
    io: I,
) -> Result<(tokio_rustls::server::TlsStream<I>, TlsInfo, Target), String>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let handshake_timeout = shared.config.client_header_timeout;
    let acceptor = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io);
    let start = match tokio::time::timeout(handshake_timeout, acceptor).await {
        Ok(Ok(start)) => start,
        Ok(Err(e)) => {
            return Err(format!(
                "the client's TLS ClientHello for {} was invalid: {e}",
                target.authority()
            ))
        }
        Err(_) => return Err(handshake_stalled(target, handshake_timeout)),
    };
    let sni = start.client_hello().server_name().map(str::to_owned);
    // Apps that resolve names themselves CONNECT to an IP but still send the name: the
    // name is the host (its URL, the origin's certificate), the address where it is.
    let upstream = sni
        .as_deref()
        .and_then(|name| target.named(name))
        .unwrap_or_else(|| target.clone());
    let cert_host = sni.clone().unwrap_or_else(|| target.host.clone());
    let config = shared
        .leaves
        .server_config(&cert_host)
        .map_err(|e| e.to_string())?;
    let tls = match tokio::time::timeout(handshake_timeout, start.into_stream(config)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            return Err(format!(
                "TLS handshake with the client for {cert_host} failed: {e}. If the client \
                 rejected kinspect's certificate, trust the kinspect CA ({}) on that device, \
                 or pass the host with --ignore-hosts if the app pins its certificates",
                shared.ca.cert_pem_path().display()
            ))
        }
        Err(_) => return Err(handshake_stalled(target, handshake_timeout)),
    };
    let client_tls = session_info(sni, tls.get_ref().1);
    Ok((tls, client_tls, upstream))
}

fn handshake_stalled(target: &Target, limit: std::time::Duration) -> String {
    format!(
        "the client did not finish its TLS handshake for {} within {limit:?} (--client-timeout)",
        target.authority()
    )
}

/// Serves HTTP/1.1 or HTTP/2 from a client inside a tunnel, forwarding to `target`.
async fn serve_http<I>(shared: Arc<Shared>, client: ClientSide, target: Target, io: I, h2: bool)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = client.addr;
    let config = shared.config.clone();
    // Shared by every request of the connection instead of cloned for each.
    let ends = Arc::new((client, target, KeptConnection::new(&shared.upstreams)));
    let (service_shared, service_ends) = (shared.clone(), ends.clone());
    let result = if h2 {
        let service = service_fn(move |req| {
            let response = forward_in_tunnel(service_shared.clone(), service_ends.clone(), req);
            async move { Ok::<_, Infallible>(response.await) }
        });
        let (io, activity) = IdleWatch::new(io);
        let header_list = super::forward::http2_header_list_limit(config.max_header_bytes);
        let connection = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .auto_date_header(false)
            .max_header_list_size(header_list)
            .serve_connection(TokioIo::new(io), service);
        activity
            .close_when_idle(connection, config.idle_timeout, |c| c.graceful_shutdown())
            .await
    } else {
        let (io, exchanges, stalled) = HeadWatch::new(io, super::bad_head::HeadLimits::of(&config));
        let service_exchanges = exchanges.clone();
        let unstarted = UnstartedSlot::default();
        let service_unstarted = unstarted.clone();
        let service = service_fn(move |req| {
            let exchanges = service_exchanges.clone();
            exchanges.begin();
            let (shared, ends) = (service_shared.clone(), service_ends.clone());
            let unstarted = Unstarted::new(req, &service_unstarted);
            async move {
                let response = forward_in_tunnel(shared, ends, unstarted.begin()).await;
                Ok::<_, Infallible>(exchanges.respond(false, response))
            }
        });
        let result = http1_server(&config)
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades()
            .await;
        let (client, target, _) = &*ends;
        let error = result.as_ref().err();
        record_left_heads(&shared, client, Some(target), error, &exchanges, &stalled).await;
        if let Some(req) = unstarted::take(&unstarted) {
            record_given_up(&shared, client, target, req).await;
        }
        result
    };
    if let Err(e) = result {
        tracing::debug!("intercepted connection from {peer}: {}", error_chain(&e));
    }
}

/// What a tunnel's requests are forwarded with: its client, its target, and the origin
/// connection it keeps.
type TunnelEnds = (ClientSide, Target, Arc<KeptConnection>);

/// Forwards `req`, sent inside the tunnel to `ends`.
async fn forward_in_tunnel(
    shared: Arc<Shared>,
    ends: Arc<TunnelEnds>,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let (client, target, kept) = &*ends;
    forward(&shared, client, kept, target, req).await
}

/// A new flow of `kind` for a CONNECT to `target` from `peer`.
fn connect_flow(
    slot: &crate::events::FlowSlot,
    kind: FlowKind,
    peer: SocketAddr,
    target: &Target,
    connect: &ConnectRequest,
) -> crate::flow::Flow {
    let client = ClientSide {
        addr: peer,
        tls: None,
        permit: None,
    };
    let request = RequestRecord {
        method: "CONNECT".into(),
        url: target.authority(),
        version: HttpVersion::Http11,
        headers: connect.headers.clone(),
        body: CapturedBody::default(),
    };
    new_flow(slot, kind, &client, connect.at, target, request)
}

/// A CONNECT request, as the flow of its tunnel (or of its failure) records it.
struct ConnectRequest {
    /// When it came.
    at: SystemTime,
    t0: Instant,
    /// Its header fields (`User-Agent` tells which app opened the tunnel), without
    /// kinspect's own credential.
    headers: Headers,
}

/// Records a CONNECT that failed before any HTTP exchange inside it.
async fn record_tunnel_failure(
    shared: &Shared,
    peer: SocketAddr,
    target: &Target,
    started: ConnectRequest,
    kind: FlowErrorKind,
    message: String,
) {
    let slot = shared.publisher.reserve().await;
    let mut flow = connect_flow(&slot, FlowKind::Http, peer, target, &started);
    flow.timings.wait = started.t0.elapsed();
    flow.error = Some(FlowError { kind, message });
    slot.publish(flow);
}

/// Passes bytes both ways without looking at them, over `dialled` or a connection made
/// now, and records the tunnel.
async fn blind_tunnel<I>(
    shared: &Shared,
    peer: SocketAddr,
    target: &Target,
    mut client_io: I,
    started: ConnectRequest,
    dialled: Option<Dialled>,
) where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let slot = shared.publisher.reserve().await;
    let mut flow = connect_flow(&slot, FlowKind::Tunnel, peer, target, &started);
    let connect_started = Instant::now();
    let dialled = match dialled {
        Some(dialled) => Ok(dialled),
        None => Dialled::dial(shared, target).await,
    };
    match dialled {
        Ok(Dialled {
            server,
            addr,
            dns,
            connect,
        }) => {
            flow.server_ip = Some(addr.ip());
            flow.timings.dns = dns;
            flow.timings.connect = Some(connect);
            flow.response = Some(ResponseRecord {
                status: 200,
                version: HttpVersion::Http11,
                headers: Headers::default(),
                body: CapturedBody::uncaptured(0),
                from_proxy: true,
            });
            let record = RelayRecord::new(slot, flow, Instant::now());
            let broke = super::relay::relay(&mut client_io, server, record.counts()).await;
            let (slot, mut flow) = record.finish();
            if let Some(e) = broke {
                flow.error = Some(FlowError {
                    kind: FlowErrorKind::Protocol,
                    message: format!("tunnel to {} broke: {e}", target.authority()),
                });
            }
            slot.publish(flow);
        }
        Err(e) => {
            flow.timings.wait = connect_started.elapsed();
            flow.error = Some(FlowError {
                kind: e.kind,
                message: e.message,
            });
            slot.publish(flow);
        }
    }
}
