//! An upstream (parent) proxy: on a network that reaches the internet only through an
//! HTTP proxy, every connection kinspect makes to an origin is a CONNECT tunnel through
//! it (`--upstream-proxy http://[USER:PASS@]HOST:PORT`), as Charles's external proxy and
//! mitmproxy's upstream mode do.

use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::access::ProxyCredentials;
use super::upstream::ConnectError;
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
        let Some(port) = authority.port_u16() else {
            return Err(format!("no port: write it, {example}"));
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
                let pair = format!("{}:{}", decode(user)?, decode(pass)?);
                Some(pair.parse::<ProxyCredentials>()?)
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
    /// Asks the parent proxy on `stream` for a tunnel to `authority` (`host:port`), before
    /// `deadline`. On success the stream is the tunnel.
    pub(crate) async fn tunnel(
        &self,
        stream: &mut TcpStream,
        authority: &str,
        deadline: Instant,
    ) -> Result<(), ConnectError> {
        let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
        if let Some(credentials) = &self.credentials {
            let value = credentials.header_value();
            request.push_str("Proxy-Authorization: ");
            request.push_str(value.to_str().expect("base64 is ASCII"));
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        let exchange = async {
            stream.write_all(request.as_bytes()).await?;
            // Byte by byte: what follows the head is the origin's, and must stay unread.
            let mut head = Vec::with_capacity(128);
            while !head.ends_with(b"\r\n\r\n") && head.len() < MAX_HEAD {
                head.push(stream.read_u8().await?);
            }
            Ok::<_, std::io::Error>(head)
        };
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
                    format!("the upstream proxy {self} did not answer CONNECT {authority} in time"),
                ))
            }
        };
        let status_line = head
            .split(|&b| b == b'\n')
            .next()
            .map(|line| String::from_utf8_lossy(line).trim_end().to_owned())
            .unwrap_or_default();
        let status = status_line.split_whitespace().nth(1).unwrap_or_default();
        if head.ends_with(b"\r\n\r\n") && status.len() == 3 && status.starts_with('2') {
            return Ok(());
        }
        let hint = match (status, &self.credentials) {
            ("407", None) => format!(
                "; it asks for credentials: --upstream-proxy http://USER:PASS@{}",
                self.to_string().trim_start_matches("http://")
            ),
            ("407", Some(_)) => "; it refused the credentials given in --upstream-proxy".into(),
            _ => String::new(),
        };
        Err(ConnectError::new(
            FlowErrorKind::Connect,
            format!(
                "the upstream proxy {self} answered {status_line:?} to CONNECT {authority}{hint}"
            ),
        ))
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
        ] {
            let error = bad.parse::<ParentProxy>().unwrap_err();
            assert!(error.contains(said), "{bad}: {error}");
        }
    }
}
