"""Standard command-line clients against the relay example: curl (HTTPS endpoints),
msmtp (submission), mbsync (IMAP synchronisation to a local maildir)."""

import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import fixture
from test_protocol import fetch_all, login_imap


def need(tool):
    if not shutil.which(tool):
        pytest.skip(f"{tool} not installed")


def test_curl_new_and_well_known(relay):
    need("curl")
    base = f"https://127.0.0.1:{relay.https_port}"
    out = subprocess.run(["curl", "-sk", "-X", "POST", f"{base}/new"], capture_output=True,
                         text=True, timeout=30, check=True).stdout
    assert '"email"' in out and relay.domain in out
    sts = subprocess.run(["curl", "-sk", f"{base}/.well-known/mta-sts.txt"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    assert sts.startswith("version: STSv1\nmode: enforce\n")
    code = subprocess.run(["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}",
                           f"{base}/no-such-page"], capture_output=True, text=True,
                          timeout=30).stdout
    assert code == "404"


def test_msmtp_submits_encrypted_mail(relay, tmp_path):
    need("msmtp")
    sender, pw = relay.creds()
    rcpt, rcpt_pw = relay.creds()
    login_imap(relay, rcpt, rcpt_pw).logout()
    conf = tmp_path / "msmtprc"
    conf.write_text(
        "account relay\n"
        "host 127.0.0.1\n"
        f"port {relay.submissions_port}\n"
        "tls on\ntls_starttls off\ntls_certcheck off\n"
        "auth plain\n"
        f"user {sender}\npassword {pw}\nfrom {sender}\n"
        "account default : relay\n")
    conf.chmod(0o600)
    message = fixture("encrypted.eml", sender, rcpt)
    subprocess.run(["msmtp", "-C", str(conf), rcpt], input=message.encode(), timeout=60,
                   check=True)
    plain = fixture("plain.eml", sender, rcpt)
    refused = subprocess.run(["msmtp", "-C", str(conf), rcpt], input=plain.encode(),
                             capture_output=True, timeout=60)
    assert refused.returncode != 0 and b"523" in refused.stderr + refused.stdout
    [raw] = fetch_all(relay, rcpt, rcpt_pw, 1)
    assert b"Subject: [...]" in raw


def test_mbsync_mirrors_the_inbox(relay, tmp_path):
    need("mbsync")
    sender, pw = relay.creds()
    rcpt, rcpt_pw = relay.creds()
    login_imap(relay, rcpt, rcpt_pw).logout()
    from test_protocol import send
    for _ in range(3):
        send(relay, sender, pw, rcpt, "encrypted.eml")
    local = tmp_path / "maildir"
    local.mkdir()
    conf = tmp_path / "mbsyncrc"
    conf.write_text(
        "IMAPAccount relay\n"
        "Host 127.0.0.1\n"
        f"Port {relay.imaps_port}\n"
        f"User {rcpt}\nPass {rcpt_pw}\n"
        # mbsync 1.4 (Debian 12) trusts a server certificate listed in CertificateFile:
        # the relay's self-signed one, from its data directory.
        "SSLType IMAPS\nSystemCertificates no\n"
        f"CertificateFile {relay.tmp / 'data' / 'tls' / 'cert.pem'}\n"
        "AuthMechs LOGIN\n\n"
        "IMAPStore remote\nAccount relay\n\n"
        f"MaildirStore local\nPath {local}/\nInbox {local}/INBOX\n\n"
        "Channel inbox\nFar :remote:INBOX\nNear :local:INBOX\nSync Pull\nCreate Near\n"
        # Keep the sync state in the test's maildir, not in ~/.mbsync/ across runs.
        "SyncState *\n")
    result = subprocess.run(["mbsync", "-c", str(conf), "inbox"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    files = [p for sub in ("new", "cur") for p in (local / "INBOX" / sub).glob("*")]
    assert len(files) == 3, (files, result.stdout, result.stderr)
    assert all(b"Subject: [...]" in Path(f).read_bytes() for f in files)
