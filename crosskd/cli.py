"""The ``crosskd`` command: ``crosskd demo`` and ``crosskd distill``.

Errors a user can cause end with one line on stderr (``crosskd: error: ...``) and exit status 2; no
traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .config import DEFAULTS
from .exceptions import CrossKDError
from .vision.textline_distill import TEXTLINE_DEFAULTS

__all__ = ["main"]


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _hidden(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected layer sizes separated by commas such as 32,16, got {text!r}"
        ) from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(
            f"expected positive layer sizes such as 32,16, got {text!r}"
        )
    return sizes


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crosskd",
        description="Distil LightGBM / scikit-learn / timm teachers into small PyTorch students.",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"crosskd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="simulate card transactions, distil a LightGBM teacher into a small MLP, print a table",
        description=(
            "Generate a fraud-like transaction data set (the Fraud Detection Handbook's simulator), "
            "train a LightGBM teacher, then the same small MLP student without and with "
            "distillation over several seeds, and print quality, size and speed side by side."
        ),
    )
    demo.add_argument(
        "--size",
        choices=["tiny", "small", "medium"],
        default="small",
        help="data size: tiny (seconds, for tests), small (default, ~2 min on 2 cores), medium",
    )
    demo.add_argument("--seeds", type=int, default=3, help="student seeds to average (default 3)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the data generator (default 0)")
    demo.add_argument("--device", default="cpu", help="device of the students (default cpu)")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")

    distill = sub.add_parser(
        "distill",
        help="distil a teacher into a small student on your own table (CSV or parquet)",
        description=(
            "Train (or load) a LightGBM teacher on a table, distil it into a small MLP student, "
            "and write the student bundle, the teacher, report.json, summary.md, plots and the "
            "resolved config.yaml to --out. Rows whose target is empty are used as a transfer "
            "set: they get the teacher's targets only. Settings can come from a YAML file "
            "(CONFIG) whose keys are the flags' names (batch_size for --batch-size); flags given "
            "on the command line override the file."
        ),
    )
    d = DEFAULTS
    distill.add_argument("config", nargs="?", metavar="CONFIG", help="YAML config file (optional)")
    distill.add_argument(
        "--data", metavar="FILE", help="training table (.csv or .parquet); required"
    )
    distill.add_argument("--target", metavar="COLUMN", help="the label column; required")
    distill.add_argument(
        "--test",
        metavar="FILE",
        help="test table; default: a seeded, stratified hold-out of --data",
    )
    distill.add_argument("--out", metavar="DIR", help="output folder; required")
    distill.add_argument(
        "--teacher-model",
        metavar="FILE",
        help="a LightGBM model file to use as the teacher (else one is trained)",
    )
    distill.add_argument(
        "--drop",
        action="append",
        metavar="COLUMN",
        help="column to ignore (repeatable), e.g. an ID",
    )
    distill.add_argument(
        "--temperature",
        type=_number,
        help=f"distillation temperature T (default {d['temperature']:g})",
    )
    distill.add_argument(
        "--alpha",
        type=_number,
        help=f"weight of the distillation term in [0, 1] (default {d['alpha']:g})",
    )
    distill.add_argument(
        "--hidden",
        type=_hidden,
        help=f"student hidden layer sizes (default {','.join(map(str, d['hidden']))})",
    )
    distill.add_argument(
        "--epochs",
        type=int,
        help=f"maximum epochs (default {d['epochs']}; early stopping on a validation split)",
    )
    distill.add_argument(
        "--batch-size", type=int, help=f"rows per step (default {d['batch_size']})"
    )
    distill.add_argument(
        "--test-size",
        type=float,
        help=f"hold-out share when no --test (default {d['test_size']:g})",
    )
    distill.add_argument("--device", help=f"auto, cpu, cuda, cuda:N (default {d['device']})")
    distill.add_argument(
        "--precision",
        choices=["32", "bf16-mixed", "16-mixed"],
        help=f"training precision (default {d['precision']})",
    )
    distill.add_argument(
        "--seed", type=int, help=f"seed of splits and training (default {d['seed']})"
    )
    distill.add_argument("--quiet", action="store_true", default=None, help="no progress bars")
    images = distill.add_argument_group(
        "image data",
        "--data may also be images: a .npz with x and y, IDX files or an MNIST folder, or a folder "
        "with one subfolder per class (detected from the path, or --task image). Flags not given "
        "take the image defaults of crosskd.vision.distill_images (T=4, alpha=0.9, an 800-800 MLP).",
    )
    images.add_argument(
        "--task",
        choices=["auto", "table", "image", "textline"],
        default="auto",
        help="default: from --data (a folder of <label>.png text lines or a TSV of "
        "path<TAB>label lines is textline)",
    )
    images.add_argument(
        "--teacher",
        metavar="SPEC",
        help="image data: the teacher architecture to train, timm:NAME (default timm:resnet18); "
        "text lines: the teacher.safetensors of an earlier text-line run (skips the teacher's "
        "training)",
    )
    images.add_argument(
        "--student", metavar="KIND", help="mlp (default), cnn, or timm:NAME for image data"
    )
    images.add_argument(
        "--teacher-epochs",
        type=int,
        metavar="N",
        help="epochs of the teacher's training (default: --epochs)",
    )
    t = TEXTLINE_DEFAULTS
    lines = distill.add_argument_group(
        "text-line data (--task textline)",
        "--data is a folder of images named <label>.png, or a TSV of path<TAB>label lines (paths "
        "relative to the TSV). Lines are read in grey, resized to --height and padded to one "
        "width. A CRNN teacher is trained on the labels with CTC (or --teacher CHECKPOINT is "
        "used), then distilled into a small CRNN student. Flags not given take "
        "crosskd.vision.textline_distill.TEXTLINE_DEFAULTS.",
    )
    lines.add_argument(
        "--teacher-backbone",
        metavar="NAME",
        help=f"the teacher CRNN's backbone: tiny or a timm CNN name (default "
        f"{t['teacher']['backbone']})",
    )
    lines.add_argument(
        "--student-backbone",
        metavar="NAME",
        help=f"the student CRNN's backbone: tiny or a timm CNN name (default "
        f"{t['student']['backbone']})",
    )
    lines.add_argument(
        "--student-width",
        type=int,
        metavar="N",
        help=f"channels of the first stage of a tiny student backbone (default "
        f"{t['student']['width']}); --hidden N sets its head width (default "
        f"{t['student']['hidden']})",
    )
    lines.add_argument(
        "--kd-mode",
        choices=["frame", "sequence", "both"],
        help=f"CTC distillation: frame-wise KL, the teacher's decodings as targets, or both "
        f"(default {t['mode']})",
    )
    lines.add_argument(
        "--height", type=int, metavar="PX", help=f"line height in pixels (default {t['height']})"
    )
    lines.add_argument(
        "--width",
        type=int,
        metavar="PX",
        help="line width in pixels after padding (default: the widest training line)",
    )
    lines.add_argument(
        "--no-augment",
        dest="augment",
        action="store_false",
        default=None,
        help="no augmentation (default: crosskd.vision.textline_augment)",
    )

    export = sub.add_parser(
        "export",
        help="export the student of a crosskd distill run (ONNX)",
        description=(
            "Write the student of RUN_DIR as ONNX (tabular students take the raw numeric columns "
            "in training order), and check that onnxruntime gives torch's probabilities."
        ),
    )
    export.add_argument("run_dir", metavar="RUN_DIR", help="a crosskd distill output folder")
    export.add_argument("--format", default="onnx", choices=["onnx"], help="export format")
    export.add_argument("--out", metavar="FILE", help="output file (default RUN_DIR/student.onnx)")
    return parser


#: flags that image distillation takes (the rest are table-only)
IMAGE_KEYS = (
    "test",
    "teacher_model",
    "hidden",
    "temperature",
    "alpha",
    "epochs",
    "batch_size",
    "test_size",
    "device",
    "precision",
    "seed",
)


def _distill_images(args: argparse.Namespace, flags: dict) -> None:
    """``crosskd distill`` on image data: the settings given (file, then flags) over image defaults."""
    from .config import load_config
    from .exceptions import ConfigError
    from .vision.distill import distill_images

    given = dict(load_config(args.config)) if args.config else {}
    given.update({k: v for k, v in flags.items() if v is not None and v != []})
    for key in ("data", "out"):
        if not given.get(key):
            raise ConfigError(f"--{key} is required (on the command line or in the config file).")
    table_only = sorted(k for k in ("target", "drop") if given.get(k))
    if table_only:
        raise ConfigError(
            f"{', '.join('--' + k for k in table_only)}: only for tables, but --data holds images "
            "(labels come from the images' file or folder names). Remove them, or pass --task table."
        )
    kwargs = {k: given[k] for k in IMAGE_KEYS if k in given}
    if args.teacher:
        kwargs["teacher"] = args.teacher
    if args.student:
        kwargs["student"] = args.student
    if args.teacher_epochs is not None:
        kwargs["teacher_epochs"] = args.teacher_epochs
    distill_images(given["data"], given["out"], progress=not given.get("quiet"), **kwargs)


#: text-line flags (attribute name -> flag), refused for tables and images
TEXTLINE_ONLY = {
    "teacher_backbone": "--teacher-backbone",
    "student_backbone": "--student-backbone",
    "student_width": "--student-width",
    "kd_mode": "--kd-mode",
    "height": "--height",
    "width": "--width",
    "augment": "--no-augment",
}


def _check_not_textline(args: argparse.Namespace, task: str) -> None:
    given = [flag for name, flag in TEXTLINE_ONLY.items() if getattr(args, name) is not None]
    if task == "table" and args.teacher_epochs is not None:
        given.insert(0, "--teacher-epochs")
    if given:
        from .exceptions import ConfigError

        raise ConfigError(
            f"{', '.join(given)}: only for text-line data (--task textline), but --data is read as "
            f"{'a table' if task == 'table' else 'image data'}. Remove them, or pass --task textline."
        )


def _distill_textlines(args: argparse.Namespace, flags: dict) -> None:
    """``crosskd distill --task textline``: settings given (file, then flags) over
    :data:`~crosskd.vision.textline_distill.TEXTLINE_DEFAULTS`."""
    from .config import load_config
    from .exceptions import ConfigError
    from .vision.textline_distill import distill_textlines

    given = dict(load_config(args.config)) if args.config else {}
    given.update({k: v for k, v in flags.items() if v is not None and v != []})
    for key in ("data", "out"):
        if not given.get(key):
            raise ConfigError(f"--{key} is required (on the command line or in the config file).")
    refused = sorted("--" + k for k in ("target", "drop") if given.get(k))
    if args.student:
        refused.append("--student")
    if refused:
        raise ConfigError(
            f"{', '.join(refused)}: not for text lines (labels come from the file names or the "
            "TSV; choose the student with --student-backbone, --student-width and --hidden). "
            "Remove them."
        )
    teacher_model = given.get("teacher_model")
    if args.teacher:
        if args.teacher.startswith("timm:"):
            raise ConfigError(
                f"--teacher {args.teacher}: for text lines --teacher is a checkpoint file (the "
                "teacher.safetensors of an earlier run). Choose the architecture of a new teacher "
                f"with --teacher-backbone {args.teacher[len('timm:') :] or 'NAME'}."
            )
        if teacher_model is not None and flags.get("teacher_model") is not None:
            raise ConfigError("Give the teacher checkpoint once: --teacher or --teacher-model.")
        teacher_model = args.teacher
    if teacher_model is not None and args.teacher_backbone is not None:
        raise ConfigError(
            "--teacher-backbone chooses the architecture of a teacher to train, but a teacher "
            "checkpoint is given (its architecture is in the file). Give one of them."
        )
    settings: dict = {}
    for key in ("temperature", "alpha", "epochs", "batch_size", "device", "precision", "seed"):
        if key in given:
            settings[key] = given[key]
    if "test_size" in given:
        settings["test_size"] = float(given["test_size"])
    if args.teacher_epochs is not None:
        settings["teacher_epochs"] = args.teacher_epochs
    if args.kd_mode is not None:
        settings["mode"] = args.kd_mode
    for key in ("height", "width"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    if args.augment is False:
        settings["augment"] = None
    if args.teacher_backbone is not None:
        settings["teacher"] = {"backbone": args.teacher_backbone}
    student: dict = {}
    if args.student_backbone is not None:
        student["backbone"] = args.student_backbone
    if args.student_width is not None:
        student["width"] = args.student_width
    hidden = given.get("hidden")
    if hidden is not None:
        hidden = list(hidden)
        if len(hidden) != 1:
            raise ConfigError(
                f"--hidden for text lines is the width of the student's head, one number such as "
                f"64; got {','.join(map(str, hidden))}."
            )
        student["hidden"] = hidden[0]
    if student:
        settings["student"] = student
    distill_textlines(
        given["data"],
        given["out"],
        test=given.get("test"),
        teacher_model=teacher_model,
        progress=not given.get("quiet"),
        **settings,
    )


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
            )
        elif args.command == "distill":
            from .config import KEYS, load_config, resolve_settings
            from .distill import distill_table
            from .vision.data import looks_like_images
            from .vision.textlines import looks_like_textlines

            flags = {k: getattr(args, k) for k in KEYS}
            task = args.task
            if task == "auto":
                data = flags["data"] or (
                    load_config(args.config).get("data") if args.config else None
                )
                # A folder with --target is a mistaken table path (read_table says so); an .npz or
                # IDX file is images whatever else is given. Text lines: a folder of images without
                # subfolders, or a .tsv whose first line names an image file.
                images = data is not None and looks_like_images(data)
                if images and Path(data).is_dir() and flags["target"] is not None:
                    images = False
                lines = data is not None and flags["target"] is None and looks_like_textlines(data)
                task = "textline" if lines else "image" if images else "table"
            if task == "textline":
                _distill_textlines(args, flags)
            elif task == "image":
                _check_not_textline(args, task)
                _distill_images(args, flags)
            else:
                _check_not_textline(args, task)
                settings = resolve_settings(args.config, flags)
                quiet = settings.pop("quiet")
                distill_table(
                    settings.pop("data"),
                    settings.pop("target"),
                    settings.pop("out"),
                    progress=not quiet,
                    **settings,
                )
        elif args.command == "export":
            from .export import export_command

            export_command(args.run_dir, args.format, args.out)
    except CrossKDError as err:
        print(f"crosskd: error: {err}", file=sys.stderr)
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
