"""Spec 7.4 items 1-11 and the METADATA part of item 12, with python smtplib/imaplib,
swaks and curl-like HTTPS requests against the relay example on 127.0.0.1."""

import imaplib
import json
import shutil
import smtplib
import socket
import ssl
import subprocess
import threading
import time
import urllib.request

import pytest

from conftest import fixture

# imaplib does not know the RFC 5464 commands.
imaplib.Commands.setdefault("SETMETADATA", ("AUTH", "SELECTED"))
imaplib.Commands.setdefault("GETMETADATA", ("AUTH", "SELECTED"))

CTX = ssl.create_default_context()
CTX.check_hostname = False
CTX.verify_mode = ssl.CERT_NONE


def imap(relay):
    return imaplib.IMAP4_SSL("127.0.0.1", relay.imaps_port, ssl_context=CTX, timeout=30)


def smtp(relay):
    return smtplib.SMTP_SSL("127.0.0.1", relay.submissions_port, context=CTX, timeout=30)


def login_imap(relay, addr, password):
    c = imap(relay)
    c.login(addr, password)
    return c


def send(relay, addr, password, to, name, mail_from=None, from_header=None, subject="[...]"):
    msg = fixture(name, from_header or addr, to if isinstance(to, str) else to[0], subject)
    with smtp(relay) as s:
        s.login(addr, password)
        return s.sendmail(mail_from or addr, to, msg.encode())


def fetch_all(relay, addr, password, expect, timeout=10):
    c = login_imap(relay, addr, password)
    c.select("INBOX")
    deadline = time.time() + timeout
    while True:
        typ, data = c.uid("SEARCH", None, "ALL")
        uids = data[0].split()
        if len(uids) >= expect or time.time() > deadline:
            break
        time.sleep(0.05)
    out = []
    for uid in uids:
        typ, data = c.uid("FETCH", uid, "(BODY.PEEK[])")
        out.append(data[0][1])
    c.logout()
    return out


# 1. capabilities

def test_capabilities_before_and_after_login(relay):
    c = imap(relay)
    caps = c.capabilities
    assert "XCHATMAIL" in caps and "XDELTAPUSH" in caps
    addr, pw = relay.creds()
    c.login(addr, pw)
    typ, data = c.capability()
    after = data[0].decode().upper().split()
    for cap in ["METADATA", "QUOTA", "IDLE", "XCHATMAIL", "XDELTAPUSH"]:
        assert cap in after, after
    c.logout()


def test_imap_plaintext_port_disables_login_before_starttls(relay):
    c = imaplib.IMAP4("127.0.0.1", relay.imap_port, timeout=30)
    assert "LOGINDISABLED" in c.capabilities
    with pytest.raises(imaplib.IMAP4.error):
        c.login(*relay.creds())
    c.starttls(ssl_context=CTX)
    c.login(*relay.creds())
    c.logout()


# 2. login auto-create / re-login / wrong password / short password

def test_imap_login_basic_functioning(relay):
    addr, pw = relay.creds()
    login_imap(relay, addr, pw).logout()
    login_imap(relay, addr, pw).logout()
    with pytest.raises(imaplib.IMAP4.error):
        login_imap(relay, addr, pw + "x")
    with pytest.raises(imaplib.IMAP4.error):
        login_imap(relay, relay.creds()[0], "admin")


def test_smtp_login_basic_functioning(relay):
    addr, pw = relay.creds()
    for _ in range(2):
        with smtp(relay) as s:
            s.login(addr, pw)
    with pytest.raises(smtplib.SMTPAuthenticationError):
        with smtp(relay) as s:
            s.login(addr, "wrong-password")
    with pytest.raises(smtplib.SMTPAuthenticationError):
        with smtp(relay) as s:
            s.login(relay.creds()[0], "admin")


def test_submission_requires_starttls_before_auth(relay):
    with smtplib.SMTP("127.0.0.1", relay.submission_port, timeout=30) as s:
        s.ehlo("client.localhost")
        assert not s.has_extn("auth")
        code, msg = s.docmd("AUTH", "PLAIN AGZvbwBiYXI=")
        assert code == 530, (code, msg)
        s.starttls(context=CTX)
        s.ehlo("client.localhost")
        assert s.has_extn("auth")
        s.login(*relay.creds())


# 3. same password, concurrent first logins

def test_two_users_same_password(relay):
    (a, pw), (b, _) = relay.creds(), relay.creds()
    login_imap(relay, a, pw).logout()
    login_imap(relay, b, pw).logout()
    login_imap(relay, a, pw).logout()
    with smtp(relay) as s:
        s.login(b, pw)


def test_concurrent_first_logins(relay):
    addr, pw = relay.creds()
    errors = []

    def one():
        try:
            login_imap(relay, addr, pw).logout()
            with smtp(relay) as s:
                s.login(addr, pw)
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=one) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert (relay.mailboxes_dir / addr / "password").read_text().startswith("{SHA512-CRYPT}$6$")


# 4. foreign domain and invalid local parts

@pytest.mark.parametrize("local", ["Abcdefghi", "abc+defgh", "abcdefgh", "abcdefghij", "abc defgh"])
def test_invalid_local_parts_fail(relay, local):
    with pytest.raises(imaplib.IMAP4.error):
        login_imap(relay, f"{local}@{relay.domain}", "password123")


def test_foreign_domain_login_fails(relay):
    with pytest.raises(imaplib.IMAP4.error):
        login_imap(relay, "abcdefghi@example.org.invalid", "password123")
    with pytest.raises(smtplib.SMTPAuthenticationError):
        with smtp(relay) as s:
            s.login("abcdefghi@example.org.invalid", "password123")


# 5. VRFY on port 25

def test_vrfy_needs_starttls_then_never_reveals(relay):
    addr, pw = relay.creds()
    login_imap(relay, addr, pw).logout()
    with smtplib.SMTP("127.0.0.1", relay.smtp_port, timeout=30) as s:
        s.ehlo("mx.example.org")
        code, _ = s.docmd("VRFY", addr)
        assert code == 530
        s.starttls(context=CTX)
        s.ehlo("mx.example.org")
        for who in [addr, f"nosuchuser@{relay.domain}", "wrongaddress", "echo"]:
            code, text = s.verify(who)
            assert code == 252 and text.decode().startswith("2.0.0 "), (who, code, text)


def test_swaks_vrfy_and_relay_denied(relay):
    if not shutil.which("swaks"):
        pytest.skip("swaks not installed")
    out = subprocess.run(
        ["swaks", "--server", "127.0.0.1", "--port", str(relay.smtp_port), "--tls",
         "--ehlo", "mx.example.org", "--from", "someone@example.org",
         "--to", "victim@example.net", "--timeout", "20"],
        capture_output=True, text=True, timeout=60)
    assert "554 5.7.1" in out.stdout, out.stdout


# 6. /new

def test_new_endpoint_json(relay):
    req = urllib.request.Request(f"https://127.0.0.1:{relay.https_port}/new", method="POST")
    with urllib.request.urlopen(req, context=CTX, timeout=30) as r:
        assert r.headers["Content-Type"].startswith("application/json")
        data = json.loads(r.read())
    assert data["email"].endswith("@" + relay.domain)
    assert len(data["password"]) > 9
    assert data["dclogin_url"].startswith("dclogin:") and "ic=3" in data["dclogin_url"]
    login_imap(relay, data["email"], data["password"]).logout()


# 7. identity

def test_forged_from_is_rejected_with_500(relay):
    addr, pw = relay.creds()
    with pytest.raises(smtplib.SMTPDataError) as e:
        send(relay, addr, pw, addr, "encrypted.eml", from_header="someone@example.org")
    assert e.value.smtp_code == 500


def test_foreign_envelope_sender_is_refused_with_553_at_rcpt(relay):
    addr, pw = relay.creds()
    other, _ = relay.creds()
    with pytest.raises(smtplib.SMTPRecipientsRefused) as e:
        send(relay, addr, pw, addr, "encrypted.eml", mail_from=other, from_header=other)
    assert list(e.value.recipients.values())[0][0] == 553


# 8. encryption policy with the reference fixtures

@pytest.mark.parametrize("name", ["plain.eml", "fake-encrypted.eml", "literal.eml", "mdn.eml",
                                  "securejoin-vc-fake.eml"])
def test_unencrypted_fixtures_are_refused_with_523(relay, name):
    addr, pw = relay.creds()
    to, _ = relay.creds()
    with pytest.raises((smtplib.SMTPDataError, smtplib.SMTPRecipientsRefused)) as e:
        send(relay, addr, pw, to, name)
    code = getattr(e.value, "smtp_code", None) or list(e.value.recipients.values())[0][0]
    assert code == 523


@pytest.mark.parametrize("name", ["encrypted.eml", "securejoin-vc.eml"])
def test_encrypted_and_securejoin_are_accepted(relay, name):
    addr, pw = relay.creds()
    to, to_pw = relay.creds()
    login_imap(relay, to, to_pw).logout()
    assert send(relay, addr, pw, to, name) == {}
    assert len(fetch_all(relay, to, to_pw, 1)) == 1


def test_autocrypt_setup_message_only_to_self(relay):
    addr, pw = relay.creds()
    assert send(relay, addr, pw, addr, "asm.eml", subject="Autocrypt Setup Message") == {}
    other, _ = relay.creds()
    with pytest.raises(smtplib.SMTPDataError) as e:
        send(relay, addr, pw, other, "asm.eml", subject="Autocrypt Setup Message")
    assert e.value.smtp_code == 523


# 9. header rewriting on delivery

def test_delivered_copy_is_scrubbed(relay):
    addr, pw = relay.creds()
    to, to_pw = relay.creds()
    login_imap(relay, to, to_pw).logout()
    msg = fixture("encrypted.eml", addr, to, "Unencrypted subject")
    extra = ("Received: from client (127.0.0.1) by relay\r\nX-Mailer: TestMailer 1.0\r\n"
             "User-Agent: TestAgent\r\nX-Originating-IP: 127.0.0.1\r\n"
             "DKIM-Signature: v=1; d=x; b=abc\r\nAuthentication-Results: x; dkim=pass\r\n")
    with smtp(relay) as s:
        s.login(addr, pw)
        s.sendmail(addr, [to], (extra + msg).encode())
    [raw] = fetch_all(relay, to, to_pw, 1)
    head = raw.split(b"\r\n\r\n", 1)[0].lower()
    assert b"subject: [...]" in head
    assert b"unencrypted subject" not in raw.lower()
    for h in [b"received:", b"x-mailer:", b"user-agent:", b"x-originating-ip:",
              b"dkim-signature:", b"authentication-results:"]:
        assert h not in head, h
    assert b"127.0.0.1" not in raw


# 10. rate limit

def test_rate_limit(relay):
    addr, pw = relay.creds()
    to, to_pw = relay.creds()
    login_imap(relay, to, to_pw).logout()
    msg = fixture("encrypted.eml", addr, to).encode()
    first_failure = None
    with smtp(relay) as s:
        s.login(addr, pw)
        for i in range(30):
            try:
                s.sendmail(addr, [to], msg)
            except smtplib.SMTPRecipientsRefused as e:
                first_failure = (i, list(e.recipients.values())[0])
                break
    assert first_failure is not None, "no rate limit hit in 30 sends"
    i, (code, text) = first_failure
    assert i >= 10, f"failed at message {i}, before the burst of 10"
    assert code == 450 and b"4.7.1: Too much mail from" in text


# 11. size

def test_oversized_message_is_refused(relay):
    addr, pw = relay.creds()
    to, _ = relay.creds()
    body = fixture("encrypted.eml", addr, to)
    big = body + ("X" * 998 + "\r\n") * (31457280 // 1000 + 10)
    with pytest.raises((smtplib.SMTPDataError, smtplib.SMTPSenderRefused)) as e:
        with smtp(relay) as s:
            s.login(addr, pw)
            s.sendmail(addr, [to], big.encode())
    assert e.value.smtp_code == 552


# 12. METADATA (push delivery is a later issue)

def test_metadata_devicetoken_and_server_keys(relay):
    addr, pw = relay.creds()
    c = login_imap(relay, addr, pw)
    c.select("INBOX")
    typ, data = c._simple_command("SETMETADATA", "INBOX", '(/private/devicetoken "1111")')
    assert typ == "OK"
    typ, data = c._simple_command("SETMETADATA", "INBOX", '(/private/devicetoken "2222")')
    assert typ == "OK"
    typ, data = c._simple_command("GETMETADATA", "INBOX", "/private/devicetoken")
    assert typ == "OK"
    typ, data = c._untagged_response(typ, data, "METADATA")
    assert data[0][1] == b"1111 2222", data
    for key in ["/shared/vendor/deltachat/irohrelay", "/shared/vendor/deltachat/maxsmtprecipients",
                "/shared/vendor/deltachat/appversions", "/shared/vendor/deltachat/unixtimestamp"]:
        typ, data = c._simple_command("GETMETADATA", '""', key)
        assert typ == "OK", key
        typ, data = c._untagged_response(typ, data, "METADATA")
        assert data and data[0], (key, data)
        if key.endswith("maxsmtprecipients"):
            assert data[0][1] == b"1000"
        if key.endswith("appversions"):
            json.loads(data[0][1])
        if key.endswith("unixtimestamp"):
            assert abs(int(data[0][1]) - time.time()) < 60, data
    c.logout()


def test_metadata_wire_format_with_bare_lf(relay):
    """Spec 5.1: commands may end with a bare LF; the token comes back as a literal at the
    start of the next line, and the Dovecot wordings are kept."""
    addr, pw = relay.creds()
    login_imap(relay, addr, pw).logout()
    raw = socket.create_connection(("127.0.0.1", relay.imaps_port), timeout=30)
    conn = CTX.wrap_socket(raw)
    f = conn.makefile("rb")
    f.readline()
    conn.sendall(f"a01 LOGIN {addr} {pw}\n".encode())
    assert f.readline().startswith(b"a01 OK")
    conn.sendall(b'a02 SETMETADATA INBOX (/private/devicetoken "1111")\n')
    assert b"Setmetadata completed" in f.readline()
    conn.sendall(b"a03 GETMETADATA INBOX /private/devicetoken\n")
    first = f.readline()
    assert first.startswith(b"* METADATA") and first.rstrip().endswith(b"{4}"), first
    assert f.readline() == b"1111)\r\n"
    assert b"Getmetadata completed" in f.readline()
    conn.close()
