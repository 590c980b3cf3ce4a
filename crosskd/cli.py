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
        "--task", choices=["auto", "table", "image"], default="auto", help="default: from --data"
    )
    images.add_argument(
        "--teacher",
        metavar="timm:NAME",
        help="teacher architecture to train (default timm:resnet18)",
    )
    images.add_argument(
        "--student", metavar="KIND", help="mlp (default), cnn, or timm:NAME for image data"
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
    distill_images(given["data"], given["out"], progress=not given.get("quiet"), **kwargs)


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

            flags = {k: getattr(args, k) for k in KEYS}
            task = args.task
            if task == "auto":
                data = flags["data"] or (
                    load_config(args.config).get("data") if args.config else None
                )
                # A folder with --target is a mistaken table path (read_table says so); an .npz or
                # IDX file is images whatever else is given.
                images = data is not None and looks_like_images(data)
                if images and Path(data).is_dir() and flags["target"] is not None:
                    images = False
                task = "image" if images else "table"
            if task == "image":
                _distill_images(args, flags)
            else:
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
