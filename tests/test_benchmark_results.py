"""benchmarks/_results.py: the provenance every results file carries, and its one rounding policy."""

from __future__ import annotations

import importlib.util
import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest

HELPER = Path(__file__).resolve().parents[1] / "benchmarks" / "_results.py"


@pytest.fixture(scope="module")
def results():
    spec = importlib.util.spec_from_file_location("_results_under_test", HELPER)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_round_floats_keeps_four_significant_digits(results):
    value = {
        "ap": 0.686123,
        "rate": 654321.7,
        "small": 0.00123456,
        "n": np.int64(7),
        "x": np.float32(2.5),
        "flag": True,
        "nan": float("nan"),
        "nested": [(1.23456, None, "text")],
    }
    out = results.round_floats(value)
    assert out == {
        "ap": 0.6861,
        "rate": 654300.0,
        "small": 0.001235,
        "n": 7,
        "x": 2.5,
        "flag": True,
        "nan": None,
        "nested": [[1.235, None, "text"]],
    }
    assert type(out["n"]) is int and out["flag"] is True
    json.dumps(out)  # JSON-able
    with pytest.raises(TypeError, match="convert arrays with .tolist"):
        results.round_floats({"a": np.zeros(2)})


def test_mean_std_is_population_std(results):
    mean, std = results.mean_std([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and math.isclose(std, math.sqrt(1.25))
    with pytest.raises(ValueError, match="got no values"):
        results.mean_std([])


def test_rows_are_checked(results):
    results.check_rows([{"model": "m", "role": "teacher", "chosen": True}])
    with pytest.raises(ValueError, match="row 0 .* has role=None; expected a string"):
        results.check_rows([{"model": "m"}])
    with pytest.raises(ValueError, match="chosen='yes'; expected true or false"):
        results.check_rows([{"model": "m", "role": "baseline", "chosen": "yes"}])


def test_write_records_provenance(results, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    run = results.Results("demo", ["--seeds", "2", "--out", "x y"], quick=True)
    rows = [{"model": "teacher", "role": "teacher", "metrics": {"ap": 0.123456}, "chosen": True}]
    payload = run.write(rows, tmp_path, settings={"lr": 0.0031622776}, extra={"s": 1.23456})
    on_disk = json.loads((tmp_path / "demo.json").read_text())
    assert on_disk == payload
    assert list(payload)[: len(results.PROVENANCE_FIELDS)] == list(results.PROVENANCE_FIELDS)
    assert list(payload)[-1] == "rows"
    assert payload["argv"] == ["benchmarks/demo.py", "--seeds", "2", "--out", "x y"]
    assert payload["command"] == "OMP_NUM_THREADS=1 python benchmarks/demo.py --seeds 2 --out 'x y'"
    assert re.fullmatch(r"[0-9a-f]{40}", payload["git_commit"])
    assert isinstance(payload["git_dirty"], bool)
    assert payload["quick"] is True and payload["wall_seconds"] >= 0
    assert set(payload["load_average"]) == {"start", "end"}
    env = payload["environment"]
    assert env["OMP_NUM_THREADS"] == "1" and "torch" in env and "numpy" in env
    assert payload["device"] == payload["machine"] and payload["machine"].startswith("cpu: ")
    assert payload["settings"] == {"lr": 0.0031622776}  # settings are written as given
    assert payload["extra"] == {"s": 1.235}
    assert payload["rows"][0]["metrics"]["ap"] == 0.1235
    with pytest.raises(ValueError, match=r"\['git_commit'\] are written by the results helper"):
        run.payload(rows, git_commit="abc")


def test_provenance_line_names_commit_and_load(results, tmp_path):
    payload = results.Results("demo", [], quick=False).payload([{"model": "m", "role": "x"}])
    line = results.provenance_line(payload)
    assert payload["git_commit"][:12] in line and "load average" in line
    assert "Quick run" not in line
