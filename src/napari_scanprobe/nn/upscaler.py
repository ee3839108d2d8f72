"""The upscaler network's architecture (torch-free): its description, tensor shapes and context.

The torch module is :class:`napari_scanprobe.nn.networks.ResidualESPCN`: a 5x5 convolution
(``features``) -> PReLU -> ``layers`` x (3x3 -> PReLU) -> 3x3 to ``factor**2`` channels made
zero-mean per block -> PixelShuffle. :mod:`napari_scanprobe.process.superres` trains and applies it.
"""

from __future__ import annotations

ARCHITECTURE = "espcn-zero-mean-detail"


def architecture(factor: int, features: int, layers: int) -> dict:
    """The description of a ×``factor`` upscaler network (saved beside its weights)."""
    return {
        "name": ARCHITECTURE,
        "factor": factor,
        "features": features,
        "layers": layers,
        "head_kernel": 5,
        "activation": "prelu",
    }


def expected_shapes(arch: dict) -> dict[str, tuple[int, ...]]:
    """Parameter names -> shapes of the network ``arch`` describes (checked when weights load)."""
    f, c, n, k = arch["factor"], arch["features"], arch["layers"], arch["head_kernel"]
    shapes = {"head.weight": (c, 1, k, k), "head.bias": (c,), "head_act.weight": (c,)}
    for i in range(n):
        shapes[f"body.{i}.weight"] = (c, c, 3, 3)
        shapes[f"body.{i}.bias"] = (c,)
        shapes[f"body_act.{i}.weight"] = (c,)
    shapes["tail.weight"] = (f * f, c, 3, 3)
    shapes["tail.bias"] = (f * f,)
    return shapes


def receptive_radius(arch: dict) -> int:
    """Coarse pixels of context the network needs on every side (its valid convolutions eat them)."""
    return arch["head_kernel"] // 2 + arch["layers"] + 1


def build_upscaler(arch: dict):
    """A fresh :class:`~napari_scanprobe.nn.networks.ResidualESPCN` for ``arch``. Imports torch."""
    from .networks import ResidualESPCN

    if arch.get("name") != ARCHITECTURE:
        raise ValueError(f"architecture {arch.get('name')!r} is not {ARCHITECTURE!r}")
    return ResidualESPCN(arch["factor"], arch["features"], arch["layers"], arch["head_kernel"])
