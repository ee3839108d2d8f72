"""The one training loop: schedule, stopping rule (patience, minimum epochs), progress with time left, cancel."""

from __future__ import annotations

import numpy as np
import pytest

from napari_scanprobe.nn.loop import EpochEnd, Plateau, Stopping, fit, time_left
from napari_scanprobe.progress import Progress, run_to_end
from tests.helpers import imported_by

torch = pytest.importorskip("torch")


def line_fit():
    """A one-weight network learning y = 3 x, and a step drawing its own seeded batch."""
    net = torch.nn.Linear(1, 1, bias=False)
    g = torch.Generator().manual_seed(0)

    def step():
        x = torch.randn(16, 1, generator=g)
        return ((net(x) - 3 * x) ** 2).mean()

    return net, step


def test_one_cycle_run_learns_and_reports_every_step_with_time_left():
    net, step = line_fit()
    seen = []
    fitted = run_to_end(fit(net, step, learning_rate=0.1, steps_per_epoch=200), seen.append)
    assert abs(net.weight.item() - 3) < 0.05
    assert [p.step for p in seen] == list(range(1, 201)) and all(p.total == 200 for p in seen)
    assert all(isinstance(p, Progress) and "s left" in p.message for p in seen)
    assert seen[-1].extra["seconds_left"] == 0
    assert fitted.steps == 200 and fitted.epochs == 1 and not net.training
    assert fitted.loss is not None and fitted.last_loss is not None


def test_patience_stops_only_after_the_minimum_epochs_and_keeps_the_best_weights():
    monitored = [5.0, 4.0, 4.5, 4.6, 4.7, 4.8, 4.9, 5.0]  # best at epoch 2, then no progress

    def run(stopping):
        net, step = line_fit()
        at_best = []

        def end_epoch(epoch, lr):
            if epoch == 2:
                at_best.append(net.weight.item())
            return EpochEnd(monitored[epoch - 1], {"epoch": epoch}, keep=f"epoch {epoch}")

        gen = fit(
            net,
            step,
            learning_rate=0.01,
            steps_per_epoch=3,
            epochs=8,
            schedule=Plateau(),
            end_epoch=end_epoch,
            stopping=stopping,
        )
        return run_to_end(gen), at_best[0]

    fitted, weight_at_best = run(Stopping(patience=2, min_epochs=6))
    assert fitted.epochs == 6  # patience ran out at epoch 4, but not before 6 epochs
    assert fitted.best_epoch == 2 and fitted.best_keep == "epoch 2"
    assert fitted.best_state["weight"].item() == pytest.approx(weight_at_best)
    fitted, _ = run(Stopping(patience=2))
    assert fitted.epochs == 4


def test_plateau_halves_the_learning_rate_when_the_monitored_value_stalls():
    net, step = line_fit()
    rates = []

    def end_epoch(epoch, lr):
        rates.append(lr)
        return EpochEnd(1.0)

    run_to_end(
        fit(
            net,
            step,
            learning_rate=0.01,
            steps_per_epoch=2,
            epochs=5,
            schedule=Plateau(factor=0.5, patience=1),
            end_epoch=end_epoch,
        )
    )
    assert rates[0] == pytest.approx(0.01) and rates[-1] < rates[0]


def test_cancel_ends_the_epoch_and_keeps_the_best_so_far():
    net, step = line_fit()
    calls = []

    def should_stop():
        calls.append(1)
        return len(calls) >= 5

    ends = []
    fitted = run_to_end(
        fit(
            net,
            step,
            learning_rate=0.01,
            steps_per_epoch=10,
            epochs=3,
            end_epoch=lambda e, lr: ends.append(e) or EpochEnd(1.0),
            should_stop=should_stop,
        )
    )
    assert fitted.stopped_by_user and fitted.steps == 5 and ends == [1]
    assert fitted.best_epoch == 1 and fitted.best_state is not None


def test_skipped_steps_do_not_step_the_optimiser():
    net = torch.nn.Linear(1, 1, bias=False)
    before = net.weight.item()
    fitted = run_to_end(fit(net, lambda: None, learning_rate=0.1, steps_per_epoch=5))
    assert net.weight.item() == before and fitted.steps == 5 and fitted.loss is None


def test_unknown_optimiser_is_named():
    net, step = line_fit()
    with pytest.raises(ValueError, match="optimiser"):
        run_to_end(fit(net, step, learning_rate=0.1, steps_per_epoch=1, optimiser="sgd"))


def test_time_left_words():
    assert time_left(4.4) == "about 4 s left"
    assert time_left(80) == "about 1 min 20 s left"


def test_networks_module_is_the_only_torch_importer_of_nn():
    modules = (
        "napari_scanprobe.nn.loop, napari_scanprobe.nn.classifier, napari_scanprobe.nn.upscaler, "
        "napari_scanprobe.nn.device, napari_scanprobe.nn.weights"
    )
    assert imported_by(modules, ("torch",)) == []


def test_upscaler_shapes_match_the_module():
    from napari_scanprobe.nn.upscaler import architecture, build_upscaler, expected_shapes, receptive_radius

    arch = architecture(2, 8, 2)
    net = build_upscaler(arch)
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == expected_shapes(arch)
    assert net.radius == receptive_radius(arch)
    x = torch.zeros(1, 1, 10 + 2 * net.radius, 12 + 2 * net.radius)
    assert tuple(net(x).shape) == (1, 1, 20, 24)
    np.testing.assert_array_equal(net(x).detach().numpy(), 0)  # starts as the consistent base
