"""The ``crosskd`` command: ``crosskd demo``, ``crosskd distill`` and ``crosskd export``.

``crosskd distill`` reads its flags from the settings schema of :mod:`crosskd.config` (one flag
per setting, its help listing each data kind's default) and hands the run to the scaffold
(:func:`crosskd.pipeline.run`). Library messages name settings in backticks (`` `batch_size` ``);
this module shows them as the flags (``--batch-size``).

Errors a user can cause end with one line on stderr (``crosskd: error: ...``) and exit status 2; no
traceback.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .config import KIND_NAMES, KINDS, PRECISIONS, SETTINGS
from .exceptions import CrossKDError

__all__ = ["main", "build_parser", "translate"]


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _or_auto(parse: Callable[[str], Any], what: str) -> Callable[[str], Any]:
    """An argparse type: ``"auto"`` (any case), else ``parse(text)`` with a message naming
    ``what`` was expected."""

    def parsed(text: str) -> Any:
        if text.strip().lower() == "auto":
            return "auto"
        try:
            return parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what} or auto, got {text!r}") from None

    return parsed


_number_or_auto = _or_auto(float, "a number")
_int_or_auto = _or_auto(int, "an integer")


def _share_or_count(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return _number(text)


def _hidden(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected layer sizes separated by commas such as 32,16, got {text!r}"
        ) from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(
            f"expected positive layer sizes such as 32,16, got {text!r}"
        )
    return sizes


#: argparse details of the settings that are not plain text (the rest take one string).
_INT = ("teacher_epochs", "student_width", "head_width", "shift", "height", "width",
        "latency_repeats", "seed")  # fmt: skip
#: integers that may also be "auto"
_INT_OR_AUTO = ("epochs", "early_stopping", "batch_size", "threads")
_FLOAT = ("temperature", "alpha", "lr", "warmup_epochs", "clip")
_METAVAR = {
    "temperature": "T",
    "alpha": "A",
    "epochs": "N",
    "teacher_epochs": "N",
    "early_stopping": "N",
    "batch_size": "N",
    "threads": "N",
    "latency_repeats": "N",
    "student_width": "N",
    "head_width": "N",
    "warmup_epochs": "N",
    "shift": "PX",
    "height": "PX",
    "width": "PX",
    "test_size": "SHARE|N",
    "validation_size": "SHARE|N",
    "data": "PATH",
    "target": "COLUMN",
    "out": "DIR",
    "test": "PATH",
    "teacher_model": "FILE",
    "teacher": "NAME",
    "student": "NAME",
    "hidden": "W1,W2",
    "drop": "COLUMN",
    "positive_label": "LABEL",
    "device": "DEVICE",
}


def _defaults_text(key: str) -> str:
    setting = SETTINGS[key]
    kinds = setting.kinds()
    if not setting.defaults:
        return "required" + ("" if kinds == KINDS else f" for {KIND_NAMES[kinds[0]]}")

    def shown(value: Any) -> str:
        if isinstance(value, list) and not value:
            return "none"
        if isinstance(value, list):
            return ",".join(map(str, value)) if key == "hidden" else " ".join(map(str, value))
        if value is None:
            return "auto" if key == "batch_size" else "none"
        return f"{value:g}" if isinstance(value, float) else str(value)

    values = {k: shown(setting.defaults[k]) for k in kinds}
    if len(set(values.values())) == 1:
        only = "" if kinds == KINDS else f"{', '.join(KIND_NAMES[k] for k in kinds)} only; "
        return f"{only}default {next(iter(values.values()))}"
    return "default: " + ", ".join(f"{KIND_NAMES[k]} {v}" for k, v in values.items())


#: true-by-default settings, turned off by a flag of their own.
_OFF_FLAGS = {
    "baseline": "--no-baseline",
    "augment": "--no-augment",
    "choose_on_validation": "--keep-distilled",
    "mutual": "--no-mutual",
}


#: the help's "default:" of the flags above, where it is not simply "done"
_OFF_DEFAULTS = {
    "choose_on_validation": "the better one is saved",
    "augment": "images: done; text lines: auto, chosen on the validation lines",
}


def _add_setting(group: Any, key: str) -> None:
    setting = SETTINGS[key]
    text = f"{setting.help} ({_defaults_text(key)})"
    if key in _OFF_FLAGS:
        off = {
            "baseline": "do not train the baseline (the student on labels alone)",
            "augment": "do not augment training batches (random shifts of images; affine "
            "jitter, blur and noise of text lines)",
            "choose_on_validation": "save the distilled student even when the baseline scores "
            "better on the validation rows",
            "mutual": "train the distilled text-line student alone with its teacher, without a "
            "peer (deep mutual learning off: half the student's training time)",
        }[key]
        kinds = setting.kinds()
        where = "" if kinds == KINDS else f"{', '.join(KIND_NAMES[k] for k in kinds)} only; "
        group.add_argument(
            _OFF_FLAGS[key], dest=key, action="store_false", default=None,
            help=f"{off} ({where}default: {_OFF_DEFAULTS.get(key, 'done')})",
        )  # fmt: skip
        return
    if key in ("quiet", "skip_unreadable"):
        group.add_argument(setting.flag, dest=key, action="store_true", default=None, help=text)
        return
    kwargs: dict[str, Any] = {"metavar": _METAVAR.get(key, key.split("_")[-1].upper())}
    if key in _INT:
        kwargs["type"] = int
    elif key in _INT_OR_AUTO:
        kwargs["type"] = _int_or_auto
    elif key in ("temperature", "alpha"):
        kwargs["type"] = _number_or_auto
    elif key in _FLOAT:
        kwargs["type"] = _number
    elif key in ("test_size", "validation_size"):
        kwargs["type"] = _share_or_count
    elif key == "hidden":
        kwargs["type"] = _hidden
    elif key in ("image_size", "teacher_input_size"):
        kwargs.update(type=int, nargs=2, metavar=("H", "W"))
    elif key == "drop":
        kwargs["action"] = "append"
    elif key == "integer_codes":
        kwargs.update(nargs="+", metavar="auto|none|COLUMN")
    elif key == "precision":
        kwargs = {"choices": list(PRECISIONS)}
    elif key == "method":
        kwargs = {"choices": ["hinton", "dkd", "dist", "ranking", "auto", "frame", "bag"]}
    elif key == "kd_mode":
        kwargs = {"choices": ["frame", "sequence", "both"]}
    group.add_argument(setting.flag, dest=key, help=text, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    """The ``crosskd`` argument parser (every subcommand)."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="crosskd",
        description="Distil LightGBM / scikit-learn / timm teachers into small PyTorch students.",
    )
    parser.add_argument("--version", action="version", version=f"crosskd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="simulate card transactions, distil a LightGBM teacher into a small MLP, print a table",
        description=(
            "Generate a fraud-like transaction data set (the Fraud Detection Handbook's simulator), "
            "train a LightGBM teacher, then the same small MLP student without and with "
            "distillation over several seeds, and print quality, size and speed side by side. "
            "The speed column times all models in one loop, repeated, and keeps the minimum."
        ),
    )
    demo.add_argument(
        "--size",
        choices=["tiny", "small", "medium"],
        default="small",
        help="data size: tiny (the fewest transactions, for tests), small (default), medium. "
        "Most of a run's time is LightGBM's and the students' training; it grows with the size "
        "and --seeds and is printed at the end",
    )
    demo.add_argument("--seeds", type=int, default=3, help="student seeds to average (default 3)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the data generator (default 0)")
    demo.add_argument("--device", default="cpu", help="device of the students (default cpu)")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.add_argument(
        "--threads", type=_int_or_auto, default="auto", metavar="N",
        help="CPU threads of torch and LightGBM (default auto: no more than the idle cores, one "
        "for small models)",
    )  # fmt: skip

    distill = sub.add_parser(
        "distill",
        help="distil a teacher into a small student on your own table, images or text lines",
        description=(
            "Train (or load) a teacher, then the same small student on labels alone (the "
            "baseline) and distilled from the teacher, and write the student bundle, the teacher, "
            "report.json, summary.md, plots and the resolved config.yaml to --out. The data kind "
            "comes from --data (a .csv / .parquet table; images: a .npz, IDX files, an MNIST "
            "folder or a folder of class subfolders; text lines: a folder of <label>.png images "
            "or a TSV of path<TAB>label lines) or --task. Settings can come from a YAML file "
            "(CONFIG) whose keys are the flags' names (batch_size for --batch-size); flags given "
            "on the command line override the file. Defaults differ by kind: each flag lists them."
        ),
    )
    distill.add_argument("config", nargs="?", metavar="CONFIG", help="YAML config file (optional)")
    distill.add_argument(
        "--task",
        choices=["auto", *KINDS],
        default=None,
        help="the data kind (default auto: from --data; a folder of images without subfolders "
        "or a TSV naming images is text lines)",
    )
    titles = {
        ("table",): "tables",
        ("image",): "images",
        ("textline",): "text lines (read with CTC)",
        ("table", "image"): "tables and images",
        ("image", "textline"): "images and text lines",
    }
    groups = {"all": distill.add_argument_group("every data kind")}
    for kinds, title in titles.items():
        groups[kinds] = distill.add_argument_group(title)
    for key, setting in SETTINGS.items():
        _add_setting(groups.get(setting.kinds(), groups["all"]), key)

    export = sub.add_parser(
        "export",
        help="export the student of a crosskd distill run (ONNX)",
        description=(
            "Write the student of RUN_DIR as ONNX (tabular students take the raw numeric columns "
            "in training order; image students their images; text-line students their line "
            "images, giving per-frame probabilities), and check that onnxruntime agrees with "
            "torch: the same probabilities, and for text lines the same greedy readings of the "
            "run's test lines."
        ),
    )
    export.add_argument("run_dir", metavar="RUN_DIR", help="a crosskd distill output folder")
    export.add_argument("--format", default="onnx", choices=["onnx"], help="export format")
    export.add_argument("--out", metavar="FILE", help="output file (default RUN_DIR/student.onnx)")
    export.add_argument(
        "--quantize", choices=["int8"], help="also write an int8 copy (ONNX Runtime quantisation), "
        "refused when it loses more than the tolerance on the run's validation rows",
    )  # fmt: skip
    export.add_argument(
        "--quantize-mode", choices=["dynamic", "static"], default="dynamic",
        help="int8 weights only (dynamic, default) or weights and activations calibrated on "
        "training rows (static)",
    )  # fmt: skip
    export.add_argument(
        "--tolerance", type=_number, metavar="X", help="largest validation metric loss allowed "
        "(default: 0.005 AP, 0.002 accuracy, 0.005 CER)",
    )  # fmt: skip
    export.add_argument(
        "--force", action="store_true", help="write the int8 file even above the tolerance"
    )
    return parser


def _flag(key: str) -> str | None:
    if key == "task":
        return "--task"
    setting = SETTINGS.get(key)
    if setting is None:
        return None
    if key in _OFF_FLAGS:
        return _OFF_FLAGS[key]
    return setting.flag


def translate(message: str) -> str:
    """A library message for the command line: `` `key` `` of a setting becomes its flag (in a
    message about a config file, the key without backticks)."""
    in_file = message.startswith("config file")

    def swap(match: re.Match[str]) -> str:
        key = match.group(1)
        flag = _flag(key)
        if flag is None:
            return match.group(0)
        return key if in_file else flag

    return re.sub(r"`([a-z_]+)`", swap, message)


def _detect_kind(data: str | None, target: str | None) -> str:
    from .vision.data import looks_like_images
    from .vision.textlines import looks_like_textlines

    if data is None:
        return "table"
    # A folder with --target is a mistaken table path (read_table says so); an .npz or IDX file is
    # images whatever else is given. Text lines: a folder of images without subfolders, or a .tsv
    # whose first line names an image file.
    images = looks_like_images(data)
    if images and Path(data).is_dir() and target is not None:
        images = False
    if target is None and looks_like_textlines(data):
        return "textline"
    return "image" if images else "table"


def _distill(args: argparse.Namespace) -> None:
    from .config import config_task, load_config, resolve_settings
    from .pipeline import make_kind, run

    flags = {k: getattr(args, k) for k in SETTINGS}
    flags = {k: v for k, v in flags.items() if v is not None}
    file_task = config_task(args.config) if args.config else None
    kind = args.task if args.task not in (None, "auto") else file_task
    file_settings = load_config(args.config) if args.config else {}
    if kind is None:
        data = flags.get("data", file_settings.get("data"))
        kind = _detect_kind(data, flags.get("target", file_settings.get("target")))
    settings = resolve_settings(args.config, flags, kind)
    given = frozenset(flags) | frozenset(file_settings)
    kind_ = make_kind(kind, settings, progress=not settings["quiet"], given=given)
    run(kind_, echo=lambda line: print(translate(line)))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``crosskd`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        if args.command == "demo":
            from .demo import run_demo

            run_demo(
                size=args.size,
                seeds=args.seeds,
                data_seed=args.seed,
                device=args.device,
                progress=not args.quiet,
                threads=args.threads,
            )
        elif args.command == "distill":
            _distill(args)
        elif args.command == "export":
            from .export import export_command

            export_command(
                args.run_dir,
                args.format,
                args.out,
                quantize=args.quantize,
                quantize_mode=args.quantize_mode,
                tolerance=args.tolerance,
                force=args.force,
            )
    except CrossKDError as err:
        print(f"crosskd: error: {translate(str(err))}", file=sys.stderr)
        return 2
    except OSError as err:
        # The file system refused something (permission denied, disk full, ...): still one line.
        where = f" ({err.filename})" if getattr(err, "filename", None) else ""
        print(f"crosskd: error: {err.strerror or err}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("crosskd: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
