"""Export an image layer's processing history as a recipe file (``.yaml``/``.yml``/``.json``).

The Preprocess widget's "Export recipe…" button uses :func:`export_layer_recipe`; the
Classifier widget can use the same function with ``model=`` (a saved model adds a predict
step) and ``cam=`` (a cam step). The recipe replays the layer's ``metadata["processing"]``
on the same channel of other files (``scanprobe batch``); see :mod:`napari_scanprobe.recipe`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..recipe import Recipe, recipe_from_history, save_recipe
from .layers import LayerMeta

RECIPE_FILTER = "Recipe (*.yaml *.yml *.json)"


def layer_channels(layer) -> list[str]:
    """The channel title(s) a recipe from ``layer`` processes.

    A layer read by this plugin: its channel (``"Height (trace)"``). A CAM layer: the channels
    of its model (``[]`` when the model uses the first channel). Anything else: ``[]`` (every
    channel of the files the recipe is applied to).
    """
    meta = LayerMeta(layer)
    if meta.is_cam:
        from ..learn.modelfile import load_model

        model = meta.model.get("path")
        try:
            return list(load_model(model).channels) if model else []
        except (OSError, ValueError):
            return []
    return [meta.title] if meta.title else []


def _saved_model(path: Any) -> str | None:
    """``path`` when it names a saved model file, else None."""
    if not path:
        return None
    from ..nn.weights import weight_paths

    weights, description = weight_paths(str(path))
    return str(weights) if weights.is_file() and description.is_file() else None


def layer_recipe(
    layer,
    write: str | dict | None = ".gsf",
    model: str | os.PathLike | None = None,
    cam: bool | dict | None = None,
) -> Recipe:
    """A recipe replaying ``layer``'s processing history, then writing the result.

    ``write``: the output format (``".gsf"``, ``".gwy"``, ``".tif"``), ``{"format", "name"}``
    or None (no write step). ``model``: a saved classifier for a predict step; by default the
    model that classified the layer in the Classifier widget (``metadata["classification"]``),
    when it was saved. ``cam``: True or ``{"method", "target", "layer"}`` for a cam step.
    ValueError when the history cannot be replayed (see ``recipe_from_history``).
    """
    meta = LayerMeta(layer)
    if model is None:
        model = _saved_model(meta.classification.get("model"))
    return recipe_from_history(meta.processing, layer_channels(layer), model=model, cam=cam, write=write)


def export_layer_recipe(
    layer, path: str | os.PathLike, write: str | dict | None = ".gsf", model: Any = None, cam: Any = None
) -> Path:
    """Write :func:`layer_recipe` to ``path`` (format by extension; atomic); returns the path."""
    return save_recipe(layer_recipe(layer, write, model, cam), path)


def ask_recipe_path(parent, layer_name: str = "recipe") -> str | None:
    """A save-file dialog for a recipe; ``.yaml`` is added when no recipe extension is given."""
    from qtpy.QtWidgets import QFileDialog

    suggestion = (
        "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in layer_name).strip("_") or "recipe"
    )
    path, _ = QFileDialog.getSaveFileName(parent, "Export recipe", f"{suggestion}.yaml", RECIPE_FILTER)
    if not path:
        return None
    if Path(path).suffix.lower() not in (".yaml", ".yml", ".json"):
        path += ".yaml"
    return path
