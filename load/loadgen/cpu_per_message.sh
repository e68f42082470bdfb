#!/usr/bin/env bash
# Issue 14: the relay's CPU and context switches per delivered message under loadgen.
# Starts the release relay on a fresh data directory (the config of the loadgen runs),
# runs loadgen (8 connections, MSGS messages of 4 KB, 4 accounts), and reads the relay's
# utime+stime (/proc/PID/stat) and context switches (all threads' /proc status) around
# the run. Leaves the data directory for inspection; remove it later, not right before
# another run (on ext4 without a journal, recently deleted inodes slow file creation:
# BENCHMARKS.md). Usage: MSGS=4000 bash load/loadgen/cpu_per_message.sh
set -eu
cd "$(dirname "$0")/../.."
MSGS=${MSGS:-4000}
D=$(mktemp -d /tmp/lg-cpu.XXXXXX)
cp load/loadgen/results/2026-12-07/relay.ini "$D/relay.ini"
echo "mailboxes_dir = $D/data/mail" >> "$D/relay.ini"
target/release/examples/relay --config "$D/relay.ini" --data-dir "$D/data" > "$D/relay.log" 2>&1 &
RP=$!
trap 'kill $RP 2>/dev/null' EXIT
for _ in $(seq 100); do grep -q ready "$D/relay.log" && break; sleep 0.1; done
kill -0 $RP || { echo "relay did not start: $(tail -3 "$D/relay.log")"; exit 1; }
switches() { cat /proc/$RP/task/*/status | awk '/ctxt_switches/{n+=$2} END{print n}'; }
ticks() { awk '{print $14+$15}' /proc/$RP/stat; }
C0=$(switches); T0=$(ticks)
target/release/examples/loadgen --insecure --connections 8 --messages "$MSGS" --accounts 4 \
    --size 4096 | sed -n 2,3p
C1=$(switches); T1=$(ticks)
HZ=$(getconf CLK_TCK)
awk -v t=$((T1 - T0)) -v c=$((C1 - C0)) -v m="$MSGS" -v hz="$HZ" 'BEGIN {
    printf "relay CPU per message %.3f ms, context switches per message %.1f (data: '"$D"')\n",
        t / hz * 1000 / m, c / m }'
