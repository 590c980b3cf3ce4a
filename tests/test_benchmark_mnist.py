"""The MNIST benchmark's quick mode runs end to end and writes its JSON in the shared form."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "mnist_hinton.py"


def test_mnist_hinton_quick(tmp_path) -> None:
    spec = importlib.util.spec_from_file_location("mnist_hinton", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    threads = torch.get_num_threads()
    try:
        module.main(["--quick", "--out", str(tmp_path)])
    finally:
        torch.set_num_threads(threads)
    payload = json.loads((tmp_path / "mnist_hinton.json").read_text())
    assert payload["benchmark"] == "mnist_hinton" and payload["quick"] is True
    assert payload["device"].startswith("cpu: ")
    for key in ("command", "date", "crosskd_version", "rows"):
        assert key in payload
    roles = {row["role"] for row in payload["rows"]}
    assert {"reference", "teacher", "baseline", "distilled", "sweep", "omitted-class"} <= roles
    for row in payload["rows"]:
        assert "errors" in row["metrics"] and "accuracy" in row["metrics"]
    teachers = [r for r in payload["rows"] if r["role"] == "teacher"]
    assert all(r["metrics"]["accuracy"] > 0.5 for r in teachers[:1])
    for key in ("git_commit", "git_dirty", "argv", "environment", "load_average"):
        assert key in payload, key
    assert payload["argv"] == ["benchmarks/mnist_hinton.py", "--quick", "--out", str(tmp_path)]
    assert all(isinstance(r["chosen"], bool) for r in payload["rows"] if "chosen" in r)
    assert (tmp_path / "mnist_hinton.md").read_text().startswith("# Hinton et al.")
    assert (tmp_path / "mnist_hinton.png").stat().st_size > 1000
