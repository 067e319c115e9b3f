//! The CA and the leaves it mints, checked with webpki (the verifier rustls clients use)
//! and x509-parser.

use std::sync::Arc;

use kinspect::ca::{CertificateAuthority, LeafCache};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use x509_parser::prelude::*;

fn setup() -> (tempfile::TempDir, Arc<CertificateAuthority>, LeafCache) {
    kinspect::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let ca = Arc::new(CertificateAuthority::load_or_create(dir.path()).unwrap());
    let leaves = LeafCache::new(ca.clone(), 64).unwrap();
    (dir, ca, leaves)
}

fn verify(
    ca: &CertificateAuthority,
    chain: &[CertificateDer<'static>],
    name: &str,
) -> Result<(), webpki::Error> {
    let anchor = webpki::anchor_from_trusted_cert(ca.cert_der()).unwrap();
    let leaf = webpki::EndEntityCert::try_from(&chain[0]).unwrap();
    leaf.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &[anchor],
        &chain[1..],
        UnixTime::now(),
        webpki::KeyUsage::server_auth(),
        None,
        None,
    )?;
    let name = ServerName::try_from(name.to_owned()).unwrap();
    leaf.verify_is_valid_for_subject_name(&name)
}

#[test]
fn a_minted_leaf_verifies_for_its_name_and_not_for_another() {
    let (_dir, ca, leaves) = setup();
    let chain = leaves.certificate_chain("baas.kinvey.com").unwrap();
    assert_eq!(chain.len(), 2, "leaf + CA");
    assert_eq!(&chain[1], ca.cert_der());
    verify(&ca, &chain, "baas.kinvey.com").unwrap();
    assert!(verify(&ca, &chain, "other.kinvey.com").is_err());
}

#[test]
fn ip_hosts_get_an_ip_san() {
    let (_dir, ca, leaves) = setup();
    let chain = leaves.certificate_chain("127.0.0.1").unwrap();
    verify(&ca, &chain, "127.0.0.1").unwrap();
    assert!(verify(&ca, &chain, "127.0.0.2").is_err());
    let (_, cert) = X509Certificate::from_der(&chain[0]).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    assert!(
        matches!(san.value.general_names[0], GeneralName::IPAddress(ip) if ip == [127, 0, 0, 1])
    );

    let v6 = leaves.certificate_chain("::1").unwrap();
    verify(&ca, &v6, "::1").unwrap();
}

#[test]
fn leaves_follow_the_certificate_rules() {
    let (_dir, ca, leaves) = setup();
    let a = leaves.certificate_chain("a.example").unwrap();
    let b = leaves.certificate_chain("b.example").unwrap();
    let (_, leaf) = X509Certificate::from_der(&a[0]).unwrap();
    let (_, other) = X509Certificate::from_der(&b[0]).unwrap();
    let (_, ca_cert) = X509Certificate::from_der(ca.cert_der()).unwrap();

    // CN is the host; EKU serverAuth; not a CA.
    let cn = leaf
        .subject()
        .iter_common_name()
        .next()
        .unwrap()
        .as_str()
        .unwrap();
    assert_eq!(cn, "a.example");
    assert!(
        leaf.extended_key_usage()
            .unwrap()
            .unwrap()
            .value
            .server_auth
    );
    assert!(!leaf.is_ca());

    // Authority key id = the CA's subject key id.
    let aki = leaf
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => aki.key_identifier.clone(),
            _ => None,
        })
        .expect("an authority key identifier");
    let ski = ca_cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(ski) => Some(ski.clone()),
            _ => None,
        })
        .expect("the CA has a subject key identifier");
    assert_eq!(aki.0, ski.0);

    // Random serials; a leaf key that is not the CA key.
    assert_ne!(leaf.raw_serial(), other.raw_serial());
    assert_ne!(
        leaf.public_key().subject_public_key.data,
        ca_cert.public_key().subject_public_key.data
    );

    // Back-dated about an hour; valid at most 47 days.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let not_before = leaf.validity().not_before.timestamp();
    let not_after = leaf.validity().not_after.timestamp();
    assert!((now - not_before - 3600).abs() < 120, "back-dated one hour");
    assert!(not_after - not_before <= 47 * 86400);
    assert!(not_after > now + 30 * 86400);
}

#[test]
fn the_ca_is_p256_ten_years_and_a_certificate_authority() {
    let (_dir, ca, _) = setup();
    let (_, cert) = X509Certificate::from_der(ca.cert_der()).unwrap();
    assert!(cert.is_ca());
    let lifetime = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
    assert!(lifetime >= 3650 * 86400, "ten years");
    // id-ecPublicKey with the P-256 curve.
    let alg = &cert.public_key().algorithm;
    assert_eq!(alg.algorithm.to_id_string(), "1.2.840.10045.2.1");
    let curve = alg.parameters.as_ref().unwrap().as_oid().unwrap();
    assert_eq!(curve.to_id_string(), "1.2.840.10045.3.1.7");
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .unwrap()
        .as_str()
        .unwrap();
    assert!(cn.starts_with("kinspect CA "), "{cn}");
}

#[test]
fn each_installation_gets_its_own_ca() {
    let (_a, ca_a, _) = setup();
    let (_b, ca_b, _) = setup();
    assert_ne!(ca_a.sha256_fingerprint(), ca_b.sha256_fingerprint());
}

/// A CA directory whose certificate (for a key of its own) is valid until `not_after`.
fn ca_dir_valid_until(not_after: ::time::OffsetDateTime) -> tempfile::TempDir {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, KeyUsagePurpose};
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = not_after - ::time::Duration::days(400);
    params.not_after = not_after;
    let cert = params.self_signed(&key).unwrap();
    let key_path = dir.path().join(kinspect::ca::KEY_FILE);
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    std::fs::write(dir.path().join(kinspect::ca::CERT_PEM_FILE), cert.pem()).unwrap();
    dir
}

#[test]
fn an_expired_ca_is_refused_and_one_expiring_soon_is_said_and_outlived_by_no_leaf() {
    kinspect::tls::install_crypto_provider();
    let now = ::time::OffsetDateTime::now_utc();
    let expired = ca_dir_valid_until(now - ::time::Duration::days(1));
    let said = CertificateAuthority::load_or_create(expired.path())
        .unwrap_err()
        .to_string();
    assert!(said.contains("expired on"), "{said}");
    assert!(
        said.contains("move its directory away to create a new CA"),
        "{said}"
    );

    let soon = ca_dir_valid_until(now + ::time::Duration::days(3));
    let ca = Arc::new(CertificateAuthority::load_or_create(soon.path()).unwrap());
    let day = ca.expires_soon().unwrap();
    let expected = (now + ::time::Duration::days(3)).date().to_string();
    assert_eq!(day, expected);
    let leaves = LeafCache::new(ca.clone(), 8).unwrap();
    let chain = leaves.certificate_chain("a.example").unwrap();
    let (_, leaf) = X509Certificate::from_der(&chain[0]).unwrap();
    let (_, ca_cert) = X509Certificate::from_der(ca.cert_der()).unwrap();
    assert!(leaf.validity().not_after <= ca_cert.validity().not_after);
    verify(&ca, &chain, "a.example").unwrap();

    // A new CA is years from expiring.
    let (_dir, fresh, _) = setup();
    assert_eq!(fresh.expires_soon(), None);
}

#[test]
fn a_cut_short_ca_certificate_is_said_so() {
    let (dir, ca, _) = setup();
    let pem = ca.cert_pem().to_owned();
    drop(ca);
    let path = dir.path().join(kinspect::ca::CERT_PEM_FILE);
    std::fs::write(&path, &pem[..pem.len() / 2]).unwrap();
    let said = CertificateAuthority::load_or_create(dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        said.contains("cut short: no -----END CERTIFICATE----- line"),
        "{said}"
    );
}
