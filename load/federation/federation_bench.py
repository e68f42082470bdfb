#!/usr/bin/env python3
"""Federation figures for BENCHMARKS.md: send-to-visible latency between two relays, and
the delivery queue's rate to one and to many destinations.

Starts relays of the `relay` example (give the release build) on the standard ports of
loopback addresses, resolving each other through a static zone made from their own
`relay dns` output (as tests/e2e/test_federation.py does; needs root):

* `_alpha.localhost` 127.0.0.2, the sender;
* `_beta.localhost` 127.0.0.3 without port 25: reached over HTTPS `POST /mxdeliv`;
* `_gamma.localhost` 127.0.0.4 without HTTPS: reached over SMTP with STARTTLS;
* `_dNN.localhost` 127.0.1.NN: the many destinations (HTTPS).

Latency: the recipient IDLEs over IMAPS on its relay; the sender submits over SMTPS on
alpha, one message at a time; a sample is the time from the start of the submission to
the `* N EXISTS` the recipient's IDLE receives (submission, queue, transfer, delivery and
wake-up). Queue rate: the destinations are down while `--queue` messages are submitted;
then the sender is killed, the destinations start, the sender starts again with every
message due at once, and the rate is the messages divided by the time from the first to
the last file appearing in the recipients' maildirs: the queue's drain rate.

    sudo python3 load/federation/federation_bench.py --relay-bin target/release/examples/relay
"""

import argparse
import json
import os
import re
import shutil
import smtplib
import socket
import ssl
import statistics
import sys
import tempfile
import time
import imaplib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "e2e"))
from conftest import STANDARD_PORTS, Relay, fixture  # noqa: E402

CTX = ssl.create_default_context()
CTX.check_hostname = False
CTX.verify_mode = ssl.CERT_NONE

EXTRA = ("outbound_retry_min = 1\noutbound_retry_max = 1\n"
         "max_user_send_per_minute = 1000000\n")


def percentile(samples, p):
    s = sorted(samples)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def account(relay):
    addr, password = relay.creds()
    with imaplib.IMAP4_SSL(relay.address, relay.imaps_port, ssl_context=CTX) as m:
        m.login(addr, password)
    return addr, password


class Idle:
    """One IMAPS connection in IDLE on INBOX; `wait_exists(n)` returns when the server
    says `* n EXISTS` (or more)."""

    def __init__(self, relay, addr, password):
        raw = socket.create_connection((relay.address, relay.imaps_port))
        self.sock = CTX.wrap_socket(raw)
        self.buf = b""
        self.line()
        self.cmd(f"a LOGIN {addr} {password}")
        self.cmd("b SELECT INBOX")
        self.sock.sendall(b"c IDLE\r\n")
        while not self.line().startswith(b"+"):
            pass

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RuntimeError("IMAP connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def cmd(self, text):
        tag = text.split()[0].encode()
        self.sock.sendall(text.encode() + b"\r\n")
        while True:
            line = self.line()
            if line.startswith(tag + b" "):
                assert b" OK" in line, line
                return

    def wait_exists(self, n):
        while True:
            m = re.match(rb"\* (\d+) EXISTS", self.line())
            if m and int(m.group(1)) >= n:
                return


def latency(sender, s_addr, s_pw, receiver, count):
    r_addr, r_pw = account(receiver)
    idle = Idle(receiver, r_addr, r_pw)
    samples = []
    with smtplib.SMTP_SSL(sender.address, sender.submissions_port, context=CTX) as s:
        s.login(s_addr, s_pw)
        for i in range(count):
            # A Message-ID of its own each (fixture() gives one): a second copy of a
            # recent delivery is not stored again.
            text = fixture("encrypted.eml", s_addr, r_addr).encode()
            t0 = time.perf_counter()
            s.sendmail(s_addr, [r_addr], text)
            idle.wait_exists(i + 1)
            samples.append((time.perf_counter() - t0) * 1000)
    return {"count": count, "p50_ms": round(percentile(samples, 50), 2),
            "p99_ms": round(percentile(samples, 99), 2),
            "max_ms": round(max(samples), 2), "mean_ms": round(statistics.mean(samples), 2)}


def maildir_files(relay, addr):
    d = relay.mailboxes_dir / addr
    out = []
    for sub in ("new", "cur"):
        try:
            out.extend(os.scandir(d / sub))
        except FileNotFoundError:
            pass
    return out


def queue_rate(sender, s_addr, s_pw, receivers, total):
    """Queue `total` messages spread over `receivers` while they are down; stop the
    sender (SIGKILL), start the receivers, then the sender: every queued message is due
    at once when it loads its queue, so first-to-last arrival is the queue's drain rate
    (not the spread of its retry times)."""
    targets = [(r, *account(r)) for r in receivers]
    for r in receivers:
        r.stop()
    with smtplib.SMTP_SSL(sender.address, sender.submissions_port, context=CTX) as s:
        s.login(s_addr, s_pw)
        for i in range(total):
            r, addr, _ = targets[i % len(targets)]
            s.sendmail(s_addr, [addr], fixture("encrypted.eml", s_addr, addr).encode())
    sender.kill()
    for r in receivers:
        r.start()
    sender.start()
    first = None
    deadline = time.time() + 600
    while True:
        counts = [len(maildir_files(r, addr)) for r, addr, _ in targets]
        now = time.perf_counter()
        if first is None and sum(counts) > 0:
            first = now
        if sum(counts) >= total:
            break
        if time.time() > deadline:
            raise RuntimeError(f"only {sum(counts)} of {total} delivered within 600 s")
        time.sleep(0.005)
    elapsed = now - first
    return {"messages": total, "destinations": len(receivers),
            "first_to_last_s": round(elapsed, 3),
            "msg_per_s": round((total - 1) / elapsed, 1) if elapsed > 0 else None}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--relay-bin", required=True)
    ap.add_argument("--latency", type=int, default=300)
    ap.add_argument("--queue", type=int, default=2000)
    ap.add_argument("--destinations", type=int, default=10)
    ap.add_argument("--out")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root: the relays use the standard ports of 127.0.0.x")
    os.environ["CHATMAIL_RELAY_BIN"] = str(Path(args.relay_bin).resolve())
    tmp = Path(tempfile.mkdtemp(prefix="chatmail-fedbench-"))
    zone = tmp / "zone"
    layout = [("alpha", "127.0.0.2", STANDARD_PORTS),
              ("beta", "127.0.0.3", (0,) + STANDARD_PORTS[1:]),
              ("gamma", "127.0.0.4", STANDARD_PORTS[:5] + (0,))]
    layout += [(f"d{i:02d}", f"127.0.1.{i + 1}", STANDARD_PORTS) for i in range(args.destinations)]
    relays = {name: Relay(tmp / name, extra_ini=EXTRA + f"resolver = static:{zone}\n",
                          domain=f"_{name}.localhost", address=address, ports=ports, start=False)
              for name, address, ports in layout}
    zone.write_text("".join(r.dns() for r in relays.values())
                    + "".join(f"{r.domain}. 3600 IN A {r.address}\n" for r in relays.values()))
    results = {}
    try:
        for r in relays.values():
            r.start()
        alpha = relays["alpha"]
        s_addr, s_pw = account(alpha)
        # Warm-up: first connections, DKIM key caches.
        latency(alpha, s_addr, s_pw, relays["beta"], 5)
        latency(alpha, s_addr, s_pw, relays["gamma"], 5)
        results["latency_https"] = latency(alpha, s_addr, s_pw, relays["beta"], args.latency)
        results["latency_smtp"] = latency(alpha, s_addr, s_pw, relays["gamma"], args.latency)
        results["queue_one_https"] = queue_rate(alpha, s_addr, s_pw, [relays["beta"]], args.queue)
        results["queue_one_smtp"] = queue_rate(alpha, s_addr, s_pw, [relays["gamma"]], args.queue)
        many = [relays[f"d{i:02d}"] for i in range(args.destinations)]
        results["queue_many_https"] = queue_rate(alpha, s_addr, s_pw, many, args.queue)
    finally:
        for r in relays.values():
            r.close()
        shutil.rmtree(tmp, ignore_errors=True)
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
