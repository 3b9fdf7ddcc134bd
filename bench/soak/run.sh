#!/bin/bash
# The soak of docs/reliability.md: igw serve with API keys, a request guard
# and per-key token quotas (bench/soak/igw.yaml) in front of four igw sim
# replicas of 12 sequences each, under a constant ShareGPT-like load
# (bench/soak/workload.yaml, 20 req/s for 10 minutes: about 70% of the
# fleet's sequences busy), sampling the gateway's resident memory,
# goroutines and heap every 15 s. Everything on loopback; about 11 minutes.
#
#   IGW=bin/igw bench/soak/run.sh            # DURATION=3m for a shorter run
set -u
IGW=${IGW:-bin/igw}
OUT=${OUT:-/tmp/igw-soak}
DURATION=${DURATION:-10m}
mkdir -p "$OUT"
cd "$(dirname "$0")/../.."
"$IGW" sim --replicas 4 --port 18101 --model meta-llama/Llama-3.1-8B-Instruct --max-num-seqs 12 >"$OUT/sim.log" 2>&1 &
SIM=$!
"$IGW" serve --config bench/soak/igw.yaml >"$OUT/serve.log" 2>&1 &
GW=$!
trap 'kill $SIM $GW $SAMPLER 2>/dev/null; wait 2>/dev/null' EXIT
for _ in $(seq 50); do curl -sf http://127.0.0.1:18190/readyz >/dev/null && break; sleep 0.2; done
sample() {
  echo -e "time\trss_mib\theap_inuse_mib\tgoroutines\trequests"
  while sleep 15; do
    curl -sf http://127.0.0.1:18190/metrics >"$OUT/page" || continue
    awk -v t="$(date -u +%H:%M:%S)" '
      $1 == "process_resident_memory_bytes" {rss = $2}
      $1 == "go_memstats_heap_inuse_bytes" {heap = $2}
      $1 == "go_goroutines" {g = $2}
      $1 ~ /^igw_requests_total/ {reqs += $2}
      END {printf "%s\t%.1f\t%.1f\t%d\t%d\n", t, rss/1048576, heap/1048576, g, reqs}' "$OUT/page"
  done
}
sample >"$OUT/samples.tsv" &
SAMPLER=$!
"$IGW" bench run --target http://127.0.0.1:18180 --workload bench/soak/workload.yaml --out "$OUT/run" \
  --max-duration "$DURATION" --header "Authorization: Bearer sk-soak-key"
sleep 20 # one more sample after the load
cat "$OUT/samples.tsv"
