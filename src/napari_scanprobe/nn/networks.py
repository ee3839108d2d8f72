"""Every torch network of napari-scanprobe, one module-level class each.

This module imports torch and nothing else of the package: import it inside the functions that
need a network (``classifier.build_network``, ``upscaler.build_upscaler``, :func:`build_unet`),
never at the top of a module that ``import napari_scanprobe`` loads. Each network's architecture
(options, checks, expected tensor shapes) is described torch-free in its own module, which builds
the network from here: :mod:`.classifier`, :mod:`.upscaler`; the U-Net has only its width.

* :class:`ScanprobeCNN`: the classifier (blocks → head), its CAM target layers.
* :class:`SmallUNet`: the denoiser of Noise2Void / Noise2Noise (residual two-level U-Net).
* :class:`ResidualESPCN`: the upscaler's zero-mean sub-pixel detail network.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

# --------------------------------------------------------------------------------------------------
# The classifier


class ScanprobeCNN(nn.Module):
    """Blocks of conv → [BN] → ReLU → pool, then the head (see :mod:`.classifier`).

    ``plan``: per block ``(kernel size, output channels, pools)``, from ``classifier.block_plan``.
    """

    def __init__(self, arch: dict, plan: list[tuple[int, int, bool]]):
        super().__init__()
        self.arch = dict(arch)
        bn = arch["batch_norm"]
        blocks, c_in = [], arch["in_channels"]
        for k, c_out, pools in plan:
            layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=not bn)]
            if bn:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.ReLU())
            if pools:
                layers.append(nn.MaxPool2d(2))
            blocks.append(nn.Sequential(*layers))
            c_in = c_out
        self.blocks = nn.ModuleList(blocks)
        self.dropout = nn.Dropout(arch["dropout"])
        if arch["head"] == "gap":
            self.dense = None
            self.output = nn.Linear(c_in, arch["n_classes"])
        else:
            side = arch["input_size"] // 2 ** sum(pools for _, _, pools in plan)
            self.dense = nn.Linear(c_in * side * side, arch["dense_units"])
            self.output = nn.Linear(arch["dense_units"], arch["n_classes"])

    def for_inference(self) -> ScanprobeCNN:
        """This network in eval mode made faster for prediction, the same function: every
        batch norm folded into its convolution (eval mode's fixed statistics make it an affine
        map of the conv's output), and the weights in channels-last memory order, which
        torch's CPU convolutions run faster (feed it ``classifier.as_input``)."""
        from torch.nn.utils.fusion import fuse_conv_bn_eval

        self.eval()
        for i, block in enumerate(self.blocks):
            layers = list(cast(nn.Sequential, block))
            if len(layers) > 1 and isinstance(layers[1], nn.BatchNorm2d):
                self.blocks[i] = nn.Sequential(
                    fuse_conv_bn_eval(cast(nn.Conv2d, layers[0]), layers[1]), *layers[2:]
                )
        # Module.to takes memory_format at run time; torch's overloads leave it out
        return self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    def target_layers(self) -> dict[str, Any]:
        """CAM target layers: ``"blockI"`` -> the ReLU module of block I (its output is the map)."""
        return {
            f"block{i + 1}": next(m for m in cast(nn.Sequential, block) if isinstance(m, nn.ReLU))
            for i, block in enumerate(self.blocks)
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last block's output (N, K, h, w): what the head and CAM see."""
        for block in self.blocks:
            x = block(x)
        return x

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """Logits from the last block's output."""
        if self.dense is None:
            x = self.dropout(x.mean(dim=(2, 3)))
        else:
            x = self.dropout(torch.relu(self.dense(self.dropout(x.flatten(1)))))
        return self.output(x)


# --------------------------------------------------------------------------------------------------
# The denoiser

#: bounds on the log variances (normalised units) so the likelihood cannot run away
LOG_VAR_BOUNDS = (-14.0, 4.0)


def _unet_block(cin: int, cout: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1),
        nn.LeakyReLU(0.1),
        nn.Conv2d(cout, cout, 3, padding=1),
        nn.LeakyReLU(0.1),
    )


class SmallUNet(nn.Module):
    """A residual two-level U-Net, 1 channel in (``features`` channels at full resolution,
    twice that below; about 40 k parameters for 12). Its last layer starts at zero, so the
    untrained network is the identity.

    ``outputs=2`` adds a log prior variance channel and a learnable global log noise variance
    ``log_noise`` (both start at ``noise_variance``), for the blind-spot posterior.
    """

    def __init__(self, features: int, outputs: int = 1, noise_variance: float = 0.02):
        super().__init__()
        f = int(features)
        self.enc1 = _unet_block(1, f)
        self.enc2 = _unet_block(f, 2 * f)
        self.bottom = _unet_block(2 * f, 2 * f)
        self.dec2 = _unet_block(4 * f, 2 * f)
        self.dec1 = _unet_block(3 * f, f)
        self.head = nn.Conv2d(f, outputs, 1)
        head_bias = self.head.bias
        assert head_bias is not None  # Conv2d has a bias unless told bias=False
        with torch.no_grad():  # start as the identity: training only has to learn the correction
            self.head.weight.zero_()
            head_bias.zero_()
        if outputs > 1:
            start = float(np.clip(np.log(max(noise_variance, 1e-12)), *LOG_VAR_BOUNDS))
            self.log_noise = nn.Parameter(torch.tensor(start))
            with torch.no_grad():
                head_bias[1] = start

    def forward(self, x):
        a = self.enc1(x)
        b = self.enc2(F.max_pool2d(a, 2))
        c = self.bottom(F.max_pool2d(b, 2))
        d = self.dec2(torch.cat([F.interpolate(c, scale_factor=2.0, mode="nearest"), b], 1))
        e = self.dec1(torch.cat([F.interpolate(d, scale_factor=2.0, mode="nearest"), a], 1))
        out = self.head(e)
        # residual: the first channel is the input plus a learnt correction
        return torch.cat([x + out[:, :1], out[:, 1:]], 1)


def build_unet(features: int = 12, seed: int = 0, probabilistic: bool = False, noise_variance: float = 0.02):
    """A :class:`SmallUNet` initialised from ``seed`` (the caller's global RNG is left alone).

    ``probabilistic``: the second output and ``log_noise`` of the blind-spot posterior, starting
    at ``noise_variance`` (a poor start, e.g. far too small, converges very slowly: the likelihood
    only sees their sum, so the prior variance absorbs what the noise variance lacks).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return SmallUNet(features, 2 if probabilistic else 1, noise_variance)


# --------------------------------------------------------------------------------------------------
# The upscaler


class ResidualESPCN(nn.Module):
    """Coarse image -> ``factor**2`` zero-mean sub-pixel details -> PixelShuffle.

    Valid convolutions: the input carries ``radius`` pixels of context on every side
    (the image's own neighbours, or its mirror image at the edges); the output covers the
    inner part ×factor. The detail of every ``factor x factor`` block has zero mean, so
    adding it keeps the block averages (the consistency with the coarse pixels).
    """

    def __init__(self, factor: int, features: int, layers: int, head_kernel: int):
        super().__init__()
        self.radius = head_kernel // 2 + layers + 1
        self.factor = factor
        self.head = nn.Conv2d(1, features, head_kernel)
        self.head_act = nn.PReLU(features, init=0.1)
        self.body = nn.ModuleList(nn.Conv2d(features, features, 3) for _ in range(layers))
        self.body_act = nn.ModuleList(nn.PReLU(features, init=0.1) for _ in range(layers))
        self.tail = nn.Conv2d(features, factor * factor, 3)
        self.shuffle = nn.PixelShuffle(factor)
        nn.init.zeros_(self.tail.weight)  # start as the consistent bicubic base
        assert self.tail.bias is not None  # Conv2d has a bias unless told bias=False
        nn.init.zeros_(self.tail.bias)

    def forward(self, coarse: torch.Tensor) -> torch.Tensor:
        h = self.head_act(self.head(coarse))
        for conv, act in zip(self.body, self.body_act):
            h = act(conv(h))
        sub = self.tail(h)  # (n, f*f, h, w): the f x f sub-pixels of every coarse pixel
        sub = sub - sub.mean(dim=1, keepdim=True)  # zero mean per block
        return self.shuffle(sub)
