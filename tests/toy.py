"""Small shared test helpers (imported by the test modules, not collected as tests)."""

from __future__ import annotations

import numpy as np

from crosskd.teachers.base import Teacher, TeacherInfo


class LinearTeacher(Teacher):
    """A known linear teacher: logits = X @ W, classes 0..k-1 unless given."""

    def __init__(self, W: np.ndarray, classes=None):
        self.W = W
        k = W.shape[1]
        self.info = TeacherInfo(num_classes=k, classes=tuple(classes or range(k)), kind="toy")

    def _logits(self, X):
        return np.asarray(X, dtype=np.float64) @ self.W


def hang_at_step(module, out, step: int) -> None:
    """Make ``module`` write ``out/hung`` and sleep when its ``step``-th training forward starts,
    so that a test can kill the process at a known point in the middle of an epoch."""
    import time

    calls = {"n": 0}

    def hook(mod, args):
        if mod.training:
            calls["n"] += 1
            if calls["n"] == step:
                (out / "hung").write_text(str(calls["n"]))
                time.sleep(600)

    module.register_forward_pre_hook(hook)


def kill_when_hung(argv, folder, timeout: float = 180.0, env=None) -> int:
    """Run ``argv``, wait until it writes ``folder/hung``, SIGKILL it; returns its exit code."""
    import signal
    import subprocess
    import time

    import pytest

    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        deadline = time.monotonic() + timeout
        while not (folder / "hung").exists():
            if proc.poll() is not None:
                pytest.fail(f"the worker exited early:\n{proc.stderr.read()}")
            if time.monotonic() > deadline:
                pytest.fail(f"the worker did not reach the hang point in {timeout:.0f} s")
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode


def load_worker(name: str):
    """The module ``tests/<name>.py`` (a worker script the tests also import)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parent / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_torchrun(script: str, *args: str, timeout: float = 300.0):
    """Run ``tests/<script>`` under ``torchrun --standalone --nproc_per_node=2`` (one thread per
    rank, no rank variables inherited); returns the completed process."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(Path(__file__).parent / script), *args],
        capture_output=True, text=True, timeout=timeout, env=env,
    )  # fmt: skip
