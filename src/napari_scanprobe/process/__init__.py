"""Preprocessing: flatten, denoise, upscale. numpy in, numpy out; no napari or Qt."""
