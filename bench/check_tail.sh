#!/usr/bin/env bash
# `check -n 100` on a 1 GiB log must seek from the end, not read the whole file:
# builds BENCHDIR/big.log once (real lines, a ~1 MiB block of log lines repeated,
# not sparse; cached for later runs), then times `BIN check --file BIG --rule ERROR
# -n 100` — median of RUNS (default 20) runs with hyperfine, else a python loop.
# Warm page cache for the tail (the first run reads it in); with strace, also the
# bytes the process read in all. Goal: < 50 ms.
# usage: [RUNS=20] [BENCHDIR=target/bench] check_tail.sh BINARY
set -u
bin=$1; runs=${RUNS:-20}
benchdir=${BENCHDIR:-$(dirname "$0")/../target/bench}; big=$benchdir/big.log
gib=$((1024*1024*1024))
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
mkdir -p "$benchdir"
if [ "$(stat -c %s "$big" 2>/dev/null || echo 0)" -lt $gib ]; then
  python3 -c "
import random; random.seed(7)
with open('$dir/block', 'w') as f:
    for i in range(10000):   # ~1 MiB; every 37th line an ERROR line
        if i % 37 == 5: f.write(f'2026-12-04T10:00:{i%60:02d}Z ERROR payment failed: upstream timeout id={i} user={random.randint(1,99999)}\n')
        else: f.write(f'2026-12-04T10:00:{i%60:02d}Z INFO request id={i} path=/api/v1/items/{random.randint(1,9999)} status=200 dur={random.randint(1,900)}ms\n')"
  bs=$(stat -c %s "$dir/block"); reps=$(( (gib + bs - 1) / bs ))
  for i in $(seq 1 $reps); do cat "$dir/block"; done > "$big.tmp" && mv "$big.tmp" "$big" || { rm -f "$big.tmp"; echo "check_tail: could not write $big"; exit 1; }
fi
size=$(stat -c %s "$big"); blocks=$(stat -c %b "$big")
[ $((blocks * 512)) -ge $((size - 1048576)) ] || { echo "check_tail: $big is sparse"; exit 1; }
timeout 30 "$bin" check --file "$big" --rule ERROR -n 100 --color never > "$dir/out" 2>/dev/null; rc=$?
hits=$(grep -c ERROR "$dir/out"); [ $rc -eq 0 ] && [ "$hits" -gt 0 ] || { echo "check_tail: rc=$rc hits=$hits, want 0 and > 0"; exit 1; }
rd=""   # bytes the process read in all (libraries, /proc, the file): proof it seeks from the end
if command -v strace >/dev/null; then
  strace -f -qq -e trace=read,pread64 -o "$dir/st" "$bin" -q check --file "$big" --rule ERROR -n 100 --color never >/dev/null 2>&1
  rd=" bytes_read=$(awk '/= [0-9]+$/ {s+=$NF} END {print s+0}' "$dir/st")"
fi
cmd=("$bin" -q check --file "$big" --rule ERROR -n 100 --color never)
if command -v hyperfine >/dev/null; then
  hyperfine -N --style none --warmup 2 --runs "$runs" --export-json "$dir/h.json" "${cmd[*]}" >/dev/null 2>&1 || { echo "check_tail: hyperfine failed"; exit 1; }
  tool=hyperfine
else
  python3 -c "
import json, subprocess, sys, time
ts = []
for i in range($runs + 2):
    t = time.perf_counter(); subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30, check=True)
    if i >= 2: ts.append(time.perf_counter() - t)
json.dump({'results': [{'times': ts}]}, open('$dir/h.json', 'w'))" "${cmd[@]}" || { echo "check_tail: python loop failed"; exit 1; }
  tool=python
fi
python3 -c "
import json, statistics as s
t = sorted(json.load(open('$dir/h.json'))['results'][0]['times'])
print(f'check_tail file_mib={$size/2**20:.0f} hits={$hits} runs={len(t)} median_ms={s.median(t)*1e3:.2f} max_ms={t[-1]*1e3:.2f} tool=$tool$rd')"
