"""The classifier network's architecture: operation blocks, then a head, then one output per category.

This module is torch-free (checks, receptive field); the torch module is
:class:`napari_scanprobe.nn.networks.ScanprobeCNN`, built by :func:`build_network`.

Block ``i`` is ``conv(k×k, filters·2^i) → [batch norm] → ReLU → [max-pool 2×2]``; the number of
filters doubles block by block. The first ``pooled_blocks`` blocks (default: every block) end with
the pooling; the last block's kernel is ``last_kernel_size`` (default: ``kernel_size``). The
output is logits; softmax gives the probabilities, cross-entropy trains them.

Head ``"gap"`` (the default) is global average pooling → dropout → linear, the head of the class
activation map (CAM, Zhou et al. 2016). Head ``"dense"`` is flatten → dropout → dense(ReLU) →
dropout → linear, which needs a fixed input size.

The default -- a plain 3-block network of 16-32-64 filters, pooling after every block, GAP head
(receptive field 22 px, 16×16 maps for a 128 px input) -- was chosen for the classification
figures across tasks (``benchmarks/classifier_suite.py --split tune``: the synthetic membranes and
real STM tip quality), not for the sharpest maps. The previous default (4 blocks of 8-16-32-64,
pooling after the first block only, a 1×1 last block), chosen for maps at 64×64 that put 65-75 %
of their energy on the knobs (``benchmarks/cam_quality.py``), scored 99.0 % vs 97.0 % on the
membranes but 89.0 % / ROC AUC 0.951 vs 89.7 % / 0.966 on the STM tune split (one seed each) and
cost more per step; the classifier's figures on real data came first. Its maps are coarser: they
still point at a knob in every image, but put 47 % of their energy on the knobs (the knob mask
itself at 16×16 gets 43 %; see ``docs/classifier.md``); for the sharpest maps train with
``architecture={"blocks": 4, "filters": 8, "pooled_blocks": 1, "last_kernel_size": 1}`` --
models of that network (saved before) load as they are: the file names its architecture.

Every block's ReLU output is a CAM target layer, named ``"block1"`` … ``"blockN"``
(``ScanprobeCNN.target_layers``); the default is the last one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

ARCHITECTURE = "scanprobe-cnn"

#: Defaults: 3 blocks of 16-32-64 filters, 3×3 kernels, each block ending with a 2×2 pooling, GAP head.
DEFAULT_ARCHITECTURE = {
    "name": ARCHITECTURE,
    "blocks": 3,
    "filters": 16,
    "kernel_size": 3,
    "dropout": 0.3,
    "head": "gap",
    "dense_units": 64,
    "batch_norm": True,
    "pooled_blocks": None,  # None: every block pools
    "last_kernel_size": None,  # None: kernel_size
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
        full["last_kernel_size"] = full["kernel_size"]
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
        full["pooled_blocks"] = full["blocks"]
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
