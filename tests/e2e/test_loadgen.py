"""The `loadgen` example against the relay: a short run in each SMTP mode, every message
accepted and seen in its recipient's IDLE (issue 14).

Skipped when the loadgen binary is not built (`cargo build --example loadgen`;
`test.sh` builds it). Nothing here measures speed: only counts are checked.
"""

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import ROOT, Relay

LOADGEN = Path(os.environ.get(
    "CHATMAIL_LOADGEN_BIN",
    Path(os.environ.get("CHATMAIL_RELAY_BIN", ROOT / "target/debug/examples/relay")).parent / "loadgen"))

pytestmark = pytest.mark.skipif(not LOADGEN.exists(), reason=f"{LOADGEN} not built")


@pytest.fixture(scope="module")
def load_relay():
    """A relay whose send limits let one sender submit back to back (the default 60/min,
    burst 10 would refuse most of a load run), and that takes unsigned port-25 mail."""
    tmp = Path(tempfile.mkdtemp(prefix="chatmail-e2e-loadgen-"))
    r = Relay(tmp, extra_ini="max_user_send_per_minute = 1000000\n"
                             "max_user_send_burst_size = 1000000\n",
              env={"CHATMAIL_SKIP_DKIM": "1"})
    yield r
    r.close()
    shutil.rmtree(tmp, ignore_errors=True)


def run_loadgen(relay, tmp_path, *mode, messages=50):
    out = tmp_path / "loadgen.json"
    proc = subprocess.run(
        [str(LOADGEN), "--insecure", "--domain", relay.domain,
         "--imaps-port", str(relay.imaps_port), *mode,
         "--connections", "2", "--messages", str(messages), "--accounts", "3",
         "--size", "4096", "--timeout", "120", "--json", str(out)],
        capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(out.read_text())


def check_all_delivered(report, messages):
    assert report["accepted"] == messages, report
    assert report["delivered"] == messages, report
    assert report["errors"] == 0 and report["refused"] == 0 and report["lost"] == 0, report
    assert report["unexpected_exists"] == 0, report
    assert report["all_delivered"] is True
    assert report["accept_latency_ms"]["n"] == messages
    assert report["deliver_latency_ms"]["n"] == messages
    # Each message arrives after its final dot left: a latency is never negative.
    assert 0 <= report["deliver_latency_ms"]["p50"] <= report["deliver_latency_ms"]["max"]


def test_submission(load_relay, tmp_path):
    report = run_loadgen(load_relay, tmp_path, "--port-submission",
                         str(load_relay.submissions_port))
    check_all_delivered(report, 50)
    assert 3500 < report["message_size"] < 5000


def test_port_25_style(load_relay, tmp_path):
    report = run_loadgen(load_relay, tmp_path, "--port-smtp", str(load_relay.smtp_port),
                         messages=20)
    check_all_delivered(report, 20)


def test_rate_limit_refusals_are_reported(tmp_path):
    """With the default send limits (burst 10) most of 40 messages from one sender are
    refused: loadgen says so and exits non-zero."""
    relay = Relay(tmp_path / "relay", env={"CHATMAIL_SKIP_DKIM": "1"})
    try:
        out = tmp_path / "limited.json"
        proc = subprocess.run(
            [str(LOADGEN), "--insecure", "--domain", relay.domain,
             "--imaps-port", str(relay.imaps_port),
             "--port-submission", str(relay.submissions_port),
             "--connections", "1", "--messages", "40", "--accounts", "2",
             "--timeout", "120", "--json", str(out)],
            capture_output=True, text=True, timeout=180)
    finally:
        relay.close()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    assert report["refused"] > 0 and report["all_delivered"] is False
    assert report["accepted"] == report["delivered"]
    assert any(e.startswith("refused: 450") for e in report["error_samples"])


def test_refuses_a_remote_host():
    proc = subprocess.run([str(LOADGEN), "--host", "192.0.2.1"], capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 2
    assert "loopback" in proc.stderr
