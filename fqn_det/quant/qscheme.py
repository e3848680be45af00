"""Quantization schemes: bit width, symmetry and granularity in one place.

A scheme maps a real range ``[min_val, max_val]`` to an integer grid
``[quant_min, quant_max]``:

    q = clamp(round(x / scale + zero_point), quant_min, quant_max)
    x_hat = (q - zero_point) * scale

Asymmetric schemes use the unsigned grid ``[0, 2^b - 1]`` and an integer
zero-point, so the real value 0 is exactly representable (FQN's zero-point
alignment: zero padding stays exact). Symmetric schemes use the restricted
signed grid ``[-(2^(b-1) - 1), 2^(b-1) - 1]`` with zero-point 0.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

MIN_BITS, MAX_BITS = 2, 8


@dataclass(frozen=True)
class QScheme:
    """An affine quantization scheme.

    Args:
        bits (int): Bit width, 2..8. Defaults to 4.
        symmetric (bool): Zero-point fixed at 0 on a signed grid. Defaults to False.
        per_channel (bool): One (scale, zero_point) per slice along ``ch_axis``.
            Defaults to False.
        ch_axis (int): Channel axis for per-channel schemes. Defaults to 0.
    """

    bits: int = 4
    symmetric: bool = False
    per_channel: bool = False
    ch_axis: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.bits, bool) or not isinstance(self.bits, int):
            raise TypeError(f'bits must be an int in [{MIN_BITS}, {MAX_BITS}], got {self.bits!r}')
        if not MIN_BITS <= self.bits <= MAX_BITS:
            raise ValueError(f'bits must be in [{MIN_BITS}, {MAX_BITS}], got {self.bits}')

    @property
    def quant_min(self) -> int:
        return -(2 ** (self.bits - 1) - 1) if self.symmetric else 0

    @property
    def quant_max(self) -> int:
        return 2 ** (self.bits - 1) - 1 if self.symmetric else 2 ** self.bits - 1

    @property
    def num_levels(self) -> int:
        return self.quant_max - self.quant_min + 1

    def with_bits(self, bits: int) -> 'QScheme':
        return replace(self, bits=bits)

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        kind = 'sym' if self.symmetric else 'asym'
        gran = f'per-channel(axis={self.ch_axis})' if self.per_channel else 'per-tensor'
        return f'{self.bits}bit-{kind}-{gran}'
