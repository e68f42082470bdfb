"""IMAP COMPRESS=DEFLATE (RFC 4978) with python imaplib and zlib (raw DEFLATE,
wbits=-15): offered after login only, the OK uncompressed, then commands and responses
(a literal included) compressed both ways, a second COMPRESS refused with
COMPRESSIONACTIVE, and counted on /metrics. The relay without `imap_compress` offers
nothing."""

import imaplib
import ssl
import zlib

import pytest

from conftest import metric

CTX = ssl.create_default_context()
CTX.check_hostname = False
CTX.verify_mode = ssl.CERT_NONE

imaplib.Commands.setdefault("COMPRESS", ("AUTH", "SELECTED"))


class Deflated:
    """imaplib's socket and file after COMPRESS: compresses each write with a sync
    flush, decompresses reads. imaplib writes with sock.sendall and reads with
    file.readline/file.read."""

    def __init__(self, sock):
        self.sock = sock
        self.deflate = zlib.compressobj(wbits=-15)
        self.inflate = zlib.decompressobj(wbits=-15)
        self.plain = b""
        self.compressed_in = 0

    def sendall(self, data):
        self.sock.sendall(self.deflate.compress(data) + self.deflate.flush(zlib.Z_SYNC_FLUSH))

    def _fill(self):
        data = self.sock.recv(16 * 1024)
        if not data:
            raise imaplib.IMAP4.abort("socket closed")
        self.compressed_in += len(data)
        self.plain += self.inflate.decompress(data)

    def readline(self, limit=-1):
        while b"\n" not in self.plain:
            self._fill()
        line, _, self.plain = self.plain.partition(b"\n")
        return line + b"\n"

    def read(self, size):
        while len(self.plain) < size:
            self._fill()
        data, self.plain = self.plain[:size], self.plain[size:]
        return data

    def shutdown(self, how):
        self.sock.shutdown(how)

    def close(self):
        pass


def compress(imap):
    """Sends COMPRESS DEFLATE; on OK everything after goes through `Deflated`."""
    typ, data = imap._simple_command("COMPRESS", "DEFLATE")
    assert typ == "OK", data
    wrapped = Deflated(imap.sock)
    imap.sock = wrapped
    imap.file = wrapped
    return wrapped


def connect(relay):
    return imaplib.IMAP4_SSL("127.0.0.1", relay.imaps_port, ssl_context=CTX, timeout=30)


def test_imaplib_compressed_session(compress_relay):
    before = metric(compress_relay, "chatmail_imap_compress_sessions")
    user, password = compress_relay.creds("cz")
    imap = connect(compress_relay)
    assert "COMPRESS=DEFLATE" not in imap.capabilities, "offered before login"
    with pytest.raises(imaplib.IMAP4.error):
        imap._simple_command("COMPRESS", "DEFLATE")
    imap.login(user, password)
    typ, caps = imap.capability()
    assert b"COMPRESS=DEFLATE" in caps[0], caps
    wrapped = compress(imap)
    assert metric(compress_relay, "chatmail_imap_compress_sessions") == before + 1

    typ, data = imap.select("INBOX")
    assert typ == "OK" and data == [b"0"], data
    message = (b"From: " + user.encode() + b"\r\nSubject: [...]\r\n\r\n"
               + b"a line of text that compresses well\r\n" * 2000)
    typ, data = imap.append("INBOX", None, None, message)
    assert typ == "OK", data
    imap.noop()
    start = wrapped.compressed_in
    typ, data = imap.fetch("1", "(BODY.PEEK[])")
    assert typ == "OK" and data[0][1] == message, data[0][0]
    assert wrapped.compressed_in - start < len(message) // 10, "the FETCH was compressed"

    # Only once per connection.
    typ, data = imap._simple_command("COMPRESS", "DEFLATE")
    assert typ == "NO" and b"[COMPRESSIONACTIVE]" in data[-1], (typ, data)
    typ, caps = imap.capability()
    assert b"COMPRESS" not in caps[0], caps
    imap.logout()


def test_idle_update_arrives_compressed(compress_relay):
    """An IDLE update is flushed at once through the compressor."""
    user, password = compress_relay.creds("cz")
    idler = connect(compress_relay)
    idler.login(user, password)
    wrapped = compress(idler)
    idler.select("INBOX")
    tag = idler._new_tag()
    idler.send(tag + b" IDLE\r\n")
    assert wrapped.readline().startswith(b"+ "), "no continuation"
    other = connect(compress_relay)
    other.login(user, password)
    other.append("INBOX", None, None, b"Subject: [...]\r\n\r\nhello\r\n")
    other.logout()
    assert wrapped.readline() == b"* 1 EXISTS\r\n"
    idler.send(b"DONE\r\n")
    line = wrapped.readline()
    while line.startswith(b"* "):  # `* 1 RECENT`: the idler claimed the new message
        line = wrapped.readline()
    assert line.startswith(tag + b" OK"), line
    idler.logout()


def test_not_offered_without_imap_compress(relay):
    user, password = relay.creds("cz")
    imap = connect(relay)
    imap.login(user, password)
    typ, caps = imap.capability()
    assert b"COMPRESS" not in caps[0], caps
    with pytest.raises(imaplib.IMAP4.error):
        imap._simple_command("COMPRESS", "DEFLATE")
    imap.noop()
    imap.logout()
