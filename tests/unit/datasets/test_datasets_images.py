from __future__ import annotations

import io
import os
import struct
import time
import tracemalloc
import zipfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO, cast

import pytest
from PIL import Image

from labelvault.datasets.limits import MIB, ImportLimits
from labelvault.datasets.parsers import (
    ImportRejectedError,
    ParsedItem,
    RowError,
    inspect_image,
    iter_items,
)

LIMITS = ImportLimits()


def png(width: int = 32, height: int = 24) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 10, 10)).save(out, "PNG")
    return out.getvalue()


def jpeg(width: int = 40, height: int = 30) -> bytes:
    out = io.BytesIO()
    Image.effect_noise((width, height), 40).convert("RGB").save(out, "JPEG")
    return out.getvalue()


def make_zip(entries: list[tuple[str, bytes]], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", method) as zf:
        for name, data in entries:
            if name.endswith("/"):
                zf.writestr(zipfile.ZipInfo(name), b"")
            else:
                zf.writestr(name, data)
    return out.getvalue()


def parse_zip(data: bytes, **kwargs: Any) -> list[ParsedItem | RowError]:
    return list(iter_items(io.BytesIO(data), name="upload.zip", **kwargs))


SVG = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>'
HTML = b"<!doctype html><script>alert(1)</script>"
GIF = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"


# --- single images ------------------------------------------------------------------------


def test_valid_png_and_jpeg_accepted_with_size() -> None:
    assert inspect_image(png(32, 24), LIMITS) == ("png", 32, 24)
    assert inspect_image(jpeg(40, 30), LIMITS) == ("jpeg", 40, 30)
    data = jpeg(17, 9)
    stream = iter_items(io.BytesIO(data), name="photo.JPG")
    [item] = list(stream)
    assert stream.format == "image"
    assert item == ParsedItem(
        line=1,
        kind="image",
        image=data,
        image_format="jpeg",
        width=17,
        height=9,
        source_name="photo.JPG",
    )


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (SVG, "not a PNG or JPEG image"),
        (HTML, "not a PNG or JPEG image"),
        (GIF, "not a PNG or JPEG image"),
        (b"", "not a PNG or JPEG image"),
        (png()[:-20], "not a valid PNG image"),
        (png()[:40], "not a valid PNG image"),
        (jpeg(200, 200)[:600], "not a valid JPEG image"),
        (b"\x89PNG\r\n\x1a\n" + HTML, "not a valid PNG image"),
    ],
)
def test_refused_images(data: bytes, reason: str) -> None:
    [error] = list(iter_items(io.BytesIO(data), name="evil.png"))
    assert isinstance(error, RowError)
    assert error.line == 1
    assert error.reason.startswith("evil.png: ") and reason in error.reason


def png_header_only(width: int, height: int) -> bytes:
    """A structurally complete PNG (IHDR + IEND) that declares any size and holds no pixels."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_pixel_limits_and_decompression_bombs() -> None:
    assert inspect_image(png(20, 20), ImportLimits(max_image_pixels=399)) == (
        "image has more than 399 pixels"
    )
    # 100k x 100k declared in the header: refused before any decoding, whatever Pillow thinks
    for side in (100_000, 10_000):  # Pillow's own error, then its warning (an error here)
        reason = inspect_image(png_header_only(side, side), LIMITS)
        assert reason == "image has more than 50000000 pixels (decompression bomb?)"
    reason = inspect_image(png_header_only(8000, 8000), LIMITS)
    assert reason == "image has more than 50000000 pixels"


def test_single_image_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(png(64, 64))
    [error] = list(iter_items(path, limits=ImportLimits(max_image_bytes=100)))
    assert error == RowError(1, "big.png: image larger than 100 bytes")
    [item] = list(iter_items(path))
    assert isinstance(item, ParsedItem) and (item.width, item.height) == (64, 64)


# --- zip archives -------------------------------------------------------------------------


def test_zip_of_images() -> None:
    a, b = png(10, 20), jpeg(30, 40)
    data = make_zip(
        [
            ("pics/", b""),
            ("pics/a.png", a),
            ("__MACOSX/pics/._a.png", b"junk"),
            ("pics/.DS_Store", b"junk"),
            ("pics/b.jpeg", b),
            ("readme.txt", b"hello"),
            ("fake.png", SVG),
            ("page.html", HTML),
        ]
    )
    stream = iter_items(io.BytesIO(data), name="upload.zip")
    out = list(stream)
    assert stream.format == "zip"
    assert [(e.line, type(e).__name__) for e in out] == [
        (2, "ParsedItem"),
        (5, "ParsedItem"),
        (6, "RowError"),
        (7, "RowError"),
        (8, "RowError"),
    ]
    first, second = out[0], out[1]
    assert isinstance(first, ParsedItem) and isinstance(second, ParsedItem)
    assert (first.source_name, first.image, first.width, first.height) == ("pics/a.png", a, 10, 20)
    assert (second.image_format, second.width, second.height) == ("jpeg", 30, 40)
    assert [e.reason for e in out[2:] if isinstance(e, RowError)] == [
        "readme.txt: not a PNG or JPEG image",
        "fake.png: not a PNG or JPEG image",
        "page.html: not a PNG or JPEG image",
    ]


def test_zip_entry_names_are_sanitised_and_escaped() -> None:
    evil = "../../etc/passwd.png"
    control = "a\x1b[31m\u202e.png"
    long = "d/" * 300 + "x.png"
    data = make_zip(
        [(evil, png()), ("/abs.png", png()), (control, png()), (long, SVG), ("ok/./b.png", png())]
    )
    out = parse_zip(data)
    reasons = [e.reason for e in out if isinstance(e, RowError)]
    assert reasons[0] == f"{evil}: unsafe entry name (absolute path, '..' or control characters)"
    assert reasons[1].startswith("/abs.png: unsafe")
    assert reasons[2].startswith("a\\u001b[31m\\u202e.png: unsafe")
    assert "\x1b" not in reasons[2] and "\u202e" not in reasons[2]
    assert reasons[3].startswith("d/d/") and len(reasons[3].split(": ")[0]) == 200
    [item] = [e for e in out if isinstance(e, ParsedItem)]
    assert item.source_name == "ok/b.png"


def test_zip_bomb_rejected_quickly_from_the_directory(tmp_path: Path) -> None:
    path = tmp_path / "bomb.zip"
    zeros = bytes(MIB)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("bomb.png", "w") as f:
        for _ in range(200):
            f.write(zeros)
    assert path.stat().st_size < 1 * MIB
    started = time.monotonic()
    with pytest.raises(ImportRejectedError, match="ratio"):
        list(iter_items(path))
    assert time.monotonic() - started < 0.5


def patch_sizes(data: bytes, *, size: int | None = None, flags: int | None = None) -> bytes:
    """Rewrite the sizes/flags of the first entry in both its local and central headers."""
    out = bytearray(data)
    local = out.index(b"PK\x03\x04")
    central = out.index(b"PK\x01\x02")
    if size is not None:
        struct.pack_into("<I", out, local + 22, size)
        struct.pack_into("<I", out, central + 24, size)
    if flags is not None:
        struct.pack_into("<H", out, local + 6, flags)
        struct.pack_into("<H", out, central + 8, flags)
    return bytes(out)


def test_zip_header_lying_about_size_is_caught_while_streaming() -> None:
    payload = png() + bytes(20 * MIB)  # deflates to ~20 KiB
    honest = make_zip([("a.png", payload)])
    with pytest.raises(ImportRejectedError, match="ratio"):
        parse_zip(honest)
    lying = patch_sizes(honest, size=100_000)  # ratio looks fine now
    tracemalloc.start()
    try:
        with pytest.raises(ImportRejectedError, match="corrupt"):
            parse_zip(lying)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5 * MIB


def test_zip_entries_that_are_rejected_whole() -> None:
    with pytest.raises(ImportRejectedError, match="nested archives"):
        parse_zip(make_zip([("a.png", png()), ("inner.zip", make_zip([("b.png", png())]))]))
    with pytest.raises(ImportRejectedError, match="nested archives"):
        parse_zip(make_zip([("innocent.png", make_zip([("b.png", png())]))]))
    with pytest.raises(ImportRejectedError, match="encrypted"):
        parse_zip(patch_sizes(make_zip([("a.png", png())]), flags=0x1))
    with pytest.raises(ImportRejectedError, match="not a valid ZIP"):
        parse_zip(b"PK\x03\x04 but not really a zip at all")
    with pytest.raises(ImportRejectedError, match="more than 2 entries"):
        parse_zip(
            make_zip([(f"{i}.png", png()) for i in range(3)]),
            limits=ImportLimits(max_zip_entries=2),
        )
    with pytest.raises(ImportRejectedError, match="expands to more than"):
        parse_zip(
            make_zip([(f"{i}.png", png()) for i in range(3)]),
            limits=ImportLimits(max_zip_total_uncompressed=200),
        )


def test_zip_per_image_size_limit_and_stored_entries() -> None:
    data = make_zip([("a.png", png(64, 64)), ("b.png", png(2, 2))], method=zipfile.ZIP_STORED)
    out = parse_zip(data, limits=ImportLimits(max_image_bytes=150))
    assert isinstance(out[0], RowError) and "larger than 150 bytes" in out[0].reason
    assert isinstance(out[1], ParsedItem) and out[1].width == 2


class OneWayStream(io.RawIOBase):
    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self._data.read(min(len(buffer), 1000))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def test_non_seekable_zip_stream_is_spooled() -> None:
    data = make_zip([("a.png", png(5, 6))])
    stream = OneWayStream(data)
    assert not stream.seekable()
    [item] = list(iter_items(cast(BinaryIO, stream), fmt="zip"))
    assert isinstance(item, ParsedItem) and (item.width, item.height) == (5, 6)
    with pytest.raises(ImportRejectedError, match="larger than"):
        list(
            iter_items(
                cast(BinaryIO, OneWayStream(data)),
                fmt="zip",
                limits=ImportLimits(max_upload_bytes=50),
            )
        )


# --- folders ------------------------------------------------------------------------------


def test_folder_of_images(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    (root / "sub").mkdir(parents=True)
    (root / "b.png").write_bytes(png(3, 4))
    (root / "sub" / "a.jpg").write_bytes(jpeg(5, 6))
    (root / ".hidden.png").write_bytes(png())
    (root / "a.svg").write_bytes(SVG)
    os.symlink("/etc/passwd", root / "link.png")
    stream = iter_items(root)
    out = list(stream)
    assert stream.format == "folder"
    assert [(e.line, getattr(e, "source_name", None) or e.reason) for e in out] == [  # type: ignore[union-attr]
        (1, "a.svg: not a PNG or JPEG image"),
        (2, "b.png"),
        (3, "link.png: symbolic links are not followed"),
        (4, "sub/a.jpg"),
    ]
