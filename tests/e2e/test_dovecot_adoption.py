"""Mail adopted from Dovecot is served exactly as Dovecot served it (issue 13).

Debian's Dovecot (dovecot-core, dovecot-imapd, dovecot-lmtpd), configured here from its
own file in a temporary directory, builds a mailboxes directory in the reference
relay's layout (spec 2.1: `mail_location = maildir:<mailboxes_dir>/<address>`,
`zlib_save = gz`): mail delivered over LMTP and appended over IMAP, flags and keywords
set, some expunged so that UIDs have gaps, a folder. Everything Dovecot serves is
recorded (UIDVALIDITY, UIDNEXT, UIDs, FLAGS, RFC822.SIZE, BODY[], BODY[HEADER],
BODY[TEXT], partial fetches, SEARCH LARGER/SMALLER). Dovecot is stopped, the relay
started on the same directory, and it must serve the same. A flag changed over the
relay must keep Dovecot's keyword letters in the file name, and Dovecot, started
again on the directory, must read the flags and keywords the relay shows.

Dovecot needs root (it drops to the mail user); the test is skipped without root or
without Dovecot.
"""

import grp
import gzip
import imaplib
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import Relay, free_ports

# Debian puts them in /usr/sbin and /usr/bin; a non-login root shell may lack sbin.
DOVECOT = shutil.which("dovecot") or shutil.which("dovecot", path="/usr/sbin:/sbin")
DOVEADM = shutil.which("doveadm") or shutil.which("doveadm", path="/usr/bin:/usr/sbin")
IMAPD = Path("/usr/lib/dovecot/imap")
LMTPD = Path("/usr/lib/dovecot/lmtp")

pytestmark = [
    pytest.mark.skipif(
        DOVECOT is None or DOVEADM is None or not IMAPD.exists() or not LMTPD.exists(),
        reason="Dovecot is not installed (Debian packages dovecot-core dovecot-imapd "
        "dovecot-lmtpd)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="Dovecot needs root to start"),
]

# The mail user Dovecot drops to: present on every Debian system.
MAIL_USER, MAIL_GROUP = "nobody", "nogroup"

CTX = ssl.create_default_context()
CTX.check_hostname = False
CTX.verify_mode = ssl.CERT_NONE

DEADLINE = 30


def dovecot_conf(d: Path, mail: Path, passwd: Path, imap_port: int, lmtp_port: int) -> str:
    return f"""\
# Written by tests/e2e/test_dovecot_adoption.py: the reference relay's storage.
instance_name = chatmail-adoption-test
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
protocols = imap lmtp
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{mail}/%u
mail_uid = {MAIL_USER}
mail_gid = {MAIL_GROUP}
first_valid_uid = 1
first_valid_gid = 1
mail_plugins = zlib
plugin {{
  zlib_save = gz
}}
postmaster_address = postmaster@_chat.localhost
default_login_user = dovenull
default_internal_user = dovecot
passdb {{
  driver = passwd-file
  args = scheme=SHA512-CRYPT {passwd}
}}
userdb {{
  driver = static
  args = uid={MAIL_USER} gid={MAIL_GROUP} home={mail}/%u
}}
namespace inbox {{
  inbox = yes
  separator = .
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp_port}
  }}
}}
"""


def port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


class Dovecot:
    """One Dovecot master started from `conf`, stopped by its PID."""

    def __init__(self, d: Path, conf: Path, imap_port: int, lmtp_port: int):
        self.d, self.conf = d, conf
        self.imap_port, self.lmtp_port = imap_port, lmtp_port
        self.pid = None

    def start(self):
        # The master forks into the background: its output goes to a file, not a pipe
        # that it would keep open.
        with open(self.d / "dovecot.out", "ab") as out:
            code = subprocess.run([DOVECOT, "-c", str(self.conf)], stdout=out,
                                  stderr=subprocess.STDOUT, timeout=DEADLINE).returncode
        assert code == 0, (self.d / "dovecot.out").read_text() + self.log()
        pid_file = self.d / "run" / "master.pid"
        deadline = time.time() + DEADLINE
        while time.time() < deadline:
            if self.pid is None and pid_file.exists():
                self.pid = int(pid_file.read_text().split()[0])
            if self.pid is not None and port_open(self.imap_port) and port_open(self.lmtp_port):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("Dovecot did not come up:\n" + self.log())

    def stop(self):
        if self.pid is None:
            return
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.time() + DEADLINE
        while time.time() < deadline:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            os.kill(self.pid, signal.SIGKILL)
        # The children (imap, lmtp) exit with the master; the listeners must be free.
        while time.time() < deadline and port_open(self.imap_port):
            time.sleep(0.05)
        self.pid = None

    def log(self):
        path = self.d / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def imap(self, addr, password):
        c = imaplib.IMAP4("127.0.0.1", self.imap_port, timeout=DEADLINE)
        c.login(addr, password)
        return c


def lmtp_deliver(port, rcpt, message: bytes):
    """Delivers `message` as it is (bare LFs included) over LMTP, dot-stuffed."""
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as s:
        f = s.makefile("rb")

        def reply():
            while True:
                line = f.readline()
                assert line, "LMTP connection closed"
                if line[3:4] == b" ":
                    return line

        assert reply().startswith(b"220")
        for command, code in [(b"LHLO tester", b"250"), (b"MAIL FROM:<sender@example.org>", b"250"),
                              (f"RCPT TO:<{rcpt}>".encode(), b"250"), (b"DATA", b"354")]:
            s.sendall(command + b"\r\n")
            line = reply()
            assert line.startswith(code), (command, line)
        stuffed = re.sub(rb"(?m)^\.", b"..", message)
        if not stuffed.endswith(b"\n"):
            stuffed += b"\r\n"
        s.sendall(stuffed + b".\r\n")
        line = reply()
        assert line.startswith(b"250"), line
        s.sendall(b"QUIT\r\n")


def messages(addr):
    """(how, bytes) of varied messages: LMTP deliveries and IMAP APPENDs."""
    date = "Mon, 07 Dec 2026 10:00:00 +0000"

    def head(n, extra=""):
        return (f"From: sender@example.org\r\nTo: {addr}\r\nDate: {date}\r\n"
                f"Message-ID: <m{n}@example.org>\r\nSubject: message {n}\r\n{extra}")

    attachment = "".join(
        f"{(i * 7919) % 10**8:08d}" * 9 + "\r\n" for i in range(600))  # 73-char lines
    out = []
    for n in range(8):
        out.append(("lmtp", (head(n) + "\r\n" + f"plain CRLF body {n}\r\n" * (n + 1)).encode()))
    # LF only, as a sender with bare LFs would hand it over.
    for n in range(8, 12):
        out.append(("lmtp", (head(n) + "\r\n" + f"LF-only line {n}\r\n" * (n * 3))
                    .replace("\r\n", "\n").encode()))
    out.append(("lmtp", (head(12) + "\r\n" + "x" * 5000 + "\r\nafter the long line\r\n").encode()))
    out.append(("lmtp", (head(13, "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; "
                                  "boundary=\"b1\"\r\n") +
                         "\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n"
                         "Content-Transfer-Encoding: 8bit\r\n\r\nGrüße, see attached\r\n"
                         "--b1\r\nContent-Type: application/octet-stream\r\n"
                         "Content-Disposition: attachment; filename=\"data.bin\"\r\n"
                         "Content-Transfer-Encoding: base64\r\n\r\n" + attachment +
                         "--b1--\r\n").encode()))
    out.append(("lmtp", (head(14) + "\r\n" + "a lone CR\rin the middle\r\n.a dot line\r\n..\r\n")
                .encode()))
    out.append(("lmtp", (head(15) + "\r\n").encode()))  # empty body
    out.append(("lmtp", (head(16) + "\r\nmixed\r\nline\nends\r\n\nhere\n").encode()))
    for n in range(17, 22):
        out.append(("lmtp", (head(n) + "\r\n" + f"body {n}\r\n" * (n * 11)).encode()))
    # Over IMAP: a last line without a line end, and LF-only with a lone CR.
    out.append(("append", (head(22) + "\r\nno final newline").encode()))
    out.append(("append", (head(23) + "\r\nLF only\nlone CR\rthere\nlast").replace("\r\n", "\n")
                .encode()))
    out.append(("lmtp", (head(24) + "\r\nthe last one, expunged\r\n").encode()))
    return out


def literal(data):
    """The value of the one item of a one-message, one-item FETCH answer."""
    for part in data:
        if isinstance(part, tuple):
            return part[1]
    text = b"".join(p for p in data if isinstance(p, bytes))
    m = re.search(rb'(?:BODY\[[^\]]*\](?:<\d+>)?) (?:"((?:[^"\\]|\\.)*)"|NIL)', text)
    assert m, text
    return (m.group(1) or b"").replace(b'\\"', b'"').replace(b"\\\\", b"\\")


def flag_set(text: bytes):
    m = re.search(rb"FLAGS \(([^)]*)\)", text)
    assert m, text
    # \Recent is per session (and gone in IMAP4rev2): not a property of the message.
    return sorted(f for f in m.group(1).decode().split() if f != "\\Recent")


def snapshot(c, mailbox, thresholds=None):
    """Everything a server serves of `mailbox` that a client caches or compares; SEARCH
    LARGER and SMALLER around the sizes served, or around `thresholds`."""
    typ, data = c.status(mailbox, "(UIDVALIDITY UIDNEXT MESSAGES)")
    assert typ == "OK", data
    status = dict(re.findall(rb"(UIDVALIDITY|UIDNEXT|MESSAGES) (\d+)", data[0]))
    typ, _ = c.select(mailbox, readonly=True)
    assert typ == "OK"
    typ, data = c.uid("FETCH", "1:*", "(UID FLAGS RFC822.SIZE)")
    assert typ == "OK", data
    meta = {}
    for line in data:
        line = line if isinstance(line, bytes) else line[0]
        uid = int(re.search(rb"UID (\d+)", line).group(1))
        size = int(re.search(rb"RFC822\.SIZE (\d+)", line).group(1))
        meta[uid] = {"flags": flag_set(line), "size": size}
    for uid, m in meta.items():
        size = m["size"]
        for item in ["BODY.PEEK[]", "BODY.PEEK[HEADER]", "BODY.PEEK[TEXT]", "BODY.PEEK[]<0.1>",
                     "BODY.PEEK[]<0.100>", "BODY.PEEK[]<17.301>",
                     f"BODY.PEEK[]<{max(size - 7, 0)}.20>", f"BODY.PEEK[]<{size + 3}.5>"]:
            typ, data = c.uid("FETCH", str(uid), f"({item})")
            assert typ == "OK", (uid, item, data)
            m[item] = literal(data)
    sizes = sorted(m["size"] for m in meta.values())
    if thresholds is None:
        thresholds = {sizes[0], sizes[len(sizes) // 2], sizes[-1], sizes[len(sizes) // 2] + 1}
    searches = {}
    for n in thresholds:
        for key in ("LARGER", "SMALLER"):
            typ, data = c.uid("SEARCH", key, str(n))
            assert typ == "OK", data
            searches[f"{key} {n}"] = sorted(int(u) for u in data[0].split())
    c.close()
    return {"status": status, "messages": meta, "search": searches}


def differences(expected, got):
    """Readable differences between two snapshots (empty: the same)."""
    out = []
    if expected["status"] != got["status"]:
        out.append(f"status {expected['status']} != {got['status']}")
    if expected["search"] != got["search"]:
        out.append(f"search {expected['search']} != {got['search']}")
    if sorted(expected["messages"]) != sorted(got["messages"]):
        out.append(f"UIDs {sorted(expected['messages'])} != {sorted(got['messages'])}")
    for uid, m in expected["messages"].items():
        other = got["messages"].get(uid, {})
        for key, value in m.items():
            if other.get(key) != value:
                shown = value if not isinstance(value, bytes) else value[:60]
                out.append(f"UID {uid} {key}: {shown!r} != {str(other.get(key))[:80]}")
    return out


def cur_names(maildir: Path):
    """Base name -> info of the files in cur/."""
    names = {}
    for p in (maildir / "cur").iterdir():
        base, _, info = p.name.partition(":2,")
        names[base] = info
    return names


@pytest.fixture
def workdir():
    # Dovecot's processes run as the mail user: every directory above must be
    # searchable (pytest's tmp_path is not).
    d = Path(tempfile.mkdtemp(prefix="chatmail-dovecot-"))
    d.chmod(0o755)
    yield d
    if os.environ.get("KEEP_E2E_DIR"):
        print(f"kept {d}")
    else:
        shutil.rmtree(d, ignore_errors=True)


def test_mail_adopted_from_dovecot_is_served_as_dovecot_served_it(workdir):
    relay = Relay(workdir / "relay", env={"CHATMAIL_SKIP_DKIM": "1"}, start=False)
    (workdir / "relay").chmod(0o755)
    mail = relay.mailboxes_dir
    addr, password = relay.creds("dove")
    account = mail / addr
    account.mkdir(parents=True)
    shutil.chown(mail, MAIL_USER, MAIL_GROUP)
    shutil.chown(account, MAIL_USER, MAIL_GROUP)
    # The same SHA512-CRYPT hash for Dovecot's passdb and the reference layout's
    # `password` file (spec 2.1), made by Dovecot itself.
    out = subprocess.run([DOVEADM, "pw", "-s", "SHA512-CRYPT", "-p", password],
                         capture_output=True, text=True, timeout=DEADLINE)
    assert out.returncode == 0, out.stderr
    hashed = out.stdout.strip()
    assert hashed.startswith("{SHA512-CRYPT}$6$"), hashed
    (account / "password").write_text(hashed)
    d = workdir / "dovecot"
    d.mkdir()
    passwd = d / "passwd"
    passwd.write_text(f"{addr}:{hashed}\n")
    imap_port, lmtp_port = free_ports(2)
    conf = d / "dovecot.conf"
    conf.write_text(dovecot_conf(d, mail, passwd, imap_port, lmtp_port))
    dovecot = Dovecot(d, conf, imap_port, lmtp_port)
    try:
        dovecot.start()
        c = dovecot.imap(addr, password)
        for how, message in messages(addr):
            if how == "lmtp":
                lmtp_deliver(lmtp_port, addr, message)
            else:
                typ, data = c.append("INBOX", None, None, message)
                assert typ == "OK", data
        typ, _ = c.select("INBOX")
        assert typ == "OK"
        # Flags and keywords, and expunges that leave gaps (the last UID included).
        for uids, flags in [("1:4", r"(\Seen)"), ("2,6", r"(\Flagged)"),
                            ("3,9", r"(\Answered $Forwarded)"), ("4,10,13", "($label1)"),
                            ("10,14", r"($label2 $MDNSent \Seen)"), ("11", r"(\Deleted)"),
                            ("5,7,16,25", r"(\Deleted)")]:
            typ, data = c.uid("STORE", uids, "+FLAGS", flags)
            assert typ == "OK", data
        typ, data = c.uid("EXPUNGE", "5,7,16,25")
        assert typ == "OK", data
        # Delta Chat's folder: copies get the folder's own UIDs.
        assert c.create("DeltaChat")[0] == "OK"
        assert c.uid("COPY", "9,10,13,14,20", "DeltaChat")[0] == "OK"
        c.select("DeltaChat")
        assert c.uid("STORE", "2", "+FLAGS", r"(\Seen $label3)")[0] == "OK"
        assert c.uid("STORE", "4", "+FLAGS", r"(\Deleted)")[0] == "OK"
        assert c.uid("EXPUNGE", "4")[0] == "OK"
        c.close()
        served = {box: snapshot(c, box) for box in ("INBOX", "DeltaChat")}
        c.logout()
    finally:
        dovecot.stop()
    inbox = served["INBOX"]["messages"]
    assert sorted(inbox) == [1, 2, 3, 4, 6, 8, 9, 10, 11, 12, 13, 14, 15, 17, 18, 19, 20, 21, 22,
                             23, 24], sorted(inbox)
    assert inbox[3]["flags"] == ["$Forwarded", "\\Answered", "\\Seen"], inbox[3]
    assert inbox[11]["flags"] == ["\\Deleted"]
    assert b"\r\n" in inbox[8]["BODY.PEEK[]"] and b"\r" in inbox[15]["BODY.PEEK[]"]
    # Dovecot stored them gzip-compressed with LF line ends (`,S=` the LF size, `,W=`
    # the CRLF size it serves), as the reference relay: what the relay must convert.
    files = sorted((account / "cur").iterdir())
    assert len(files) == len(inbox)
    for path in files:
        raw = path.read_bytes()
        assert raw[:2] == b"\x1f\x8b", path.name
        plain = gzip.decompress(raw)
        assert b"\r\n" not in plain and f",S={len(plain)}," in path.name, path.name
        crlf_size = len(plain) + plain.count(b"\n")
        assert f",W={crlf_size}:" in path.name, path.name
    keywords_before = (account / "dovecot-keywords").read_text()
    names_before = cur_names(account)

    relay.start()
    try:
        c = imaplib.IMAP4_SSL("127.0.0.1", relay.imaps_port, ssl_context=CTX, timeout=DEADLINE)
        c.login(addr, password)
        for box in ("INBOX", "DeltaChat"):
            thresholds = {int(key.split()[1]) for key in served[box]["search"]}
            diff = differences(served[box], snapshot(c, box, thresholds))
            assert not diff, f"{box}: {len(diff)} differences:\n" + "\n".join(diff[:40])
        # A flag change over the relay renames Dovecot's file: its keyword letters stay
        # (UID 3 has $Forwarded), a keyword Dovecot did not know gets the next letter.
        c.select("INBOX")
        assert c.uid("STORE", "3", "+FLAGS", r"(\Flagged)")[0] == "OK"
        assert c.uid("STORE", "10", "-FLAGS", "($label1)")[0] == "OK"
        assert c.uid("STORE", "12", "+FLAGS", "($relaykeyword)")[0] == "OK"
        typ, data = c.uid("FETCH", "1:*", "(UID FLAGS)")
        assert typ == "OK"
        relay_flags = {int(re.search(rb"UID (\d+)", line).group(1)): flag_set(line)
                       for line in data}
        c.logout()
    finally:
        relay.close()
    names_after = cur_names(account)
    assert set(names_after) == set(names_before), "the same files, renamed only"
    letter = {keyword: chr(ord("a") + int(index)) for index, keyword in
              (line.split(" ", 1) for line in keywords_before.splitlines())}
    b3 = next(b for b, info in names_before.items() if letter["$Forwarded"] in info
              and "R" in info and "S" in info)
    assert names_after[b3] == "".join(sorted(names_before[b3] + "F")), (names_before[b3],
                                                                        names_after[b3])
    keywords_after = (account / "dovecot-keywords").read_text()
    assert keywords_after.startswith(keywords_before), "Dovecot's lines stay as they were"
    assert keywords_after.endswith(" $relaykeyword\n"), keywords_after
    new_letter = chr(ord("a") + int(keywords_after.splitlines()[-1].split()[0]))
    assert new_letter not in letter.values()
    changed = []
    for base, info in names_before.items():
        lowercase = {ch for ch in info if ch.islower()}
        after = {ch for ch in names_after[base] if ch.islower()}
        if lowercase != after:
            changed.append(base)
            assert (after == lowercase - {letter["$label1"]}
                    or after == lowercase | {new_letter}), (info, names_after[base])
    # Only the two messages whose keywords changed.
    assert len(changed) == 2, changed
    st = os.stat(account / "dovecot-keywords")
    assert (st.st_uid, st.st_gid) == (pwd.getpwnam(MAIL_USER).pw_uid,
                                      grp.getgrnam(MAIL_GROUP).gr_gid)

    # Dovecot again on the directory: the same UIDs and flags as the relay showed.
    try:
        dovecot.start()
        c = dovecot.imap(addr, password)
        c.select("INBOX", readonly=True)
        typ, data = c.uid("FETCH", "1:*", "(UID FLAGS)")
        assert typ == "OK"
        dovecot_flags = {int(re.search(rb"UID (\d+)", line).group(1)): flag_set(line)
                         for line in data}
        c.logout()
    finally:
        dovecot.stop()
    assert dovecot_flags == relay_flags
    assert "$relaykeyword" in dovecot_flags[12] and "\\Flagged" in dovecot_flags[3]
    assert "Error" not in dovecot.log(), dovecot.log()
