#!/usr/bin/env bash
# Issue 15: the database's own floor on this machine, for BENCHMARKS.md "Several nodes".
# pgbench against a throwaway cluster (Debian's PostgreSQL, its defaults: fsync on,
# synchronous_commit on): 8 clients, each transaction one INSERT of a 4 KB bytea row
# plus a pg_notify, as a delivery does (the relay's append is one statement that also
# bumps the mailbox row; this is the lower bound without it), 15 s.
# usage: bash load/nodes/commit_floor.sh
set -eu
cd "$(dirname "$0")/../.."
python3 - <<'PY'
import subprocess, sys, tempfile, os
sys.path.insert(0, "tests/e2e")
import pgcluster
c = pgcluster.Cluster()
try:
    c.psql("CREATE TABLE m (id bigserial PRIMARY KEY, body bytea NOT NULL)", db="chatmail")
    script = os.path.join(c.tmp, "append.sql")
    with open(script, "w") as f:
        f.write("INSERT INTO m (body) VALUES (decode(repeat('ab', 4096), 'hex'));\n"
                "SELECT pg_notify('chatmail_changes', 'bench x');\n")
    os.chmod(c.tmp, 0o755); os.chmod(script, 0o644)
    for clients in (1, 8):
        out = subprocess.run([str(c.bin / "pgbench"), "-n", "-h", "127.0.0.1", "-p", str(c.port),
                              "-U", "postgres", "-c", str(clients), "-j", "2", "-T", "15",
                              "-f", script, "chatmail"], capture_output=True, text=True)
        tps = [l for l in out.stdout.splitlines() if l.startswith("tps") or "latency average" in l]
        print(f"clients {clients}: " + "; ".join(tps) + (out.stderr[-300:] if out.returncode else ""))
finally:
    c.stop()
PY
