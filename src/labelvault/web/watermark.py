"""Per-viewer image renditions: a visible, tiled, semi-transparent watermark naming the viewer
and the time, drawn with Pillow, plus the same facts and a random nonce in a PNG ``tEXt`` chunk
(``labelvault-watermark``) so a leaked copy can be traced even when cropped of its visible text.

The rendition keeps the original pixel size, so annotation coordinates stay in image pixels.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import secrets
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

TEXT_KEY = "labelvault-watermark"


@dataclass(frozen=True)
class Mark:
    viewer_id: str
    email: str
    at: dt.datetime
    nonce: str

    @classmethod
    def now(cls, viewer_id: str, email: str) -> Mark:
        return cls(
            viewer_id, email, dt.datetime.now(dt.UTC).replace(microsecond=0), secrets.token_hex(8)
        )

    @property
    def caption(self) -> str:
        return f"{self.email} · {self.at:%Y-%m-%d %H:%M:%S} UTC"

    def as_json(self) -> str:
        return json.dumps(
            {
                "viewer": self.viewer_id,
                "email": self.email,
                "time": self.at.isoformat(),
                "nonce": self.nonce,
            },
            separators=(",", ":"),
        )


def watermark_png(original: bytes, mark: Mark) -> bytes:
    """The original image (PNG or JPEG) re-encoded as a watermarked PNG."""
    with Image.open(io.BytesIO(original)) as img:
        img.load()
        base = img.convert("RGBA")
    width, height = base.size
    overlay = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    font = ImageFont.load_default(size=max(11, min(width, height) // 22))
    left, top, right, bottom = draw.textbbox((0, 0), mark.caption, font=font, stroke_width=1)
    text_w, text_h = max(int(right - left), 1), max(int(bottom - top), 1)
    step_x, step_y = text_w + 3 * text_h, 3 * text_h
    for row, y in enumerate(range(-text_h // 2, height, step_y)):
        shift = (row % 2) * (step_x // 2)
        for x in range(-shift, width, step_x):
            draw.text(
                (x, y),
                mark.caption,
                font=font,
                fill=(255, 255, 255, 120),
                stroke_width=1,
                stroke_fill=(0, 0, 0, 120),
            )
    out = Image.alpha_composite(base, overlay).convert("RGB")
    info = PngInfo()
    info.add_text(TEXT_KEY, mark.as_json())
    buffer = io.BytesIO()
    out.save(buffer, format="PNG", pnginfo=info, compress_level=3)
    return buffer.getvalue()


def read_mark(png: bytes) -> dict[str, str] | None:
    """The embedded mark of a rendition (for tests and for tracing a leaked copy)."""
    with Image.open(io.BytesIO(png)) as img:
        text = getattr(img, "text", {}).get(TEXT_KEY)
    if text is None:
        return None
    value: dict[str, str] = json.loads(text)
    return value
