"""napari-scanprobe: scanning probe microscopy data in napari, and from scripts.

The scripting API::

    import napari_scanprobe as sp
    scan = sp.read("sample.spm")          # every channel, with physical scale and units
    for ch in scan.channels:
        print(ch.title, ch.data.shape, ch.pixel_size, ch.z_unit)

This module stays light: importing it loads numpy, never napari, Qt or torch.
"""

from .io import Channel, ReaderError, Scan, read

__version__ = "0.1.0"
__all__ = ["Channel", "ReaderError", "Scan", "read", "__version__"]
