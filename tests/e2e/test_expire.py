"""`relay expire` on a data directory whose files are aged by setting their times in the
past: `--dry-run` lists exactly what the rules say and removes nothing; the real run
removes exactly that (spec 6.1)."""

import os
import subprocess
import time
from pathlib import Path

from conftest import ROOT

DAY = 86400


def relay_bin():
    return os.environ.get("CHATMAIL_RELAY_BIN", str(ROOT / "target/release/examples/relay"))


def put(path: Path, size: int, age_days: float):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    t = time.time() - age_days * DAY
    os.utime(path, (t, t))


def expire(tmp, *extra):
    out = subprocess.run([relay_bin(), "expire", "--config", str(tmp / "chatmail.ini"), *extra],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_expire_dry_run_lists_and_the_real_run_removes_exactly_that(tmp_path):
    mail = tmp_path / "mail"
    (tmp_path / "chatmail.ini").write_text(
        f"[params]\nmail_domain = _chat.localhost\nmailboxes_dir = {mail}\n")
    alice = mail / "alice0001@_chat.localhost"
    put(alice / "password", 20, 1)
    old = alice / "cur" / f"{int(time.time()) - 30 * DAY}.M1P1.h,S=10,W=10:2,S"
    young = alice / "new" / f"{int(time.time()) - 2 * DAY}.M2P2.h,S=10,W=10"
    large = alice / "cur" / f"{int(time.time()) - 10 * DAY}.M3P3.h,S=300000,W=300000:2,S"
    put(old, 10, 30)
    put(young, 10, 2)
    put(large, 300000, 10)
    inactive = mail / "gone0001@_chat.localhost"
    put(inactive / "password", 20, 100)
    put(inactive / "cur" / "1.M1P1.h,S=5,W=5:2,S", 5, 1)

    listed = expire(tmp_path, "--dry-run")
    lines = sorted(line for line in listed.splitlines() if line.startswith("would remove"))
    assert lines == sorted([
        f"would remove account inactive longer than delete_inactive_users_after: {inactive}",
        f"would remove large seen message older than delete_large_after: {large}",
        f"would remove message older than delete_mails_after: {old}",
    ]), listed
    assert "(dry run: nothing removed)" in listed
    assert old.exists() and large.exists() and inactive.exists()

    done = expire(tmp_path)
    removed = sorted(line.replace("removed ", "would remove ", 1)
                     for line in done.splitlines() if line.startswith("removed "))
    assert removed == lines, done
    assert not old.exists() and not large.exists() and not inactive.exists()
    assert young.exists() and (alice / "password").exists()
    # Nothing left to remove.
    again = expire(tmp_path, "--dry-run")
    assert not [line for line in again.splitlines() if line.startswith("would remove")], again


def test_fsreport_prints_and_writes_the_reference_textfile(tmp_path):
    mail = tmp_path / "mail"
    (tmp_path / "chatmail.ini").write_text(
        f"[params]\nmail_domain = _chat.localhost\nmailboxes_dir = {mail}\n")
    put(mail / "alice0001@_chat.localhost" / "password", 20, 3)
    put(mail / "alice0001@_chat.localhost" / "cur" / "1.M1P1.h,S=150000,W=150000:2,S", 150000, 1)
    put(mail / "ci-000001@_chat.localhost" / "password", 20, 0)
    out = subprocess.run([relay_bin(), "fsreport", "--config", str(tmp_path / "chatmail.ini")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "non-ci: 1" in out.stdout and "ci:     1" in out.stdout, out.stdout
    assert "active in the last  10 days: 1" in out.stdout, out.stdout
    prom_dir = tmp_path / "prom"
    prom_dir.mkdir()
    out = subprocess.run([relay_bin(), "fsreport", "--config", str(tmp_path / "chatmail.ini"),
                          "--textfile", str(prom_dir)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    prom = (prom_dir / "fsreport.prom").read_text()
    assert 'chatmail_messages_count{min_size="102400"} 1\n' in prom, prom
    assert 'chatmail_accounts{kind="all"} 2\n' in prom
    assert 'chatmail_storage_bytes{kind="messages"} 150000\n' in prom
