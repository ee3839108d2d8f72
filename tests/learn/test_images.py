"""Pictures (PNG/JPEG) and TIFF exports as classifier inputs; small scans mirrored up."""

from __future__ import annotations

import numpy as np
import pytest

from napari_scanprobe.io import ReaderError
from napari_scanprobe.learn.data import model_input, read_example
from napari_scanprobe.learn.images import read_image_export
from napari_scanprobe.learn.train import train

from .conftest import SIZE, SMALL_NET, blob_data


def test_grey_and_colour_pictures_are_read_as_one_grey_channel(tmp_path):
    from PIL import Image

    grey = (np.arange(40 * 30) % 256).astype(np.uint8).reshape(40, 30)
    Image.fromarray(grey).save(tmp_path / "g.png")
    Image.fromarray(np.stack([grey, grey // 2, grey // 4], -1)).save(tmp_path / "c.png")
    Image.fromarray(grey).save(tmp_path / "g.jpg", quality=100)
    assert np.array_equal(read_image_export(tmp_path / "g.png"), grey)
    colour = read_image_export(tmp_path / "c.png")
    assert colour.shape == (40, 30)
    assert np.allclose(colour, (grey.astype(float) + grey // 2 + grey // 4) / 3)
    example = read_example(tmp_path / "g.jpg")
    assert example.pixel_size is None and example.shape == (40, 30)


def test_a_broken_picture_is_one_reader_error(tmp_path):
    (tmp_path / "x.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(ReaderError, match="x.png.*not a readable PNG/JPEG picture"):
        read_example(tmp_path / "x.png")


def test_a_partial_scan_is_mirrored_up_to_the_input_and_a_tiny_one_refused():
    spec = {"pixel_size": None, "input_size": 48, "preprocessing": []}
    rows = np.random.default_rng(0).normal(size=(30, 64))
    view = model_input([rows], None, spec)
    assert view.shape == (1, 48, 64)
    assert np.allclose(view[0, 30:], view[0, 29:11:-1])  # mirrored rows below the real ones
    with pytest.raises(ValueError, match="needs at least 24 px on each side"):
        model_input([rows[:20]], None, spec)


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_training_on_a_folder_of_pictures(tmp_path, suffix):
    import tifffile
    from PIL import Image

    for category, images in blob_data(12, seed=2).items():
        (tmp_path / category).mkdir()
        for i, image in enumerate(images):
            grey = np.clip((image - image.min()) / np.ptp(image) * 65535, 0, 65535).astype(np.uint16)
            if suffix == ".png":
                Image.fromarray(grey).save(tmp_path / category / f"{i}.png")
            else:
                tifffile.imwrite(tmp_path / category / f"{i}.tif", grey)
    model = train(tmp_path, input_size=SIZE, pixel_size=2.0, epochs=4, architecture=SMALL_NET)
    assert model.training["images_per_category"] == {"blob": 12, "plain": 12}
    assert model.pixel_size == 2.0 and not model.training["skipped"]
