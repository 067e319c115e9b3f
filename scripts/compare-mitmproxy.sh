#!/usr/bin/env bash
# kinspect vs mitmdump vs direct: the same oha load (keep-alive, -c CONCURRENCY for
# DURATION) against the same local origin, for plain HTTP and for HTTPS interception,
# side by side; prints a markdown table.
#
#   scripts/compare-mitmproxy.sh
#
# Installs what it needs: mitmproxy into a venv under
# ${XDG_CACHE_HOME:-~/.cache}/kinspect-bench/venv (pip), oha with `cargo install oha
# --locked` if it is not on PATH; builds kinspect --release. The origin is nginx
# (installed from Debian's packages when missing and run as root), else the benches' own
# origin, examples/bench_origin.rs (ORIGIN=bench forces it).
# kinspect runs --headless with its lines to /dev/null, recording every flow into a
# capture file, as a user would run it; mitmdump runs -q with --ssl-insecure.
#
# Two references that record nothing: examples/minimal_mitm.rs, the minimal
# intercepting proxy on hyper + rustls that DESIGN.md §11 sets kinspect against (the
# same CONNECT, leaf and TLS work, no flow, no capture); and with nginx as the origin,
# a second nginx as a reverse proxy in front of it (TLS terminated and made again,
# keep-alive to the origin): not an intercepting proxy, but what the shared cores leave
# to any proxy, so "vs direct" can be read against it.
#
# Knobs (environment): DURATION (10s), CONCURRENCY (32), BODY_BYTES (1024),
# ORIGIN (nginx|bench), ROUNDS (1), CARGO_TARGET_DIR.
#
# ROUNDS=3 repeats every run three times and prints medians, with the ratio to
# mitmdump of each round: on a shared machine one run's ratio moves by several percent.
#
# Everything runs on 127.0.0.1. The load generator, the proxy and the origin share the
# machine's cores: compare within one run, not across machines.
set -euo pipefail

duration=${DURATION:-10s}
concurrency=${CONCURRENCY:-32}
body_bytes=${BODY_BYTES:-1024}
rounds=${ROUNDS:-1}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/kinspect-bench

work=$(mktemp -d "${TMPDIR:-/tmp}/kinspect-compare.XXXXXX")
pids=()
cleanup() {
    local pid
    for pid in ${pids[@]+"${pids[@]}"}; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in ${pids[@]+"${pids[@]}"}; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '%s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until something accepts connections on 127.0.0.1:$1 (at most ~30 s).
wait_port() {
    for _ in $(seq 300); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    # The work directory goes on exit: its logs are shown now.
    tail -n 20 "$work"/*.log >&2 2>/dev/null || true
    die "nothing listens on 127.0.0.1:$1 (${2:-}); the logs above say why"
}

# --- tools -------------------------------------------------------------------------
command -v python3 >/dev/null || die "python3 is needed (for the mitmproxy venv)"
if [[ ! -x $cache/venv/bin/mitmdump ]]; then
    say "installing mitmproxy into $cache/venv"
    python3 -m venv "$cache/venv"
    "$cache/venv/bin/pip" install --quiet --upgrade pip
    "$cache/venv/bin/pip" install --quiet mitmproxy
fi
mitmdump=$cache/venv/bin/mitmdump

oha=$(command -v oha || true)
if [[ -z $oha && -x $HOME/.cargo/bin/oha ]]; then
    oha=$HOME/.cargo/bin/oha
fi
if [[ -z $oha ]]; then
    say "installing oha (cargo install oha --locked)"
    cargo install oha --locked
    oha=$HOME/.cargo/bin/oha
fi

# nginx, as in issue 9's reference figures: Debian's package when we may install it.
if [[ ${ORIGIN:-nginx} == nginx ]] && ! command -v nginx >/dev/null \
    && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    say "installing nginx (apt-get install nginx-light)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null 2>&1 \
        || say "could not install nginx; using the benches' origin"
    # The package starts a system nginx on port 80: not ours to keep running.
    pkill -x nginx 2>/dev/null || true
fi
origin_kind=${ORIGIN:-}
if [[ -z $origin_kind ]]; then
    if command -v nginx >/dev/null; then origin_kind=nginx; else origin_kind=bench; fi
fi

say "building kinspect --release"
(cd "$repo" && cargo build --quiet --release --bin kinspect --example minimal_mitm)
kinspect=$target/release/kinspect
if [[ $origin_kind == bench ]]; then
    (cd "$repo" && cargo build --quiet --release --example bench_origin)
fi

# --- origin ------------------------------------------------------------------------
origin_pem=$work/origin.pem
if [[ $origin_kind == nginx ]]; then
    command -v openssl >/dev/null || die "openssl is needed to make nginx's certificate"
    # A CA (what the clients and proxies trust) and nginx's leaf signed by it: rustls
    # does not accept a self-signed leaf as its own trust anchor.
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$work/origin-ca-key.pem" -out "$origin_pem" -days 2 \
        -subj "/CN=kinspect bench origin CA" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$work/origin-key.pem" -out "$work/origin.csr" -subj /CN=localhost 2>/dev/null
    openssl x509 -req -in "$work/origin.csr" -CA "$origin_pem" -CAkey "$work/origin-ca-key.pem" \
        -CAcreateserial -out "$work/origin-cert.pem" -days 2 \
        -extfile <(printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n') 2>/dev/null
    mkdir -p "$work/www" "$work/nginx-temp"
    # nginx workers run as an unprivileged user: let them read the body.
    chmod 755 "$work" "$work/www"
    head -c "$body_bytes" /dev/zero | tr '\0' k >"$work/www/body"
    http_port=$(free_port)
    https_port=$(free_port)
    # start_nginx NAME: runs an nginx of its own (own worker processes) with the
    # `http` block's contents read from stdin.
    start_nginx() {
        cat >"$work/$1.conf" <<EOF
worker_processes auto;
daemon off;
pid $work/$1.pid;
error_log $work/$1-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $work/nginx-temp;
    proxy_temp_path $work/nginx-temp;
    fastcgi_temp_path $work/nginx-temp;
    uwsgi_temp_path $work/nginx-temp;
    scgi_temp_path $work/nginx-temp;
    keepalive_requests 1000000;
$(cat)
}
EOF
        nginx -c "$work/$1.conf" -e "$work/$1-error.log" &
        pids+=($!)
    }
    start_nginx nginx <<EOF
    server {
        listen 127.0.0.1:$http_port;
        listen 127.0.0.1:$https_port ssl;
        ssl_certificate $work/origin-cert.pem;
        ssl_certificate_key $work/origin-key.pem;
        root $work/www;
        location / { default_type application/octet-stream; try_files /body =404; }
    }
EOF
    # The reference reverse proxy in front of the origin.
    proxy_http_port=$(free_port)
    proxy_https_port=$(free_port)
    start_nginx nginx-proxy <<EOF
    upstream plain { server 127.0.0.1:$http_port; keepalive 64; keepalive_requests 1000000; }
    upstream tls { server 127.0.0.1:$https_port; keepalive 64; keepalive_requests 1000000; }
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    server {
        listen 127.0.0.1:$proxy_http_port;
        location / { proxy_pass http://plain; }
    }
    server {
        listen 127.0.0.1:$proxy_https_port ssl;
        ssl_certificate $work/origin-cert.pem;
        ssl_certificate_key $work/origin-key.pem;
        location / {
            proxy_pass https://tls;
            proxy_ssl_server_name on;
            proxy_ssl_name localhost;
            proxy_ssl_session_reuse on;
        }
    }
EOF
else
    KINSPECT_BENCH_ORIGIN_THREADS=${KINSPECT_BENCH_ORIGIN_THREADS:-2} \
        "$target/release/examples/bench_origin" "$origin_pem" "$body_bytes" >"$work/origin.out" &
    pids+=($!)
    for _ in $(seq 300); do
        [[ -s $work/origin.out ]] && break
        sleep 0.1
    done
    read -r http_addr https_addr <"$work/origin.out" || die "the bench origin did not start"
    http_port=${http_addr##*:}
    https_port=${https_addr##*:}
fi
wait_port "$http_port" "origin (HTTP)"
wait_port "$https_port" "origin (HTTPS)"
if [[ $origin_kind == nginx ]]; then
    wait_port "$proxy_http_port" "nginx reverse proxy (HTTP)"
    wait_port "$proxy_https_port" "nginx reverse proxy (HTTPS)"
fi

# --- proxies -----------------------------------------------------------------------
kinspect_port=$(free_port)
mkdir -p "$work/kinspect"
KINSPECT_HOME=$work/kinspect "$kinspect" --headless --listen "127.0.0.1:$kinspect_port" \
    --ca-dir "$work/kinspect" --capture "$work/kinspect/capture.db" \
    --upstream-ca "$origin_pem" >/dev/null 2>"$work/kinspect.log" &
pids+=($!)
wait_port "$kinspect_port" "kinspect"

# The minimal proxy binds a port of its own and says which.
mkdir -p "$work/minimal"
"$target/release/examples/minimal_mitm" "$work/minimal" "$origin_pem" \
    >"$work/minimal.out" 2>"$work/minimal.log" &
pids+=($!)
for _ in $(seq 300); do
    [[ -s $work/minimal.out ]] && break
    sleep 0.1
done
minimal_port=$(sed -n 's/^listening on .*://p' "$work/minimal.out")
if [[ -z $minimal_port ]]; then
    tail -n 20 "$work/minimal.log" >&2 2>/dev/null || true
    die "the minimal proxy did not start; its log is above"
fi

mitm_port=$(free_port)
"$mitmdump" -q --listen-host 127.0.0.1 --listen-port "$mitm_port" --ssl-insecure \
    --set confdir="$work/mitmproxy" >"$work/mitmdump.log" 2>&1 &
pids+=($!)
wait_port "$mitm_port" "mitmdump"

# --- load --------------------------------------------------------------------------
# run NAME URL [oha options...]: one oha run; its JSON summary goes to $work/NAME.json.
run() {
    local name=$1 url=$2
    shift 2
    # A short warm-up: connections, leaves, mitmproxy's certificate for the host.
    "$oha" --no-tui -n 200 -c 8 "$@" "$url" >/dev/null 2>&1 || true
    say "  $name: oha -w -z $duration -c $concurrency $* $url"
    "$oha" --no-tui --output-format json -w -z "$duration" -c "$concurrency" "$@" "$url" \
        >"$work/$name.json" || die "oha failed for $name"
}

http_url=http://localhost:$http_port/
https_url=https://localhost:$https_port/
say "origin: $origin_kind; load: oha -z $duration -c $concurrency, ${body_bytes}-byte responses"
for round in $(seq "$rounds"); do
    (( rounds > 1 )) && say "round $round of $rounds"
    run "http-direct-$round" "$http_url"
    run "http-kinspect-$round" "$http_url" -x "http://127.0.0.1:$kinspect_port"
    run "http-mitmdump-$round" "$http_url" -x "http://127.0.0.1:$mitm_port"
    run "https-direct-$round" "$https_url" --cacert "$origin_pem"
    run "https-kinspect-$round" "$https_url" -x "http://127.0.0.1:$kinspect_port" \
        --cacert "$work/kinspect/kinspect-ca.pem"
    run "https-mitmdump-$round" "$https_url" -x "http://127.0.0.1:$mitm_port" \
        --cacert "$work/mitmproxy/mitmproxy-ca-cert.pem"
    run "http-minimal-$round" "$http_url" -x "http://127.0.0.1:$minimal_port"
    run "https-minimal-$round" "$https_url" -x "http://127.0.0.1:$minimal_port" \
        --cacert "$work/minimal/kinspect-ca.pem"
    if [[ $origin_kind == nginx ]]; then
        run "http-nginx-proxy-$round" "http://localhost:$proxy_http_port/"
        run "https-nginx-proxy-$round" "https://localhost:$proxy_https_port/" \
            --cacert "$origin_pem"
    fi
done

# --- table -------------------------------------------------------------------------
python3 - "$work" "$duration" "$concurrency" "$body_bytes" "$origin_kind" "$rounds" <<'EOF'
import json, statistics, sys

work, duration, concurrency, body, origin, rounds = sys.argv[1:]
rounds = int(rounds)

def load(name):
    with open(f"{work}/{name}.json") as f:
        report = json.load(f)
    summary = report["summary"]
    pct = report.get("latencyPercentiles", {})
    codes = report.get("statusCodeDistribution", {})
    ok = sum(n for code, n in codes.items() if code.startswith("2"))
    total = sum(codes.values()) + sum(report.get("errorDistribution", {}).values())
    return {
        "rps": summary.get("requestsPerSec") or 0.0,
        "p50": (pct.get("p50") or 0.0) * 1000,
        "p99": (pct.get("p99") or 0.0) * 1000,
        "ok": ok,
        "total": total,
    }

def median(runs, key):
    return statistics.median(r[key] for r in runs)

shown = "" if rounds == 1 else f", medians of {rounds} rounds"
print(f"oha -w -z {duration} -c {concurrency}, {body}-byte responses, origin: {origin}, "
      f"all on 127.0.0.1{shown}")
print()
print("| scheme | path | requests/s | p50 | p99 | 2xx / all | vs direct | kinspect / mitmdump |")
print("|---|---|---|---|---|---|---|---|")
for scheme in ("http", "https"):
    paths = ("direct", "kinspect", "mitmdump", "minimal")
    if origin == "nginx":
        paths += ("nginx-proxy",)
    runs = {p: [load(f"{scheme}-{p}-{n}") for n in range(1, rounds + 1)] for p in paths}
    # Each round's ratios use that round's own runs: they ran minutes apart at most.
    ratios = [k["rps"] / (m["rps"] or float("nan"))
              for k, m in zip(runs["kinspect"], runs["mitmdump"])]
    direct = median(runs["direct"], "rps") or float("nan")
    label = "plain HTTP" if scheme == "http" else "HTTPS (intercepted)"
    names = {
        "nginx-proxy": "nginx reverse proxy (reference, records nothing)",
        "minimal": "minimal hyper + rustls MITM (reference, records nothing)",
    }
    for path in paths:
        rs = runs[path]
        versus = ""
        if path == "kinspect":
            versus = f"{statistics.median(ratios):.1f}x"
            if rounds > 1:
                versus += " (" + " / ".join(f"{x:.1f}x" for x in ratios) + ")"
        rps = median(rs, "rps")
        ok = sum(r["ok"] for r in rs)
        total = sum(r["total"] for r in rs)
        print(
            f"| {label} | {names.get(path, path)} | {rps:,.0f} | {median(rs, 'p50'):.2f} ms "
            f"| {median(rs, 'p99'):.2f} ms | {ok} / {total} | {rps / direct:.3f} | {versus} |"
        )
EOF
