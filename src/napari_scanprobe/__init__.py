"""napari-scanprobe: scanning probe microscopy data in napari, and from scripts.

The scripting API::

    import napari_scanprobe as sp
    scan = sp.read("sample.spm")          # every channel, with physical scale and units
    height = scan.channels[0].data
    flat = sp.flatten(height)             # auto: rows, tilt, bow; features masked out
    clean = sp.denoise(flat, "nl_means")
    big = sp.upscale(clean, factor=2)     # zero-shot CNN
    reg = sp.register(movie, pixel_size=0.5)   # drift-corrected movie: reg.movie, reg.table()
    model = sp.train("data/")             # one sub-folder per category
    model.save("knobs")                   # knobs.safetensors + knobs.json
    result = sp.predict(sp.load_model("knobs"), "new.spm")   # label, probabilities
    metrics = sp.evaluate("knobs", "kept_apart/")            # accuracy, AUC, ECE on a labelled folder
    out = sp.run_recipe("flatten_denoise_gsf.yaml", height)  # a recipe on one array: out.image
    r = sp.roughness(scan.channels[0])    # ISO 25178 Sa, Sq ... Sdq with units
    p = sp.profile(scan, [(0, 0), (500, 800)], width=20)   # every channel along a line, in nm

This module stays light: importing it loads numpy, never napari, Qt or torch; the
preprocessing functions are imported on first use.
"""

from .io import Channel, ReaderError, Scan, read

__version__ = "0.1.0"
__all__ = [
    "Channel",
    "ReaderError",
    "Scan",
    "read",
    "flatten",
    "denoise",
    "upscale",
    "register",
    "frame_table",
    "train",
    "pretrain",
    "predict",
    "evaluate",
    "load_model",
    "cam",
    "run_recipe",
    "load_recipe",
    "profile",
    "kymograph",
    "step_height",
    "roughness",
    "height_histogram",
    "__version__",
]

_LAZY = {
    "flatten": "napari_scanprobe.process.flatten",
    "denoise": "napari_scanprobe.process.denoise",
    "upscale": "napari_scanprobe.process.superres",
    "register": "napari_scanprobe.process.register",
    "frame_table": "napari_scanprobe.process.frame_table",
    "train": "napari_scanprobe.learn.train",
    "pretrain": "napari_scanprobe.learn.pretrain",
    "predict": "napari_scanprobe.learn.predict",
    "evaluate": "napari_scanprobe.learn.predict",
    "load_model": "napari_scanprobe.learn.modelfile",
    "cam": "napari_scanprobe.learn.cam",
    "run_recipe": "napari_scanprobe.recipe",
    "load_recipe": "napari_scanprobe.recipe",
    "profile": "napari_scanprobe.measure",
    "kymograph": "napari_scanprobe.measure",
    "step_height": "napari_scanprobe.measure",
    "roughness": "napari_scanprobe.measure",
    "height_histogram": "napari_scanprobe.measure",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'napari_scanprobe' has no attribute {name!r}")
