"""Photo bytes -> an upright RGB uint8 array, without trusting the bytes.

Two limits are checked from the header, before any pixel is decoded: the pixel count (decompression bombs), and
the memory the decode would take, which depends on the pixel format as much as on the pixel count (a 76 KiB
16-bit PNG of 6320x6320 once cost 724 MiB). A JPEG over the memory budget is decoded at a reduced scale
(libjpeg's DCT scaling) that fits it; other formats over it are refused. Decodes of more than
LARGE_DECODE_BYTES take one of LARGE_DECODE_SLOTS, so that a burst of big photos cannot take every request
thread's worth of memory at once. No float64 copy of an image is ever made.

EXIF orientation is applied; grayscale, palette, CMYK, 16-bit and alpha photos become plain RGB.
"""

from __future__ import annotations

import io
import logging
import math
import threading
import warnings
from contextlib import nullcontext

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from model.faces.errors import ImageTooLarge, InvalidImage

log = logging.getLogger(__name__)

# Bytes per pixel a decode holds at its peak, by the photo's mode: Pillow's own pixels (one-band modes 1 byte,
# 16-bit 2, the rest padded to 4), the copies a conversion to RGB makes (Pillow's RGB is 4), and the RGB array
# (3) handed on. RGB JPEG: 4 + 3; gray: 1 + 4 + 3; 16-bit: 2 + 2 (the array) + 1 + 4 + 3; alpha: 4 + 4 + 4 + 3.
_PEAK_BYTES = {"RGB": 7, "YCbCr": 11, "CMYK": 11, "L": 8, "1": 8, "P": 15, "I;16": 12, "I;16L": 12, "I;16B": 12,
               "I;16N": 12, "RGBA": 15, "LA": 15, "PA": 15}
LARGE_DECODE_BYTES = 32 * 2**20
LARGE_DECODE_SLOTS = threading.BoundedSemaphore(2)


def decode_cost(mode: str, width: int, height: int) -> int:
    """Bytes a decode of this size and mode holds at its peak."""
    return width * height * _PEAK_BYTES.get(mode, 16)


def decode_image(data: bytes, *, max_pixels: int, max_bytes: int = 160 * 2**20) -> np.ndarray:
    """Decode any photo Pillow reads into an upright RGB uint8 array, in at most about `max_bytes` of memory."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageTooLarge(f"image has {width}x{height} pixels; the limit is {max_pixels} pixels")
            cost = decode_cost(image.mode, width, height)
            if cost > max_bytes and image.format == "JPEG":
                # DCT scaling gives at least the size asked for, and at most twice it on each side: ask for half
                # the side that fits, and get between that and the side that fits.
                scale = math.sqrt(max_bytes / cost) / 2
                image.draft(image.mode, (max(1, int(width * scale)), max(1, int(height * scale))))
                cost = decode_cost(image.mode, *image.size)
            if cost > max_bytes:
                raise ImageTooLarge(f"a {width}x{height} {image.mode} image needs {cost / 2**20:.0f} MiB to decode; "
                                    f"the limit is {max_bytes / 2**20:.0f} MiB (send a JPEG, or a smaller photo)")
            with LARGE_DECODE_SLOTS if cost > LARGE_DECODE_BYTES else nullcontext():
                image.load()
                return _upright_rgb(image)
    except ImageTooLarge:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(f"image is too large to decode safely: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise InvalidImage("the upload is not an image format this service reads") from exc
    except Exception as exc:  # Pillow's decoders raise many types on hostile bytes; all mean "unreadable"
        raise InvalidImage(f"the image is corrupt or truncated ({type(exc).__name__}: {exc})") from exc


def _upright_rgb(image: Image.Image) -> np.ndarray:
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # a malformed EXIF block: the pixels are fine, only the orientation hint is unreadable
        log.warning("ignoring an unreadable EXIF orientation")
    if image.mode != "RGB":
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            # Transparent pixels become white, not whatever colour happened to sit under the alpha.
            rgba = image.convert("RGBA")
            canvas = Image.new("RGB", rgba.size, (255, 255, 255))
            canvas.paste(rgba, mask=rgba.getchannel("A"))
            image = canvas
        elif image.mode.startswith("I;16") or image.mode in ("I", "F"):
            image = Image.fromarray(_to_8_bits(np.asarray(image))).convert("RGB")
        else:
            image = image.convert("RGB")
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))


def _to_8_bits(array: np.ndarray, rows: int = 256) -> np.ndarray:
    """A 16- or 32-bit (or float) gray image scaled so that its brightest pixel is 255, a band of rows at a
    time: no wide copy of the whole image is made."""
    peak = max(float(array.max()), 1e-12)
    out = np.empty(array.shape, np.uint8)
    for start in range(0, len(array), rows):
        band = np.clip(array[start:start + rows].astype(np.float32), 0, None)
        out[start:start + rows] = np.minimum(band * np.float32(255 / peak) + np.float32(0.5), 255)
    return out
