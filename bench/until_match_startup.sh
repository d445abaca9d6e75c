#!/usr/bin/env bash
# Startup cost of the one-shot mode: `BIN watch --file F --rule ERROR --until-match`
# on a 1-line file whose line matches (exit 0 expected), timed end to end as a process.
# Prints the median wall time over RUNS runs (default 200) — hyperfine when installed,
# else a python loop timing subprocess.run with time.perf_counter.
# usage: [RUNS=200] until_match_startup.sh BINARY
set -u
bin=$1; runs=${RUNS:-200}
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
echo "2026-12-04T10:00:00Z ERROR ERRMARK-1 payment failed: upstream timeout" > "$dir/one.log"
out=$(timeout 10 "$bin" watch --file "$dir/one.log" --rule ERROR --until-match 2>/dev/null); rc=$?
case "$out" in *ERRMARK-1*) ;; *) echo "until_match: matched line missing from stdout (rc=$rc)"; exit 1;; esac
[ $rc -eq 0 ] || { echo "until_match: exit $rc, want 0"; exit 1; }
if command -v hyperfine >/dev/null; then
  hyperfine -N --style none --warmup 10 --runs "$runs" --export-json "$dir/h.json" \
    "$bin -q watch --file $dir/one.log --rule ERROR --until-match" >/dev/null 2>&1 || { echo "until_match: hyperfine failed"; exit 1; }
  tool=hyperfine
else
  python3 - "$bin" "$dir/one.log" "$runs" "$dir/h.json" <<'PY'
import json, subprocess, sys, time
b, f, n, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
cmd = [b, "-q", "watch", "--file", f, "--rule", "ERROR", "--until-match"]
ts = []
for i in range(n + 10):
    t = time.perf_counter(); subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10, check=True)
    if i >= 10: ts.append(time.perf_counter() - t)
json.dump({"results": [{"times": ts}]}, open(out, "w"))
PY
  [ $? -eq 0 ] || { echo "until_match: python loop failed"; exit 1; }
  tool=python
fi
python3 -c "
import json, statistics as s
t = sorted(json.load(open('$dir/h.json'))['results'][0]['times'])
print(f'until_match runs={len(t)} median_ms={s.median(t)*1e3:.2f} p90_ms={t[int(.9*len(t))]*1e3:.2f} min_ms={t[0]*1e3:.2f} tool=$tool')"
