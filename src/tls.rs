//! The one rustls crypto provider (ring) and the upstream TLS client configuration.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// The crypto provider every TLS configuration in kinspect uses.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// Installs ring as the process-wide default rustls provider. Safe to call repeatedly.
pub fn install_crypto_provider() {
    let _ = CryptoProvider::install_default((*crypto_provider()).clone());
}

/// Why the upstream TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// An `--upstream-ca` file could not be read.
    #[error("cannot read --upstream-ca file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An `--upstream-ca` file holds no usable certificate.
    #[error("--upstream-ca file {path} holds no usable PEM or DER certificate{detail}")]
    NoCertificate {
        /// The file.
        path: PathBuf,
        /// Why, when known.
        detail: String,
    },
    /// rustls refused the configuration.
    #[error("cannot configure upstream TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The TLS client configuration for connections to origins: verified against Mozilla's
/// roots, the OS store, each `root_files` PEM file and each of `roots`, unless
/// `insecure` (an explicit opt-in) turns verification off. ALPN offers `h2` and
/// `http/1.1`.
pub fn upstream_client_config(
    root_files: &[PathBuf],
    roots: &[CertificateDer<'static>],
    insecure: bool,
) -> Result<ClientConfig, TlsSetupError> {
    let builder = ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()?;
    let mut config = if insecure {
        // Not used, but a file named that cannot be read is still the user's mistake.
        for path in root_files {
            add_roots_from(&mut RootCertStore::empty(), path)?;
        }
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(crypto_provider())))
            .with_no_client_auth()
    } else {
        let mut store = RootCertStore::empty();
        store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let native = rustls_native_certs::load_native_certs();
        store.add_parsable_certificates(native.certs);
        for path in root_files {
            add_roots_from(&mut store, path)?;
        }
        store.add_parsable_certificates(roots.iter().cloned());
        builder.with_root_certificates(store).with_no_client_auth()
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

fn add_roots_from(roots: &mut RootCertStore, path: &Path) -> Result<(), TlsSetupError> {
    let pem = std::fs::read(path).map_err(|source| TlsSetupError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsSetupError::NoCertificate {
            path: path.to_owned(),
            detail: format!(": {e}"),
        })?;
    // No PEM block: one DER certificate (an ASN.1 sequence), as Windows and Android
    // export them.
    if certs.is_empty() && pem.first() == Some(&0x30) {
        certs.push(CertificateDer::from(pem));
    }
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(TlsSetupError::NoCertificate {
            path: path.to_owned(),
            detail: String::new(),
        });
    }
    Ok(())
}

/// `--insecure-upstream`: any certificate is accepted, but handshake signatures are still
/// checked so the connection is at least encrypted to the key that was presented.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upstream_ca_is_read_from_pem_or_der() {
        install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        let (pem, der, junk) = (
            dir.path().join("ca.pem"),
            dir.path().join("ca.cer"),
            dir.path().join("junk"),
        );
        std::fs::write(&pem, cert.pem()).unwrap();
        std::fs::write(&der, cert.der()).unwrap();
        std::fs::write(&junk, "not a certificate").unwrap();
        for file in [&pem, &der] {
            let mut roots = RootCertStore::empty();
            add_roots_from(&mut roots, file).unwrap();
            assert_eq!(roots.len(), 1, "{}", file.display());
        }
        let said = add_roots_from(&mut RootCertStore::empty(), &junk)
            .unwrap_err()
            .to_string();
        assert!(
            said.contains("holds no usable PEM or DER certificate"),
            "{said}"
        );
    }
}
