"""The machinery of step contracts: typed options with ranges, units, labels and help.

A :class:`Step` (flatten, denoise, upscale, predict, ...) has methods; a :class:`Method` has
:class:`Option` s; a step may have options every method takes (``seed``, ``factor``).
``Step.check(method, options)`` validates everything a script, a recipe or a widget passes --
types, ranges, finite numbers, bounded sizes -- and returns clean values with the defaults
filled in; a bad value gives one ``ValueError`` naming the option and quoting at most a short
repr of the value. The table of the built-in steps is in :mod:`napari_scanprobe.process.steps`;
a new step adds one :class:`Step` there and nothing here changes.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any

from ..untrusted import short_repr

#: Option kinds: int, float, bool, choice (one of ``choices``), text, path, array (scripts only:
#: numpy arrays or models), device (None, "cpu", "cuda" or a torch.device).
KINDS = ("int", "float", "bool", "choice", "text", "path", "array", "device")
MAX_TEXT = 4096


@dataclass(frozen=True)
class Option:
    """One typed option. ``low``/``high`` bound numbers (inclusive unless ``*_open``).

    ``nullable``: None is allowed (``none_means`` says what it then does). ``script_only``:
    scripts may pass it, but it is not a control in the GUI nor a plain value in a recipe
    (arrays, devices, thread counts).
    """

    name: str
    kind: str
    default: Any = None
    label: str = ""
    help: str = ""
    unit: str = ""
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple = ()
    nullable: bool = False
    none_means: str = ""
    script_only: bool = False

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"option {self.name}: unknown kind {self.kind!r}")

    @property
    def title(self) -> str:
        """The label a microscopist reads, with the unit: ``"Window size (px)"``."""
        label = self.label or self.name.replace("_", " ")
        return f"{label} ({self.unit})" if self.unit else label

    @property
    def bounds_text(self) -> str:
        """The allowed values without null: ``"1 … 31"``, ``"> 0 … 10"``, ``"2, 4"``."""
        if self.kind == "choice":
            return ", ".join(map(str, self.choices))
        if self.kind in ("int", "float") and (self.low is not None or self.high is not None):
            lo = "" if self.low is None else f"{'> ' if self.low_open else ''}{self.low:g}"
            hi = "" if self.high is None else f"{'< ' if self.high_open else ''}{self.high:g}"
            return f"{lo} … {hi}".strip()
        return {"bool": "true, false", "text": "text", "path": "file path"}.get(self.kind, "")

    @property
    def range_text(self) -> str:
        """The allowed values in words, null included: ``"> 0 … 10, or null (auto)"``."""
        text = self.bounds_text
        if self.nullable:
            text = f"{text}, or null ({self.none_means})" if text else f"null ({self.none_means})"
        return text

    def check(self, value: Any) -> Any:
        """``value`` checked and converted (int, float, bool, str); ValueError naming the option."""
        name = self.name
        if value is None:
            if self.nullable:
                return None
            raise ValueError(f"{name}: a value is needed (got null)")
        if self.kind == "bool":
            if type(value).__name__ not in ("bool", "bool_"):
                raise ValueError(f"{name}: expected true or false, got {short_repr(value)}")
            return bool(value)
        if self.kind == "choice":
            try:
                ok = any(type(value) is not bool and value == c for c in self.choices)
            except Exception:
                ok = False
            if not ok:
                raise ValueError(f"{name}: {short_repr(value)} is not one of {self.bounds_text}")
            return next(c for c in self.choices if value == c)
        if self.kind in ("text", "path"):
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{name}: expected {self.range_text}, got {short_repr(value)}")
            if len(value) > MAX_TEXT or "\x00" in value:
                raise ValueError(f"{name}: {short_repr(value)} is too long or holds a NUL character")
            return value
        if self.kind == "device":
            if isinstance(value, str) or type(value).__name__ == "device":
                return value
            raise ValueError(
                f"{name}: expected None, 'cpu', 'cuda' or a torch.device, got {short_repr(value)}"
            )
        if self.kind == "array":
            return value
        return self._number(value)

    def _number(self, value: Any) -> int | float:
        name, unit = self.name, f" {self.unit}" if self.unit else ""
        whole = self.kind == "int"
        kind = numbers.Integral if whole else numbers.Real
        if type(value).__name__ in ("bool", "bool_") or not isinstance(value, kind):
            want = "a whole number" if whole else "a number"
            raise ValueError(f"{name}: expected {want}, got {short_repr(value)}")
        try:
            number = int(value) if whole else float(value)  # type: ignore[call-overload]
        except (OverflowError, ValueError):
            number = math.inf
        if not whole and not math.isfinite(number):
            raise ValueError(f"{name}: expected a finite number, got {short_repr(value)}")
        lo, hi = self.low, self.high
        too_low = lo is not None and (number < lo or (self.low_open and number == lo))
        too_high = hi is not None and (number > hi or (self.high_open and number == hi))
        if too_low or too_high:
            raise ValueError(f"{name}: {short_repr(number, 30)}{unit} is outside {self.bounds_text}{unit}")
        return number


@dataclass(frozen=True)
class Method:
    """One method of a step: its name, a label and help, its own options."""

    name: str
    help: str
    options: tuple[Option, ...] = ()
    label: str = ""
    long: bool = False  # trains a network or takes minutes: run through the step's generator
    preview: bool = False  # fast enough for a live preview of one frame

    def option(self, name: str) -> Option | None:
        return next((o for o in self.options if o.name == name), None)


@dataclass(frozen=True)
class Step:
    """A processing step: methods, options common to every method, and what runs it.

    ``function``: ``"module:function"`` called as ``function(image, method=..., **options)``
    for image steps; None for steps only a recipe runs (predict, cam, write), whose ``keys``
    are read from the step's dict itself rather than from ``options``.
    """

    name: str
    label: str
    help: str
    methods: tuple[Method, ...]
    common: tuple[Option, ...] = ()
    function: str | None = None
    keys: tuple[Option, ...] = field(default_factory=tuple)

    @property
    def method_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.methods)

    def method(self, name: Any) -> Method:
        """The :class:`Method` called ``name``; ValueError listing the choices."""
        for m in self.methods:
            if isinstance(name, str) and m.name == name:
                return m
        raise ValueError(f"method: unknown {short_repr(name)}; choose one of {', '.join(self.method_names)}")

    def options_of(self, method: str) -> tuple[Option, ...]:
        """Every option ``method`` takes: its own, then the step's common ones."""
        return (*self.method(method).options, *self.common)

    def defaults(self, method: str, common: bool = False) -> dict[str, Any]:
        """``{option: default}`` of ``method`` (with the common options when ``common``)."""
        opts = self.options_of(method) if common else self.method(method).options
        return {o.name: o.default for o in opts}

    def check(self, method: Any, options: dict | None = None, fill: bool = True) -> dict[str, Any]:
        """``options`` checked for ``method``: a new dict of clean values.

        ``fill``: add the method's defaults for the options not given (common options are
        only checked, never filled). Unknown options, wrong types, values out of range or not
        finite: one ValueError naming the option.
        """
        m = self.method(method)
        options = {} if options is None else options
        if not isinstance(options, dict):
            raise ValueError(
                f"options: expected a mapping of option names to values, got {short_repr(options)}"
            )
        known = {o.name: o for o in self.options_of(m.name)}
        for key in options:
            if key not in known:
                own = ", ".join(o.name for o in m.options) or "none"
                shown = key if isinstance(key, str) and len(key) <= 40 else short_repr(key)
                raise ValueError(
                    f"{shown}: not an option of {self.name} method {m.name!r} (its options: {own})"
                )
        clean = {o.name: o.default for o in m.options} if fill else {}
        for key, value in options.items():
            clean[key] = known[key].check(value)
        return clean

    def check_option(self, name: str, value: Any) -> Any:
        """One of the step's common options checked (``seed``, ``factor``)."""
        option = next((o for o in self.common if o.name == name), None)
        if option is None:
            raise ValueError(f"{name}: not an option of every {self.name} method")
        return option.check(value)
