//! Leaf certificates minted on demand for intercepted hosts, cached per host.

use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use lru::LruCache;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair,
    KeyUsagePurpose, SanType, PKCS_ECDSA_P256_SHA256,
};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

use super::{random_serial, CertificateAuthority};

/// Leaves are back-dated so that clients with a slightly slow clock accept them.
const BACKDATE: Duration = Duration::hours(1);
/// Total validity, kept under the 47-day ceiling browsers are moving to.
const LEAF_VALIDITY: Duration = Duration::days(46);

/// Why a leaf could not be minted.
#[derive(Debug, thiserror::Error)]
pub enum LeafError {
    /// The host name cannot appear in a certificate.
    #[error("cannot mint a certificate for {host:?}: {source}")]
    Mint {
        /// The host name.
        host: String,
        /// What rcgen said.
        source: rcgen::Error,
    },
    /// rustls refused the minted key or configuration.
    #[error("cannot build a TLS configuration for {host:?}: {source}")]
    Tls {
        /// The host name.
        host: String,
        /// What rustls said.
        source: rustls::Error,
    },
}

/// Mints a leaf certificate per host and caches the ready TLS server configuration
/// (bounded LRU). Concurrent first handshakes to one host mint once.
pub struct LeafCache {
    ca: Arc<CertificateAuthority>,
    leaf_key: KeyPair,
    signing_key: Arc<dyn rustls::sign::SigningKey>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    configs: Mutex<LruCache<String, MintedLeaf>>,
    minted: AtomicU64,
}

impl std::fmt::Debug for LeafCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeafCache")
            .field("minted", &self.minted())
            .finish_non_exhaustive()
    }
}

impl LeafCache {
    /// A cache holding at most `capacity` hosts. One leaf key pair, separate from the CA
    /// key, is generated now and shared by every leaf of this run.
    pub fn new(ca: Arc<CertificateAuthority>, capacity: usize) -> Result<Self, LeafError> {
        let leaf_key =
            KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|source| LeafError::Mint {
                host: "(leaf key)".into(),
                source,
            })?;
        let provider = crate::tls::crypto_provider();
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let signing_key = provider
            .key_provider
            .load_private_key(der)
            .map_err(|source| LeafError::Tls {
                host: "(leaf key)".into(),
                source,
            })?;
        let capacity = NonZeroUsize::new(capacity.max(1)).expect("capacity is at least 1");
        Ok(LeafCache {
            ca,
            leaf_key,
            signing_key,
            provider,
            configs: Mutex::new(LruCache::new(capacity)),
            minted: AtomicU64::new(0),
        })
    }

    /// The TLS server configuration presenting a leaf for `host` (a DNS name or an IP
    /// literal), minting the leaf if the host is not cached. ALPN offers `h2` and
    /// `http/1.1`.
    pub fn server_config(&self, host: &str) -> Result<Arc<ServerConfig>, LeafError> {
        self.leaf(host).map(|leaf| leaf.config)
    }

    /// The certificate chain (leaf, then CA) presented for `host`, minting if needed.
    pub fn certificate_chain(&self, host: &str) -> Result<Vec<CertificateDer<'static>>, LeafError> {
        self.leaf(host).map(|leaf| leaf.certified.cert.clone())
    }

    fn leaf(&self, host: &str) -> Result<MintedLeaf, LeafError> {
        let key = host.trim_end_matches('.').to_ascii_lowercase();
        let mut leaves = self.configs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(leaf) = leaves.get(&key) {
            return Ok(leaf.clone());
        }
        // Minting under the lock makes concurrent first handshakes to one host mint once;
        // an ECDSA P-256 signature takes tens of microseconds.
        let leaf = self.mint(&key)?;
        leaves.put(key, leaf.clone());
        Ok(leaf)
    }

    /// How many leaves this cache has minted (for tests and statistics).
    pub fn minted(&self) -> u64 {
        self.minted.load(Ordering::Relaxed)
    }

    fn mint(&self, host: &str) -> Result<MintedLeaf, LeafError> {
        let mint_err = |source| LeafError::Mint {
            host: host.to_owned(),
            source,
        };
        let san = match crate::flow::unbracketed(host).parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(host.try_into().map_err(mint_err)?),
        };
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, host);
        name.push(DnType::OrganizationName, "kinspect");
        params.distinguished_name = name;
        params.subject_alt_names = vec![san];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial());
        params.not_before = now - BACKDATE;
        // Not past the CA: a client would take the leaf's date for the chain's.
        params.not_after = (params.not_before + LEAF_VALIDITY).min(self.ca.not_after());
        let cert = params
            .signed_by(&self.leaf_key, self.ca.issuer())
            .map_err(mint_err)?;
        self.minted.fetch_add(1, Ordering::Relaxed);

        let chain = vec![cert.der().clone(), self.ca.cert_der().clone()];
        let certified = Arc::new(CertifiedKey::new(chain, self.signing_key.clone()));
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|source| LeafError::Tls {
                host: host.to_owned(),
                source,
            })?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(OneCertificate(certified.clone())));
        // A client that offers only HTTP/1.0 (`curl --http1.0`) is served HTTP/1.
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec(), b"http/1.0".to_vec()];
        Ok(MintedLeaf {
            config: Arc::new(config),
            certified,
        })
    }
}

/// A minted leaf and the server configuration that presents it.
#[derive(Clone)]
struct MintedLeaf {
    config: Arc<ServerConfig>,
    certified: Arc<CertifiedKey>,
}

/// Presents the same certificate whatever the client asks for.
#[derive(Debug)]
struct OneCertificate(Arc<CertifiedKey>);

impl ResolvesServerCert for OneCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(capacity: usize) -> (tempfile::TempDir, LeafCache) {
        let dir = tempfile::tempdir().unwrap();
        let ca = Arc::new(CertificateAuthority::load_or_create(dir.path()).unwrap());
        (dir, LeafCache::new(ca, capacity).unwrap())
    }

    #[test]
    fn caches_per_host_and_evicts_beyond_capacity() {
        let (_dir, leaves) = cache(2);
        let a = leaves.server_config("a.example").unwrap();
        let a_again = leaves.server_config("A.example.").unwrap();
        assert!(Arc::ptr_eq(&a, &a_again));
        assert_eq!(leaves.minted(), 1);
        leaves.server_config("b.example").unwrap();
        leaves.server_config("c.example").unwrap();
        leaves.server_config("a.example").unwrap();
        assert_eq!(leaves.minted(), 4, "a.example was evicted and minted again");
    }

    #[test]
    fn concurrent_first_requests_mint_once() {
        let (_dir, leaves) = cache(16);
        let leaves = Arc::new(leaves);
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let leaves = leaves.clone();
                std::thread::spawn(move || leaves.server_config("same.example").unwrap())
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(leaves.minted(), 1);
    }

    #[test]
    fn an_invalid_host_name_is_an_error() {
        let (_dir, leaves) = cache(2);
        assert!(leaves.server_config("bücher.example").is_err());
    }
}
