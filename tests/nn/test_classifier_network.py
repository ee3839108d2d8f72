"""The network's shape: defaults chosen for class activation maps, options checked, receptive field."""

from __future__ import annotations

import pytest

from napari_scanprobe.nn.classifier import build_network, check_architecture, pooling_count, receptive_field


def convs(arch: dict) -> list[tuple[int, int]]:
    """(kernel size, output channels) of every convolution, first to last."""
    import torch

    net = build_network(arch)
    return [(m.kernel_size[0], m.out_channels) for m in net.modules() if isinstance(m, torch.nn.Conv2d)]


def test_gap_defaults_pool_once_and_end_with_a_1x1_block():
    arch = check_architecture(None, in_channels=1, n_classes=2, input_size=128)
    assert convs(arch) == [(3, 8), (3, 16), (3, 32), (1, 64)]
    assert pooling_count(arch) == 1
    # 3x3 conv (3) + pool (+1, stride 2) + two 3x3 convs at stride 2 (+4 each) + the 1x1 block (+0)
    assert receptive_field(arch) == 12


def test_dense_head_keeps_the_kernel_everywhere_and_pools_after_every_block():
    arch = check_architecture({"head": "dense", "kernel_size": 5}, in_channels=1, n_classes=3, input_size=64)
    assert [k for k, _ in convs(arch)] == [5, 5, 5, 5]
    assert pooling_count(arch) == 4


def test_one_block_gap_network_keeps_its_kernel():
    arch = check_architecture({"blocks": 1}, in_channels=1, n_classes=2, input_size=32)
    assert convs(arch) == [(3, 8)]


def test_receptive_field_counts_every_kernel_and_pooling():
    arch = check_architecture(
        {"blocks": 3, "pooled_blocks": 3, "last_kernel_size": 3}, in_channels=1, n_classes=2, input_size=64
    )
    # conv 3 -> 3, pool -> 4 (stride 2), conv -> 8, pool -> 10 (stride 4), conv -> 18, pool -> 22
    assert receptive_field(arch) == 22


@pytest.mark.parametrize(
    ("arch", "message"),
    [
        ({"last_kernel_size": 4}, "last_kernel_size must be odd"),
        ({"last_kernel_size": 0}, r"last_kernel_size must be an integer in \[1, 15\]"),
        ({"head": "max"}, "head must be one of"),
    ],
)
def test_bad_architecture_options_are_named(arch, message):
    with pytest.raises(ValueError, match=message):
        check_architecture(arch, in_channels=1, n_classes=2, input_size=64)


@pytest.mark.parametrize("arch", [{}, {"head": "dense", "blocks": 3}, {"batch_norm": False}])
def test_network_for_inference_computes_the_same_function(arch):
    import torch

    from napari_scanprobe.nn.classifier import as_input

    full = check_architecture(arch, in_channels=2, n_classes=3, input_size=64)
    torch.manual_seed(0)
    net = build_network(full)
    for m in net.modules():  # trained-looking statistics, not the identity of a fresh batch norm
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.normal_()
            m.bias.data.normal_()
    x = torch.randn(5, 2, 64, 64)
    with torch.inference_mode():
        expected = net.eval()(x)
        fast = net.for_inference()
        got = fast(as_input(x.numpy(), "cpu"))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    assert set(fast.target_layers()) == {f"block{i + 1}" for i in range(full["blocks"])}
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
