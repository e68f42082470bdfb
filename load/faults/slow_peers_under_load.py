#!/usr/bin/env python3
"""Issue 14, faults: the slow-peer and silent-peer test of issue 9 with the load running.

Starts the release relay on a fresh data directory (loadgen's config), then:

1. a baseline: `loadgen` alone (8 connections x --messages of 4 KB, 4 accounts);
2. the same load again while 200 silent connections and 200 connections dripping one
   byte a second are held open, spread over the submission and IMAP ports (cleartext
   and implicit TLS) and 40 loopback addresses (127.0.0.10 ...), 10 per address, as
   tests/slow_peers.rs does without load.

It checks that every message of both runs was accepted and delivered (loadgen reports no
error), prints both runs' rates and latencies side by side, and counts how the slow
connections ended (still open at the end of the load, or closed by the relay). The
relay's own deadlines (login 60 s, TLS handshake) are longer than the load; the test
with shortened deadlines, where every slow connection must be dropped with the
protocol's goodbye, is tests/slow_peers.rs.

usage: slow_peers_under_load.py [--relay target/release/examples/relay]
       [--loadgen target/release/examples/loadgen] [--messages 4000] [--json FILE]
Loopback only; bounded in time. Exits non-zero when a message was lost or refused.
"""
import argparse
import asyncio
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "load/loadgen/results/2026-12-07/relay.ini"
# The ports of that config: submission (cleartext), submissions (TLS), IMAP, IMAPS.
PORTS = [2587, 2465, 2143, 2993]
SLOW_EACH = 200
ADDRESSES = 40


def run_loadgen(loadgen: str, messages: int, out: Path) -> dict:
    cmd = [loadgen, "--insecure", "--connections", "8", "--messages", str(messages),
           "--accounts", "4", "--size", "4096", "--json", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    sys.stdout.write(done.stdout)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"loadgen failed: {done.returncode}")
    return json.loads(out.read_text())


async def slow_connection(source: str, port: int, drip: bool, stop: asyncio.Event,
                          ended: list, kind: str) -> None:
    """Holds one connection: silent, or one byte a second; records how it ended."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0)), 10)
    except (OSError, asyncio.TimeoutError) as e:
        ended.append((kind, "not connected: " + repr(e)))
        return
    closed_by_relay = False
    try:
        while not stop.is_set():
            if drip:
                writer.write(b"x")
                await writer.drain()
            try:
                data = await asyncio.wait_for(reader.read(4096), 1.0)
                if not data:
                    closed_by_relay = True
                    break
            except asyncio.TimeoutError:
                pass
    except OSError:
        closed_by_relay = True
    finally:
        writer.close()
    ended.append((kind, "closed by the relay" if closed_by_relay else "open at the end"))


async def with_slow_peers(loadgen: str, messages: int, out: Path) -> tuple:
    stop = asyncio.Event()
    ended: list = []
    tasks = []
    for i in range(2 * SLOW_EACH):
        source = f"127.0.0.{10 + i % ADDRESSES}"
        # Silent and dripping alternate; each kind covers every port.
        port = PORTS[(i // 2) % len(PORTS)]
        tasks.append(asyncio.create_task(
            slow_connection(source, port, i % 2 == 1, stop, ended, f"{port} "
                            + ("dripping" if i % 2 else "silent"))))
    await asyncio.sleep(3)  # let them all connect before the load starts
    result = await asyncio.to_thread(run_loadgen, loadgen, messages, out)
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 30)
    return result, ended


def summary(run: dict) -> dict:
    keys = ["accepted", "delivered", "accepted_per_s", "delivered_per_s", "errors",
            "refused", "lost", "accept_latency_ms", "deliver_latency_ms"]
    return {k: run.get(k) for k in keys if k in run}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--relay", default=str(ROOT / "target/release/examples/relay"))
    parser.add_argument("--loadgen", default=str(ROOT / "target/release/examples/loadgen"))
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--json")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    work = Path(tempfile.mkdtemp(prefix="chatmail-slowload-"))
    config = work / "relay.ini"
    shutil.copy(CONFIG, config)
    with open(config, "a") as f:
        f.write(f"mailboxes_dir = {work}/data/mail\n")
    log = open(work / "relay.log", "w")
    relay = subprocess.Popen([args.relay, "--config", str(config), "--data-dir",
                              str(work / "data")], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 20
        while "ready" not in (work / "relay.log").read_text():
            if relay.poll() is not None or time.time() > deadline:
                raise SystemExit("relay did not start: " + (work / "relay.log").read_text()[-500:])
            time.sleep(0.1)
        print("== baseline: loadgen alone")
        baseline = run_loadgen(args.loadgen, args.messages, work / "baseline.json")
        print(f"== with {SLOW_EACH} silent and {SLOW_EACH} dripping connections")
        loaded, ended = asyncio.run(with_slow_peers(args.loadgen, args.messages,
                                                    work / "loaded.json"))
        counts: dict = {}
        for kind, how in ended:
            key = f"{kind}: {how}"
            counts[key] = counts.get(key, 0) + 1
        result = {
            "messages": args.messages,
            "baseline": summary(baseline),
            "with_slow_peers": summary(loaded),
            "slow_connections": counts,
            "relay_alive": relay.poll() is None,
        }
    finally:
        relay.terminate()
        relay.wait(timeout=20)
        log.close()
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    failed = [name for name in ("baseline", "with_slow_peers")
              if result[name].get("delivered") != args.messages or result[name].get("errors")]
    if failed or not result["relay_alive"]:
        print(f"FAILED: {failed or 'the relay died'}", file=sys.stderr)
        return 1
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
