//! The CA page: what a device gets from `http://kinspect.ca` through the proxy (or from
//! the proxy's own address) — the CA certificate to download, in PEM and DER, with the
//! content types that make iOS, Android and Windows offer to install it, and the steps
//! for each platform.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use crate::ca::CertificateAuthority;

/// The magic host that serves the CA page through the proxy.
pub const CA_HOST: &str = "kinspect.ca";

/// True when `host` is the magic CA host.
pub fn is_ca_host(host: &str) -> bool {
    host.trim_end_matches('.').eq_ignore_ascii_case(CA_HOST)
}

/// The CA page's answer to a GET of `path`.
pub fn respond(ca: &CertificateAuthority, path: &str) -> Response<Bytes> {
    let path = path.split('?').next().unwrap_or("/");
    match path {
        "/" | "/index.html" => page(
            StatusCode::OK,
            "text/html; charset=utf-8",
            Bytes::from(html(ca)),
        ),
        "/cert/pem" | "/kinspect-ca.pem" => download(
            Bytes::copy_from_slice(ca.cert_pem().as_bytes()),
            "kinspect-ca.pem",
        ),
        "/cert/cer" | "/kinspect-ca.cer" => {
            download(Bytes::copy_from_slice(ca.cert_der()), "kinspect-ca.cer")
        }
        _ => page(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            Bytes::from_static(b"Not found. The kinspect CA is at /cert/pem and /cert/cer.\n"),
        ),
    }
}

fn page(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Bytes> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `application/x-x509-ca-cert` is what iOS, Android and Windows recognise as "a CA
/// certificate to install".
fn download(body: Bytes, filename: &'static str) -> Response<Bytes> {
    let mut response = page(StatusCode::OK, "application/x-x509-ca-cert", body);
    let disposition = format!("attachment; filename=\"{filename}\"");
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

fn html(ca: &CertificateAuthority) -> String {
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>kinspect CA</title>
<style>body{{font-family:system-ui,sans-serif;max-width:42em;margin:2em auto;padding:0 1em;line-height:1.45}}
code{{word-break:break-all}} a.button{{display:inline-block;padding:.6em 1em;margin:.2em;border:1px solid #345;border-radius:6px;text-decoration:none}}</style>
</head><body>
<h1>Trust the kinspect CA</h1>
<p>This device reaches the internet through kinspect, an HTTPS debugging proxy. To let it
see HTTPS traffic, install and trust this installation's own certificate authority.
Only do this on devices you test with, and remove it afterwards.</p>
<p><a class="button" href="/cert/pem">Download kinspect-ca.pem</a>
<a class="button" href="/cert/cer">Download kinspect-ca.cer (DER)</a></p>
<p>SHA-256 fingerprint, to compare with what kinspect printed at start-up:<br><code>{fingerprint}</code></p>
<h2>iOS / iPadOS</h2>
<ol><li>Open this page in Safari and tap <em>Download kinspect-ca.pem</em>; allow the profile.</li>
<li>Settings → General → VPN &amp; Device Management → install the <em>kinspect CA</em> profile.</li>
<li>Settings → General → About → Certificate Trust Settings → turn on full trust for it.</li></ol>
<h2>Android</h2>
<ol><li>Download <em>kinspect-ca.cer</em>.</li>
<li>Settings → Security → Encryption &amp; credentials → Install a certificate → CA certificate.</li>
<li>Apps trust user CAs only if they opt in: add a <code>network_security_config</code> with
<code>&lt;certificates src="user"/&gt;</code> in <code>debug-overrides</code> to your app's debug build.</li></ol>
<h2>Windows</h2>
<p>Open <em>kinspect-ca.cer</em> → Install Certificate → Local Machine → Trusted Root Certification Authorities.</p>
<h2>macOS</h2>
<p>Open <em>kinspect-ca.pem</em> in Keychain Access (System keychain) and set it to <em>Always Trust</em>.</p>
<h2>Linux, Firefox, Java, Node, Python, curl</h2>
<p>See <code>certs/README.md</code> in kinspect's repository, or run <code>kinspect env</code> on the
computer running kinspect for the shell variables that point programs at it.</p>
</body></html>
"#,
        fingerprint = ca.sha256_fingerprint()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_both_downloads() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::load_or_create(dir.path()).unwrap();
        let page = respond(&ca, "/");
        assert_eq!(page.status(), 200);
        let html = String::from_utf8(page.body().to_vec()).unwrap();
        assert!(html.contains(&ca.sha256_fingerprint()));
        assert!(html.contains("/cert/pem") && html.contains("/cert/cer"));
        let pem = respond(&ca, "/cert/pem");
        assert_eq!(pem.headers()["content-type"], "application/x-x509-ca-cert");
        assert_eq!(pem.body().as_ref(), ca.cert_pem().as_bytes());
        let der = respond(&ca, "/cert/cer?x=1");
        assert_eq!(der.body().as_ref(), ca.cert_der().as_ref());
        assert!(der.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("kinspect-ca.cer"));
        assert_eq!(respond(&ca, "/nope").status(), 404);
        assert!(is_ca_host("KINSPECT.CA.") && !is_ca_host("example.com"));
    }
}
