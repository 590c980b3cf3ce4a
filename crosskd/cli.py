"""The ``crosskd`` command: ``crosskd demo`` and ``crosskd distill``.

Errors a user can cause end with one line on stderr (``crosskd: error: ...``) and exit status 2; no
traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

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
            "and write the student bundle, the teacher and report.json to --out. Rows whose target "
            "is empty are used as a transfer set: they get the teacher's targets only."
        ),
    )
    distill.add_argument(
        "--data", required=True, metavar="FILE", help="training table (.csv or .parquet)"
    )
    distill.add_argument("--target", required=True, metavar="COLUMN", help="the label column")
    distill.add_argument(
        "--test",
        metavar="FILE",
        help="test table; default: a seeded, stratified hold-out of --data",
    )
    distill.add_argument("--out", required=True, metavar="DIR", help="output folder")
    distill.add_argument(
        "--teacher-model",
        metavar="FILE",
        help="a LightGBM model file to use as the teacher (else one is trained)",
    )
    distill.add_argument(
        "--drop",
        action="append",
        default=[],
        metavar="COLUMN",
        help="column to ignore (repeatable), e.g. an ID",
    )
    distill.add_argument(
        "--temperature", type=_number, default=2.0, help="distillation temperature T (default 2)"
    )
    distill.add_argument(
        "--alpha",
        type=_number,
        default=0.7,
        help="weight of the distillation term in [0, 1] (default 0.7)",
    )
    distill.add_argument(
        "--hidden",
        type=_hidden,
        default=(32, 16),
        help="student hidden layer sizes (default 32,16)",
    )
    distill.add_argument(
        "--epochs",
        type=int,
        default=30,
        help="maximum epochs (default 30; early stopping on a validation split)",
    )
    distill.add_argument("--batch-size", type=int, default=512, help="rows per step (default 512)")
    distill.add_argument(
        "--test-size", type=float, default=0.2, help="hold-out share when no --test (default 0.2)"
    )
    distill.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N")
    distill.add_argument(
        "--precision",
        default="32",
        choices=["32", "bf16-mixed", "16-mixed"],
        help="training precision (default 32)",
    )
    distill.add_argument(
        "--seed", type=int, default=0, help="seed of splits and training (default 0)"
    )
    distill.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


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
            from .distill import distill_table

            distill_table(
                args.data,
                args.target,
                args.out,
                test=args.test,
                teacher_model=args.teacher_model,
                drop=args.drop,
                temperature=args.temperature,
                alpha=args.alpha,
                hidden=args.hidden,
                epochs=args.epochs,
                batch_size=args.batch_size,
                test_size=args.test_size,
                device=args.device,
                precision=args.precision,
                seed=args.seed,
                progress=not args.quiet,
            )
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
