#!/usr/bin/env python3
"""Issue 14, faults: the disk fills up under the relay, then space returns.

The relay's data and mailboxes live on a small tmpfs of their own (`--size-mb`, default
64). After the accounts exist, a filler file takes every free byte. Then:

- every submission gets a temporary 4xx answer, never a 250 (nothing is acknowledged
  that is not on disk) and never a permanent 5xx;
- existing mail can still be read over IMAP;
- once the filler is deleted, the relay accepts mail again by itself, without a
  restart;
- in the end every message that got a 250 is in its recipient's INBOX exactly once, and
  none of the refused ones is.

usage: disk_full.py --relay target/debug/examples/relay   (needs root for the mount)
Prints a summary and exits non-zero on any violation (77 if no tmpfs can be mounted);
the tmpfs is unmounted at the end.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from crash_loop import DOMAIN, PASSWORD, ROOT, TLS, Relay, inbox, message  # noqa: E402

import smtplib  # noqa: E402


def submit(relay, template, sender, rcpt, mid):
    """The reply code to DATA for one message (0: the connection broke)."""
    try:
        with smtplib.SMTP_SSL("127.0.0.1", relay.submissions, context=TLS, timeout=30) as s:
            s.login(sender, PASSWORD)
            s.sendmail(sender, [rcpt], message(template, sender, rcpt, mid))
            return 250
    except smtplib.SMTPResponseException as e:
        return e.smtp_code
    except smtplib.SMTPRecipientsRefused as e:
        return list(e.recipients.values())[0][0]
    except (smtplib.SMTPException, OSError) as e:
        print(f"{mid}: {e!r}", file=sys.stderr)
        return 0


def fill(path):
    """Writes zeros to `path` until the filesystem is full."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 20, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--relay", default=str(ROOT / "target/release/examples/relay"))
    ap.add_argument("--size-mb", type=int, default=64)
    ap.add_argument("--messages", type=int, default=20)
    ap.add_argument("--log-beside", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (mounts a tmpfs)")
    base = Path(tempfile.mkdtemp(prefix="chatmail-diskfull-"))
    mnt = base / "mnt"
    mnt.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={args.size_mb}m", "tmpfs", str(mnt)],
        capture_output=True, text=True)
    if mounted.returncode != 0:
        # A container without the right to mount: nothing to measure here.
        print(f"cannot mount a tmpfs: {mounted.stderr.strip()}", file=sys.stderr)
        shutil.rmtree(base, ignore_errors=True)
        sys.exit(77)
    violations, codes_full = [], []
    relay = None
    try:
        # The relay's log is on the same small filesystem: it fills up too (`--log-beside`
        # keeps it elsewhere, as a journal would).
        relay = Relay(args.relay, mnt, log_dir=base if args.log_beside else None)
        relay.start()
        template = (ROOT / "testdata/fixtures/encrypted.eml").read_text()
        sender, rcpt = f"df0000001@{DOMAIN}", f"df0000002@{DOMAIN}"
        inbox(relay, sender)
        inbox(relay, rcpt)
        acked = []
        for i in range(3):
            mid = f"before-{i}@{DOMAIN}"
            if submit(relay, template, sender, rcpt, mid) == 250:
                acked.append(mid)
            else:
                violations.append(f"{mid} refused before the disk was full")
        filler = mnt / "filler"
        fill(filler)
        refused = []
        for i in range(args.messages):
            mid = f"full-{i}@{DOMAIN}"
            code = submit(relay, template, sender, rcpt, mid)
            codes_full.append(code)
            if code == 250:
                violations.append(f"{mid}: 250 while the disk was full")
                acked.append(mid)
            elif not 400 <= code < 500:
                violations.append(f"{mid}: {code} (not a temporary refusal) while full")
                refused.append(mid)
            else:
                refused.append(mid)
        try:
            exists, _, _ = inbox(relay, rcpt)
            if exists < len([m for m in acked if m.startswith("before")]):
                violations.append("stored mail not readable while full")
        except Exception as e:  # noqa: BLE001
            violations.append(f"IMAP failed while full: {e!r}")
        filler.unlink()
        recovered_after = None
        start = time.time()
        for i in range(args.messages):
            mid = f"after-{i}@{DOMAIN}"
            code = submit(relay, template, sender, rcpt, mid)
            if code == 250:
                acked.append(mid)
                recovered_after = recovered_after or round(time.time() - start, 2)
            else:
                violations.append(f"{mid}: {code} after space returned")
        _, _, ids = inbox(relay, rcpt)
        stored = list(ids.values())
        for mid in acked:
            if stored.count(mid) != 1:
                violations.append(f"{mid}: acknowledged, stored {stored.count(mid)} times")
        for mid in refused:
            if mid in stored:
                violations.append(f"{mid}: refused, yet stored")
        summary = {
            "tmpfs_mb": args.size_mb, "acknowledged": len(acked),
            "refused_while_full": len(refused),
            "codes_while_full": sorted(set(codes_full)),
            "first_250_after_space_returned_s": recovered_after,
            "violations": violations[:20],
        }
    finally:
        if relay:
            relay.stop()
            relay.log.close()
        subprocess.run(["umount", str(mnt)], check=False)
        shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(summary, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    sys.exit(1 if summary["violations"] else 0)


if __name__ == "__main__":
    main()
