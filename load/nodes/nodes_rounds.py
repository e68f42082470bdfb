#!/usr/bin/env python3
"""Issue 15: one and two relay nodes sharing one PostgreSQL, measured with loadgen in
alternating rounds, with a maildir relay on the same machine beside them.

Per round, each on fresh storage (a new database, a new data directory):

* `maildir`: one relay on the maildir store (127.0.0.2), for comparison;
* `pg-1node`: one node on PostgreSQL, submission and IDLE on it;
* `pg-cross`: two nodes; submission to A (127.0.0.2), IDLE sessions on B (127.0.0.3):
  every delivery wakes a session on the other node (LISTEN/NOTIFY, then a read-back);
* `pg-2nodes`: two nodes, two loadgens at once, each submitting to one node with its
  IDLE sessions on the other; throughput is the sum.

Two loads each: `light` (1 connection, 300 messages: the wake-up latency without queues)
and `heavy` (8 connections, 2,000 messages of 4 KB: throughput). The cluster is Debian's
PostgreSQL with its defaults (fsync on, synchronous_commit on: a 250 means committed),
in a temporary directory on loopback, stopped at the end.

usage: python3 load/nodes/nodes_rounds.py OUT_DIR [ROUNDS]
(build first: cargo build --release --features postgres --example relay --example loadgen)
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
import pgcluster  # noqa: E402

RELAY = ROOT / "target/release/examples/relay"
LOADGEN = ROOT / "target/release/examples/loadgen"
PORTS = dict(smtp_port=2525, submission_port=2587, submissions_port=2465, imap_port=2143,
             imaps_port=2993, https_port=2443)
LOADS = {"light": ["--connections", "1", "--messages", "300"],
         "heavy": ["--connections", "8", "--messages", "2000"]}


def ini(address, storage, mailboxes_dir, nodes):
    lines = ["[params]", "mail_domain = _chat.localhost", f"listen_address = {address}",
             f"mailboxes_dir = {mailboxes_dir}", f"storage = {storage}", f"nodes = {nodes}",
             "max_user_send_per_minute = 1000000", "max_user_send_burst_size = 1000000",
             "max_load_1m = 1000", "min_available_memory = 1M", "min_free_disk_space = 1M",
             "notify_url = http://127.0.0.1:9/notify"]
    lines += [f"{k} = {v}" for k, v in PORTS.items()]
    return "\n".join(lines) + "\n"


def cpu_s(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Node:
    def __init__(self, work, name, address, storage, nodes):
        d = work / name
        d.mkdir(parents=True)
        (d / "chatmail.ini").write_text(ini(address, storage, d / "mail", nodes))
        self.log = open(d / "relay.log", "w")
        self.proc = subprocess.Popen([RELAY, "--config", d / "chatmail.ini", "--data-dir",
                                      d / "data"], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while "ready" not in (d / "relay.log").read_text():
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError((d / "relay.log").read_text())
            time.sleep(0.05)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()


def loadgen(out, host, imap_host, load):
    args = [LOADGEN, "--insecure", "--host", host, "--imap-host", imap_host,
            "--accounts", "4", "--size", "4096", "--json", out] + LOADS[load]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


def measure(out_dir, tag, nodes, runs):
    """Runs the loadgens `runs` ([(host, imap_host)]) at once; records their JSON and the
    CPU seconds of the relay nodes and of PostgreSQL (all its processes)."""
    results = {}
    for load in LOADS:
        pg_before = pg_cpu()
        before = [cpu_s(n.proc.pid) for n in nodes]
        procs = [loadgen(out_dir / f"{tag}-{load}-{i}.json", h, ih, load)
                 for i, (h, ih) in enumerate(runs)]
        codes = [p.wait(900) for p in procs]
        relay_cpu = sum(cpu_s(n.proc.pid) for n in nodes) - sum(before)
        reports = [json.loads((out_dir / f"{tag}-{load}-{i}.json").read_text())
                   for i in range(len(runs))]
        delivered = sum(r["delivered"] for r in reports)
        results[load] = {
            "exit_codes": codes,
            "delivered": delivered,
            "delivered_per_s": sum(r["delivered_per_s"] for r in reports),
            "deliver_p50_ms": max(r["deliver_latency_ms"]["p50"] for r in reports),
            "deliver_p99_ms": max(r["deliver_latency_ms"]["p99"] for r in reports),
            "accept_p50_ms": max(r["accept_latency_ms"]["p50"] for r in reports),
            "relay_cpu_ms_per_msg": 1000 * relay_cpu / max(delivered, 1),
            "postgres_cpu_ms_per_msg": 1000 * (pg_cpu() - pg_before) / max(delivered, 1)
            if pg_before is not None else None,
        }
        print(tag, load, json.dumps(results[load]), flush=True)
    return results


CLUSTER = None


def pg_cpu():
    if CLUSTER is None:
        return None
    total = 0.0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            if CLUSTER.proc.pid in (ppid, int(pid)):
                total += cpu_s(pid)
        except (OSError, ValueError, IndexError):
            pass
    return total


def main():
    global CLUSTER
    out_dir = Path(sys.argv[1])
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="chatmail-nodes-"))
    CLUSTER = pgcluster.Cluster()
    summary = []
    try:
        for r in range(1, rounds + 1):
            a = Node(work, f"maildir-{r}", "127.0.0.2", "maildir", 1)
            summary.append(("maildir", measure(out_dir, f"maildir-{r}", [a],
                                               [("127.0.0.2", "127.0.0.2")])))
            a.stop()
            for tag, two, runs in (
                    ("pg-1node", False, [("127.0.0.2", "127.0.0.2")]),
                    ("pg-cross", True, [("127.0.0.2", "127.0.0.3")]),
                    ("pg-2nodes", True, [("127.0.0.2", "127.0.0.3"),
                                         ("127.0.0.3", "127.0.0.2")])):
                db = f"{tag.replace('-', '_')}_{r}"
                CLUSTER.psql(f"CREATE DATABASE {db}")
                url = CLUSTER.url(db)
                nodes = [Node(work, f"{tag}-{r}-a", "127.0.0.2", url, 2 if two else 1)]
                if two:
                    nodes.append(Node(work, f"{tag}-{r}-b", "127.0.0.3", url, 2))
                summary.append((tag, measure(out_dir, f"{tag}-{r}", nodes, runs)))
                for n in nodes:
                    n.stop()
    finally:
        CLUSTER.stop()
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
