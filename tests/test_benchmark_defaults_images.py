"""benchmarks/defaults_images.py --quick: builds its sets, runs the image defaults end to end and
writes the benchmark JSON form."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "defaults_images.py"


@pytest.mark.slow
def test_defaults_images_quick(tmp_path) -> None:
    spec = importlib.util.spec_from_file_location("defaults_images", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    threads = torch.get_num_threads()
    argv = ["--quick", "--sets", "digits400", "--before", "digits400", "--out", str(tmp_path)]
    try:
        module.main(argv)
    finally:
        torch.set_num_threads(threads)
    payload = json.loads((tmp_path / "defaults_images.json").read_text())
    assert payload["benchmark"] == "defaults_images" and payload["quick"] is True
    assert payload["argv"] == ["benchmarks/defaults_images.py", *argv]
    rows = payload["rows"]
    assert [r["role"] for r in rows] == ["teacher", "baseline", "distilled"] * 2
    assert [r["chosen"] for r in rows] == [True] * 3 + [False] * 3
    assert rows[0]["model"].startswith("digits400 after: teacher resnet10t")
    assert rows[3]["model"] == "digits400 before: teacher resnet18"
    for row in rows:
        assert 0.0 <= row["metrics"]["accuracy"] <= 1.0 and row["timing"]["epochs_run"] >= 1
    runs = payload["runs"]
    assert runs["digits400 after"]["teacher_choice"]["auto"] is True
    assert runs["digits400 after"]["teacher"]["chosen"]["schedule"] == "plateau"
    assert runs["digits400 before"]["teacher"]["chosen"]["epochs"] == 20
    # the quick run writes no markdown over the committed one
    assert not (tmp_path / "defaults_images.md").exists()
