"""The step contract: one table of methods and typed options, checked the same way everywhere."""

from __future__ import annotations

import inspect
import math
import os
from pathlib import Path

import numpy as np
import pytest

from napari_scanprobe.process.contract import Method, Option, Step
from napari_scanprobe.process.steps import (
    IMAGE_STEPS,
    STEPS,
    apply_steps,
    check_steps,
    contract_markdown,
    step_function,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "recipes.md"
START, END = "<!-- contract:start -->\n", "<!-- contract:end -->\n"


def test_every_step_method_and_option_is_described():
    assert list(STEPS) == ["flatten", "denoise", "upscale", "register", "predict", "cam", "measure", "write"]
    assert IMAGE_STEPS == ("flatten", "denoise", "upscale", "register")
    for step in STEPS.values():
        assert step.label and step.help
        for method in step.methods:
            assert method.help, (step.name, method.name)
            for option in (*method.options, *step.common):
                assert option.label and option.help, (step.name, option.name)
                if option.kind in ("int", "float") and not option.script_only:
                    assert option.low is not None and option.high is not None, option.name  # bounded
                if option.default is not None and option.kind != "array":
                    assert option.check(option.default) == option.default  # defaults are in range


def test_every_image_step_function_takes_its_options():
    for name in IMAGE_STEPS:
        params = inspect.signature(step_function(name)).parameters
        assert "method" in params
        assert any(p.kind is p.VAR_KEYWORD for p in params.values())


@pytest.mark.parametrize(
    ("step", "method", "options", "words"),
    [
        ("denoise", "nl_means", {"patch_size": 10**6}, "patch_size: 1000000 px is outside 1 … 31 px"),
        ("denoise", "nl_means", {"h": float("inf")}, "h: expected a finite number"),
        ("denoise", "median", {"size": 10**400}, "size: 1000000"),
        ("denoise", "median", {"size": True}, "size: expected a whole number"),
        ("flatten", "rows_trimmed_mean", {"trim": 0.5}, "trim: 0.5 is outside 0 … < 0.5"),
        ("flatten", "auto", {"features": ["above"] * 1000}, "features: ['above', 'above'"),
        ("flatten", "plane", {"x" * 10000: 1}, "not an option of flatten method 'plane' (its options: none)"),
        ("upscale", "cnn", {"factor": 3}, "factor: 3 is not one of 2, 4"),
        ("upscale", "bicubic", {"seed": -1}, "seed: -1 is outside 0"),
        ("flatten", "nope", {}, "method: unknown 'nope'; choose one of auto, plane"),
    ],
)
def test_check_names_the_option_and_quotes_it_short(step, method, options, words):
    with pytest.raises(ValueError) as info:
        STEPS[step].check(method, options)
    message = str(info.value)
    assert words in message and len(message) < 300, message


def test_check_fills_defaults_and_converts():
    assert STEPS["flatten"].check("polynomial", {"degree_x": np.int64(3)}) == {"degree_x": 3, "degree_y": 2}
    clean = STEPS["denoise"].check("gaussian", {"sigma": np.float32(1.5)}, fill=False)
    assert clean == {"sigma": 1.5} and type(clean["sigma"]) is float
    assert STEPS["upscale"].check("bicubic", {"factor": 4.0}) == {"factor": 4}
    # one seed rule for every step
    assert STEPS["denoise"].check_option("seed", 7) == STEPS["upscale"].check_option("seed", 7) == 7


def test_a_new_step_needs_only_an_entry():
    measure = Step(
        "measure",
        "Measure",
        "Numbers from an image.",
        (
            Method(
                "roughness",
                "ISO 25178 areal roughness.",
                (Option("cutoff", "float", 8.0, "Cut-off", "Filter", "µm", 0.1, 1e3),),
            ),
        ),
    )
    assert measure.check("roughness", {}) == {"cutoff": 8.0}
    with pytest.raises(ValueError, match="cutoff: 0.0 µm is outside 0.1 … 1000 µm"):
        measure.check("roughness", {"cutoff": 0})
    assert "| `roughness` |" in contract_markdown({"measure": measure})


def test_steps_as_data_run_in_order_and_are_checked_first():
    image = np.add.outer(np.arange(16.0), np.arange(16.0)) + np.random.default_rng(0).normal(size=(16, 16))
    steps = [
        {"step": "flatten", "method": "plane"},
        {"step": "denoise", "method": "median", "options": {"size": 3}},
    ]
    from napari_scanprobe.process.denoise import denoise
    from napari_scanprobe.process.flatten import flatten

    np.testing.assert_allclose(apply_steps(image, steps), denoise(flatten(image, "plane"), "median", size=3))
    with pytest.raises(ValueError, match=r"preprocessing\[1\] \(denoise\): size"):
        check_steps([steps[0], {"step": "denoise", "method": "median", "options": {"size": math.inf}}])


def test_the_docs_table_is_the_contract():
    text = DOCS.read_text(encoding="utf-8")
    head, rest = text.split(START)
    table, tail = rest.split(END)
    if os.environ.get("UPDATE_DOCS"):
        DOCS.write_text(head + START + contract_markdown() + END + tail, encoding="utf-8")
        table = contract_markdown()
    assert table == contract_markdown(), "docs/recipes.md is stale: rerun this test with UPDATE_DOCS=1"
