//! Command-line interface: argument definitions and what each invocation runs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use regex::Regex;

use crate::ca::CertificateAuthority;
use crate::events;
use crate::headless::{print_flows, LineFormat};
use crate::proxy::{Proxy, ProxyConfig, DEFAULT_MAX_BODY};

/// Writes a line on stderr. Unlike `eprintln!` it never panics: a closed stderr must not
/// take the proxy down.
macro_rules! notice {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// kinspect — an intercepting HTTP(S) debugging proxy that understands Kinvey.
///
/// Point a device or program at it as its HTTP and HTTPS proxy, trust its CA once
/// (`kinspect-ca.pem` in the CA directory), and every request/response pair is recorded.
#[derive(Debug, Parser)]
#[command(name = "kinspect", version, about, long_about)]
pub struct Cli {
    /// Address to listen on. Non-loopback addresses expose the proxy to your network.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Directory of the CA (created on first run). Default: $KINSPECT_HOME or ~/.kinspect.
    #[arg(long, value_name = "DIR")]
    pub ca_dir: Option<PathBuf>,

    /// Also trust the CA certificates in this PEM file for origins (repeatable).
    #[arg(long, value_name = "FILE")]
    pub upstream_ca: Vec<PathBuf>,

    /// Do not verify origins' certificates (explicit opt-in; for broken test servers).
    #[arg(long)]
    pub insecure_upstream: bool,

    /// Pass hosts matching this regex through untouched (certificate-pinned apps).
    #[arg(long, value_name = "REGEX")]
    pub ignore_hosts: Option<Regex>,

    /// Bytes of each body kept in the capture (suffixes K, M, G); the rest is counted.
    #[arg(long, value_name = "BYTES", value_parser = parse_size, default_value_t = DEFAULT_MAX_BODY)]
    pub max_body: usize,

    /// Seconds to wait for an origin's response headers before answering 504.
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    pub upstream_timeout: u64,

    /// No UI: print one line per flow on stdout.
    #[arg(long)]
    pub headless: bool,

    /// With --headless: print one JSON object per flow instead of a line.
    #[arg(long)]
    pub jsonl: bool,
}

/// Parses `16M`, `512K`, `1G` or a plain byte count.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let (digits, multiplier) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let multiplier = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                _ => return Err(format!("unknown size suffix {c:?}: use K, M or G")),
            };
            (&text[..i], multiplier)
        }
        _ => (text, 1),
    };
    digits
        .trim()
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("{text:?} is not a size: write e.g. 16M, 512K or 1048576"))
}

/// The kinspect home directory: `$KINSPECT_HOME`, else `~/.kinspect`.
pub fn kinspect_home() -> anyhow::Result<PathBuf> {
    if let Some(home) = std::env::var_os("KINSPECT_HOME") {
        return Ok(PathBuf::from(home));
    }
    let user_home = std::env::var_os("HOME")
        .or_else(|| std::env::var_os("USERPROFILE"))
        .context("cannot find your home directory: set KINSPECT_HOME or pass --ca-dir")?;
    Ok(PathBuf::from(user_home).join(".kinspect"))
}

impl Cli {
    fn proxy_config(&self) -> ProxyConfig {
        ProxyConfig {
            listen: self.listen,
            upstream_ca: self.upstream_ca.clone(),
            insecure_upstream: self.insecure_upstream,
            ignore_hosts: self.ignore_hosts.clone(),
            max_body: self.max_body,
            upstream_timeout: Duration::from_secs(self.upstream_timeout),
            ..ProxyConfig::default()
        }
    }
}

/// Runs the invocation described by `cli`.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    crate::tls::install_crypto_provider();
    let ca_dir = match &cli.ca_dir {
        Some(dir) => dir.clone(),
        None => kinspect_home()?,
    };
    let ca = Arc::new(CertificateAuthority::load_or_create(&ca_dir)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run_proxy(cli, ca))
}

async fn run_proxy(cli: Cli, ca: Arc<CertificateAuthority>) -> anyhow::Result<()> {
    let (publisher, stream) = events::channel(events::DEFAULT_CAPACITY);
    let proxy = Proxy::bind(cli.proxy_config(), ca.clone(), publisher).await?;
    let addr = proxy.local_addr();
    notice!(
        "kinspect {} listening on http://{addr}",
        env!("CARGO_PKG_VERSION")
    );
    notice!(
        "CA certificate: {} (SHA-256 {})",
        ca.cert_pem_path().display(),
        ca.sha256_fingerprint()
    );
    if ca.was_created() {
        notice!("  new CA: trust it once on each device (see certs/README.md)");
    }
    notice!(
        "try: curl -x http://{addr} --cacert {} https://example.com/",
        ca.cert_pem_path().display()
    );
    if !cli.headless {
        notice!(
            "(the terminal UI is not built yet: flows are printed as lines, as with --headless)"
        );
    }
    let format = if cli.jsonl {
        LineFormat::JsonLines
    } else {
        LineFormat::Text
    };
    let printer = std::thread::Builder::new()
        .name("kinspect-printer".into())
        .spawn(move || print_flows(stream, format, std::io::stdout().lock()))
        .context("cannot start the output thread")?;
    let handle = proxy.spawn();
    tokio::signal::ctrl_c()
        .await
        .context("cannot wait for Ctrl-C")?;
    drop(handle);
    drop(printer);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_and_without_suffixes() {
        assert_eq!(parse_size("1048576"), Ok(1048576));
        assert_eq!(parse_size("16M"), Ok(16 << 20));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert!(parse_size("12X").unwrap_err().contains("suffix"));
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn the_command_line_parses() {
        let cli = Cli::try_parse_from([
            "kinspect",
            "--listen",
            "127.0.0.1:0",
            "--headless",
            "--jsonl",
            "--max-body",
            "1M",
            "--ignore-hosts",
            "pinned\\.example",
        ])
        .unwrap();
        assert!(cli.headless && cli.jsonl);
        assert_eq!(cli.max_body, 1 << 20);
        assert!(Cli::try_parse_from(["kinspect", "--ignore-hosts", "("]).is_err());
    }
}
