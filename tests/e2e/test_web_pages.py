"""The relay's three web pages in a real browser: headless Chromium (Debian's package)
takes a screenshot of the home, info and privacy page at phone and desktop width; each
must render something that is not blank, and the page must not be wider than a phone.
With CHATMAIL_SCREENSHOTS=DIR the screenshots are kept there (docs/screenshots/ holds
the committed ones)."""

import os
import shutil
import struct
import subprocess
import tempfile
import zlib
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PAGES = {"home": "/", "info": "/info.html", "privacy": "/privacy.html"}
WIDTHS = {"phone": (390, 844), "desktop": (1280, 900)}


def png_size_and_colours(data: bytes):
    """Width, height and the number of distinct byte values in the pixel data."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    return width, height, len(set(zlib.decompress(idat)))


def shoot(url, size, out: Path, profile: Path):
    subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--ignore-certificate-errors", f"--user-data-dir={profile}",
         f"--window-size={size[0]},{size[1]}", f"--screenshot={out}", url],
        capture_output=True, timeout=90, check=True)
    return out.read_bytes()


def dom(url, profile: Path):
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--ignore-certificate-errors",
         f"--user-data-dir={profile}", "--window-size=390,844", "--dump-dom", url],
        capture_output=True, timeout=90, check=True, text=True).stdout


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian package chromium)")
@pytest.mark.parametrize("page", PAGES)
def test_page_renders_at_phone_and_desktop_width(relay, page):
    keep = os.environ.get("CHATMAIL_SCREENSHOTS")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        url = f"https://127.0.0.1:{relay.https_port}{PAGES[page]}"
        html = dom(url, tmp / "profile")
        assert "<nav>" in html and "</main>" in html, html[:500]
        for name, size in WIDTHS.items():
            out = tmp / f"{page}-{name}.png"
            data = shoot(url, size, out, tmp / "profile")
            width, height, colours = png_size_and_colours(data)
            assert (width, height) == size, (page, name, width, height)
            assert colours > 8, f"{page} at {name} width looks blank"
            if keep:
                Path(keep).mkdir(parents=True, exist_ok=True)
                shutil.copy(out, Path(keep) / out.name)
