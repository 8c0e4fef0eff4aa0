"""A fixed-size binary form for the judge's state: float32 values in one base64 string.

The judge keeps every number of its state as a float32 (:func:`f32` rounds each value as it
is folded in), so packing is lossless and a state stored and read back folds on exactly as
one never stored. Every part of the state is written at its full capacity (a sliding window
of 12 periods is 12 rows from the first period on, unused rows zero), so the packed state of
a canary has the same size at its first period as after four hours: what the deployment's
record carries does not grow with its age.

Pure: the standard library only.
"""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Iterable

_F32 = struct.Struct("<f")
_F32_MAX = 3.4028234663852886e38


def f32(x: float) -> float:
    """``x`` rounded to the nearest float32 (beyond its range: an infinity of the same sign)."""
    if x != x or abs(x) > _F32_MAX:  # NaN, or out of float32's range
        return x if x != x else math.copysign(math.inf, x)
    value: float = _F32.unpack(_F32.pack(x))[0]
    return value


class Packer:
    """Values written in order; ``text()`` is their base64 float32 form."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def add(self, x: float | None) -> None:
        """One value (None as NaN)."""
        self.values.append(math.nan if x is None else float(x))

    def extend(self, xs: Iterable[float], size: int) -> None:
        """Exactly ``size`` values: ``xs`` padded with zeros (more is a bug of the caller)."""
        xs = list(xs)
        if len(xs) > size:
            raise ValueError(f"{len(xs)} values do not fit a field of {size}")
        self.values.extend(float(x) for x in xs)
        self.values.extend([0.0] * (size - len(xs)))

    def rows(self, rows: list[list[float]], capacity: int, width: int) -> None:
        """A window of at most ``capacity`` rows of ``width`` values: its length, then every row."""
        self.add(len(rows))
        for row in rows:
            self.extend(row, width)
        self.extend([], (capacity - len(rows)) * width)

    def text(self) -> str:
        return base64.b64encode(struct.pack(f"<{len(self.values)}f", *self.values)).decode("ascii")


class Unpacker:
    """Reads back what a :class:`Packer` wrote, in the same order."""

    def __init__(self, text: str) -> None:
        try:
            raw = base64.b64decode(text.encode("ascii"), validate=True)
        except (ValueError, UnicodeError) as exc:
            raise ValueError(f"data: not a packed judge state ({exc})") from exc
        if len(raw) % 4:
            raise ValueError("data: not a packed judge state (length is not a multiple of 4 bytes)")
        self._values = struct.unpack(f"<{len(raw) // 4}f", raw)
        self._at = 0

    def take(self) -> float:
        if self._at >= len(self._values):
            raise ValueError("data: the packed judge state is shorter than its layout")
        x = self._values[self._at]
        self._at += 1
        return float(x)

    def take_int(self) -> int:
        x = self.take()
        if not math.isfinite(x) or x != int(x):
            raise ValueError(f"data: expected a whole number in the packed judge state, got {x}")
        return int(x)

    def take_optional_int(self) -> int | None:
        x = self.take()
        return None if math.isnan(x) else int(x)

    def take_list(self, size: int) -> list[float]:
        return [self.take() for _ in range(size)]

    def rows(self, capacity: int, width: int) -> list[list[float]]:
        count = self.take_int()
        if not 0 <= count <= capacity:
            raise ValueError(f"data: a window of {count} rows in a field of {capacity}")
        rows = [self.take_list(width) for _ in range(capacity)]
        return rows[:count]

    def done(self) -> None:
        if self._at != len(self._values):
            raise ValueError("data: the packed judge state is longer than its layout")
