#!/usr/bin/env python3
"""Delta Chat send-to-receive latency between two accounts on one server.

Two Delta Chat accounts (deltachat-rpc-server, one process) are configured with explicit
servers (IMAP and SMTP over implicit TLS, invalid certificates accepted), establish
end-to-end encryption with Secure-Join, then ac1 sends --count text messages to ac2, one at
a time, --pause seconds apart (Delta Chat core limits its own sending to a burst of 3 and
then one message per second; without the pause a fast server's figure would be that
limiter's). For each message the script records, with time.perf_counter_ns(), the moment just
before the send RPC and the moment the IncomingMsg event for it reaches this process on ac2,
and reports p50/p90/p99/max of the difference. The sending core submits over SMTP, the
server delivers, ac2's core is woken from IMAP IDLE, fetches and decrypts: the whole path a
user sees.

Bounded: --count messages, --timeout seconds per message, --max-seconds overall; loopback
only. Needs deltachat-rpc-client and deltachat-rpc-server (e.g. /work/main/.venv).

Example (Postfix+Dovecot from postfix_dovecot.sh):
  .venv/bin/python load/latency/dc_latency.py --imap-port 3993 --smtp-port 3465 \\
      --domain bench.localhost --password benchpassword --count 50
"""

from __future__ import annotations

import argparse
import pathlib
import queue
import shutil
import sys
import tempfile
import time

from deltachat_rpc_client import DeltaChat, Rpc
from deltachat_rpc_client._utils import AttrDict

from latency_common import (
    add_server_arguments,
    random_account,
    report,
    require_loopback,
    run_header,
    summarize,
)


def rpc_server_path() -> str:
    """deltachat-rpc-server from PATH, else the one next to this interpreter (a venv)."""
    found = shutil.which("deltachat-rpc-server")
    if found:
        return found
    beside = pathlib.Path(sys.executable).parent / "deltachat-rpc-server"
    if beside.exists():
        return str(beside)
    sys.exit("deltachat-rpc-server not found: pip install deltachat-rpc-server==2.65.0")


class StampedQueue(queue.Queue):
    """An event queue that stamps each event with perf_counter_ns as it arrives from the
    RPC server (put by the client's event thread), so waiting late does not add time."""

    def _put(self, item) -> None:
        super()._put((time.perf_counter_ns(), item))


class Events:
    """Bounded waits on one account's event queue (the client's own waits never time out)."""

    def __init__(self, rpc: Rpc, account_id: int):
        self.queue = StampedQueue()
        rpc.event_queues[account_id] = self.queue  # before the account emits anything of note
        self.seen: list[tuple[int, AttrDict]] = []  # with --trace: every event taken

    def next(self, deadline: float) -> tuple[int, AttrDict]:
        """The next event and the perf_counter_ns at which it reached this process."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no event before the deadline")
        try:
            t, payload = self.queue.get(timeout=remaining)
        except queue.Empty:
            raise TimeoutError("no event before the deadline") from None
        event = AttrDict(payload)
        self.seen.append((t, event))
        return t, event

    def wait_for(self, predicate, timeout: float) -> tuple[int, AttrDict]:
        deadline = time.monotonic() + timeout
        while True:
            t, event = self.next(deadline)
            if event.kind == "Error":
                print(f"  core error: {event.msg}", file=sys.stderr)
            if predicate(event):
                return t, event

    def drain(self) -> None:
        """Take every queued event (recorded in `seen`)."""
        try:
            while True:
                t, payload = self.queue.get_nowait()
                self.seen.append((t, AttrDict(payload)))
        except queue.Empty:
            pass


def print_trace(seq: int, t_send: int, sides: list[tuple[str, "Events"]]) -> None:
    """The events of both accounts since t_send, in arrival order, with ms offsets."""
    timeline = sorted((t, name, e) for name, events in sides for t, e in events.seen if t >= t_send)
    print(f"--- message {seq}", file=sys.stderr)
    for t, name, e in timeline:
        detail = e.get("msg") or ""
        print(f"{(t - t_send) / 1e6:9.1f} ms {name} {e.kind} {detail}", file=sys.stderr)


def configure(dc: DeltaChat, args, addr: str, password: str, name: str):
    """A new account on the server under test; returns it and its event queue."""
    account = dc.add_account()
    events = Events(dc.rpc, account.id)
    account.set_config("displayname", name)
    account.add_or_update_transport(
        {
            "addr": addr,
            "password": password,
            "imapServer": args.imap_host,
            "imapPort": args.imap_port,
            "imapSecurity": "ssl",
            "smtpServer": args.smtp_host,
            "smtpPort": args.smtp_port,
            "smtpSecurity": "ssl",
            "certificateChecks": "acceptInvalidCertificates",
        }
    )
    return account, events


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_server_arguments(ap)
    ap.add_argument("--count", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=2, help="unmeasured messages first")
    ap.add_argument(
        "--pause",
        type=float,
        default=1.0,
        help="seconds after each receive before the next send: Delta Chat's own send limiter "
        "(burst 3, then 1 message per second) would otherwise hold back-to-back sends",
    )
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds per step")
    ap.add_argument("--max-seconds", type=float, default=600.0)
    ap.add_argument("--trace", type=int, default=0, help="print the events of N messages")
    ap.add_argument("--accounts-dir", help="default: a temporary directory, removed after")
    args = ap.parse_args()
    if not 1 <= args.count <= 1000 or not 0 <= args.warmup <= 100:
        ap.error("--count must be 1..1000 and --warmup 0..100")
    require_loopback(args.imap_host)
    require_loopback(args.smtp_host)
    sys.setswitchinterval(0.0001)
    started = time.monotonic()

    with tempfile.TemporaryDirectory(prefix="dc-latency-") as tmp:
        accounts_dir = args.accounts_dir or str(pathlib.Path(tmp) / "accounts")
        with Rpc(accounts_dir=accounts_dir, rpc_server_path=rpc_server_path()) as rpc:
            dc = DeltaChat(rpc)
            addr1, pw1 = random_account(args.domain, args.password)
            addr2, pw2 = random_account(args.domain, args.password)
            ac1, ev1 = configure(dc, args, addr1, pw1, "bench-sender")
            ac2, ev2 = configure(dc, args, addr2, pw2, "bench-receiver")
            for ac, events in ((ac1, ev1), (ac2, ev2)):
                ac.start_io()
                rpc.wait_for_all_work_done(ac.id)
                events.drain()
            configured_s = time.monotonic() - started

            # Secure-Join: ac2 scans ac1's QR code; both sides must report success.
            t_sj = time.monotonic()
            qr = ac1.get_qr_code()
            ac2.secure_join(qr)
            _, inviter_done = ev1.wait_for(
                lambda e: e.kind == "SecurejoinInviterProgress" and e.progress == 1000,
                args.timeout,
            )
            ev2.wait_for(
                lambda e: e.kind == "SecurejoinJoinerProgress" and e.progress == 1000,
                args.timeout,
            )
            securejoin_s = time.monotonic() - t_sj
            chat = ac1.get_chat_by_contact(inviter_done.contact_id)
            if chat is None:
                chat = ac1.create_chat(ac2)
            time.sleep(1.0)  # let the handshake's last messages settle before measuring
            for events in (ev1, ev2):
                events.drain()
                events.seen.clear()

            latencies_ms: list[float] = []
            samples = []
            lost = 0
            stopped_early = None
            for i in range(args.warmup + args.count):
                if time.monotonic() - started > args.max_seconds:
                    stopped_early = f"--max-seconds {args.max_seconds} reached"
                    break
                text = f"latency probe {i}"
                t_send = time.perf_counter_ns()
                sent = chat.send_text(text)
                try:
                    t_recv, event = ev2.wait_for(lambda e: e.kind == "IncomingMsg", args.timeout)
                except TimeoutError:
                    lost += 1
                    continue
                received = ac2.get_message_by_id(event.msg_id).get_snapshot()
                if received.text != text:
                    print(f"  message {i}: got {received.text!r}", file=sys.stderr)
                    lost += 1
                    continue
                if not received.show_padlock:
                    print(f"  message {i} arrived without end-to-end encryption", file=sys.stderr)
                if i >= args.warmup:
                    ms = (t_recv - t_send) / 1e6
                    latencies_ms.append(ms)
                    samples.append({"seq": i, "send_to_receive_ms": ms, "msg_id": sent.id})
                if 0 <= i - args.warmup < args.trace:
                    ev1.drain()
                    print_trace(i, t_send, [("sender", ev1), ("receiver", ev2)])
                ev1.seen.clear()
                ev2.seen.clear()
                if args.pause:
                    time.sleep(args.pause)
            for ac in (ac1, ac2):
                ac.stop_io()

    result = {
        **run_header(args),
        "measured": len(latencies_ms),
        "lost": lost,
        "stopped_early": stopped_early,
        "pause_s": args.pause,
        "configure_s": configured_s,
        "securejoin_s": securejoin_s,
        "elapsed_s": time.monotonic() - started,
        "send_to_receive_ms": summarize(latencies_ms),
    }
    return report(result, samples, args.json_out)


if __name__ == "__main__":
    sys.exit(main())
