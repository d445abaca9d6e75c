#!/usr/bin/env bash
# Idle footprint with N network streams: one python process listens on N loopback
# ports and accepts and holds every connection without sending a byte; tinywatcher
# follows all N as `type: tcp` streams (idle_timeout 3600). Once all N are connected,
# reports RSS (KiB; anon = heap/stacks, file = mapped binary and libraries), processes, threads and CPU seconds burned over WAIT idle seconds
# (as ../shared/bench/idle_footprint.sh does for files). Goal: 50 streams < 4 MB, 1 process.
# usage: idle_streams.sh BINARY N [WAIT] [extra watch args...]
set -u
bin=$1; n=$2; wait_s=${3:-10}; shift 3 2>/dev/null || shift $#
dir=$(mktemp -d); srv=""; pid=""
cleanup() { for p in $pid $srv; do kill $p 2>/dev/null; wait $p 2>/dev/null; done; rm -rf "$dir"; }
trap cleanup EXIT
python3 -c "
import os, selectors, socket, sys, time
n, d, life = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]); sel = selectors.DefaultSelector(); held = []
for _ in range(n):
    s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(8); sel.register(s, selectors.EVENT_READ)
with open(d + '/ports.tmp', 'w') as f: f.write(' '.join(str(k.fileobj.getsockname()[1]) for k in sel.get_map().values()))
os.rename(d + '/ports.tmp', d + '/ports')
end = time.time() + life   # bounded even if this script is killed
while time.time() < end:
    for k, _ in sel.select(timeout=1):
        c, _ = k.fileobj.accept(); held.append(c)
        with open(d + '/accepted.tmp', 'w') as f: f.write(str(len(held)))
        os.rename(d + '/accepted.tmp', d + '/accepted')
" "$n" "$dir" $((wait_s + 60)) & srv=$!
for _ in $(seq 1 100); do [ -s "$dir/ports" ] && break; sleep 0.05; done
[ -s "$dir/ports" ] || { echo "idle_streams: server did not start"; exit 1; }
{ echo "inputs:"; echo "  streams:"
  i=0; for p in $(cat "$dir/ports"); do i=$((i+1)); echo "    - { name: s$i, type: tcp, url: \"127.0.0.1:$p\", idle_timeout: 3600 }"; done
  echo "alerts:"; echo "  console:"; echo "    type: stdout"
  echo "rules:"; echo "  - name: errors"; echo "    pattern: \"ERROR\""; echo "    alert: console"; echo "    cooldown: 0"; } > "$dir/cfg.yaml"
"$bin" watch --config "$dir/cfg.yaml" "$@" > "$dir/out" 2> "$dir/err" & pid=$!
for _ in $(seq 1 100); do [ "$(cat "$dir/accepted" 2>/dev/null || echo 0)" -ge "$n" ] && break; sleep 0.05; done
conn=$(cat "$dir/accepted" 2>/dev/null || echo 0)
sleep 2
kill -0 $pid 2>/dev/null || { echo "idle_streams: watcher exited: $(tail -1 "$dir/err")"; exit 1; }
pids="$pid $(pgrep -P $pid | tr '\n' ' ')"
cpu() { for p in $pids; do awk '{print $14+$15}' /proc/$p/stat 2>/dev/null; done | awk '{s+=$1} END {print s+0}'; }
cpu0=$(cpu); sleep "$wait_s"; cpu1=$(cpu)
st() { for p in $pids; do awk -v k="$1:" '$1 == k {print $2}' /proc/$p/status; done | awk '{s+=$1} END {print s+0}'; }
rss=$(st VmRSS); anon=$(st RssAnon); file=$(st RssFile)
threads=$(st Threads)
procs=$(echo $pids | wc -w); tck=$(getconf CLK_TCK)
python3 -c "print(f'streams=$n connected=$conn rss_kib=$rss (anon=$anon file=$file) processes=$procs threads=$threads idle_cpu_s={($cpu1-$cpu0)/$tck:.2f} over {$wait_s}s')"
