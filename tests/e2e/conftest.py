"""Starts the `relay` example on 127.0.0.1 for the end-to-end tests and tears it down.

The relay runs from a fresh data directory with a generated chatmail.ini on free
unprivileged ports; tests get a `relay` object with the ports, the domain and helpers
to make new credentials. Everything stays on loopback and stops by itself.
"""

import os
import re
import secrets
import shutil
import socket
import string
import subprocess
import tempfile
import time
import uuid
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOMAIN = "_chat.localhost"


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


STANDARD_PORTS = (25, 587, 465, 143, 993, 443)


class Relay:
    """One `relay` process. By default: `_chat.localhost` on free ports of 127.0.0.1;
    `domain`, `address` and `ports` (smtp, submission, submissions, imap, imaps, https)
    place it elsewhere, `extra_ini` adds config lines, `env` environment variables.
    `start=False` only writes the config (for `relay dns` before the first start)."""

    def __init__(self, tmp: Path, extra_ini: str = "", domain: str = DOMAIN,
                 address: str = "127.0.0.1", ports=None, env=None, start=True):
        self.tmp = tmp
        tmp.mkdir(parents=True, exist_ok=True)
        ports = ports or free_ports(6)
        (self.smtp_port, self.submission_port, self.submissions_port,
         self.imap_port, self.imaps_port, self.https_port) = ports
        self.domain = domain
        self.address = address
        self.env = dict(os.environ, **(env or {}))
        self.mailboxes_dir = tmp / "mail"
        self.data_dir = tmp / "data"
        self.ini = tmp / "chatmail.ini"
        self.ini.write_text(
            "[params]\n"
            f"mail_domain = {domain}\n"
            f"mailboxes_dir = {self.mailboxes_dir}\n"
            f"listen_address = {address}\n"
            f"smtp_port = {self.smtp_port}\n"
            f"submission_port = {self.submission_port}\n"
            f"submissions_port = {self.submissions_port}\n"
            f"imap_port = {self.imap_port}\n"
            f"imaps_port = {self.imaps_port}\n"
            f"https_port = {self.https_port}\n"
            "max_load_1m = 1000\n"
            "min_available_memory = 1M\n"
            "min_free_disk_space = 1M\n"
            "notify_url = http://127.0.0.1:9/notify\n"
            + extra_ini
        )
        self.binary = os.environ.get("CHATMAIL_RELAY_BIN", str(ROOT / "target/release/examples/relay"))
        self.log_path = tmp / "relay.log"
        self.log = open(self.log_path, "a+")
        self.proc = None
        self.printed_dclogin = None
        if start:
            self.start()

    def dns(self):
        """What `relay dns` prints for this relay (creating its DKIM key)."""
        out = subprocess.run(
            [self.binary, "dns", "--config", str(self.ini), "--data-dir", str(self.data_dir)],
            capture_output=True, text=True, timeout=120, env=self.env,
        )
        assert out.returncode == 0, out.stderr
        return out.stdout

    def start(self):
        offset = self.log_path.stat().st_size
        self.proc = subprocess.Popen(
            [self.binary, "--config", str(self.ini), "--data-dir", str(self.data_dir)],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=self.tmp, env=self.env,
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            self.log.flush()
            text = self.log_path.read_text()[offset:]
            if "ready" in text:
                break
            if self.proc.poll() is not None:
                raise RuntimeError(f"relay exited early:\n{text}")
            time.sleep(0.05)
        else:
            raise RuntimeError("relay did not print 'ready' within 60 s")
        m = re.search(r"(dclogin:\S+)", text)
        self.printed_dclogin = m.group(1) if m else None

    def kill(self):
        """SIGKILL: no shutdown, no last write."""
        self.proc.kill()
        self.proc.wait(10)

    def creds(self, prefix="ac"):
        local = (prefix + secrets.token_hex(8))[:9]
        password = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(12))
        return f"{local}@{self.domain}", password

    def log_text(self):
        self.log.flush()
        return self.log_path.read_text()

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def close(self):
        self.stop()
        self.log.close()


@pytest.fixture(scope="session")
def relay():
    tmp = Path(tempfile.mkdtemp(prefix="chatmail-e2e-"))
    # Unsigned test mail on port 25 is the point of many tests here; DKIM has its own.
    r = Relay(tmp, env={"CHATMAIL_SKIP_DKIM": "1"})
    yield r
    r.close()
    if os.environ.get("KEEP_E2E_DIR"):
        print(f"relay data kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def compress_relay():
    """A relay with `imap_compress = true` and `/metrics` on a free port
    (`compress_relay.metrics_port`), to see how many sessions started COMPRESS."""
    tmp = Path(tempfile.mkdtemp(prefix="chatmail-e2e-compress-"))
    metrics_port = free_ports(1)[0]
    r = Relay(tmp, extra_ini=f"imap_compress = true\nmetrics_listen = 127.0.0.1:{metrics_port}\n",
              env={"CHATMAIL_SKIP_DKIM": "1"})
    r.metrics_port = metrics_port
    yield r
    r.close()
    shutil.rmtree(tmp, ignore_errors=True)


def metric(relay, name):
    """The value of metric `name` (no labels) on the relay's `/metrics`."""
    url = f"http://127.0.0.1:{relay.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=30) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


FIXTURES = ROOT / "testdata" / "fixtures"


def fixture(name, from_addr, to_addr, subject="[...]"):
    # Some fixtures have LF line endings; on the wire SMTP needs CRLF.
    text = (FIXTURES / name).read_bytes().decode().replace("\r\n", "\n").replace("\n", "\r\n")
    # A Message-ID of its own per call, as a client gives each message: the relay stores
    # a recent message's second copy to one recipient only once (src/relay/duplicates.rs).
    text = re.sub(r"(?im)^(Message-ID:\s*<)[^>]*>", lambda m: f"{m.group(1)}{uuid.uuid4().hex}@e2e.test>",
                  text, count=1)
    return text.replace("{from_addr}", from_addr).replace("{to_addr}", to_addr).replace(
        "{subject}", subject)
