#!/bin/bash
# igw bench picker against igw epp (bench/picker/epp.yaml) in front of three
# igw sim replicas, on loopback: three rounds of 4 KB closed loop, 220 KiB
# closed loop and 4 KB at 1,000 req/s, with the picker's CPU and allocation
# per decision. About 2 minutes. See docs/perf-before.md.
#
#   IGW=/tmp/igw-before bench/picker/run.sh > picker.out
set -u
IGW=${IGW:?set IGW to the igw binary}
OUT=${OUT:-/tmp/igw-perf/picker}
mkdir -p "$OUT"
cd "$(dirname "$0")/../.."
"$IGW" sim --replicas 3 --port 18001 --model m >"$OUT/sim.log" 2>&1 &
SIM=$!
"$IGW" epp --config-file bench/picker/epp.yaml --address 127.0.0.1 --grpc-port 19002 --grpc-health-port 19003 --metrics-port 19090 >"$OUT/epp.log" 2>&1 &
EPP=$!
trap 'kill $SIM $EPP 2>/dev/null; wait' EXIT
echo "sim pid $SIM, epp pid $EPP"
sleep 3
M="--picker-pid $EPP --picker-metrics http://127.0.0.1:19090/metrics"
for round in ${ROUNDS:-1 2 3}; do
  echo "=== round $round $(date -u +%H:%M:%S) loadavg $(cat /proc/loadavg)"
  timeout 60 "$IGW" bench picker --tls --target 127.0.0.1:19002 --model m --duration 8s $M
  echo "--- loadavg $(cat /proc/loadavg)"
  timeout 60 "$IGW" bench picker --tls --target 127.0.0.1:19002 --model m --duration 8s --prompt-bytes 225280 $M
  echo "--- loadavg $(cat /proc/loadavg)"
  timeout 60 "$IGW" bench picker --tls --target 127.0.0.1:19002 --model m --duration 10s --rate 1000 $M
done
echo "=== end $(date -u +%H:%M:%S) loadavg $(cat /proc/loadavg)"
