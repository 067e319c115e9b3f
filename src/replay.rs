//! Sending a recorded request again through the running proxy, as a client would, so
//! that the new exchange is recorded and analysed like any other: the UI's `R` sends a
//! flow's request as it was, `e` lets the user change it first (Kinvey's FIX class:
//! change the request, then re-send).

use std::net::SocketAddr;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::{CertificateDer, ServerName};

use crate::flow::{Flow, FlowId, FlowKind, HttpVersion};

/// Longest a replayed exchange may take, its response body included.
const REPLAY_TIMEOUT: Duration = Duration::from_secs(300);

/// A request to send again: what the client sent, without the fields of its connection.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayRequest {
    /// The method.
    pub method: Method,
    /// The absolute URL.
    pub url: Uri,
    /// The end-to-end header fields, in order (`Host` among them when the client sent one).
    pub headers: HeaderMap,
    /// The body, as sent (still content-encoded).
    pub body: Bytes,
    /// Sent over HTTP/2 when the proxy offers it (the original went over HTTP/2).
    pub http2: bool,
}

/// Fields that belong to the original connection or that the replay's client writes
/// itself: the length comes from the body, and `Expect` waits for an answer the replay
/// does not wait for.
fn is_connection_field(name: &HeaderName) -> bool {
    [
        header::CONNECTION,
        header::CONTENT_LENGTH,
        header::EXPECT,
        header::PROXY_AUTHORIZATION,
        header::PROXY_AUTHENTICATE,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
    ]
    .contains(name)
}

impl ReplayRequest {
    /// The request of `flow` as its client sent it, or why it cannot be sent again.
    pub fn of(flow: &Flow) -> Result<ReplayRequest, String> {
        if flow.kind != FlowKind::Http {
            return Err(format!(
                "flow {} is a tunnel: its bytes were not read, so there is no request to send",
                flow.id
            ));
        }
        let request = &flow.request;
        if request.headers.get("upgrade").is_some() || request.method == "CONNECT" {
            return Err(format!(
                "flow {} opened a WebSocket (or another upgrade): only plain requests are sent again",
                flow.id
            ));
        }
        if request.body.truncated {
            return Err(format!(
                "only the first {} of the {} bytes of flow {}'s request body were captured: \
                 raise --max-body to send such requests again",
                request.body.bytes.len(),
                request.body.wire_size,
                flow.id
            ));
        }
        if request.body.incomplete {
            return Err(format!(
                "flow {}'s request body never arrived whole (its client stopped sending)",
                flow.id
            ));
        }
        let method = Method::from_bytes(request.method.as_bytes()).map_err(|_| {
            format!(
                "flow {}'s method {:?} is not valid",
                flow.id, request.method
            )
        })?;
        let url = parse_url(&request.url)?;
        let mut headers = HeaderMap::new();
        for field in request.headers.iter() {
            // Captured from a parsed request, so these parse; anything else is left out.
            let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(field.name.as_bytes()),
                HeaderValue::from_bytes(&field.value),
            ) else {
                continue;
            };
            if !is_connection_field(&name) {
                headers.append(name, value);
            }
        }
        Ok(ReplayRequest {
            method,
            url,
            headers,
            body: request.body.bytes.clone(),
            http2: request.version == HttpVersion::Http2,
        })
    }

    /// The request as text to edit: the request line, the header fields, an empty line
    /// and the body. A content-encoded body is decoded, and its `Content-Encoding` left
    /// out, so that it can be read and changed; a body that is not text cannot be.
    pub fn to_text(&self) -> Result<String, String> {
        let encoding = self
            .headers
            .get(header::CONTENT_ENCODING)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let body = crate::decode::decode_body(&self.body, encoding.as_deref())
            .map_err(|e| format!("its body cannot be decoded ({e}): R sends it unchanged"))?;
        let body = std::str::from_utf8(&body)
            .map_err(|_| "its body is not text: R sends it unchanged".to_owned())?;
        let mut text = format!("{} {}\n", self.method, self.url);
        for (name, value) in &self.headers {
            if name == header::CONTENT_ENCODING {
                continue;
            }
            text.push_str(&format!(
                "{name}: {}\n",
                String::from_utf8_lossy(value.as_bytes())
            ));
        }
        text.push('\n');
        text.push_str(body);
        Ok(text)
    }

    /// The request written as [`ReplayRequest::to_text`] writes it, after editing. An
    /// editor's final newline is not taken for part of the body when `original` (the
    /// text before editing) had none.
    pub fn from_text(text: &str, original: &str, http2: bool) -> Result<ReplayRequest, String> {
        // The head ends at the first empty line, whichever line ending the editor wrote.
        let end = ["\n\n", "\n\r\n"]
            .iter()
            .filter_map(|blank| text.find(blank).map(|at| (at, blank.len())))
            .min();
        let (head, body) = match end {
            Some((at, blank)) => (&text[..at], &text[at + blank..]),
            None => (text.trim_end_matches(['\r', '\n']), ""),
        };
        let body = match body.strip_suffix("\r\n").or(body.strip_suffix('\n')) {
            Some(trimmed) if !original.ends_with('\n') => trimmed,
            _ => body,
        };
        let mut lines = head.lines();
        let request_line = lines.next().unwrap_or_default().trim();
        let mut words = request_line.split_whitespace();
        let (Some(method), Some(url)) = (words.next(), words.next()) else {
            return Err(format!(
                "the first line must be METHOD URL (it is {request_line:?})"
            ));
        };
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|_| format!("{method:?} is not a method"))?;
        let url = parse_url(url)?;
        let mut headers = HeaderMap::new();
        for (number, line) in lines.enumerate() {
            let line = line.trim_end_matches('\r');
            let at = || format!("line {}", number + 2);
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| format!("{}: a header field is NAME: VALUE", at()))?;
            let name = HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| format!("{}: {:?} is not a header name", at(), name.trim()))?;
            let value = HeaderValue::from_str(value.trim())
                .map_err(|_| format!("{}: the value of {name} is not valid", at()))?;
            if !is_connection_field(&name) {
                headers.append(name, value);
            }
        }
        Ok(ReplayRequest {
            method,
            url,
            headers,
            body: Bytes::copy_from_slice(body.as_bytes()),
            http2,
        })
    }
}

fn parse_url(url: &str) -> Result<Uri, String> {
    let uri: Uri = url
        .parse()
        .map_err(|_| format!("{url:?} is not a URL that can be sent"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(host)) if !host.is_empty() => Ok(uri),
        _ => Err(format!("{url:?} is not an http:// or https:// URL")),
    }
}

/// Sends requests again through the proxy listening at one address, one task each, and
/// says how each went.
pub struct Replayer {
    proxy: SocketAddr,
    /// TLS through the tunnel offering HTTP/2 and HTTP/1.1, and offering HTTP/1.1 only.
    tls: [tokio_rustls::TlsConnector; 2],
    proxy_authorization: Option<HeaderValue>,
    runtime: tokio::runtime::Handle,
    said: Sender<String>,
    heard: Receiver<String>,
}

impl Replayer {
    /// A replayer through the proxy listening on `listen`, trusting its CA `ca`, with
    /// its `--proxy-auth` credentials (a `Proxy-Authorization` value) if it asks for
    /// them. Sends on the current tokio runtime.
    pub fn new(
        listen: SocketAddr,
        ca: &CertificateDer<'static>,
        proxy_authorization: Option<HeaderValue>,
    ) -> anyhow::Result<Replayer> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.clone())?;
        let mut config = rustls::ClientConfig::builder_with_provider(crate::tls::crypto_provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut h1_only = config.clone();
        h1_only.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let (said, heard) = std::sync::mpsc::channel();
        Ok(Replayer {
            proxy: crate::setup::local_proxy_addr(listen),
            tls: [config, h1_only].map(|c| tokio_rustls::TlsConnector::from(Arc::new(c))),
            proxy_authorization,
            runtime: tokio::runtime::Handle::current(),
            said,
            heard,
        })
    }

    /// Sends `request` (flow `id`'s, maybe changed) in the background; what came of it is
    /// said by [`Replayer::outcome`].
    pub fn send(&self, id: FlowId, request: ReplayRequest) {
        let said = self.said.clone();
        let tls = self.tls[usize::from(!request.http2)].clone();
        let (proxy, auth) = (self.proxy, self.proxy_authorization.clone());
        self.runtime.spawn(async move {
            let started = Instant::now();
            let outcome = tokio::time::timeout(
                REPLAY_TIMEOUT,
                exchange(proxy, &tls, auth.as_ref(), request),
            )
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {REPLAY_TIMEOUT:?}")));
            let message = match outcome {
                Ok(status) => format!(
                    "flow {id} sent again: {status} in {} ms (the new flow is listed last)",
                    started.elapsed().as_millis()
                ),
                Err(e) => format!("sending flow {id} again failed: {e}"),
            };
            let _ = said.send(message);
        });
    }

    /// What came of a request sent since the last call, if anything did.
    pub fn outcome(&self) -> Option<String> {
        self.heard.try_recv().ok()
    }
}

/// A client connection through the proxy, HTTP/1.1 or HTTP/2.
enum Sender2 {
    Http1(http1::SendRequest<Full<Bytes>>),
    Http2(http2::SendRequest<Full<Bytes>>),
}

/// One exchange through the proxy: a plain request in absolute form, or a CONNECT
/// tunnel with TLS trusting kinspect's CA. The response body is read to its end (the
/// proxy records the exchange once it ends). Returns the status.
async fn exchange(
    proxy: SocketAddr,
    tls: &tokio_rustls::TlsConnector,
    auth: Option<&HeaderValue>,
    request: ReplayRequest,
) -> Result<u16, String> {
    let tcp = tokio::net::TcpStream::connect(proxy)
        .await
        .map_err(|e| format!("cannot reach the proxy at {proxy}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let https = request.url.scheme_str() == Some("https");
    let authority = request
        .url
        .authority()
        .map(|a| a.as_str().to_owned())
        .unwrap_or_default();
    let host = request.url.host().unwrap_or_default().to_owned();
    let port = request
        .url
        .port_u16()
        .unwrap_or(if https { 443 } else { 80 });
    let mut sender = if https {
        let tunnel = connect_tunnel(tcp, &host, port, auth).await?;
        let name = ServerName::try_from(crate::flow::unbracketed(&host).to_owned())
            .map_err(|_| format!("{host:?} is not a TLS server name"))?;
        let stream = tls
            .connect(name, TokioIo::new(tunnel))
            .await
            .map_err(|e| format!("TLS through the proxy failed: {e}"))?;
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        let io = TokioIo::new(stream);
        match h2 {
            true => {
                let (sender, connection) = http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(|e| format!("HTTP/2 with the proxy failed: {e}"))?;
                tokio::spawn(connection);
                Sender2::Http2(sender)
            }
            false => {
                let (sender, connection) = http1::handshake(io)
                    .await
                    .map_err(|e| format!("HTTP/1.1 with the proxy failed: {e}"))?;
                tokio::spawn(connection);
                Sender2::Http1(sender)
            }
        }
    } else {
        let (sender, connection) = http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| format!("HTTP/1.1 with the proxy failed: {e}"))?;
        tokio::spawn(connection);
        Sender2::Http1(sender)
    };
    let ReplayRequest {
        method,
        url,
        mut headers,
        body,
        ..
    } = request;
    let target = match (&sender, https) {
        // Through the tunnel an HTTP/1.1 origin gets the origin form.
        (Sender2::Http1(_), true) => url
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse()
            .map_err(|_| "bad path".to_owned())?,
        _ => url,
    };
    match &sender {
        Sender2::Http1(_) => {
            if !headers.contains_key(header::HOST) {
                let host = HeaderValue::from_str(&authority).map_err(|_| "bad host".to_owned())?;
                insert_first(&mut headers, header::HOST, host);
            }
            if let (false, Some(auth)) = (https, auth) {
                headers.insert(header::PROXY_AUTHORIZATION, auth.clone());
            }
        }
        // HTTP/2 carries the host in :authority, from the URL.
        Sender2::Http2(_) => {
            headers.remove(header::HOST);
        }
    }
    let mut outgoing = Request::new(Full::new(body));
    *outgoing.method_mut() = method;
    *outgoing.uri_mut() = target;
    *outgoing.headers_mut() = headers;
    let response = match &mut sender {
        Sender2::Http1(s) => s.send_request(outgoing).await,
        Sender2::Http2(s) => s.send_request(outgoing).await,
    }
    .map_err(|e| format!("the proxy did not answer: {e}"))?;
    let status = response.status().as_u16();
    let mut body = response.into_body();
    while let Some(frame) = body.frame().await {
        frame.map_err(|e| format!("the response broke off: {e}"))?;
    }
    Ok(status)
}

/// `headers` with `name: value` before the fields already there.
fn insert_first(headers: &mut HeaderMap, name: HeaderName, value: HeaderValue) {
    let mut first = HeaderMap::with_capacity(headers.len() + 1);
    first.insert(name, value);
    for (name, value) in headers.drain().filter_map(|(n, v)| n.map(|n| (n, v))) {
        first.append(name, value);
    }
    *headers = first;
}

/// Asks the proxy on `tcp` for a tunnel to `host:port`.
async fn connect_tunnel(
    tcp: tokio::net::TcpStream,
    host: &str,
    port: u16,
    auth: Option<&HeaderValue>,
) -> Result<hyper::upgrade::Upgraded, String> {
    let (mut sender, connection) = http1::handshake::<_, Full<Bytes>>(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("cannot talk to the proxy: {e}"))?;
    tokio::spawn(connection.with_upgrades());
    let authority = match host.contains(':') {
        true => format!("[{}]:{port}", crate::flow::unbracketed(host)),
        false => format!("{host}:{port}"),
    };
    let mut connect = Request::new(Full::new(Bytes::new()));
    *connect.method_mut() = Method::CONNECT;
    *connect.uri_mut() = authority
        .parse()
        .map_err(|_| format!("{authority:?} is no CONNECT target"))?;
    let host_value = HeaderValue::from_str(&authority).map_err(|_| "bad host".to_owned())?;
    connect.headers_mut().insert(header::HOST, host_value);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::CapturedBody;

    fn flow(headers: &[(&str, &str)], body: &[u8]) -> Flow {
        let client = "127.0.0.1:5000".parse().unwrap();
        let url = "https://baas.kinvey.com/appdata/kid_x/books?limit=2";
        let mut flow = Flow::exchange(3, client, "POST", url, Some(400));
        flow.request.headers = headers.iter().copied().collect();
        flow.request.body = CapturedBody::whole(body.to_vec());
        flow
    }

    #[test]
    fn the_fields_of_the_original_connection_are_not_sent_again() {
        let flow = flow(
            &[
                ("Host", "baas.kinvey.com"),
                ("Connection", "keep-alive"),
                ("Content-Length", "2"),
                ("Authorization", "Kinvey tok"),
                ("Expect", "100-continue"),
                ("X-A", "1"),
                ("x-a", "2"),
            ],
            b"{}",
        );
        let request = ReplayRequest::of(&flow).unwrap();
        let fields: Vec<String> = request
            .headers
            .iter()
            .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap()))
            .collect();
        assert_eq!(
            fields,
            [
                "host: baas.kinvey.com",
                "authorization: Kinvey tok",
                "x-a: 1",
                "x-a: 2"
            ]
        );
        assert_eq!(
            (request.method.as_str(), &request.body[..]),
            ("POST", &b"{}"[..])
        );
    }

    #[test]
    fn what_cannot_be_sent_again_says_why() {
        let mut cut = flow(&[], b"{\"a\":");
        cut.request.body.truncated = true;
        cut.request.body.wire_size = 100_000;
        let said = ReplayRequest::of(&cut).unwrap_err();
        assert!(
            said.contains("only the first 5 of the 100000 bytes") && said.contains("--max-body")
        );
        let mut broken = flow(&[], b"{");
        broken.request.body.incomplete = true;
        assert!(ReplayRequest::of(&broken)
            .unwrap_err()
            .contains("never arrived whole"));
        let websocket = flow(&[("Upgrade", "websocket")], b"");
        assert!(ReplayRequest::of(&websocket)
            .unwrap_err()
            .contains("WebSocket"));
        let mut tunnel = flow(&[], b"");
        tunnel.kind = FlowKind::Tunnel;
        assert!(ReplayRequest::of(&tunnel).unwrap_err().contains("tunnel"));
        let mut odd = flow(&[], b"");
        odd.request.url = "/relative".into();
        assert!(ReplayRequest::of(&odd)
            .unwrap_err()
            .contains("not an http:// or https:// URL"));
    }

    #[test]
    fn a_request_is_edited_as_text_its_body_decoded() {
        let gzipped = {
            use std::io::Write;
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(b"{\"year\":\"1965\"}").unwrap();
            gz.finish().unwrap()
        };
        let flow = flow(
            &[
                ("Content-Type", "application/json"),
                ("Content-Encoding", "gzip"),
            ],
            &gzipped,
        );
        let request = ReplayRequest::of(&flow).unwrap();
        let text = request.to_text().unwrap();
        assert_eq!(
            text,
            "POST https://baas.kinvey.com/appdata/kid_x/books?limit=2\n\
             content-type: application/json\n\n{\"year\":\"1965\"}"
        );
        // Unchanged, it reads back as the request with its body decoded.
        let back = ReplayRequest::from_text(&text, &text, false).unwrap();
        assert_eq!(&back.body[..], b"{\"year\":\"1965\"}");
        assert!(back.headers.get("content-encoding").is_none());
        // An editor's final newline is not the body's; a body that had one keeps it.
        let edited = text.replace("\"1965\"", "1965") + "\n";
        let back = ReplayRequest::from_text(&edited, &text, false).unwrap();
        assert_eq!(&back.body[..], b"{\"year\":1965}");
        let lines = "GET http://a.test/\n\nline\n";
        let back = ReplayRequest::from_text(lines, lines, false).unwrap();
        assert_eq!(&back.body[..], b"line\n");
        // A body that is not text is sent as it is, not edited.
        let binary = ReplayRequest::of(&self::flow(&[], &[0xff, 0x00])).unwrap();
        assert!(binary.to_text().unwrap_err().contains("not text"));
    }

    #[test]
    fn edited_text_that_is_no_request_says_where() {
        let original = "GET http://a.test/\n";
        let error = |text: &str| ReplayRequest::from_text(text, original, false).unwrap_err();
        assert!(error("GET\n").contains("METHOD URL"));
        assert!(error("G(T http://a.test/\n").contains("not a method"));
        assert!(error("GET ftp://a.test/\n").contains("not an http:// or https:// URL"));
        assert!(error("GET http://a.test/\nx-a 1\n").starts_with("line 2:"));
        assert!(error("GET http://a.test/\nx-a: 1\nb@d: 2\n").starts_with("line 3:"));
        let crlf = "POST http://a.test/x\r\nx-a: 1\r\n\r\nbody\r\n";
        let back = ReplayRequest::from_text(crlf, "POST http://a.test/x\n\nbody", false).unwrap();
        assert_eq!(
            (back.headers["x-a"].as_bytes(), &back.body[..]),
            (&b"1"[..], &b"body"[..])
        );
        let no_body = ReplayRequest::from_text("DELETE http://a.test/x", original, false).unwrap();
        assert_eq!((no_body.method, no_body.body.len()), (Method::DELETE, 0));
    }
}
