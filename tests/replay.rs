//! Sending a recorded request again through the running proxy (the UI's `R` and `e`):
//! the new exchange is recorded like any other and carries what the client sent, over
//! plain HTTP, HTTPS with HTTP/1.1 and HTTPS with HTTP/2, through --proxy-auth too.

mod support;

use std::time::Instant;

use kinspect::flow::{Flow, HttpVersion};
use kinspect::proxy::ProxyCredentials;
use kinspect::replay::{ReplayRequest, Replayer};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use support::{Origin, OriginKind, TestProxy, STEP};

fn replayer_through(proxy: &TestProxy, auth: Option<&ProxyCredentials>) -> Replayer {
    let ca = CertificateDer::from_pem_slice(proxy.ca_pem.as_bytes()).unwrap();
    let auth = auth.map(ProxyCredentials::header_value);
    Replayer::new(proxy.addr, &ca, auth, proxy.replays.clone()).unwrap()
}

/// A proxy for `origin` asking for --proxy-auth credentials, the credentials, and a
/// client that sends them and trusts the proxy's CA.
async fn behind_proxy_auth(origin: &Origin) -> (TestProxy, ProxyCredentials, reqwest::Client) {
    let credentials: ProxyCredentials = "dev:s3cret".parse().unwrap();
    let auth = credentials.clone();
    let proxy = TestProxy::start(Some(origin), |c| c.proxy_auth = Some(auth)).await;
    let client = reqwest::Client::builder()
        .proxy(
            reqwest::Proxy::all(proxy.url())
                .unwrap()
                .custom_http_auth(credentials.header_value()),
        )
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(proxy.ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    (proxy, credentials, client)
}

/// What the replayer said about the one request it sent.
async fn outcome(replayer: &Replayer) -> String {
    let deadline = Instant::now() + STEP;
    loop {
        if let Some(said) = replayer.outcome() {
            return said.message();
        }
        assert!(Instant::now() < deadline, "the replay never ended");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The fields of a request as the origin's echo saw them.
fn echoed(flow: &Flow) -> serde_json::Value {
    let body = &flow.response.as_ref().expect("a response").body.bytes;
    serde_json::from_slice(body).expect("the echo's JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_sent_again_reaches_the_origin_as_the_client_sent_it() {
    for (kind, version) in [
        (OriginKind::Plain, HttpVersion::Http11),
        (OriginKind::HttpsH1Only, HttpVersion::Http11),
        (OriginKind::Https, HttpVersion::Http2),
    ] {
        let origin = Origin::start(kind).await;
        let mut proxy = TestProxy::start(Some(&origin), |_| {}).await;
        let client = match version {
            HttpVersion::Http2 => proxy.client(),
            _ => proxy.client_builder().http1_only().build().unwrap(),
        };
        let response = client
            .post(origin.url("/echo/a?x=1&y=two"))
            .header("x-custom", "first")
            .header("x-custom", "second")
            .header("content-type", "application/json")
            .body(r#"{"a":1}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let _ = response.bytes().await.unwrap();
        let first = proxy.next_flow().await;
        assert_eq!(first.request.version, version, "{kind:?}");

        let replayer = replayer_through(&proxy, None);
        replayer.send(first.id, ReplayRequest::of(&first).unwrap());
        let said = outcome(&replayer).await;
        assert!(
            said.starts_with(&format!("flow {} sent again: 200 in", first.id)),
            "{kind:?}: {said}"
        );
        let again = proxy.next_flow().await;
        assert!(again.id > first.id);
        assert_eq!((first.replay_of, again.replay_of), (None, Some(first.id)));
        let stored = kinspect::capture::StoredFlow {
            flow: again.clone(),
            kinvey: Default::default(),
        };
        let entry = kinspect::har::har_entry(&stored, Default::default(), &mut 0);
        assert_eq!(entry["_replayOf"], first.id);
        assert_eq!(again.request.method, "POST");
        assert_eq!(again.request.url, first.request.url);
        assert_eq!(again.request.version, version, "{kind:?}");
        assert_eq!(again.request.body.bytes, first.request.body.bytes);
        // The origin saw the same request: method, target, every field and the body.
        let (before, after) = (echoed(&first), echoed(&again));
        for key in ["method", "uri", "version", "body"] {
            assert_eq!(before[key], after[key], "{kind:?} {key}");
        }
        assert_eq!(before["headers"], after["headers"], "{kind:?}: in order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_request_is_sent_as_changed_through_proxy_auth() {
    let origin = Origin::start(OriginKind::Https).await;
    let (mut proxy, credentials, client) = behind_proxy_auth(&origin).await;
    let response = client
        .put(origin.url("/echo/books/1"))
        .header("content-type", "application/json")
        .body(r#"{"title":"Dune","year":"1965"}"#)
        .send()
        .await
        .unwrap();
    let _ = response.bytes().await.unwrap();
    let first = proxy.next_flow().await;
    assert_eq!(first.response.as_ref().unwrap().status, 200);

    // What the user's editor gets, and what it gives back.
    let request = ReplayRequest::of(&first).unwrap();
    let text = request.to_text().unwrap();
    assert!(
        text.contains(&format!("\nPUT {}\n", first.request.url)),
        "{text}"
    );
    assert!(
        text.ends_with("\n\n{\"title\":\"Dune\",\"year\":\"1965\"}"),
        "{text}"
    );
    let edited = text.replace("\"1965\"", "1965").replace("PUT ", "POST ") + "\n";
    let changed = request.edited(&edited).unwrap().expect("changed");

    let replayer = replayer_through(&proxy, Some(&credentials));
    replayer.send(first.id, changed);
    let said = outcome(&replayer).await;
    assert!(said.contains("sent again: 200"), "{said}");
    let again = proxy.next_flow().await;
    assert_eq!(again.request.method, "POST");
    assert_eq!(
        &again.request.body.bytes[..],
        br#"{"title":"Dune","year":1965}"#
    );
    assert_eq!(
        echoed(&again)["body_len"],
        again.request.body.bytes.len(),
        "the length follows the body"
    );
    assert!(
        again.request.headers.get("proxy-authorization").is_none(),
        "the proxy's credentials are never recorded"
    );

    // Without the credentials the proxy refuses, and the replayer says so.
    let unauthorised = replayer_through(&proxy, None);
    unauthorised.send(first.id, ReplayRequest::of(&first).unwrap());
    let said = outcome(&unauthorised).await;
    assert!(said.contains("refused the tunnel: 407"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_post_says_its_length_through_proxy_auth_over_plain_http() {
    let origin = Origin::start(OriginKind::Plain).await;
    let (mut proxy, credentials, client) = behind_proxy_auth(&origin).await;
    let response = client
        .post(origin.url("/echo/logout"))
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    let _ = response.bytes().await.unwrap();
    let first = proxy.next_flow().await;
    assert_eq!(first.response.as_ref().unwrap().status, 200);

    let replayer = replayer_through(&proxy, Some(&credentials));
    replayer.send(first.id, ReplayRequest::of(&first).unwrap());
    let said = outcome(&replayer).await;
    assert!(said.contains("sent again: 200"), "{said}");
    let again = proxy.next_flow().await;
    assert_eq!(echoed(&first)["headers"], echoed(&again)["headers"]);
    // Without the field (an edited request has its length measured again), the
    // replay writes it: HTTP/1.1 would send an empty POST without one.
    let mut measured = ReplayRequest::of(&first).unwrap();
    measured.headers.remove("content-length");
    replayer.send(first.id, measured);
    assert!(outcome(&replayer).await.contains("sent again: 200"));
    let headers = &echoed(&proxy.next_flow().await)["headers"];
    assert!(
        headers
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(["content-length", "0"])),
        "{headers}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_sent_again_is_not_taken_for_the_app_ignoring_a_stop() {
    let simulator = kinspect::demo::simulator::Simulator::start(&["localhost"])
        .await
        .unwrap();
    let root = simulator.ca_der().clone();
    let mut proxy = TestProxy::start(None, |c| c.upstream_roots.push(root)).await;
    let url = format!(
        "https://localhost:{}/simulate/error/KinveyInternalErrorStop",
        simulator.addr().port()
    );
    let client = proxy.client();
    let send = || async {
        let response = client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 500);
        let _ = response.bytes().await.unwrap();
    };
    send().await;
    let first = proxy.next_stored().await;
    assert_eq!(first.kinvey.class, Some(kinspect::kinvey::ErrorClass::Stop));

    let replayer = replayer_through(&proxy, None);
    replayer.send(first.flow.id, ReplayRequest::of(&first.flow).unwrap());
    assert!(outcome(&replayer).await.contains("sent again: 500"));
    let again = proxy.next_stored().await;
    assert!(
        again.kinvey.warnings.is_empty(),
        "{:?}",
        again.kinvey.warnings
    );

    // The app sending it again is still told.
    send().await;
    let resent = proxy.next_stored().await;
    let codes: Vec<&str> = resent
        .kinvey
        .warnings
        .iter()
        .map(|w| w.code.as_str())
        .collect();
    assert_eq!(codes, ["stop_resent"]);
}
