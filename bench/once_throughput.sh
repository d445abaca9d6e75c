#!/usr/bin/env bash
# One-shot (cron) throughput: `BIN watch --once --config CFG` over DATA with the ten
# rules of ../shared/bench/rules10.yaml.in (@WATCHED@ = DATA), read from its start to
# its end; once without --state and once with a fresh --state file. Checks exit 0 and
# that every ERRMARK line was alerted on stdout. Compare with grep_ceiling.sh run
# alongside (goal: >= 0.6x grep's lines/s).
# usage: [SHARED=../shared/bench] once_throughput.sh BINARY DATA
set -u
bin=$1; data=$2
shared=${SHARED:-$(dirname "$0")/../../shared/bench}
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
sed "s#@WATCHED@#$data#" "$shared/rules10.yaml.in" > "$dir/cfg.yaml"
expected=$(grep -c ERRMARK "$data"); lines=$(wc -l < "$data")
line=""
for mode in plain state; do
  args=(); [ $mode = state ] && { rm -f "$dir/state"; args=(--state "$dir/state"); }
  start=$(date +%s.%N)
  timeout 120 "$bin" watch --once --config "$dir/cfg.yaml" "${args[@]}" > "$dir/out" 2> "$dir/err"; rc=$?
  end=$(date +%s.%N)
  n=$(grep -c ERRMARK "$dir/out")
  ok=ok; [ $rc -eq 0 ] && [ "$n" -eq "$expected" ] || ok=FAIL
  [ $mode = state ] && { [ -s "$dir/state" ] || ok=FAIL-no-state-file; }
  line+=$(python3 -c "t=$end-$start; print(f'once{\"+state\" if \"$mode\"==\"state\" else \"\"} rc=$rc alerts={$n}/{$expected} seconds={t:.3f} lines_per_s={$lines/t:,.0f} $ok', end='')")"  "
done
echo "${line%  }"
