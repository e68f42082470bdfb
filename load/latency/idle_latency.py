#!/usr/bin/env python3
"""IDLE wake-up latency: SMTP 250 after DATA -> `* N EXISTS` in another connection's IDLE.

One recipient connection logs in over IMAPS, SELECTs INBOX and enters IDLE. For each message
the sender submits over SMTPS (implicit TLS, AUTH PLAIN, one persistent connection per
sender) and the script records, with time.perf_counter_ns():

  t_data  just before the DATA command is written,
  t_250   when the 250 reply to the end of data has been read (smtplib returns),
  t_exist when the recipient connection reads the `* N EXISTS` line for that message,

and reports p50/p90/p99/max of t_exist - t_250 (the IDLE wake-up: how long after the
server said "accepted" the other connection learns about the message) and of
t_exist - t_data (end to end from the start of DATA). A negative wake-up means the server
notified the IDLE session before it sent the 250. Messages are sent one at a time: the next
one starts only after the previous EXISTS arrived (or its --timeout passed, counted as lost).

The IDLE connection is a raw ssl socket read by its own thread that stamps each read as soon
as recv() returns; the main thread blocks (releasing the GIL) while waiting, and the
interpreter's switch interval is lowered so the stamping thread is not delayed by it.

Bounded: --count messages, --timeout per message, --max-seconds overall; loopback only
(hosts must resolve to a loopback address). Standard library only.

Example (Postfix+Dovecot from postfix_dovecot.sh):
  python3 load/latency/idle_latency.py --imap-host 127.0.0.1 --imap-port 3993 \\
      --smtp-host 127.0.0.1 --smtp-port 3465 --domain bench.localhost \\
      --password benchpassword --count 1000
"""

from __future__ import annotations

import argparse
import os
import pathlib
import queue
import re
import secrets
import select
import smtplib
import socket
import ssl
import sys
import threading
import time

from latency_common import (
    add_server_arguments,
    random_account,
    report,
    require_loopback,
    run_header,
    summarize,
)

FIXTURE = pathlib.Path(__file__).resolve().parents[2] / "testdata" / "fixtures" / "encrypted.eml"
EXISTS_RE = re.compile(rb"^\* (\d+) EXISTS\r?$", re.IGNORECASE)
MAX_LINE = 64 * 1024  # an IMAP response line longer than this is a protocol error here


def insecure_tls() -> ssl.SSLContext:
    """The bench servers use self-signed certificates."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class ImapIdleConnection:
    """A raw IMAPS connection whose own thread reads, writes and timestamps every line.

    Only that thread touches the TLS socket (an SSL object must not be read and written
    from two threads at once); the main thread hands it commands through a pipe and gets
    response lines, each with the perf_counter_ns of the read that completed it.
    """

    def __init__(self, host: str, port: int, timeout: float):
        raw = socket.create_connection((host, port), timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = insecure_tls().wrap_socket(raw, server_hostname=host)
        self.sock.setblocking(False)
        self.timeout = timeout
        self.lines: queue.Queue = queue.Queue()  # (perf_counter_ns, line bytes) or (t, None)
        self.outgoing: queue.Queue = queue.Queue()  # bytes to write, or None to close
        self.wake_r, self.wake_w = os.pipe()
        self.tag_no = 0
        self.idle_tag: str | None = None  # set while in IDLE
        self.reader = threading.Thread(target=self._io_loop, daemon=True)
        self.reader.start()

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        deadline = time.monotonic() + self.timeout
        while view:
            try:
                n = self.sock.send(view)
                view = view[n:]
            except ssl.SSLWantWriteError:
                select.select([], [self.sock], [], max(0.0, deadline - time.monotonic()))
            except ssl.SSLWantReadError:
                select.select([self.sock], [], [], max(0.0, deadline - time.monotonic()))
            if time.monotonic() > deadline:
                raise TimeoutError("IMAP write timed out")

    def _io_loop(self) -> None:
        buf = b""
        try:
            while True:
                readable, _, _ = select.select([self.sock, self.wake_r], [], [])
                if self.wake_r in readable:
                    os.read(self.wake_r, 4096)
                    while True:
                        try:
                            out = self.outgoing.get_nowait()
                        except queue.Empty:
                            break
                        if out is None:
                            return
                        self._write(out)
                if self.sock not in readable and not self.sock.pending():
                    continue
                while True:  # drain everything OpenSSL can give without blocking
                    try:
                        data = self.sock.recv(65536)
                    except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                        break
                    t = time.perf_counter_ns()
                    if not data:
                        return
                    buf += data
                    while b"\n" in buf:
                        line, buf = buf.split(b"\n", 1)
                        self.lines.put((t, line.rstrip(b"\r")))
                    if len(buf) > MAX_LINE:
                        return
        except (OSError, ValueError):
            return
        finally:
            self.lines.put((time.perf_counter_ns(), None))
            try:
                self.sock.close()
            except OSError:
                pass

    def send(self, data: bytes) -> None:
        """Queue bytes for the I/O thread to write."""
        self.outgoing.put(data)
        os.write(self.wake_w, b"x")

    def next_line(self, timeout: float) -> tuple[int, bytes]:
        """The next response line and the time it was read; raises on timeout or EOF."""
        t, line = self.lines.get(timeout=timeout)
        if line is None:
            raise ConnectionError("IMAP connection closed")
        return t, line

    def command(self, text: str, timeout: float) -> list[bytes]:
        """Send a tagged command, return its untagged lines; raises unless it ends in OK."""
        self.tag_no += 1
        tag = f"a{self.tag_no}"
        self.send(f"{tag} {text}\r\n".encode())
        untagged = []
        deadline = time.monotonic() + timeout
        while True:
            _, line = self.next_line(max(0.0, deadline - time.monotonic()))
            if line.startswith(tag.encode() + b" "):
                if not line[len(tag) + 1 :].upper().startswith(b"OK"):
                    raise RuntimeError(f"{text.split()[0]} failed: {line!r}")
                return untagged
            untagged.append(line)

    def idle(self, timeout: float) -> list[bytes]:
        """Enter IDLE; returns the untagged lines seen before the continuation."""
        self.tag_no += 1
        self.idle_tag = f"a{self.tag_no}"
        self.send(f"{self.idle_tag} IDLE\r\n".encode())
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            _, line = self.next_line(max(0.0, deadline - time.monotonic()))
            if line.startswith(b"+"):
                return seen
            if line.startswith(self.idle_tag.encode() + b" "):
                self.idle_tag = None
                raise RuntimeError(f"IDLE refused: {line!r}")
            seen.append(line)

    def done(self, timeout: float) -> list[bytes]:
        """Leave IDLE; returns the untagged lines seen before the tagged OK."""
        self.send(b"DONE\r\n")
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            _, line = self.next_line(max(0.0, deadline - time.monotonic()))
            if line.startswith(self.idle_tag.encode() + b" "):
                self.idle_tag = None
                return seen
            seen.append(line)

    def close(self) -> None:
        """(DONE,) LOGOUT, then stop the I/O thread (bounded wait)."""
        if self.idle_tag is not None:
            self.send(b"DONE\r\n")
            self.idle_tag = None
        self.tag_no += 1
        self.send(f"a{self.tag_no} LOGOUT\r\n".encode())
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:  # until the tagged answer or EOF
            try:
                _, line = self.next_line(max(0.0, deadline - time.monotonic()))
            except (queue.Empty, ConnectionError):
                break
            if line.startswith(f"a{self.tag_no} ".encode()):
                break
        self.outgoing.put(None)
        os.write(self.wake_w, b"x")
        self.reader.join(self.timeout)
        os.close(self.wake_r)
        os.close(self.wake_w)


def last_exists(lines: list[bytes]) -> int | None:
    n = None
    for line in lines:
        m = EXISTS_RE.match(line)
        if m:
            n = int(m.group(1))
    return n


def imap_login(host: str, port: int, addr: str, password: str, timeout: float) -> None:
    """Log in once and out (creates the account on a relay that creates on first login)."""
    conn = ImapIdleConnection(host, port, timeout)
    try:
        conn.next_line(timeout)  # greeting
        conn.command(f'LOGIN "{addr}" "{password}"', timeout)
    finally:
        conn.close()


class Sender:
    """One persistent SMTPS submission connection with AUTH PLAIN."""

    def __init__(self, host: str, port: int, addr: str, password: str, timeout: float):
        self.addr = addr
        self.smtp = smtplib.SMTP_SSL(host, port, timeout=timeout, context=insecure_tls())
        self.smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.smtp.ehlo("bench.localhost")
        self.smtp.user, self.smtp.password = addr, password
        code, resp = self.smtp.auth("PLAIN", self.smtp.auth_plain, initial_response_ok=True)
        if code != 235:
            raise RuntimeError(f"AUTH PLAIN for {addr} failed: {code} {resp!r}")

    def send(self, to_addr: str, body: bytes) -> tuple[int, int]:
        """MAIL, RCPT, DATA; returns (t_data, t_250) in perf_counter_ns."""
        code, resp = self.smtp.mail(self.addr)
        if code != 250:
            raise RuntimeError(f"MAIL FROM: {code} {resp!r}")
        code, resp = self.smtp.rcpt(to_addr)
        if code not in (250, 251):
            raise RuntimeError(f"RCPT TO: {code} {resp!r}")
        t_data = time.perf_counter_ns()
        code, resp = self.smtp.data(body)
        t_250 = time.perf_counter_ns()
        if code != 250:
            raise RuntimeError(f"DATA: {code} {resp!r}")
        return t_data, t_250

    def close(self) -> None:
        try:
            self.smtp.quit()
        except (smtplib.SMTPException, OSError):
            pass


def render_message(template: str, from_addr: str, to_addr: str, seq: int, run_id: str) -> bytes:
    """The encrypted fixture with addresses, subject and a unique Message-ID filled in."""
    text = (
        template.replace("{from_addr}", from_addr)
        .replace("{to_addr}", to_addr)
        .replace("{subject}", "[...]")
    )
    text = re.sub(
        r"^Message-ID: <[^>]*>",
        f"Message-ID: <bench.{run_id}.{seq}@{from_addr.split('@', 1)[1]}>",
        text,
        count=1,
        flags=re.MULTILINE,
    )
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()


def parse_credentials(value: str) -> tuple[str, str]:
    addr, sep, password = value.partition(":")
    if not sep or "@" not in addr:
        raise argparse.ArgumentTypeError("expected ADDR:PASSWORD")
    return addr, password


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_server_arguments(ap)
    ap.add_argument("--count", type=int, default=1000, help="measured messages")
    ap.add_argument("--warmup", type=int, default=10, help="unmeasured messages first")
    ap.add_argument("--senders", type=int, default=1, help="sender accounts, round-robin")
    ap.add_argument(
        "--sender",
        type=parse_credentials,
        action="append",
        default=[],
        help="ADDR:PASSWORD of a sender (repeatable; default: generated)",
    )
    ap.add_argument(
        "--recipient", type=parse_credentials, help="ADDR:PASSWORD (default: generated)"
    )
    ap.add_argument(
        "--min-interval",
        type=float,
        default=0.0,
        help="seconds from one send to the next at least (with --senders, keeps each sender "
        "under a relay's default limit of 60/min: 20 senders and 0.06 s give 50 per minute)",
    )
    ap.add_argument("--reidle-every", type=int, default=100, help="DONE + IDLE between messages")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds per message")
    ap.add_argument("--max-seconds", type=float, default=1200.0, help="overall bound")
    args = ap.parse_args()
    if not 1 <= args.count <= 100_000 or not 0 <= args.warmup <= 1000:
        ap.error("--count must be 1..100000 and --warmup 0..1000")
    if not 1 <= args.senders <= 100:
        ap.error("--senders must be 1..100")
    require_loopback(args.imap_host)
    require_loopback(args.smtp_host)
    sys.setswitchinterval(0.0001)  # the stamping thread must not wait 5 ms for the GIL

    recipient = args.recipient or random_account(args.domain, args.password)
    senders_creds = list(args.sender) or [
        random_account(args.domain, args.password) for _ in range(args.senders)
    ]
    template = FIXTURE.read_text()
    run_id = secrets.token_hex(4)
    started = time.monotonic()

    for addr, pw in [recipient, *senders_creds]:
        imap_login(args.imap_host, args.imap_port, addr, pw, args.timeout)
    senders = [Sender(args.smtp_host, args.smtp_port, a, p, args.timeout) for a, p in senders_creds]

    idle = ImapIdleConnection(args.imap_host, args.imap_port, args.timeout)
    idle.next_line(args.timeout)
    idle.command(f'LOGIN "{recipient[0]}" "{recipient[1]}"', args.timeout)
    exists = last_exists(idle.command("SELECT INBOX", args.timeout)) or 0
    exists = max(exists, last_exists(idle.idle(args.timeout)) or 0)

    wakeup_ms: list[float] = []
    from_data_ms: list[float] = []
    samples = []
    lost = 0
    sent = 0
    stopped_early = None
    last_send = 0.0
    total = args.warmup + args.count
    try:
        for i in range(total):
            if time.monotonic() - started > args.max_seconds:
                stopped_early = f"--max-seconds {args.max_seconds} reached after {sent} messages"
                break
            if args.reidle_every and i and i % args.reidle_every == 0:
                exists = max(exists, last_exists(idle.done(args.timeout)) or 0)
                exists = max(exists, last_exists(idle.idle(args.timeout)) or 0)
            if args.min_interval and i:
                time.sleep(max(0.0, last_send + args.min_interval - time.monotonic()))
            last_send = time.monotonic()
            sender = senders[i % len(senders)]
            body = render_message(template, sender.addr, recipient[0], i, run_id)
            try:
                t_data, t_250 = sender.send(recipient[0], body)
            except (RuntimeError, smtplib.SMTPException, OSError) as e:
                # e.g. 450 from a relay's send limit: report what was measured so far
                stopped_early = f"message {i} from {sender.addr} not accepted: {e}"
                break
            sent += 1
            # Wait for the EXISTS that covers this message.
            t_exist = None
            deadline = time.monotonic() + args.timeout
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    t, line = idle.next_line(remaining)
                except queue.Empty:
                    break
                m = EXISTS_RE.match(line)
                if m and int(m.group(1)) > exists:
                    exists = int(m.group(1))
                    t_exist = t
                    break
            if t_exist is None:
                lost += 1
                continue
            if i < args.warmup:
                continue
            wake = (t_exist - t_250) / 1e6
            e2e = (t_exist - t_data) / 1e6
            wakeup_ms.append(wake)
            from_data_ms.append(e2e)
            samples.append({"seq": i, "wakeup_ms": wake, "from_data_ms": e2e})
    except (ConnectionError, RuntimeError, queue.Empty, OSError) as e:
        # the IDLE connection closed or a re-IDLE failed: report what was measured so far
        stopped_early = f"IMAP: {e!r} after {sent} messages"
    finally:
        idle.close()
        for s in senders:
            s.close()

    result = {
        **run_header(args),
        "senders": len(senders),
        "min_interval_s": args.min_interval,
        "measured": len(wakeup_ms),
        "lost": lost,
        "stopped_early": stopped_early,
        "elapsed_s": time.monotonic() - started,
        "wakeup_ms": summarize(wakeup_ms),
        "from_data_ms": summarize(from_data_ms),
    }
    return report(result, samples, args.json_out)


if __name__ == "__main__":
    sys.exit(main())
