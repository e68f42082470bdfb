"""Hostile HTTP requests against the relay's HTTPS port (issue 9): each raw request,
sent over TLS from its own loopback address (so the per-IP rate limit of /new does not
mix cases), gets its expected status, or the connection is closed without one.

Statuses for malformed requests are what hyper (the HTTP/1 server of the driver)
answers; the relay's own routes answer 200, 404, 405 or 503.
"""

import itertools
import socket
import ssl

import pytest

CTX = ssl.create_default_context()
CTX.check_hostname = False
CTX.verify_mode = ssl.CERT_NONE

CLOSED = "closed"
_source = itertools.count(10)


def exchange(relay, raw: bytes, timeout=10.0):
    """Sends `raw` on a fresh TLS connection; returns the status code, or CLOSED."""
    n = next(_source)
    src = f"127.0.{n // 250}.{n % 250 + 2}"
    sock = socket.create_connection(("127.0.0.1", relay.https_port), timeout=timeout,
                                    source_address=(src, 0))
    with CTX.wrap_socket(sock, server_hostname="localhost") as tls:
        try:
            tls.sendall(raw)
        except OSError:
            return CLOSED
        data = b""
        try:
            while b"\r\n" not in data:
                chunk = tls.recv(4096)
                if not chunk:
                    break
                data += chunk
        except (OSError, ssl.SSLError):
            pass
    if not data.startswith(b"HTTP/1."):
        return CLOSED
    return int(data.split(b" ", 2)[1])


def req(line: str, headers: str = "Host: localhost\r\n", body: bytes = b"") -> bytes:
    return f"{line}\r\n{headers}\r\n".encode() + body


BIG = "a" * 100_000

CASES = [
    # The routes.
    ("GET /", req("GET / HTTP/1.1"), 200),
    ("HEAD /", req("HEAD / HTTP/1.1"), 200),
    ("GET /index.html", req("GET /index.html HTTP/1.1"), 200),
    ("GET /robots.txt", req("GET /robots.txt HTTP/1.1"), 200),
    ("GET autoconfig", req("GET /.well-known/autoconfig/mail/config-v1.1.xml HTTP/1.1"), 200),
    ("GET mta-sts", req("GET /.well-known/mta-sts.txt HTTP/1.1"), 200),
    ("POST /new", req("POST /new HTTP/1.1", "Host: localhost\r\nContent-Length: 0\r\n"), 200),
    ("GET /new with a query", req("GET /new?x=1 HTTP/1.1"), 200),
    ("HTTP/1.0 GET /", req("GET / HTTP/1.0", ""), 200),
    ("no Host header", req("GET / HTTP/1.1", ""), 200),
    # Wrong methods.
    ("POST /", req("POST / HTTP/1.1", "Host: localhost\r\nContent-Length: 0\r\n"), 405),
    ("PUT /new", req("PUT /new HTTP/1.1", "Host: localhost\r\nContent-Length: 0\r\n"), 405),
    ("DELETE /new", req("DELETE /new HTTP/1.1"), 405),
    ("OPTIONS /", req("OPTIONS / HTTP/1.1"), 405),
    ("TRACE /", req("TRACE / HTTP/1.1"), 405),
    ("lower-case method", req("get / HTTP/1.1"), 405),
    ("PATCH mta-sts", req("PATCH /.well-known/mta-sts.txt HTTP/1.1"), 405),
    # Paths that are not routes.
    ("unknown path", req("GET /nothing HTTP/1.1"), 404),
    ("dot-dot path", req("GET /../etc/passwd HTTP/1.1"), 404),
    ("encoded dot-dot", req("GET /%2e%2e/%2e%2e/etc/passwd HTTP/1.1"), 404),
    ("double slash", req("GET //new HTTP/1.1"), 404),
    ("upper-case route", req("GET /NEW HTTP/1.1"), 404),
    ("encoded route", req("GET /%6eew HTTP/1.1"), 404),
    ("mailbox path", req("GET /mail/alice@x/cur HTTP/1.1"), 404),
    ("backslash path", req("GET /..\\..\\etc HTTP/1.1"), 404),
    # Malformed requests.
    ("garbage request line", b"GARBAGE\r\n\r\n", 400),
    ("empty lines only", b"\r\n\r\n", CLOSED),
    ("NUL in the path", b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("NUL in a header", b"GET / HTTP/1.1\r\nHost: x\x00y\r\n\r\n", 400),
    ("header without a colon", req("GET / HTTP/1.1", "Host localhost\r\n"), 400),
    ("space before a header colon", req("GET / HTTP/1.1", "Host : localhost\r\n"), 400),
    ("folded header", req("GET / HTTP/1.1", "Host: a\r\n b\r\n"), 400),
    ("unknown HTTP version", req("GET / HTTP/9.9"), 400),
    ("HTTP/2 preface on HTTP/1", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", CLOSED),
    ("no version", b"GET /\r\n\r\n", 400),
    ("8-bit bytes in the path", b"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("20 KB path", req("GET /" + "p" * 20_000 + " HTTP/1.1"), 431),
    ("100 KB header", req("GET / HTTP/1.1", f"X-Big: {BIG}\r\n"), 431),
    ("1000 headers", req("GET / HTTP/1.1", "X: y\r\n" * 1000), 431),
    # Request smuggling shapes.
    # RFC 9112 6.3: Transfer-Encoding wins over Content-Length (hyper drops the latter
    # and closes the connection after the answer), so the body is read one way only.
    ("Content-Length and Transfer-Encoding",
     req("POST /new HTTP/1.1",
         "Host: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"), 200),
    ("20 KB of headers", req("GET / HTTP/1.1", "X-A: " + "b" * 20_000 + "\r\n"), 431),
    ("two Content-Lengths that differ",
     req("POST /new HTTP/1.1", "Host: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n", b"ab"), 400),
    ("negative Content-Length", req("POST /new HTTP/1.1", "Host: x\r\nContent-Length: -1\r\n"), 400),
    ("Content-Length not a number", req("POST /new HTTP/1.1", "Host: x\r\nContent-Length: 1x\r\n"), 400),
    ("unknown Transfer-Encoding", req("POST /new HTTP/1.1", "Host: x\r\nTransfer-Encoding: gzip\r\n"), 400),
    # Not HTTP or not TLS at all.
    ("SMTP on the HTTPS port", b"EHLO x\r\n", 400),
    ("IMAP on the HTTPS port", b"a LOGIN x y\r\n", 400),
]


@pytest.mark.parametrize("name,raw,expected", CASES, ids=[c[0] for c in CASES])
def test_hostile_http_request(relay, name, raw, expected):
    assert exchange(relay, raw) == expected


def test_plaintext_http_on_the_tls_port_gets_no_http_answer(relay):
    sock = socket.create_connection(("127.0.0.1", relay.https_port), timeout=10)
    with sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            data = sock.recv(4096)
        except OSError:
            data = b""
    assert not data.startswith(b"HTTP/")


def test_new_is_rate_limited_per_address(relay):
    # The embedded default (self-signed) allows bursts of 5 /new per client IP, then 2 a
    # second: 8 at once from one address get some 503s.
    n = next(_source)
    src = f"127.0.{n // 250}.{n % 250 + 2}"
    statuses = []
    for _ in range(8):
        sock = socket.create_connection(("127.0.0.1", relay.https_port), timeout=10,
                                        source_address=(src, 0))
        with CTX.wrap_socket(sock, server_hostname="localhost") as tls:
            tls.sendall(req("POST /new HTTP/1.1", "Host: x\r\nContent-Length: 0\r\n"))
            statuses.append(int(tls.recv(4096).split(b" ", 2)[1]))
    assert statuses[0] == 200 and 503 in statuses, statuses
