"""Rules of the data model that hold for every format (``io/scan.py``)."""

from __future__ import annotations

import numpy as np

from napari_scanprobe.io.scan import Channel, number_repeated_titles


def _channels(*titles: tuple[str, str | None]) -> list[Channel]:
    return [Channel(np.zeros((2, 2)), name, direction) for name, direction in titles]


def test_repeated_titles_are_numbered_in_file_order():
    channels = _channels(("Height", "trace"), ("Height", "retrace"), ("Height", "trace"), ("height", "trace"))
    number_repeated_titles(channels)
    assert [c.title for c in channels] == [
        "Height (trace)",
        "Height (retrace)",  # another direction: another title
        "Height #2 (trace)",
        "height #3 (trace)",  # titles are matched without regard to case, as recipes match them
    ]


def test_a_number_never_repeats_a_title_the_file_has():
    channels = _channels(("Z", None), ("Z", None), ("Z #2", None))
    number_repeated_titles(channels)
    assert [c.title for c in channels] == ["Z", "Z #3", "Z #2"]


def test_distinct_titles_are_left_alone():
    channels = _channels(("Z", "forward"), ("Z", "backward"), ("Current", "forward"))
    number_repeated_titles(channels)
    assert [c.name for c in channels] == ["Z", "Z", "Current"]
