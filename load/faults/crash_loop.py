#!/usr/bin/env python3
"""Issue 14, faults: SIGKILL the relay at random moments while clients submit mail, and
check that nothing acknowledged is lost or doubled.

Several client threads submit encrypted messages (the fixture `encrypted.eml`, each with
a Message-ID of its own) over SMTPS to a few recipient accounts. Meanwhile the relay
is killed with SIGKILL at random moments (`--kills`, default 50) and started again on
the same data directory. In the end:

- every message that got a 250 after DATA is in its recipient's INBOX exactly once;
- a message whose submission was cut off by a kill (no 250 seen) is there at most once;
- the indexes are consistent: UIDs ascend without repeats, EXISTS is the number of
  messages, and a further restart serves the same UIDVALIDITY and UID -> Message-ID map.

usage: crash_loop.py --relay target/release/examples/relay [--kills 50] [--senders 4]
Prints a summary and exits non-zero on any violation. Loopback only, bounded in time.
"""
import argparse
import imaplib
import json
import os
import random
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOMAIN = "_chat.localhost"
PASSWORD = "Crash-loop-pw-1234"
TLS = ssl._create_unverified_context()


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class Relay:
    def __init__(self, binary, tmp, log_dir=None):
        self.binary, self.tmp = binary, tmp
        (self.smtp, self.submission, self.submissions, self.imap, self.imaps,
         self.https) = free_ports(6)
        self.ini = tmp / "chatmail.ini"
        self.ini.write_text(
            "[params]\n"
            f"mail_domain = {DOMAIN}\nmailboxes_dir = {tmp / 'mail'}\n"
            "listen_address = 127.0.0.1\n"
            f"smtp_port = {self.smtp}\nsubmission_port = {self.submission}\n"
            f"submissions_port = {self.submissions}\nimap_port = {self.imap}\n"
            f"imaps_port = {self.imaps}\nhttps_port = {self.https}\n"
            "max_load_1m = 1000\nmin_available_memory = 1M\nmin_free_disk_space = 1M\n"
            "notify_url = http://127.0.0.1:9/notify\n"
            # The senders submit far above the reference's 60 messages a minute.
            "max_user_send_per_minute = 100000\nmax_user_send_burst_size = 100000\n"
        )
        self.log = open((log_dir or tmp) / "relay.log", "a+")
        self.proc = None

    def start(self):
        offset = self.log.seek(0, 2)
        self.proc = subprocess.Popen(
            [self.binary, "--config", str(self.ini), "--data-dir", str(self.tmp / "data")],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=self.tmp)
        deadline = time.time() + 60
        while time.time() < deadline:
            self.log.flush()
            self.log.seek(offset)
            if "ready" in self.log.read():
                return
            if self.proc.poll() is not None:
                raise SystemExit(f"relay exited early, see {self.tmp / 'relay.log'}")
            time.sleep(0.02)
        raise SystemExit("relay not ready within 60 s")

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)


def message(template, sender, rcpt, mid):
    text = template.replace("{from_addr}", sender).replace("{to_addr}", rcpt)
    text = text.replace("{subject}", "[...]")
    text = re.sub(r"^Message-ID: .*$", f"Message-ID: <{mid}>", text, count=1,
                  flags=re.MULTILINE | re.IGNORECASE)
    return text.replace("\r\n", "\n").replace("\n", "\r\n")


def sender_loop(relay, template, sender, rcpts, stop, acked, unknown, errors, n):
    i = 0
    while not stop.is_set():
        try:
            with smtplib.SMTP_SSL("127.0.0.1", relay.submissions, context=TLS, timeout=20) as s:
                s.login(sender, PASSWORD)
                while not stop.is_set():
                    i += 1
                    rcpt = rcpts[i % len(rcpts)]
                    mid = f"crash-{n}-{i}@{DOMAIN}"
                    try:
                        s.sendmail(sender, [rcpt], message(template, sender, rcpt, mid))
                        acked.append((rcpt, mid))
                    except smtplib.SMTPResponseException as e:
                        if 400 <= e.smtp_code < 500:
                            unknown.append((rcpt, mid))  # refused for now: not stored
                        else:
                            errors.append(f"{mid}: {e.smtp_code} {e.smtp_error!r}")
                    except (smtplib.SMTPServerDisconnected, OSError):
                        unknown.append((rcpt, mid))  # cut off by a kill: maybe stored
                        raise
        except (smtplib.SMTPException, OSError):
            time.sleep(0.05)  # the relay is restarting


def inbox(relay, account):
    imap = imaplib.IMAP4_SSL("127.0.0.1", relay.imaps, ssl_context=TLS, timeout=60)
    imap.login(account, PASSWORD)
    typ, data = imap.select("INBOX")
    exists = int(data[0])
    uidvalidity = int(re.search(rb"\d+", imap.response("UIDVALIDITY")[1][0]).group())
    ids = {}
    if exists:
        typ, data = imap.uid("FETCH", "1:*", "(UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        for item in data:
            if isinstance(item, tuple):
                uid = int(re.search(rb"UID (\d+)", item[0]).group(1))
                m = re.search(rb"<([^>]+)>", item[1])
                ids[uid] = m.group(1).decode() if m else None
    imap.logout()
    return exists, uidvalidity, ids


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
    if not 1 <= args.kills <= 1000 or not 1 <= args.senders <= 64:
        raise SystemExit("kills 1..1000, senders 1..64")
    tmp = Path(tempfile.mkdtemp(prefix="chatmail-crash-"))
    relay = Relay(args.relay, tmp)
    relay.start()
    template = (ROOT / "testdata/fixtures/encrypted.eml").read_text()
    senders = [f"cs{n:07d}@{DOMAIN}" for n in range(args.senders)]
    rcpts = [f"cr{n:07d}@{DOMAIN}" for n in range(args.recipients)]
    for account in rcpts:  # created at first login
        inbox(relay, account)
    stop = threading.Event()
    acked, unknown, errors = [], [], []
    threads = [threading.Thread(target=sender_loop, daemon=True,
                                args=(relay, template, s, rcpts, stop, acked, unknown, errors, n))
               for n, s in enumerate(senders)]
    for t in threads:
        t.start()
    started = time.time()
    for _ in range(args.kills):
        time.sleep(random.uniform(args.min_gap, args.max_gap))
        relay.kill()
        relay.start()
    time.sleep(1)
    stop.set()
    for t in threads:
        t.join(60)
    elapsed = time.time() - started
    # Consistency, then once more after a clean restart.
    first = {a: inbox(relay, a) for a in rcpts}
    relay.stop()
    relay.start()
    second = {a: inbox(relay, a) for a in rcpts}
    relay.stop()
    violations = list(errors)
    for account in rcpts:
        exists, uidvalidity, ids = first[account]
        if exists != len(ids):
            violations.append(f"{account}: EXISTS {exists} but {len(ids)} messages fetched")
        if second[account] != first[account]:
            violations.append(f"{account}: a restart changed UIDVALIDITY or the UID map")
        if sorted(ids) != list(ids):
            violations.append(f"{account}: UIDs not ascending")
    counts = {}
    for account in rcpts:
        for mid in first[account][2].values():
            counts[(account, mid)] = counts.get((account, mid), 0) + 1
    lost = [m for m in acked if counts.get(m, 0) == 0]
    doubled = [m for m, c in counts.items() if c > 1]
    violations += [f"lost after 250: {m}" for m in lost]
    violations += [f"stored {counts[m]} times: {m}" for m in doubled]
    cut_stored = sum(1 for m in unknown if counts.get(m, 0) == 1)
    summary = {
        "kills": args.kills, "seconds": round(elapsed, 1), "acknowledged": len(acked),
        "cut_off_or_deferred": len(unknown), "cut_off_but_stored": cut_stored,
        "stored": sum(counts.values()), "lost": len(lost), "doubled": len(doubled),
        "violations": violations[:20], "data_dir": str(tmp),
    }
    print(json.dumps(summary, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    if not violations:
        relay.log.close()
        shutil.rmtree(tmp, ignore_errors=True)  # kept for inspection otherwise
    sys.exit(1 if violations else 0)


if __name__ == "__main__":
    main()
