"""The text-line CTC benchmark's quick mode runs end to end and writes the shared JSON form."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "textline_ctc.py"


@pytest.mark.data
def test_textline_ctc_quick(tmp_path, shared_data) -> None:
    spec = importlib.util.spec_from_file_location("textline_ctc", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    threads = torch.get_num_threads()
    try:
        module.main(
            ["--quick", "--out", str(tmp_path), "--data", str(shared_data / "ocr" / "captcha")]
        )
    finally:
        torch.set_num_threads(threads)
    payload = json.loads((tmp_path / "textline_ctc.json").read_text())
    assert payload["benchmark"] == "textline_ctc" and payload["quick"] is True
    assert payload["device"].startswith("cpu: ")
    for key in ("command", "date", "crosskd_version", "rows", "settings", "targets"):
        assert key in payload
    assert payload["partial"] is False and payload["folds_done"] == 2
    rows = payload["rows"]
    roles = [row["role"] for row in rows]
    assert roles.count("teacher") == 1 and roles.count("baseline") == 2
    assert roles.count("distilled") == 6
    assert {row["kd_mode"] for row in rows if "kd_mode" in row} == {
        None,
        "frame",
        "sequence",
        "both",
    }
    for row in rows:
        assert row["params"] > 0 and row["timing"]["latency_ms_batch1"] > 0
        mean, std = row["metrics"]["sequence_accuracy"]
        assert 0.0 <= mean <= 1.0 + 1e-9 and std >= 0.0
        mean, std = row["metrics"]["cer"]  # edit distance / reference length: may exceed 1
        assert mean >= 0.0 and std >= 0.0
        assert [f["fold"] for f in row["per_fold"]] == [0, 1]
        assert all(f["restarts"] >= 0 and f["epochs_run"] >= 1 for f in row["per_fold"])
    assert len(payload["targets"]) == 3
    # fresh folds by default (the recipe was developed on fold seed 0), choices on validation
    assert payload["settings"]["fold_seed"] == 1
    assert payload["argv"][0] == "benchmarks/textline_ctc.py" and payload["git_commit"]
    for row in rows:
        assert 0.0 <= row["validation"]["sequence_accuracy"][0] <= 1.0 + 1e-9
    chosen = [row for row in rows if row["chosen"]]
    assert sorted(row["role"] for row in chosen) == ["baseline"] * 2 + ["distilled"] * 2 + [
        "teacher"
    ]
    assert all(isinstance(t["met"], bool) for t in payload["targets"])
    md = (tmp_path / "textline_ctc.md").read_text()
    assert md.startswith("# Text-line OCR with CTC") and "| model | role |" in md
    assert (tmp_path / "textline_ctc.png").stat().st_size > 1000


@pytest.mark.data
def test_textline_ctc_folds_in_parallel_processes(tmp_path, shared_data) -> None:
    # --jobs 2: each fold in its own (spawned) process; the merged results are in fold order
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    data = str(shared_data / "ocr" / "captcha")
    cmd = [sys.executable, str(SCRIPT), "--quick", "--jobs", "2", "--out", str(tmp_path)]
    done = subprocess.run(
        [*cmd, "--data", data], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    payload = json.loads((tmp_path / "textline_ctc.json").read_text())
    assert payload["folds_done"] == 2 and "2 folds at a time" in payload["device"]
    for row in payload["rows"]:
        assert [f["fold"] for f in row["per_fold"]] == [0, 1]
        assert row["timing"]["latency_ms_batch1"] > 0
