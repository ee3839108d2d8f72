"""The classifier network: operation blocks, then a head, then one output per category.

Block ``i`` is ``conv(k×k, filters·2^i) → [batch norm] → ReLU → [max-pool 2×2]``; the number of
filters doubles block by block. The first ``pooled_blocks`` blocks end with the pooling. Head
``"gap"`` (the default) is global average pooling → dropout → linear, and by default the last two
blocks keep their resolution (no pooling): the class activation map of the CAM method (Zhou et
al. 2016) is then exact and a quarter of the input's resolution -- fine enough to point at
features a few pixels across (with pooling after every block, a 128-px input gives a 16×16 map
that cannot). Head ``"dense"`` is flatten → dropout → dense(ReLU) → dropout → linear, which needs a
fixed input size; it pools after every block by default. The output is logits; softmax gives the
probabilities, cross-entropy trains them.

Every block's ReLU output is a CAM target layer, named ``"block1"`` … ``"blockN"``
(:meth:`ScanprobeCNN.target_layers`); the default is the last one.
"""

from __future__ import annotations

from typing import Any

ARCHITECTURE = "scanprobe-cnn"

#: Defaults: 4 blocks of 8-16-32-64 filters (pooling after the first two), 3×3 kernels, GAP head.
DEFAULT_ARCHITECTURE = {
    "name": ARCHITECTURE,
    "blocks": 4,
    "filters": 8,
    "kernel_size": 3,
    "dropout": 0.3,
    "head": "gap",
    "dense_units": 64,
    "batch_norm": True,
    "pooled_blocks": None,  # None: blocks - 2 for the gap head (at least 1), every block for dense
}

HEADS = ("gap", "dense")


def _int(arch: dict, key: str, lo: int, hi: int) -> int:
    value = arch[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or not lo <= value <= hi:
        raise ValueError(f"architecture: {key} must be an integer in [{lo}, {hi}], got {value!r}")
    return int(value)


def check_architecture(arch: dict | None, in_channels: int, n_classes: int, input_size: int) -> dict:
    """The full architecture dict (defaults filled in), or ValueError naming the bad option."""
    full = dict(DEFAULT_ARCHITECTURE)
    if arch:
        unknown = set(arch) - set(DEFAULT_ARCHITECTURE) - {"in_channels", "n_classes", "input_size"}
        if unknown:
            raise ValueError(f"architecture: unknown option(s) {sorted(unknown)}; known: {sorted(DEFAULT_ARCHITECTURE)}")
        full.update(arch)
    full.update(in_channels=in_channels, n_classes=n_classes, input_size=input_size)
    if full["name"] != ARCHITECTURE:
        raise ValueError(f"architecture: {full['name']!r} is not {ARCHITECTURE!r}")
    _int(full, "blocks", 1, 8)
    _int(full, "filters", 1, 512)
    _int(full, "dense_units", 1, 4096)
    _int(full, "in_channels", 1, 64)
    _int(full, "n_classes", 2, 1000)
    _int(full, "input_size", 8, 4096)
    k = _int(full, "kernel_size", 1, 15)
    if k % 2 == 0:
        raise ValueError(f"architecture: kernel_size must be odd, got {k}")
    if full["head"] not in HEADS:
        raise ValueError(f"architecture: head must be one of {HEADS}, got {full['head']!r}")
    dropout = full["dropout"]
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"architecture: dropout must be in [0, 1), got {dropout!r}")
    full["dropout"] = float(dropout)
    full["batch_norm"] = bool(full["batch_norm"])
    if full["pooled_blocks"] is None:
        full["pooled_blocks"] = max(1, full["blocks"] - 2) if full["head"] == "gap" else full["blocks"]
    _int(full, "pooled_blocks", 0, full["blocks"])
    pools = pooling_count(full)
    if full["input_size"] % (2**pools):
        raise ValueError(f"input size {full['input_size']} px must be divisible by {2**pools} ({pools} pooling steps)")
    return full


def pooling_count(arch: dict) -> int:
    """How many 2×2 poolings the blocks apply (the first ``pooled_blocks`` blocks pool)."""
    return min(arch["blocks"], arch["pooled_blocks"])


def build_network(arch: dict):
    """A fresh :class:`ScanprobeCNN` for a checked architecture (see :func:`check_architecture`)."""
    return _network_class()(arch)


_CLASS = None


def _network_class():
    global _CLASS
    if _CLASS is not None:
        return _CLASS
    import torch
    from torch import nn

    class ScanprobeCNN(nn.Module):
        """Blocks of conv → [BN] → ReLU → pool, then the head (see the module docstring)."""

        def __init__(self, arch: dict):
            super().__init__()
            self.arch = dict(arch)
            k, bn = arch["kernel_size"], arch["batch_norm"]
            blocks, c_in = [], arch["in_channels"]
            for i in range(arch["blocks"]):
                c_out = arch["filters"] * 2**i
                layers = [nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=not bn)]
                if bn:
                    layers.append(nn.BatchNorm2d(c_out))
                layers.append(nn.ReLU())
                if i < pooling_count(arch):
                    layers.append(nn.MaxPool2d(2))
                blocks.append(nn.Sequential(*layers))
                c_in = c_out
            self.blocks = nn.ModuleList(blocks)
            self.dropout = nn.Dropout(arch["dropout"])
            if arch["head"] == "gap":
                self.dense = None
                self.output = nn.Linear(c_in, arch["n_classes"])
            else:
                side = arch["input_size"] // 2 ** pooling_count(arch)
                self.dense = nn.Linear(c_in * side * side, arch["dense_units"])
                self.output = nn.Linear(arch["dense_units"], arch["n_classes"])

        def target_layers(self) -> dict[str, Any]:
            """CAM target layers: ``"blockI"`` -> the ReLU module of block I (its output is the map)."""
            return {f"block{i + 1}": next(m for m in block if isinstance(m, nn.ReLU)) for i, block in enumerate(self.blocks)}

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for block in self.blocks:
                x = block(x)
            if self.dense is None:
                x = self.dropout(x.mean(dim=(2, 3)))
            else:
                x = self.dropout(torch.relu(self.dense(self.dropout(x.flatten(1)))))
            return self.output(x)

    _CLASS = ScanprobeCNN
    return _CLASS


def expected_shapes(arch: dict) -> dict[str, tuple[int, ...]]:
    """Parameter and buffer names -> shapes of a network with this architecture."""
    net = build_network(arch)
    return {k: tuple(v.shape) for k, v in net.state_dict().items() if v.dtype.is_floating_point}
