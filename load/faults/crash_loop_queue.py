#!/usr/bin/env python3
"""Issue 14, faults, with the delivery queue: SIGKILL the sending relay at random moments
while clients submit mail for another relay, and check that every message that got a
250 reaches the other relay, and how many arrive more than once.

Two relays of the `relay` example (the release build) on the standard ports of loopback
addresses, resolving each other through a static zone made from their own `relay dns`
output (as load/federation/federation_bench.py; needs root):

* `_alpha.localhost` on 127.0.0.2: the senders submit here over SMTPS; every message
  goes through alpha's durable delivery queue and out over HTTPS `POST /mxdeliv`,
  DKIM-signed, retried after 1 s when it could not go;
* `_beta.localhost` on 127.0.0.3: the recipients' relay, never killed.

Alpha is killed with SIGKILL `--kills` times (default 50) at random moments and started
again on the same data directory. Then the senders stop, alpha drains its queue, and the
recipients' INBOXes on beta are read:

- every message acknowledged by alpha (250 after DATA) is there: none lost;
- none is there twice: the queue delivers at least once (a kill after beta's 250 and
  before alpha rewrites the envelope sends that recipient again after the restart;
  ARCHITECTURE.md, `src/outbound/queue/mod.rs`), and beta stores such a second copy
  only once (`src/relay/duplicates.rs`; the copies it dropped are counted from its log);
- alpha's queue is empty at the end.

usage: sudo .venv/bin/python load/faults/crash_loop_queue.py --relay target/release/examples/relay
       [--kills 50] [--senders 4] [--json FILE]
Exits non-zero when an acknowledged message is lost or arrives twice, or the queue does
not drain.
"""
import argparse
import imaplib
import json
import os
import random
import re
import shutil
import smtplib
import ssl
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from conftest import STANDARD_PORTS, Relay  # noqa: E402

TLS = ssl._create_unverified_context()
EXTRA = ("outbound_retry_min = 1\noutbound_retry_max = 1\n"
         "max_user_send_per_minute = 1000000\nmax_user_send_burst_size = 1000000\n")


def message(template, sender, rcpt, mid):
    text = template.replace("{from_addr}", sender).replace("{to_addr}", rcpt)
    text = text.replace("{subject}", "[...]")
    text = re.sub(r"^Message-ID: .*$", f"Message-ID: <{mid}>", text, count=1,
                  flags=re.MULTILINE | re.IGNORECASE)
    return text.replace("\r\n", "\n").replace("\n", "\r\n")


def login(relay, addr, password):
    m = imaplib.IMAP4_SSL(relay.address, relay.imaps_port, ssl_context=TLS, timeout=60)
    m.login(addr, password)
    return m


def message_ids(relay, addr, password):
    m = login(relay, addr, password)
    try:
        typ, data = m.select("INBOX")
        if int(data[0]) == 0:
            return []
        typ, data = m.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        out = []
        for item in data:
            if isinstance(item, tuple):
                found = re.search(rb"<([^>]+)>", item[1])
                out.append(found.group(1).decode() if found else None)
        return out
    finally:
        m.logout()


def sender_loop(alpha, template, sender, password, rcpts, stop, acked, unknown, n):
    i = 0
    while not stop.is_set():
        try:
            with smtplib.SMTP_SSL(alpha.address, alpha.submissions_port, context=TLS,
                                  timeout=20) as s:
                s.login(sender, password)
                while not stop.is_set():
                    i += 1
                    rcpt = rcpts[i % len(rcpts)]
                    mid = f"queue-crash-{n}-{i}@_alpha.localhost"
                    try:
                        s.sendmail(sender, [rcpt], message(template, sender, rcpt, mid))
                        acked.append((rcpt, mid))
                    except smtplib.SMTPResponseException:
                        unknown.append((rcpt, mid))
                    except (smtplib.SMTPServerDisconnected, OSError):
                        unknown.append((rcpt, mid))
                        raise
        except (smtplib.SMTPException, OSError):
            time.sleep(0.05)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--relay", default=str(ROOT / "target/release/examples/relay"))
    ap.add_argument("--kills", type=int, default=50)
    ap.add_argument("--senders", type=int, default=4)
    ap.add_argument("--recipients", type=int, default=3)
    ap.add_argument("--min-gap", type=float, default=0.2)
    ap.add_argument("--max-gap", type=float, default=1.5)
    ap.add_argument("--json")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root: the relays use the standard ports of 127.0.0.x")
    if not 1 <= args.kills <= 1000 or not 1 <= args.senders <= 64:
        sys.exit("kills 1..1000, senders 1..64")
    os.environ["CHATMAIL_RELAY_BIN"] = str(Path(args.relay).resolve())
    tmp = Path(tempfile.mkdtemp(prefix="chatmail-crash-queue-"))
    zone = tmp / "zone"
    alpha = Relay(tmp / "alpha", extra_ini=EXTRA + f"resolver = static:{zone}\n",
                  domain="_alpha.localhost", address="127.0.0.2", ports=STANDARD_PORTS,
                  start=False)
    beta = Relay(tmp / "beta", extra_ini=EXTRA + f"resolver = static:{zone}\n",
                 domain="_beta.localhost", address="127.0.0.3",
                 ports=(0,) + STANDARD_PORTS[1:], start=False)
    zone.write_text(alpha.dns() + beta.dns()
                    + "".join(f"{r.domain}. 3600 IN A {r.address}\n" for r in (alpha, beta)))
    violations = []
    try:
        alpha.start()
        beta.start()
        template = (ROOT / "testdata/fixtures/encrypted.eml").read_text()
        senders = [alpha.creds("qs") for _ in range(args.senders)]
        rcpts = [beta.creds("qr") for _ in range(args.recipients)]
        for addr, pw in rcpts:  # created at first login
            login(beta, addr, pw).logout()
        stop = threading.Event()
        acked, unknown = [], []
        threads = [threading.Thread(
            target=sender_loop, daemon=True,
            args=(alpha, template, addr, pw, [r for r, _ in rcpts], stop, acked, unknown, n))
            for n, (addr, pw) in enumerate(senders)]
        for t in threads:
            t.start()
        started = time.time()
        for _ in range(args.kills):
            time.sleep(random.uniform(args.min_gap, args.max_gap))
            alpha.kill()
            alpha.start()
        time.sleep(1)
        stop.set()
        for t in threads:
            t.join(60)
        load_s = time.time() - started
        # Alpha drains its queue (each message due at once or within the 1 s retry).
        wanted = {mid for _, mid in acked}
        deadline = time.time() + 300
        while True:
            seen = {}
            for addr, pw in rcpts:
                for mid in message_ids(beta, addr, pw):
                    seen[mid] = seen.get(mid, 0) + 1
            queue_left = [p for p in (alpha.data_dir / "queue").glob("*.json")]
            if wanted <= set(seen) and not queue_left:
                break
            if time.time() > deadline:
                break
            time.sleep(1)
        lost = sorted(wanted - set(seen))
        repeated = {mid: c for mid, c in seen.items() if c > 1}
        cut_arrived = sum(1 for _, mid in unknown if mid in seen)
        if lost:
            violations.append(f"{len(lost)} acknowledged messages lost, e.g. {lost[:3]}")
        if repeated:
            violations.append(f"{len(repeated)} messages arrived more than once, "
                              f"e.g. {sorted(repeated)[:3]}")
        if queue_left:
            violations.append(f"{len(queue_left)} messages still queued on alpha after 300 s")
        summary = {
            "kills": args.kills, "load_seconds": round(load_s, 1),
            "acknowledged": len(acked), "cut_off_or_refused": len(unknown),
            "cut_off_but_arrived": cut_arrived, "arrived": sum(seen.values()),
            "lost": len(lost), "arrived_more_than_once": len(repeated),
            "extra_copies": sum(c - 1 for c in repeated.values()),
            "second_copies_dropped_by_beta":
                beta.log_path.read_text(errors="replace").count(
                    "second copy of a recent delivery dropped"),
            "queue_left": len(queue_left), "violations": violations,
            "data_dir": str(tmp),
        }
    finally:
        alpha.close()
        beta.close()
    print(json.dumps(summary, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    if not violations:
        shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(1 if violations else 0)


if __name__ == "__main__":
    main()
