//! An upstream (parent) proxy: on a network that reaches the internet only through an
//! HTTP proxy, kinspect reaches origins through it (`--upstream-proxy
//! http://[USER:PASS@]HOST:PORT`), as Charles's external proxy and mitmproxy's upstream
//! mode do: in a CONNECT tunnel, or for plain HTTP with requests in absolute form.

use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::access::ProxyCredentials;
use super::upstream::ConnectError;
use super::ProxyAddress;
use crate::flow::FlowErrorKind;

/// Longest response head taken from the parent proxy for a CONNECT.
const MAX_HEAD: usize = 16 * 1024;

/// The proxy connections to origins go through.
#[derive(Clone, PartialEq, Eq)]
pub struct ParentProxy {
    /// Its host name or IP address (unbracketed).
    pub host: String,
    /// Its port.
    pub port: u16,
    /// Credentials it asks for (`Proxy-Authorization: Basic`).
    credentials: Option<ProxyCredentials>,
}

impl std::fmt::Display for ParentProxy {
    /// `http://host:port`, never the credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.host.contains(':') {
            true => write!(f, "http://[{}]:{}", self.host, self.port),
            false => write!(f, "http://{}:{}", self.host, self.port),
        }
    }
}

impl std::fmt::Debug for ParentProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let user = self.credentials.as_ref().map(ProxyCredentials::user);
        write!(f, "ParentProxy({self}, user {user:?})")
    }
}

impl std::str::FromStr for ParentProxy {
    type Err = String;

    /// Parses `http://[USER:PASS@]HOST:PORT` (user and password percent-encoded). The
    /// errors never repeat the text: it may hold a password.
    fn from_str(text: &str) -> Result<Self, String> {
        let example = "e.g. http://proxy.example:3128 or http://user:pass@10.0.0.1:8080";
        let uri: http::Uri = text
            .trim()
            .parse()
            .map_err(|e| format!("not a proxy URL ({e}): {example}"))?;
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return Err(format!("not a proxy URL: {example}"));
        };
        if scheme != "http" {
            return Err(format!(
                "kinspect speaks to an upstream proxy in plain HTTP (http://), not {scheme}://"
            ));
        }
        let host = crate::flow::unbracketed(authority.host()).to_owned();
        if host.is_empty() {
            return Err(format!("no host: {example}"));
        }
        let written_port = authority
            .as_str()
            .rsplit_once(':')
            .map(|(_, port)| port)
            .filter(|port| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()));
        let port = match (authority.port_u16(), written_port) {
            (Some(port), _) if port > 0 => port,
            (_, None) => return Err(format!("no port: write it, {example}")),
            (_, Some(port)) => return Err(format!("port {port} is not one from 1 to 65535")),
        };
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(format!("a proxy URL has no path or query: {example}"));
        }
        let credentials = match authority.as_str().rsplit_once('@') {
            None => None,
            Some((userinfo, _)) => {
                let Some((user, pass)) = userinfo.split_once(':') else {
                    return Err("a user but no password: write http://USER:PASS@HOST:PORT".into());
                };
                let decode = |part: &str| {
                    percent_encoding::percent_decode_str(part)
                        .decode_utf8()
                        .map(|s| s.into_owned())
                        .map_err(|_| "its user or password is not UTF-8 once decoded".to_owned())
                };
                let user = decode(user)?;
                if user.contains(':') {
                    return Err("a user name with a `:` cannot be sent in Basic credentials".into());
                }
                Some(format!("{user}:{}", decode(pass)?).parse::<ProxyCredentials>()?)
            }
        };
        Ok(ParentProxy {
            host,
            port,
            credentials,
        })
    }
}

impl ParentProxy {
    /// The `Proxy-Authorization` value it asks for, if any.
    pub(crate) fn authorization(&self) -> Option<http::HeaderValue> {
        self.credentials
            .as_ref()
            .map(ProxyCredentials::header_value)
    }

    /// Whether the parent's address is the proxy's own (`itself`): every request would
    /// loop. A name that does not resolve is not.
    pub async fn is_itself(&self, itself: &ProxyAddress) -> bool {
        let resolved = tokio::net::lookup_host((self.host.as_str(), self.port)).await;
        resolved.is_ok_and(|mut addrs| addrs.any(|addr| itself.is(addr)))
    }

    /// Asks the parent proxy on `stream` for a tunnel to `authority` (`host:port`), before
    /// `deadline`. On success the stream is the tunnel. Written out rather than with
    /// hyper's client (as the UI's replays open theirs): the dialer hands on the
    /// `TcpStream` itself.
    pub(crate) async fn tunnel(
        &self,
        stream: &mut TcpStream,
        authority: &str,
        deadline: Instant,
    ) -> Result<(), ConnectError> {
        let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
        if let Some(value) = self.authorization() {
            request.push_str("Proxy-Authorization: ");
            request.push_str(value.to_str().expect("base64 is ASCII"));
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        let ended = |head: &[u8]| head.ends_with(b"\r\n\r\n") || head.ends_with(b"\n\n");
        let exchange = async {
            stream.write_all(request.as_bytes()).await?;
            // Byte by byte: what follows the head is the origin's, and must stay unread.
            let mut head = Vec::with_capacity(128);
            while !ended(&head) && head.len() < MAX_HEAD {
                head.push(stream.read_u8().await?);
            }
            Ok::<_, std::io::Error>(head)
        };
        let waited = deadline.saturating_duration_since(Instant::now());
        let head = match tokio::time::timeout_at(deadline.into(), exchange).await {
            Ok(Ok(head)) => head,
            Ok(Err(e)) => {
                return Err(ConnectError::new(
                    FlowErrorKind::Connect,
                    format!(
                        "the upstream proxy {self} closed the connection before answering \
                         CONNECT {authority}: {e}"
                    ),
                ))
            }
            Err(_) => {
                return Err(ConnectError::new(
                    FlowErrorKind::Timeout,
                    format!(
                        "the upstream proxy {self} did not answer CONNECT {authority} within \
                         {waited:?} (--connect-timeout)"
                    ),
                ))
            }
        };
        let status_line = head
            .split(|&b| b == b'\n')
            .next()
            .map(|line| String::from_utf8_lossy(line).trim_end().to_owned())
            .unwrap_or_default();
        if !ended(&head) {
            return Err(ConnectError::new(
                FlowErrorKind::Protocol,
                format!(
                    "the upstream proxy {self} answered CONNECT {authority} with a head longer \
                     than {} KiB",
                    MAX_HEAD / 1024
                ),
            ));
        }
        let mut words = status_line.split_whitespace();
        let (version, status) = (
            words.next().unwrap_or_default(),
            words.next().unwrap_or_default(),
        );
        if version.starts_with("HTTP/1.") && status.len() == 3 && status.starts_with('2') {
            return Ok(());
        }
        Err(ConnectError::new(
            FlowErrorKind::Connect,
            self.refused(&status_line, &format!("CONNECT {authority}")),
        ))
    }

    /// What kinspect says of the parent answering `status_line` to `asked` (what it was
    /// sent): the answer, and what to do about a 407, or a 403 to a CONNECT to port 80.
    pub(crate) fn refused(&self, status_line: &str, asked: &str) -> String {
        let status = status_line.split_whitespace().nth(1).unwrap_or_default();
        let hint = match (status, &self.credentials) {
            ("407", None) => format!(
                "; it asks for credentials: start kinspect with \
                 KINSPECT_UPSTREAM_PROXY=http://USER:PASS@{} (in the environment, where \
                 other users cannot list the password as they can a command line)",
                self.to_string().trim_start_matches("http://")
            ),
            ("407", Some(_)) => "; it refused the credentials given in --upstream-proxy".into(),
            ("403", _) if asked.ends_with(":80") => {
                "; many proxies tunnel to port 443 alone".into()
            }
            _ => String::new(),
        };
        format!("the upstream proxy {self} answered {status_line:?} to {asked}{hint}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxy_url_names_host_port_and_perhaps_credentials() {
        let parent: ParentProxy = "http://proxy.example:3128".parse().unwrap();
        assert_eq!((parent.host.as_str(), parent.port), ("proxy.example", 3128));
        assert!(parent.credentials.is_none());
        assert_eq!(parent.to_string(), "http://proxy.example:3128");

        let parent: ParentProxy = "http://me%40corp:p%3Ass@[::1]:8080/".parse().unwrap();
        assert_eq!((parent.host.as_str(), parent.port), ("::1", 8080));
        let credentials = parent.credentials.as_ref().unwrap();
        assert_eq!(credentials.user(), "me@corp");
        let expected: ProxyCredentials = "me@corp:p:ss".parse().unwrap();
        assert_eq!(credentials.header_value(), expected.header_value());
        // Never the password.
        assert_eq!(parent.to_string(), "http://[::1]:8080");
        assert!(!format!("{parent:?}").contains("p:ss"));

        for (bad, said) in [
            ("proxy.example:3128", "not a proxy URL"),
            ("https://proxy.example:3128", "plain HTTP"),
            ("http://proxy.example", "no port"),
            ("http://proxy.example:3128/path", "no path"),
            ("http://user@proxy.example:3128", "no password"),
            ("http://u:p@:3128", "no host"),
            ("http://proxy.example:99999", "not one from 1 to 65535"),
            ("http://u%3Ax:pass@proxy.example:3128", "`:`"),
        ] {
            let error = bad.parse::<ParentProxy>().unwrap_err();
            assert!(error.contains(said), "{bad}: {error}");
        }
    }

    /// What [`ParentProxy::tunnel`] makes of a parent proxy answering `answer`.
    async fn tunnel_answered(answer: Vec<u8>, authority: &str) -> Result<(), String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let parent: ParentProxy = format!("http://127.0.0.1:{port}").parse().unwrap();
        let serve = tokio::spawn(async move {
            let (mut client, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                head.push(client.read_u8().await.unwrap());
            }
            client.write_all(&answer).await.unwrap();
            // What follows the head is the origin's.
            client.write_all(b"origin").await.unwrap();
        });
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        let result = parent.tunnel(&mut stream, authority, deadline).await;
        serve.await.unwrap();
        match result {
            Ok(()) => {
                let mut rest = [0; 6];
                stream.read_exact(&mut rest).await.unwrap();
                assert_eq!(&rest, b"origin");
                Ok(())
            }
            Err(e) => Err(e.message),
        }
    }

    #[tokio::test]
    async fn a_tunnel_is_any_2xx_and_anything_else_is_said() {
        for ok in [
            &b"HTTP/1.1 200 Connection established\r\n\r\n"[..],
            b"HTTP/1.0 200 OK\r\nProxy-Agent: x\r\n\r\n",
            b"HTTP/1.1 204 No Content\n\n",
        ] {
            assert_eq!(tunnel_answered(ok.to_vec(), "a.test:443").await, Ok(()));
        }
        let refused = tunnel_answered(b"HTTP/1.1 403 Forbidden\r\n\r\n".to_vec(), "a.test:80");
        let said = refused.await.unwrap_err();
        assert!(
            said.contains("\"HTTP/1.1 403 Forbidden\" to CONNECT a.test:80"),
            "{said}"
        );
        assert!(said.contains("port 443 alone"), "{said}");
        let said = tunnel_answered(b"ICY 200 OK\r\n\r\n".to_vec(), "a.test:443")
            .await
            .unwrap_err();
        assert!(said.contains("answered \"ICY 200 OK\""), "{said}");
        let mut long = b"HTTP/1.1 200 OK\r\n".to_vec();
        long.extend(std::iter::repeat_n(b'x', MAX_HEAD));
        let said = tunnel_answered(long, "a.test:443").await.unwrap_err();
        assert!(said.contains("longer than 16 KiB"), "{said}");
    }
}
