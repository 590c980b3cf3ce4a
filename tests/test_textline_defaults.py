"""Text-line defaults chosen on the validation lines: the augmentation search (``augment="auto"``),
the validation-driven epoch budget (``epochs="auto"``), what the report says, and explicit settings
kept as given."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from crosskd import ConfigError
from crosskd.vision import Alphabet, CTCDistiller
from crosskd.vision.augment import textline_augment_candidates
from crosskd.vision.ctc_trainer import STALL_CER, STOP_REASONS, _PlateauAfterBlank

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_cli_textline import labels as line_labels  # noqa: E402
from test_cli_textline import write_folder  # noqa: E402


class _MeanReader(torch.nn.Module):
    """Reads one character from the mean brightness of the line: every frame's logits are a
    linear function of it. It learns the lines below in a few epochs, unless its training
    images are all blanked (then it cannot tell a '1' from a '2')."""

    def __init__(self, num_classes: int = 3, frames: int = 4) -> None:
        super().__init__()
        self.num_classes, self.frames = num_classes, frames
        self.out = torch.nn.Linear(1, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.float().mean(dim=(1, 2, 3))[:, None, None]
        return self.out(mean.expand(len(x), self.frames, 1) * 4 - 2)


def _lines(n: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """Bright lines read '1', dark lines read '2'."""
    rng = np.random.default_rng(seed)
    y = [str(v) for v in rng.integers(1, 3, size=n)]
    x = np.stack([np.full((1, 8, 16), 1.0 if t == "1" else 0.0, np.float32) for t in y])
    return x, y


def _blank(batch: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(batch)


def _trainer(**kw) -> CTCDistiller:
    torch.manual_seed(0)
    settings = dict(
        alphabet=Alphabet("12"),
        alpha=0.0,
        batch_size=8,
        lr=0.1,
        warmup_epochs=0.0,
        plateau_restarts=0,
        device="cpu",
        progress=False,
        threads=1,
    )
    settings.update(kw)
    return CTCDistiller(None, _MeanReader(), **settings)


def test_augmentation_search_keeps_the_candidate_that_reads_the_validation_lines():
    x, y = _lines(48, 0)
    xv, yv = _lines(16, 1)
    fitted = _trainer(augment={"blank": _blank, "none": None}, augment_epochs=2, epochs=6).fit(
        x, y, eval_set=(xv, yv)
    )
    assert fitted.augment_ == "none"
    search = fitted.augment_search_
    assert search["chosen"] == "none" and search["epochs"] == 2
    scores = search["candidates"]
    assert set(scores) == {"blank", "none"}
    assert scores["none"]["val_cer"] < scores["blank"]["val_cer"]
    assert all(s["epochs"] == 2 for s in scores.values())
    # the winner continued for the rest of the fixed budget: 2 + 4 epochs in its history
    assert [h["epoch"] for h in fitted.history_] == [1, 2, 3, 4, 5, 6]
    assert fitted.epochs_ == 6 and fitted.stop_reason_ == "budget"
    assert fitted.augment_choice_ is None
    assert fitted.evaluate(xv, yv)["cer"] == 0.0


def test_with_the_auto_budget_each_candidate_trains_its_whole_run():
    x, y = _lines(40, 0)
    xv, yv = _lines(8, 1)
    fitted = _trainer(augment={"blank": _blank, "none": None}, epochs="auto").fit(
        x, y, eval_set=(xv, yv)
    )
    search = fitted.augment_search_
    assert search["epochs"] == "whole runs" and fitted.augment_ == "none"
    scores = search["candidates"]
    # (the blanked candidate's first epoch happens to read the 8 lines: its lowest CER ties)
    assert scores["none"]["val_cer_last"] == 0.0 < scores["blank"]["val_cer_last"]
    # each candidate ran until its plateau schedule stopped it; the winner's run is the result
    assert all(s["epochs"] < 300 for s in scores.values())
    assert len(fitted.history_) == scores["none"]["epochs"]
    assert fitted.epochs_ == 300 and fitted.stop_reason_ == "plateau"
    assert fitted.evaluate(xv, yv)["cer"] == 0.0


def test_augmentation_search_ties_go_to_the_first_candidate_and_short_budgets_only_probe():
    x, y = _lines(24, 0)
    xv, yv = _lines(8, 1)
    fitted = _trainer(augment={"a": _blank, "b": _blank}, epochs=2).fit(x, y, eval_set=(xv, yv))
    # augment_epochs="auto" is at most half a fixed budget
    assert fitted.augment_search_["epochs"] == 1 and fitted.augment_ == "a"
    assert len(fitted.history_) == 2 and fitted.epochs_ == 2
    # one epoch: the candidates' single epochs are the whole run
    once = _trainer(augment={"a": _blank, "b": None}, epochs=1).fit(x, y, eval_set=(xv, yv))
    assert len(once.history_) == 1 and once.epochs_ == 1 and once.augment_search_["epochs"] == 1


def test_auto_augmentation_candidates_and_settings_errors():
    candidates = textline_augment_candidates(3)
    assert list(candidates) == ["none", "default"] and candidates["none"] is None
    assert callable(candidates["default"])
    x, y = _lines(8, 0)
    with pytest.raises(ConfigError, match="no eval_set was given"):
        _trainer(augment="auto", epochs=1).fit(x, y)
    with pytest.raises(ConfigError, match="resume is not available"):
        _trainer(augment="auto", epochs=1, checkpoint_dir=None).fit(
            x, y, eval_set=(x, y), resume=True
        )
    with pytest.raises(ConfigError, match="got 'strong'"):
        _trainer(augment="strong").fit(x, y)
    with pytest.raises(ConfigError, match="with at least one entry"):
        _trainer(augment={"x": 3}).fit(x, y)
    with pytest.raises(ConfigError, match="augment_epochs"):
        _trainer(augment="auto", augment_epochs=0).fit(x, y, eval_set=(x, y))


def test_auto_budget_stops_when_the_validation_cer_stops_improving():
    x, y = _lines(40, 0)
    xv, yv = _lines(8, 1)
    fitted = _trainer(epochs="auto").fit(x, y, eval_set=(xv, yv))
    assert fitted.schedule_ == "plateau" and fitted.epochs_ == 300  # the cap for 5 steps an epoch
    assert fitted.stop_reason_ == "plateau" and len(fitted.history_) < fitted.epochs_
    assert fitted.evaluate(xv, yv)["cer"] == 0.0
    fixed = _trainer(epochs=3).fit(x, y, eval_set=(xv, yv))
    assert fixed.stop_reason_ == "budget" and len(fixed.history_) == fixed.epochs_ == 3
    assert fixed.augment_ == "none" and fixed.augment_search_ is None
    stopped = _trainer(epochs=50, early_stopping=2).fit(x, y, eval_set=(xv, yv))
    assert stopped.stop_reason_ == "early_stopping" and len(stopped.history_) < 50
    assert set(STOP_REASONS) == {"plateau", "early_stopping", "budget"}


def test_the_plateau_check_waits_for_optimiser_steps_and_blank_epochs_are_not_a_plateau():
    x, y = _lines(24, 0)
    # 3 steps an epoch: the all-blank check after ceil(200 / 3) = 67 epochs; explicit values kept
    assert _trainer(epochs=2).fit(x, y).plateau_epochs_ == 67
    assert _trainer(epochs=2, plateau_epochs=4).fit(x, y).plateau_epochs_ == 4
    with pytest.raises(ConfigError, match="plateau_epochs"):
        _trainer(plateau_epochs="soon").fit(x, y)

    class State:
        epoch, stop, lr_scale = 0, False, 1.0

    state = State()
    callback = _PlateauAfterBlank("val_cer", False, 1, reductions=1, grace=4)
    callback.on_attempt_start(state)
    for epoch in range(1, 5):  # still reading nothing: no cut, no stop within the grace epochs
        state.epoch = epoch
        callback.on_epoch_end(state, {"val_cer": STALL_CER + 0.1})
    assert callback.cuts == 0 and not state.stop and state.lr_scale == 1.0
    for epoch, cer in ((5, 0.5), (6, 0.6), (7, 0.6)):  # off the plateau: the usual rule
        state.epoch = epoch
        callback.on_epoch_end(state, {"val_cer": cer})
    assert callback.cuts == 1 and state.stop


# ------------------------------------------------------------------------- the command line


TINY = ["--student-width", "2", "--head-width", "8", "--teacher", "tiny", "--height", "24",
        "--quiet"]  # fmt: skip


def _run(tmp_path: Path, *flags: str) -> dict:
    from crosskd.cli import main

    folder = tmp_path / "lines"
    if not folder.exists():
        write_folder(folder, line_labels(20, seed=0))
    out = tmp_path / f"run{len(list(tmp_path.glob('run*')))}"
    assert main(["distill", "--task", "textline", "--data", str(folder), "--out", str(out),
                 *TINY, *flags]) in (0, None)  # fmt: skip
    return json.loads((out / "report.json").read_text())


def test_cli_reports_the_augmentation_choice_and_the_budget(tmp_path):
    report = _run(tmp_path, "--epochs", "2")
    assert report["settings"]["augment"] == "auto"
    choices = report["textline_choices"]
    teacher = choices["teacher"]
    assert teacher["augment_reason"] == "chosen on the validation lines"
    assert set(teacher["augment_search"]["candidates"]) == {"none", "default"}
    assert teacher["augment"] == teacher["augment_search"]["chosen"]
    assert teacher["epochs"] == 2 and teacher["stop_reason"] == "budget"
    # the teacher's choice is reused, not searched again
    for role in ("baseline", "student"):
        assert choices[role]["augment"] == teacher["augment"]
        assert choices[role]["augment_search"] is None
        assert choices[role]["epochs"] == 2 and choices[role]["epochs_run"] == 2
    assert report["teacher"]["chosen"]["epochs"] == 2


def test_cli_explicit_augment_and_epochs_are_kept(tmp_path):
    report = _run(tmp_path, "--epochs", "2", "--no-augment")
    for role, choice in report["textline_choices"].items():
        assert choice["augment"] == "none" and choice["augment_reason"] == "given", role
        assert choice["augment_search"] is None and choice["epochs"] == 2, role
    config = tmp_path / "on.yaml"
    config.write_text("augment: true\nepochs: 1\nbaseline: false\n")
    report = _run(tmp_path, str(config))
    assert {c["augment"] for c in report["textline_choices"].values()} == {"default"}
    assert report["textline_choices"]["teacher"]["epochs_run"] == 1


def test_small_digit_lines_split_by_scan(tmp_path):
    from crosskd.datasets.small_digit_lines import (
        TRAIN_DIGITS,
        load_small_digits,
        write_small_digit_lines,
    )
    from crosskd.vision import load_textlines

    x_train, y_train = load_small_digits("train")
    x_test, _ = load_small_digits("test")
    assert x_train.shape == (TRAIN_DIGITS, 8, 8) and len(x_test) == 1797 - TRAIN_DIGITS
    assert 0 <= x_train.min() and x_train.max() <= 1 and set(y_train) == set(range(10))
    tsv = write_small_digit_lines(tmp_path, "test", 6, seed=2)
    images, texts, _ = load_textlines(tsv, height=32)
    assert images.shape[:3] == (6, 1, 32)
    assert all(4 <= len(t) <= 8 and t.isdigit() for t in texts)
    with pytest.raises(ConfigError, match="'train' or 'test'"):
        load_small_digits("val")


@pytest.mark.slow
def test_textline_defaults_benchmark_quick(tmp_path):
    """``benchmarks/textline_defaults.py --quick``: one set, the default recipe, the results file."""
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "textline_defaults.py"
    spec = importlib.util.spec_from_file_location("textline_defaults", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    payload = module.main(["--quick", "--sets", "digits8", "--recipes", "default,none",
                           "--seeds", "0", "--out", str(tmp_path), "--work", str(tmp_path / "w")])  # fmt: skip
    assert payload["quick"] is True and payload["benchmark"] == "textline_defaults"
    assert (tmp_path / "textline_defaults-quick.json").exists()
    run = payload["runs"]["digits8"]["default"]["0"]
    assert run["teacher"]["augment"] in ("none", "default")
    assert run["teacher"]["augment_search"]["chosen"] == run["teacher"]["augment"]
    assert run["student"]["augment"] == run["teacher"]["augment"]
    roles = {(r["recipe"], r["role"]) for r in payload["rows"]}
    assert ("default", "teacher") in roles and ("none", "distilled") in roles
    assert all(r["chosen"] == (r["recipe"] == "default") for r in payload["rows"])
