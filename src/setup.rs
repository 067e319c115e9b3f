//! Pointing devices and programs at kinspect: the CA's description and export, the
//! shell exports of `kinspect env`, and the LAN addresses a phone should enter.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use anyhow::Context;
use base64::Engine;

use crate::ca::{write_new_file, CertificateAuthority, CERT_DER_FILE, CERT_PEM_FILE, KEY_FILE};
use crate::cli::ShellKind;
use crate::proxy::{ProxyCredentials, CA_HOST};

/// File name of the CA bundle `kinspect env` points OpenSSL, Python and curl at: the
/// system's roots plus the kinspect CA, so that programs still reach other hosts.
pub const BUNDLE_FILE: &str = "ca-bundle.pem";

/// `kinspect ca`: where the CA is, what it is, how to install it; `--export` copies it.
pub fn show_ca(dir: &Path, export: Option<&Path>, with_key: bool) -> anyhow::Result<()> {
    let ca = CertificateAuthority::load_or_create(dir)?;
    let (_, cert) = x509_parser::parse_x509_certificate(ca.cert_der())
        .map_err(|e| anyhow::anyhow!("cannot parse {}: {e}", ca.cert_pem_path().display()))?;
    let mut out = String::new();
    let _ = writeln!(out, "CA directory:  {}", ca.dir().display());
    let _ = writeln!(out, "Certificate:   {} (PEM)", ca.cert_pem_path().display());
    let _ = writeln!(
        out,
        "               {} (DER, for Windows, Android, iOS)",
        ca.cert_der_path().display()
    );
    let _ = writeln!(
        out,
        "Private key:   {} (mode 0600; never share it)",
        ca.key_path().display()
    );
    let _ = writeln!(out, "Subject:       {}", cert.subject());
    let _ = writeln!(out, "SHA-256:       {}", ca.sha256_fingerprint());
    let _ = writeln!(
        out,
        "Valid:         {} to {}",
        cert.validity().not_before,
        cert.validity().not_after
    );
    let _ = writeln!(
        out,
        "Install:       on a device using the proxy, open http://{CA_HOST}; elsewhere see certs/README.md"
    );
    print!("{out}");
    if let Some(target) = export {
        export_ca(dir, target, with_key)?;
    }
    Ok(())
}

/// Copies the CA's certificate files (and with `with_key` its key, mode 0600) into
/// `target`. A file already there is left alone when it is the same and refused when it
/// differs (another CA's, say): nothing is ever overwritten, so exporting into the CA
/// directory itself, or into another CA's, destroys nothing.
fn export_ca(dir: &Path, target: &Path, with_key: bool) -> anyhow::Result<()> {
    if target.exists() && !target.is_dir() {
        anyhow::bail!(
            "--export takes a directory, and {} is a file: name a directory (it is created if missing)",
            target.display()
        );
    }
    let mut files = vec![(CERT_PEM_FILE, 0o644), (CERT_DER_FILE, 0o644)];
    if with_key {
        files.push((KEY_FILE, 0o600));
    }
    // Every file checked before any is written: a refusal leaves the target as it was.
    let mut to_write = Vec::new();
    for (name, mode) in files {
        let from = dir.join(name);
        let contents =
            std::fs::read(&from).with_context(|| format!("cannot read {}", from.display()))?;
        let to = target.join(name);
        match std::fs::read(&to) {
            Ok(existing) if existing == contents => println!("already there: {}", to.display()),
            Ok(_) => anyhow::bail!(
                "{} already exists and is not this CA's: nothing was exported; remove it \
                 or export to another directory",
                to.display()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                to_write.push((to, contents, mode));
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", to.display())),
        }
    }
    std::fs::create_dir_all(target)
        .with_context(|| format!("cannot create {}", target.display()))?;
    for (to, contents, mode) in to_write {
        write_new_file(&to, &contents, mode)?;
        println!("exported {}", to.display());
    }
    Ok(())
}

/// Writes the bundle of the system's roots plus the kinspect CA into the CA directory.
fn write_bundle(ca: &CertificateAuthority) -> anyhow::Result<std::path::PathBuf> {
    let mut pem = String::new();
    for cert in rustls_native_certs::load_native_certs().certs {
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        let encoded = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
        for line in encoded.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    pem.push_str(ca.cert_pem());
    let path = ca.dir().join(BUNDLE_FILE);
    std::fs::write(&path, pem).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// The proxy's URL for programs on this machine: a proxy listening on every address
/// (`0.0.0.0`, `::`) is reached on 127.0.0.1.
pub fn local_proxy_url(listen: SocketAddr) -> String {
    format!("http://{}", local_proxy_addr(listen))
}

/// The address a program on this machine reaches a proxy listening on `listen` at: the
/// loopback address when it listens on all addresses.
pub fn local_proxy_addr(listen: SocketAddr) -> SocketAddr {
    let host = match listen.ip() {
        ip if ip.is_unspecified() => IpAddr::from([127, 0, 0, 1]),
        ip => ip,
    };
    SocketAddr::new(host, listen.port())
}

/// The `kinspect env` exports for a proxy on `listen` (asking for `credentials`) with the
/// CA in `dir`.
pub fn env_exports(
    dir: &Path,
    listen: SocketAddr,
    credentials: Option<&ProxyCredentials>,
    shell: ShellKind,
) -> anyhow::Result<String> {
    let ca = CertificateAuthority::load_or_create(dir)?;
    let bundle = write_bundle(&ca)?;
    let shown = local_proxy_url(listen);
    let proxy = match credentials {
        Some(credentials) => format!(
            "http://{}@{}",
            credentials.url_userinfo(),
            local_proxy_addr(listen)
        ),
        None => shown.clone(),
    };
    // Absolute: the variables outlive a `cd` in the shell that evaluates them.
    let absolute = |path: &Path| {
        std::path::absolute(path)
            .unwrap_or_else(|_| path.to_owned())
            .display()
            .to_string()
    };
    let bundle = absolute(&bundle);
    let ca_pem = absolute(&ca.cert_pem_path());
    let vars: [(&str, &str); 12] = [
        ("HTTP_PROXY", &proxy),
        ("HTTPS_PROXY", &proxy),
        ("http_proxy", &proxy),
        ("https_proxy", &proxy),
        // Empty, so that no earlier list sends local servers around kinspect.
        ("NO_PROXY", ""),
        ("no_proxy", ""),
        ("SSL_CERT_FILE", &bundle),
        ("REQUESTS_CA_BUNDLE", &bundle),
        ("CURL_CA_BUNDLE", &bundle),
        ("NODE_EXTRA_CA_CERTS", &ca_pem),
        // Node reads HTTP(S)_PROXY only when asked (22.21+, 24.5+); older Node needs a
        // proxy agent in the program.
        ("NODE_USE_ENV_PROXY", "1"),
        ("KINSPECT_CA", &ca_pem),
    ];
    let quote = |v: &str| format!("'{}'", v.replace('\'', r"'\''"));
    // The command run may have had other options than the defaults: none is repeated.
    let how = match shell {
        ShellKind::Sh | ShellKind::Bash | ShellKind::Zsh => "eval this output (eval \"$(…)\")",
        ShellKind::Fish => "pipe this output to `source`",
        ShellKind::Powershell => "pipe this output to Invoke-Expression",
    };
    let mut out =
        format!("# kinspect on {shown}: {how} to send this shell's programs through it\n");
    for (name, value) in vars {
        let _ = match shell {
            ShellKind::Sh | ShellKind::Bash | ShellKind::Zsh => {
                writeln!(out, "export {name}={}", quote(value))
            }
            // fish's single quotes take `\\` and `\'` as escapes, and nothing else.
            ShellKind::Fish => {
                let quoted = value.replace('\\', r"\\").replace('\'', r"\'");
                writeln!(out, "set -gx {name} '{quoted}'")
            }
            ShellKind::Powershell => writeln!(out, "$env:{name} = {}", powershell_quoted(value)),
        };
    }
    Ok(out)
}

/// `value` as a PowerShell string in single quotes, where nothing is special but a
/// single quote, which is doubled; PowerShell takes the typographic ones (U+2018 to
/// U+201B) for quotes too.
fn powershell_quoted(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('\'');
    for c in value.chars() {
        quoted.push(c);
        if matches!(c, '\'' | '\u{2018}'..='\u{201B}') {
            quoted.push(c);
        }
    }
    quoted.push('\'');
    quoted
}

/// `kinspect env`.
pub fn print_env(
    dir: &Path,
    listen: SocketAddr,
    credentials: Option<&ProxyCredentials>,
    shell: ShellKind,
) -> anyhow::Result<()> {
    print!("{}", env_exports(dir, listen, credentials, shell)?);
    Ok(())
}

/// The addresses other devices on the network can use to reach a proxy bound to
/// `listen`: none for a loopback listener; the machine's non-loopback addresses for an
/// unspecified one (`0.0.0.0`); the address itself otherwise.
pub fn lan_addresses(listen: SocketAddr) -> Vec<SocketAddr> {
    let ip = listen.ip();
    if ip.is_loopback() {
        return Vec::new();
    }
    if !ip.is_unspecified() {
        return vec![listen];
    }
    let mut addresses: Vec<SocketAddr> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .map(|interface| interface.ip())
        .filter(|ip| !ip.is_loopback() && (ip.is_ipv4() || listen.is_ipv6()))
        .filter(|ip| match ip {
            IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80,
            IpAddr::V4(_) => true,
        })
        .map(|ip| SocketAddr::new(ip, listen.port()))
        .collect();
    addresses.sort();
    addresses.dedup();
    addresses
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxy_on_every_address_is_reached_on_loopback() {
        let url = |listen: &str| local_proxy_url(listen.parse().unwrap());
        assert_eq!(url("0.0.0.0:8080"), "http://127.0.0.1:8080");
        assert_eq!(url("[::]:9000"), "http://127.0.0.1:9000");
        assert_eq!(url("192.0.2.7:8080"), "http://192.0.2.7:8080");
    }

    #[test]
    fn loopback_listeners_have_no_lan_address_and_specific_ones_are_themselves() {
        assert!(lan_addresses("127.0.0.1:8080".parse().unwrap()).is_empty());
        let specific: SocketAddr = "192.0.2.7:8080".parse().unwrap();
        assert_eq!(lan_addresses(specific), [specific]);
        for address in lan_addresses("0.0.0.0:8080".parse().unwrap()) {
            assert!(!address.ip().is_loopback() && address.port() == 8080);
        }
    }

    #[test]
    fn env_exports_in_every_syntax() {
        let dir = tempfile::tempdir().unwrap();
        let listen: SocketAddr = "0.0.0.0:9090".parse().unwrap();
        let sh = env_exports(dir.path(), listen, None, ShellKind::Sh).unwrap();
        assert!(
            sh.contains("export HTTPS_PROXY='http://127.0.0.1:9090'"),
            "{sh}"
        );
        assert!(sh.contains("export NO_PROXY=''"));
        assert!(sh.contains(&format!(
            "NODE_EXTRA_CA_CERTS='{}'",
            dir.path().join(CERT_PEM_FILE).display()
        )));
        let fish = env_exports(dir.path(), listen, None, ShellKind::Fish).unwrap();
        assert!(fish.contains("set -gx SSL_CERT_FILE '"), "{fish}");
        for shell in [ShellKind::Bash, ShellKind::Zsh] {
            assert_eq!(env_exports(dir.path(), listen, None, shell).unwrap(), sh);
        }
        let credentials: ProxyCredentials = "it's:me".parse().unwrap();
        let powershell = env_exports(
            dir.path(),
            listen,
            Some(&credentials),
            ShellKind::Powershell,
        )
        .unwrap();
        assert!(
            powershell.contains("$env:HTTPS_PROXY = 'http://it%27s:me@127.0.0.1:9090'"),
            "{powershell}"
        );
        assert!(powershell.contains("$env:NO_PROXY = ''"), "{powershell}");
        // Quotes in a path, in each syntax.
        let quoted_dir = dir.path().join(r"ada's ‘ca’ \n");
        let ca = quoted_dir.join(CERT_PEM_FILE).display().to_string();
        let line = |shell| {
            let exports = env_exports(&quoted_dir, listen, None, shell).unwrap();
            let line = exports.lines().find(|l| l.contains("NODE_EXTRA_CA_CERTS"));
            line.unwrap().to_owned()
        };
        assert_eq!(
            line(ShellKind::Sh),
            format!("export NODE_EXTRA_CA_CERTS='{}'", ca.replace('\'', r"'\''"))
        );
        assert_eq!(
            line(ShellKind::Fish),
            format!(
                "set -gx NODE_EXTRA_CA_CERTS '{}'",
                ca.replace('\\', r"\\").replace('\'', r"\'")
            )
        );
        assert_eq!(
            line(ShellKind::Powershell),
            format!(
                "$env:NODE_EXTRA_CA_CERTS = '{}'",
                ca.replace('\'', "''").replace('‘', "‘‘").replace('’', "’’")
            )
        );
        let bundle = std::fs::read_to_string(dir.path().join(BUNDLE_FILE)).unwrap();
        let ca = std::fs::read_to_string(dir.path().join(CERT_PEM_FILE)).unwrap();
        assert!(
            bundle.ends_with(&ca),
            "the bundle ends with the kinspect CA"
        );
    }
}
