"""The classifier network's architecture: operation blocks, then a head, then one output per category.

This module is torch-free (checks, receptive field); the torch module is
:class:`napari_scanprobe.nn.networks.ScanprobeCNN`, built by :func:`build_network`.

Block ``i`` is ``conv(k×k, filters·2^i) → [batch norm] → ReLU → [max-pool 2×2]``; the number of
filters doubles block by block. The first ``pooled_blocks`` blocks end with the pooling; the last
block's kernel is ``last_kernel_size``. The output is logits; softmax gives the probabilities,
cross-entropy trains them.

Head ``"gap"`` (the default) is global average pooling → dropout → linear, the head of the class
activation map (CAM, Zhou et al. 2016), and its defaults are chosen for maps that lie on the
features a decision rests on: pooling after the first block only (maps at half the input's
resolution: 64×64 for 128 px) and a 1×1 last block, so each position of the last block's map
sums the evidence of its own neighbourhood -- the receptive field of the blocks before it, 12 px
with the defaults (a 3×3 last block would widen it to 16 px at several times the cost). Measured
on the synthetic knob membranes (``benchmarks/cam_quality.py``): with pooling after the first two
blocks, a 3×3 last block and no activation penalty in training, 30 % of a map's energy lay on the
knobs; with these defaults and the penalty (``train.DEFAULTS["sparsity"]``) 65-75 % over three
seeds, at the same or better accuracy.
Against a plain 3-block network of 16-32-64 filters pooling after every block (both trained with
the one-cycle schedule), these defaults classified the membranes better (97.5 vs 95.5 %) and put
69 vs 47 % of the maps' energy on the knobs, while the real STM tip-quality images were a draw
(ROC AUC 0.967 vs 0.966, one seed): see the classifier page of the docs.
Head ``"dense"`` is flatten → dropout → dense(ReLU) → dropout → linear, which needs a fixed input
size; it pools after every block and keeps ``kernel_size`` in the last block by default.

Every block's ReLU output is a CAM target layer, named ``"block1"`` … ``"blockN"``
(``ScanprobeCNN.target_layers``); the default is the last one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

ARCHITECTURE = "scanprobe-cnn"

#: Defaults: 4 blocks of 8-16-32-64 filters, 3×3 kernels, GAP head (pooling after the first block, 1×1 last block).
DEFAULT_ARCHITECTURE = {
    "name": ARCHITECTURE,
    "blocks": 4,
    "filters": 8,
    "kernel_size": 3,
    "dropout": 0.3,
    "head": "gap",
    "dense_units": 64,
    "batch_norm": True,
    "pooled_blocks": None,  # None: blocks - 3 for the gap head (at least 1), every block for dense
    "last_kernel_size": None,  # None: 1 for the gap head (with 2+ blocks), else kernel_size
}

HEADS = ("gap", "dense")


def _int(arch: dict, key: str, lo: int, hi: int) -> int:
    value = arch[key]
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or int(value) != value
        or not lo <= value <= hi
    ):
        raise ValueError(f"architecture: {key} must be an integer in [{lo}, {hi}], got {value!r}")
    return int(value)


def check_architecture(arch: dict | None, in_channels: int, n_classes: int, input_size: int) -> dict:
    """The full architecture dict (defaults filled in), or ValueError naming the bad option."""
    full: dict[str, Any] = dict(DEFAULT_ARCHITECTURE)
    if arch:
        unknown = set(arch) - set(DEFAULT_ARCHITECTURE) - {"in_channels", "n_classes", "input_size"}
        if unknown:
            raise ValueError(
                f"architecture: unknown option(s) {sorted(unknown)}; known: {sorted(DEFAULT_ARCHITECTURE)}"
            )
        full.update(arch)
    full.update(in_channels=in_channels, n_classes=n_classes, input_size=input_size)
    if full["name"] != ARCHITECTURE:
        raise ValueError(f"architecture: {full['name']!r} is not {ARCHITECTURE!r}")
    if full["head"] not in HEADS:
        raise ValueError(f"architecture: head must be one of {HEADS}, got {full['head']!r}")
    _int(full, "blocks", 1, 8)
    _int(full, "filters", 1, 512)
    _int(full, "dense_units", 1, 4096)
    _int(full, "in_channels", 1, 64)
    _int(full, "n_classes", 2, 1000)
    _int(full, "input_size", 8, 4096)
    if full["last_kernel_size"] is None:
        full["last_kernel_size"] = 1 if full["head"] == "gap" and full["blocks"] > 1 else full["kernel_size"]
    for key in ("kernel_size", "last_kernel_size"):
        k = _int(full, key, 1, 15)
        if k % 2 == 0:
            raise ValueError(f"architecture: {key} must be odd, got {k}")
    dropout = full["dropout"]
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"architecture: dropout must be in [0, 1), got {dropout!r}")
    full["dropout"] = float(dropout)
    full["batch_norm"] = bool(full["batch_norm"])
    if full["pooled_blocks"] is None:
        full["pooled_blocks"] = max(1, full["blocks"] - 3) if full["head"] == "gap" else full["blocks"]
    _int(full, "pooled_blocks", 0, full["blocks"])
    pools = pooling_count(full)
    if full["input_size"] % (2**pools):
        raise ValueError(
            f"input size {full['input_size']} px must be divisible by {2**pools} ({pools} pooling steps)"
        )
    return full


def pooling_count(arch: dict) -> int:
    """How many 2×2 poolings the blocks apply (the first ``pooled_blocks`` blocks pool)."""
    return min(arch["blocks"], arch["pooled_blocks"])


def block_kernel_size(arch: dict, i: int) -> int:
    """The kernel size of block ``i`` (0-based): ``last_kernel_size`` for the last, else ``kernel_size``."""
    return arch["last_kernel_size"] if i == arch["blocks"] - 1 else arch["kernel_size"]


def receptive_field(arch: dict) -> int:
    """The receptive field (px of the network's input) of one position of the last block."""
    rf, jump = 1, 1
    for i in range(arch["blocks"]):
        rf += (block_kernel_size(arch, i) - 1) * jump
        if i < pooling_count(arch):
            rf += jump
            jump *= 2
    return rf


def build_network(arch: dict):
    """A fresh :class:`~napari_scanprobe.nn.networks.ScanprobeCNN` for a checked architecture
    (see :func:`check_architecture`). Imports torch."""
    from .networks import ScanprobeCNN

    return ScanprobeCNN(arch, block_plan(arch))


def block_plan(arch: dict) -> list[tuple[int, int, bool]]:
    """Per block: ``(kernel size, output channels, whether it ends with a 2×2 max-pool)``."""
    return [
        (block_kernel_size(arch, i), arch["filters"] * 2**i, i < pooling_count(arch))
        for i in range(arch["blocks"])
    ]


def as_input(batch, device):
    """A numpy batch ``(N, C, H, W)`` as the network's input tensor on ``device`` (channels-last)."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(batch)).to(device, memory_format=torch.channels_last)


def expected_shapes(arch: dict) -> dict[str, tuple[int, ...]]:
    """Parameter and buffer names -> shapes of a network with this architecture."""
    net = build_network(arch)
    return {k: tuple(v.shape) for k, v in net.state_dict().items() if v.dtype.is_floating_point}
