//! A minimal intercepting proxy on hyper + rustls that records nothing: the reference
//! DESIGN.md §11 sets kinspect against ("kinspect must beat the minimal Rust proxy while
//! capturing every flow"), for `scripts/compare-mitmproxy.sh`.
//!
//! HTTP/1.1 only. A CONNECT is answered, the tunnel's TLS is terminated with a leaf from
//! kinspect's CA (minting is not what is measured), and each client connection gets its
//! own upstream connection (TLS again, `TCP_NODELAY`), driven by hyper's client
//! connection: no pool, no flow, no capture, no analysis. Plain HTTP requests go the same
//! way to the host their absolute URI names.
//!
//! `cargo run --release --example minimal_mitm -- CA_DIR UPSTREAM_CA_PEM`
//! prints `listening on ADDR`; clients trust `CA_DIR/kinspect-ca.pem`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context as _};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{combinators::BoxBody, BodyExt, Empty};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use kinspect::ca::{CertificateAuthority, LeafCache};
use rustls_pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio_rustls::{TlsAcceptor, TlsConnector};

type Body = BoxBody<Bytes, hyper::Error>;

/// A client connection's upstream connection and the authority it goes to.
type KeptUpstream = Mutex<Option<(String, SendRequest<Incoming>)>>;

struct Shared {
    leaves: LeafCache,
    upstream_tls: TlsConnector,
}

fn main() -> anyhow::Result<()> {
    kinspect::tls::install_crypto_provider();
    let mut args = std::env::args().skip(1);
    let (Some(ca_dir), Some(upstream_ca)) = (args.next(), args.next()) else {
        bail!("usage: minimal_mitm CA_DIR UPSTREAM_CA_PEM");
    };
    let ca = Arc::new(CertificateAuthority::load_or_create(&PathBuf::from(
        ca_dir,
    ))?);
    let mut client_config =
        kinspect::tls::upstream_client_config(&[PathBuf::from(upstream_ca)], &[], false)?;
    client_config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let shared = Arc::new(Shared {
        leaves: LeafCache::new(ca, 1024)?,
        upstream_tls: TlsConnector::from(Arc::new(client_config)),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        println!("listening on {}", listener.local_addr()?);
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            tokio::spawn(serve(shared.clone(), TokioIo::new(stream), None));
        }
    })
}

/// Serves one client connection; `tunnel` is the CONNECT target its requests go to.
async fn serve<I>(shared: Arc<Shared>, io: I, tunnel: Option<Uri>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let upstream: Arc<KeptUpstream> = Arc::default();
    let service = service_fn(move |req| {
        let (shared, upstream, tunnel) = (shared.clone(), upstream.clone(), tunnel.clone());
        async move {
            let answer = match (req.method(), tunnel) {
                (&Method::CONNECT, None) => connect(shared, req),
                (_, tunnel) => forward(&shared, &upstream, tunnel, req).await,
            };
            Ok::<_, hyper::Error>(answer.unwrap_or_else(|e| {
                let mut response = Response::new(full(format!("{e:#}\n")));
                *response.status_mut() = StatusCode::BAD_GATEWAY;
                response
            }))
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, service)
        .with_upgrades()
        .await;
}

/// Answers a CONNECT and serves the tunnel's TLS once the client sends it.
fn connect(shared: Arc<Shared>, req: Request<Incoming>) -> anyhow::Result<Response<Body>> {
    let authority = req.uri().authority().context("CONNECT without host:port")?;
    let host = authority.host().to_owned();
    let target: Uri = format!("https://{authority}/").parse()?;
    let config = shared.leaves.server_config(&host)?;
    tokio::spawn(async move {
        let Ok(upgraded) = hyper::upgrade::on(req).await else {
            return;
        };
        let Ok(tls) = TlsAcceptor::from(config)
            .accept(TokioIo::new(upgraded))
            .await
        else {
            return;
        };
        serve(shared, TokioIo::new(tls), Some(target)).await;
    });
    Ok(Response::new(empty()))
}

/// Sends `req` on this client connection's upstream connection, opening it first if
/// there is none to the request's host.
async fn forward(
    shared: &Shared,
    upstream: &KeptUpstream,
    tunnel: Option<Uri>,
    req: Request<Incoming>,
) -> anyhow::Result<Response<Body>> {
    let target = tunnel.unwrap_or_else(|| req.uri().clone());
    let authority = target
        .authority()
        .context("request without a host")?
        .to_string();
    let (mut parts, body) = req.into_parts();
    parts.uri = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .parse()?;
    let mut upstream = upstream.lock().await;
    let reusable =
        matches!(&*upstream, Some((to, sender)) if *to == authority && !sender.is_closed());
    if !reusable {
        *upstream = Some((authority.clone(), open(shared, &target).await?));
    }
    let (_, sender) = upstream.as_mut().expect("opened above");
    sender.ready().await?;
    let response = sender
        .send_request(Request::from_parts(parts, body))
        .await?;
    Ok(response.map(|body| body.boxed()))
}

/// Opens an HTTP/1.1 connection to `target` (TLS for https) and drives it on a task.
async fn open(shared: &Shared, target: &Uri) -> anyhow::Result<SendRequest<Incoming>> {
    let host = target
        .host()
        .ok_or_else(|| anyhow!("no host in {target}"))?;
    let https = target.scheme_str() == Some("https");
    let port = target.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp = TcpStream::connect((host, port)).await?;
    tcp.set_nodelay(true)?;
    if https {
        let name = ServerName::try_from(host.to_owned())?;
        let tls = shared.upstream_tls.connect(name, tcp).await?;
        handshake(TokioIo::new(tls)).await
    } else {
        handshake(TokioIo::new(tcp)).await
    }
}

async fn handshake<I>(io: I) -> anyhow::Result<SendRequest<Incoming>>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(connection);
    Ok(sender)
}

fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

fn full(text: String) -> Body {
    http_body_util::Full::new(Bytes::from(text))
        .map_err(|never| match never {})
        .boxed()
}
