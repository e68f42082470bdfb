set -u
cd /work/main
OUT=/tmp/anchor
for round in 1 2 3; do
  # relay: fresh data dir each round
  pkill -f 'release/examples/relay' ; sleep 0.5
  rm -rf /tmp/lg && mkdir -p /tmp/lg
  cp load/loadgen/results/2026-12-07/relay.ini /tmp/lg.ini
  echo 'mailboxes_dir = /tmp/lg/data/mail' >> /tmp/lg.ini
  target/release/examples/relay --config /tmp/lg.ini --data-dir /tmp/lg/data > /tmp/lg/relay.log 2>&1 &
  for i in $(seq 50); do grep -q ready /tmp/lg/relay.log && break; sleep 0.1; done
  target/release/examples/loadgen --insecure --connections 8 --messages 2000 --accounts 4 --size 4096 \
     --json $OUT/relay-$round.json > $OUT/relay-$round.txt 2>&1
  echo "round $round relay rc=$?"
  pkill -f 'release/examples/relay'; sleep 0.5
  # postfix+dovecot
  target/release/examples/loadgen --insecure --domain bench.localhost --port-submission 3465 --imaps-port 3993 \
     --password benchpassword --connections 8 --messages 2000 --accounts 4 --size 4096 \
     --json $OUT/pd-$round.json > $OUT/pd-$round.txt 2>&1
  echo "round $round pd rc=$?"
done
