"""``crosskd distill --task textline``: synthetic text lines in, student, teacher and report out."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import crosskd
from crosskd.cli import main
from crosskd.io import read_bundle_info
from crosskd.vision import CTCDistiller
from crosskd.vision.textline_distill import TEXTLINE_DEFAULTS

ROOT = Path(__file__).resolve().parents[1]
# Tiny models and one epoch: each run takes a few seconds on one CPU thread.
TINY = ["--epochs", "1", "--student-width", "2", "--head-width", "8", "--quiet"]
TINY_TEACHER = ["--teacher", "tiny"]


def draw_line(text: str, height: int, colour: bool) -> Image.Image:
    """A text line of glyph-like shapes (a: bar, b: box, c: disc), resized to ``height``."""
    width = 10 * len(text) + 6
    ink = (20, 30, 120) if colour else 20
    img = Image.new("RGB" if colour else "L", (width, 20), (235, 230, 200) if colour else 240)
    draw = ImageDraw.Draw(img)
    for i, ch in enumerate(text):
        x = 3 + 10 * i
        if ch == "a":
            draw.rectangle([x + 3, 3, x + 5, 16], fill=ink)
        elif ch == "b":
            draw.rectangle([x + 1, 5, x + 8, 14], outline=ink, width=2)
        else:
            draw.ellipse([x + 1, 4, x + 8, 15], fill=ink)
    return img.resize((round(width * height / 20), height))


def labels(n: int, seed: int, chars: str = "abc") -> list[str]:
    rng = np.random.default_rng(seed)
    out: list[str] = []
    while len(out) < n:
        text = "".join(rng.choice(list(chars), size=int(rng.integers(2, 4))))
        if text not in out:
            out.append(text)
    return out


def write_folder(folder: Path, texts: list[str]) -> Path:
    """``folder/<text>.png``, colour and grey, of different heights and widths."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, text in enumerate(texts):
        draw_line(text, 16 + 3 * (i % 5), colour=i % 2 == 0).save(folder / f"{text}.png")
    return folder


def write_tsv(tsv: Path, texts: list[str], header: bool = True) -> Path:
    """``tsv`` of ``<stem>-images/<i>.png<TAB>text`` lines, the images next to it."""
    folder = f"{tsv.stem}-images"
    (tsv.parent / folder).mkdir(parents=True, exist_ok=True)
    rows = ["path\tlabel"] if header else []
    for i, text in enumerate(texts):
        image = tsv.parent / folder / f"{i}.png"
        draw_line(text, 20 + 2 * (i % 4), colour=i % 3 == 0).save(image)
        rows.append(f"{folder}/{i}.png\t{text}")
    tsv.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return tsv


@pytest.fixture(scope="module")
def first_run(tmp_path_factory) -> Path:
    """A run on a folder of 20 lines, 24 pixels high, the teacher trained (tiny, 1 epoch)."""
    root = tmp_path_factory.mktemp("textline")
    folder = write_folder(root / "lines", labels(20, seed=0))
    out = root / "run1"
    argv = ["distill", "--task", "textline", "--data", str(folder), "--out", str(out)]
    assert main([*argv, *TINY, *TINY_TEACHER, "--seed", "3", "--height", "24"]) == 0
    return out


def test_textline_run_writes_student_teacher_and_report(first_run):
    # the same artefact set as the other kinds
    assert {p.name for p in first_run.iterdir()} == {
        "student.safetensors",
        "teacher.safetensors",
        "report.json",
        "config.yaml",
        "summary.md",
        "curves.png",
    }
    report = json.loads((first_run / "report.json").read_text())
    assert report["kind"] == "textline" and report["task"] == "sequence"
    data = report["data"]
    assert data["alphabet"]["chars"] == ["a", "b", "c"]
    assert data["input_shape"][:2] == [1, 24]  # colour read as grey
    assert report["settings"]["height"] == 24 != TEXTLINE_DEFAULTS["height"]
    assert report["rows"] == {"train": 16, "validation": 2, "test": 2, "transfer": 0}
    split = report["split"]
    assert (split["seed"], split["n_train"], split["n_val"], split["n_test"]) == (3, 16, 2, 2)
    assert split["test_source"] == "split of data" and set(split["sha256_12"]) == {
        "train",
        "val",
        "test",
    }
    assert report["settings"]["epochs"] == 1 and report["teacher"]["epochs_run"] == 1
    assert report["settings"]["student_width"] == 2 and report["settings"]["head_width"] == 8
    assert report["teacher"]["trained"] is True
    assert report["teacher"]["config"]["backbone"] == "tiny"
    for role in ("teacher", "baseline", "student"):
        part = report[role]
        assert set(part["metrics"]) == {"sequence_accuracy", "cer"}
        assert 0.0 <= part["metrics"]["sequence_accuracy"] <= 1.0 and part["metrics"]["cer"] >= 0
        assert part["params"] > 0 and part["latency_ms_batch1"] > 0 and part["frames"] > 0
    assert report["student"]["params"] < report["teacher"]["params"]
    # The student is a CTCDistiller bundle that knows its alphabet and the lines' geometry.
    info = read_bundle_info(first_run / "student.safetensors")
    assert info["metadata"]["input"] == {
        "height": data["input_shape"][1],
        "width": data["input_shape"][2],
        "channels": 1,
    }
    model = crosskd.load(first_run)
    assert isinstance(model, CTCDistiller) and model.alphabet_.chars == ("a", "b", "c")
    readings = model.predict(np.zeros((2, *data["input_shape"]), np.float32))
    assert len(readings) == 2 and all(isinstance(r, str) for r in readings)


def test_second_run_reuses_the_teacher_from_a_tsv(first_run, tmp_path, capsys):
    tsv = write_tsv(tmp_path / "train" / "lines.tsv", labels(12, seed=1))
    test = write_tsv(tmp_path / "test" / "lines.tsv", labels(4, seed=2), header=False)
    out = tmp_path / "run2"
    teacher = first_run / "teacher.safetensors"
    capsys.readouterr()
    # No --task: a .tsv naming images is text lines.
    argv = ["distill", "--data", str(tsv), "--test", str(test), "--out", str(out)]
    assert main([*argv, "--teacher-model", str(teacher), *TINY]) == 0
    printed = capsys.readouterr().out
    assert "training a" not in printed and f"teacher: {teacher}" in printed
    assert not (out / "teacher.safetensors").exists()
    report = json.loads((out / "report.json").read_text())
    first = json.loads((first_run / "report.json").read_text())
    assert report["teacher"]["trained"] is False and report["teacher"]["file"] == str(teacher)
    assert report["teacher"]["params"] == first["teacher"]["params"]
    assert report["settings"]["teacher_model"] == str(teacher)
    assert report["rows"]["test"] == 4 and report["split"]["test_source"] == str(test)
    assert report["data"]["alphabet"] == first["data"]["alphabet"]  # the teacher's alphabet
    assert report["data"]["input_shape"][1] == 24  # the teacher's height, without --height
    assert report["settings"]["height"] == 24
    assert set(report["student"]["metrics"]) == {"sequence_accuracy", "cer"}


def test_mutual_learning_is_the_default_and_can_be_turned_off(first_run, tmp_path, capsys):
    """The distilled student trains with a peer by default; the report says which one of the two
    was kept and both validation CERs; the baseline (no teacher) trains alone; ``--no-mutual``
    trains the distilled student without a peer."""
    report = json.loads((first_run / "report.json").read_text())
    assert report["settings"]["mutual"] is True
    choices = report["textline_choices"]
    mutual = choices["student"]["mutual"]
    assert mutual["chosen"] in ("student", "peer")
    assert set(mutual["cer"]) == {"student", "peer"}
    assert mutual["cer"][mutual["chosen"]] == min(mutual["cer"].values())
    assert choices["baseline"]["mutual"] is None  # no teacher: trained alone
    model = crosskd.load(first_run)  # a plain reader, not the pair
    assert isinstance(model, CTCDistiller) and type(model.student_).__name__ == "CRNN"

    folder = write_folder(tmp_path / "lines", labels(20, seed=0))
    argv = ["distill", "--task", "textline", "--data", str(folder)]
    capsys.readouterr()
    assert main([*argv, "--out", str(tmp_path / "run-pair"), "--teacher-model",
                 str(first_run / "teacher.safetensors"), *TINY, "--seed", "3"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "distilling the teacher into the student and a peer (mutual learning" in printed
    assert re.search(r"mutual learning: kept the (student|peer) \(validation CER student", printed)
    out = tmp_path / "run-alone"
    teacher = first_run / "teacher.safetensors"
    argv = ["distill", "--task", "textline", "--data", str(folder), "--out", str(out)]
    assert main([*argv, "--teacher-model", str(teacher), *TINY, "--seed", "3", "--no-mutual"]) == 0
    assert "mutual learning" not in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["mutual"] is False
    assert report["textline_choices"]["student"]["mutual"] is None


def _error(argv: list[str], capsys) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("crosskd: error: ") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize(
    "case, message",
    [
        ("empty folder", "holds no images"),
        ("empty label", r"have an empty label, e\.g\. .*0\.png"),
        ("missing teacher", "The teacher checkpoint .* does not exist"),
        ("not a model", "not a crosskd bundle"),
        ("alphabet mismatch", r"character\(s\) that the teacher .* cannot read \('z'\)"),
        ("checkpoint as --teacher", "--teacher is the backbone .* give it as --teacher-model"),
        ("teacher and backbone", "--teacher chooses the backbone of a teacher to train"),
        ("two hidden sizes", "--hidden is a setting for tables, images, but the data is read"),
        ("image student", "--student for text lines is a CRNN backbone"),
        ("lines too narrow", r"needs \d CTC frames .* the student reads 2 frames"),
        ("other height than the teacher", "reads lines of height 24, but --height 48"),
        ("bad alpha", r"--alpha must be a number in \[0, 1\]"),
        (
            "textline flag on a table",
            "--height is a setting for text lines, but the data is read as tables",
        ),
    ],
)
def test_textline_errors_are_one_line(first_run, tmp_path, capsys, case, message):
    teacher = str(first_run / "teacher.safetensors")
    folder = write_folder(tmp_path / "lines", ["aaa", "aab", "ab", "ba", "bc", "ca", "abc"])
    base = ["distill", "--task", "textline", "--data", str(folder), "--out", str(tmp_path / "o")]
    extra: list[str] = []
    if case == "empty folder":
        (tmp_path / "empty").mkdir()
        base[4] = str(tmp_path / "empty")
    elif case == "empty label":
        tsv = write_tsv(tmp_path / "t" / "lines.tsv", ["ab"])
        tsv.write_text("path\tlabel\nlines-images/0.png\t\n")
        base[4] = str(tsv)
    elif case == "missing teacher":
        extra = ["--teacher-model", str(tmp_path / "nope.safetensors")]
    elif case == "not a model":
        (tmp_path / "junk.safetensors").write_text("not a model")
        extra = ["--teacher-model", str(tmp_path / "junk.safetensors")]
    elif case == "alphabet mismatch":
        base[4] = str(write_folder(tmp_path / "z", ["az", "za", "bz", "zb", "cz", "zc"]))
        extra = ["--teacher-model", teacher]
    elif case == "checkpoint as --teacher":
        extra = ["--teacher", teacher]
    elif case == "teacher and backbone":
        extra = ["--teacher-model", teacher, "--teacher", "tiny"]
    elif case == "two hidden sizes":
        extra = ["--hidden", "8,8"]
    elif case == "image student":
        extra = ["--student", "cnn"]
    elif case == "lines too narrow":
        extra = ["--width", "8"]
    elif case == "other height than the teacher":
        extra = ["--teacher-model", teacher, "--height", "48"]
    elif case == "bad alpha":
        extra = ["--alpha", "2"]
    elif case == "textline flag on a table":
        base = ["distill", "--data", "t.csv", "--target", "y", "--out", str(tmp_path / "o")]
        extra = ["--height", "32"]
    assert re.search(message, _error([*base, *extra], capsys))
    assert not (tmp_path / "o" / "report.json").exists()


def _doc_commands() -> list[tuple[str, str]]:
    found = []
    for page in ("cli.md", "textline.md"):
        text = (ROOT / "docs" / page).read_text(encoding="utf-8")
        for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
            for line in block.splitlines():
                line = line.split("#")[0].strip()
                if line.startswith("crosskd distill") and (
                    "textline" in line or "teacher.safetensors" in line
                ):
                    found.append((page, line))
    return found


def test_docs_textline_commands_run(tmp_path, monkeypatch):
    """The text-line commands of docs/cli.md and docs/textline.md, in order, as written, on
    synthetic stand-ins for their data (``../shared/data/ocr/captcha`` gets the captcha layout, a
    folder holding ``images/``), with tiny models and one epoch appended."""
    commands = _doc_commands()
    assert [page for page, _ in commands] == ["cli.md", "cli.md", "textline.md"]
    work = tmp_path / "work"
    write_folder(work / "lines", labels(14, seed=0))
    write_tsv(work / "lines.tsv", labels(10, seed=1))
    write_tsv(work / "test.tsv", labels(3, seed=2))
    captcha = tmp_path / "shared" / "data" / "ocr" / "captcha"
    write_folder(captcha / "images", labels(14, seed=3))
    (captcha / "README.md").write_text("synthetic stand-in\n")
    monkeypatch.chdir(work)
    alphabets = []
    for page, command in commands:
        argv = shlex.split(command)
        assert argv[:2] == ["crosskd", "distill"], command
        tiny = TINY if "--teacher-model" in argv else [*TINY, *TINY_TEACHER]
        assert main([*argv[1:], *tiny]) == 0, f"{page}: {command}"
        out = Path(argv[argv.index("--out") + 1])
        report = json.loads((out / "report.json").read_text())
        assert report["kind"] == "textline"
        assert {"sequence_accuracy", "cer"} <= set(report["student"]["metrics"])
        alphabets.append("".join(report["data"]["alphabet"]["chars"]))
    assert alphabets == ["abc"] * 3


def test_textline_run_exports_to_onnx(first_run, tmp_path, capsys):
    """Issue 17 item 4: a text-line run exports; onnxruntime reads the run's test lines as torch."""
    pytest.importorskip("onnxruntime")
    from crosskd.export import OnnxExport
    from crosskd.losses import greedy_decode
    from crosskd.pipeline import run_test_rows

    capsys.readouterr()
    target = tmp_path / "lines.onnx"
    assert main(["export", str(first_run), "--format", "onnx", "--out", str(target)]) == 0
    assert "reads the 2 test lines of the run as torch does" in capsys.readouterr().out
    onnx_file = OnnxExport.from_file(target)
    assert onnx_file.alphabet["chars"] == ["a", "b", "c"]
    x_test, _ = run_test_rows(first_run)
    reader = crosskd.load(first_run)
    probs = onnx_file.predict_proba(x_test)
    decoded = ["".join(reader.alphabet_.decode(r)) for r in greedy_decode(torch.from_numpy(probs))]
    assert decoded == reader.predict(x_test)
