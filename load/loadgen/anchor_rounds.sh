#!/usr/bin/env bash
# Issue 14: the relay and Debian's Postfix + Dovecot (load/latency/postfix_dovecot.sh
# start) in alternating rounds,
# 8 connections x 2,000 messages of 4 KB over implicit TLS, 4 recipient accounts.
# The relay gets a fresh data directory per round; old ones are removed only at the end
# (on this machine's ext4 without a journal, files deleted in the last minutes make every
# new inode slower to allocate: `recently_deleted` in the profile, BENCHMARKS.md).
# Also records the relay's CPU seconds and context switches per message (/proc).
set -u
# usage: OUT=load/loadgen/results/<run> bash load/loadgen/anchor_rounds.sh
cd "$(dirname "$0")/../.."
OUT=${OUT:?set OUT to the results directory}
mkdir -p "$OUT"
RUNS=$(mktemp -d /tmp/lg-rounds.XXXXXX)
RELAY=target/release/examples/relay
LOADGEN=target/release/examples/loadgen
ROUNDS=${ROUNDS:-3}
ctx() { cat /proc/$1/task/*/status 2>/dev/null | awk '/^voluntary_ctxt/{v+=$2} /^nonvoluntary/{n+=$2} END{print v+n}'; }
cpu() { awk '{print $14+$15}' /proc/$1/stat; }
for round in $(seq "$ROUNDS"); do
  D=$RUNS/relay-$round
  mkdir -p "$D"
  cp load/loadgen/results/2026-12-07/relay.ini "$D/relay.ini"
  echo "mailboxes_dir = $D/data/mail" >> "$D/relay.ini"
  $RELAY --config "$D/relay.ini" --data-dir "$D/data" > "$D/relay.log" 2>&1 &
  RP=$!
  for _ in $(seq 100); do grep -q ready "$D/relay.log" && break; sleep 0.1; done
  # A relay left running on the same ports would be measured instead (this one exits).
  kill -0 $RP 2>/dev/null || { echo "relay did not start: $(tail -3 "$D/relay.log")"; exit 1; }
  C0=$(ctx $RP); T0=$(cpu $RP)
  $LOADGEN --insecure --connections 8 --messages 2000 --accounts 4 --size 4096 \
     --json "$OUT/relay-$round.json" > "$OUT/relay-$round.txt" 2>&1
  echo "round $round relay rc=$?"
  C1=$(ctx $RP); T1=$(cpu $RP)
  echo "relay cpu_s $(echo "($T1-$T0)/$(getconf CLK_TCK)" | bc -l) ctx_switches $((C1-C0)) messages 2000" >> "$OUT/relay-$round.txt"
  kill $RP; wait $RP 2>/dev/null
  $LOADGEN --insecure --domain bench.localhost --port-submission 3465 --imaps-port 3993 \
     --password benchpassword --connections 8 --messages 2000 --accounts 4 --size 4096 \
     --json "$OUT/pd-$round.json" > "$OUT/pd-$round.txt" 2>&1
  echo "round $round pd rc=$?"
done
rm -rf "$RUNS"
