"""The systemd units in deploy/ are valid (`systemd-analyze verify`, with the relay
binary this suite runs in place of /usr/local/bin/chatmail-relay), and the command lines
they run are ones the relay accepts."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT

UNITS = ["chatmail-relay.service", "chatmail-fsreport.service", "chatmail-fsreport.timer"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_units_verify(tmp_path):
    binary = os.environ.get("CHATMAIL_RELAY_BIN", str(ROOT / "target/release/examples/relay"))
    for unit in UNITS:
        text = (ROOT / "deploy" / unit).read_text()
        (tmp_path / unit).write_text(text.replace("/usr/local/bin/chatmail-relay", binary))
    out = subprocess.run(["systemd-analyze", "verify", *[str(tmp_path / u) for u in UNITS]],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_the_units_command_lines_are_understood(tmp_path):
    """The fsreport unit's ExecStart, pointed at a test config and directory, runs and
    writes its textfile (the relay refuses arguments it does not know)."""
    binary = os.environ.get("CHATMAIL_RELAY_BIN", str(ROOT / "target/release/examples/relay"))
    mail = tmp_path / "mail"
    mail.mkdir()
    ini = tmp_path / "chatmail.ini"
    ini.write_text(f"[params]\nmail_domain = _chat.localhost\nmailboxes_dir = {mail}\n")
    prom = tmp_path / "prom"
    prom.mkdir()
    for unit in ["chatmail-fsreport.service"]:
        line = next(l for l in (ROOT / "deploy" / unit).read_text().splitlines()
                    if l.startswith("ExecStart="))
        args = line.split()[1:]
        args = [str(ini) if a.endswith("chatmail.ini") else a for a in args]
        args = [str(prom) if a.startswith("/var/lib/prometheus") else a for a in args]
        out = subprocess.run([binary, *args], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
    assert (prom / "fsreport.prom").exists()
