"""Reading what a user or a stranger hands us: recipe files, model descriptions, output folders.

Every entry point (the CLI, batch per file, the widgets) uses these so that bad input ends in one
short line naming the file or parameter and the reason -- never a hang, a traceback or a huge
allocation:

* :func:`short_repr` quotes a bad value in a message, at most ~60 characters, without ever
  formatting the whole of a big or deeply nested value.
* :func:`load_yaml` reads YAML refusing anchors and aliases (the "billion laughs" pattern) and
  Python-specific tags; :func:`load_json` reads JSON turning OverflowError / RecursionError into
  ValueError.
* :func:`one_line` is the error boundary's text for any exception.

Output folders are checked (made, proven writable) by :func:`napari_scanprobe.atomic.output_folder`.
"""

from __future__ import annotations

import json
import reprlib
from typing import Any

#: The longest quoted value in an error message.
MAX_QUOTE = 60
#: Nesting deeper than this in a recipe or model description is refused.
MAX_DEPTH = 64

_repr = reprlib.Repr()
_repr.maxlevel = 2
_repr.maxstring = MAX_QUOTE
_repr.maxother = MAX_QUOTE
_repr.maxlong = 24
for _name in ("maxlist", "maxtuple", "maxdict", "maxset", "maxfrozenset", "maxdeque", "maxarray"):
    setattr(_repr, _name, 4)


def short_repr(value: Any, limit: int = MAX_QUOTE) -> str:
    """``repr(value)`` cut to ``limit`` characters; cheap whatever the size of ``value``."""
    try:
        text = _repr.repr(value)
    except Exception:  # a repr that raises (or a huge int): its type is enough
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def one_line(exc: BaseException) -> str:
    """An exception as one line for the user (its message, else its type), at most 300 characters."""
    if isinstance(exc, RecursionError):
        text = "nested too deeply"
    elif isinstance(exc, MemoryError):
        text = "not enough memory"
    else:
        try:
            text = str(exc)
        except Exception:
            text = ""
    text = " ".join(text.split()) or type(exc).__name__
    if (
        isinstance(exc, (OverflowError, TypeError, KeyError, RecursionError))
        and type(exc).__name__ not in text
    ):
        text = f"{text} ({type(exc).__name__})"
    return text if len(text) <= 300 else text[:299] + "…"


def reason_for(exc: BaseException, name: str) -> str:
    """Why the input ``name`` failed, in one line without its name (a ``ReaderError``'s reason,
    or the message with a leading ``"<name>: "`` taken off): the caller names the input once."""
    reason = getattr(exc, "reason", None)
    text = reason if isinstance(reason, str) else one_line(exc)
    prefix = f"{name}: "
    return text[len(prefix) :] if text.startswith(prefix) else text


def check_depth(data: Any, where: str, limit: int = MAX_DEPTH) -> None:
    """ValueError when ``data`` (plain lists/dicts) nests deeper than ``limit`` (iterative walk)."""
    stack = [(data, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            raise ValueError(f"{where}: nested more than {limit} levels deep")
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)


def load_json(text: str, where: str) -> Any:
    """``json.loads`` with every failure (syntax, 1e999-style overflow, deep nesting) a ValueError."""
    try:
        data = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite, parse_int=_bounded_int)
    except (ValueError, OverflowError, RecursionError) as exc:
        raise ValueError(f"{where}: not valid JSON ({one_line(exc)})") from None
    check_depth(data, where)
    return data


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{short_repr(text, 30)} is too large a number")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > 30:
        raise ValueError(f"{short_repr(text, 30)} has more than 30 digits")
    return int(text)


def load_yaml(text: str, where: str) -> Any:
    """YAML (safe subset) without anchors or aliases; ValueError naming ``where`` otherwise."""
    import yaml

    class _NoAliasLoader(yaml.SafeLoader):
        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise yaml.composer.ComposerError(
                    None, None, "aliases (*name) are not allowed in a recipe", event.start_mark
                )
            event = self.peek_event()
            if getattr(event, "anchor", None) is not None:
                raise yaml.composer.ComposerError(
                    None, None, "anchors (&name) are not allowed in a recipe", event.start_mark
                )
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nested more than {MAX_DEPTH} levels deep", event.start_mark
                )
            self._depth += 1
            try:
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1

    loader = None
    try:
        loader = _NoAliasLoader(text)  # its reader refuses control characters here already
        loader._depth = 0
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f", line {mark.line + 1}" if mark is not None else ""
        raise ValueError(f"{where}: not valid YAML ({exc.problem or exc.context}{at})") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{where}: not valid YAML ({one_line(exc)})") from None
    except (ValueError, OverflowError, RecursionError, TypeError) as exc:
        raise ValueError(f"{where}: not valid YAML ({one_line(exc)})") from None
    finally:
        if loader is not None:
            loader.dispose()
