"""Recipes: what was done to a scan, as a file that replays it on arrays and on other files.

A recipe is a JSON or YAML file (the extension decides: ``.json``, ``.yaml``/``.yml``)::

    format: napari-scanprobe recipe
    version: 1
    channels: ["Z (forward)"]          # which channels of each file; [] or absent: every channel
    steps:
      - {step: flatten, method: auto, options: {threshold: 3.0}}
      - {step: denoise, method: median, options: {size: 3}}
      - {step: upscale, method: bicubic, options: {factor: 2}}
      - {step: register, method: phase, options: {reference: first, per_line: false}}
      - {step: predict, model: knobs, sha256: 3f5a...}
      - {step: cam, model: knobs, sha256: 3f5a..., method: gradcam, target: null, layer: null}
      - {step: measure, method: roughness}
      - {step: write, format: .gsf, name: "{stem} {channel}"}

Conventions
-----------
* ``channels``: names matched against each channel's title (``"Z (forward)"``), then its name
  (``"Z"``: the first such channel), case-insensitively -- as for classifier models. ``[]`` or
  absent means every channel of the file. A channel the file lacks is an error for that file.
* Image steps (``flatten``, ``denoise``, ``upscale``, ``register``) are the dicts layers record in
  ``metadata["processing"]`` (see :mod:`napari_scanprobe.process.steps`); they run in order on
  each chosen channel, a movie frame by frame (lazily). Options must be plain values (numbers,
  text, true/false, null). ``upscale`` takes ``factor`` among its options; saved upscaler
  ``weights`` are a path with their ``sha256``, like models. A Noise2Noise ``pair`` names a
  layer of one napari session and cannot be replayed (a movie without ``pair`` uses its frames).
  ``register`` (drift correction, movies only) corrects each chosen channel on its own; its
  flagged frames (lost correlation) are kept and never stop the file or the batch.
* ``predict`` and ``cam`` classify / explain the image *as processed by the steps before
  them*, and the model's own stored preprocessing is applied on top -- exactly as when a
  processed layer is classified in napari. Put them first to use the raw data. The model's
  channels must be among the recipe's channels. ``cam``: ``method`` (``cam``, ``gradcam``,
  ``gradcam++``, ``layercam``), ``target`` (category name or index; null: the predicted one),
  ``layer`` (``block1`` ...; null: the last).
* Model paths (and upscaler weights) are relative to the recipe file (to the working folder
  for a recipe given as a dict); ``sha256`` is the SHA-256 of the model's ``.json``
  description (``sha256sum knobs.json``), which pins the weights by their own SHA-256. A
  missing or different hash is refused before any work, naming the hash the file has.
* ``measure`` (``method: roughness``, no options) measures each chosen 2-D channel as processed
  by the steps before it: ISO 25178 Sa ... Sdq, named ``"<channel>: Sq [nm]"``
  (:mod:`napari_scanprobe.measure.summary`); movies are not measured. The numbers go into
  the result's ``measurements`` and the batch summary's columns.
* ``write`` (last, at most once): ``format`` ``.gsf`` (default), ``.gwy`` or ``.tif``; ``name``
  a template (default ``"{file} {channel}"``) with ``{stem}`` (input file name without its
  extension), ``{file}`` (with it) and ``{channel}`` (the channel title; ``CAM`` for the
  map). The extension is added: the format's, or ``.tif`` for a movie (the one format that
  holds ``(t, y, x)``). Outputs with the same name go into one ``.gwy`` file (a name without
  ``{channel}`` puts all images of a scan, CAM included, in one ``.gwy``); for ``.gsf``/``.tif``
  that is an error. Writes are atomic.

:func:`load_recipe` validates everything up front -- one ``ValueError`` naming the recipe,
the step index and the problem; model files are hash-checked and loaded then.
:func:`run_recipe` applies a recipe to one array (no writing); :func:`run_recipe_file` to one
file, writing its outputs (what ``scanprobe batch`` runs per file).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .io.scan import Channel, Scan, find_channel, role_of_title
from .process.steps import IMAGE_STEPS
from .process.steps import STEPS as CONTRACTS
from .untrusted import load_json, load_yaml, one_line, short_repr

FORMAT = "napari-scanprobe recipe"
VERSION = 1
MODEL_STEPS = ("predict", "cam")
STEPS = tuple(CONTRACTS)
WRITE_FORMATS = CONTRACTS["write"].keys[0].choices
DEFAULT_NAME = CONTRACTS["write"].keys[1].default
MOVIE_FORMAT = ".tif"
#: Top-level keys besides format/version/channels/steps: free text kept as it is.
INFO_KEYS = ("name", "description", "created_with")
#: A recipe file larger than this is refused unread.
MAX_RECIPE_BYTES = 1 << 20
#: The longest write name template.
MAX_NAME = 200

_STEP_KEYS = {
    name: {"step", "method", "options", "version", *(["sha256"] if name == "upscale" else [])}
    if not c.keys
    else {"step", *(o.name for o in c.keys)}
    for name, c in CONTRACTS.items()
}
_TEMPLATE_FIELDS = ("stem", "file", "channel")
_UNSAFE = re.compile(r'[\\/:*?"<>|\x00-\x1f\x7f]')


# --------------------------------------------------------------------------------------
# The recipe
# --------------------------------------------------------------------------------------


@dataclass
class Recipe:
    """A validated recipe (see the module docstring). Build it with :func:`load_recipe`.

    ``steps``: clean step dicts in order, model/weights paths absolute. ``channels``: ``[]``
    = every channel. ``source``: the file it was read from, if any. Loaded models are cached
    in the recipe (and travel with it to batch workers, so they need not read model files).
    """

    steps: list[dict]
    channels: list[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)
    source: str | None = None
    _models: dict = field(default_factory=dict, repr=False, compare=False)

    def step(self, name: str) -> dict | None:
        """The first step called ``name`` (``"write"``, ``"predict"`` ...), or None."""
        return next((s for s in self.steps if s["step"] == name), None)

    @property
    def image_steps(self) -> list[dict]:
        return [s for s in self.steps if s["step"] in IMAGE_STEPS]

    @property
    def writes(self) -> bool:
        return self.step("write") is not None

    @property
    def categories(self) -> list[str]:
        """The predicting (else explaining) model's categories; [] without a model step."""
        step = self.step("predict") or self.step("cam")
        return list(self.model(step).categories) if step else []

    def model(self, step: dict):
        """The classifier of a ``predict``/``cam`` step (loaded once; hash-checked on loading)."""
        key = ("classifier", step["model"], step["sha256"])
        if key not in self._models:
            from .learn.modelfile import load_model

            _check_hash(step["model"], step["sha256"])
            self._models[key] = load_model(step["model"])
        return self._models[key]

    def upscaler(self, step: dict):
        """The saved upscaler weights of an ``upscale`` step, or None (zero-shot training)."""
        path = step["options"].get("weights")
        if path is None:
            return None
        key = ("upscaler", path, step["sha256"])
        if key not in self._models:
            from .process.superres import load_upscaler

            _check_hash(path, step["sha256"])
            self._models[key] = load_upscaler(path)
        return self._models[key]

    def to_dict(self, base: str | os.PathLike | None = None) -> dict:
        """The recipe as plain data; model paths relative to ``base`` (a folder) when given."""
        steps = []
        for s in self.steps:
            s = copy.deepcopy(s)
            if base is not None:
                if "model" in s:
                    s["model"] = _relative(s["model"], base)
                if s.get("options", {}).get("weights"):
                    s["options"]["weights"] = _relative(s["options"]["weights"], base)
            steps.append(s)
        out = {
            "format": FORMAT,
            "version": VERSION,
            **self.info,
            "channels": list(self.channels),
            "steps": steps,
        }
        out.setdefault("created_with", f"napari-scanprobe {__version__}")
        return out

    def fingerprint(self) -> str:
        """SHA-256 of what the recipe does (steps, channels, model hashes -- not file locations)."""
        steps = []
        for s in self.steps:
            s = copy.deepcopy(s)
            s.pop("model", None)
            s.get("options", {}).pop("weights", None)
            steps.append(s)
        text = json.dumps({"channels": self.channels, "steps": steps}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


def _relative(path: str, base: str | os.PathLike) -> str:
    try:
        return Path(os.path.relpath(path, base)).as_posix()
    except ValueError:  # another drive (Windows)
        return str(path)


def model_sha256(path: str | os.PathLike) -> str:
    """The hash a recipe pins a model with: SHA-256 of its ``.json`` description.

    ``path``: the model's ``.safetensors``, its ``.json`` or their common stem. The description
    holds the weights' own SHA-256 (checked whenever the model is loaded), so this one hash
    covers both files. FileNotFoundError when the description is missing.
    """
    from .nn.weights import weight_paths

    _, description = weight_paths(path)
    if not description.is_file():
        raise FileNotFoundError(
            f"{description}: model description not found (a model is NAME.safetensors with NAME.json)"
        )
    return hashlib.sha256(description.read_bytes()).hexdigest()


def _check_hash(path: str, expected: str) -> None:
    actual = model_sha256(path)
    if actual != expected:
        raise ValueError(
            f"{path}: the model changed since the recipe was written (its SHA-256 is {actual}, the recipe says {expected}); "
            "retrain or restore the model, or put the new sha256 in the recipe"
        )


# --------------------------------------------------------------------------------------
# Reading, checking and writing recipes
# --------------------------------------------------------------------------------------


def read_recipe_file(path: str | os.PathLike) -> dict:
    """The raw content of a recipe file (JSON or YAML by extension); ValueError naming it."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".json", ".yaml", ".yml"):
        raise ValueError(f"{path}: a recipe file ends in .json, .yaml or .yml")
    try:
        if not path.is_file():  # a folder, a named pipe or a device is never opened
            if path.exists():
                raise ValueError(f"{path}: not a recipe file (not a regular file)")
            raise FileNotFoundError(f"{path}: recipe file not found")
        if path.stat().st_size > MAX_RECIPE_BYTES:
            raise ValueError(f"{path}: not a recipe (larger than {MAX_RECIPE_BYTES >> 20} MB)")
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a recipe (not UTF-8 text)") from None
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise OSError(f"{path}: cannot read the recipe ({exc.strerror or one_line(exc)})") from None
    return load_json(text, str(path)) if suffix == ".json" else load_yaml(text, str(path))


def load_recipe(recipe: Any, base: str | os.PathLike | None = None) -> Recipe:
    """A checked :class:`Recipe` from a recipe file path, a dict, or a Recipe (returned as is).

    ``base``: the folder relative model paths start from (default: the recipe file's folder;
    the working folder for a dict). Everything is checked before any work: the format and
    version, channel names, each step's method and options, model files (present, hash
    matching, loadable; CAM method, layer and target valid for the model), the write format
    and name template. Raises one ``ValueError`` naming the recipe, the step index and the
    problem (``FileNotFoundError`` for a missing recipe or model file). Values are quoted
    shortened, so even a hostile recipe gives one short line.
    """
    if isinstance(recipe, Recipe):
        return recipe
    try:
        return _load_recipe(recipe, base)
    except (TypeError, OverflowError, RecursionError, KeyError, AttributeError) as exc:
        where = str(recipe) if isinstance(recipe, (str, os.PathLike)) else "recipe"
        raise ValueError(f"{where}: not a valid recipe ({one_line(exc)})") from None


def _load_recipe(recipe: Any, base: str | os.PathLike | None) -> Recipe:
    source = None
    if isinstance(recipe, (str, os.PathLike)):
        source = str(recipe)
        data = read_recipe_file(recipe)
        base = Path(recipe).resolve().parent if base is None else Path(base)
    elif isinstance(recipe, dict):
        data = recipe
        base = Path.cwd() if base is None else Path(base)
    else:
        raise ValueError(f"recipe: expected a recipe file path or a dict, got {type(recipe).__name__}")
    where = source or "recipe"
    if not isinstance(data, dict):
        raise ValueError(
            f"{where}: a recipe is a mapping with 'format', 'version', 'channels' and 'steps', got {type(data).__name__}"
        )
    allowed = ("format", "version", "channels", "steps", *INFO_KEYS)
    unknown = [k for k in data if k not in allowed]
    if unknown:
        raise ValueError(
            f"{where}: unknown key {short_repr(unknown[0])} (a recipe has format, version, channels, steps, {', '.join(INFO_KEYS)})"
        )
    if data.get("format", FORMAT) != FORMAT:
        raise ValueError(f"{where}: format {short_repr(data.get('format'))} is not {FORMAT!r}")
    version = data.get("version", VERSION)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"{where}: version must be a whole number >= 1, got {short_repr(version)}")
    if version > VERSION:
        raise ValueError(
            f"{where}: recipe version {version} was written by a newer napari-scanprobe (this one reads version {VERSION})"
        )
    channels = _check_channels(where, data.get("channels"))
    steps = data.get("steps")
    if not isinstance(steps, list) or not steps:
        raise ValueError(
            f"{where}: 'steps' must be a non-empty list of steps like {{step: flatten, method: auto}}"
        )
    info = {
        k: short_repr(data[k], 1000) if not isinstance(data[k], str) else data[k][:1000]
        for k in INFO_KEYS
        if data.get(k) is not None
    }
    out = Recipe([], channels, info, source)
    seen: set[str] = set()
    for i, raw in enumerate(steps):
        try:
            clean = _check_step(raw, base, out)
            name = clean["step"]
            if name in seen and name in ("predict", "cam", "write"):
                raise ValueError(f"only one {name!r} step is allowed")
            if "write" in seen:
                raise ValueError("'write' must be the last step")
            seen.add(name)
            out.steps.append(clean)
        except (ValueError, FileNotFoundError) as exc:
            kind = raw.get("step") if isinstance(raw, dict) else None
            named = (
                isinstance(kind, str) and kind.isprintable() and len(kind) <= 40
            )  # else the error quotes it short
            label = f"steps[{i}]" + (f" ({kind})" if named else "")
            error = type(exc) if isinstance(exc, FileNotFoundError) else ValueError
            raise error(f"{where}: {label}: {exc}") from None
    return out


def _check_channels(where: str, channels: Any) -> list[str]:
    if channels is None:
        return []
    if isinstance(channels, str):
        channels = [channels]
    if not isinstance(channels, list) or not all(isinstance(c, str) and c.strip() for c in channels):
        raise ValueError(
            f"{where}: 'channels' must be a list of channel names like ['Height (trace)'] ([] = every channel), got {short_repr(channels)}"
        )
    out: list[str] = []
    for c in channels:
        if c.strip().lower() not in (o.lower() for o in out):
            out.append(c.strip())
    return out


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _check_step(raw: Any, base: Path, recipe: Recipe) -> dict:
    if not isinstance(raw, dict) or "step" not in raw:
        raise ValueError(f"expected a mapping with a 'step' key ({', '.join(STEPS)}), got {short_repr(raw)}")
    name = raw["step"]
    if not isinstance(name, str) or name not in STEPS:
        raise ValueError(f"unknown step {short_repr(name)}; choose one of {', '.join(STEPS)}")
    unknown = [k for k in raw if k not in _STEP_KEYS[name]]
    if unknown:
        raise ValueError(
            f"unknown key {short_repr(unknown[0])}; a {name} step has {', '.join(sorted(_STEP_KEYS[name] - {'step'}))}"
        )
    if name in IMAGE_STEPS:
        return _check_image_step(name, raw, base, recipe)
    if name in MODEL_STEPS:
        return _check_model_step(name, raw, base, recipe)
    if name == "measure":
        from .measure.summary import check_measure_method

        if raw.get("options"):
            raise ValueError(f"a measure step takes no options, got {raw['options']!r}")
        return {
            "step": "measure",
            "method": check_measure_method(raw.get("method", "roughness")),
            "options": {},
        }
    return _check_write_step(raw, recipe)


def _resolve(path: Any, base: Path, what: str) -> str:
    if not isinstance(path, (str, os.PathLike)) or not str(path).strip():
        raise ValueError(f"'{what}' must be a file path, got {short_repr(path)}")
    text = str(path)
    if not text.isprintable() or len(text) > 4096 or any(len(part) > 255 for part in Path(text).parts):
        raise ValueError(
            f"'{what}' is not a usable file path (control characters, or a name longer than a file "
            f"system allows): {short_repr(text)}"
        )
    p = Path(os.path.expanduser(text))
    return str(p if p.is_absolute() else (base / p).resolve())


def _check_sha(raw: dict, path: str) -> str:
    sha = raw.get("sha256")
    if sha is None:
        actual = model_sha256(path)  # FileNotFoundError for a missing model
        raise ValueError(
            f'no \'sha256\' for {path} (a recipe pins every model file by its hash); this file\'s is {actual}: add "sha256": "{actual}"'
        )
    if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", sha.strip()):
        raise ValueError(f"'sha256' must be 64 hexadecimal digits, got {short_repr(sha)}")
    return sha.strip().lower()


def _check_image_step(name: str, raw: dict, base: Path, recipe: Recipe) -> dict:
    """An image step checked by its contract (process.steps); options kept as given, cleaned."""
    method = raw.get("method", "auto")
    options = raw.get("options") or {}
    if not isinstance(method, str):
        raise ValueError(f"'method' must be text, got {short_repr(method)}")
    if not isinstance(options, dict):
        raise ValueError(f"'options' must be a mapping, got {short_repr(options)}")
    contract = CONTRACTS[name]
    for key, value in options.items():
        if not isinstance(key, str) or not _plain(value):
            raise ValueError(
                f"option {short_repr(key)}: a recipe holds plain values (numbers, text, true/false, null), not {type(value).__name__}"
            )
        option = (
            next((o for o in contract.options_of(method) if o.name == key), None)
            if method in contract.method_names
            else None
        )
        if key == "pair" and value is not None:
            raise ValueError(
                f"option 'pair' ({short_repr(value)}) names a second observation open in napari and cannot be replayed on "
                "other files; use method 'n2v' (or 'n2n' without a pair on a movie: consecutive frames)"
            )
        if option is not None and option.script_only and value is not None:
            raise ValueError(f"option {key!r} is for scripts and cannot be in a recipe")
    if "mask" in options:
        raise ValueError("option 'mask' is an array and cannot be in a recipe")
    options = {k: v for k, v in options.items() if not (k == "pair" and v is None)}
    options = contract.check(method, options, fill=False)
    clean = {"step": name, "method": method, "options": options}
    if name == "register":
        from .process.register import check_options

        check_options(method, options)
    if name == "upscale":
        options.setdefault("factor", 2)
        weights = options.pop("weights", None)
        if weights is not None:
            if method in ("bicubic", "lanczos"):
                raise ValueError(f"weights: only method 'cnn' (or 'auto') uses weights, not {method!r}")
            options["weights"] = _resolve(weights, base, "weights")
            clean["sha256"] = _check_sha(raw, options["weights"])
            recipe.upscaler(clean)  # hash-checked and loaded now
        elif raw.get("sha256") is not None:
            raise ValueError("'sha256' is for saved upscaler 'weights', and this step has none")
    return clean


def _check_model_step(name: str, raw: dict, base: Path, recipe: Recipe) -> dict:
    path = _resolve(raw.get("model"), base, "model")
    clean: dict[str, Any] = {"step": name, "model": path, "sha256": _check_sha(raw, path)}
    model = recipe.model(clean)  # hash-checked and loaded now: a bad model stops the recipe here
    if name == "cam":
        from .learn.cam import check_layer, check_method, target_index

        clean["method"] = check_method(raw.get("method", "gradcam"))
        clean["layer"] = check_layer(model, clean["method"], raw.get("layer"))
        target = raw.get("target")
        target_index(model, target)
        clean["target"] = target
    if recipe.channels:
        processed = {c.lower() for c in recipe.channels} | {_bare(c).lower() for c in recipe.channels}
        processed |= {role for role in map(role_of_title, recipe.channels) if role is not None}
        for channel in model.channels:
            if not ({channel.lower(), role_of_title(channel)} & processed):
                raise ValueError(
                    f"the model {Path(path).name} needs channel {channel!r}, which the recipe does not process "
                    f"(its channels: {', '.join(map(repr, recipe.channels))}); add it to 'channels'"
                )
    return clean


def _bare(title: str) -> str:
    """``"Height (trace)"`` -> ``"Height"``: a channel title without its direction."""
    return re.sub(r"\s*\((forward|backward|trace|retrace)\)\s*$", "", title, flags=re.IGNORECASE)


def _check_write_step(raw: dict, recipe: Recipe) -> dict:
    fmt = raw.get("format", ".gsf")
    if (
        not isinstance(fmt, str)
        or ("." + fmt.lower().lstrip(".")).replace(".tiff", ".tif") not in WRITE_FORMATS
    ):
        raise ValueError(f"format: {short_repr(fmt)} is not one of {', '.join(WRITE_FORMATS)}")
    fmt = ("." + fmt.lower().lstrip(".")).replace(".tiff", ".tif")
    name = raw.get("name", DEFAULT_NAME)
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"name: expected a file name template like {DEFAULT_NAME!r}, got {short_repr(name)}")
    if len(name) > MAX_NAME:
        raise ValueError(f"name: {short_repr(name)} is longer than {MAX_NAME} characters")
    if re.search(r"[\x00-\x1f\x7f]", name):
        raise ValueError(f"name: {short_repr(name)} holds a control character (newline, tab, NUL …)")
    name = name.strip()
    for ext in (".gsf", ".gwy", ".tif", ".tiff"):  # "{stem} {channel}.gsf": the extension is the format's
        if name.lower().endswith(ext):
            if ext.replace(".tiff", ".tif") != fmt:
                raise ValueError(f"name: {name!r} ends in {ext} but the format is {fmt}")
            name = name[: -len(ext)]
    try:
        parsed = list(string.Formatter().parse(name))
    except ValueError as exc:
        raise ValueError(f"name: {short_repr(name)} is not a valid template ({exc})") from None
    fields = {f for _, f, _, _ in parsed if f is not None}
    for _, f, spec, conversion in parsed:
        if f is not None and (spec or conversion):
            raise ValueError(
                f"name: {{{short_repr(f, 20)}...}} holds a format spec or conversion; a name uses plain "
                f"{', '.join('{' + f + '}' for f in _TEMPLATE_FIELDS)}"
            )
    bad = sorted(fields - set(_TEMPLATE_FIELDS))
    if bad:
        raise ValueError(
            f"name: unknown field {{{bad[0][:30]}}}; use {', '.join('{' + f + '}' for f in _TEMPLATE_FIELDS)}"
        )
    if "/" in name or "\\" in name:
        raise ValueError(
            f"name: {short_repr(name)} must be a file name, not a path (outputs go to the output folder)"
        )
    outputs = len(recipe.channels) + (1 if recipe.step("cam") else 0)
    if fmt != ".gwy" and "channel" not in fields and (not recipe.channels or outputs > 1):
        raise ValueError(
            f"name: {name!r} has no {{channel}}, so the channels of a scan would overwrite each other in one {fmt} file; add {{channel}} or write .gwy"
        )
    return {"step": "write", "format": fmt, "name": name}


def save_recipe(recipe: Any, path: str | os.PathLike) -> Path:
    """Write ``recipe`` (a Recipe or dict) to ``path`` (``.json``, ``.yaml``, ``.yml``) atomically.

    Model paths are written relative to the recipe's folder when they can be. Returns the path.
    """
    from .atomic import atomic_write

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".json", ".yaml", ".yml"):
        raise ValueError(f"{path}: a recipe file ends in .json, .yaml or .yml")
    data = load_recipe(recipe).to_dict(base=path.resolve().parent)
    if suffix == ".json":
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    else:
        import yaml

        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=None)
    return atomic_write(path, text.encode("utf-8"))


def recipe_from_history(
    processing: list[dict],
    channels: list[str] | str | None = None,
    model: str | os.PathLike | None = None,
    cam: bool | dict | None = None,
    write: str | dict | None = None,
) -> Recipe:
    """A recipe replaying a layer's ``metadata["processing"]``, plus optional model and write steps.

    ``processing``: the layer's history (``{"step", "method", "options", "version"}`` dicts; a
    ``cam`` entry, as CAM layers record, becomes a cam step on its model). ``channels``: the
    channel(s) to process (a layer read by the plugin: its channel title). ``model``: a saved
    classifier to add a ``predict`` step with (its hash computed now). ``cam``: True or
    ``{"method", "target", "layer", "model"}`` to add a ``cam`` step (on ``model`` unless it
    names its own). ``write``: a format (``".gsf"``) or ``{"format", "name"}``.
    ValueError when a step cannot be replayed (e.g. a Noise2Noise pair, an unsaved model).
    """
    steps: list[dict] = []
    for i, entry in enumerate(processing or []):
        if not isinstance(entry, dict) or "step" not in entry:
            raise ValueError(f"processing[{i}]: not a processing step: {short_repr(entry)}")
        if entry["step"] in IMAGE_STEPS:
            steps.append(
                {
                    "step": entry["step"],
                    "method": entry.get("method", "auto"),
                    "options": dict(entry.get("options") or {}),
                }
            )
        elif entry["step"] == "cam":
            options = entry.get("options") or {}
            steps.append(
                _cam_step(options.get("model"), {"method": entry.get("method", "gradcam"), **options})
            )
        else:
            raise ValueError(f"processing[{i}]: step {entry['step']!r} cannot be put in a recipe")
    if model is not None:
        steps.append(_model_step("predict", model))
    if cam:
        options = dict(cam) if isinstance(cam, dict) else {}
        if options.get("model", model) is None:
            raise ValueError("cam: give the model to explain (model= or cam={'model': ...})")
        steps.append(_cam_step(options.pop("model", model), options))
    if write is not None:
        steps.append({"step": "write", **({"format": write} if isinstance(write, str) else dict(write))})
    if not steps:
        raise ValueError("the history is empty and nothing else was asked for: no step to put in a recipe")
    if isinstance(channels, str):
        channels = [channels]
    return load_recipe(
        {"format": FORMAT, "version": VERSION, "channels": list(channels or []), "steps": steps}
    )


def _model_step(name: str, model: Any) -> dict:
    if model is None or str(model) in ("", "unsaved model"):
        raise ValueError(
            f"{name}: the model was never saved; save it to a file first, a recipe refers to model files"
        )
    path = str(Path(model).resolve())
    return {"step": name, "model": path, "sha256": model_sha256(path)}


def _cam_step(model: Any, options: dict) -> dict:
    step = _model_step("cam", model)
    for key in ("method", "target", "layer"):
        if key in options:
            step[key] = options[key]
    return step


# --------------------------------------------------------------------------------------
# Running a recipe
# --------------------------------------------------------------------------------------


@dataclass
class RecipeResult:
    """What :func:`run_recipe` gives.

    ``image``: the processed array (a dict name -> array when a dict was given); a dask
    movie stays lazy. ``pixel_size``: its ``(dy, dx)`` (divided by an upscale factor), or
    None. ``prediction``: a :class:`~napari_scanprobe.learn.predict.Prediction` when the
    recipe predicts; ``cam``: a :class:`~napari_scanprobe.learn.cam.CamResult` (``.map`` in
    the shape of the image at the cam step) when it has a cam step; ``measurements``: the
    measure step's numbers by name.
    """

    image: Any
    pixel_size: tuple[float, float] | None = None
    prediction: Any = None
    cam: Any = None
    measurements: dict[str, float] = field(default_factory=dict)


@dataclass
class FileResult:
    """What :func:`run_recipe_file` did with one input. ``status``: ok, failed, skipped (done).

    ``category``/``probabilities``: the prediction (else the CAM's explained category);
    ``frames``: a movie's frame count; ``outputs``: the files written; ``measurements``: the
    measure step's numbers by name (``"Z (forward): Sq [nm]"``).
    """

    input: str
    status: str = "ok"
    error: str = ""
    category: str | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    frames: int | None = None
    outputs: list[str] = field(default_factory=list)
    measurements: dict[str, float] = field(default_factory=dict)


def _apply_image_step(recipe: Recipe, step: dict, channel: Channel, chosen: dict) -> Channel:
    """One flatten/denoise/upscale step on a Channel: new data, and geometry for upscale.
    ``chosen[channel title]``: what an automatic method reported it chose (Progress extra "auto")."""
    from .process.steps import step_function

    options = dict(step["options"])
    if step["step"] == "denoise" and step["method"] == "auto":

        def keep(update: Any) -> None:
            if "auto" in update.extra:
                chosen[channel.title] = update.extra["auto"]

        options["progress"] = keep
    if step["step"] == "upscale" and options.get("weights") is not None:
        options["weights"] = recipe.upscaler(step)
    data = step_function(step["step"])(channel.data, method=step["method"], **options)
    changes: dict[str, Any] = {"data": data}
    if step["step"] == "upscale":
        from .process.superres import upscaled_geometry

        scale, translate = upscaled_geometry(channel.pixel_size, channel.offset, options["factor"])
        changes.update(pixel_size=scale, offset=translate)
    return dataclasses.replace(channel, **changes)


def _record(step: dict) -> dict:
    """A step as layers record it in ``metadata["processing"]``."""
    out = {k: v for k, v in step.items() if k != "sha256"}
    out["version"] = __version__
    return out


@dataclass
class _Run:
    channels: list[Channel]  # processed, in the recipe's order
    prediction: Any = None
    cam: Any = None
    cam_channel: Channel | None = None  # the channel whose frame the map has
    history: list[dict] = field(default_factory=list)
    measurements: dict[str, float] = field(default_factory=dict)


def _model_example(recipe: Recipe, step: dict, channels: list[Channel], source: str):
    """The model's input from the processed channels (its channels; [] = the first)."""
    from .learn.data import example_from_scan, pick_channels

    model = recipe.model(step)
    scan = Scan(source, "processed", channels)
    try:
        picked = pick_channels(scan, model.channels)
    except ValueError:
        missing = [c for c in model.channels if not _has_channel(channels, c)]
        have = ", ".join(repr(c.title) for c in channels)
        raise ValueError(
            f"{source}: the model {model.name} needs channel {missing[0]!r}; the recipe's channels here are {have}"
        ) from None
    return example_from_scan(scan, model.channels), picked[0]


def _has_channel(channels: list[Channel], wanted: str) -> bool:
    return find_channel(channels, wanted) is not None


def _run(recipe: Recipe, channels: list[Channel], source: str) -> _Run:
    run = _Run(list(channels))
    for step in recipe.steps:
        if step["step"] in IMAGE_STEPS:
            chosen: dict[str, dict] = {}
            run.channels = [_apply_image_step(recipe, step, ch, chosen) for ch in run.channels]
            run.history.append({**_record(step), **({"auto": chosen} if chosen else {})})
        elif step["step"] == "predict":
            from .learn.predict import predict

            example, _ = _model_example(recipe, step, run.channels, source)
            run.prediction = predict(recipe.model(step), example)
        elif step["step"] == "cam":
            from .learn.cam import cam_lazy

            example, first = _model_example(recipe, step, run.channels, source)
            run.cam = cam_lazy(recipe.model(step), example, step["method"], step["target"], step["layer"])
            run.cam_channel = first
            run.history.append(_record(step))
        elif step["step"] == "measure":
            from .measure.summary import measure_channels

            run.measurements.update(measure_channels(run.channels, step["method"]))
    return run


def run_recipe(recipe: Any, image: Any, pixel_size: Any = None) -> RecipeResult:
    """Apply ``recipe`` (a Recipe, dict or recipe file path) to one image; nothing is written.

    ``image``: a 2-D array or ``(t, y, x)`` stack (a dask stack stays lazy), or a dict channel
    name -> array for a model with several channels (each array gets the image steps).
    ``pixel_size``: nm per pixel (a number or ``(dy, dx)``) -- what a model resamples from;
    None: the image is taken to be at the model's pixel size. The recipe's ``channels`` and
    ``write`` step do not apply to an array. See :class:`RecipeResult`.
    """
    from .learn.data import check_pixel_size
    from .process.common import as_image

    recipe = load_recipe(recipe)
    size = None if pixel_size is None else check_pixel_size(pixel_size, "pixel_size")
    step, unit = size or (1.0, 1.0), "nm" if size else ""
    if isinstance(image, dict):
        if not image:
            raise ValueError("image: the dict of channels is empty")
        channels = [
            Channel(as_image(v, f"image[{k!r}]"), str(k), pixel_size=step, xy_unit=unit)
            for k, v in image.items()
        ]
    else:
        channels = [Channel(as_image(image, "image"), "image", pixel_size=step, xy_unit=unit)]
    run = _run(recipe, channels, "image")
    out_pixel = run.channels[0].pixel_size
    out_size = (float(out_pixel[0]), float(out_pixel[1])) if size else None
    data = {ch.name: ch.data for ch in run.channels} if isinstance(image, dict) else run.channels[0].data
    return RecipeResult(data, out_size, run.prediction, run.cam, run.measurements)


def safe_file_name(text: str) -> str:
    """Text usable in a file name on every system."""
    return _UNSAFE.sub("_", text).strip() or "_"


def output_path(
    recipe: Recipe, outdir: str | os.PathLike, source: str | os.PathLike, channel_title: str, movie: bool
) -> Path:
    """Where the write step puts one output of ``source`` (see the module docstring)."""
    write = recipe.step("write")
    if write is None:
        raise ValueError("the recipe has no write step: it names no output files")
    source = Path(source)
    name = write["name"].format(
        stem=safe_file_name(source.stem),
        file=safe_file_name(source.name),
        channel=safe_file_name(channel_title),
    )
    return Path(outdir) / (name + (MOVIE_FORMAT if movie else write["format"]))


def run_recipe_file(
    recipe: Any, path: str | os.PathLike, outdir: str | os.PathLike | None = None
) -> FileResult:
    """Apply ``recipe`` to the file ``path`` and write its outputs into the folder ``outdir``.

    Reads the file (an SPM file, or a plain ``.npy``/``.tif`` array as channel ``image``:
    see :mod:`napari_scanprobe.inputs`), takes the recipe's channels (every channel when it names none), runs the
    steps (a movie frame by frame, never whole in memory: results stay lazy and ``.tif``
    writes them frame by frame), predicts/explains, and writes each processed channel (and the
    CAM map, as channel ``CAM``) as the write step says, atomically. Written channels carry
    ``source``, ``channel`` and the ``processing`` history in their metadata.

    Raises ReaderError (unreadable file), ValueError (a missing channel, outputs that would
    overwrite each other, ...) or OSError (cannot write); nothing is half-written.
    """
    from .inputs import read_input
    from .io.write import write as write_file
    from .learn.data import pick_channels

    recipe = load_recipe(recipe)
    if recipe.writes and outdir is None:
        raise ValueError("outdir: the recipe writes files; give the folder for them")
    scan = read_input(path)
    if recipe.channels:
        chosen: list[Channel] = []
        for ch in pick_channels(scan, recipe.channels):
            if all(ch is not c for c in chosen):
                chosen.append(ch)
    else:
        chosen = list(scan.channels)
    run = _run(recipe, chosen, scan.path)
    result = FileResult(str(path), measurements=run.measurements)
    movie = chosen[0].data.ndim == 3
    if movie:
        result.frames = int(chosen[0].data.shape[0])
    if run.prediction is not None:
        result.category, result.probabilities = run.prediction.label, dict(run.prediction.probabilities)
    elif run.cam is not None:
        result.category, result.probabilities = run.cam.category, dict(run.cam.probabilities)
    if not recipe.writes:
        return result
    assert outdir is not None  # checked before any work: a recipe that writes needs the folder

    outputs: list[tuple[str, Channel]] = []
    for ch in run.channels:
        header = {
            "source": scan.path,
            "channel": ch.title,
            "processing": [s for s in run.history if s["step"] in IMAGE_STEPS],
        }
        if recipe.source:
            header["recipe"] = recipe.source
        outputs.append((ch.title, dataclasses.replace(ch, header=header)))
    if run.cam is not None:
        from .learn.cam import cam_channel

        cam_map = cam_channel(
            run.cam,
            recipe.model(recipe.step("cam")),
            like=run.cam_channel,
            source=scan.path,
            processing=run.history,
        )
        if recipe.source:
            cam_map.header["recipe"] = recipe.source
        outputs.append(("CAM", cam_map))

    groups: dict[Path, list[tuple[str, Channel]]] = {}
    for title, ch in outputs:
        target = output_path(recipe, outdir, scan.path, title, ch.data.ndim == 3)
        groups.setdefault(target, []).append((title, ch))
    for target, members in groups.items():
        if len(members) > 1 and target.suffix != ".gwy":
            names = " and ".join(repr(t) for t, _ in members[:2])
            # load_recipe has made sure the name holds {channel} wherever a scan gives several outputs
            raise ValueError(
                f"{path}: channels {names} would both be written to {target.name} (their titles give the same "
                "file name); write .gwy, which holds several images in one file"
            )
    Path(outdir).mkdir(parents=True, exist_ok=True)
    for target, members in groups.items():
        write_file(target, [ch for _, ch in members])
        result.outputs.append(str(target))
    return result
