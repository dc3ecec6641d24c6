"""Photo bytes -> an upright RGB uint8 array, without trusting the bytes.

The pixel count is checked from the header before the pixels are decoded, which stops decompression bombs.
EXIF orientation is applied; grayscale, palette, CMYK, 16-bit and alpha photos become plain RGB.
"""

from __future__ import annotations

import io
import logging
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from model.faces.errors import ImageTooLarge, InvalidImage

log = logging.getLogger(__name__)


def decode_image(data: bytes, *, max_pixels: int) -> np.ndarray:
    """Decode any photo Pillow reads into an upright RGB uint8 array."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageTooLarge(f"image has {width}x{height} pixels; the limit is {max_pixels} pixels")
            image.load()
    except ImageTooLarge:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(f"image is too large to decode safely: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise InvalidImage("the upload is not an image format this service reads") from exc
    except Exception as exc:  # Pillow's decoders raise many types on hostile bytes; all mean "unreadable"
        raise InvalidImage(f"the image is corrupt or truncated ({type(exc).__name__}: {exc})") from exc
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
            array = np.asarray(image, dtype=np.float64)
            peak = max(float(array.max()), 1.0)
            image = Image.fromarray((array * (255.0 / peak)).astype(np.uint8)).convert("RGB")
        else:
            image = image.convert("RGB")
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
