#!/usr/bin/env bash
# Benchmark of the preview proxy against nginx on the same machine, same upstream.
#
#   scripts/bench-proxy.sh
#
# Starts, all on 127.0.0.1 and each with its own files under a temporary directory:
#   A  nginx answering every request with a fixed small body (the app),
#   B  nginx as a plain reverse proxy to A (keep-alive to A, X-Forwarded-* set),
#   C  cca-uat-proxy (release build) with a SQLite store holding a RUNNING session
#      `bench` -> 127.0.0.1:A, in local mode, sign-in off,
#   D  the same proxy behind sign-in with GitHub: every request carries a signed-in visitor's
#      sealed cookie, checked on each request (GitHub's repository check, answered by a
#      second server of A, is asked once and cached).
# Then runs wrk with keep-alive, the same duration each, against A directly, C and D with
# `Host: bench.localhost`, and B, for BENCH_ROUNDS rounds interleaved: under load (-t2 -c64,
# which saturates a small machine) and on a single connection (-t1 -c1, the latency of one
# request when the CPU is not the bottleneck). It prints requests/s, p50 and p99 of each run
# and the medians, the throughput ratio C/B and the p99 that C and B add over A, with the CPU time the server under test spent per request (from /proc; for B and C
# the proxy's own, without the upstream's). Last, it holds 1,000 idle keep-alive connections open on C (each after one request)
# and reads the resident memory of cca-uat-proxy (VmRSS), and of nginx B for comparison. Then it
# runs the criterion benchmark of the sign-in gate's cookie check (uat-proxy/benches/gate.rs).
#
# Settings (environment): BENCH_DURATION (seconds per run, default 10), BENCH_ROUNDS
# (default 3), BENCH_THREADS (2), BENCH_CONNECTIONS (64), BENCH_IDLE_CONNECTIONS (1000).
# Installs wrk and nginx from Debian's packages when missing (as root). Everything it starts
# is stopped on exit; it never touches the system nginx configuration.
set -euo pipefail

DURATION="${BENCH_DURATION:-10}"
ROUNDS="${BENCH_ROUNDS:-3}"
THREADS="${BENCH_THREADS:-2}"
CONNECTIONS="${BENCH_CONNECTIONS:-64}"
IDLE_CONNECTIONS="${BENCH_IDLE_CONNECTIONS:-1000}"
WARMUP_SECS=2
START_TIMEOUT_SECS=20

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
export CCA_CACHE="${CCA_CACHE:-$HOME/.cache/cca}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CCA_CACHE/target}"

step() { printf '\n==> %s\n' "$*"; }
fail() {
    printf '\nFAILED: %s\n' "$*" >&2
    exit 1
}

work=""
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n "$work" ]]; then
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step "Tools"
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
if ((${#missing[@]} > 0)); then
    [[ "$(id -u)" == "0" ]] || fail "missing ${missing[*]}; install them as root (apt-get install ${missing[*]})"
    apt-get update -qq </dev/null || fail "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" </dev/null >/dev/null ||
        fail "apt-get could not install ${missing[*]}"
fi
nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)"
"$nginx_bin" -v
wrk --version 2>&1 | head -n 1 || true
# One file descriptor per idle connection, in the proxy and in the client holding them.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

step "cargo build --release -p cca-uat-proxy"
cargo build --release -p cca-uat-proxy --bins || fail "release build"
proxy_bin="$CARGO_TARGET_DIR/release/cca-uat-proxy"
[[ -x "$proxy_bin" ]] || fail "missing $proxy_bin"

work="$(mktemp -d "${TMPDIR:-/tmp}/cca-bench-proxy.XXXXXX")"
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
port_a="$(free_port)"
port_b="$(free_port)"
port_c="$(free_port)"
port_d="$(free_port)"
port_g="$(free_port)"

# Waits until GET <path> with Host <host> (and Cookie <cookie>, if given) on
# 127.0.0.1:<port> answers 200.
wait_ready() {
    local name="$1" pid="$2" port="$3" host="$4" path="$5" cookie="${6:-}" deadline=$((SECONDS + START_TIMEOUT_SECS))
    until python3 - "$port" "$host" "$path" "$cookie" <<'EOF' 2>/dev/null; do
import http.client, sys
conn = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=2)
headers = {"Host": sys.argv[2]}
if sys.argv[4]:
    headers["Cookie"] = sys.argv[4]
conn.request("GET", sys.argv[3], headers=headers)
sys.exit(conn.getresponse().status != 200)
EOF
        kill -0 "$pid" 2>/dev/null || fail "$name exited before answering (logs in $work)"
        ((SECONDS < deadline)) || fail "$name did not answer on port $port within ${START_TIMEOUT_SECS}s"
        sleep 0.2
    done
    echo "$name answers on 127.0.0.1:$port (pid $pid)"
}

# nginx settings shared by A and B: everything under $work, no access log, keep-alive
# connections never closed by request count during a run.
nginx_conf() {
    local name="$1" body="$2"
    mkdir -p "$work/$name"
    cat >"$work/$name/nginx.conf" <<EOF
daemon off;
worker_processes auto;
pid $work/$name/nginx.pid;
error_log $work/$name/error.log warn;
events {
    worker_connections 4096;
}
http {
    access_log off;
    client_body_temp_path $work/$name/body;
    proxy_temp_path $work/$name/proxy;
    fastcgi_temp_path $work/$name/fastcgi;
    uwsgi_temp_path $work/$name/uwsgi;
    scgi_temp_path $work/$name/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 75s;
$body
}
EOF
}

# Starts nginx with $work/<name>/nginx.conf in the background; its pid goes to `started`.
started=""
start_nginx() {
    local name="$1"
    "$nginx_bin" -p "$work/$name" -e "$work/$name/error.log" -c "$work/$name/nginx.conf" \
        </dev/null >"$work/$name/stdout.log" 2>&1 &
    started=$!
    pids+=("$started")
}

step "Starting the upstream (A, nginx) on 127.0.0.1:$port_a"
nginx_conf upstream "    server {
        listen 127.0.0.1:$port_a;
        default_type text/plain;
        location / {
            return 200 \"ok\\n\";
        }
    }
    server {
        listen 127.0.0.1:$port_g;
        default_type application/json;
        location / {
            return 200 '{\"permissions\":{\"pull\":true,\"push\":false}}';
        }
    }"
start_nginx upstream
pid_a="$started"
wait_ready "upstream nginx" "$pid_a" "$port_a" "127.0.0.1" /

step "Starting nginx as a reverse proxy (B) on 127.0.0.1:$port_b"
nginx_conf nginx-proxy "    upstream app {
        server 127.0.0.1:$port_a;
        keepalive 64;
        keepalive_requests 10000000;
    }
    server {
        listen 127.0.0.1:$port_b;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-Host \$host;
        }
    }"
start_nginx nginx-proxy
pid_b="$started"
wait_ready "nginx proxy" "$pid_b" "$port_b" "bench.localhost" /

step "Starting cca-uat-proxy (C) on 127.0.0.1:$port_c"
store="$work/sessions.db"
CCA_BENCH_STORE="$store" CCA_BENCH_UPSTREAM_PORT="$port_a" \
    cargo test --quiet -p cca-uat-proxy --test browser -- --ignored --exact seed_store_for_benchmark \
    >"$work/seed.log" 2>&1 || {
    cat "$work/seed.log" >&2
    fail "could not write the session into $store"
}
SESSION_STORE="sqlite:$store" UAT_DOMAIN_SUFFIX=localhost PROXY_LOCAL_MODE=true \
    "$proxy_bin" serve --listen "127.0.0.1:$port_c" </dev/null >"$work/proxy.log" 2>&1 &
pid_c=$!
pids+=("$pid_c")
wait_ready "cca-uat-proxy" "$pid_c" "$port_c" "bench.localhost" /

step "Starting cca-uat-proxy behind sign-in (D) on 127.0.0.1:$port_d"
cookie_secret="bench-cookie-secret-of-more-than-32-characters"
CCA_BENCH_COOKIE_SECRET="$cookie_secret" CCA_BENCH_COOKIE_OUT="$work/cookie" \
    cargo test --quiet -p cca-uat-proxy --test browser -- --ignored --exact mint_cookie_for_benchmark \
    >"$work/mint.log" 2>&1 || {
    cat "$work/mint.log" >&2
    fail "could not mint the visitor's cookie"
}
cookie="$(cat "$work/cookie")"
SESSION_STORE="sqlite:$store" UAT_DOMAIN_SUFFIX=localhost PROXY_LOCAL_MODE=true \
    PREVIEW_SIGN_IN=github GITHUB_CLIENT_ID=Iv1.cca0test0client GITHUB_CLIENT_SECRET=cca-test-client-secret \
    PREVIEW_COOKIE_SECRET="$cookie_secret" GITHUB_API_URL="http://127.0.0.1:$port_g" \
    "$proxy_bin" serve --listen "127.0.0.1:$port_d" </dev/null >"$work/proxy-gate.log" 2>&1 &
pid_d=$!
pids+=("$pid_d")
# Admitted (200, not the sign-in redirect) only with the visitor's cookie.
wait_ready "cca-uat-proxy behind sign-in" "$pid_d" "$port_d" "bench.localhost" / "$cookie"

# CPU time (user + system, clock ticks) used so far by the given processes.
cpu_ticks() {
    local pid total=0 stat
    for pid in "$@"; do
        stat="$(cat "/proc/$pid/stat")"
        stat="${stat##*) }"
        # Fields after the command name: utime and stime are the 12th and 13th.
        total=$((total + $(awk '{ print $12 + $13 }' <<<"$stat")))
    done
    echo "$total"
}
clk_tck="$(getconf CLK_TCK)"

# Runs wrk with <threads> and <connections> against <url> with <host> (and, when
# WRK_COOKIE is set, that Cookie header), measuring the CPU time the given server processes
# spend; prints "<requests/s> <p50 ms> <p99 ms> <CPU µs/request>".
run_wrk() {
    local threads="$1" conns="$2" secs="$3" url="$4" host="$5" out before after
    shift 5
    local extra=()
    if [[ -n "${WRK_COOKIE:-}" ]]; then
        extra=(-H "Cookie: $WRK_COOKIE")
    fi
    before="$(cpu_ticks "$@")"
    out="$(wrk -t"$threads" -c"$conns" -d"${secs}s" --latency -H "Host: $host" "${extra[@]}" "$url")" ||
        fail "wrk against $url"
    after="$(cpu_ticks "$@")"
    if grep -qE 'Non-2xx|Socket errors' <<<"$out"; then
        printf '%s\n' "$out" >&2
        fail "errors or non-2xx answers from $url"
    fi
    awk -v ticks=$((after - before)) -v hz="$clk_tck" '
        function ms(v) {
            if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
            if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
            if (v ~ /s$/) return substr(v, 1, length(v) - 1) * 1000
            return v + 0
        }
        / requests in / { n = $1 }
        /^Requests\/sec:/ { rps = $2 }
        $1 == "50%" { p50 = ms($2) }
        $1 == "99%" { p99 = ms($2) }
        END { printf "%.0f %.3f %.3f %.1f\n", rps, p50, p99, ticks / hz * 1e6 / n }
    ' <<<"$out"
}

# The processes of each server: nginx's master and workers, the proxy's one process.
pids_a=("$pid_a")
mapfile -t -O 1 pids_a < <(pgrep -P "$pid_a")
pids_b=("$pid_b")
mapfile -t -O 1 pids_b < <(pgrep -P "$pid_b")
pids_c=("$pid_c")
pids_d=("$pid_d")

url_a="http://127.0.0.1:$port_a/"
url_b="http://127.0.0.1:$port_b/"
url_c="http://127.0.0.1:$port_c/"
url_d="http://127.0.0.1:$port_d/"

# One wrk run of <mode> (load: THREADS x CONNECTIONS; single: one connection) against <target>.
measure() {
    local mode="$1" target="$2" secs="$3" threads="$THREADS" conns="$CONNECTIONS"
    if [[ "$mode" == single ]]; then
        threads=1
        conns=1
    fi
    case "$target" in
    A) run_wrk "$threads" "$conns" "$secs" "$url_a" "127.0.0.1" "${pids_a[@]}" ;;
    C) run_wrk "$threads" "$conns" "$secs" "$url_c" "bench.localhost" "${pids_c[@]}" ;;
    D) WRK_COOKIE="$cookie" run_wrk "$threads" "$conns" "$secs" "$url_d" "bench.localhost" "${pids_d[@]}" ;;
    B) run_wrk "$threads" "$conns" "$secs" "$url_b" "bench.localhost" "${pids_b[@]}" ;;
    esac
}

step "Warm-up (${WARMUP_SECS}s each: fills the proxy's session cache and connection pools)"
for target in A C D B; do
    measure load "$target" "$WARMUP_SECS" >/dev/null
done

step "$ROUNDS round(s) of A, C, D, B: wrk -t$THREADS -c$CONNECTIONS (load), then -t1 -c1 (single); -d${DURATION}s --latency"
results="$work/results"
: >"$results"
for round in $(seq 1 "$ROUNDS"); do
    for mode in load single; do
        for target in A C D B; do
            line="$(measure "$mode" "$target" "$DURATION")"
            read -r rps p50 p99 cpu <<<"$line"
            printf 'round %s  %-6s  %s  %9s req/s  p50 %7s ms  p99 %7s ms  server CPU %6s µs/request\n' \
                "$round" "$mode" "$target" "$rps" "$p50" "$p99" "$cpu"
            echo "$mode $target $rps $p50 $p99 $cpu" >>"$results"
        done
    done
done

step "Medians over $ROUNDS round(s)"
python3 - "$results" "$THREADS" "$CONNECTIONS" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    mode, target, *values = line.split()
    rows.setdefault((mode, target), []).append(tuple(float(v) for v in values))
med = {k: [statistics.median(col) for col in zip(*r)] for k, r in rows.items()}
names = {"A": "upstream direct", "C": "cca-uat-proxy", "D": "cca-uat-proxy, sign-in", "B": "nginx proxy"}
titles = {"load": f"load (-t{sys.argv[2]} -c{sys.argv[3]})", "single": "single connection (-t1 -c1)"}
for mode in ("load", "single"):
    print(titles[mode])
    print(f"  {'':24}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'CPU µs/req':>12}")
    for t in "ACDB":
        rps, p50, p99, cpu = med[(mode, t)]
        print(f"  {t} {names[t]:22}{rps:>10.0f}{p50:>10.3f}{p99:>10.3f}{cpu:>12.1f}")
def m(mode, t):
    return med[(mode, t)]
for mode, label in (("load", "under load"), ("single", "single connection")):
    for t, what in (("C", "C/B"), ("D", "D/B (sign-in on)")):
        print(f"throughput {what} {label}: {m(mode, t)[0] / m(mode, 'B')[0]:.2f}x  (target >= 1.0x)")
    print(f"CPU per request {label}: C {m(mode, 'C')[3]:.1f} µs, D {m(mode, 'D')[3]:.1f} µs, B {m(mode, 'B')[3]:.1f} µs (target: C, D <= B)")
for mode, label in (("load", "under load"), ("single", "single connection")):
    added_c = m(mode, "C")[2] - m(mode, "A")[2]
    added_b = m(mode, "B")[2] - m(mode, "A")[2]
    print(f"p99 added over A, {label}: C {added_c:+.3f} ms, B {added_b:+.3f} ms (target: C <= B + 0.1 ms)")
EOF

step "Resident memory at $IDLE_CONNECTIONS open idle keep-alive connections"
python3 - "$port_c" "$port_b" "$IDLE_CONNECTIONS" "$pid_c" "${pids_b[*]}" <<'EOF'
import socket, sys, time

def rss_kib(pids):
    total = 0
    for pid in pids:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total

def hold(port, count):
    socks = []
    request = b"GET / HTTP/1.1\r\nHost: bench.localhost\r\n\r\n"
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                sys.exit(f"port {port}: connection closed before an answer")
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            sys.exit(f"port {port}: {head.splitlines()[0]!r}")
        length = next((int(l.split(b":")[1]) for l in head.split(b"\r\n")
                       if l.lower().startswith(b"content-length:")), None)
        if length is None:
            sys.exit(f"port {port}: no Content-Length")
        while len(body) < length:
            body += s.recv(4096)
        socks.append(s)
    return socks

port_c, port_b, count = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
proxy = [int(sys.argv[4])]
nginx = [int(p) for p in sys.argv[5].split()]
for name, port, pids in (("cca-uat-proxy", port_c, proxy), ("nginx proxy (all processes)", port_b, nginx)):
    before = rss_kib(pids)
    socks = hold(port, count)
    time.sleep(1)
    during = rss_kib(pids)
    for s in socks:
        s.close()
    print(f"{name}: VmRSS {before / 1024:.1f} MiB before, {during / 1024:.1f} MiB with {count} open connections")
    time.sleep(1)
EOF

step "The sign-in gate's cookie check (criterion, release)"
cargo bench -p cca-uat-proxy --bench gate 2>&1 | grep -E "^gate/| time:" || fail "the gate benchmark did not run"

step "Done (logs were in $work)"
