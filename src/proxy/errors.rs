//! Responses the proxy makes itself: the Kinvey-shaped JSON error body plus an
//! `X-Kinspect-Error` header, so tooling reads them like server errors but never mistakes
//! them for the server's own.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};

use crate::flow::{CapturedBody, FlowError, FlowErrorKind, Headers, HttpVersion, ResponseRecord};

/// The header that marks a response as made by kinspect.
pub const KINSPECT_ERROR_HEADER: &str = "x-kinspect-error";

/// A failure the proxy answers for itself.
#[derive(Debug, Clone)]
pub struct ProxyFailure {
    /// The recorded error.
    pub error: FlowError,
    /// The status the client gets.
    pub status: StatusCode,
}

impl ProxyFailure {
    /// A failure of `kind` with a message saying what failed and what to do.
    pub fn new(kind: FlowErrorKind, message: impl Into<String>) -> Self {
        let status = match kind {
            FlowErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
            FlowErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            FlowErrorKind::Refused => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_GATEWAY,
        };
        ProxyFailure {
            error: FlowError {
                kind,
                message: message.into(),
            },
            status,
        }
    }

    /// The `error` name of the JSON body.
    pub fn error_name(&self) -> &'static str {
        match self.error.kind {
            FlowErrorKind::Dns => "UpstreamDNSFailure",
            FlowErrorKind::Connect => "UpstreamConnectFailure",
            FlowErrorKind::Tls => "UpstreamTLSFailure",
            FlowErrorKind::Timeout => "UpstreamTimeout",
            FlowErrorKind::Protocol => "UpstreamProtocolError",
            FlowErrorKind::ClientAbort | FlowErrorKind::ClientTls => "ClientError",
            FlowErrorKind::BadRequest => "BadProxyRequest",
            FlowErrorKind::Refused => "ProxyRefused",
            FlowErrorKind::Stopped => "ProxyStopped",
        }
    }

    fn description(&self) -> &'static str {
        match self.error.kind {
            FlowErrorKind::Dns => "kinspect could not resolve the server's host name",
            FlowErrorKind::Connect => "kinspect could not connect to the server",
            FlowErrorKind::Tls => {
                "kinspect could not establish a trusted TLS connection to the server"
            }
            FlowErrorKind::Timeout => "the server did not answer kinspect in time",
            FlowErrorKind::Protocol => "the server's answer could not be read",
            FlowErrorKind::ClientAbort | FlowErrorKind::ClientTls => "the client connection failed",
            FlowErrorKind::BadRequest => "kinspect cannot proxy this request",
            FlowErrorKind::Refused => "kinspect does not serve this client as it is set up",
            FlowErrorKind::Stopped => "kinspect stopped before the exchange ended",
        }
    }

    /// The JSON body: `{"error", "description", "debug"}`.
    pub fn body(&self) -> Bytes {
        let body = serde_json::json!({
            "error": self.error_name(),
            "description": self.description(),
            "debug": self.error.message,
        });
        Bytes::from(body.to_string())
    }

    /// The answer as a flow records it: made by kinspect, with `head`'s fields (from
    /// [`ProxyFailure::response`]) and `body` (from [`ProxyFailure::body`]).
    pub(crate) fn recorded(
        &self,
        head: &Response<()>,
        body: &Bytes,
        version: HttpVersion,
    ) -> ResponseRecord {
        ResponseRecord {
            status: self.status.as_u16(),
            version,
            headers: Headers::from_map(head.headers()),
            body: CapturedBody {
                bytes: body.clone(),
                wire_size: body.len() as u64,
                truncated: false,
                incomplete: false,
            },
            from_proxy: true,
        }
    }

    /// The full response, with `body` as its body.
    pub fn response<B>(&self, body: B) -> Response<B> {
        let mut response = Response::new(body);
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        headers.insert(
            KINSPECT_ERROR_HEADER,
            HeaderValue::from_static(self.error.kind.as_str()),
        );
        headers.insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        );
        if self.status == StatusCode::PROXY_AUTHENTICATION_REQUIRED {
            headers.insert(
                http::header::PROXY_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"kinspect\""),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_504_and_others_502_with_a_kinvey_shaped_body() {
        let timeout = ProxyFailure::new(FlowErrorKind::Timeout, "slow.example:443 gave up");
        assert_eq!(timeout.status, StatusCode::GATEWAY_TIMEOUT);
        let refused = ProxyFailure::new(FlowErrorKind::Connect, "refused");
        assert_eq!(refused.status, StatusCode::BAD_GATEWAY);
        let body: serde_json::Value = serde_json::from_slice(&timeout.body()).unwrap();
        assert_eq!(body["error"], "UpstreamTimeout");
        assert_eq!(body["debug"], "slow.example:443 gave up");
        assert!(body["description"].is_string());
        let response = refused.response(());
        assert_eq!(response.headers()[KINSPECT_ERROR_HEADER], "connect");
    }
}
