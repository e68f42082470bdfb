"""Push notifications through a SIGKILL (spec 5.4): the notification endpoint first
answers 500, so the notification stays pending in
`<mailboxes_dir>/pending_notifications/`; the relay is killed without a chance to clean
up, the endpoint recovers, the relay restarts: the notification is sent exactly once
and its file is gone."""

import http.server
import imaplib
import smtplib
import ssl
import tempfile
import threading
import time
from pathlib import Path

from conftest import Relay, fixture

CTX = ssl.create_default_context()
CTX.check_hostname = False
CTX.verify_mode = ssl.CERT_NONE


class Endpoint:
    """A fake notification service on 127.0.0.1 recording every POST body."""

    def __init__(self):
        self.status = 500
        self.bodies = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                outer.bodies.append(self.rfile.read(length).decode())
                self.send_response(outer.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()


def wait_for(what, check, timeout=30):
    deadline = time.time() + timeout
    while not check():
        assert time.time() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.05)


def test_a_pending_notification_survives_sigkill_and_is_sent_once():
    endpoint = Endpoint()
    tmp = Path(tempfile.mkdtemp(prefix="chatmail-push-"))
    relay = Relay(tmp, start=False)
    # The conftest writes notify_url = http://127.0.0.1:9/notify; point it here.
    ini = relay.ini.read_text().replace("http://127.0.0.1:9/notify",
                                        f"http://127.0.0.1:{endpoint.port}/notify")
    relay.ini.write_text(ini)
    relay.start()
    try:
        alice, alice_pw = relay.creds()
        bob, bob_pw = relay.creds()
        with imaplib.IMAP4_SSL("127.0.0.1", relay.imaps_port, ssl_context=CTX) as m:
            m.login(bob, bob_pw)
            imaplib.Commands["SETMETADATA"] = ("AUTH", "SELECTED")
            typ, _ = m._simple_command("SETMETADATA", "INBOX", '(/private/devicetoken "tok-sigkill")')
            assert typ == "OK"
        with smtplib.SMTP_SSL("127.0.0.1", relay.submissions_port, context=CTX, timeout=30) as s:
            s.login(alice, alice_pw)
            s.sendmail(alice, [bob], fixture("encrypted.eml", alice, bob).encode())
        pending = relay.mailboxes_dir / "pending_notifications"
        wait_for("the first POST", lambda: endpoint.bodies == ["tok-sigkill"])
        # The file itself, not its `.tmp` (a restart deletes those: never acknowledged).
        def pending_files():
            if not pending.is_dir():
                return []
            return [p for p in pending.iterdir() if not p.name.endswith(".tmp")]

        wait_for("the pending file", pending_files)
        relay.kill()
        endpoint.status = 200
        relay.start()
        wait_for("the POST after the restart", lambda: len(endpoint.bodies) >= 2)
        wait_for("the pending file removed", lambda: not pending_files())
        # Long enough for a duplicate to show (the first retry level is 8 s away).
        time.sleep(2)
        assert endpoint.bodies == ["tok-sigkill", "tok-sigkill"], endpoint.bodies
    finally:
        relay.close()
        endpoint.stop()
