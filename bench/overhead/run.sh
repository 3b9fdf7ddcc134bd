#!/bin/bash
# igw bench overhead: igw serve (CONFIG, default bench/overhead/serve.yaml)
# in front of one igw sim replica, versus the replica directly, on loopback:
# three rounds of 220 KiB prompts at 100 concurrent, 220 KiB one at a time
# and 4 KB at 8 concurrent, with the gateway's CPU and allocation per
# request. About 1.5 minutes. See docs/perf-before.md.
#
#   IGW=/tmp/igw-before bench/overhead/run.sh > overhead.out
#   IGW=/tmp/igw-before CASES=c100 bench/overhead/run.sh bench/overhead/serve-noadmit.yaml
set -u
IGW=${IGW:?set IGW to the igw binary}
OUT=${OUT:-/tmp/igw-perf/overhead}
CASES=${CASES:-c100 c1 4k}
mkdir -p "$OUT"
cd "$(dirname "$0")/../.."
CONFIG=${1:-bench/overhead/serve.yaml}
# Simulated GPU time divided by 1000 and a KV cache for 100 distinct
# 50k-token prompts, so the replica's own work is mostly CPU.
"$IGW" sim --port 18101 --model m --time-scale 1000 --kv-cache-blocks 400000 --max-num-batched-tokens 1000000 >"$OUT/sim.log" 2>&1 &
SIM=$!
"$IGW" serve --config "$CONFIG" --log-level warn >"$OUT/serve.log" 2>&1 &
GW=$!
trap 'kill $SIM $GW 2>/dev/null; wait' EXIT
echo "sim pid $SIM, serve pid $GW, $CONFIG"
for i in $(seq 50); do curl -sf http://127.0.0.1:19091/readyz >/dev/null && break; sleep 0.2; done
O="--gateway http://127.0.0.1:18080 --direct http://127.0.0.1:18101 --model m --gateway-pid $GW --gateway-metrics http://127.0.0.1:19091/metrics --idle 3s"
for round in 1 2 3; do
  for c in $CASES; do
    echo "=== round $round $c $(date -u +%H:%M:%S) loadavg $(cat /proc/loadavg)"
    case $c in
    c100) timeout 90 "$IGW" bench overhead $O --prompt-bytes 225280 --concurrency 100 --requests 1000 --block 200 --duration 20s ;;
    c1) timeout 90 "$IGW" bench overhead $O --prompt-bytes 225280 --concurrency 1 --requests 300 --block 50 --duration 10s ;;
    4k) timeout 90 "$IGW" bench overhead $O --prompt-bytes 4096 --concurrency 8 --requests 4000 --block 500 --duration 10s ;;
    esac
  done
done
curl -s http://127.0.0.1:19091/metrics | grep -E "^igw_flow_control_(outcomes_total|wait_seconds_(sum|count))"
echo "=== end $(date -u +%H:%M:%S) loadavg $(cat /proc/loadavg)"
