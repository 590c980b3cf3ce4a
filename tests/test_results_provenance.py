"""Committed benchmark results carry their provenance, and the docs quote them faithfully.

1. Every ``benchmarks/results/*.json`` was written through ``benchmarks/_results.py`` (commit,
   argv as run, environment, load, wall time, ...), except the files listed in :data:`STALE`, each
   with the reason it awaits a rerun. A new file without provenance fails; so does a STALE entry
   whose file has been regenerated (remove it from the list).
2. The markdown tables of README.md and docs/*.md that claim to come from a benchmark match its
   JSON file, number by number, at the precision the table shows (:data:`DOC_TABLES`: which table
   comes from which file, and which column from which field).
"""

from __future__ import annotations

import json
import math
import re
import shlex
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"

sys.path.insert(0, str(REPO / "benchmarks"))
from _results import PROVENANCE_FIELDS as PROVENANCE  # noqa: E402  (the fields the helper writes)

#: Results files written before the results helper, each with why it is stale. The lead reruns
#: them on the code that lands (issue 14); a regenerated file must leave this list.
STALE: dict[str, str] = {}

# ----------------------------------------------------------------------------- results files


def _results_files() -> list[Path]:
    return sorted(RESULTS.glob("*.json"))


def test_stale_list_names_existing_files() -> None:
    names = {p.name for p in _results_files()}
    assert set(STALE) <= names, f"STALE names files that do not exist: {set(STALE) - names}"


@pytest.mark.parametrize("path", _results_files(), ids=lambda p: p.name)
def test_results_file_has_provenance(path: Path) -> None:
    payload = json.loads(path.read_text())
    if path.name in STALE:
        assert any(key not in payload for key in PROVENANCE), (
            f"{path.name} now carries provenance: remove it from STALE in {__file__}"
        )
        return
    missing = [key for key in PROVENANCE if key not in payload]
    assert not missing, (
        f"{path.name} lacks {missing}: write it through benchmarks/_results.py, or list it in "
        "STALE with the reason it awaits a rerun"
    )
    assert re.fullmatch(r"[0-9a-f]{40}", payload["git_commit"]), payload["git_commit"]
    assert payload["git_dirty"] is False, f"{path.name} was produced by uncommitted code"
    assert payload["quick"] is False, f"{path.name} is a --quick run, not a result"
    assert payload["argv"][0].startswith("benchmarks/") and payload["argv"][0].endswith(".py")
    assert payload["command"].endswith("python " + shlex.join(payload["argv"])), payload["command"]
    assert set(payload["load_average"]) == {"start", "end"}
    assert payload["wall_seconds"] > 0
    env = payload["environment"]
    assert "torch" in env and "threads" in env and "OMP_NUM_THREADS" in env
    assert path.stem.split("-")[0] == payload["benchmark"]
    assert payload["rows"], f"{path.name} has no rows"
    for row in payload["rows"]:
        assert isinstance(row["model"], str) and isinstance(row["role"], str), row
        if "chosen" in row:
            assert isinstance(row["chosen"], bool), row


# ----------------------------------------------------------------------------- doc tables

#: (markdown file, header of the table, results file, {doc row label: JSON model} or None for
#: equal labels, {column header: path of the JSON field}, reason to expect a mismatch or None).
DEMO_COLUMNS = {
    "params": ("params",),
    "bytes": ("bytes",),
    "ROC AUC": ("metrics", "roc_auc"),
    "average precision": ("metrics", "average_precision"),
    "CPU ms / 10k rows": ("timing", "ms_per_10k_rows"),
}
#: the columns of the text-line method tables of docs/methods.md
TEXTLINE_METHOD_COLUMNS = {
    "T (validation)": ("temperature",),
    "validation CER": ("validation", "cer"),
    "test sequence accuracy": ("metrics", "sequence_accuracy"),
    "test CER": ("metrics", "cer"),
    "minus frame (± seed noise)": ("difference_to_reference",),
}


def _method_rows(data: str, student: str, temperatures: dict[str, int]) -> dict[str, str]:
    """{method: JSON model} of one method table of benchmarks/methods.py."""
    return {m: f"{data}: {student}, {m}, T={t}" for m, t in temperatures.items()}


DOC_TABLES = [
    (
        "README.md",
        "| model | params | bytes | ROC AUC | average precision | CPU ms / 10k rows |",
        "demo.json",
        None,
        DEMO_COLUMNS,
        None,
    ),
    (
        "docs/fraud.md",
        "| model | role | ROC AUC | AP | CP@100 | params | bytes | rows/s batch 1 | rows/s batch 10k "
        "| agreement |",
        "fraud_handbook.json",
        None,
        {
            "ROC AUC": ("metrics", "roc_auc"),
            "AP": ("metrics", "average_precision"),
            "CP@100": ("metrics", "cp_at_100"),
            "params": ("params",),
            "bytes": ("bytes",),
            "rows/s batch 1": ("timing", "rows_per_s_batch1"),
            "rows/s batch 10k": ("timing", "rows_per_s_batch10000"),
            "agreement": ("metrics", "rank_agreement"),
            "validation AP": ("validation", "average_precision"),
        },
        None,
    ),
    (
        "docs/textline.md",
        "| model | role | chosen | params | 1/x of teacher | frames | validation seq. accuracy | "
        "seq. accuracy | CER | latency ms | epochs run (mean) | plateau restarts (all folds) |",
        "textline_ctc.json",
        None,
        {
            "params": ("params",),
            "frames": ("frames",),
            "seq. accuracy": ("metrics", "sequence_accuracy"),
            "CER": ("metrics", "cer"),
            "latency ms": ("timing", "latency_ms_batch1"),
            "validation seq. accuracy": ("validation", "sequence_accuracy"),
        },
        None,
    ),
    (
        "docs/mnist.md",
        "| model | validation errors, seed 0 / 5,000 | test errors |",
        "mnist_hinton-conv.json",
        {
            "teacher: LeNet-style CNN, jitter, 15 epochs, lr 0.003 (**chosen on validation**)": "teacher LeNet-style conv5x5(32)-pool-conv5x5(64)-pool-fc(256), dropout 0.3, jitter 2px, 15 epochs at lr 0.003 on 55,000 images (val errors 32 / 5,000; chosen on validation)",
            "teacher: LeNet-style CNN, jitter, 15 epochs, lr 0.001 (not chosen)": "teacher LeNet-style conv5x5(32)-pool-conv5x5(64)-pool-fc(256), dropout 0.3, jitter 2px, 15 epochs at lr 0.001 on 55,000 images (val errors 34 / 5,000; not chosen on validation)",
            "784-800-800-10 alone, jitter, 50 epochs (matched control)": "student 784-800-800-10 alone, jitter 2px, 50 epochs on 55,000 images (matched control: same seeds, shifts and epochs, no teacher)",
            "784-800-800-10 alone, no jitter, 50 epochs": "student 784-800-800-10 alone, no jitter, 50 epochs on 55,000 images (the paper's 'student alone')",
            "784-800-800-10 distilled online, T=4, alpha 0.9 (**chosen on validation**)": "student 784-800-800-10 distilled from the conv teacher, T=4, alpha=0.9, jitter 2px (online), 50 epochs (chosen on validation)",
            "784-800-800-10 distilled online, T=20, alpha 0.9 (not chosen)": "student 784-800-800-10 distilled from the conv teacher, T=20, alpha=0.9, jitter 2px (online), 50 epochs (not chosen on validation)",
        },
        {
            "validation errors, seed 0 / 5,000": ("val_errors", 0),
            "test errors": ("metrics", "errors"),
        },
        None,
    ),
    (
        "docs/performance.md",
        "| path | p50 batch 1 (us) | p99 batch 1 (us) | rows/s at batch 10,000 |",
        "latency-cpu.json",
        {
            "teacher: `LightGBMTeacher.predict_proba` (DataFrame)": "teacher: "
            "LightGBMTeacher.predict_proba (DataFrame), 300 trees",
            "teacher: `Booster.predict` (numpy, raw model)": "teacher: Booster.predict (numpy, raw "
            "model)",
            "student: `Distiller.predict_proba` (DataFrame, encoding included)": "student: "
            "Distiller.predict_proba (DataFrame, eager torch, encoding included)",
            "student: module on pre-encoded tensors (eager torch)": "student: raw module on "
            "pre-encoded tensors (eager torch)",
            "student: `torch.jit.trace` (pre-encoded tensors)": "student: torch.jit.trace of the "
            "module (pre-encoded tensors)",
            "student: `torch.export` program (pre-encoded tensors)": "student: torch.export "
            "program (pre-encoded tensors)",
            "student: ONNX (`crosskd.export.export_onnx`) in onnxruntime, raw rows": "student: "
            "ONNX (crosskd.export.export_onnx) in onnxruntime, raw numeric rows (scaling inside "
            "the graph)",
        },
        {
            "p50 batch 1 (us)": ("timing", "p50_us_batch1"),
            "p99 batch 1 (us)": ("timing", "p99_us_batch1"),
            "rows/s at batch 10,000": ("timing", "rows_per_s_batch10000"),
        },
        None,
    ),
    (
        "docs/performance.md",
        "| model | ROC AUC (50k held-out rows) | samples/s | peak RSS (GB) |",
        "streaming-cpu.json",
        None,
        {
            "ROC AUC (50k held-out rows)": ("metrics", "roc_auc"),
            "samples/s": ("metrics", "samples_per_s"),
            "peak RSS (GB)": ("metrics", "peak_rss_gb"),
        },
        None,
    ),
    (
        "docs/performance.md",
        "| loop (CPU) | samples/s | x loop (a) | x loop (b) | validation loss |",
        "throughput-cpu.json",
        None,
        {
            "samples/s": ("metrics", "samples_per_s"),
            "x loop (a)": ("metrics", "ratio"),
            "x loop (b)": ("metrics", "ratio_vs_slice"),
            "validation loss": ("metrics", "val_loss"),
        },
        None,
    ),
    *[
        (
            "docs/methods.md",
            f"| {data}: method | T (validation) | validation CER | test sequence accuracy | "
            "test CER | minus frame (± seed noise) |",
            file,
            _method_rows(data, "tiny CRNN w4 h20", temperatures),
            TEXTLINE_METHOD_COLUMNS,
            None,
        )
        for data, file, temperatures in (
            ("captcha", "methods-textlines.json", {"frame": 1, "bag": 1, "mutual": 1}),
            ("mnist", "methods-textlines.json", {"frame": 2, "bag": 1, "mutual": 2}),
            ("digits8", "methods-textlines-digits8.json", {"frame": 1, "bag": 1, "mutual": 1}),
        )
    ],
    *[
        (
            "docs/methods.md",
            f"| {student}: method | T (validation) | validation errors / 5,000 | "
            "test errors / 10,000 | minus hinton (± seed noise) |",
            "methods-mnist.json",
            _method_rows("MNIST", student, temperatures),
            {
                "T (validation)": ("temperature",),
                "validation errors / 5,000": ("validation", "errors"),
                "test errors / 10,000": ("metrics", "errors"),
                "minus hinton (± seed noise)": ("difference_to_reference",),
            },
            None,
        )
        for student, temperatures in (
            ("784-800-800-10 MLP", {"hinton": 4, "dkd": 4, "dist": 4, "hinton+ls": 1}),
            (
                "SmallCNN(width=8)",
                {"hinton": 1, "dkd": 4, "dist": 1, "hinton+ls": 1, "hinton+hint": 1},
            ),
        )
    ],
    (
        "docs/mnist.md",
        "| run A: model | test errors | seeds |",
        "mnist_hinton-paper.json",
        None,
        {"test errors": ("metrics", "errors"), "seeds": ("seeds",)},
        None,
    ),
]


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def markdown_table(text: str, header: str) -> list[dict[str, str]]:
    """The rows (dicts by column header) of the first table whose header starts with the first
    cell of ``header`` and holds all its cells (columns added later, such as ``chosen``, are
    allowed)."""
    lines = text.splitlines()
    want = _cells(header)
    for i, line in enumerate(lines):
        if not line.startswith("|"):
            continue
        have = _cells(line)
        if have[0] == want[0] and set(want) <= set(have):
            rows = []
            for body in lines[i + 2 :]:
                if not body.startswith("|"):
                    break
                rows.append(dict(zip(have, _cells(body), strict=True)))
            return rows
    raise AssertionError(f"no table with the columns of {header!r}")


_NUMBER = r"[-+]?[0-9][0-9,]*(?:\.[0-9]+)?"


def parse_cell(cell: str) -> list[tuple[float, int]] | None:
    """``"0.8976 ± 0.0014"`` -> ``[(0.8976, 4), (0.0014, 4)]`` (value, decimals shown);
    ``"**4,785**"`` -> ``[(4785.0, 0)]``; empty -> None."""
    text = cell.replace("**", "").strip()
    if not text:
        return None
    parts = [p.strip() for p in text.split("±")]
    out = []
    for part in parts:
        if not re.fullmatch(_NUMBER, part):
            raise AssertionError(f"cannot read the number in cell {cell!r}")
        decimals = len(part.split(".")[1]) if "." in part else 0
        out.append((float(part.replace(",", "")), decimals))
    return out


def _field(row: dict, path: tuple[str | int, ...]):
    value = row
    for key in path:
        if isinstance(key, int) and not isinstance(value, list):
            continue  # a one-seed row stores the value itself: it is seed 0's
        value = value[key]
    return value


def _close(shown: float, decimals: int, stored: float) -> bool:
    """Whether ``shown`` (at ``decimals``) is ``stored``, allowing the JSON's own rounding to 4
    significant digits."""
    tolerance = 0.5 * 10.0**-decimals
    if stored != 0:
        tolerance += 0.5 * 10.0 ** (math.floor(math.log10(abs(stored))) - 3)
    return abs(shown - stored) <= tolerance + 1e-12


def _table_params():
    for doc, header, results, names, columns, pending in DOC_TABLES:
        marks = [pytest.mark.xfail(reason=pending, strict=True)] if pending else []
        yield pytest.param(doc, header, results, names, columns, marks=marks, id=f"{doc}:{results}")


@pytest.mark.parametrize(("doc", "header", "results", "names", "columns"), list(_table_params()))
def test_doc_table_matches_results(doc, header, results, names, columns) -> None:
    table = markdown_table((REPO / doc).read_text(), header)
    payload = json.loads((RESULTS / results).read_text())
    by_model = {row["model"]: row for row in payload["rows"]}
    label_column = _cells(header)[0]
    assert table, f"{doc}: the table {header!r} is empty"
    mismatches = []
    for doc_row in table:
        label = doc_row[label_column]
        model = names.get(label, label) if names else label
        assert model in by_model, f"{doc}: row {label!r} is in no row of {results}"
        for column, path in columns.items():
            if column not in doc_row:  # a column the doc's table does not show (yet)
                continue
            shown = parse_cell(doc_row[column])
            if shown is None:
                continue
            stored = _field(by_model[model], path)
            stored = stored if isinstance(stored, list) else [stored]
            if len(shown) != len(stored) or not all(
                _close(s, d, float(v)) for (s, d), v in zip(shown, stored, strict=True)
            ):
                mismatches.append(f"{label} / {column}: doc {doc_row[column]!r}, JSON {stored}")
    assert not mismatches, f"{doc} differs from {results}:\n" + "\n".join(mismatches)


# ----------------------------------------------------------------------------- the checker


def test_parse_cell_and_tolerance() -> None:
    assert parse_cell("0.8976 ± 0.0014") == [(0.8976, 4), (0.0014, 4)]
    assert parse_cell("**4,785**") == [(4785.0, 0)]
    assert parse_cell("") is None
    with pytest.raises(AssertionError, match="cannot read"):
        parse_cell("2,080 / 1,870")
    assert _close(0.898, 3, 0.8976) and not _close(0.899, 3, 0.8976)
    assert _close(311_344, 0, 311_300.0)  # the JSON keeps 4 significant digits
    assert not _close(311_344, 0, 311_500.0)


def test_a_wrong_number_in_a_doc_table_is_caught(tmp_path) -> None:
    doc = "| model | params | AP |\n|---|---:|---:|\n| m | 1,074 | 0.644 ± 0.008 |\n"
    table = markdown_table(doc, "| model | params | AP |")
    row = {"model": "m", "params": 1074, "metrics": {"average_precision": [0.6479, 0.0071]}}
    shown = parse_cell(table[0]["AP"])
    stored = _field(row, ("metrics", "average_precision"))
    assert not all(_close(s, d, v) for (s, d), v in zip(shown, stored, strict=True))
    assert _close(*parse_cell(table[0]["params"])[0], row["params"])


_VERDICTS = (
    "| data | seeds with integer codes used | recipe | default (saved) | recipe (saved) | "
    "recipe - default | spread (larger std) | within |"
)
#: Tables of docs/defaults.md copied whole from a benchmark's markdown (its verdict table, computed
#: from the JSON by the same run): (header, which of the doc's tables with that header, results
#: markdown).
COPIED_TABLES = [
    (_VERDICTS, 0, "defaults_cli.md"),
    (_VERDICTS, 1, "defaults_cli-clip.md"),
]


def _table_block(text: str, header: str, occurrence: int = 0) -> list[str]:
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line == header]
    assert len(starts) > occurrence, f"table {header[:40]!r} #{occurrence} not found"
    start = starts[occurrence]
    block = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        block.append(line)
    return block


@pytest.mark.parametrize(
    "header,occurrence,results", COPIED_TABLES, ids=[r for _, _, r in COPIED_TABLES]
)
def test_copied_tables_match_their_results(header: str, occurrence: int, results: str) -> None:
    doc = _table_block((REPO / "docs" / "defaults.md").read_text(), header, occurrence)
    source = (RESULTS / results).read_text()
    assert _table_block(source, header) == doc, f"docs/defaults.md differs from {results}"
    prov = [line for line in source.splitlines() if line.startswith("`OMP_NUM_THREADS")][0]
    assert prov in (REPO / "docs" / "defaults.md").read_text(), "its run line is not quoted"
