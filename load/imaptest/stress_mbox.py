#!/usr/bin/env python3
"""Writes the mbox imaptest's stress mode appends from (`mbox=`): the repository's real
messages (testdata/fixtures) and generated ones of varied MIME shapes, every one with a
Message-ID of its own (imaptest tracks messages by Message-ID and reports any change in
what the server says about one), CRLF line ends as on the wire.

usage: stress_mbox.py OUT.mbox
"""
import sys
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def without_message_id(text):
    lines, skip = [], False
    for line in text.split("\n"):
        if skip and line[:1] in (" ", "\t"):
            continue
        skip = line.lower().startswith("message-id:")
        if not skip:
            lines.append(line)
    return "\n".join(lines)


def generated(i, date):
    shape = i % 4
    head = (f"From: Sender {i} <sender{i}@example.org>\nTo: group: a{i}@example.org, "
            f"\"B, {i}\" <b{i}@example.org>;\nSubject: message {i}\nDate: {date}\n")
    if shape == 0:
        return head + "\n" + "".join(f"line {n} of message {i}\n" for n in range(i % 7 + 1))
    if shape == 1:
        return (head + "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b{0}\"\n\n"
                "preamble\n--b{0}\nContent-Type: text/plain; charset=utf-8\n\nhello {0}\n"
                "--b{0}\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n"
                "Content-Disposition: attachment; filename=\"f{0}.bin\"\n\nAAECAwQ=\n--b{0}--\n").format(i)
    if shape == 2:
        return (head + "MIME-Version: 1.0\nContent-Type: message/rfc822\n\n"
                f"From: inner{i}@example.org\nSubject: inner {i}\n\ninner body {i}\n")
    return (head + "MIME-Version: 1.0\nContent-Type: multipart/alternative; boundary=\"a{0}\"\n\n"
            "--a{0}\nContent-Type: text/plain\n\nplain {0}\n--a{0}\nContent-Type: text/html\n\n"
            "<p>html {0}</p>\n--a{0}--\n").format(i)


def main():
    out = Path(sys.argv[1])
    base = datetime(2026, 1, 1, tzinfo=timezone.utc)
    messages = []
    for path in sorted((ROOT / "testdata" / "fixtures").glob("*.eml")):
        messages.append(without_message_id(path.read_text(errors="replace")))
    for i in range(60):
        messages.append(generated(i, format_datetime(base + timedelta(hours=i))))
    with open(out, "w", newline="") as f:
        for n, text in enumerate(messages):
            header, sep, body = text.partition("\n\n")
            text = f"{header}\nMessage-ID: <stress{n}@imaptest.example>{sep}{body}"
            f.write(f"From stress@example.org  Thu Jan  1 00:00:00 2026\r\n")
            for line in text.rstrip("\n").split("\n"):
                line = line.rstrip("\r")
                # mbox quoting of body lines that look like separators.
                if line.startswith("From "):
                    line = ">" + line
                f.write(line + "\r\n")
            f.write("\r\n")


if __name__ == "__main__":
    main()
