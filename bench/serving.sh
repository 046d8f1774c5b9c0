#!/usr/bin/env bash
# Served (longenc-server + `longenc bench`) vs offline (longenc-encode) on 512-token documents.
# Reports wall-clock rates and, because the build machine is shared, tokens per CPU-second of
# the encoding process (server: utime+stime from /proc over the run; offline: user+sys).
# Usage: bench/serving.sh [BUILD_DIR]   (needs longenc-server, longenc, longenc-encode)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$root/build}"
srv="${SRV:-$build/bin/longenc-server}"; cli="${CLI:-$build/bin/longenc}"; enc="${ENC:-$build/bin/longenc-encode}"
threads="${THREADS:-2}"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
"$root/.venv/bin/python" - "$work" <<'PY'
import json, random, sys
random.seed(1)
with open(f"{sys.argv[1]}/docs.jsonl", "w") as f:
    for i in range(96):
        ids = [101] + [random.randrange(1000, 30000) for _ in range(510)] + [102]
        f.write(json.dumps({"id": str(i), "token_ids": ids}) + "\n")
PY
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

served() {  # served CONCURRENCY REQUESTS MAX_BATCH_TOKENS
  rm -f "$work/port"
  "$srv" --host=127.0.0.1 --port=0 --port_file="$work/port" --metrics_address=127.0.0.1:0 \
    --threads="$threads" --max_batch_tokens="$3" 2>"$work/server.log" &
  local pid=$!
  until [ -s "$work/port" ]; do sleep 0.2; done
  local s="--server=127.0.0.1:$(cat "$work/port")"
  until "$cli" "$s" health >/dev/null 2>&1; do sleep 0.2; done
  "$cli" "$s" bench --concurrency=1 --length=512 --requests=2 --warmup=0 >/dev/null
  local t0; t0=$(cpu_ticks $pid)
  local out; out=$("$cli" "$s" bench --concurrency="$1" --length=512 --requests="$2" --warmup=0 --format=json)
  local t1; t1=$(cpu_ticks $pid)
  kill -TERM $pid; wait $pid
  python3 -c "
import json,sys; r=json.loads(sys.argv[1]); cpu=(int(sys.argv[2])-int(sys.argv[3]))/int(sys.argv[4])
print(f'served   C={sys.argv[5]:>2} max_batch_tokens={sys.argv[6]:>5}: {r[\"tokens_per_s\"]:7.0f} tok/s wall, {r[\"tokens\"]/cpu:7.0f} tok/CPU-s, p50 {r[\"latency_ms\"][\"p50\"]:.0f} ms, p99 {r[\"latency_ms\"][\"p99\"]:.0f} ms')
" "$out" "$t1" "$t0" "$hz" "$1" "$3"
}

run_offline() {  # run_offline DOCS BATCH_TOKENS -> "user+sys wall" of one longenc-encode run
  head -"$1" "$work/docs.jsonl" > "$work/in.jsonl"
  /usr/bin/time -f "%U %S %e" -o "$work/time" "$enc" --threads="$threads" --progress=false \
    --batch_tokens="$2" --input="$work/in.jsonl" > /dev/null
  awk '{print $1 + $2, $3}' "$work/time"
}

offline() {  # offline DOCS BATCH_TOKENS: the cost of DOCS-1 documents beyond a 1-document run,
             # so that model loading and warm-up are not counted
  read -r c1 w1 < <(run_offline 1 "$2")
  read -r cn wn < <(run_offline "$1" "$2")
  python3 -c "
d,b=int('$1'),int('$2'); c=float('$cn')-float('$c1'); w=float('$wn')-float('$w1'); t=(d-1)*512
print(f'offline  docs={d:>3} batch_tokens={b:>5}: {t/w:7.0f} tok/s wall, {t/c:7.0f} tok/CPU-s, {1000*w/(d-1):.0f} ms/doc wall (load excluded)')"
}

for budget in 16384 4096 1024; do
  served 32 96 "$budget"
  offline 96 "$budget"
done
served 1 24 16384
offline 24 512
