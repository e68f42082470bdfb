"""Issue 14's fault checks, briefly, on every run: the relay SIGKILLed during
submission (`load/faults/crash_loop.py`, 10 kills here, 50 in BENCHMARKS.md) and its disk
filling up and freeing again (`load/faults/disk_full.py`, needs root for a tmpfs). Each
script checks that nothing acknowledged is lost or doubled and exits non-zero otherwise."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RELAY = os.environ.get("CHATMAIL_RELAY_BIN", str(ROOT / "target/release/examples/relay"))


def run(script, *args, tmp):
    out = tmp / "summary.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "load/faults" / script), "--relay", RELAY,
         "--json", str(out), *args],
        capture_output=True, text=True, timeout=600)
    if proc.returncode == 77:
        pytest.skip(proc.stderr.strip())
    assert out.exists(), proc.stdout + proc.stderr
    summary = json.loads(out.read_text())
    assert proc.returncode == 0, summary
    return summary


def test_sigkill_during_submission_loses_and_doubles_nothing(tmp_path):
    s = run("crash_loop.py", "--kills", "10", "--senders", "3", tmp=tmp_path)
    assert s["acknowledged"] > 0 and s["lost"] == 0 and s["doubled"] == 0, s


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs: needs root")
def test_a_full_disk_refuses_for_now_and_recovers(tmp_path):
    s = run("disk_full.py", "--messages", "10", tmp=tmp_path)
    assert s["refused_while_full"] == 10 and s["codes_while_full"] == [452], s
    assert s["first_250_after_space_returned_s"] is not None, s
