"""benchmarks/fraud_handbook.py --quick: runs end to end and writes the benchmark JSON form."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "fraud_handbook.py"
METRIC_NAMES = {"roc_auc", "average_precision", "cp_at_100", "rank_agreement"}
ROLES = {"teacher", "member", "reference", "baseline", "distilled"}


def _load_script():
    spec = importlib.util.spec_from_file_location("fraud_handbook", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.mark.data
@pytest.mark.slow
def test_quick_run_writes_json_markdown_and_plot(tmp_path):
    _load_script().main(["--quick", "--out", str(tmp_path)])

    result = json.loads((tmp_path / "fraud_handbook.json").read_text())
    for key in ("benchmark", "command", "device", "date", "crosskd_version", "quick", "rows"):
        assert key in result, key
    assert result["benchmark"] == "fraud_handbook"
    assert result["quick"] is True
    assert "--quick" in result["command"]
    assert result["device"].startswith("cpu: ")

    rows = result["rows"]
    roles = [row["role"] for row in rows]
    assert set(roles) <= ROLES
    assert roles.count("teacher") == 1 and roles.count("reference") == 2
    assert {"baseline", "distilled"} <= set(roles)
    for row in rows:
        assert set(row) >= {"model", "role", "params", "bytes", "metrics", "timing"}
        assert set(row["metrics"]) <= METRIC_NAMES
        for name in ("roc_auc", "average_precision", "cp_at_100"):
            value = row["metrics"][name]
            assert isinstance(value, list) and len(value) == 2, (row["model"], name)
            assert 0.0 <= value[0] <= 1.0
        if row["role"] != "reference":
            assert row["params"] > 0 and row["bytes"] > 0
            assert row["timing"]["rows_per_s_batch1"] > 0
            assert row["timing"]["rows_per_s_batch10000"] > 0
        if row["role"] in ("baseline", "distilled"):
            assert -1.0 <= row["metrics"]["rank_agreement"] <= 1.0
    assert result["teacher_search"] and result["distillation_sweep"]
    assert {r["method"] for r in result["distillation_sweep"]} == {"hinton", "dist"}
    assert result["chosen_teacher"] in {r["teacher"] for r in result["teacher_search"]}
    assert all("met" in t for t in result["targets"])
    # provenance (benchmarks/_results.py) and the rows chosen on validation
    for key in ("git_commit", "argv", "environment", "load_average", "wall_seconds"):
        assert key in result, key
    assert result["argv"][0] == "benchmarks/fraud_handbook.py" and "--quick" in result["argv"]
    chosen = [row for row in rows if row["chosen"]]
    assert sorted(row["role"] for row in chosen) == ["baseline", "distilled", "teacher"]
    for row in rows:
        if row["role"] in ("teacher", "baseline", "distilled"):
            ap = row["validation"]["average_precision"]
            assert len(ap) == 2 and 0.0 <= ap[0] <= 1.0

    markdown = (tmp_path / "fraud_handbook.md").read_text()
    assert "| model | role | chosen | validation AP | ROC AUC | AP | CP@100 |" in markdown
    assert "Teacher search" in markdown and "Distillation sweep" in markdown
    png = (tmp_path / "fraud_handbook.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


@pytest.mark.data
@pytest.mark.slow
def test_levers_quick_run_compares_each_lever_with_the_recipe(tmp_path):
    """benchmarks/fraud_levers.py --quick: every lever against the recipe, on validation folds."""
    sys.path.insert(0, str(SCRIPT.parent))
    import fraud_levers

    payload = fraud_levers.main(["--quick", "--out", str(tmp_path)])
    names = [row["model"] for row in payload["rows"]]
    assert names == list(fraud_levers.LEVERS) and names[0] == "base"
    base = payload["rows"][0]
    assert base["difference_to_base"] == [0.0, 0.0]
    for row in payload["rows"]:
        assert 0.0 < row["validation"]["average_precision"][0] <= 1.0
        diff = row["per_seed"][0] - base["per_seed"][0]
        assert row["difference_to_base"][0] == pytest.approx(diff, abs=1e-4)  # rounded JSON
    assert (tmp_path / "fraud_levers-quick.json").exists()
    assert not (tmp_path / "fraud_levers.md").exists()  # a quick run is not a result


@pytest.mark.data
@pytest.mark.slow
def test_levers_subset_runs_base_first_under_its_own_name(tmp_path):
    """--levers picks the levers (base always first, the reference); --name names the files."""
    sys.path.insert(0, str(SCRIPT.parent))
    import fraud_levers

    payload = fraud_levers.main(
        ["--quick", "--levers", "clip10", "--name", "levers-sub", "--out", str(tmp_path)]
    )
    assert [row["model"] for row in payload["rows"]] == ["base", "clip10"]
    assert (tmp_path / "levers-sub-quick.json").exists()
    # the clip changes the student's inputs on these rows: a different score, not a copy of base
    assert payload["rows"][1]["per_seed"] != payload["rows"][0]["per_seed"]
