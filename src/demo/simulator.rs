//! An embedded Kinvey backend simulator: an HTTPS server (HTTP/2 and HTTP/1.1) with its own
//! in-memory CA that answers like Kinvey's REST API — users, a `books` collection, blobs,
//! custom endpoints — and serves every error and anomaly kinspect recognises on demand
//! (`/simulate/...`).
//!
//! The routing is a pure function (`respond`) of the simulator's state and a buffered
//! request; the hyper/rustls glue around it only buffers bodies and copies headers.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, PKCS_ECDSA_P256_SHA256,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{json, Value};
use time::OffsetDateTime;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use crate::kinvey::dictionary::lookup;

/// The app key the simulator serves.
pub const APP_KEY: &str = "kid_demo";
/// Credentials the simulator accepts at login (username).
pub const DEMO_USERNAME: &str = "ada";
/// Credentials the simulator accepts at login (password).
pub const DEMO_PASSWORD: &str = "lovelace";
/// The app secret inside the simulator's Basic auth (app key:app secret); used by the demo client.
pub const APP_SECRET: &str = "demo-app-secret-2f9c";

const CA_COMMON_NAME: &str = "kinspect demo Kinvey simulator CA";
/// The `_id` of the built-in user `ada`.
const DEMO_USER_ID: &str = "5f3c9a1e2b7d4c0011ada001";
const DEMO_USER_CREATED: &str = "2024-03-01T09:30:00.000Z";
const BOOKS_CREATED: &str = "2024-03-02T10:00:00.000Z";
/// The collection with real documents.
const BOOKS: &str = "books";
/// `_id`, title, author of the `books` documents.
const BOOK_ROWS: &[(&str, &str, &str)] = &[
    (
        "64b1f0a2c3d4e5f601b00001",
        "Sketch of the Analytical Engine",
        "Luigi Menabrea",
    ),
    (
        "64b1f0a2c3d4e5f601b00002",
        "Notes on the Analytical Engine",
        "Ada Lovelace",
    ),
    (
        "64b1f0a2c3d4e5f601b00003",
        "Passages from the Life of a Philosopher",
        "Charles Babbage",
    ),
    (
        "64b1f0a2c3d4e5f601b00004",
        "On the Economy of Machinery and Manufactures",
        "Charles Babbage",
    ),
];
/// How many failures the `flaky` endpoint serves to each client before succeeding.
const FLAKY_FAILURES: u32 = 2;
const INSUFFICIENT_DEBUG: &str = "Please authenticate as an app End User or as the app admin using the Master secret to run this operation";
/// The broken example of Kinvey's troubleshooting page: curly quotes, no commas.
const UNPARSEABLE_BODY: &str = "{\n    \u{201c}error\u{201d}: \u{201c}InsufficientCredentials\u{201d}\n    \u{201c}description\u{201d}: \u{201c}The credentials used to authenticate this request are not authorized to run this operation. Please retry your request with appropriate credentials\u{201d}\n    \u{201c}debug\u{201d}: \u{201c}Please authenticate as an app End User or as the app admin using the Master secret to run this operation\u{201d}\n}";
const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";
const SIMULATED_DEBUG: &str = "simulated by the kinspect demo Kinvey simulator";

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimulatorError {
    /// The listening socket could not be opened.
    #[error("cannot listen on 127.0.0.1 for the demo Kinvey simulator: {0}")]
    Bind(#[source] std::io::Error),
    /// The CA or the leaf certificate could not be generated (e.g. an invalid host name).
    #[error("cannot generate the demo Kinvey simulator's certificates: {0}")]
    Certificate(#[from] rcgen::Error),
    /// rustls refused the generated key or configuration.
    #[error("cannot build the demo Kinvey simulator's TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// A running Kinvey backend simulator (HTTPS on 127.0.0.1); stops when dropped.
pub struct Simulator {
    addr: SocketAddr,
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Simulator {
    /// Starts on 127.0.0.1 port 0, HTTPS only, ALPN h2 + http/1.1, leaf certificate for
    /// each of `host_names` plus IP SAN 127.0.0.1, signed by a CA generated in memory
    /// (CN "kinspect demo Kinvey simulator CA").
    pub async fn start(host_names: &[&str]) -> Result<Simulator, SimulatorError> {
        let certs = generate_certificates(host_names)?;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(SimulatorError::Bind)?;
        let addr = listener.local_addr().map_err(SimulatorError::Bind)?;
        let acceptor = TlsAcceptor::from(Arc::new(certs.server_config));
        let state = Arc::new(SimState::new());
        let task = tokio::spawn(accept_loop(listener, acceptor, state));
        Ok(Simulator {
            addr,
            ca_pem: certs.ca_pem,
            ca_der: certs.ca_der,
            task,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Its CA certificate, DER.
    pub fn ca_der(&self) -> &CertificateDer<'static> {
        &self.ca_der
    }
}

// ---------------------------------------------------------------------------------------
// Certificates and the hyper glue
// ---------------------------------------------------------------------------------------

struct Certificates {
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    server_config: rustls::ServerConfig,
}

fn generate_certificates(host_names: &[&str]) -> Result<Certificates, SimulatorError> {
    let now = OffsetDateTime::now_utc();
    let not_before = now - time::Duration::hours(1);
    let not_after = now + time::Duration::days(30);

    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut ca_params = CertificateParams::default();
    let mut ca_name = DistinguishedName::new();
    ca_name.push(DnType::CommonName, CA_COMMON_NAME);
    ca_name.push(DnType::OrganizationName, "kinspect");
    ca_params.distinguished_name = ca_name;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params.not_before = not_before;
    ca_params.not_after = not_after;
    ca_params.serial_number = Some(crate::ca::random_serial());
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let ca_pem = ca_cert.pem();
    let ca_der = ca_cert.der().clone();
    let issuer = Issuer::new(ca_params, ca_key);

    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut sans = Vec::new();
    for host in host_names {
        let host = crate::flow::unbracketed(host);
        let san = match host.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(host.try_into()?),
        };
        if !sans.contains(&san) {
            sans.push(san);
        }
    }
    if !sans.contains(&SanType::IpAddress(localhost)) {
        sans.push(SanType::IpAddress(localhost));
    }
    let leaf_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut leaf_params = CertificateParams::default();
    let mut leaf_name = DistinguishedName::new();
    leaf_name.push(
        DnType::CommonName,
        host_names.first().copied().unwrap_or("127.0.0.1"),
    );
    leaf_name.push(DnType::OrganizationName, "kinspect demo");
    leaf_params.distinguished_name = leaf_name;
    leaf_params.subject_alt_names = sans;
    leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf_params.use_authority_key_identifier_extension = true;
    leaf_params.serial_number = Some(crate::ca::random_serial());
    leaf_params.not_before = not_before;
    leaf_params.not_after = not_after;
    let leaf_cert = leaf_params.signed_by(&leaf_key, &issuer)?;

    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let mut server_config =
        rustls::ServerConfig::builder_with_provider(crate::tls::crypto_provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![leaf_cert.der().clone(), ca_der.clone()], key_der)?;
    server_config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Certificates {
        ca_pem,
        ca_der,
        server_config,
    })
}

/// Accepts connections until aborted; aborting drops the set, which ends every connection.
async fn accept_loop(listener: TcpListener, acceptor: TlsAcceptor, state: Arc<SimState>) {
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        match listener.accept().await {
            Ok((stream, _)) => {
                connections.spawn(serve_connection(stream, acceptor.clone(), state.clone()));
            }
            Err(error) => {
                tracing::debug!(%error, "demo simulator: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve_connection(stream: TcpStream, acceptor: TlsAcceptor, state: Arc<SimState>) {
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            tracing::debug!(%error, "demo simulator: TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!("demo simulator: TLS handshake timed out");
            return;
        }
    };
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
    let service = service_fn(move |req| handle(state.clone(), req));
    let io = TokioIo::new(tls);
    let result = if h2 {
        hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .serve_connection(io, service)
            .await
    } else {
        hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .serve_connection(io, service)
            .await
    };
    if let Err(error) = result {
        tracing::debug!(%error, "demo simulator: connection ended with an error");
    }
}

async fn handle(
    state: Arc<SimState>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = tokio::time::timeout(
        BODY_READ_TIMEOUT,
        Limited::new(body, MAX_BODY_BYTES).collect(),
    )
    .await;
    let (body, complete) = match body {
        Ok(Ok(collected)) => (collected.to_bytes(), true),
        _ => (Bytes::new(), false),
    };
    let sim_req = SimRequest {
        method: parts.method,
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        body,
    };
    let sim_resp = if complete {
        respond(&state, &sim_req)
    } else {
        let reply = Reply::error(
            "IncompleteRequestBody",
            format!("the request body was not received completely within {BODY_READ_TIMEOUT:?} or exceeds {MAX_BODY_BYTES} bytes"),
        );
        finish(reply, &sim_req, random_hex(16))
    };
    Ok(into_http(sim_resp))
}

fn into_http(sim: SimResponse) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(sim.body));
    *response.status_mut() =
        StatusCode::from_u16(sim.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in sim.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

// ---------------------------------------------------------------------------------------
// The pure simulator
// ---------------------------------------------------------------------------------------

/// What the simulator remembers between requests.
struct SimState {
    inner: Mutex<StateInner>,
}

struct StateInner {
    /// Users by username.
    users: HashMap<String, User>,
    /// Session tokens issued at login or signup → the user's `_id`.
    tokens: HashMap<String, String>,
    /// Calls of the `flaky` endpoint per `X-Demo-Client` value.
    flaky_calls: HashMap<String, u32>,
}

#[derive(Clone)]
struct User {
    id: String,
    username: String,
    password: String,
    created: String,
}

impl SimState {
    fn new() -> SimState {
        let ada = User {
            id: DEMO_USER_ID.to_owned(),
            username: DEMO_USERNAME.to_owned(),
            password: DEMO_PASSWORD.to_owned(),
            created: DEMO_USER_CREATED.to_owned(),
        };
        SimState {
            inner: Mutex::new(StateInner {
                users: HashMap::from([(ada.username.clone(), ada)]),
                tokens: HashMap::new(),
                flaky_calls: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, StateInner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A buffered request.
struct SimRequest {
    method: Method,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
}

impl SimRequest {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The first value of query parameter `name`, percent-decoded.
    fn query_param(&self, name: &str) -> Option<String> {
        self.query.as_deref()?.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key, true) == name).then(|| percent_decode(value, true))
        })
    }
}

/// A complete response.
struct SimResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Bytes,
}

/// A route's answer, before the headers every response carries.
struct Reply {
    status: u16,
    body: Vec<u8>,
    content_type: &'static str,
    extra_headers: Vec<(&'static str, String)>,
}

impl Reply {
    fn json(status: u16, value: Value) -> Reply {
        Reply {
            status,
            body: value.to_string().into_bytes(),
            content_type: JSON_CONTENT_TYPE,
            extra_headers: Vec::new(),
        }
    }

    /// Dictionary error `name` (sent exactly as given) with its first status.
    fn error(name: &str, debug: impl Into<Value>) -> Reply {
        let entry = lookup(name);
        let status = entry.map_or(500, |e| e.statuses[0]);
        Reply::error_at(status, name, debug)
    }

    /// Dictionary error `name` (sent exactly as given) with `status`.
    fn error_at(status: u16, name: &str, debug: impl Into<Value>) -> Reply {
        Reply::json(status, error_body(name, debug))
    }

    /// Gzips the body when the client accepts gzip.
    fn gzipped_if_accepted(mut self, req: &SimRequest) -> Reply {
        let accepts_gzip = req
            .header("accept-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("gzip"));
        if accepts_gzip {
            self.body = gzip(&self.body);
            self.extra_headers
                .push(("Content-Encoding", "gzip".to_owned()));
        }
        self
    }
}

/// `{"error", "description", "debug"}` with the dictionary's description of `name`.
fn error_body(name: &str, debug: impl Into<Value>) -> Value {
    json!({
        "error": name,
        "description": description(name),
        "debug": debug.into(),
    })
}

fn description(name: &str) -> &'static str {
    lookup(name).map_or("", |e| e.description)
}

/// Answers `req`: the route's reply plus `X-Kinvey-Request-ID`, `X-Kinvey-API-Version`
/// and `Content-Type`.
fn respond(state: &SimState, req: &SimRequest) -> SimResponse {
    let request_id = random_hex(16);
    let reply = route(state, req, &request_id);
    finish(reply, req, request_id)
}

fn finish(reply: Reply, req: &SimRequest, request_id: String) -> SimResponse {
    let api_version = req.header("x-kinvey-api-version").unwrap_or("5").to_owned();
    let mut headers = vec![
        ("X-Kinvey-Request-ID".to_owned(), request_id),
        ("X-Kinvey-API-Version".to_owned(), api_version),
        ("Content-Type".to_owned(), reply.content_type.to_owned()),
    ];
    // The load balancer's own page never reached Kinvey.
    if reply.content_type == GATEWAY_CONTENT_TYPE {
        headers.drain(..2);
    }
    headers.extend(
        reply
            .extra_headers
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value)),
    );
    SimResponse {
        status: reply.status,
        headers,
        body: Bytes::from(reply.body),
    }
}

fn route(state: &SimState, req: &SimRequest, request_id: &str) -> Reply {
    let segments: Vec<String> = req
        .path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode(s, false))
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match segments.as_slice() {
        ["simulate", rest @ ..] => simulate(rest, req, request_id),
        [api @ ("appdata" | "user" | "blob" | "rpc"), app, rest @ ..] => {
            if *app != APP_KEY {
                return Reply::error(
                    "AppNotFound",
                    format!("no app backend has the app key {app:?}"),
                );
            }
            if *api == "appdata" && rest.is_empty() && req.method == Method::GET {
                return Reply::json(
                    200,
                    json!({"version": "3.40.1", "kinvey": "hello kinspect demo"}),
                );
            }
            let principal = match authenticate(state, req) {
                Ok(principal) => principal,
                Err(reply) => return reply,
            };
            match *api {
                "appdata" => appdata(rest, req, &principal),
                "user" => user(state, rest, req),
                "blob" => blob(rest, req),
                _ => rpc(state, rest, req),
            }
        }
        _ => no_route(req),
    }
}

fn no_route(req: &SimRequest) -> Reply {
    Reply::error_at(
        404,
        "BadRequest",
        format!("no route for {} {}", req.method, req.path),
    )
}

/// The `_id` that becomes `_acl.creator` of what the caller creates.
type Principal = String;

fn authenticate(state: &SimState, req: &SimRequest) -> Result<Principal, Reply> {
    let Some(authorization) = req.header("authorization") else {
        return Err(Reply::error("InsufficientCredentials", INSUFFICIENT_DEBUG));
    };
    let authorization = authorization.trim();
    let (scheme, credentials) = authorization.split_once(' ').unwrap_or((authorization, ""));
    let credentials = credentials.trim();
    let principal = if scheme.eq_ignore_ascii_case("basic") {
        if credentials == base64(format!("{APP_KEY}:{APP_SECRET}").as_bytes()) {
            Some(APP_KEY.to_owned())
        } else if credentials == base64(format!("{DEMO_USERNAME}:{DEMO_PASSWORD}").as_bytes()) {
            Some(DEMO_USER_ID.to_owned())
        } else {
            None
        }
    } else if scheme.eq_ignore_ascii_case("kinvey") {
        state.lock().tokens.get(credentials).cloned()
    } else {
        None
    };
    principal.ok_or_else(|| {
        Reply::error(
            "InvalidCredentials",
            "The Authorization header matches neither the app key and secret, nor a user's credentials, nor a session token",
        )
    })
}

fn appdata(rest: &[&str], req: &SimRequest, principal: &str) -> Reply {
    let method = &req.method;
    match rest {
        [BOOKS] if *method == Method::GET => list_books(req),
        [BOOKS] if *method == Method::POST => create_books(req, principal),
        [BOOKS, id] if *method == Method::GET => match book(id) {
            Some(doc) => Reply::json(200, doc),
            None => Reply::error(
                "EntityNotFound",
                format!("no entity with _id {id:?} in collection \"books\""),
            ),
        },
        [BOOKS, id] if *method == Method::PUT => update_book(req, id),
        [BOOKS, ..] => no_route(req),
        ["quota", ..] => Reply::json(
            429,
            json!({
                "error": "QuotaExceeded",
                "description": "Too many requests for this app",
                "debug": "limit 100/min",
            }),
        ),
        ["readonly", ..] if *method == Method::GET => Reply::json(200, json!([])),
        ["readonly", ..] => Reply::error(
            "WritesToCollectionDisallowed",
            "collection \"readonly\" does not allow writes",
        ),
        [collection, ..] => Reply::error(
            "CollectionNotFound",
            format!("no collection named {collection:?} in this app backend"),
        ),
        [] => no_route(req),
    }
}

fn list_books(req: &SimRequest) -> Reply {
    if let Some(query) = req.query_param("query") {
        match serde_json::from_str::<Value>(&query) {
            Ok(Value::Object(_)) => {}
            Ok(_) => return Reply::error("InvalidQuerySyntax", "the query must be a JSON object"),
            Err(error) => {
                return Reply::error(
                    "InvalidQuerySyntax",
                    format!("the query is not valid JSON: {error}"),
                )
            }
        }
    }
    let books: Vec<Value> = BOOK_ROWS
        .iter()
        .map(|(id, title, author)| book_document(id, title, author))
        .collect();
    Reply::json(200, Value::Array(books)).gzipped_if_accepted(req)
}

fn book(id: &str) -> Option<Value> {
    BOOK_ROWS
        .iter()
        .find(|(book_id, _, _)| *book_id == id)
        .map(|(id, title, author)| book_document(id, title, author))
}

fn book_document(id: &str, title: &str, author: &str) -> Value {
    json!({
        "_id": id,
        "title": title,
        "author": author,
        "_kmd": {"lmt": BOOKS_CREATED, "ect": BOOKS_CREATED},
        "_acl": {"creator": DEMO_USER_ID},
    })
}

fn parse_body(req: &SimRequest) -> Result<Value, Reply> {
    serde_json::from_slice(&req.body).map_err(|error| {
        Reply::error(
            "JSONParseError",
            format!("Unable to parse the request body as JSON: {error}"),
        )
    })
}

/// `entity` as stored: a new `_id` unless it has one, fresh `_kmd`, `_acl.creator`.
fn stored(mut entity: serde_json::Map<String, Value>, principal: &str) -> Value {
    let now = timestamp();
    if !entity.contains_key("_id") {
        entity.insert("_id".into(), random_hex(12).into());
    }
    entity.insert("_kmd".into(), json!({"lmt": now, "ect": now}));
    entity.insert("_acl".into(), json!({"creator": principal}));
    Value::Object(entity)
}

fn create_books(req: &SimRequest, principal: &str) -> Reply {
    let body = match parse_body(req) {
        Ok(body) => body,
        Err(reply) => return reply,
    };
    match body {
        Value::Object(entity) => Reply::json(201, stored(entity, principal)),
        Value::Array(items) => {
            let mut entities = Vec::new();
            let mut errors = Vec::new();
            for (index, item) in items.into_iter().enumerate() {
                match item {
                    Value::Object(entity) if entity.contains_key("title") => {
                        entities.push(stored(entity, principal))
                    }
                    _ => errors.push(json!({
                        "index": index,
                        "error": "ParameterValueOutOfRange",
                        "description": description("ParameterValueOutOfRange"),
                        "debug": "title is required",
                    })),
                }
            }
            Reply::json(207, json!({"entities": entities, "errors": errors}))
        }
        _ => Reply::error(
            "BadRequest",
            "the body must be a JSON object (one entity) or array (multi-insert)",
        ),
    }
}

fn update_book(req: &SimRequest, id: &str) -> Reply {
    match parse_body(req) {
        Ok(Value::Object(mut entity)) => {
            entity.insert("_id".into(), id.into());
            let kmd = entity
                .entry("_kmd")
                .or_insert_with(|| json!({"ect": BOOKS_CREATED}));
            if let Value::Object(kmd) = kmd {
                kmd.insert("lmt".into(), timestamp().into());
            }
            Reply::json(200, Value::Object(entity))
        }
        Ok(other) => Reply::json(200, other),
        Err(reply) => reply,
    }
}

fn user(state: &SimState, rest: &[&str], req: &SimRequest) -> Reply {
    match rest {
        ["login"] if req.method == Method::POST => login(state, req),
        [] if req.method == Method::POST => signup(state, req),
        [id] if req.method == Method::GET => {
            let inner = state.lock();
            match inner.users.values().find(|u| u.id == *id) {
                Some(user) => Reply::json(200, user_document(user, None)),
                None => Reply::error(
                    "UserNotFound",
                    format!("no user with _id {id:?} in this app backend"),
                ),
            }
        }
        _ => no_route(req),
    }
}

/// The `username` and `password` of a login or signup body.
fn credentials(req: &SimRequest) -> Result<(String, String), Reply> {
    let body = parse_body(req)?;
    let field = |name: &str| body.get(name).and_then(Value::as_str).map(str::to_owned);
    match (field("username"), field("password")) {
        (Some(username), Some(password)) => Ok((username, password)),
        _ => Err(Reply::error(
            "MissingRequestParameter",
            "the body must have string fields \"username\" and \"password\"",
        )),
    }
}

fn login(state: &SimState, req: &SimRequest) -> Reply {
    let (username, password) = match credentials(req) {
        Ok(credentials) => credentials,
        Err(reply) => return reply,
    };
    let mut inner = state.lock();
    let user = match inner.users.get(&username) {
        Some(user) if user.password == password => user.clone(),
        _ => {
            return Reply::error(
                "InvalidCredentials",
                "wrong username or password for this app backend",
            )
        }
    };
    let token = issue_token(&mut inner, &user);
    Reply::json(200, user_document(&user, Some(&token)))
}

fn signup(state: &SimState, req: &SimRequest) -> Reply {
    let (username, password) = match credentials(req) {
        Ok(credentials) => credentials,
        Err(reply) => return reply,
    };
    let mut inner = state.lock();
    if inner.users.contains_key(&username) {
        return Reply::error(
            "UserAlreadyExists",
            format!("a user named {username:?} already exists"),
        );
    }
    let user = User {
        id: random_hex(12),
        username: username.clone(),
        password,
        created: timestamp(),
    };
    inner.users.insert(username, user.clone());
    let token = issue_token(&mut inner, &user);
    Reply::json(201, user_document(&user, Some(&token)))
}

fn issue_token(inner: &mut StateInner, user: &User) -> String {
    let token = format!("{}.{}", random_hex(16), random_hex(20));
    inner.tokens.insert(token.clone(), user.id.clone());
    token
}

fn user_document(user: &User, authtoken: Option<&str>) -> Value {
    let mut kmd = json!({"lmt": user.created, "ect": user.created});
    if let Some(token) = authtoken {
        kmd["authtoken"] = token.into();
    }
    json!({
        "_id": user.id,
        "username": user.username,
        "_kmd": kmd,
        "_acl": {"creator": user.id},
    })
}

fn blob(rest: &[&str], req: &SimRequest) -> Reply {
    match rest {
        ["cover"] if req.method == Method::GET => Reply::json(
            200,
            json!({
                "_id": "cover",
                "_filename": "cover.png",
                "_downloadURL": "https://storage.example/cover.png",
            }),
        ),
        [id] if req.method == Method::GET => Reply::error(
            "BlobNotFound",
            format!("no file with _id {id:?} in this app backend"),
        ),
        _ => no_route(req),
    }
}

fn rpc(state: &SimState, rest: &[&str], req: &SimRequest) -> Reply {
    let ["custom", endpoint] = rest else {
        return no_route(req);
    };
    if req.method != Method::POST {
        return no_route(req);
    }
    match *endpoint {
        "hello" => Reply::json(200, json!({"greeting": "hi"})),
        "flaky" => {
            let client = req.header("x-demo-client").unwrap_or("").to_owned();
            let calls = {
                let mut inner = state.lock();
                let calls = inner.flaky_calls.entry(client.clone()).or_insert(0);
                *calls = calls.saturating_add(1);
                *calls
            };
            if calls <= FLAKY_FAILURES {
                Reply::error(
                    "KinveyInternalErrorRetry",
                    format!("flaky endpoint: failure {calls} of {FLAKY_FAILURES} for client {client:?}"),
                )
            } else {
                Reply::json(200, json!({"ok": true}))
            }
        }
        "doomed" => Reply::error(
            "KinveyInternalErrorStop",
            "the endpoint's data store is corrupt",
        ),
        "slow" => Reply::error_at(550, "BLTimeoutError ", "Script timed out after 2000ms"),
        "broken" => Reply::error(
            "BLRuntimeError",
            "TypeError: Cannot read properties of undefined (reading 'title') at onRequest (line 12)",
        ),
        "syntax" => Reply::error(
            "BLSyntaxError",
            "SyntaxError: Unexpected token ')' at onRequest (line 7)",
        ),
        "violation" => Reply::error(
            "BLViolationError",
            "The script made more than 10 concurrent requests",
        ),
        "internal" => Reply::error(
            "BLInternalError",
            "The script's container stopped unexpectedly",
        ),
        other => Reply::error(
            "BadRequest",
            format!("no custom endpoint named {other:?}"),
        ),
    }
}

fn simulate(rest: &[&str], req: &SimRequest, request_id: &str) -> Reply {
    match rest {
        ["ok"] => Reply::json(200, json!({"ok": true})),
        ["error", name] => simulate_error(name, req),
        ["anomaly", kind] => anomaly(kind, request_id).unwrap_or_else(|| no_route(req)),
        _ => no_route(req),
    }
}

fn simulate_error(name: &str, req: &SimRequest) -> Reply {
    let status = match req.query_param("status") {
        None => None,
        Some(text) => match text.parse::<u16>() {
            Ok(status @ 100..=999) => Some(status),
            _ => {
                return Reply::error(
                    "BadRequest",
                    format!("status must be a number from 100 to 999, not {text:?}"),
                )
            }
        },
    };
    match (lookup(name), status) {
        (Some(entry), status) => {
            Reply::error_at(status.unwrap_or(entry.statuses[0]), name, SIMULATED_DEBUG)
        }
        (None, Some(status)) => Reply::json(
            status,
            json!({
                "error": name,
                "description": "An error that is not in Kinvey's dictionary",
                "debug": SIMULATED_DEBUG,
            }),
        ),
        (None, None) => Reply::error_at(
            404,
            "BadRequest",
            format!("{name:?} is not in the error dictionary; add ?status=NNN to serve it anyway"),
        ),
    }
}

/// The content type of [`GATEWAY_PAGE`], and of no answer of the backend's own: an
/// answer of this type is the load balancer's, without Kinvey's headers.
const GATEWAY_CONTENT_TYPE: &str = "text/html";

/// A load balancer's own 503 page (nginx's).
const GATEWAY_PAGE: &str =
    "<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n\
<body>\r\n<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n\
<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

fn anomaly(kind: &str, request_id: &str) -> Option<Reply> {
    let reply = match kind {
        "status-mismatch" => Reply::error_at(
            400,
            "EntityNotFound",
            "simulated: EntityNotFound sent with status 400",
        ),
        "whitespace" => Reply::error_at(550, "BLTimeoutError ", "Script timed out after 2000ms"),
        "unparseable" => Reply {
            status: 401,
            body: UNPARSEABLE_BODY.as_bytes().to_vec(),
            content_type: JSON_CONTENT_TYPE,
            extra_headers: Vec::new(),
        },
        "content-type" => Reply {
            content_type: "text/html; charset=utf-8",
            ..Reply::error("KinveyInternalErrorRetry", SIMULATED_DEBUG)
        },
        "name-message" => Reply::json(
            404,
            json!({"name": "EntityNotFound", "message": description("EntityNotFound")}),
        ),
        "debug-object" => Reply::error(
            "JSONParseError",
            json!({"line": 3, "column": 14, "reason": "Unexpected token }"}),
        ),
        // What a load balancer in front of the backend answers while it has none to
        // pass the request to.
        "gateway" => Reply {
            status: 503,
            body: GATEWAY_PAGE.as_bytes().to_vec(),
            content_type: GATEWAY_CONTENT_TYPE,
            extra_headers: Vec::new(),
        },
        "wrapped" => {
            let mut reply = Reply::json(
                200,
                json!({
                    "result": error_body("EntityNotFound", SIMULATED_DEBUG),
                    "headers": {"x-kinvey-request-id": request_id},
                    "statusCode": 404,
                }),
            );
            reply
                .extra_headers
                .push(("X-Kinvey-ResponseWrapper", "true".to_owned()));
            reply
        }
        "batch" => Reply::json(
            207,
            json!({
                "entities": [{"_id": "b1"}],
                "errors": [
                    {
                        "index": 1,
                        "error": "KinveyInternalErrorRetry",
                        "description": description("KinveyInternalErrorRetry"),
                    },
                    {
                        "index": 2,
                        "error": "ParameterValueOutOfRange",
                        "description": description("ParameterValueOutOfRange"),
                        "debug": "title is required",
                    },
                ],
            }),
        ),
        _ => return None,
    };
    Some(reply)
}

// ---------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------

/// `2 * bytes` random lowercase hex characters.
fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut buf)
        .expect("the OS random source is available");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Now, as Kinvey writes `_kmd` times (UTC, milliseconds).
fn timestamp() -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    OffsetDateTime::now_utc()
        .format(&format)
        .unwrap_or_else(|_| DEMO_USER_CREATED.to_owned())
}

/// Standard base64 with padding.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (byte(0) << 16) | (byte(1) << 8) | byte(2);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes `%XX` escapes (and `+` as a space when `plus_is_space`); invalid escapes and
/// invalid UTF-8 are kept as they are / replaced.
fn percent_decode(text: &str, plus_is_space: bool) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let hex = |b: u8| char::from(b).to_digit(16);
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push((high * 16 + low) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(data);
    encoder.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn request(method: &str, target: &str, headers: &[(&str, &str)], body: &str) -> SimRequest {
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path, Some(query.to_owned())),
            None => (target, None),
        };
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        SimRequest {
            method: method.parse().unwrap(),
            path: path.to_owned(),
            query,
            headers: map,
            body: Bytes::from(body.to_owned()),
        }
    }

    fn app_auth() -> String {
        format!(
            "Basic {}",
            base64(format!("{APP_KEY}:{APP_SECRET}").as_bytes())
        )
    }

    /// `method target` with the app's Basic credentials.
    fn call(state: &SimState, method: &str, target: &str, body: &str) -> SimResponse {
        let auth = app_auth();
        respond(
            state,
            &request(method, target, &[("authorization", &auth)], body),
        )
    }

    fn header<'a>(response: &'a SimResponse, name: &str) -> Option<&'a str> {
        response
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn body(response: &SimResponse) -> Value {
        serde_json::from_slice(&response.body).expect("a JSON body")
    }

    /// Asserts a Kinvey error body with the dictionary's status and description.
    fn assert_error(response: &SimResponse, status: u16, name: &str) -> Value {
        assert_eq!(response.status, status, "{name}: {:?}", response.body);
        let body = body(response);
        assert_eq!(body["error"], name);
        assert_eq!(body["description"], lookup(name).unwrap().description);
        assert!(body.get("debug").is_some(), "{body}");
        body
    }

    #[test]
    fn base64_matches_known_vectors() {
        assert_eq!(base64(b"ada:lovelace"), "YWRhOmxvdmVsYWNl");
        assert_eq!(
            base64(b"kid_demo:demo-app-secret-2f9c"),
            "a2lkX2RlbW86ZGVtby1hcHAtc2VjcmV0LTJmOWM="
        );
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b""), "");
    }

    #[test]
    fn percent_decoding_handles_escapes_plus_and_garbage() {
        assert_eq!(
            percent_decode("BLTimeoutError%20", false),
            "BLTimeoutError "
        );
        assert_eq!(percent_decode("a+b%7B", true), "a b{");
        assert_eq!(percent_decode("a+b", false), "a+b");
        assert_eq!(percent_decode("100%", false), "100%");
        assert_eq!(percent_decode("%zz%4", false), "%zz%4");
    }

    #[test]
    fn every_response_carries_a_fresh_request_id_the_api_version_and_json() {
        let state = SimState::new();
        let first = respond(&state, &request("GET", "/appdata/kid_demo", &[], ""));
        let second = respond(
            &state,
            &request("GET", "/nowhere", &[("X-Kinvey-API-Version", "3")], ""),
        );
        for response in [&first, &second] {
            let id = header(response, "x-kinvey-request-id").unwrap();
            assert_eq!(id.len(), 32);
            assert!(id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
            assert_eq!(
                header(response, "content-type"),
                Some("application/json; charset=utf-8")
            );
        }
        assert_ne!(
            header(&first, "x-kinvey-request-id"),
            header(&second, "x-kinvey-request-id")
        );
        assert_eq!(header(&first, "x-kinvey-api-version"), Some("5"));
        assert_eq!(header(&second, "x-kinvey-api-version"), Some("3"));
    }

    #[test]
    fn ping_needs_no_credentials() {
        let state = SimState::new();
        let response = respond(&state, &request("GET", "/appdata/kid_demo/", &[], ""));
        assert_eq!(response.status, 200);
        assert_eq!(
            body(&response),
            json!({"version": "3.40.1", "kinvey": "hello kinspect demo"})
        );
    }

    #[test]
    fn another_app_key_is_app_not_found() {
        let state = SimState::new();
        for target in [
            "/appdata/kid_other",
            "/appdata/kid_other/books",
            "/user/kid_other/login",
            "/blob/kid_other/cover",
            "/rpc/kid_other/custom/hello",
        ] {
            assert_error(&call(&state, "GET", target, ""), 404, "AppNotFound");
        }
    }

    #[test]
    fn a_request_without_authorization_is_insufficient_credentials() {
        let state = SimState::new();
        for (method, target) in [
            ("GET", "/appdata/kid_demo/books"),
            ("POST", "/user/kid_demo/login"),
            ("POST", "/rpc/kid_demo/custom/hello"),
        ] {
            let response = respond(&state, &request(method, target, &[], ""));
            let body = assert_error(&response, 401, "InsufficientCredentials");
            assert_eq!(body["debug"], INSUFFICIENT_DEBUG);
        }
    }

    #[test]
    fn unknown_credentials_are_invalid_credentials() {
        let state = SimState::new();
        let wrong_secret = format!("Basic {}", base64(b"kid_demo:nope"));
        for auth in [
            wrong_secret.as_str(),
            "Kinvey not-a-token",
            "Bearer abc",
            "Basic",
        ] {
            let response = respond(
                &state,
                &request(
                    "GET",
                    "/appdata/kid_demo/books",
                    &[("authorization", auth)],
                    "",
                ),
            );
            assert_error(&response, 401, "InvalidCredentials");
        }
        let user_basic = format!("Basic {}", base64(b"ada:lovelace"));
        let response = respond(
            &state,
            &request(
                "GET",
                "/appdata/kid_demo/books",
                &[("authorization", &user_basic)],
                "",
            ),
        );
        assert_eq!(response.status, 200);
    }

    #[test]
    fn login_issues_a_token_that_authenticates() {
        let state = SimState::new();
        let response = call(
            &state,
            "POST",
            "/user/kid_demo/login",
            r#"{"username":"ada","password":"lovelace"}"#,
        );
        assert_eq!(response.status, 200);
        let user = body(&response);
        assert_eq!(user["username"], "ada");
        assert_eq!(user["_id"], DEMO_USER_ID);
        assert_eq!(user["_acl"]["creator"], DEMO_USER_ID);
        assert!(user["_kmd"]["lmt"].is_string() && user["_kmd"]["ect"].is_string());
        let token = user["_kmd"]["authtoken"].as_str().unwrap();
        let auth = format!("Kinvey {token}");
        let books = respond(
            &state,
            &request(
                "GET",
                "/appdata/kid_demo/books",
                &[("Authorization", &auth)],
                "",
            ),
        );
        assert_eq!(books.status, 200);

        for body in [
            r#"{"username":"ada","password":"babbage"}"#,
            r#"{"username":"charles","password":"lovelace"}"#,
        ] {
            let response = call(&state, "POST", "/user/kid_demo/login", body);
            assert_error(&response, 401, "InvalidCredentials");
        }
    }

    #[test]
    fn signup_creates_users_and_refuses_taken_names() {
        let state = SimState::new();
        let taken = call(
            &state,
            "POST",
            "/user/kid_demo",
            r#"{"username":"ada","password":"x"}"#,
        );
        assert_error(&taken, 409, "UserAlreadyExists");

        let created = call(
            &state,
            "POST",
            "/user/kid_demo",
            r#"{"username":"grace","password":"cobol"}"#,
        );
        assert_eq!(created.status, 201);
        let user = body(&created);
        assert_eq!(user["username"], "grace");
        assert!(user["_kmd"]["authtoken"].is_string());
        let again = call(
            &state,
            "POST",
            "/user/kid_demo",
            r#"{"username":"grace","password":"other"}"#,
        );
        assert_error(&again, 409, "UserAlreadyExists");
        let login = call(
            &state,
            "POST",
            "/user/kid_demo/login",
            r#"{"username":"grace","password":"cobol"}"#,
        );
        assert_eq!(login.status, 200);

        let id = user["_id"].as_str().unwrap();
        let fetched = call(&state, "GET", &format!("/user/kid_demo/{id}"), "");
        assert_eq!(fetched.status, 200);
        assert_eq!(body(&fetched)["username"], "grace");
        assert!(body(&fetched)["_kmd"].get("authtoken").is_none());
    }

    #[test]
    fn an_unknown_user_id_is_user_not_found() {
        let state = SimState::new();
        let ada = call(&state, "GET", &format!("/user/kid_demo/{DEMO_USER_ID}"), "");
        assert_eq!(ada.status, 200);
        let response = call(&state, "GET", "/user/kid_demo/000000000000000000000000", "");
        assert_error(&response, 404, "UserNotFound");
    }

    #[test]
    fn books_are_listed_and_gzipped_when_accepted() {
        let state = SimState::new();
        let plain = call(&state, "GET", "/appdata/kid_demo/books", "");
        assert_eq!(plain.status, 200);
        assert!(header(&plain, "content-encoding").is_none());
        let books = body(&plain);
        let books = books.as_array().unwrap();
        assert!((3..=5).contains(&books.len()));
        for book in books {
            for field in ["_id", "title", "author", "_kmd", "_acl"] {
                assert!(book.get(field).is_some(), "{field} in {book}");
            }
        }

        let auth = app_auth();
        let gzipped = respond(
            &state,
            &request(
                "GET",
                "/appdata/kid_demo/books?query=%7B%22author%22%3A%22Ada+Lovelace%22%7D",
                &[("authorization", &auth), ("accept-encoding", "gzip, br")],
                "",
            ),
        );
        assert_eq!(gzipped.status, 200);
        assert_eq!(header(&gzipped, "content-encoding"), Some("gzip"));
        let mut text = String::new();
        flate2::read::GzDecoder::new(&gzipped.body[..])
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), body(&plain));
    }

    #[test]
    fn an_invalid_query_is_invalid_query_syntax() {
        let state = SimState::new();
        let response = call(
            &state,
            "GET",
            "/appdata/kid_demo/books?query=%7B%22author%22%3A",
            "",
        );
        assert_error(&response, 400, "InvalidQuerySyntax");
    }

    #[test]
    fn a_book_is_found_by_id_or_entity_not_found() {
        let state = SimState::new();
        let id = BOOK_ROWS[1].0;
        let found = call(&state, "GET", &format!("/appdata/kid_demo/books/{id}"), "");
        assert_eq!(found.status, 200);
        assert_eq!(body(&found)["title"], "Notes on the Analytical Engine");
        let missing = call(&state, "GET", "/appdata/kid_demo/books/nope", "");
        assert_error(&missing, 404, "EntityNotFound");
    }

    #[test]
    fn put_echoes_the_entity_or_is_a_json_parse_error() {
        let state = SimState::new();
        let broken = call(
            &state,
            "PUT",
            "/appdata/kid_demo/books/b9",
            r#"{"title": "x",}"#,
        );
        let error = assert_error(&broken, 400, "JSONParseError");
        assert!(
            error["debug"].as_str().unwrap().contains("parse"),
            "{error}"
        );

        let ok = call(
            &state,
            "PUT",
            "/appdata/kid_demo/books/b9",
            r#"{"title":"Flatland","author":"Edwin Abbott"}"#,
        );
        assert_eq!(ok.status, 200);
        let entity = body(&ok);
        assert_eq!(entity["_id"], "b9");
        assert_eq!(entity["title"], "Flatland");
        assert!(entity["_kmd"]["lmt"].is_string());
    }

    #[test]
    fn post_creates_one_entity_or_answers_a_batch_with_207() {
        let state = SimState::new();
        let one = call(
            &state,
            "POST",
            "/appdata/kid_demo/books",
            r#"{"title":"Flatland"}"#,
        );
        assert_eq!(one.status, 201);
        let entity = body(&one);
        assert_eq!(entity["title"], "Flatland");
        assert_eq!(entity["_id"].as_str().unwrap().len(), 24);
        assert_eq!(entity["_acl"]["creator"], APP_KEY);

        let batch = call(
            &state,
            "POST",
            "/appdata/kid_demo/books",
            r#"[{"title":"A"},{"author":"nobody"},{"title":"C"},7]"#,
        );
        assert_eq!(batch.status, 207);
        let batch = body(&batch);
        assert_eq!(batch["entities"].as_array().unwrap().len(), 2);
        let errors = batch["errors"].as_array().unwrap();
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0]["index"], 1);
        assert_eq!(errors[1]["index"], 3);
        assert_eq!(errors[0]["error"], "ParameterValueOutOfRange");
        assert_eq!(
            errors[0]["description"],
            lookup("ParameterValueOutOfRange").unwrap().description
        );

        let broken = call(&state, "POST", "/appdata/kid_demo/books", "{");
        assert_error(&broken, 400, "JSONParseError");
    }

    #[test]
    fn other_collections_fail_as_kinvey_does() {
        let state = SimState::new();
        let missing = call(&state, "GET", "/appdata/kid_demo/missing", "");
        assert_error(&missing, 404, "CollectionNotFound");
        let read = call(&state, "GET", "/appdata/kid_demo/readonly", "");
        assert_eq!(read.status, 200);
        let write = call(&state, "POST", "/appdata/kid_demo/readonly", "{}");
        assert_error(&write, 403, "WritesToCollectionDisallowed");
        let quota = call(&state, "GET", "/appdata/kid_demo/quota", "");
        assert_eq!(quota.status, 429);
        assert_eq!(
            body(&quota),
            json!({
                "error": "QuotaExceeded",
                "description": "Too many requests for this app",
                "debug": "limit 100/min",
            })
        );
    }

    #[test]
    fn blobs_are_found_or_blob_not_found() {
        let state = SimState::new();
        let cover = call(&state, "GET", "/blob/kid_demo/cover", "");
        assert_eq!(cover.status, 200);
        assert_eq!(
            body(&cover),
            json!({
                "_id": "cover",
                "_filename": "cover.png",
                "_downloadURL": "https://storage.example/cover.png",
            })
        );
        assert_error(
            &call(&state, "GET", "/blob/kid_demo/back", ""),
            404,
            "BlobNotFound",
        );
    }

    #[test]
    fn custom_endpoints_answer_and_fail_as_named() {
        let state = SimState::new();
        let hello = call(&state, "POST", "/rpc/kid_demo/custom/hello", "{}");
        assert_eq!(hello.status, 200);
        assert_eq!(body(&hello), json!({"greeting": "hi"}));
        assert_error(
            &call(&state, "POST", "/rpc/kid_demo/custom/doomed", ""),
            500,
            "KinveyInternalErrorStop",
        );
        let broken = call(&state, "POST", "/rpc/kid_demo/custom/broken", "");
        let broken = assert_error(&broken, 400, "BLRuntimeError");
        assert_eq!(
            broken["debug"],
            "TypeError: Cannot read properties of undefined (reading 'title') at onRequest (line 12)"
        );
        assert_error(
            &call(&state, "POST", "/rpc/kid_demo/custom/syntax", ""),
            550,
            "BLSyntaxError",
        );
        assert_error(
            &call(&state, "POST", "/rpc/kid_demo/custom/violation", ""),
            550,
            "BLViolationError",
        );
        assert_error(
            &call(&state, "POST", "/rpc/kid_demo/custom/internal", ""),
            550,
            "BLInternalError",
        );
        assert_error(
            &call(&state, "POST", "/rpc/kid_demo/custom/nothing", ""),
            400,
            "BadRequest",
        );

        let slow = call(&state, "POST", "/rpc/kid_demo/custom/slow", "");
        assert_eq!(slow.status, 550);
        let slow = body(&slow);
        assert_eq!(slow["error"], "BLTimeoutError ");
        assert_eq!(
            slow["description"],
            lookup("BLTimeoutError").unwrap().description
        );
        assert_eq!(slow["debug"], "Script timed out after 2000ms");
    }

    #[test]
    fn the_flaky_endpoint_fails_twice_per_client() {
        let state = SimState::new();
        let auth = app_auth();
        let flaky = |client: Option<&str>| {
            let mut headers = vec![("authorization", auth.as_str())];
            if let Some(client) = client {
                headers.push(("x-demo-client", client));
            }
            respond(
                &state,
                &request("POST", "/rpc/kid_demo/custom/flaky", &headers, ""),
            )
            .status
        };
        assert_eq!(flaky(Some("a")), 500);
        assert_eq!(flaky(None), 500);
        assert_eq!(flaky(Some("a")), 500);
        assert_eq!(flaky(Some("a")), 200);
        assert_eq!(flaky(Some("b")), 500);
        assert_eq!(flaky(None), 500);
        assert_eq!(flaky(None), 200);
        let response = call(&state, "POST", "/rpc/kid_demo/custom/flaky", "");
        assert_eq!(body(&response), json!({"ok": true}));
        let first = respond(
            &SimState::new(),
            &request(
                "POST",
                "/rpc/kid_demo/custom/flaky",
                &[("authorization", &auth)],
                "",
            ),
        );
        assert_error(&first, 500, "KinveyInternalErrorRetry");
    }

    #[test]
    fn simulated_errors_come_from_the_dictionary() {
        let state = SimState::new();
        let get = |target: &str| respond(&state, &request("GET", target, &[], ""));
        assert_error(&get("/simulate/error/AppProblem"), 403, "AppProblem");
        assert_error(
            &get("/simulate/error/APIVersionNotAvailable?status=501"),
            501,
            "APIVersionNotAvailable",
        );
        let trailing = get("/simulate/error/BLTimeoutError%20");
        assert_eq!(trailing.status, 550);
        assert_eq!(body(&trailing)["error"], "BLTimeoutError ");

        let unknown = get("/simulate/error/NoSuchError");
        assert_eq!(unknown.status, 404);
        assert_eq!(body(&unknown)["error"], "BadRequest");
        let served = get("/simulate/error/TeapotOverflow?status=418");
        assert_eq!(served.status, 418);
        assert_eq!(body(&served)["error"], "TeapotOverflow");
        assert_error(
            &get("/simulate/error/AppProblem?status=abc"),
            400,
            "BadRequest",
        );
    }

    #[test]
    fn simulated_anomalies_are_served_as_described() {
        let state = SimState::new();
        let get = |target: &str| respond(&state, &request("GET", target, &[], ""));

        let mismatch = get("/simulate/anomaly/status-mismatch");
        assert_eq!(mismatch.status, 400);
        assert_eq!(body(&mismatch)["error"], "EntityNotFound");

        let whitespace = get("/simulate/anomaly/whitespace");
        assert_eq!(whitespace.status, 550);
        assert_eq!(body(&whitespace)["error"], "BLTimeoutError ");

        let unparseable = get("/simulate/anomaly/unparseable");
        assert_eq!(unparseable.status, 401);
        assert_eq!(&unparseable.body[..], UNPARSEABLE_BODY.as_bytes());
        assert!(serde_json::from_slice::<Value>(&unparseable.body).is_err());
        assert!(UNPARSEABLE_BODY.starts_with("{\n    \u{201c}error\u{201d}: \u{201c}Insufficient"));
        assert_eq!(
            header(&unparseable, "content-type"),
            Some(JSON_CONTENT_TYPE)
        );

        let html = get("/simulate/anomaly/content-type");
        assert_eq!(
            header(&html, "content-type"),
            Some("text/html; charset=utf-8")
        );
        assert_error(&html, 500, "KinveyInternalErrorRetry");

        let gateway = get("/simulate/anomaly/gateway");
        assert_eq!(gateway.status, 503);
        assert_eq!(header(&gateway, "content-type"), Some("text/html"));
        assert!(String::from_utf8_lossy(&gateway.body).contains("<h1>503 Service"));
        assert_eq!(header(&gateway, "x-kinvey-request-id"), None);

        let name_message = get("/simulate/anomaly/name-message");
        assert_eq!(name_message.status, 404);
        assert_eq!(
            body(&name_message),
            json!({"name": "EntityNotFound", "message": "This entity not found in the collection"})
        );

        let debug_object = get("/simulate/anomaly/debug-object");
        let debug_object = assert_error(&debug_object, 400, "JSONParseError");
        assert_eq!(
            debug_object["debug"],
            json!({"line": 3, "column": 14, "reason": "Unexpected token }"})
        );

        let wrapped = get("/simulate/anomaly/wrapped");
        assert_eq!(wrapped.status, 200);
        assert_eq!(header(&wrapped, "x-kinvey-responsewrapper"), Some("true"));
        let wrapper = body(&wrapped);
        assert_eq!(wrapper["statusCode"], 404);
        assert_eq!(wrapper["result"]["error"], "EntityNotFound");
        assert_eq!(
            wrapper["headers"]["x-kinvey-request-id"].as_str(),
            header(&wrapped, "x-kinvey-request-id")
        );

        let batch = get("/simulate/anomaly/batch");
        assert_eq!(batch.status, 207);
        let batch = body(&batch);
        assert_eq!(batch["entities"], json!([{"_id": "b1"}]));
        assert_eq!(batch["errors"][0]["error"], "KinveyInternalErrorRetry");
        assert_eq!(batch["errors"][1]["debug"], "title is required");

        let ok = get("/simulate/ok");
        assert_eq!(ok.status, 200);
        assert_eq!(body(&ok), json!({"ok": true}));

        assert_eq!(get("/simulate/anomaly/nonsense").status, 404);
    }

    #[test]
    fn anything_else_is_a_404_bad_request() {
        let state = SimState::new();
        for (method, target) in [
            ("GET", "/"),
            ("GET", "/elsewhere"),
            ("DELETE", "/appdata/kid_demo/books"),
            ("GET", "/rpc/kid_demo/custom/hello"),
        ] {
            let response = call(&state, method, target, "");
            assert_error(&response, 404, "BadRequest");
        }
    }

    /// A TLS client trusting only the simulator's CA, offering `alpn`.
    fn connector(simulator: &Simulator, alpn: &[u8]) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(simulator.ca_der().clone()).unwrap();
        let mut config = rustls::ClientConfig::builder_with_provider(crate::tls::crypto_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }

    #[tokio::test]
    async fn it_serves_https_over_http2_and_http1() {
        let simulator = Simulator::start(&["baas.kinvey.test"]).await.unwrap();
        assert!(simulator
            .ca_pem()
            .starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(simulator.addr().ip().is_loopback());

        for (alpn, server_name) in [
            (b"h2".as_slice(), "baas.kinvey.test"),
            (b"http/1.1".as_slice(), "127.0.0.1"),
        ] {
            let tcp = TcpStream::connect(simulator.addr()).await.unwrap();
            let name = rustls_pki_types::ServerName::try_from(server_name.to_owned()).unwrap();
            let tls = connector(&simulator, alpn)
                .connect(name, tcp)
                .await
                .unwrap();
            assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn));
            let io = TokioIo::new(tls);
            let request = Request::get(format!("https://{server_name}/appdata/kid_demo"))
                .header("x-kinvey-api-version", "4")
                .body(Full::new(Bytes::new()))
                .unwrap();
            let response = if alpn == b"h2" {
                let (mut sender, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                        .await
                        .unwrap();
                tokio::spawn(conn);
                sender.send_request(request).await.unwrap()
            } else {
                let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
                tokio::spawn(conn);
                sender.send_request(request).await.unwrap()
            };
            assert_eq!(response.status(), 200);
            assert_eq!(response.headers()["x-kinvey-api-version"], "4");
            assert_eq!(response.headers()["x-kinvey-request-id"].len(), 32);
            let body = response.into_body().collect().await.unwrap().to_bytes();
            let body: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(body["kinvey"], "hello kinspect demo");
        }
    }

    #[tokio::test]
    async fn an_invalid_host_name_is_a_certificate_error() {
        let error = Simulator::start(&["bücher.example"]).await.unwrap_err();
        assert!(matches!(error, SimulatorError::Certificate(_)), "{error}");
    }
}
