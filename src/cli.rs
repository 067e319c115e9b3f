//! Command-line interface: argument definitions and what each invocation runs.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use regex::Regex;

use crate::ca::CertificateAuthority;
use crate::capture::{default_capture_path, CaptureReader, CaptureWriter, Detail, Recorder};
use crate::demo::script::{self, ScriptOptions};
use crate::demo::simulator::Simulator;
use crate::events;
use crate::filter::Filter;
use crate::har::{self, ExportOptions, HarWriter};
use crate::headless::{HeadlessViewer, LineFormat, LinePrinter};
use crate::kinvey::{self, report::support_report};
use crate::proxy::{HostOverrides, ParentProxy, Proxy, ProxyConfig, ProxyCredentials};
use crate::setup;
use crate::tui::{self, state::SourceInfo, Feed};

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
/// Without a command it runs the proxy: point a device or program at it as its HTTP and
/// HTTPS proxy, trust its CA once (`kinspect-ca.pem` in the CA directory), and every
/// request/response pair is recorded in a capture file (SQLite).
#[derive(Debug, Parser)]
#[command(
    name = "kinspect",
    version,
    about,
    long_about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// What to do; without one, run the proxy.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Proxy options (the demo takes them after `demo`).
    #[command(flatten)]
    pub proxy: ProxyArgs,
}

/// Where the CA lives.
#[derive(Debug, Args)]
pub struct CaDirArg {
    /// Directory of the CA (created on first run). Default: $KINSPECT_HOME or ~/.kinspect.
    #[arg(long, value_name = "DIR")]
    pub ca_dir: Option<PathBuf>,
}

impl CaDirArg {
    fn ca_dir(&self) -> anyhow::Result<PathBuf> {
        match &self.ca_dir {
            Some(dir) => Ok(dir.clone()),
            None => kinspect_home(),
        }
    }
}

/// The commands besides running the proxy.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the flows of a capture file or a HAR, one line each (or one JSON object each).
    Ls {
        /// The capture file (.db) or a HAR file (Chrome, Firefox, mitmproxy, Charles, kinspect).
        file: PathBuf,
        /// One JSON object per line instead of a text line.
        #[arg(long)]
        json: bool,
        /// List only the flows matching this filter expression, e.g. `~k & ~c 5xx`.
        #[arg(long, value_name = "EXPR")]
        filter: Option<String>,
    },
    /// Browse a capture file (it may still be growing) or a HAR in the terminal UI.
    Open {
        /// The capture file (.db) or a HAR file.
        file: PathBuf,
    },
    /// Print the Kinvey support report of one exchange, found by its X-Kinvey-Request-ID
    /// (exact, or a unique prefix). Credentials, tokens and secrets are redacted.
    Report {
        /// The capture file (.db) or a HAR file.
        file: PathBuf,
        /// The request id, or the first characters of it.
        #[arg(long, value_name = "ID")]
        request_id: String,
    },
    /// Run a Kinvey backend simulator and a scripted app through the proxy: realistic
    /// traffic with every kind of Kinvey error, no account needed.
    Demo(Box<ProxyArgs>),
    /// Show the CA: its files, SHA-256 fingerprint, validity and how to install it.
    Ca {
        /// Also copy the certificate (PEM and DER) into this directory.
        #[arg(long, value_name = "DIR")]
        export: Option<PathBuf>,
        /// With --export: copy the private key too (mode 0600). Anyone holding it can
        /// impersonate any site to devices that trust the CA.
        #[arg(long, requires = "export")]
        with_key: bool,
        #[command(flatten)]
        ca: CaDirArg,
    },
    /// Print shell exports that point programs at kinspect (proxy variables and CA
    /// bundles for curl, Python, Node, OpenSSL): `eval "$(kinspect env)"`.
    Env {
        /// The shell syntax.
        #[arg(long, value_enum, default_value = "sh")]
        shell: ShellKind,
        /// The address the proxy listens on [default: 127.0.0.1:8080].
        #[arg(long, value_name = "ADDR", value_parser = parse_listen)]
        listen: Option<SocketAddr>,
        /// The proxy's --proxy-auth credentials, written into the proxy URLs
        /// (`http://USER:PASS@…`) so that programs send them.
        #[arg(
            long,
            value_name = "USER:PASS",
            env = "KINSPECT_PROXY_AUTH",
            hide_env_values = true
        )]
        proxy_auth: Option<ProxyCredentials>,
        #[command(flatten)]
        ca: CaDirArg,
    },
    /// Export a capture (or the flows matching --filter) as a HAR 1.2 file, with
    /// credentials, cookies, tokens and secrets redacted unless --no-redact.
    Har {
        /// The capture file (.db) or a HAR to re-export.
        file: PathBuf,
        /// Where to write the HAR (`-` for standard output). An existing file is
        /// replaced only once the new one is whole; a symbolic link's target is written.
        #[arg(short = 'o', long = "output", value_name = "OUT.har")]
        output: PathBuf,
        /// Keep credentials, cookies, tokens and secrets in the export (explicit opt-in).
        #[arg(long)]
        no_redact: bool,
        /// Export only the flows matching this filter expression, e.g. `~k & ~c 5xx`.
        #[arg(long, value_name = "EXPR")]
        filter: Option<String>,
    },
}

/// Shell syntaxes `kinspect env` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ShellKind {
    /// `export NAME='value'`.
    Sh,
    /// `export NAME='value'`.
    Bash,
    /// `export NAME='value'`.
    Zsh,
    /// `set -gx NAME 'value'`.
    Fish,
    /// `$env:NAME = 'value'`.
    #[value(alias = "pwsh")]
    Powershell,
}

/// Options of the proxy itself.
#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// Address to listen on [default: 127.0.0.1:8080; for the demo, a free port].
    /// Non-loopback addresses expose the proxy to your network. A bare port means
    /// 127.0.0.1, and `localhost:PORT` too.
    #[arg(long, value_name = "ADDR", value_parser = parse_listen)]
    pub listen: Option<SocketAddr>,

    #[command(flatten)]
    pub ca: CaDirArg,

    /// Capture file to record into (appended to if it exists).
    /// Default: a new file in ~/.kinspect/captures/ ($KINSPECT_HOME/captures/ when set)
    /// named after the start time.
    #[arg(long, value_name = "FILE")]
    pub capture: Option<PathBuf>,

    /// Also trust the CA certificates in this PEM (or DER) file for origins (repeatable).
    #[arg(long, value_name = "FILE")]
    pub upstream_ca: Vec<PathBuf>,

    /// Do not verify origins' certificates (explicit opt-in; for broken test servers).
    #[arg(long)]
    pub insecure_upstream: bool,

    /// Pass hosts matching this regex through untouched (certificate-pinned apps).
    #[arg(long, value_name = "REGEX")]
    pub ignore_hosts: Option<Regex>,

    /// Bytes of each body kept in the capture (suffixes K, M, G); the rest is counted.
    #[arg(long, value_name = "BYTES", value_parser = parse_size, default_value = "16M")]
    pub max_body: usize,

    /// Seconds to wait for an origin's response headers before answering 504.
    #[arg(long, value_name = "SECS", default_value_t = 120, value_parser = parse_seconds)]
    pub upstream_timeout: u64,

    /// Seconds allowed to resolve, connect and finish TLS with an origin (then 504).
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = parse_seconds)]
    pub connect_timeout: u64,

    /// Seconds a client may take to send a request's headers or its TLS handshake; also
    /// how long an idle HTTP/1 keep-alive connection is kept.
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = parse_seconds)]
    pub client_timeout: u64,

    /// Seconds an HTTP/2 client connection may sit with no bytes moving before it is
    /// closed (requests in flight finish first).
    #[arg(long, value_name = "SECS", default_value_t = 120, value_parser = parse_seconds)]
    pub idle_timeout: u64,

    /// Largest request head (request line and headers) accepted; larger gets 431.
    #[arg(long, value_name = "BYTES", value_parser = parse_head_size, default_value = "64K")]
    pub max_header_bytes: usize,

    /// Most header fields accepted in one request (more gets 431); raised past 100, in
    /// an origin's HTTP/1.1 response too (more is a 502).
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = parse_count)]
    pub max_headers: usize,

    /// Most client connections served at once; more get a 503 and are closed.
    #[arg(long, value_name = "N", default_value_t = 4096, value_parser = parse_count)]
    pub max_connections: usize,

    /// Accept clients from public IP ranges (by default only loopback and private
    /// networks may use a proxy listening on a non-loopback address).
    #[arg(long)]
    pub allow_public: bool,

    /// Require these proxy credentials (Basic) on every proxied request; others get 407.
    #[arg(
        long,
        value_name = "USER:PASS",
        env = "KINSPECT_PROXY_AUTH",
        hide_env_values = true
    )]
    pub proxy_auth: Option<ProxyCredentials>,

    /// Reach origins through this HTTP proxy: http://[USER:PASS@]HOST:PORT
    ///
    /// For a network that reaches the internet only through a proxy. Requests to origins,
    /// except to this machine's own (localhost), go through it: HTTPS in a CONNECT tunnel,
    /// plain HTTP in absolute form. A password is better given in the environment
    /// variable than on a command line other users can list.
    #[arg(
        long,
        value_name = "URL",
        env = "KINSPECT_UPSTREAM_PROXY",
        hide_env_values = true
    )]
    // Parsed when the proxy starts, not by clap: clap's errors repeat the value, which
    // may hold a password, and a bad variable would stop every other command too.
    pub upstream_proxy: Option<String>,

    /// No UI: print one line per flow on stdout (the demo exits when its script ends).
    #[arg(long)]
    pub headless: bool,

    /// With --headless: print one JSON object per flow instead of a line.
    #[arg(long, requires = "headless")]
    pub jsonl: bool,

    /// Reverse-proxy mode: requests sent to kinspect itself go to this base URL (point an
    /// SDK's base URL at kinspect; no CA needed).
    #[arg(long, value_name = "URL", value_parser = parse_reverse)]
    pub reverse: Option<http::Uri>,

    /// Show only flows matching this filter expression (everything is still captured).
    /// See `?` in the UI or the README for the language, e.g. `~k & ~c 5xx`.
    #[arg(long, value_name = "EXPR")]
    pub filter: Option<String>,
}

/// Longest timeout taken: a year (deadlines further off overflow the clock).
const MAX_SECONDS: u64 = 365 * 24 * 3600;

/// Parses a whole number of seconds, from 1 to [`MAX_SECONDS`].
fn parse_seconds(text: &str) -> Result<u64, String> {
    let too_long = || {
        format!(
            "{} seconds is longer than kinspect waits: write at most {MAX_SECONDS} (a year)",
            text.trim()
        )
    };
    let digits = text.trim().strip_prefix('+').unwrap_or(text.trim());
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        // More digits than a u64 holds is too long as well.
        return match digits.parse::<u64>() {
            Ok(0) => Err("0 seconds would give up at once: write at least 1".into()),
            Ok(n) if n <= MAX_SECONDS => Ok(n),
            _ => Err(too_long()),
        };
    }
    match digits.parse::<f64>() {
        Ok(secs) if secs > MAX_SECONDS as f64 => Err(too_long()),
        Ok(secs) if secs.is_finite() && secs > 0.0 => Err(format!(
            "{text:?} is not a whole number of seconds: write {}",
            secs.ceil()
        )),
        _ => Err(format!("{text:?} is not a whole number of seconds")),
    }
}

/// Parses a `--reverse` base URL: `http` or `https` with a host.
pub fn parse_reverse(text: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = text
        .parse()
        .map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    if uri.query().is_some() {
        return Err(format!(
            "{text:?} has a query: each request keeps its own query under the base URL's \
             path, so give the base URL without one, e.g. https://baas.kinvey.com"
        ));
    }
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(_)) => Ok(uri),
        _ => Err(format!(
            "{text:?} must be an http:// or https:// URL with a host, e.g. https://baas.kinvey.com"
        )),
    }
}

/// Parses `16M`, `512K`, `1G` or a plain byte count; `KB`/`KiB` and the like read as
/// `K` (every suffix counts in 1024s).
pub fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let not_a_size = || format!("{text:?} is not a size: write e.g. 16M, 512K or 1048576");
    let (digits, suffix) = text.split_at(
        text.find(|c: char| c.is_ascii_alphabetic())
            .unwrap_or(text.len()),
    );
    let digits = digits.trim();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(not_a_size());
    }
    let multiplier: usize = match suffix.to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        _ => {
            return Err(format!(
                "unknown size suffix {suffix:?} in {text:?}: use K, M or G, e.g. 16M"
            ))
        }
    };
    digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| {
            format!(
                "{text:?} is more bytes than kinspect can count: write at most {}G",
                usize::MAX >> 30
            )
        })
}

/// Parses a `--listen` address: `IP:PORT`, `localhost:PORT` or a bare `PORT` (both on
/// 127.0.0.1).
fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    let port_only = match text.split_once(':') {
        Some((host, port)) if host.eq_ignore_ascii_case("localhost") => port,
        _ => text,
    };
    if let Ok(port) = port_only.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    let port = text.rsplit_once(':').map_or(text, |(_, port)| port);
    if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_err()
    {
        return Err(format!(
            "{text:?}: port {port} is out of range: write a port from 0 to 65535 \
             (0 picks a free one)"
        ));
    }
    text.parse().map_err(|_| {
        format!(
            "{text:?} is not an address to listen on: write e.g. 127.0.0.1:8080, 8080, \
             0.0.0.0:8080 (every interface) or [::1]:8080"
        )
    })
}

/// Parses a request head limit: a size of at least 1K (below that no request passes).
fn parse_head_size(text: &str) -> Result<usize, String> {
    match parse_size(text)? {
        n if n < 1024 => Err(format!(
            "{text:?} would refuse every request: write at least 1K, e.g. 64K"
        )),
        n => Ok(n),
    }
}

/// Parses a count of at least one (zero would refuse every request).
fn parse_count(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("0 would refuse every request: write at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{text:?} is not a whole number")),
    }
}

/// The kinspect home directory: `$KINSPECT_HOME`, else `~/.kinspect`.
pub fn kinspect_home() -> anyhow::Result<PathBuf> {
    // Empty is unset, as for HOME: not the current directory.
    if let Some(home) = std::env::var_os("KINSPECT_HOME").filter(|home| !home.is_empty()) {
        return Ok(PathBuf::from(home));
    }
    let user_home = std::env::var_os("HOME")
        .or_else(|| std::env::var_os("USERPROFILE"))
        .context("cannot find your home directory: set KINSPECT_HOME or pass --ca-dir")?;
    Ok(PathBuf::from(user_home).join(".kinspect"))
}

/// The default listen address of the proxy.
const DEFAULT_LISTEN: ([u8; 4], u16) = ([127, 0, 0, 1], 8080);

impl ProxyArgs {
    fn proxy_config(&self, default_listen: SocketAddr) -> anyhow::Result<ProxyConfig> {
        Ok(ProxyConfig {
            listen: self.listen.unwrap_or(default_listen),
            upstream_ca: self.upstream_ca.clone(),
            insecure_upstream: self.insecure_upstream,
            ignore_hosts: self.ignore_hosts.clone(),
            max_body: self.max_body,
            upstream_timeout: Duration::from_secs(self.upstream_timeout),
            connect_timeout: Duration::from_secs(self.connect_timeout),
            client_header_timeout: Duration::from_secs(self.client_timeout),
            idle_timeout: Duration::from_secs(self.idle_timeout),
            max_header_bytes: self.max_header_bytes,
            max_headers: self.max_headers,
            max_connections: self.max_connections,
            allow_public: self.allow_public,
            proxy_auth: self.proxy_auth.clone(),
            reverse: self.reverse.clone(),
            upstream_proxy: self.parent_proxy()?,
            ..ProxyConfig::default()
        })
    }

    /// `--upstream-proxy` (or `KINSPECT_UPSTREAM_PROXY`), parsed.
    fn parent_proxy(&self) -> anyhow::Result<Option<ParentProxy>> {
        let Some(url) = &self.upstream_proxy else {
            return Ok(None);
        };
        match url.parse() {
            Ok(parent) => Ok(Some(parent)),
            Err(e) => anyhow::bail!("--upstream-proxy (or KINSPECT_UPSTREAM_PROXY): {e}"),
        }
    }

    fn parsed_filter(&self) -> anyhow::Result<Option<Filter>> {
        self.filter.as_deref().map(parse_filter).transpose()
    }

    fn line_format(&self) -> LineFormat {
        if self.jsonl {
            LineFormat::JsonLines
        } else {
            LineFormat::Text
        }
    }
}

/// Parses a filter for the command line: an error shows the expression and a caret
/// under the column at fault.
fn parse_filter(text: &str) -> anyhow::Result<Filter> {
    Filter::parse(text).map_err(|e| anyhow::anyhow!("bad --filter {e}\n{}", e.pointer(text)))
}

/// Runs the invocation described by `cli`.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Some(Command::Ls { file, json, filter }) => list(&file, json, filter.as_deref()),
        Some(Command::Open { file }) => open(file),
        Some(Command::Report { file, request_id }) => report(&file, &request_id),
        Some(Command::Demo(proxy)) => run_session(*proxy, Mode::Demo),
        Some(Command::Har {
            file,
            output,
            no_redact,
            filter,
        }) => export_har(&file, &output, filter.as_deref(), !no_redact),
        Some(Command::Ca {
            export,
            with_key,
            ca,
        }) => setup::show_ca(&ca.ca_dir()?, export.as_deref(), with_key),
        Some(Command::Env {
            shell,
            listen,
            proxy_auth,
            ca,
        }) => {
            let listen = listen.unwrap_or(SocketAddr::from(DEFAULT_LISTEN));
            if listen.port() == 0 {
                anyhow::bail!(
                    "--listen {listen}: port 0 is where kinspect picks a free port; give the \
                     port it printed when it started (`proxy http://…:PORT`)"
                );
            }
            setup::print_env(&ca.ca_dir()?, listen, proxy_auth.as_ref(), shell)
        }
        None => run_session(cli.proxy, Mode::Proxy),
    }
}

/// `kinspect ls`: the flows of a capture (those matching `filter`), as lines or JSON
/// objects.
fn list(file: &Path, json: bool, filter: Option<&str>) -> anyhow::Result<()> {
    let filter = filter.map(parse_filter).transpose()?;
    let readable = readable(file)?;
    let reader = CaptureReader::open(&readable.capture)?;
    let needs = |check: fn(&Filter) -> bool| filter.as_ref().is_some_and(check);
    let (format, mut detail) = if json {
        (LineFormat::JsonLines, Detail::Headers)
    } else {
        (LineFormat::Text, Detail::Summary)
    };
    if needs(Filter::needs_bodies) {
        detail = Detail::Full;
    } else if needs(Filter::needs_headers) && detail == Detail::Summary {
        detail = Detail::Headers;
    }
    let mut printer = LinePrinter::new(std::io::stdout().lock(), format);
    reader.for_each(detail, |stored| {
        if filter.as_ref().is_some_and(|f| !f.matches(&stored)) {
            return;
        }
        // A WebSocket's line counts its messages (counted in SQL unless read already).
        let counts = match &stored.flow.websocket {
            Some(log) => Some(log.counts()),
            None if stored.flow.status() == Some(101) => {
                reader.websocket_counts(stored.flow.id).unwrap_or_else(|e| {
                    notice!(
                        "flow {}: its WebSocket messages were not counted: {e}",
                        stored.flow.id
                    );
                    None
                })
            }
            None => None,
        };
        printer.print_counted(&stored, counts.as_ref());
    })?;
    printer.flush();
    say_flows_left_out(&reader);
    Ok(())
}

/// A capture to read a file from.
struct Readable {
    /// For a HAR, the temporary directory of the capture it was imported into, removed
    /// when this goes.
    import: Option<tempfile::TempDir>,
    /// The capture: the file itself, or the HAR's import.
    capture: PathBuf,
    /// Entries of the HAR that could not be read (each said on stderr).
    har_left_out: usize,
}

/// A capture to read `file` from: the file itself, or, for a HAR, a capture it was
/// imported into.
fn readable(file: &Path) -> anyhow::Result<Readable> {
    if !is_har(file) {
        if crate::capture::fold_left_log(file) {
            notice!(
                "{}: the flows a kinspect that did not stop cleanly left in its -wal file are folded back in",
                file.display()
            );
        }
        return Ok(Readable {
            import: None,
            capture: file.to_owned(),
            har_left_out: 0,
        });
    }
    let (guard, capture, skipped) = har::import_to_capture(file)?;
    say_left_out(&skipped, "", ("entry", "entries"));
    Ok(Readable {
        import: Some(guard),
        capture,
        har_left_out: skipped.len(),
    })
}

/// Says on stderr what a read left out (`what`: its name, one and many), the first few
/// in full: `left out: {prefix}{item}`.
fn say_left_out(items: &[impl std::fmt::Display], prefix: &str, what: (&str, &str)) {
    const SHOWN: usize = 5;
    for item in items.iter().take(SHOWN) {
        notice!("left out: {prefix}{item}");
    }
    if items.len() > SHOWN {
        let more = items.len() - SHOWN;
        let what = if more == 1 { what.0 } else { what.1 };
        notice!("left out {more} more {what}");
    }
}

/// The flows `reader` passed over so far, said on stderr: how many.
fn say_flows_left_out(reader: &CaptureReader) -> usize {
    let left_out = reader.take_left_out();
    let prefix = format!("{}: ", reader.path().display());
    say_left_out(&left_out, &prefix, ("flow", "flows"));
    left_out.len()
}

/// True when both paths name one existing file.
fn same_file(a: &Path, b: &Path) -> bool {
    matches!((a.canonicalize(), b.canonicalize()), (Ok(a), Ok(b)) if a == b)
}

/// True for a HAR: a file whose content opens a JSON object (after a byte order mark,
/// if any), or one named `*.har` that is not a SQLite file (a capture, whatever its name).
fn is_har(file: &Path) -> bool {
    use std::io::Read;
    let mut start = [0u8; 64];
    let n = std::fs::File::open(file)
        .and_then(|mut f| f.read(&mut start))
        .unwrap_or(0);
    let start = &start[..n];
    if start.starts_with(b"SQLite format 3\0") {
        return false;
    }
    let opens_object = har::utf8_json(start)
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{');
    opens_object
        || file
            .extension()
            .is_some_and(|ext| ext.eq_ignore_ascii_case("har"))
}

/// Where `kinspect har` writes.
enum HarOutput {
    /// `-o -`.
    Stdout,
    /// A device or FIFO (`/dev/stdout`, a named pipe): written in place.
    Special(PathBuf),
    /// A regular file, new or replaced whole; a symbolic link's target, not the link.
    File(PathBuf),
}

impl HarOutput {
    fn of(output: &Path) -> anyhow::Result<HarOutput> {
        if output == Path::new("-") {
            return Ok(HarOutput::Stdout);
        }
        // Opened as named: a link to a pipe (/dev/stdout piped on) leads to no path.
        if std::fs::metadata(output).is_ok_and(|meta| !meta.is_file() && !meta.is_dir()) {
            return Ok(HarOutput::Special(output.to_owned()));
        }
        let path = follow_links(output);
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => anyhow::bail!(
                "{} is a directory: name a file in it, e.g. -o {}",
                output.display(),
                output.join("capture.har").display()
            ),
            Ok(meta) if !meta.is_file() => return Ok(HarOutput::Special(path)),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot write {}", output.display())),
        }
        let dir = parent_dir(&path);
        if !dir.is_dir() {
            anyhow::bail!(
                "cannot write {}: the directory {} does not exist",
                output.display(),
                dir.display()
            );
        }
        Ok(HarOutput::File(path))
    }

    fn describe(&self, output: &Path) -> String {
        match self {
            HarOutput::Stdout => "standard output".into(),
            HarOutput::Special(_) | HarOutput::File(_) => output.display().to_string(),
        }
    }
}

/// `path` with symbolic links followed (as far as they lead, for a link to a file not
/// yet created).
fn follow_links(path: &Path) -> PathBuf {
    let mut path = path.to_owned();
    // As many hops as the kernel allows (ELOOP past 40).
    for _ in 0..40 {
        match std::fs::read_link(&path) {
            Ok(target) => path = parent_dir(&path).join(target),
            Err(_) => break,
        }
    }
    path
}

/// The directory `path` is in (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// `kinspect har`: a capture as a HAR file, streamed, with progress on a terminal.
fn export_har(
    file: &Path,
    output: &Path,
    filter: Option<&str>,
    redact: bool,
) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let filter = filter.map(parse_filter).transpose()?;
    // Where it goes is checked before a long import or export.
    let destination = HarOutput::of(output)?;
    let Readable {
        import, capture, ..
    } = readable(file)?;
    if import.is_none() && same_file(&capture, output) {
        anyhow::bail!(
            "{} is the capture being exported: writing the HAR over it would destroy it; \
             name another file with -o",
            output.display()
        );
    }
    let reader = CaptureReader::open(&capture)?;
    let progress = if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(reader.count()?);
        bar.set_style(
            indicatif::ProgressStyle::with_template("exporting {bar:40} {pos}/{len} flows {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let shown = destination.describe(output);
    let cannot_write = || format!("cannot write {shown}");
    // A regular file is written beside the output and renamed over it at the end: a
    // failed export leaves no half-written file, and an existing one stays until the new
    // one is whole.
    let mut temporary = None;
    let mut removed_if_interrupted = None;
    let sink: Box<dyn std::io::Write> = match &destination {
        HarOutput::Stdout => Box::new(std::io::stdout().lock()),
        HarOutput::Special(path) => Box::new(
            std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .with_context(cannot_write)?,
        ),
        HarOutput::File(path) => {
            // The temporary file's own name would only confuse: the error's kind says it.
            let file = file_beside(parent_dir(path), redact)
                .map_err(|e| std::io::Error::from(e.kind()))
                .with_context(cannot_write)?;
            removed_if_interrupted = RemovedIfInterrupted::new(file.path());
            Box::new(
                temporary
                    .insert(file)
                    .as_file()
                    .try_clone()
                    .with_context(cannot_write)?,
            )
        }
    };
    let title = file
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let mut writer = HarWriter::new(
        std::io::BufWriter::new(sink),
        &title,
        ExportOptions { redact },
    );
    let mut failure = None;
    reader.for_each(Detail::Full, |stored| {
        progress.inc(1);
        if failure.is_none() && filter.as_ref().is_none_or(|f| f.matches(&stored)) {
            failure = writer.push(&stored).err();
        }
    })?;
    progress.suspend(|| say_flows_left_out(&reader));
    if let Some(e) = failure {
        return Err(e).with_context(cannot_write);
    }
    let stats = writer.finish().with_context(cannot_write)?;
    if let (Some(file), HarOutput::File(path)) = (temporary, &destination) {
        drop(removed_if_interrupted);
        file.persist(path)
            .map_err(|e| e.error)
            .with_context(cannot_write)?;
    }
    progress.finish_and_clear();
    let redacted = if redact {
        format!(
            "{} redacted",
            crate::headless::counted(stats.redactions, "value", "values")
        )
    } else {
        "nothing redacted: --no-redact".to_owned()
    };
    let entries = crate::headless::counted(stats.entries, "entry", "entries");
    if stats.entries == 0 && stats.tunnels_skipped == 0 && filter.is_some() {
        notice!("no flow matched the filter");
    }
    notice!(
        "wrote {entries} to {shown} ({redacted}{})",
        if stats.tunnels_skipped > 0 {
            let tunnels =
                crate::headless::counted(stats.tunnels_skipped, "blind tunnel", "blind tunnels");
            format!("; {tunnels} left out")
        } else {
            String::new()
        }
    );
    Ok(())
}

/// A temporary file in `dir` that becomes the user's export: with the permissions a new
/// file gets there (0666 less the umask) when `redacted`, else private to the user
/// (0600), as it holds credentials.
/// While kept, Ctrl-C or SIGTERM removes a file being written before kinspect exits (as
/// the signal would have it, 130 or 143): an export broken off leaves no hidden partial
/// file of megabytes beside its destination.
struct RemovedIfInterrupted(Vec<signal_hook::SigId>);

impl RemovedIfInterrupted {
    fn new(path: &Path) -> Option<RemovedIfInterrupted> {
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt;
            let path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
            let path = std::sync::Arc::new(path);
            let mut ids = Vec::new();
            for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                let path = path.clone();
                // SAFETY: unlink(2) and _exit(2) are async-signal-safe; the path was made
                // before, and is only read.
                let id = unsafe {
                    signal_hook::low_level::register(signal, move || {
                        libc::unlink(path.as_ptr());
                        libc::_exit(128 + signal);
                    })
                };
                ids.extend(id.ok());
            }
            Some(RemovedIfInterrupted(ids))
        }
        #[cfg(not(unix))]
        {
            let _ = path;
            None
        }
    }
}

impl Drop for RemovedIfInterrupted {
    fn drop(&mut self) {
        for id in self.0.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

fn file_beside(dir: &Path, redacted: bool) -> std::io::Result<tempfile::NamedTempFile> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(".kinspect-export-");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = if redacted { 0o666 } else { 0o600 };
        builder.permissions(std::fs::Permissions::from_mode(mode));
    }
    #[cfg(not(unix))]
    let _ = redacted;
    builder.tempfile_in(dir)
}

/// `kinspect open`: the UI on a capture file (which may still be growing).
fn open(file: PathBuf) -> anyhow::Result<()> {
    tui::require_terminal(&format!(
        "list its flows with `kinspect ls {}` instead",
        crate::curl::quoted(&file.display().to_string())
    ))?;
    // The guard keeps a HAR's temporary capture until the UI is done with it.
    let Readable {
        import,
        capture,
        har_left_out,
    } = readable(&file)?;
    let har = import.is_some().then_some(file);
    let file = capture;
    let reader = CaptureReader::open(&file)?;
    let mut flows = Vec::new();
    reader.for_each(Detail::Headers, |mut stored| {
        tui::summarize(&mut stored);
        flows.push(Box::new(stored))
    })?;
    let flows_left_out = say_flows_left_out(&reader);
    drop(reader);
    let source = SourceInfo {
        listen: None,
        capture: file.clone(),
        ca: None,
        har: har.clone(),
        left_out: har_left_out + flows_left_out,
    };
    let shown = tui::run(source, flows, Feed::File, None);
    // A kinspect that stopped while this one read its capture could not take the file
    // out of WAL mode: the last reader out does (every connection of the UI is closed).
    if har.is_none() {
        crate::capture::fold_left_log(&file);
    }
    shown
}

/// `kinspect report`: the support report of the flow(s) with a request id.
fn report(file: &Path, request_id: &str) -> anyhow::Result<()> {
    if request_id.trim().is_empty() {
        anyhow::bail!(
            "--request-id is empty: give the X-Kinvey-Request-ID, or its first characters"
        );
    }
    let readable = readable(file)?;
    let reader = CaptureReader::open(&readable.capture)?;
    // Pasted from a log or a header, with its surrounding blanks.
    let request_id = request_id.trim();
    let found = reader.find_request_id(request_id)?;
    let mut ids: Vec<&str> = found.iter().map(|(id, _)| id.as_str()).collect();
    ids.dedup();
    match ids.len() {
        0 => anyhow::bail!(
            "no flow in {} has a request id equal to or starting with {request_id:?}; \
             `kinspect ls --json {}` shows each flow's kinvey.request_id",
            file.display(),
            file.display()
        ),
        1 => {}
        n => {
            let shown = 5;
            let more = match n.saturating_sub(shown) {
                0 => String::new(),
                left => format!(" and {left} more"),
            };
            anyhow::bail!(
                "{request_id:?} starts {n} request ids in {} ({}{more}); give more characters",
                file.display(),
                ids.iter()
                    .take(shown)
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    }
    let mut out = std::io::stdout().lock();
    if found.len() > 1 {
        // A client that re-sent a request with the same id, say.
        writeln!(
            out,
            "{} flows carry request id {}; each is reported below.\n",
            found.len(),
            ids[0]
        )?;
    }
    for (i, (_, flow_id)) in found.iter().enumerate() {
        let Some(stored) = reader.flow(*flow_id)? else {
            continue;
        };
        let analysis = kinvey::analyze(&stored.flow);
        if i > 0 {
            writeln!(out)?;
        }
        write!(
            out,
            "{}",
            support_report(
                &stored.flow,
                &analysis,
                &stored.kinvey.warnings,
                &mut reader.secrets_before(*flow_id)?
            )
        )?;
    }
    Ok(())
}

/// What a proxy session runs besides the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Just the proxy, until Ctrl-C.
    Proxy,
    /// The Kinvey simulator and the scripted app too.
    Demo,
}

fn run_session(args: ProxyArgs, mode: Mode) -> anyhow::Result<()> {
    if !args.headless {
        tui::require_terminal(
            "run the proxy with --headless, or list a capture with `kinspect ls FILE`",
        )?;
    }
    // A bad filter is reported before anything is bound or created.
    let filter = args.parsed_filter()?;
    if args.reverse.is_some() && args.proxy_auth.is_some() {
        anyhow::bail!(
            "--proxy-auth cannot guard --reverse: an app whose base URL points at kinspect \
             sends no proxy credentials, so every request would get a 407. Leave out \
             --proxy-auth (and keep kinspect on loopback or a trusted network), or point the \
             app at kinspect as its proxy instead of using --reverse"
        );
    }
    let capture_path = match &args.capture {
        Some(path) if path.is_dir() => anyhow::bail!(
            "cannot record into {}: it is a directory; name a file in it, such as {}",
            path.display(),
            path.join("capture.db").display()
        ),
        // A mistyped directory is not created behind the user's back (the default one is).
        Some(path) if !parent_dir(path).is_dir() => anyhow::bail!(
            "cannot record into {}: the directory {} does not exist; create it, or name a \
             file in an existing one",
            path.display(),
            parent_dir(path).display()
        ),
        Some(path) => path.clone(),
        None => default_capture_path(&kinspect_home()?, SystemTime::now()),
    };
    crate::tls::install_crypto_provider();
    let ca = Arc::new(CertificateAuthority::load_or_create(&args.ca.ca_dir()?)?);
    let created = !capture_path.exists();
    let writer = CaptureWriter::open(&capture_path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let mut listening = false;
    let session = serve(args, mode, ca, writer, filter, &mut listening);
    let recorder = match runtime.block_on(session) {
        Ok(recorder) => recorder,
        // The proxy never listened (a port in use, an --upstream-ca that cannot be
        // read), so nothing was recorded: a capture made for this run goes too.
        Err(e) => {
            if created && !listening {
                for suffix in ["", "-wal", "-shm"] {
                    let mut path = capture_path.clone().into_os_string();
                    path.push(suffix);
                    let _ = std::fs::remove_file(path);
                }
            }
            return Err(e);
        }
    };
    // Every task goes, and with them every flow publisher: the recorder stores what is
    // left and closes the capture, and SQLite folds its WAL back into the file, so the
    // .db file alone holds every flow.
    runtime.shutdown_timeout(Duration::from_secs(2));
    let stats = recorder.stats().clone();
    recorder.finish_within(Duration::from_secs(5));
    let failed = stats.failed.load(Ordering::Relaxed);
    if failed > 0 {
        // A full disk, say: the file could not be folded either, and is not whole alone.
        let wal = crate::capture::wal_of(&capture_path);
        let keep = match wal.exists() {
            true => format!(
                "; keep {} beside it (it holds flows the .db does not yet): a `kinspect ls` \
                 of the capture with room on its disk folds it in",
                wal.display()
            ),
            false => String::new(),
        };
        anyhow::bail!(
            "{} could not be stored in {} (the errors above say why: a full disk?); the \
             {} others are in it{keep}",
            crate::headless::counted(failed, "flow", "flows"),
            capture_path.display(),
            stats.stored.load(Ordering::Relaxed),
        );
    }
    Ok(())
}

/// The host name the demo's app uses for the simulated Kinvey backend.
const DEMO_HOST: &str = "baas.kinvey.test";

/// Each client connection can take two descriptors (client and origin): ask for enough,
/// up to the hard limit, so a busy proxy is not stopped by a low default soft limit.
fn raise_open_files_limit(max_connections: usize) {
    let wanted = (max_connections as u64)
        .saturating_mul(2)
        .saturating_add(256);
    match rlimit::increase_nofile_limit(wanted) {
        Ok(limit) if limit < wanted => notice!(
            "  only {limit} open files are allowed (ulimit -n): fewer than {max_connections} connections may be served"
        ),
        Ok(_) => {}
        Err(e) => tracing::debug!("cannot raise the open files limit: {e}"),
    }
}

async fn serve(
    args: ProxyArgs,
    mode: Mode,
    ca: Arc<CertificateAuthority>,
    writer: CaptureWriter,
    filter: Option<Filter>,
    listening: &mut bool,
) -> anyhow::Result<Recorder> {
    let capture_path = writer.path().to_owned();
    let (default_listen, simulator) = match mode {
        Mode::Proxy => (SocketAddr::from(DEFAULT_LISTEN), None),
        Mode::Demo => {
            let simulator = Simulator::start(&[DEMO_HOST])
                .await
                .context("cannot start the Kinvey simulator")?;
            (SocketAddr::from(([127, 0, 0, 1], 0)), Some(simulator))
        }
    };
    let mut config = args.proxy_config(default_listen)?;
    let parent = config.upstream_proxy.clone();
    raise_open_files_limit(config.max_connections);
    if let Some(simulator) = &simulator {
        config.upstream_roots.push(simulator.ca_der().clone());
        config.hosts = HostOverrides::new([(DEMO_HOST.to_owned(), simulator.addr().ip())]);
    }
    let (mut publisher, stream) = events::channel_from(events::DEFAULT_CAPACITY, writer.next_id()?);
    // The UI lists exchanges still under way; headless output has no use for them.
    let in_flight = events::InFlight::default();
    if !args.headless {
        publisher.list_in_flight(in_flight.clone());
    }
    let proxy = Proxy::bind(config, ca.clone(), publisher).await?;
    *listening = true;
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
    if let Some(day) = ca.expires_soon() {
        notice!(
            "  the CA expires on {day}: move {} away to create a new one, then trust it on each device",
            ca.dir().display()
        );
    }
    if args.insecure_upstream {
        notice!("  --insecure-upstream: origins' certificates are not checked (anyone on the way can read and change traffic)");
    }
    notice!("capture: {}", capture_path.display());
    let lan_addresses = setup::lan_addresses(addr);
    if let Some(reverse) = &args.reverse {
        let local = setup::local_proxy_addr(addr);
        notice!("reverse proxy: requests to http://{local}/ go to {reverse}");
        for lan in &lan_addresses {
            notice!("on your network: set the app's base URL to http://{lan}/");
        }
        if args.allow_public {
            notice!("  --allow-public: anyone on the internet can reach {reverse} through it");
        } else if !lan_addresses.is_empty() {
            notice!("  anyone on your network can reach {reverse} through it");
        }
    } else {
        for lan in &lan_addresses {
            notice!("on your network: set a phone's Wi-Fi proxy to {lan} (then open http://kinspect.ca on it)");
        }
        if !lan_addresses.is_empty() && args.proxy_auth.is_none() {
            notice!("  anyone on your network can use this proxy: consider --proxy-auth USER:PASS");
        }
        if args.allow_public && args.proxy_auth.is_none() {
            notice!(
                "  --allow-public without --proxy-auth makes this an open proxy for the internet"
            );
        }
    }
    if let Some(parent) = &parent {
        if parent
            .is_itself(&crate::proxy::ProxyAddress::of_listener(addr))
            .await
        {
            anyhow::bail!(
                "--upstream-proxy {parent} is kinspect itself: every request would loop; \
                 give the address of the proxy this network goes out through"
            );
        }
        notice!("origins are reached through the upstream proxy {parent}");
    }
    if mode == Mode::Proxy && args.reverse.is_none() {
        let credentials = args
            .proxy_auth
            .as_ref()
            .map(|c| format!(" --proxy-user '{}:PASSWORD'", c.user()))
            .unwrap_or_default();
        notice!(
            "try: curl -x {}{credentials} --cacert {} https://example.com/",
            setup::local_proxy_url(addr),
            ca.cert_pem_path().display()
        );
    }
    // Requests the UI sends again: their exchanges are not the app's.
    let replays = crate::replay::ReplaySources::default();
    // --filter: what the headless printer prints, or the UI's filter to begin with.
    let mut ui_filter = None;
    let (recorder, tui_feed) = if args.headless {
        let viewer = HeadlessViewer::new(args.line_format(), filter);
        let recorder = Recorder::start(writer, stream, viewer);
        (recorder, None)
    } else {
        ui_filter = filter;
        let (tx, rx) = std::sync::mpsc::channel();
        let viewer = move |stored| {
            // The UI evaluates its filter on the whole flow, then keeps a summary.
            let _ = tx.send(stored);
        };
        let recorder = Recorder::start_ignoring_replays(writer, stream, viewer, replays.clone());
        (recorder, Some(rx))
    };
    let recorder = recorder.context("cannot start the recorder thread")?;
    let handle = proxy.spawn();

    // What the demo script and the UI's replays send when --proxy-auth is set.
    let proxy_authorization = args.proxy_auth.as_ref().map(ProxyCredentials::header_value);
    let script = simulator.as_ref().map(|simulator| {
        if args.headless {
            notice!(
                "demo: a scripted Kinvey app is calling https://{DEMO_HOST}:{} (a local simulator) through kinspect",
                simulator.addr().port()
            );
        }
        let options = ScriptOptions {
            proxy: addr,
            proxy_ca_pem: ca.cert_pem().to_owned(),
            base_url: format!("https://{DEMO_HOST}:{}", simulator.addr().port()),
            pace: if args.headless {
                Duration::from_millis(5)
            } else {
                Duration::from_millis(150)
            },
            dictionary_tour: true,
            client_tag: format!("{}", std::process::id()),
            proxy_authorization: proxy_authorization.clone(),
        };
        tokio::spawn(script::run(options))
    });

    if let Some(feed) = tui_feed {
        let source = SourceInfo {
            listen: Some(addr),
            capture: capture_path,
            ca: Some(ca.cert_pem_path()),
            har: None,
            left_out: 0,
        };
        let replay =
            crate::replay::Replayer::new(addr, ca.cert_der(), proxy_authorization, replays)
                .map_err(|e| format!("kinspect cannot send requests again: {e:#}"));
        let feed = Feed::Live {
            flows: feed,
            in_flight,
            replay,
        };
        let ui = tokio::task::spawn_blocking(move || tui::run(source, Vec::new(), feed, ui_filter));
        ui.await.context("the terminal UI failed")??;
        if let Some(script) = script {
            script.abort();
        }
        drop(handle);
        return Ok(recorder);
    }

    if let Some(script) = script {
        let done = script.await.context("the demo script failed")??;
        wait_until_delivered(&recorder, done.requests as u64).await;
        notice!(
            "demo: {} requests sent, all recorded in {}",
            done.requests,
            capture_path.display()
        );
        return Ok(recorder);
    }
    stop_requested().await.context("cannot wait for Ctrl-C")?;
    drop(handle);
    Ok(recorder)
}

/// Resolves on Ctrl-C, and on Unix on SIGTERM or SIGHUP too: a service manager or a
/// closed terminal stops the proxy as Ctrl-C does, with the capture closed cleanly.
async fn stop_requested() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut terminate = signal(SignalKind::terminate())?;
        let mut hangup = signal(SignalKind::hangup())?;
        tokio::select! {
            stopped = tokio::signal::ctrl_c() => stopped,
            _ = terminate.recv() => Ok(()),
            _ = hangup.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await
}

/// Waits (at most 10 s) until the recorder has stored and printed `count` flows.
async fn wait_until_delivered(recorder: &Recorder, count: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while recorder.stats().delivered.load(Ordering::Relaxed) < count
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_and_without_suffixes() {
        assert_eq!(parse_size("1048576"), Ok(1048576));
        assert_eq!(parse_size("16M"), Ok(16 << 20));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert!(parse_reverse("https://h.test/base/?k=1")
            .unwrap_err()
            .contains("has a query"));
        assert!(parse_reverse("https://h.test/base/").is_ok());
        assert!(parse_size("12X").unwrap_err().contains("suffix \"X\""));
        assert!(parse_size("lots").unwrap_err().contains("is not a size"));
        assert!(parse_size("abc").unwrap_err().contains("is not a size"));
        assert!(parse_size("1.5M").unwrap_err().contains("is not a size"));
        assert_eq!(parse_size("16MB"), Ok(16 << 20));
        assert_eq!(parse_size("1KiB"), Ok(1 << 10));
        assert_eq!(parse_size("2 gb"), Ok(2 << 30));
        assert_eq!(parse_size("100B"), Ok(100));
        assert!(parse_size("99999999999G")
            .unwrap_err()
            .contains("more bytes than kinspect can count"));
        assert!(parse_listen("99999")
            .unwrap_err()
            .contains("port 99999 is out of range"));
        assert!(parse_listen("127.0.0.1:70000")
            .unwrap_err()
            .contains("out of range"));
        assert_eq!(parse_listen("8081"), Ok("127.0.0.1:8081".parse().unwrap()));
        assert_eq!(
            parse_listen("localhost:8082"),
            Ok("127.0.0.1:8082".parse().unwrap())
        );
        assert_eq!(
            parse_listen("[::1]:8083"),
            Ok("[::1]:8083".parse().unwrap())
        );
        assert!(parse_listen("example.com:80")
            .unwrap_err()
            .contains("e.g. 127.0.0.1:8080"));
        assert_eq!(parse_head_size("1K"), Ok(1024));
        assert!(parse_head_size("0").unwrap_err().contains("at least 1K"));
        assert_eq!(parse_seconds("30"), Ok(30));
        assert!(parse_seconds("0").unwrap_err().contains("at least 1"));
        assert!(parse_seconds("1.5").unwrap_err().contains("write 2"));
        assert!(parse_seconds("18446744073709551615")
            .unwrap_err()
            .contains("at most"));
        assert!(parse_seconds("18446744073709551616")
            .unwrap_err()
            .contains("at most"));
        assert_eq!(parse_seconds("31536000"), Ok(31_536_000));
        assert_eq!(parse_seconds("+30"), Ok(30));
        assert!(parse_seconds("+0").unwrap_err().contains("at least 1"));
        assert!(parse_seconds("1e30").unwrap_err().contains("at most"));
        assert!(parse_seconds("soon")
            .unwrap_err()
            .contains("whole number of seconds"));
        assert_eq!(parse_count("1"), Ok(1));
        assert!(parse_count("0").unwrap_err().contains("at least 1"));
        assert!(parse_count("-1")
            .unwrap_err()
            .contains("not a whole number"));
    }

    #[test]
    fn the_command_line_parses() {
        let ls = Cli::try_parse_from(["kinspect", "ls", "x.db", "--json"]).unwrap();
        assert!(matches!(ls.command, Some(Command::Ls { json: true, .. })));
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
        assert!(cli.proxy.headless && cli.proxy.jsonl);
        assert_eq!(cli.proxy.max_body, 1 << 20);
        assert!(Cli::try_parse_from(["kinspect", "--ignore-hosts", "("]).is_err());
    }

    #[test]
    fn each_command_takes_only_its_own_options() {
        let defaults = Cli::try_parse_from(["kinspect"]).unwrap();
        assert_eq!(defaults.proxy.max_body, crate::proxy::DEFAULT_MAX_BODY);
        let demo =
            Cli::try_parse_from(["kinspect", "demo", "--headless", "--listen", "127.0.0.1:0"])
                .unwrap();
        assert!(matches!(demo.command, Some(Command::Demo(args)) if args.headless));
        let env = Cli::try_parse_from([
            "kinspect",
            "env",
            "--listen",
            "127.0.0.1:9",
            "--ca-dir",
            "d",
        ]);
        assert!(env.is_ok());
        let har = Cli::try_parse_from(["kinspect", "har", "c.db", "-o", "o.har", "--filter", "~k"]);
        assert!(har.is_ok());
        for wrong in [
            &["kinspect", "ls", "c.db", "--max-body", "1M"][..],
            &["kinspect", "ca", "--headless"],
            &["kinspect", "--headless", "demo"],
            &["kinspect", "--jsonl"],
            &["kinspect", "--connect-timeout", "0"],
        ] {
            assert!(Cli::try_parse_from(wrong).is_err(), "{wrong:?}");
        }
    }
}
