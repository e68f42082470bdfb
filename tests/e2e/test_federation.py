"""Federation on one machine: three relays on the standard ports of their own loopback
addresses, resolving each other through a static zone built from their own `relay dns`
output plus A lines.

* `_alpha.localhost` on 127.0.0.2: every listener.
* `_beta.localhost` on 127.0.0.3 with `smtp_port = 0`: mail reaches it only over HTTPS
  `POST /mxdeliv`, so what arrives there proves that path.
* `_gamma.localhost` on 127.0.0.4 with `https_port = 0`: mail reaches it only over SMTP
  with STARTTLS on port 25 (the fallback).

Delta Chat accounts on alpha and beta complete a Secure-Join and write both ways;
unsigned and badly signed mail gets the 554 replies on port 25 and on /mxdeliv; mail to a
nonexistent user comes back to the sender as a DSN; and 1,000 messages queued for a
relay that is down survive a SIGKILL of the sender and arrive exactly once.

Postfix from Debian's packages is the classic peer, `_postfix.localhost` on 127.0.0.5
(its own config directory, started and stopped here, never the system instance): we
deliver to it over STARTTLS with a DKIM signature that dkimpy (an independent
implementation) verifies, and it delivers to us a message signed by dkimpy, which we
verify; its unsigned mail gets our 554.
"""

import base64
import email
import imaplib
import os
import re
import shutil
import subprocess
import smtplib
import ssl
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import STANDARD_PORTS, Relay, fixture

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="the standard ports on 127.0.0.x need root")

CTX = ssl.create_default_context()
CTX.check_hostname = False
CTX.verify_mode = ssl.CERT_NONE

RELAYS = {
    "alpha": ("_alpha.localhost", "127.0.0.2", STANDARD_PORTS),
    "beta": ("_beta.localhost", "127.0.0.3", (0,) + STANDARD_PORTS[1:]),
    "gamma": ("_gamma.localhost", "127.0.0.4", STANDARD_PORTS[:5] + (0,)),
}
EXTRA_INI = (
    "outbound_retry_min = 1\n"
    "outbound_retry_max = 2\n"
    "max_user_send_per_minute = 100000\n"
)


@pytest.fixture(scope="module")
def net():
    tmp = Path(tempfile.mkdtemp(prefix="chatmail-federation-"))
    # Postfix's daemons run as the postfix user and must reach their directories below.
    tmp.chmod(0o755)
    zone = tmp / "zone"
    relays = {
        name: Relay(tmp / name, extra_ini=EXTRA_INI + f"resolver = static:{zone}\n",
                    domain=domain, address=address, ports=ports, start=False)
        for name, (domain, address, ports) in RELAYS.items()
    }
    text = "".join(r.dns() for r in relays.values())
    text += "".join(f"{r.domain}. 3600 IN A {r.address}\n" for r in relays.values())
    text += postfix_zone(tmp)
    zone.write_text(text)
    try:
        for r in relays.values():
            r.start()
        yield relays
    finally:
        for r in relays.values():
            r.close()
        if os.environ.get("KEEP_E2E_DIR"):
            print(f"federation data kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def account(relay):
    """New credentials, the account created by its first IMAP login."""
    addr, password = relay.creds()
    with imaplib.IMAP4_SSL(relay.address, relay.imaps_port, ssl_context=CTX) as m:
        m.login(addr, password)
    return addr, password


def submit(relay, addr, password, to, text):
    with smtplib.SMTP_SSL(relay.address, relay.submissions_port, context=CTX, timeout=30) as s:
        s.login(addr, password)
        s.sendmail(addr, to, text.encode())


def inbox(relay, addr, password):
    """The messages in the INBOX, as bytes."""
    with imaplib.IMAP4_SSL(relay.address, relay.imaps_port, ssl_context=CTX) as m:
        m.login(addr, password)
        m.select("INBOX")
        _, data = m.uid("SEARCH", None, "ALL")
        out = []
        for uid in data[0].split():
            _, parts = m.uid("FETCH", uid, "(BODY.PEEK[])")
            out.append(parts[0][1])
        return out


def wait_for(what, check, timeout=60):
    deadline = time.time() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.time() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.2)


def encrypted(from_addr, to_addr):
    return fixture("encrypted.eml", from_addr, to_addr)


@pytest.mark.parametrize("sender,receiver", [
    ("alpha", "beta"), ("beta", "alpha"), ("alpha", "gamma"), ("gamma", "alpha")])
def test_mail_crosses_relays(net, sender, receiver):
    """alpha→beta can only be /mxdeliv (beta has no port 25); alpha→gamma only SMTP with
    STARTTLS (gamma has no HTTPS); the replies go back the same ways."""
    s, r = net[sender], net[receiver]
    s_addr, s_pw = account(s)
    r_addr, r_pw = account(r)
    submit(s, s_addr, s_pw, [r_addr], encrypted(s_addr, r_addr))
    got = wait_for(f"{sender}→{receiver}", lambda: inbox(r, r_addr, r_pw))
    msg = email.message_from_bytes(got[0])
    assert msg["From"] == s_addr
    assert b"-----BEGIN PGP MESSAGE-----" in got[0]
    # The local copy is scrubbed of the transport's traces (spec 4.3).
    assert msg["DKIM-Signature"] is None and msg["Received"] is None


def test_deltachat_secure_join_across_relays(net, dc):
    alpha, beta = net["alpha"], net["beta"]
    accounts = []
    for relay in (alpha, beta):
        addr, password = relay.creds()
        ac = dc.add_account()
        ac.add_or_update_transport({
            "addr": addr,
            "password": password,
            "imapServer": relay.address,
            "imapPort": relay.imaps_port,
            "imapSecurity": "ssl",
            "smtpServer": relay.address,
            "smtpPort": relay.submissions_port,
            "smtpSecurity": "ssl",
            "certificateChecks": "acceptInvalidCertificates",
        })
        ac.bring_online()
        accounts.append(ac)
    ac1, ac2 = accounts
    ac2.secure_join(ac1.get_qr_code())
    ac1.wait_for_securejoin_inviter_success()
    ac2.wait_for_securejoin_joiner_success()
    chat12, chat21 = ac1.create_chat(ac2), ac2.create_chat(ac1)
    for i in range(3):
        chat12.send_text(f"ping {i}")
        chat21.send_text(f"pong {i}")
        for acc, text in ((ac2, f"ping {i}"), (ac1, f"pong {i}")):
            deadline = time.time() + 60
            while True:
                msg = acc.wait_for_incoming_msg().get_snapshot()
                if msg.text == text:
                    assert msg.show_padlock, f"not encrypted: {text}"
                    break
                assert time.time() < deadline, f"{text} did not arrive"


FORGED_SIGNATURE = (
    "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/simple; d=_alpha.localhost;\r\n"
    " s=opendkim; h=from:to:subject; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\r\n"
    " b=dGhpcyBpcyBub3QgYSBzaWduYXR1cmU=\r\n"
)


@pytest.mark.parametrize("signature,reply", [
    ("", "554 5.7.1 No DKIM signature found"),
    (FORGED_SIGNATURE, "554 5.7.1 No valid DKIM signature found"),
])
def test_unsigned_and_badly_signed_mail_is_refused(net, signature, reply):
    gamma, beta = net["gamma"], net["beta"]
    g_addr, _ = account(gamma)
    b_addr, _ = account(beta)
    # Port 25 of gamma, as another server would come.
    text = signature + encrypted("someone@_alpha.localhost", g_addr)
    with smtplib.SMTP(gamma.address, 25, timeout=30) as s:
        s.starttls(context=CTX)
        with pytest.raises(smtplib.SMTPDataError) as e:
            s.sendmail("someone@_alpha.localhost", [g_addr], text.encode())
    assert f"{e.value.smtp_code} {e.value.smtp_error.decode()}" == reply
    # /mxdeliv of beta.
    text = signature + encrypted("someone@_alpha.localhost", b_addr)
    req = urllib.request.Request(
        f"https://{beta.address}/mxdeliv", data=text.encode(), method="POST",
        headers={"X-MAIL-FROM": "someone@_alpha.localhost", "X-MAIL-TO": b_addr})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, context=CTX, timeout=30)
    assert e.value.code == 400
    assert e.value.read().decode().strip() == reply


def test_mxdeliv_answers_only_post(net):
    beta = net["beta"]
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"https://{beta.address}/mxdeliv", context=CTX, timeout=30)
    assert e.value.code == 405


@pytest.mark.parametrize("receiver", ["beta", "gamma"])
def test_mail_to_a_nonexistent_user_comes_back_as_a_dsn(net, receiver):
    alpha, r = net["alpha"], net[receiver]
    addr, password = account(alpha)
    nobody = f"nobody{os.getpid() % 1000:03d}@{r.domain}"
    submit(alpha, addr, password, [nobody], encrypted(addr, nobody))
    got = wait_for("the DSN", lambda: inbox(alpha, addr, password))
    dsn = email.message_from_bytes(got[0])
    assert dsn["From"].startswith("Mail Delivery System <MAILER-DAEMON@_alpha.localhost>")
    assert dsn.get_content_type() == "multipart/report"
    text = got[0].decode(errors="replace")
    assert f"Final-Recipient: rfc822; {nobody}" in text
    assert "550 5.1.1" in text


def test_queued_mail_survives_sigkill_and_arrives_exactly_once(net):
    alpha, gamma = net["alpha"], net["gamma"]
    a_addr, a_pw = account(alpha)
    g_addr, g_pw = account(gamma)
    gamma.stop()
    count = 1000
    with smtplib.SMTP_SSL(alpha.address, alpha.submissions_port, context=CTX, timeout=60) as s:
        s.login(a_addr, a_pw)
        for i in range(count):
            text = re.sub(r"Message-ID: <[^>]*>", f"Message-ID: <crash-{i}@_alpha.localhost>",
                          encrypted(a_addr, g_addr), count=1)
            s.sendmail(a_addr, [g_addr], text.encode())
    queue = alpha.data_dir / "queue"
    assert len(list(queue.glob("*.json"))) == count
    alpha.kill()
    alpha.start()
    gamma.start()
    maildir = gamma.mailboxes_dir / g_addr

    def delivered():
        files = [p for sub in ("new", "cur") for p in (maildir / sub).glob("*")]
        return files if len(files) >= count and not list(queue.glob("*.json")) else None

    files = wait_for("1000 messages at gamma", delivered, timeout=300)
    ids = [email.message_from_bytes(p.read_bytes())["Message-ID"] for p in files]
    assert len(ids) == count, f"{len(ids)} copies for {count} messages"
    assert len(set(ids)) == count, "a message arrived twice"


# --- Postfix as the classic peer -------------------------------------------------------

POSTFIX_DOMAIN = "_postfix.localhost"
POSTFIX_ADDRESS = "127.0.0.5"
POSTFIX_SELECTOR = "pf"

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {d}/queue
data_directory = {d}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = {domain}
mydomain = {domain}
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
maillog_file = {d}/maillog
maillog_file_prefixes = {d}
alias_maps =
alias_database =
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
virtual_mailbox_domains = {domain}
virtual_mailbox_base = {d}/vmail
virtual_mailbox_maps = texthash:{d}/vmailbox
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
transport_maps = texthash:{d}/transport
smtpd_tls_cert_file = {d}/cert.pem
smtpd_tls_key_file = {d}/key.pem
smtpd_tls_security_level = may
smtpd_tls_loglevel = 1
smtp_tls_security_level = encrypt
smtp_tls_loglevel = 1
smtp_helo_name = {domain}
smtp_dns_support_level = disabled
maximal_backoff_time = 2s
minimal_backoff_time = 1s
queue_run_delay = 1s
"""

MASTER_CF = """\
{address}:smtp inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
virtual   unix  - n n - - virtual
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
tlsmgr    unix  - - n 1000? 1 tlsmgr
"""


def postfix_zone(tmp):
    """The DKIM key dkimpy signs Postfix's mail with, and where Postfix is; the key is
    made here because the relays load the zone at start."""
    d = tmp / "postfix"
    d.mkdir(parents=True, exist_ok=True)
    subprocess.run(["openssl", "genrsa", "-out", str(d / "dkim.pem"), "2048"],
                   check=True, capture_output=True)
    der = subprocess.run(["openssl", "rsa", "-in", str(d / "dkim.pem"), "-pubout",
                          "-outform", "DER"], check=True, capture_output=True).stdout
    p = base64.b64encode(der).decode()
    value = f"v=DKIM1; k=rsa; p={p}"
    strings = " ".join(f'"{value[i:i + 200]}"' for i in range(0, len(value), 200))
    return (f"{POSTFIX_SELECTOR}._domainkey.{POSTFIX_DOMAIN}. 3600 IN TXT {strings}\n"
            f"{POSTFIX_DOMAIN}. 3600 IN A {POSTFIX_ADDRESS}\n"
            f"{POSTFIX_DOMAIN}. 3600 IN MX 10 {POSTFIX_DOMAIN}.\n")


class Postfix:
    def __init__(self, d: Path):
        self.d = d
        (d / "queue").mkdir(exist_ok=True)
        (d / "data").mkdir(exist_ok=True)
        shutil.chown(d / "data", "postfix")
        vmail = d / "vmail"
        vmail.mkdir(exist_ok=True)
        shutil.chown(vmail, 65534, 65534)
        (d / "vmailbox").write_text(f"dave@{POSTFIX_DOMAIN} dave/\n")
        (d / "transport").write_text("".join(
            f"{domain} smtp:[{address}]:25\n" for domain, address, _ in RELAYS.values()))
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", f"/CN={POSTFIX_DOMAIN}", "-keyout", str(d / "key.pem"),
                        "-out", str(d / "cert.pem")], check=True, capture_output=True)
        (d / "main.cf").write_text(MAIN_CF.format(d=d, domain=POSTFIX_DOMAIN))
        (d / "master.cf").write_text(MASTER_CF.format(address=POSTFIX_ADDRESS))
        started = subprocess.run(["postfix", "-c", str(d), "start"], capture_output=True, text=True)
        assert started.returncode == 0, (started.stderr, self.maillog()[-3000:])
        wait_for("postfix listening", lambda: self.pid() is not None, timeout=30)

    def pid(self):
        try:
            return int((self.d / "queue/pid/master.pid").read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None

    def maillog(self):
        try:
            return (self.d / "maillog").read_text()
        except FileNotFoundError:
            return ""

    def stop(self):
        pid = self.pid()
        if pid is not None:
            os.kill(pid, 15)
            deadline = time.time() + 20
            while time.time() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)


@pytest.fixture(scope="module")
def postfix(net):
    if shutil.which("postfix") is None:
        pytest.skip("postfix is not installed (Debian package postfix)")
    d = net["alpha"].tmp.parent / "postfix"
    p = Postfix(d)
    yield p
    p.stop()


def dkim_sign(message: bytes, d: Path) -> bytes:
    import dkim
    key = (d / "dkim.pem").read_bytes()
    signature = dkim.sign(message, POSTFIX_SELECTOR.encode(), POSTFIX_DOMAIN.encode(), key,
                          include_headers=[b"from", b"to", b"subject", b"date",
                                           b"message-id", b"content-type", b"mime-version"])
    return signature + message


def test_we_deliver_to_postfix_over_starttls_signed(net, postfix):
    import dkim
    alpha = net["alpha"]
    addr, password = account(alpha)
    dave = f"dave@{POSTFIX_DOMAIN}"
    submit(alpha, addr, password, [dave], encrypted(addr, dave))
    new = postfix.d / "vmail" / "dave" / "new"
    files = wait_for("the message at Postfix", lambda: list(new.glob("*")) if new.exists() else None)
    raw = files[0].read_bytes()
    assert b"-----BEGIN PGP MESSAGE-----" in raw
    log = postfix.maillog()
    assert "TLS connection established from" in log, log[-2000:]
    # Our signature, checked by an independent implementation against our published key.
    zone = (alpha.tmp.parent / "zone").read_text()

    def dnsfunc(name, timeout=5):
        want = name.decode().rstrip(".") + "."
        for line in zone.splitlines():
            parts = line.split(None, 4)
            if len(parts) == 5 and parts[0] == want and parts[3] == "TXT":
                return "".join(re.findall(r'"([^"]*)"', parts[4])).encode()
        return None

    # Postfix prepends its Received field; the signature covers what we sent.
    assert dkim.verify(raw, dnsfunc=dnsfunc), "our DKIM signature does not verify"
    sig = email.message_from_bytes(raw)["DKIM-Signature"]
    assert "d=_alpha.localhost" in sig.replace(" ", "").replace("\n", ""), sig


def test_postfix_delivers_to_us_and_we_verify_its_signature(net, postfix):
    alpha = net["alpha"]
    addr, password = account(alpha)
    carol = f"carol@{POSTFIX_DOMAIN}"
    signed = dkim_sign(encrypted(carol, addr).encode(), postfix.d)
    with smtplib.SMTP(POSTFIX_ADDRESS, 25, timeout=30) as s:
        s.sendmail(carol, [addr], signed)
    got = wait_for("the message from Postfix", lambda: inbox(alpha, addr, password))
    assert email.message_from_bytes(got[0])["From"] == carol
    # Unsigned, the same message is refused in the dialogue; Postfix logs our answer.
    with smtplib.SMTP(POSTFIX_ADDRESS, 25, timeout=30) as s:
        s.sendmail(carol, [addr], encrypted(carol, addr).encode())
    wait_for("Postfix to log our refusal",
             lambda: "554 5.7.1 No DKIM signature found" in postfix.maillog())
    assert len(inbox(alpha, addr, password)) == 1
