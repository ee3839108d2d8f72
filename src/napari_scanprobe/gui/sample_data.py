"""npe2 sample data: the synthetic AFM scan as layers."""

from __future__ import annotations

from ..synthetic import synthetic_scan
from .layers import scan_to_layers


def synthetic_afm_scan() -> list[tuple]:
    return scan_to_layers(synthetic_scan())
