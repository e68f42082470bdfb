"""Several relay nodes of one domain sharing one PostgreSQL database (issue 15): two
`relay` processes on 127.0.0.2 and 127.0.0.3 with `storage = postgres://...`, against a
throwaway cluster this module starts on loopback and stops by PID (pgcluster.py).

* Delta Chat accounts connected to different nodes secure-join and exchange messages:
  a delivery on one node wakes the other's IDLE session through the database.
* One node is SIGKILLed while clients submit to both: every message that got a 250 is
  in its mailbox exactly once, read from the surviving node, and the clients of the
  dead node carry on at the other one, as a DNS round-robin client does.
* `relay migrate` moves a maildir relay into the database and back, with its DKIM key:
  the same DNS record, password, UIDVALIDITY, UIDs and flags after each move.

Needs the relay built with `--features postgres` (test.sh does)."""

import imaplib
import json
import re
import shutil
import smtplib
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

import pgcluster
from conftest import Relay, fixture

CTX = ssl.create_default_context()
CTX.check_hostname = False
CTX.verify_mode = ssl.CERT_NONE

TIMEOUT = 60
SKIP_DKIM = {"CHATMAIL_SKIP_DKIM": "1"}
# The load below sends far more than a person does; the limits' split across nodes has
# its own unit test (chatmail-policy, each_node_enforces_its_share_of_the_sender_limits).
HIGH_LIMITS = "max_user_send_per_minute = 100000\nmax_user_send_burst_size = 100000\n"


@pytest.fixture(scope="module")
def cluster():
    c = pgcluster.Cluster()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def nodes(cluster):
    tmp = Path(tempfile.mkdtemp(prefix="chatmail-e2e-nodes-"))
    extra = f"storage = {cluster.url()}\nnodes = 2\n" + HIGH_LIMITS
    a = Relay(tmp / "a", extra_ini=extra, address="127.0.0.2", env=SKIP_DKIM)
    b = Relay(tmp / "b", extra_ini=extra, address="127.0.0.3", env=SKIP_DKIM)
    yield a, b
    for node in (a, b):
        node.close()
    shutil.rmtree(tmp, ignore_errors=True)


def new_credentials(node):
    url = f"https://{node.address}:{node.https_port}/new"
    req = urllib.request.Request(url, method="POST")
    with urllib.request.urlopen(req, context=CTX, timeout=30) as r:
        return json.loads(r.read())


def transport(node, creds):
    return {
        "addr": creds["email"],
        "password": creds["password"],
        "imapServer": node.address,
        "imapPort": node.imaps_port,
        "imapSecurity": "ssl",
        "smtpServer": node.address,
        "smtpPort": node.submissions_port,
        "smtpSecurity": "ssl",
        "certificateChecks": "acceptInvalidCertificates",
    }


def test_deltachat_accounts_on_different_nodes_talk(nodes, dc):
    a, b = nodes
    ac1 = dc.add_account()
    ac1.add_or_update_transport(transport(a, new_credentials(a)))
    ac2 = dc.add_account()
    ac2.add_or_update_transport(transport(b, new_credentials(b)))
    ac1.bring_online()
    ac2.bring_online()

    qr = ac1.get_qr_code()
    ac2.secure_join(qr)
    ac1.wait_for_securejoin_inviter_success()
    ac2.wait_for_securejoin_joiner_success()

    chat12 = ac1.create_chat(ac2)
    chat21 = ac2.create_chat(ac1)
    for i in range(5):
        chat12.send_text(f"ping {i}")
        chat21.send_text(f"pong {i}")
        for acc, text in ((ac2, f"ping {i}"), (ac1, f"pong {i}")):
            deadline = time.time() + TIMEOUT
            while True:
                msg = acc.wait_for_incoming_msg().get_snapshot()
                if msg.text == text:
                    assert msg.show_padlock, f"message not encrypted: {msg.text}"
                    break
                assert time.time() < deadline, f"{text} did not arrive"


def imap_login(node, addr, password):
    m = imaplib.IMAP4_SSL(node.address, node.imaps_port, ssl_context=CTX, timeout=30)
    m.login(addr, password)
    return m


def message_ids(node, addr, password):
    """Every Message-ID in the INBOX, read on `node`, with repeats."""
    m = imap_login(node, addr, password)
    try:
        typ, data = m.select("INBOX")
        assert typ == "OK", data
        if int(data[0]) == 0:
            return []
        typ, data = m.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        assert typ == "OK", data
        ids = []
        for item in data:
            if isinstance(item, tuple):
                found = re.search(rb"<([^>]+)>", item[1])
                ids.append(found.group(1).decode() if found else None)
        return ids
    finally:
        m.logout()


def test_sigkill_one_node_loses_nothing_acknowledged(tmp_path, cluster):
    extra = f"storage = {cluster.url()}\nnodes = 2\n" + HIGH_LIMITS
    a = Relay(tmp_path / "a", extra_ini=extra, address="127.0.0.2", env=SKIP_DKIM)
    b = Relay(tmp_path / "b", extra_ini=extra, address="127.0.0.3", env=SKIP_DKIM)
    try:
        rcpt, rcpt_pw = a.creds("rc")
        imap_login(b, rcpt, rcpt_pw).logout()  # the account exists on every node
        senders = [a.creds("sd") for _ in range(6)]
        acked, lock = [], threading.Lock()
        switched = []
        per_sender = 40
        template = fixture("encrypted.eml", "{from}", rcpt)

        def send(i, addr, pw):
            # Half the clients start at each node; when theirs goes away they reconnect
            # to the other, as a client given both addresses by DNS does.
            order = [a, b] if i % 2 == 0 else [b, a]
            n, deadline = 0, time.time() + 120
            while n < per_sender and time.time() < deadline:
                node = order[0]
                try:
                    with smtplib.SMTP_SSL(node.address, node.submissions_port,
                                          context=CTX, timeout=15) as s:
                        s.login(addr, pw)
                        while n < per_sender:
                            mid = f"{uuid.uuid4().hex}@nodes.test"
                            text = re.sub(r"Message-ID: <[^>]+>", f"Message-ID: <{mid}>",
                                          template.replace("{from}", addr), count=1)
                            s.sendmail(addr, [rcpt], text.encode())
                            with lock:
                                acked.append(mid)
                            n += 1
                            time.sleep(0.01)
                except (OSError, smtplib.SMTPException):
                    order.reverse()
                    with lock:
                        switched.append(i)
                    time.sleep(0.2)

        threads = [threading.Thread(target=send, args=(i, addr, pw))
                   for i, (addr, pw) in enumerate(senders)]
        for t in threads:
            t.start()
        # SIGKILL node A once the load is well under way.
        deadline = time.time() + 60
        while len(acked) < len(senders) * per_sender // 3 and time.time() < deadline:
            time.sleep(0.02)
        a.kill()
        for t in threads:
            t.join(150)
        assert len(acked) == len(senders) * per_sender, f"only {len(acked)} acknowledged"
        assert switched, "no client was connected to the killed node"
        ids = message_ids(b, rcpt, rcpt_pw)
        counts = {}
        for mid in ids:
            counts[mid] = counts.get(mid, 0) + 1
        missing = [mid for mid in acked if mid not in counts]
        doubled = [mid for mid, c in counts.items() if c > 1]
        assert not missing, f"{len(missing)} acknowledged messages lost"
        assert not doubled, f"{len(doubled)} messages stored twice"
        # Node A restarted serves the same mailbox.
        a.start()
        assert sorted(message_ids(a, rcpt, rcpt_pw)) == sorted(ids)
    finally:
        a.close()
        b.close()


def relay_cmd(node, *args):
    out = subprocess.run([node.binary, *args], capture_output=True, text=True, timeout=300,
                         env=node.env)
    assert out.returncode == 0, f"{args}: {out.stdout}\n{out.stderr}"
    return out.stdout


def dkim_record(node):
    lines = [line for line in node.dns().splitlines() if line.startswith("opendkim._domainkey")]
    assert len(lines) == 1, lines
    return lines[0]


def mailbox_state(node, addr, password):
    """UIDVALIDITY, UIDNEXT and (UID, flags) of every INBOX message, as a client caches
    them."""
    m = imap_login(node, addr, password)
    try:
        m.select("INBOX")
        typ, data = m.status("INBOX", "(UIDVALIDITY UIDNEXT)")
        assert typ == "OK", data
        status = data[0].decode()
        typ, data = m.uid("FETCH", "1:*", "(FLAGS)")
        assert typ == "OK", data
        # \Recent belongs to a session, not to what a client caches; the maildir store
        # does not keep it across restarts at all.
        return status, sorted(d.decode().replace("\\Recent ", "").replace(" \\Recent", "")
                              .replace("\\Recent", "") for d in data if d)
    finally:
        m.logout()


def test_migrate_to_postgres_and_back_keeps_what_clients_cached(tmp_path, cluster):
    source = Relay(tmp_path / "maildir", env=SKIP_DKIM)
    try:
        record = dkim_record(source)
        rcpt, rcpt_pw = source.creds("rc")
        sender, sender_pw = source.creds("sd")
        imap_login(source, rcpt, rcpt_pw).logout()
        with smtplib.SMTP_SSL("127.0.0.1", source.submissions_port, context=CTX,
                              timeout=30) as s:
            s.login(sender, sender_pw)
            for _ in range(3):
                s.sendmail(sender, [rcpt], fixture("encrypted.eml", sender, rcpt).encode())
        m = imap_login(source, rcpt, rcpt_pw)
        m.select("INBOX")
        m.store("2", "+FLAGS", "(\\Seen $Label1)")
        m.store("1", "+FLAGS", "(\\Deleted)")
        m.expunge()
        m.logout()
        before = mailbox_state(source, rcpt, rcpt_pw)
    finally:
        source.stop()

    cluster.psql("CREATE DATABASE migrated")
    url = cluster.url("migrated")
    out = relay_cmd(source, "migrate", "--from", f"maildir:{source.mailboxes_dir}",
                    "--to", url, "--data-dir", str(source.data_dir))
    assert "DKIM keys moved: 1" in out, out
    node = Relay(tmp_path / "node", extra_ini=f"storage = {url}\n",
                 env=SKIP_DKIM)
    try:
        assert dkim_record(node) == record
        assert mailbox_state(node, rcpt, rcpt_pw) == before
        imap_login(node, sender, sender_pw).logout()
    finally:
        node.stop()

    back_dir = tmp_path / "back"
    out = relay_cmd(node, "migrate", "--from", url, "--to", f"maildir:{back_dir / 'mail'}",
                    "--data-dir", str(back_dir / "data"))
    assert "DKIM keys moved: 1" in out, out
    # The directory was filled by the migration; the relay's config names it again.
    back = Relay(back_dir, env=SKIP_DKIM)
    try:
        assert dkim_record(back) == record
        assert mailbox_state(back, rcpt, rcpt_pw) == before
    finally:
        back.close()
    node.close()
