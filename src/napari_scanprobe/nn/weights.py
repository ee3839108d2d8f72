"""Network weights on disk: ``<stem>.safetensors`` (tensors) beside ``<stem>.json`` (description).

Safe to share: loading reads plain float tensors with ``safetensors`` and a JSON document --
nothing is unpickled or executed. The JSON records the SHA-256 of the weights file, so a
truncated, swapped or modified file is refused with a message naming it. Both files are written
atomically. Each model kind (upscaler, classifier) checks its own description on top.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ..atomic import atomic_write


def weight_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """``(weights, description)`` paths for ``path``: the ``.safetensors``, the ``.json`` or their stem."""
    p = Path(path)
    if p.suffix.lower() in (".safetensors", ".json"):
        p = p.with_suffix("")
    return p.parent / (p.name + ".safetensors"), p.parent / (p.name + ".json")


def save_weights(
    path: str | os.PathLike, state: dict[str, np.ndarray], description: dict, fmt: str, what: str = "model"
) -> Path:
    """Write ``state`` (name -> float array) and ``description`` (JSON-able); returns the weights path.

    OSError naming the file when its folder does not exist (``what`` names the kind of file)."""
    from safetensors.numpy import save as st_save

    weights_path, description_path = weight_paths(path)
    if not weights_path.parent.is_dir():
        raise OSError(
            f"{weights_path}: cannot save the {what}, the folder {weights_path.parent} does not exist"
        )
    blob = st_save(
        {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in state.items()}, metadata={"format": fmt}
    )
    doc = dict(description)
    doc.update(
        format=fmt,
        weights_file=weights_path.name,
        weights_sha256=hashlib.sha256(blob).hexdigest(),
        weights_bytes=len(blob),
        n_parameters=int(sum(np.asarray(v).size for v in state.values())),
    )
    text = json.dumps(doc, indent=2, sort_keys=True, allow_nan=False) + "\n"
    atomic_write(weights_path, blob)
    atomic_write(description_path, text.encode())
    return weights_path


def load_weights(path: str | os.PathLike, fmt: str, what: str) -> tuple[dict[str, np.ndarray], dict]:
    """Read ``(state, description)`` saved by :func:`save_weights` with format ``fmt``.

    ``what`` names the kind of model in messages ("classifier model"). Raises FileNotFoundError
    when a file is missing and ValueError naming the file when it is damaged, modified after
    saving, or of another kind.
    """
    weights_path, description_path = weight_paths(path)
    for p in (description_path, weights_path):
        if not p.is_file():
            raise FileNotFoundError(
                f"{p}: {what} file not found (a model is {weights_path.name} with its description {description_path.name})"
            )
    try:
        doc = json.loads(description_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(
            f"{description_path}: not a valid {what} description (truncated or damaged JSON: {exc})"
        ) from None
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        found = doc.get("format") if isinstance(doc, dict) else None
        raise ValueError(f"{description_path}: not a {what} (format {found!r}, expected {fmt!r})")
    blob = weights_path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != doc.get("weights_sha256"):
        raise ValueError(
            f"{weights_path}: the weights do not match their description {description_path.name} "
            f"(SHA-256 differs; {len(blob)} bytes, description says {doc.get('weights_bytes')}): "
            "the file is truncated or was modified after saving"
        )
    from safetensors.numpy import load as st_load

    try:
        state = st_load(blob)
    except Exception as exc:
        raise ValueError(f"{weights_path}: not a readable safetensors file ({exc})") from None
    for k, v in state.items():
        if not np.issubdtype(v.dtype, np.floating) or not np.isfinite(v).all():
            raise ValueError(f"{weights_path}: tensor {k!r} is not finite floating point")
    return {k: np.asarray(v, dtype=np.float32) for k, v in state.items()}, doc


def check_shapes(
    weights_path: Path, state: dict[str, np.ndarray], expected: dict[str, tuple[int, ...]]
) -> None:
    """ValueError naming the file when the tensors do not fit the architecture."""
    got = {k: tuple(v.shape) for k, v in state.items()}
    if got != expected:
        missing = sorted(set(expected) - set(got))
        extra = sorted(set(got) - set(expected))
        wrong = sorted(k for k in set(got) & set(expected) if got[k] != expected[k])
        raise ValueError(
            f"{weights_path}: tensors do not fit the architecture (missing {missing}, unexpected {extra}, wrong shape {wrong})"
        )
