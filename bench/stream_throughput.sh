#!/usr/bin/env bash
# Lines/s through one local network stream (127.0.0.1), with the ten rules of
# ../shared/bench/rules10.yaml.in and stdout alerts: time from starting tinywatcher
# until every ERRMARK alert of DATA is on its stdout.
#   tcp: socat serves DATA once (`socat -u FILE:DATA TCP-LISTEN:P`; a python server if
#        socat is missing) to a `type: tcp` stream.
#   ws:  websocketd runs `cat DATA` per connection, one text message per line, to a
#        `type: websocket` stream; ws_client.py then times websocketd alone with a cheap
#        client (counts bytes, wakes per 64 KiB): websocketd's ceiling, and ws/ceiling.
# usage: [SHARED=../shared/bench] [KINDS="tcp ws"] stream_throughput.sh BINARY DATA
set -u
bin=$1; data=$(realpath "$2"); here=$(dirname "$0")
shared=${SHARED:-$here/../../shared/bench}
dir=$(mktemp -d); peer=""; tw=""
cleanup() { for p in $tw $peer; do kill $p 2>/dev/null; wait $p 2>/dev/null; done; rm -rf "$dir"; }
trap cleanup EXIT
expected=$(grep -c ERRMARK "$data"); lines=$(wc -l < "$data")
free_port() { python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])"; }
listening() { awk -v p=$(printf '%04X' "$1") '$2 ~ ":"p"$" && $4 == "0A" {f=1} END {exit !f}' /proc/net/tcp; }
wait_listen() { for _ in $(seq 1 100); do listening "$1" && return 0; sleep 0.05; done; return 1; }
cfg() {  # $1 = type, $2 = url
  awk -v t="$1" -v u="$2" '/^  files:$/ {print "  streams:"; next}
    /@WATCHED@/ {print "    - { name: bench, type: " t ", url: \"" u "\", idle_timeout: 600, reconnect_delay: 600 }"; next} {print}' \
    "$shared/rules10.yaml.in" > "$dir/cfg.yaml"
}
run_tw() {  # time until all alerts are out; prints "kind lines_per_s=..."
  : > "$dir/out"; start=$(date +%s.%N)
  "$bin" watch --config "$dir/cfg.yaml" > "$dir/out" 2> "$dir/err" & tw=$!
  deadline=$(( $(date +%s) + 120 )); n=0
  while [ "$(date +%s)" -lt $deadline ]; do
    n=$(grep -c ERRMARK "$dir/out"); [ "$n" -ge "$expected" ] && break
    kill -0 $tw 2>/dev/null || break; sleep 0.01
  done
  end=$(date +%s.%N)
  rss=$(awk '/VmRSS/ {print $2}' /proc/$tw/status 2>/dev/null)
  kill $tw 2>/dev/null; wait $tw 2>/dev/null; tw=""
  python3 -c "t=$end-$start; print(f'$1 alerts={$n}/{$expected} seconds={t:.3f} lines_per_s={$lines/t:,.0f} rss_kib=${rss:-0}', end='')"
}
out=""
for kind in ${KINDS:-tcp ws}; do
  port=$(free_port)
  if [ $kind = tcp ]; then
    if command -v socat >/dev/null; then timeout 150 socat -u "FILE:$data" "TCP-LISTEN:$port,reuseaddr,bind=127.0.0.1" & peer=$!; via=socat
    else timeout 150 python3 -c "
import socket, sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', $port)); s.listen(1)
c, _ = s.accept(); c.sendfile(open(sys.argv[1], 'rb')); c.close()" "$data" & peer=$!; via=python; fi
    cfg tcp "127.0.0.1:$port"
  else
    command -v websocketd >/dev/null || { out+="ws: websocketd not installed  "; continue; }
    timeout 150 websocketd --port=$port --address=127.0.0.1 --loglevel=error cat "$data" 2>/dev/null & peer=$!; via=websocketd
    cfg websocket "ws://127.0.0.1:$port/"
  fi
  wait_listen $port || { out+="$kind: $via did not listen  "; kill $peer 2>/dev/null; wait $peer 2>/dev/null; peer=""; continue; }
  out+="$(run_tw "$kind($via)")"
  if [ $kind = ws ]; then
    c=$(timeout 120 python3 "$here/ws_client.py" $port "$data")
    r=$(python3 -c "import re; f=lambda s: float(re.findall('lines_per_s=([0-9,]+)', s)[-1].replace(',', '')); a, b = f('''$out'''), f('''$c'''); print(f'{a/b:.2f}')" 2>/dev/null)
    out+="  $c ws/ceiling=${r:-?}"
  fi
  kill $peer 2>/dev/null; wait $peer 2>/dev/null; peer=""
  out+="  "
done
echo "${out%  }"
