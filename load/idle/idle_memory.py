#!/usr/bin/env python3
"""Idle memory per IMAP connection of the relay, with and without COMPRESS=DEFLATE.

Starts the `relay` example (a release build) from a fresh data directory with a generated
chatmail.ini on free loopback ports (IMAP connection limits raised to fit), waits until it
is ready and settled, and reads its RSS from /proc/PID/status. Then it opens --count IMAP
connections over TLS (993-style, implicit TLS), each to its own account (created at the
first login), optionally sends COMPRESS DEFLATE (and from then on talks raw DEFLATE with
zlib, wbits=-15, a sync flush per command as Delta Chat does), SELECTs INBOX and enters
IDLE. Once every connection idles and --settle seconds passed, it reads the RSS again:

    per connection = (RSS with every connection idling - RSS before) / count

Then one wake-up check: a message submitted over SMTPS to one idling account must reach
that connection as `* 1 EXISTS` within --timeout (the compressed path included). The
client runs in this process, the relay in its own: each gets its own file descriptors
(RLIMIT_NOFILE is raised to the hard limit for both).

Standard library only. Loopback only. Example (release build):

    cargo build --release --example relay
    python3 load/idle/idle_memory.py --relay target/release/examples/relay --count 10000
    python3 load/idle/idle_memory.py --relay target/release/examples/relay --count 10000 --compress
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import platform
import resource
import secrets
import shutil
import smtplib
import socket
import ssl
import string
import subprocess
import sys
import tempfile
import time
import zlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "testdata" / "fixtures" / "encrypted.eml"
DOMAIN = "_chat.localhost"
PASSWORD = "idle-memory-pw"


def insecure_tls() -> ssl.SSLContext:
    """The relay's certificate is self-signed."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def rss_kib(pid: int) -> int:
    """VmRSS of `pid`, in KiB."""
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


class Relay:
    """The relay example on free loopback ports from a fresh directory."""

    def __init__(self, binary: str, count: int):
        self.tmp = pathlib.Path(tempfile.mkdtemp(prefix="chatmail-idle-memory-"))
        (self.smtp, self.submission, self.submissions, self.imap, self.imaps,
         self.https) = free_ports(6)
        ini = self.tmp / "chatmail.ini"
        ini.write_text(
            "[params]\n"
            f"mail_domain = {DOMAIN}\n"
            f"mailboxes_dir = {self.tmp / 'mail'}\n"
            "listen_address = 127.0.0.1\n"
            f"smtp_port = {self.smtp}\n"
            f"submission_port = {self.submission}\n"
            f"submissions_port = {self.submissions}\n"
            f"imap_port = {self.imap}\n"
            f"imaps_port = {self.imaps}\n"
            f"https_port = {self.https}\n"
            f"max_imap_connections = {count + 100}\n"
            f"max_imap_connections_per_ip = {count + 100}\n"
            "imap_compress = true\n"
            # --latency sends a message after each wake-up: no send limit in the way.
            "max_user_send_per_minute = 1000000\n"
            "max_user_send_burst_size = 1000000\n"
            "max_load_1m = 1000\n"
            "min_available_memory = 1M\n"
            "min_free_disk_space = 1M\n"
        )
        self.log_path = self.tmp / "relay.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [str(pathlib.Path(binary).resolve()), "--config", str(ini), "--data-dir",
             str(self.tmp / "data")],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=self.tmp,
            env=dict(os.environ, CHATMAIL_SKIP_DKIM="1"),
            preexec_fn=raise_fd_limit,
        )
        deadline = time.time() + 60
        while "ready" not in self.log_path.read_text():
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("relay did not start:\n" + self.log_path.read_text())
            time.sleep(0.05)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


class Imap:
    """One idling client connection; after COMPRESS its bytes go through zlib."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.deflate = None
        self.inflate = None
        self.plain = b""
        self.user = ""

    async def send(self, line: bytes) -> None:
        if self.deflate is not None:
            line = self.deflate.compress(line) + self.deflate.flush(zlib.Z_SYNC_FLUSH)
        self.writer.write(line)
        await self.writer.drain()

    async def line(self) -> bytes:
        while b"\n" not in self.plain:
            data = await self.reader.read(16 * 1024)
            if not data:
                raise ConnectionError(f"closed; had {self.plain!r}")
            if self.inflate is not None:
                data = self.inflate.decompress(data)
            self.plain += data
        line, _, self.plain = self.plain.partition(b"\n")
        return line + b"\n"

    async def until(self, prefix: bytes) -> list[bytes]:
        lines = []
        while True:
            line = await self.line()
            lines.append(line)
            if line.startswith(prefix):
                return lines

    async def open(self, user: str, compress: bool) -> None:
        self.user = user
        greeting = await self.line()
        assert greeting.startswith(b"* OK"), greeting
        await self.send(f"a LOGIN {user} {PASSWORD}\r\n".encode())
        login = b"".join(await self.until(b"a "))
        assert b"a OK" in login, login
        if compress:
            assert b"COMPRESS=DEFLATE" in login, login
            await self.send(b"z COMPRESS DEFLATE\r\n")
            ok = await self.line()
            assert ok.startswith(b"z OK"), ok
            self.deflate = zlib.compressobj(wbits=-15)
            self.inflate = zlib.decompressobj(wbits=-15)
        await self.send(b"b SELECT INBOX\r\n")
        select = b"".join(await self.until(b"b "))
        assert b"b OK" in select, select
        await self.send(b"c IDLE\r\n")
        await self.until(b"+ ")


def user_for(run: str, i: int) -> str:
    # Local parts are exactly 9 characters (username_min_length/max_length).
    return f"{run}{i:06d}@{DOMAIN}"


def submit(relay: Relay, user: str) -> None:
    """The encrypted fixture from `user` to `user` over SMTPS (implicit TLS)."""
    text = FIXTURE.read_text().replace("\r\n", "\n")
    text = text.replace("{from_addr}", user).replace("{to_addr}", user)
    text = text.replace("{subject}", "[...]").replace("\n", "\r\n")
    with smtplib.SMTP_SSL("127.0.0.1", relay.submissions, context=insecure_tls(),
                          timeout=30) as s:
        s.login(user, PASSWORD)
        s.sendmail(user, [user], text.encode())


async def measure(args: argparse.Namespace) -> dict:
    relay = Relay(args.relay, args.count)
    try:
        await asyncio.sleep(args.settle)
        before = rss_kib(relay.proc.pid)
        run = "".join(secrets.choice(string.ascii_lowercase) for _ in range(3))
        gate = asyncio.Semaphore(args.concurrency)
        ctx = insecure_tls()
        clients: list[Imap] = []
        started = time.monotonic()

        async def one(i: int) -> None:
            async with gate:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", relay.imaps, ssl=ctx,
                                            server_hostname="127.0.0.1", limit=64 * 1024),
                    args.timeout)
                imap = Imap(reader, writer)
                await asyncio.wait_for(imap.open(user_for(run, i), args.compress), args.timeout)
                clients.append(imap)

        await asyncio.gather(*(one(i) for i in range(args.count)))
        opened_s = time.monotonic() - started
        await asyncio.sleep(args.settle)
        after = rss_kib(relay.proc.pid)
        samples = [after]
        for _ in range(2):
            await asyncio.sleep(1)
            samples.append(rss_kib(relay.proc.pid))
        after = max(samples)

        # The wake-up latency while every session idles (issue 14: < 2 ms p99), measured
        # by load/latency/idle_latency.py on two more connections.
        latency = None
        if args.latency:
            out = relay.tmp / "idle-latency.json"
            await asyncio.to_thread(
                subprocess.run,
                [sys.executable, str(ROOT / "load/latency/idle_latency.py"),
                 "--imap-port", str(relay.imaps), "--smtp-port", str(relay.submissions),
                 "--domain", DOMAIN, "--count", str(args.latency), "--label",
                 f"relay with {args.count} idle sessions", "--json-out", str(out)],
                check=True, timeout=1200)
            measured = json.loads(out.read_text())
            latency = {k: measured[k] for k in ("measured", "lost", "wakeup_ms", "from_data_ms")}

        # One wake-up: an account in the middle gets a message; its connection, idle
        # since the measurement, must hear of it.
        woken = clients[len(clients) // 2]
        t0 = time.monotonic()
        await asyncio.get_running_loop().run_in_executor(None, submit, relay, woken.user)
        exists = await asyncio.wait_for(woken.until(b"* 1 EXISTS"), args.timeout)
        wake_ms = (time.monotonic() - t0) * 1000
        for c in clients:
            c.writer.close()
        return {
            "count": args.count,
            "compress": args.compress,
            "rss_before_kib": before,
            "rss_idle_kib": after,
            "rss_samples_kib": samples,
            "per_connection_kib": round((after - before) / args.count, 1),
            "open_seconds": round(opened_s, 1),
            "idle_latency": latency,
            "wake_up": {"account": woken.user, "exists": exists[-1].decode().strip(),
                        "ms_from_submit_start": round(wake_ms, 1)},
            "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} CPUs",
            "relay": args.relay,
        }
    finally:
        relay.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--relay", default=str(ROOT / "target/release/examples/relay"))
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--compress", action="store_true", help="send COMPRESS DEFLATE")
    ap.add_argument("--concurrency", type=int, default=200,
                    help="connections being opened at once")
    ap.add_argument("--settle", type=float, default=5.0,
                    help="seconds to wait before each RSS reading")
    ap.add_argument("--timeout", type=float, default=120.0, help="per connection step")
    ap.add_argument("--json", help="also write the result here")
    ap.add_argument("--latency", type=int, default=0,
                    help="also run load/latency/idle_latency.py with this many messages "
                         "while every session idles")
    args = ap.parse_args()
    limit = raise_fd_limit()
    if args.count + 100 > limit:
        sys.exit(f"--count {args.count} needs more file descriptors than {limit}")
    result = asyncio.run(measure(args))
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        pathlib.Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
