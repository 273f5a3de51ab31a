"""Snap prices and quantities to a tick or step grid and print them the way Binance does.

Values are rebuilt as ``integer_count * grid_int / 10**decimals``: one correctly rounded float
division, so each float is exactly what a client gets when it parses the decimal string we print.
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np
from numpy.typing import NDArray

BINANCE_DECIMALS = 8
"""Binance prints spot prices and quantities with 8 decimals."""

_EPS = 1e-9


def decimals_of(size: float) -> int:
    """Return how many decimals a grid size needs, e.g. 0.01 -> 2, 5.0 -> 0."""
    exponent = Decimal(repr(size)).normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


class Quantizer:
    """A price or quantity grid such as PRICE_FILTER.tickSize or LOT_SIZE.stepSize."""

    def __init__(self, size: float) -> None:
        """Build the grid.

        Args:
            size: Grid spacing, e.g. 0.01.
        """
        if size <= 0:
            raise ValueError("grid size must be positive")
        self.size = size
        self.decimals = decimals_of(size)
        self._scale = 10.0**self.decimals
        self._grid_int = round(size * self._scale)
        padding = max(0, BINANCE_DECIMALS - self.decimals)
        # Printing with the grid's own decimals is exact; the zero padding mimics Binance.
        if self.decimals == 0:
            self.fmt = "%.0f" + ("." + "0" * padding if padding else "")
        else:
            self.fmt = f"%.{self.decimals}f" + "0" * padding

    def from_counts(self, counts: NDArray[np.float64]) -> NDArray[np.float64]:
        """Return the grid values for integer grid counts."""
        result: NDArray[np.float64] = (counts * self._grid_int) / self._scale
        return result

    def counts(self, values: NDArray[np.float64]) -> NDArray[np.float64]:
        """Return the nearest grid counts of values."""
        result: NDArray[np.float64] = np.rint(values / self.size)
        return result

    def round(self, values: NDArray[np.float64]) -> NDArray[np.float64]:
        """Snap values to the nearest grid point."""
        return self.from_counts(np.rint(values / self.size))

    def ceil(self, values: NDArray[np.float64]) -> NDArray[np.float64]:
        """Snap values up to the grid (values already on it stay put)."""
        return self.from_counts(np.ceil(values / self.size - _EPS))

    def floor(self, values: NDArray[np.float64]) -> NDArray[np.float64]:
        """Snap values down to the grid (values already on it stay put)."""
        return self.from_counts(np.floor(values / self.size + _EPS))

    def round_one(self, value: float) -> float:
        """Snap one value to the nearest grid point."""
        return float(self.round(np.asarray([value], dtype=np.float64))[0])

    def format(self, value: float) -> str:
        """Print a grid value the Binance way, e.g. "60000.01000000"."""
        return self.fmt % value
