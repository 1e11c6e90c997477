#!/usr/bin/env bash
# Blob pull speed with curl to /dev/null against a page-cache read of the
# same file, in the same run, interleaved round by round.
#
#   tools/pull_speed.sh [ROUNDS] [MIB] [BIN] [OTHER_BIN]
#
# Each binary serves its own fresh store on a free port of 127.0.0.1 (plain
# HTTP, no access control); a random MIB MiB blob is pushed to each with one
# monolithic upload. A round: `cat` of the stored blob file to /dev/null
# (the page-cache read), then one `curl -o /dev/null` per server. A
# Python server that writes the same bytes from memory with no HTTP
# parsing gives the loopback ceiling (skipped without python3). Prints
# GB/s per round and each pull's ratio to the same round's cat.
set -euo pipefail
rounds=${1:-5}
mib=${2:-256}
bin=${3:-target/release/ocidb}
other=${4:-}
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT

if [ ! -x "$bin" ]; then cargo build --release >/dev/null; fi
head -c $((mib << 20)) /dev/urandom >"$work/blob"
digest=sha256:$(sha256sum "$work/blob" | cut -d' ' -f1)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo $((20000 + RANDOM % 20000)); }

# serve BIN NAME: starts BIN on a fresh store, pushes the blob, prints the
# port and the path of the stored file.
serve() {
    local exe=$1 name=$2 port
    port=$(free_port)
    "$exe" --store "$work/$name" serve --addr "127.0.0.1:$port" >"$work/$name.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$port/v2/" >/dev/null && break
        sleep 0.1
    done
    curl -sf -X POST -H 'Content-Type: application/octet-stream' --data-binary "@$work/blob" \
        "http://127.0.0.1:$port/v2/bench/pull/blobs/uploads/?digest=$digest" >/dev/null
    echo "$port $(find "$work/$name" -type f -name "${digest#sha256:}*" | head -1)"
}

read -r port_a file_a < <(serve "$bin" a)
port_b=""
if [ -n "$other" ]; then read -r port_b _ < <(serve "$other" b); fi
port_py=""
if command -v python3 >/dev/null; then
    port_py=$(free_port)
    python3 - "$work/blob" "$port_py" <<'EOF' &
import socket, sys
data = open(sys.argv[1], 'rb').read()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', int(sys.argv[2]))); s.listen(8)
while True:
    c, _ = s.accept()
    req = b''
    while b'\r\n\r\n' not in req:
        req += c.recv(65536)
    c.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n' % len(data))
    mv = memoryview(data)
    for i in range(0, len(data), 4 << 20):
        c.sendall(mv[i:i + (4 << 20)])
    c.close()
EOF
    pids+=($!)
    sleep 1
fi

gbps() { python3 -c "print(f'{$1/1e9:.2f}')" 2>/dev/null || echo "$1"; }
cat_speed() {
    local s e
    s=$(date +%s%N)
    cat "$1" >/dev/null
    e=$(date +%s%N)
    echo $(((mib << 20) * 1000000000 / (e - s)))
}
pull() { curl -s -o /dev/null -w '%{speed_download}' "$1"; }
ratio() { python3 -c "print(f'{$1/$2:.2f}')" 2>/dev/null || echo "?"; }

cat "$file_a" >/dev/null
printf 'round  cat GB/s  %-14s ÷ cat' "pull ($bin)"
[ -n "$port_b" ] && printf '  %-14s ÷ cat' "pull ($other)"
[ -n "$port_py" ] && printf '  loopback ceiling ÷ cat'
echo
for r in $(seq "$rounds"); do
    c=$(cat_speed "$file_a")
    a=$(pull "http://127.0.0.1:$port_a/v2/bench/pull/blobs/$digest")
    printf '%5d  %8s  %14s  %5s' "$r" "$(gbps "$c")" "$(gbps "$a")" "$(ratio "$a" "$c")"
    if [ -n "$port_b" ]; then
        b=$(pull "http://127.0.0.1:$port_b/v2/bench/pull/blobs/$digest")
        printf '  %14s  %5s' "$(gbps "$b")" "$(ratio "$b" "$c")"
    fi
    if [ -n "$port_py" ]; then
        p=$(pull "http://127.0.0.1:$port_py/")
        printf '  %8s  %5s' "$(gbps "$p")" "$(ratio "$p" "$c")"
    fi
    echo
done
