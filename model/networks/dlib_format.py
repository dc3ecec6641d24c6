"""dlib's serialisation, read in pure Python: what its `.dat` model files are made of."""

from __future__ import annotations

import numpy as np


class DatStream:
    """dlib's serialize(): integers as a length byte (0x80 = negative) and little-endian bytes, strings as a
    length and bytes, floats as a mantissa and exponent, tensors as version 2, four dims and raw float32."""

    def __init__(self, blob: bytes, position: int) -> None:
        self.blob, self.position = blob, position

    def integer(self) -> int:
        head = self.blob[self.position]
        size = head & 0x0F
        value = int.from_bytes(self.blob[self.position + 1:self.position + 1 + size], "little")
        self.position += 1 + size
        return -value if head & 0x80 else value

    def string(self) -> str:
        size = self.integer()
        text = self.blob[self.position:self.position + size].decode("ascii")
        self.position += size
        return text

    def real(self) -> float:
        mantissa = self.integer()
        return mantissa * 2.0 ** self.integer()

    def tensor(self) -> np.ndarray:
        version = self.integer()
        if version != 2:
            raise ValueError(f"tensor serialisation version {version}, expected 2")
        shape = tuple(self.integer() for _ in range(4))
        count = int(np.prod(shape))
        values = np.frombuffer(self.blob, "<f4", count, self.position).astype(np.float32)
        self.position += 4 * count
        return values.reshape(shape)
