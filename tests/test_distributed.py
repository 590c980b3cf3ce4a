"""DistributedDataParallel under torchrun: 2 CPU processes (gloo) train like one with twice the batch.

With dropout off and a mean loss, averaging the gradients of two ranks that each see half of every
global batch is mathematically the gradient of the whole batch, so weights, history and early
stopping match a single-process run up to float rounding.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from toy import load_worker, run_torchrun

from crosskd import Distiller
from crosskd.exceptions import ConfigError

HERE = Path(__file__).parent


def _worker():
    return load_worker("ddp_worker")


@pytest.mark.skipif(
    not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
    reason="torch.distributed with gloo is not available",
)
def test_two_gloo_ranks_match_one_process_with_the_global_batch(tmp_path):
    worker = _worker()
    proc = run_torchrun("ddp_worker.py", str(tmp_path), timeout=180)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    # All ranks agree: same history, same early-stopping outcome, same weights.
    assert ranks[0]["history"] == ranks[1]["history"]
    assert ranks[0]["best_epoch"] == ranks[1]["best_epoch"]
    np.testing.assert_array_equal(ranks[0]["logits"], ranks[1]["logits"])
    # Only rank 0 wrote the student and the checkpoint (once).
    assert (tmp_path / "student.safetensors").is_file()
    assert (tmp_path / "ckpt" / "checkpoint.safetensors").is_file()

    single = worker.run(worker.GLOBAL_BATCH, None, distributed=False)
    ddp = ranks[0]
    assert ddp["best_epoch"] == single.best_epoch_
    assert len(ddp["history"]) == len(single.history_)
    for a, b in zip(ddp["history"], single.history_, strict=True):
        for key, value in a.items():
            assert value == pytest.approx(b[key], rel=1e-4, abs=1e-5), key
    X, _, _ = worker.make_data()
    np.testing.assert_allclose(
        ddp["logits"], single.predict_logits(X[worker.N_TRAIN :]).numpy(), rtol=1e-4, atol=1e-4
    )
    loaded = Distiller.load(tmp_path / "student.safetensors")
    np.testing.assert_allclose(
        loaded.predict_logits(X[worker.N_TRAIN :]).numpy(), ddp["logits"], rtol=1e-6, atol=1e-6
    )


def test_distributed_true_without_torchrun_says_how_to_launch(monkeypatch):
    worker = _worker()
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="torchrun --nproc_per_node"):
        worker.run(worker.GLOBAL_BATCH, None, distributed=True)


def test_bad_distributed_setting():
    worker = _worker()
    with pytest.raises(ConfigError, match="distributed must be 'auto', True or False"):
        worker.run(worker.GLOBAL_BATCH, None, distributed="yes")
