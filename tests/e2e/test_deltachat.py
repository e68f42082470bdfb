"""Delta Chat core itself (deltachat-rpc-server 2.65 via deltachat-rpc-client) against the
relay example: configure two accounts, refuse cleartext, secure-join, ten encrypted
messages each way, and check the delivered copies on the server; once more on a relay
that offers IMAP COMPRESS=DEFLATE, which Delta Chat (since core 1.148) asks for."""

import email
import json
import os
import threading
import smtplib
import ssl
import time
import urllib.parse
import urllib.request
from pathlib import Path

from conftest import fixture, metric
from deltachat_rpc_client.rpc import JsonRpcError

CTX = ssl.create_default_context()
CTX.check_hostname = False
CTX.verify_mode = ssl.CERT_NONE

TIMEOUT = 60


def new_credentials(relay):
    req = urllib.request.Request(f"https://127.0.0.1:{relay.https_port}/new", method="POST")
    with urllib.request.urlopen(req, context=CTX, timeout=30) as r:
        return json.loads(r.read())


class Capture:
    """Hard-links every message file that appears in the accounts' new/ and cur/."""

    def __init__(self, relay, addrs):
        self.dirs = [Path(relay.mailboxes_dir) / a / sub for a in addrs for sub in ("new", "cur")]
        self.out = Path(relay.tmp) / "captured"
        self.out.mkdir(exist_ok=True)
        self.seen = set()
        self.running = True
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while self.running:
            for d in self.dirs:
                try:
                    entries = list(os.scandir(d))
                except FileNotFoundError:
                    continue
                for e in entries:
                    key = e.name.split(":")[0]
                    if key in self.seen:
                        continue
                    try:
                        os.link(e.path, self.out / key)
                        self.seen.add(key)
                    except (FileNotFoundError, FileExistsError):
                        pass
            time.sleep(0.001)

    def stop(self):
        self.running = False
        self.thread.join(5)
        return sorted(self.out.iterdir())


def test_deltachat_end_to_end(relay, dc):
    end_to_end(relay, dc)


def test_deltachat_end_to_end_compressed(compress_relay, dc):
    """The same conversation with every IMAP session compressed: Delta Chat sends
    COMPRESS DEFLATE when the LOGIN capabilities offer it (it gives up on a server
    whose COMPRESS fails, so the messages arriving shows the compressed path works), and
    the relay counts the sessions that started it; only Delta Chat speaks IMAP meanwhile."""
    before = metric(compress_relay, "chatmail_imap_compress_sessions")
    end_to_end(compress_relay, dc)
    # Two accounts, each with at least its IDLE connection.
    after = metric(compress_relay, "chatmail_imap_compress_sessions")
    print(f"COMPRESS sessions during the conversation: {after - before:.0f}")
    assert after >= before + 2


def end_to_end(relay, dc):
    # Account 1 through the dclogin: URL the relay printed at start.
    assert relay.printed_dclogin, "relay did not print a dclogin: URL"
    ac1 = dc.add_account()
    ac1.add_transport_from_qr(relay.printed_dclogin)

    # Account 2 through /new. On a self-signed relay the client cannot verify the
    # certificate a DCACCOUNT: fetch needs, so, as the reference's own test does in self
    # mode, the credentials are fetched from /new and configured explicitly.
    creds = new_credentials(relay)
    ac2 = dc.add_account()
    ac2.add_or_update_transport({
        "addr": creds["email"],
        "password": creds["password"],
        "imapServer": "127.0.0.1",
        "imapPort": relay.imaps_port,
        "imapSecurity": "ssl",
        "smtpServer": "127.0.0.1",
        "smtpPort": relay.submissions_port,
        "smtpSecurity": "ssl",
        "certificateChecks": "acceptInvalidCertificates",
    })
    addr1, addr2 = ac1.get_config("configured_addr"), ac2.get_config("configured_addr")
    assert addr1.endswith("@" + relay.domain) and addr2 == creds["email"]
    # Delta Chat deletes fetched messages from the server at once; hard links to each
    # delivered file, made as it appears, keep the copies for inspection below.
    capture = Capture(relay, [addr1, addr2])
    ac1.bring_online()
    ac2.bring_online()

    # Cleartext: Delta Chat 2.65 itself refuses to send to a contact without a key, and
    # the relay refuses a cleartext message submitted with that account's credentials.
    plain_chat = ac1.create_contact(addr2).create_chat()
    try:
        plain_chat.send_text("cleartext must not pass")
        client_refused = False
    except JsonRpcError as e:
        client_refused = "encryption unavailable" in str(e)
    assert client_refused, "Delta Chat sent a cleartext message"
    password1 = urllib.parse.unquote(
        urllib.parse.parse_qs(relay.printed_dclogin.split("?", 1)[1])["p"][0])
    with smtplib.SMTP_SSL("127.0.0.1", relay.submissions_port, context=CTX, timeout=30) as s:
        s.login(addr1, password1)
        plain = fixture("plain.eml", addr1, addr2, "hi")
        try:
            s.sendmail(addr1, [addr2], plain.encode())
            raise AssertionError("the relay accepted cleartext")
        except smtplib.SMTPDataError as e:
            assert e.smtp_code == 523, e

    # Secure-Join establishes encryption.
    qr = ac1.get_qr_code()
    ac2.secure_join(qr)
    ac1.wait_for_securejoin_inviter_success()
    ac2.wait_for_securejoin_joiner_success()

    chat12 = ac1.create_chat(ac2)
    chat21 = ac2.create_chat(ac1)
    # Ten rounds of ping and pong; each round waits for both to arrive, as a
    # conversation does (the relay's rate limit allows bursts of 10, spec 3.2).
    for i in range(10):
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

    # The delivered copies on the server are scrubbed (spec 4.3, 4.4).
    files = capture.stop()
    assert len(files) >= 10, f"only {len(files)} delivered copies captured"
    for path in files:
        raw = path.read_bytes()
        msg = email.message_from_bytes(raw)
        assert msg["Subject"] == "[...]", (path, msg["Subject"])
        for header in ("Received", "X-Mailer", "User-Agent", "X-Originating-IP",
                       "DKIM-Signature", "Authentication-Results"):
            assert msg[header] is None, (path, header)
        assert b"127.0.0.1" not in raw, path
