"""Headless Chromium for the report's tests and for scripts/capture-report.

Debian's `chromium`, started for one page at a time with a fresh profile and every
background connection off (this machine's network is closed: without those flags
Chromium keeps trying to reach Google). Not a test module: imported by them.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import tempfile
import zlib
from collections import Counter
from pathlib import Path

TIMEOUT = 60.0  # seconds one page may take
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--disable-default-apps", "--hide-scrollbars",
         "--mute-audio", "--no-default-browser-check", "--disable-dev-shm-usage")


class BrowserError(RuntimeError):
    """Chromium did not do what was asked; the message carries its stderr's tail."""


def chromium() -> str | None:
    """The browser's path, or None when it is not installed."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _run(page: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    path = chromium()
    if path is None:
        raise BrowserError("chromium is not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="az-chromium-") as profile:
        try:
            done = subprocess.run([path, *FLAGS, f"--user-data-dir={profile}", *args,
                                   page.resolve().as_uri()], capture_output=True,
                                  stdin=subprocess.DEVNULL, timeout=TIMEOUT)
        except subprocess.TimeoutExpired as exc:
            raise BrowserError(f"chromium took more than {TIMEOUT:g}s on {page}") from exc
    if done.returncode != 0:
        raise BrowserError(f"chromium exited {done.returncode} on {page}: "
                           f"{done.stderr.decode(errors='replace')[-2000:]}")
    return done


def screenshot(page: Path, png: Path, width: int = 1280, height: int = 1600) -> None:
    """`page` (a local HTML file) rendered at width x height into `png`."""
    png.unlink(missing_ok=True)
    done = _run(page, f"--window-size={width},{height}", f"--screenshot={png}")
    if not png.is_file() or png.stat().st_size == 0:
        raise BrowserError(f"chromium wrote no screenshot of {page}: "
                           f"{done.stderr.decode(errors='replace')[-2000:]}")


def dump_dom(page: Path) -> str:
    """The page's DOM once loaded (after any script on it ran), serialised."""
    return _run(page, "--dump-dom").stdout.decode("utf-8", "replace")


def png_facts(png: Path) -> tuple[int, int, int, float]:
    """(width, height, distinct colours, share of pixels unlike the commonest colour) of an
    8-bit RGB or RGBA, non-interlaced PNG (every 4th row, every 2nd pixel counted)."""
    width, height, counts = png_colours(png)
    total = sum(counts.values())
    common = counts.most_common(1)[0][1] if counts else 0
    return width, height, len(counts), (total - common) / total if total else 0.0


def png_colours(png: Path) -> tuple[int, int, Counter[bytes]]:
    """(width, height, pixels per RGB colour, of every 4th row and every 2nd pixel) of an
    8-bit RGB or RGBA, non-interlaced PNG, decoded here (zlib and the five row filters)."""
    data = png.read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{png} is not a PNG")
    pos, chunks, header = 8, [], b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            chunks.append(body)
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    if depth != 8 or colour not in (2, 6) or interlace:
        raise ValueError(f"{png}: only 8-bit RGB/RGBA non-interlaced PNGs are read "
                         f"(depth {depth}, colour type {colour}, interlace {interlace})")
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(b"".join(chunks))
    stride = width * bpp
    previous = bytearray(stride)
    counts: Counter[bytes] = Counter()
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        if kind == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif kind == 2:
            line = bytearray((a + b) & 0xFF for a, b in zip(line, previous, strict=True))
        elif kind == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + previous[i]) >> 1)) & 0xFF
        elif kind == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = previous[i], previous[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) \
                    & 0xFF
        elif kind != 0:
            raise ValueError(f"{png}: row {y} has filter {kind}")
        if y % 4 == 0:  # every 4th row is enough to count colours
            counts.update(bytes(line[i:i + 3]) for i in range(0, stride, bpp * 2))
        previous = line
    return width, height, counts
