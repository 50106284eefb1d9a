"""Real PNG images from the standard library alone (zlib + struct), for the demo engines.

A `Canvas` holds RGB pixels; `fill` paints rectangles, `text` writes capital
letters and digits in a 3x5 pixel font scaled up, `png()` encodes a valid PNG
(signature, IHDR, one IDAT, IEND, each chunk with its CRC).
"""

from __future__ import annotations

import hashlib
import struct
import zlib

Color = tuple[int, int, int]

# 3x5 glyphs: five rows of three cells, 1 = ink.
FONT = {
    "A": "010 101 111 101 101", "B": "110 101 110 101 110", "C": "011 100 100 100 011", "D": "110 101 101 101 110",
    "E": "111 100 110 100 111", "F": "111 100 110 100 100", "G": "011 100 101 101 011", "H": "101 101 111 101 101",
    "I": "111 010 010 010 111", "J": "001 001 001 101 010", "K": "101 101 110 101 101", "L": "100 100 100 100 111",
    "M": "101 111 111 101 101", "N": "110 101 101 101 101", "O": "010 101 101 101 010", "P": "110 101 110 100 100",
    "Q": "010 101 101 110 011", "R": "110 101 110 101 101", "S": "011 100 010 001 110", "T": "111 010 010 010 010",
    "U": "101 101 101 101 111", "V": "101 101 101 101 010", "W": "101 101 111 111 101", "X": "101 101 010 101 101",
    "Y": "101 101 010 010 010", "Z": "111 001 010 100 111", "0": "111 101 101 101 111", "1": "010 110 010 010 111",
    "2": "110 001 010 100 111", "3": "110 001 010 001 110", "4": "101 101 111 001 001", "5": "111 100 110 001 110",
    "6": "011 100 111 101 111", "7": "111 001 010 010 010", "8": "111 101 111 101 111", "9": "111 101 111 001 110",
    ".": "000 000 000 000 010", "-": "000 000 111 000 000", "/": "001 001 010 100 100", ":": "000 010 000 010 000",
    " ": "000 000 000 000 000",
}


class Canvas:
    def __init__(self, width: int, height: int, background: Color = (255, 255, 255)) -> None:
        self.width, self.height = width, height
        self.pixels = bytearray(bytes(background) * (width * height))

    def fill(self, x: int, y: int, w: int, h: int, color: Color) -> None:
        x0, y0 = max(0, x), max(0, y)
        x1, y1 = min(self.width, x + w), min(self.height, y + h)
        if x1 <= x0 or y1 <= y0:
            return
        row = bytes(color) * (x1 - x0)
        for yy in range(y0, y1):
            start = (yy * self.width + x0) * 3
            self.pixels[start : start + len(row)] = row

    def text(self, x: int, y: int, text: str, color: Color, scale: int = 2) -> int:
        """Draws `text` (capitals, digits, . - / :); returns the x after it."""
        for char in text.upper():
            glyph = FONT.get(char, FONT[" "]).replace(" ", "")
            for i, cell in enumerate(glyph):
                if cell == "1":
                    self.fill(x + (i % 3) * scale, y + (i // 3) * scale, scale, scale, color)
            x += 4 * scale
        return x

    def png(self) -> bytes:
        stride = self.width * 3
        raw = b"".join(b"\x00" + bytes(self.pixels[r * stride : (r + 1) * stride]) for r in range(self.height))
        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)  # 8-bit RGB
        return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 6)) + _chunk(b"IEND", b"")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def palette(seed: str) -> tuple[Color, Color]:
    digest = hashlib.sha256(seed.encode()).digest()
    main = (digest[0] // 2 + 40, digest[1] // 2 + 40, digest[2] // 2 + 60)
    light = tuple(min(255, c + 150) for c in main)
    return main, light  # type: ignore[return-value]


def page_screenshot(site: str, path: str, issues: int, width: int = 320, height: int = 200) -> bytes:
    """A 'browser screenshot' of a page: address bar, header, text lines, an image, issue badges."""
    main, light = palette(site)
    canvas = Canvas(width, height, (250, 250, 250))
    canvas.fill(0, 0, width, 18, (60, 60, 70))
    canvas.fill(6, 4, width - 12, 10, (235, 235, 240))
    canvas.text(9, 5, f"{site}{path}"[:36], (40, 40, 40), scale=1)
    canvas.fill(0, 18, width, 34, main)
    canvas.text(10, 26, path.strip("/").upper() or "HOME", (255, 255, 255), scale=3)
    seed = hashlib.sha256(f"{site}{path}".encode()).digest()
    for i in range(8):
        canvas.fill(10, 62 + i * 12, 120 + seed[i] % 60, 6, (170, 170, 175))
    canvas.fill(200, 62, 110, 90, light)
    canvas.fill(215, 80, 80, 55, main)
    for i in range(issues):
        canvas.fill(10 + i * 22, height - 24, 18, 16, (220, 60, 50))
    return canvas.png()


def cover_art(title: str, size: int = 96) -> bytes:
    """An 'album cover' thumbnail for the tagger engine."""
    main, light = palette(title)
    canvas = Canvas(size, size, light)
    seed = hashlib.sha256(title.encode()).digest()
    for i in range(6):
        canvas.fill(seed[i] % size, seed[i + 6] % size, 10 + seed[i + 12] % 40, 10 + seed[i + 18] % 40, main)
    canvas.text(4, size - 14, title[:10], (20, 20, 20), scale=2)
    return canvas.png()
