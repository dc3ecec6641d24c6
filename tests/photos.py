"""Photos for tests: real faces from ../shared/data/testfaces, and variants made from them in memory.

Nothing here is written into the repository.
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image


def encode(image: Image.Image, fmt: str = "JPEG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


class Photos:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, person: str, number: int = 1) -> Path:
        if person.isdigit():  # a CelebA identity
            return sorted((self.root / "celeba-wild" / person).iterdir())[number - 1]
        return self.root / "lfw" / person / f"{person}_{number:04d}.jpg"

    def bytes(self, person: str, number: int = 1) -> bytes:
        return self.path(person, number).read_bytes()

    def image(self, person: str, number: int = 1) -> Image.Image:
        return Image.open(self.path(person, number)).convert("RGB")

    def side_by_side(self, left: tuple[str, int], right: tuple[str, int], right_scale: float = 1.0) -> bytes:
        a, b = self.image(*left), self.image(*right)
        b = b.resize((int(b.width * right_scale), int(b.height * right_scale)))
        canvas = Image.new("RGB", (a.width + b.width, max(a.height, b.height)), (128, 128, 128))
        canvas.paste(a, (0, 0))
        canvas.paste(b, (a.width, 0))
        return encode(canvas)

    def rotated_with_exif(self, person: str, number: int = 1) -> bytes:
        """The photo stored lying on its side, with EXIF orientation 6 saying how to stand it up."""
        image = self.image(person, number).transpose(Image.Transpose.ROTATE_90)
        exif = Image.Exif()
        exif[0x0112] = 6  # rotate 90 degrees clockwise to display
        return encode(image, exif=exif.tobytes())


def blank_photo(size: tuple[int, int] = (320, 240)) -> bytes:
    """A smooth gradient: a valid photo with no face in it."""
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    return encode(image)
