"""Student bundles: round trips, atomic writes, and refusal of pickles and corrupt files."""

from __future__ import annotations

import json
import os
import pickle
import shlex

import numpy as np
import pandas as pd
import pytest
import safetensors.torch
import torch

import crosskd.io
from crosskd.exceptions import BundleError, ConfigError, NotFittedError
from crosskd.io import load_bundle, read_bundle_info, register_student, save_bundle
from crosskd.tabular import MLP, TabularStudent


def make_student(seed: int = 0) -> tuple[TabularStudent, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "amount": rng.normal(size=30),
            "merchant": pd.Series(rng.choice(["a", "b", "c"], 30), dtype="str"),
            "code": rng.integers(0, 4, 30),
        }
    )
    torch.manual_seed(seed)
    student = TabularStudent(hidden=(8,)).build(df, 2)
    return student, df


def test_round_trip_gives_identical_logits_and_metadata(tmp_path):
    student, df = make_student()
    meta = {
        "temperature": np.float32(4.0),
        "classes": np.array([0, 1]),
        "auc": 0.9,
        "run": (1, "x"),
    }
    path = save_bundle(tmp_path / "sub" / "student", student, metadata=meta)
    assert path == tmp_path / "sub" / "student.safetensors" and path.exists()
    loaded, metadata = load_bundle(path)
    assert isinstance(loaded, TabularStudent) and not loaded.training
    assert metadata == {"temperature": 4.0, "classes": [0, 1], "auc": 0.9, "run": [1, "x"]}
    student.eval()
    assert torch.equal(student(*student.encode(df)), loaded(*loaded.encode(df)))
    # The path without the suffix finds the file too.
    assert isinstance(load_bundle(tmp_path / "sub" / "student")[0], TabularStudent)
    info = read_bundle_info(path)
    assert info["student_class"] == "TabularStudent" and info["format_version"] == 1
    assert info["torch_version"] == torch.__version__


def test_mlp_round_trip(tmp_path):
    mlp = MLP(4, 3, hidden=(5,), batch_norm=True).eval()
    path = save_bundle(tmp_path / "mlp.safetensors", mlp)
    loaded, metadata = load_bundle(path)
    x = torch.randn(7, 4)
    assert metadata == {} and torch.equal(mlp(x), loaded(x))


def test_save_refuses_bad_metadata_and_unbuilt_students(tmp_path):
    student, _ = make_student()
    with pytest.raises(ConfigError, match=r"metadata\['extra'\]\['when'\] is a set"):
        save_bundle(tmp_path / "a", student, metadata={"extra": {"when": {1, 2}}})
    with pytest.raises(NotFittedError, match="has not been built"):
        save_bundle(tmp_path / "b", TabularStudent())
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_keeps_old_file_when_saving_fails(tmp_path, monkeypatch):
    student, _ = make_student()
    path = save_bundle(tmp_path / "student", student, metadata={"version": 1})
    before = path.read_bytes()

    def broken_save(tensors, filename, metadata=None):
        with open(filename, "wb") as handle:
            handle.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", broken_save)
    other, _ = make_student(seed=1)
    with pytest.raises(OSError, match="disk full"):
        save_bundle(path, other, metadata={"version": 2})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["student.safetensors"]
    assert load_bundle(path)[1] == {"version": 1}


class _Payload:
    """Unpickling this runs a shell command that creates a marker file (harmless)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def test_malicious_pickle_is_refused_without_running_it(tmp_path):
    # The payload really works when unpickled: proof that the test below means something.
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(_Payload(control)))
    assert control.exists()

    marker = tmp_path / "pwned"
    torch_file = tmp_path / "evil.safetensors"
    torch.save({"state": _Payload(marker)}, torch_file)
    with pytest.raises(BundleError, match=r"not a crosskd bundle.*pickle / torch.save file"):
        load_bundle(torch_file)
    plain = tmp_path / "evil.pkl"
    plain.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(BundleError, match="never loads those"):
        load_bundle(plain)
    assert not marker.exists()


def test_truncated_random_and_missing_files_are_refused(tmp_path):
    student, _ = make_student()
    path = save_bundle(tmp_path / "student", student)
    data = path.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError, match="truncated"):
        load_bundle(cut)
    cut.write_bytes(data[:-3])
    with pytest.raises(BundleError, match="truncated"):
        load_bundle(cut)
    noise = tmp_path / "noise.safetensors"
    noise.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(BundleError, match="not a crosskd bundle"):
        load_bundle(noise)
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    with pytest.raises(BundleError, match="0 bytes"):
        load_bundle(empty)
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "nothing.safetensors")


def test_foreign_safetensors_unknown_class_and_mismatched_tensors(tmp_path):
    plain = tmp_path / "plain.safetensors"
    safetensors.torch.save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(BundleError, match="safetensors file but not a crosskd bundle"):
        load_bundle(plain)

    mlp = MLP(4, 2, hidden=(3,))
    info = read_bundle_info(save_bundle(tmp_path / "mlp", mlp))
    tensors = {k: v.contiguous() for k, v in mlp.state_dict().items()}

    unknown = tmp_path / "unknown.safetensors"
    header = {**info, "student_class": "os.system"}
    safetensors.torch.save_file(tensors, str(unknown), metadata={"crosskd": json.dumps(header)})
    with pytest.raises(BundleError, match=r"class 'os.system', which this crosskd does not know"):
        load_bundle(unknown)

    wrong = tmp_path / "wrong.safetensors"
    bad = {**tensors, "head.weight": torch.zeros(2, 5)}
    safetensors.torch.save_file(bad, str(wrong), metadata={"crosskd": json.dumps(info)})
    with pytest.raises(BundleError, match=r"head.weight: expected \(2, 3\), found \(2, 5\)"):
        load_bundle(wrong)

    missing = tmp_path / "missing.safetensors"
    fewer = {k: v for k, v in tensors.items() if k != "head.bias"}
    safetensors.torch.save_file(fewer, str(missing), metadata={"crosskd": json.dumps(info)})
    with pytest.raises(BundleError, match=r"missing tensors \['head.bias'\]"):
        load_bundle(missing)

    newer = tmp_path / "newer.safetensors"
    header = {**info, "format_version": 99}
    safetensors.torch.save_file(tensors, str(newer), metadata={"crosskd": json.dumps(header)})
    with pytest.raises(BundleError, match="Upgrade crosskd"):
        load_bundle(newer)


def test_register_student(tmp_path, monkeypatch):
    # A private copy of the registry, so that the test class does not outlive the test.
    monkeypatch.setattr(crosskd.io, "_STUDENT_CLASSES", dict(crosskd.io._STUDENT_CLASSES))

    @register_student
    class TinyStudent(torch.nn.Module):
        def __init__(self, width: int):
            super().__init__()
            self.width = width
            self.linear = torch.nn.Linear(width, 2)

        def forward(self, x):
            return self.linear(x)

        def config(self):
            return {"width": self.width}

        @classmethod
        def from_config(cls, cfg):
            return cls(**cfg)

    model = TinyStudent(3)
    loaded, _ = load_bundle(save_bundle(tmp_path / "tiny", model))
    assert isinstance(loaded, TinyStudent) and torch.equal(
        loaded.linear.weight, model.linear.weight
    )

    class Unregistered(TinyStudent):
        pass

    with pytest.raises(ConfigError, match="register_student"):
        save_bundle(tmp_path / "x", Unregistered(3))
    with pytest.raises(ConfigError, match="needs a config"):
        register_student(torch.nn.Linear)


def test_a_fresh_process_loads_every_builtin_student_kind(tmp_path):
    """`import crosskd` is lazy: loading an image or text-line bundle in a new process must still
    find ImageMLP / SmallCNN / CRNN (they register when their modules are imported)."""
    import subprocess
    import sys

    from crosskd.io import save_bundle
    from crosskd.vision import CRNN, ImageMLP, SmallCNN

    paths = []
    for i, student in enumerate(
        (ImageMLP((1, 8, 8), 3, hidden=(4,)), SmallCNN(num_classes=3), CRNN("tiny", num_classes=5))
    ):
        paths.append(
            str(save_bundle(tmp_path / f"s{i}.safetensors", student, {"classes": [0, 1, 2]}))
        )
    code = (
        "import sys\nfrom crosskd.io import load_bundle\n"
        "print(' '.join(type(load_bundle(p)[0]).__name__ for p in sys.argv[1:]))"
    )
    out = subprocess.run([sys.executable, "-c", code, *paths], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["ImageMLP", "SmallCNN", "CRNN"]
