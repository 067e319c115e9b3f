//! The kinspect certificate authority: created once per installation, loaded on later
//! runs, never replaced silently; and the leaf certificates it mints for intercepted hosts.

mod leaf;

pub use leaf::{LeafCache, LeafError};

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use rustls_pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};

/// File name of the CA certificate in PEM form.
pub const CERT_PEM_FILE: &str = "kinspect-ca.pem";
/// File name of the CA certificate in DER form (what Windows, Android and iOS import).
pub const CERT_DER_FILE: &str = "kinspect-ca.cer";
/// File name of the CA private key (PKCS#8 PEM, mode 0600).
pub const KEY_FILE: &str = "kinspect-ca-key.pem";

/// How long a new CA is valid.
const CA_VALIDITY_DAYS: i64 = 3650;

/// Why the CA could not be created or loaded. Every variant names the file involved.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// A file or directory could not be read or written.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done ("read", "create", ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The CA's directory is a file.
    #[error("{path} is a file, not a directory: give --ca-dir (or KINSPECT_HOME) a directory for the CA's files")]
    NotADirectory {
        /// The file.
        path: PathBuf,
    },
    /// A CA file exists but does not hold what it should.
    #[error("{path} is not a valid {what}: {reason}. Restore it from a backup, or move the directory away to create a new CA (devices that trusted the old one must then trust the new one)")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What the file should hold.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The certificate and key files do not belong together.
    #[error("{cert} and {key} do not belong together ({reason}). Restore the matching pair, or move the directory away to create a new CA")]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What differs.
        reason: String,
    },
    /// Only some of the CA files exist.
    #[error("the CA in {dir} is incomplete: {present} exists but {missing} is missing. Restore the missing file, or move the directory away to create a new CA")]
    Incomplete {
        /// The CA directory.
        dir: PathBuf,
        /// A file that exists.
        present: PathBuf,
        /// The file that is missing.
        missing: PathBuf,
    },
    /// The CA certificate is past its validity: no client accepts what it signs.
    #[error("the CA certificate {path} expired on {expired}: move its directory away to create a new CA, then trust the new one on each device (certs/README.md)")]
    Expired {
        /// The certificate file.
        path: PathBuf,
        /// When it expired (UTC date).
        expired: String,
    },
    /// The key file can be read by other users.
    #[error("{path} is readable by other users (mode {mode:o}); the CA key must be private: run `chmod 600 {path}`")]
    InsecureKey {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Certificate generation failed.
    #[error("cannot generate the CA: {0}")]
    Generate(#[from] rcgen::Error),
}

/// The CA that signs every leaf certificate kinspect presents to clients.
pub struct CertificateAuthority {
    dir: PathBuf,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
    not_after: OffsetDateTime,
    created: bool,
}

/// A CA expiring within this long is said at start-up.
pub const EXPIRY_WARNING: Duration = Duration::days(30);

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("dir", &self.dir)
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// Loads the CA from `dir`, or creates it there if the directory holds no CA files.
    pub fn load_or_create(dir: &Path) -> Result<Self, CaError> {
        let cert_path = dir.join(CERT_PEM_FILE);
        let key_path = dir.join(KEY_FILE);
        match (cert_path.exists(), key_path.exists()) {
            (false, false) => Self::create(dir),
            (true, true) => Self::load(dir),
            (true, false) => Err(CaError::Incomplete {
                dir: dir.to_owned(),
                present: cert_path,
                missing: key_path,
            }),
            (false, true) => Err(CaError::Incomplete {
                dir: dir.to_owned(),
                present: key_path,
                missing: cert_path,
            }),
        }
    }

    fn create(dir: &Path) -> Result<Self, CaError> {
        create_private_dir(dir)?;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(
            DnType::CommonName,
            format!("kinspect CA {}", short_id(key.public_key_raw())),
        );
        name.push(DnType::OrganizationName, "kinspect");
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(CA_VALIDITY_DAYS);
        params.serial_number = Some(random_serial());
        let cert = params.self_signed(&key)?;

        let key_path = dir.join(KEY_FILE);
        write_new_file(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
        write_new_file(&dir.join(CERT_PEM_FILE), cert.pem().as_bytes(), 0o644)?;
        write_new_file(&dir.join(CERT_DER_FILE), cert.der(), 0o644)?;

        let cert_der = cert.der().clone();
        let not_after = params.not_after;
        let issuer = Issuer::new(params, key);
        Ok(CertificateAuthority {
            dir: dir.to_owned(),
            cert_pem: cert.pem(),
            cert_der,
            issuer,
            not_after,
            created: true,
        })
    }

    fn load(dir: &Path) -> Result<Self, CaError> {
        let cert_path = dir.join(CERT_PEM_FILE);
        let key_path = dir.join(KEY_FILE);
        check_key_permissions(&key_path)?;

        let key_pem = read_text(&key_path)?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| CaError::Corrupt {
            path: key_path.clone(),
            what: "PEM private key",
            reason: e.to_string(),
        })?;
        let cert_pem = read_text(&cert_path)?;
        let cert_der = pem_certificate(&cert_pem).map_err(|reason| CaError::Corrupt {
            path: cert_path.clone(),
            what: "PEM certificate",
            reason,
        })?;
        let (_, parsed) =
            x509_parser::parse_x509_certificate(&cert_der).map_err(|e| CaError::Corrupt {
                path: cert_path.clone(),
                what: "PEM certificate",
                reason: e.to_string(),
            })?;
        if !parsed.is_ca() {
            return Err(CaError::Corrupt {
                path: cert_path,
                what: "CA certificate",
                reason: "it is not marked as a certificate authority".into(),
            });
        }
        let not_after = parsed.validity().not_after.to_datetime();
        if not_after < OffsetDateTime::now_utc() {
            return Err(CaError::Expired {
                path: cert_path,
                expired: utc_date(not_after),
            });
        }
        if parsed.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(CaError::Mismatch {
                cert: cert_path,
                key: key_path,
                reason: "the certificate's public key is not the key file's".into(),
            });
        }

        let der_path = dir.join(CERT_DER_FILE);
        match fs::read(&der_path) {
            Ok(der) if der == cert_der => {}
            Ok(_) => {
                return Err(CaError::Mismatch {
                    cert: cert_path,
                    key: der_path,
                    reason: "the DER copy holds a different certificate".into(),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                write_new_file(&der_path, &cert_der, 0o644)?;
            }
            Err(source) => {
                return Err(CaError::Io {
                    action: "read",
                    path: der_path,
                    source,
                })
            }
        }

        let cert_der = CertificateDer::from(cert_der);
        let issuer = Issuer::from_ca_cert_der(&cert_der, key).map_err(|e| CaError::Corrupt {
            path: cert_path,
            what: "CA certificate",
            reason: e.to_string(),
        })?;
        Ok(CertificateAuthority {
            dir: dir.to_owned(),
            cert_pem,
            cert_der,
            issuer,
            not_after,
            created: false,
        })
    }

    /// When the certificate expires (leaves minted after it expire with it).
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// The day the certificate expires (`2026-12-03`), when that is within
    /// [`EXPIRY_WARNING`]: time to create a new CA and trust it again.
    pub fn expires_soon(&self) -> Option<String> {
        (self.not_after - OffsetDateTime::now_utc() < EXPIRY_WARNING)
            .then(|| utc_date(self.not_after))
    }

    /// The directory holding the CA files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the PEM certificate (what clients are told to trust).
    pub fn cert_pem_path(&self) -> PathBuf {
        self.dir.join(CERT_PEM_FILE)
    }

    /// Path of the DER certificate.
    pub fn cert_der_path(&self) -> PathBuf {
        self.dir.join(CERT_DER_FILE)
    }

    /// Path of the private key.
    pub fn key_path(&self) -> PathBuf {
        self.dir.join(KEY_FILE)
    }

    /// The certificate in PEM form.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The certificate in DER form.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// True when this run created the CA (so the user still has to trust it).
    pub fn was_created(&self) -> bool {
        self.created
    }

    /// The SHA-256 fingerprint of the certificate, as colon-separated hex.
    pub fn sha256_fingerprint(&self) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, &self.cert_der);
        digest
            .as_ref()
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    }

    pub(crate) fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }
}

/// A random positive 16-byte serial number.
pub(crate) fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .expect("the OS random source is available");
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    SerialNumber::from_slice(&bytes)
}

fn short_id(public_key: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, public_key);
    digest.as_ref()[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A UTC date as `2026-12-03`.
fn utc_date(at: OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC)
        .format(time::macros::format_description!("[year]-[month]-[day]"))
        .unwrap_or_default()
}

fn pem_certificate(pem: &str) -> Result<Vec<u8>, String> {
    use rustls_pki_types::pem::{Error, PemObject};
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map(|c| c.to_vec())
        .map_err(|e| match e {
            Error::MissingSectionEnd { .. } => {
                "it is cut short: no -----END CERTIFICATE----- line".to_owned()
            }
            Error::NoItemsFound => "it holds no -----BEGIN CERTIFICATE----- block".to_owned(),
            e => e.to_string(),
        })
}

fn read_text(path: &Path) -> Result<String, CaError> {
    let bytes = fs::read(path).map_err(|source| CaError::Io {
        action: "read",
        path: path.to_owned(),
        source,
    })?;
    String::from_utf8(bytes).map_err(|_| CaError::Corrupt {
        path: path.to_owned(),
        what: "PEM file",
        reason: "it is not text".into(),
    })
}

fn create_private_dir(dir: &Path) -> Result<(), CaError> {
    if dir.exists() && !dir.is_dir() {
        return Err(CaError::NotADirectory {
            path: dir.to_owned(),
        });
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|source| CaError::Io {
        action: "create directory",
        path: dir.to_owned(),
        source,
    })
}

/// Creates `path` with `contents` and `mode` (on Unix), synced; fails if it exists.
pub(crate) fn write_new_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), CaError> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let io_err = |source| CaError::Io {
        action: "create",
        path: path.to_owned(),
        source,
    };
    let mut file = options.open(path).map_err(io_err)?;
    file.write_all(contents).map_err(io_err)?;
    file.sync_all().map_err(io_err)
}

#[cfg(unix)]
fn check_key_permissions(path: &Path) -> Result<(), CaError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = fs::metadata(path).map_err(|source| CaError::Io {
        action: "read",
        path: path.to_owned(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(CaError::InsecureKey {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_key_permissions(_path: &Path) -> Result<(), CaError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_then_reuses_the_same_ca() {
        let dir = tempfile::tempdir().unwrap();
        let first = CertificateAuthority::load_or_create(dir.path()).unwrap();
        assert!(first.was_created());
        let second = CertificateAuthority::load_or_create(dir.path()).unwrap();
        assert!(!second.was_created());
        assert_eq!(first.cert_der(), second.cert_der());
        assert_eq!(first.sha256_fingerprint(), second.sha256_fingerprint());
    }

    #[cfg(unix)]
    #[test]
    fn key_is_private_and_a_readable_key_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::load_or_create(dir.path()).unwrap();
        let mode = fs::metadata(ca.key_path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        fs::set_permissions(ca.key_path(), fs::Permissions::from_mode(0o644)).unwrap();
        let err = CertificateAuthority::load_or_create(dir.path()).unwrap_err();
        assert!(matches!(err, CaError::InsecureKey { .. }), "{err}");
        assert!(err.to_string().contains("chmod 600"));
    }

    #[test]
    fn a_corrupt_certificate_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        CertificateAuthority::load_or_create(dir.path()).unwrap();
        fs::write(dir.path().join(CERT_PEM_FILE), "garbage").unwrap();
        let err = CertificateAuthority::load_or_create(dir.path()).unwrap_err();
        assert!(matches!(err, CaError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains(CERT_PEM_FILE));
        // Never replaced silently.
        assert_eq!(
            fs::read_to_string(dir.path().join(CERT_PEM_FILE)).unwrap(),
            "garbage"
        );
    }

    #[test]
    fn a_key_from_another_ca_is_a_mismatch() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        CertificateAuthority::load_or_create(a.path()).unwrap();
        CertificateAuthority::load_or_create(b.path()).unwrap();
        fs::copy(b.path().join(KEY_FILE), a.path().join(KEY_FILE)).unwrap();
        let err = CertificateAuthority::load_or_create(a.path()).unwrap_err();
        assert!(matches!(err, CaError::Mismatch { .. }), "{err}");
    }

    #[test]
    fn a_missing_key_is_incomplete_not_recreated() {
        let dir = tempfile::tempdir().unwrap();
        CertificateAuthority::load_or_create(dir.path()).unwrap();
        fs::remove_file(dir.path().join(KEY_FILE)).unwrap();
        let err = CertificateAuthority::load_or_create(dir.path()).unwrap_err();
        assert!(matches!(err, CaError::Incomplete { .. }), "{err}");
        assert!(!dir.path().join(KEY_FILE).exists());
    }

    #[test]
    fn a_missing_der_copy_is_rewritten_from_the_pem() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::load_or_create(dir.path()).unwrap();
        fs::remove_file(ca.cert_der_path()).unwrap();
        CertificateAuthority::load_or_create(dir.path()).unwrap();
        assert_eq!(
            fs::read(ca.cert_der_path()).unwrap(),
            ca.cert_der().as_ref()
        );
    }
}
