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


class Relay:
    def __init__(self, tmp: Path, extra_ini: str = ""):
        self.tmp = tmp
        ports = free_ports(6)
        (self.smtp_port, self.submission_port, self.submissions_port,
         self.imap_port, self.imaps_port, self.https_port) = ports
        self.domain = DOMAIN
        self.mailboxes_dir = tmp / "mail"
        self.ini = tmp / "chatmail.ini"
        self.ini.write_text(
            "[params]\n"
            f"mail_domain = {DOMAIN}\n"
            f"mailboxes_dir = {self.mailboxes_dir}\n"
            "listen_address = 127.0.0.1\n"
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
        binary = os.environ.get("CHATMAIL_RELAY_BIN", str(ROOT / "target/release/examples/relay"))
        self.log = open(tmp / "relay.log", "w+")
        self.proc = subprocess.Popen(
            [binary, "--config", str(self.ini), "--data-dir", str(tmp / "data")],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=tmp,
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            self.log.flush()
            text = (tmp / "relay.log").read_text()
            if "ready" in text:
                break
            if self.proc.poll() is not None:
                raise RuntimeError(f"relay exited early:\n{text}")
            time.sleep(0.05)
        else:
            raise RuntimeError("relay did not print 'ready' within 60 s")
        m = re.search(r"(dclogin:\S+)", (tmp / "relay.log").read_text())
        self.printed_dclogin = m.group(1) if m else None

    def creds(self, prefix="ac"):
        local = (prefix + secrets.token_hex(8))[:9]
        password = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(12))
        return f"{local}@{self.domain}", password

    def log_text(self):
        self.log.flush()
        return (self.tmp / "relay.log").read_text()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


@pytest.fixture(scope="session")
def relay():
    tmp = Path(tempfile.mkdtemp(prefix="chatmail-e2e-"))
    r = Relay(tmp)
    yield r
    r.stop()
    if os.environ.get("KEEP_E2E_DIR"):
        print(f"relay data kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


FIXTURES = ROOT / "testdata" / "fixtures"


def fixture(name, from_addr, to_addr, subject="[...]"):
    # Some fixtures have LF line endings; on the wire SMTP needs CRLF.
    text = (FIXTURES / name).read_bytes().decode().replace("\r\n", "\n").replace("\n", "\r\n")
    return text.replace("{from_addr}", from_addr).replace("{to_addr}", to_addr).replace(
        "{subject}", subject)
