"""The one Channel <-> layer mapping keeps what a channel measures when a layer goes back to a channel."""

from __future__ import annotations

from napari_scanprobe import read
from napari_scanprobe.gui.layers import channel_to_layer, layer_to_channel


def test_a_layer_back_to_a_channel_keeps_its_role(sample):
    scan = read(sample("nanonis_sxm/test.sxm"))
    for channel in scan.channels:
        data, attributes, _ = channel_to_layer(scan, channel)
        back = layer_to_channel(data, attributes)
        assert back.role == channel.role and back.title == attributes["name"]  # the name holds the direction
        assert back.pixel_size == channel.pixel_size and back.z_unit == channel.z_unit


def test_unknown_words_in_metadata_are_left_out():
    import numpy as np

    back = layer_to_channel(
        np.zeros((4, 4)), {"name": "x", "metadata": {"direction": "sideways", "role": "?"}}
    )
    assert back.direction is None and back.role is None
