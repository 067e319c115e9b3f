//! The demo's scripted client: realistic Kinvey app traffic through the proxy — a login,
//! queries, a retry with backoff, a retry without backoff, a stop error re-sent anyway,
//! a fix error re-sent unchanged, Business Logic failures, an unknown error name, a batch
//! with failed elements, every anomaly, and a tour of the whole error dictionary.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use reqwest::Method;

use super::simulator::{APP_KEY, APP_SECRET, DEMO_PASSWORD, DEMO_USERNAME};
use crate::kinvey::DICTIONARY;

/// Why the script could not run.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    /// The HTTP client could not be built (bad CA certificate).
    #[error("cannot set up the demo client: {0}")]
    Client(reqwest::Error),
    /// A request did not get through the proxy at all.
    #[error("demo request {method} {path} failed: {source}")]
    Request {
        /// The method.
        method: String,
        /// The path.
        path: String,
        /// What reqwest said.
        source: reqwest::Error,
    },
}

/// How the script runs.
#[derive(Debug, Clone)]
pub struct ScriptOptions {
    /// The proxy to send everything through.
    pub proxy: SocketAddr,
    /// The PEM certificate of the proxy's CA (the client trusts only it).
    pub proxy_ca_pem: String,
    /// The simulator's base URL as the app knows it (`https://baas.kinvey.test:PORT`).
    pub base_url: String,
    /// Pause between steps, so a person can watch the flows arrive.
    pub pace: Duration,
    /// Also request every dictionary error once (`/simulate/error/...`).
    pub dictionary_tour: bool,
    /// Distinguishes this run's clients in the simulator's retry counters.
    pub client_tag: String,
    /// The `Proxy-Authorization` value to send, when the proxy asks for credentials.
    pub proxy_authorization: Option<http::HeaderValue>,
}

/// What the script did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScriptReport {
    /// Requests sent (each is one flow).
    pub requests: usize,
}

#[derive(Clone, Copy)]
enum Auth {
    None,
    App,
    User,
}

struct DemoClient {
    http: reqwest::Client,
    options: ScriptOptions,
    token: Option<String>,
    sent: usize,
}

struct Call<'a> {
    method: Method,
    path: &'a str,
    body: Option<&'a str>,
    auth: Auth,
    api_version: bool,
    client: Option<&'a str>,
    pause: bool,
}

impl<'a> Call<'a> {
    fn new(method: Method, path: &'a str) -> Self {
        Call {
            method,
            path,
            body: None,
            auth: Auth::User,
            api_version: true,
            client: None,
            pause: true,
        }
    }

    /// Sends the next request at once, as an impatient client would.
    fn hasty(mut self) -> Self {
        self.pause = false;
        self
    }

    fn body(mut self, body: &'a str) -> Self {
        self.body = Some(body);
        self
    }

    fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    fn without_api_version(mut self) -> Self {
        self.api_version = false;
        self
    }

    fn client(mut self, client: &'a str) -> Self {
        self.client = Some(client);
        self
    }
}

impl DemoClient {
    async fn send(&mut self, call: Call<'_>) -> Result<(u16, String), ScriptError> {
        let url = format!("{}{}", self.options.base_url, call.path);
        let mut request = self
            .http
            .request(call.method.clone(), &url)
            .header("User-Agent", "kinspect-demo/1.0 (Kinvey-JS-SDK-like)")
            .header("X-Kinvey-Client-App-Version", "2.4.1")
            .header(
                "X-Kinvey-Device-Information",
                "kinspect demo; simulated Android 14",
            )
            .header("Accept-Encoding", "gzip");
        if call.api_version {
            request = request.header("X-Kinvey-API-Version", "5");
        }
        request = match (call.auth, &self.token) {
            (Auth::None, _) => request,
            (Auth::User, Some(token)) => request.header("Authorization", format!("Kinvey {token}")),
            (Auth::App, _) | (Auth::User, None) => {
                let basic = base64::engine::general_purpose::STANDARD
                    .encode(format!("{APP_KEY}:{APP_SECRET}"));
                request.header("Authorization", format!("Basic {basic}"))
            }
        };
        if let Some(client) = call.client {
            request = request.header(
                "X-Demo-Client",
                format!("{}-{client}", self.options.client_tag),
            );
        }
        if let Some(body) = call.body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_owned());
        }
        let failed = |source| ScriptError::Request {
            method: call.method.to_string(),
            path: call.path.to_owned(),
            source,
        };
        let response = request.send().await.map_err(failed)?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(failed)?;
        self.sent += 1;
        if call.pause {
            tokio::time::sleep(self.options.pace).await;
        }
        Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
    }
}

/// Runs the whole script through the proxy.
pub async fn run(options: ScriptOptions) -> Result<ScriptReport, ScriptError> {
    let mut proxy =
        reqwest::Proxy::all(format!("http://{}", options.proxy)).map_err(ScriptError::Client)?;
    if let Some(value) = options.proxy_authorization.clone() {
        proxy = proxy.custom_http_auth(value);
    }
    let ca = reqwest::Certificate::from_pem(options.proxy_ca_pem.as_bytes())
        .map_err(ScriptError::Client)?;
    let http = reqwest::Client::builder()
        .proxy(proxy)
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(ScriptError::Client)?;
    let mut c = DemoClient {
        http,
        options,
        token: None,
        sent: 0,
    };
    app_session(&mut c).await?;
    retries(&mut c).await?;
    business_logic_and_odd_answers(&mut c).await?;
    if c.options.dictionary_tour {
        dictionary_tour(&mut c).await?;
    }
    Ok(ScriptReport { requests: c.sent })
}

/// A user opening the app: ping, a failed then a good login, queries, an edit.
async fn app_session(c: &mut DemoClient) -> Result<(), ScriptError> {
    let login = format!("/user/{APP_KEY}/login");
    c.send(Call::new(Method::GET, &format!("/appdata/{APP_KEY}")).auth(Auth::None))
        .await?;
    let wrong = format!(r#"{{"username":"{DEMO_USERNAME}","password":"babbage"}}"#);
    c.send(Call::new(Method::POST, &login).body(&wrong).auth(Auth::App))
        .await?;
    let right = format!(r#"{{"username":"{DEMO_USERNAME}","password":"{DEMO_PASSWORD}"}}"#);
    let (_, user) = c
        .send(Call::new(Method::POST, &login).body(&right).auth(Auth::App))
        .await?;
    c.token = serde_json::from_str::<serde_json::Value>(&user)
        .ok()
        .and_then(|u| u["_kmd"]["authtoken"].as_str().map(str::to_owned));

    let books = format!("/appdata/{APP_KEY}/books");
    c.send(Call::new(
        Method::GET,
        &format!("{books}?query=%7B%22author%22%3A%22Ada%20Lovelace%22%7D"),
    ))
    .await?;
    c.send(Call::new(Method::GET, &format!("{books}/no-such-book")))
        .await?;
    c.send(Call::new(
        Method::GET,
        &format!("/appdata/{APP_KEY}/missing"),
    ))
    .await?;
    c.send(Call::new(Method::GET, &format!("{books}?query=%7Bauthor")))
        .await?;

    // A broken edit, re-sent unchanged (the client ignored FIX), then corrected.
    let edit = format!("{books}/b1");
    let broken = r#"{title: "Notes on the Analytical Engine"}"#;
    c.send(Call::new(Method::PUT, &edit).body(broken)).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.send(Call::new(Method::PUT, &edit).body(broken)).await?;
    c.send(Call::new(Method::PUT, &edit).body(r#"{"title":"Notes on the Analytical Engine"}"#))
        .await?;
    c.send(
        Call::new(Method::POST, &format!("/user/{APP_KEY}"))
            .body(&right)
            .auth(Auth::App),
    )
    .await?;
    c.send(Call::new(Method::GET, &format!("/blob/{APP_KEY}/cover")))
        .await?;
    c.send(Call::new(
        Method::GET,
        &format!("/blob/{APP_KEY}/missing-file"),
    ))
    .await?;
    // An older SDK that sends no API version.
    c.send(Call::new(Method::GET, &books).without_api_version())
        .await?;
    Ok(())
}

/// Transient errors: one client backs off properly, one hammers, one ignores a STOP.
async fn retries(c: &mut DemoClient) -> Result<(), ScriptError> {
    let flaky = format!("/rpc/{APP_KEY}/custom/flaky");
    let mut backoff = Duration::from_millis(200);
    loop {
        let (status, _) = c
            .send(Call::new(Method::POST, &flaky).body("{}").client("patient"))
            .await?;
        if status < 500 {
            break;
        }
        tokio::time::sleep(backoff).await;
        backoff *= 2;
    }
    for _ in 0..3 {
        let (status, _) = c
            .send(
                Call::new(Method::POST, &flaky)
                    .body("{}")
                    .client("impatient")
                    .hasty(),
            )
            .await?;
        if status < 500 {
            break;
        }
    }
    let doomed = format!("/rpc/{APP_KEY}/custom/doomed");
    c.send(Call::new(Method::POST, &doomed).body("{}")).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.send(Call::new(Method::POST, &doomed).body("{}")).await?;
    Ok(())
}

/// Business Logic failures, an unknown error, a batch, and every anomaly.
async fn business_logic_and_odd_answers(c: &mut DemoClient) -> Result<(), ScriptError> {
    for endpoint in ["slow", "broken", "hello"] {
        let path = format!("/rpc/{APP_KEY}/custom/{endpoint}");
        c.send(Call::new(Method::POST, &path).body("{}")).await?;
    }
    c.send(Call::new(Method::GET, &format!("/appdata/{APP_KEY}/quota")))
        .await?;
    let batch =
        r#"[{"title":"Sketch of the Analytical Engine"},{"author":"no title"},{"title":"Note G"}]"#;
    c.send(Call::new(Method::POST, &format!("/appdata/{APP_KEY}/books")).body(batch))
        .await?;
    for anomaly in [
        "status-mismatch",
        "unparseable",
        "content-type",
        "name-message",
        "debug-object",
        "wrapped",
        "gateway",
    ] {
        c.send(Call::new(
            Method::GET,
            &format!("/simulate/anomaly/{anomaly}"),
        ))
        .await?;
    }
    Ok(())
}

/// Every error of the dictionary, at each of its statuses.
async fn dictionary_tour(c: &mut DemoClient) -> Result<(), ScriptError> {
    for entry in DICTIONARY {
        for status in entry.statuses {
            let path = format!("/simulate/error/{}?status={status}", entry.name);
            c.send(Call::new(Method::GET, &path)).await?;
        }
    }
    Ok(())
}
