"""Helpers shared by idle_latency.py and dc_latency.py: statistics, accounts, safety."""

from __future__ import annotations

import argparse
import ipaddress
import json
import pathlib
import random
import socket
import string
import sys

LOCALPART_CHARS = string.ascii_lowercase + string.digits


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list (p in 0..100)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * p // 100))  # ceil(n * p / 100)
    return sorted_values[int(rank) - 1]


def summarize(values_ms: list[float]) -> dict:
    """n, min, p50, p90, p99, max and mean of a list of milliseconds."""
    s = sorted(values_ms)
    if not s:
        return {"n": 0}
    return {
        "n": len(s),
        "min": s[0],
        "p50": percentile(s, 50),
        "p90": percentile(s, 90),
        "p99": percentile(s, 99),
        "max": s[-1],
        "mean": sum(s) / len(s),
    }


def random_account(domain: str, password: str | None = None) -> tuple[str, str]:
    """A chatmail-style account: 9-character local part; random 16-character password
    unless one is given (a reference server with one static password)."""
    rng = random.SystemRandom()
    local = "".join(rng.choice(LOCALPART_CHARS) for _ in range(9))
    pw = password or "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(16))
    return f"{local}@{domain}", pw


def require_loopback(host: str) -> None:
    """Refuse anything but a loopback target: these tools send many messages quickly."""
    for info in socket.getaddrinfo(host, None):
        if not ipaddress.ip_address(info[4][0]).is_loopback:
            sys.exit(f"{host} resolves to {info[4][0]}, not loopback; refusing")


def add_server_arguments(ap: argparse.ArgumentParser) -> None:
    """The options both benchmarks take to find the server under test."""
    ap.add_argument("--imap-host", default="127.0.0.1")
    ap.add_argument("--imap-port", type=int, required=True, help="IMAPS (implicit TLS)")
    ap.add_argument("--smtp-host", default="127.0.0.1")
    ap.add_argument("--smtp-port", type=int, required=True, help="SMTPS submission")
    ap.add_argument("--domain", required=True, help="mail domain of generated accounts")
    ap.add_argument("--password", help="password of generated accounts (default: random)")
    ap.add_argument("--label", default="", help="name of the system under test, for the output")
    ap.add_argument("--json-out", help="write the summary and every sample here")


def run_header(args: argparse.Namespace) -> dict:
    """The part of a result that says what was measured where."""
    return {
        "label": args.label,
        "imap": f"{args.imap_host}:{args.imap_port}",
        "smtp": f"{args.smtp_host}:{args.smtp_port}",
        "count": args.count,
        "warmup": args.warmup,
    }


def report(result: dict, samples: list[dict], json_out: str | None) -> int:
    """Print the summary, write it with the samples to json_out; exit status 1 if any
    message was lost or the run stopped early."""
    print(json.dumps(result, indent=2))
    if json_out:
        pathlib.Path(json_out).write_text(
            json.dumps({**result, "samples": samples}, indent=1) + "\n"
        )
    return 0 if result["lost"] == 0 and result["stopped_early"] is None else 1
