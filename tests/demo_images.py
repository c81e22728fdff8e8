"""Bad image files for the demo's tests, written byte by byte (nothing here is decoded)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

from PIL import Image


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def write_bomb_png(path: Path, side: int = 20_000) -> Path:
    """A real decompression bomb: a 1-bit black ``side`` x ``side`` PNG, about 50 KB on disk for
    20000 x 20000 (400 megapixels, 1.6 GB once decoded to RGBA)."""
    row = b"\x00" + b"\x00" * ((side + 7) // 8)  # filter byte, then the packed bits
    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit greyscale
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", data)
        + _chunk(b"IEND", b"")
    )
    return path


def write_corrupt_png(path: Path) -> Path:
    """A file that starts like a PNG and then is garbage (no image header Pillow can read)."""
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not an image at all " * 8)
    return path


def write_truncated_png(path: Path) -> Path:
    """A real PNG cut in half: its header reads, its pixels do not."""
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 40, 40)).save(buf, "PNG")
    data = buf.getvalue()
    path.write_bytes(data[: len(data) // 2])
    return path
