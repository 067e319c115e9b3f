//! Who may use the proxy: clients from public IP ranges are refused unless
//! `--allow-public`, `--proxy-auth USER:PASS` asks every proxy request for Basic
//! credentials, and `--max-connections` bounds the connections served at once.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use base64::Engine;
use http::{HeaderMap, HeaderValue, StatusCode};
use subtle::ConstantTimeEq;

use super::errors::ProxyFailure;
use crate::flow::FlowErrorKind;

/// Credentials a client must send in `Proxy-Authorization` (`--proxy-auth USER:PASS`).
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyCredentials {
    user: String,
    /// The whole expected header value, `Basic base64(user:pass)`.
    expected: Vec<u8>,
    /// `user:pass` percent-encoded for a URL's user information.
    userinfo: String,
}

/// What a URL's user information may not hold as written: all but RFC 3986's unreserved
/// characters (`:` parts the user from the password, so it is encoded in either).
const USERINFO_ENCODED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

impl std::fmt::Debug for ProxyCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the password.
        write!(f, "ProxyCredentials({:?}, ***)", self.user)
    }
}

impl std::str::FromStr for ProxyCredentials {
    type Err = String;

    /// Parses `USER:PASS`; the password may contain `:`.
    fn from_str(text: &str) -> Result<Self, String> {
        match text.split_once(':') {
            Some((user, pass)) if !user.is_empty() && !pass.is_empty() => {
                let token = base64::engine::general_purpose::STANDARD.encode(text);
                let encode = |part| percent_encoding::utf8_percent_encode(part, USERINFO_ENCODED);
                Ok(ProxyCredentials {
                    user: user.to_owned(),
                    expected: format!("Basic {token}").into_bytes(),
                    userinfo: format!("{}:{}", encode(user), encode(pass)),
                })
            }
            _ => Err("expected USER:PASS with a non-empty user and password".into()),
        }
    }
}

impl ProxyCredentials {
    /// The user name (never the password).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// `user:pass` as a proxy URL carries them (`http://user:pass@host:port`),
    /// percent-encoded.
    pub fn url_userinfo(&self) -> &str {
        &self.userinfo
    }

    /// The `Proxy-Authorization` value that carries these credentials.
    pub fn header_value(&self) -> HeaderValue {
        HeaderValue::from_bytes(&self.expected).expect("base64 is a valid header value")
    }

    /// True when `headers` carry these credentials in `Proxy-Authorization`.
    pub fn admit(&self, headers: &HeaderMap) -> bool {
        headers
            .get_all(http::header::PROXY_AUTHORIZATION)
            .iter()
            .any(|value| same_credentials(value.as_bytes(), &self.expected))
    }
}

/// Compares a presented `Basic` value with the expected one: the scheme name without
/// regard to case, the token in constant time.
fn same_credentials(presented: &[u8], expected: &[u8]) -> bool {
    let scheme = b"basic ";
    if presented.len() != expected.len()
        || !presented[..scheme.len().min(presented.len())].eq_ignore_ascii_case(scheme)
    {
        return false;
    }
    bool::from(presented[scheme.len()..].ct_eq(&expected[scheme.len()..]))
}

/// The 407 a client without the right `Proxy-Authorization` (`headers`) gets: what was
/// wrong, and what to do.
pub fn credentials_refused(headers: &HeaderMap) -> ProxyFailure {
    let message = if headers.contains_key(http::header::PROXY_AUTHORIZATION) {
        "the proxy credentials were rejected: kinspect was started with --proxy-auth; \
         check the user name and password configured for the client's proxy"
    } else {
        "no proxy credentials: kinspect was started with --proxy-auth; configure the \
         client's proxy with that user name and password"
    };
    let mut failure = ProxyFailure::new(FlowErrorKind::Refused, message);
    failure.status = StatusCode::PROXY_AUTHENTICATION_REQUIRED;
    failure
}

/// Why a connection is turned away before any request is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The client's address is in a public range and `--allow-public` was not given.
    PublicClient,
    /// `--max-connections` connections are already being served.
    TooManyConnections,
}

impl Refusal {
    /// What the refused client gets: a 403 or 503 with kinspect's JSON.
    pub fn failure(self) -> ProxyFailure {
        let (status, message) = match self {
            Refusal::PublicClient => (
                StatusCode::FORBIDDEN,
                "kinspect serves clients on loopback and private networks only; start it with \
                 --allow-public (and --proxy-auth) to accept this address",
            ),
            Refusal::TooManyConnections => (
                StatusCode::SERVICE_UNAVAILABLE,
                "kinspect is serving as many connections as --max-connections allows; close \
                 idle connections or raise the limit",
            ),
        };
        let mut failure = ProxyFailure::new(FlowErrorKind::Refused, message);
        failure.status = status;
        failure
    }
}

/// True for addresses on the public internet: not loopback, private (RFC 1918, unique
/// local), link-local, carrier-grade NAT (RFC 6598, used by Tailscale and phone
/// hotspots) or unspecified. IPv4-mapped IPv6 addresses count as their IPv4 address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    let carrier_grade_nat = a == 100 && (64..128).contains(&b);
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || carrier_grade_nat)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    let unique_local = first & 0xfe00 == 0xfc00;
    let link_local = first & 0xffc0 == 0xfe80;
    !(ip.is_loopback() || ip.is_unspecified() || unique_local || link_local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_local_ranges_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.9",
            "172.31.255.255",
            "192.168.1.20",
            "169.254.10.1",
            "100.64.0.1",
            "100.127.255.254",
            "0.0.0.0",
            "::1",
            "fd12:3456::1",
            "fe80::1",
            "::ffff:192.168.0.4",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn internet_addresses_are_public() {
        for ip in [
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "192.169.0.1",
            "2001:4860:4860::8888",
            "::ffff:8.8.4.4",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn credentials_are_checked_exactly() {
        let creds: ProxyCredentials = "dev:s3cr:et".parse().unwrap();
        let header = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(
                http::header::PROXY_AUTHORIZATION,
                HeaderValue::from_str(value).unwrap(),
            );
            headers
        };
        let token = base64::engine::general_purpose::STANDARD.encode("dev:s3cr:et");
        assert!(creds.admit(&header(&format!("Basic {token}"))));
        assert!(creds.admit(&header(&format!("basic {token}"))));
        let wrong = base64::engine::general_purpose::STANDARD.encode("dev:s3cr:eT");
        assert!(!creds.admit(&header(&format!("Basic {wrong}"))));
        assert!(!creds.admit(&header("Basic")));
        assert!(!creds.admit(&HeaderMap::new()));
        assert!("nouser".parse::<ProxyCredentials>().is_err());
        assert!(":pass".parse::<ProxyCredentials>().is_err());
        assert!(!format!("{creds:?}").contains("s3cr"));
    }
}
