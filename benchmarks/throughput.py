"""Training throughput: crosskd's Distiller against the KD loop a user writes by hand, in one process.

Tabular (teacher logits computed once): the same synthetic binary table, the same MLP student, the
same epochs, the same batch size and learning rate; samples/s of the whole fit (teacher scoring,
tensors or encoding, every epoch) of

  (a) the hand-written loop most KD code uses: TensorDataset + DataLoader(shuffle=True), fp32,
      AdamW, the KD loss written by hand;
  (b) a stronger hand-written loop: every tensor on the device once, a ``randperm`` per epoch, the
      rows permuted once per epoch and sliced per step;
  (c) ``Distiller.fit`` (no validation set, as the hand loops have none), timed from outside;

with both ratios (c)/(a) and (c)/(b), and the validation loss (the same KD loss, same T and alpha,
on the same held-out rows) each reaches after those epochs. Online image KD: a timm teacher
(resnet10t) run on every batch and a small CNN student, the plain fp32 loop against the Distiller
(online teacher mode), same batch, whole fits. A profile of the per-step costs that decided the
trainer's fast path is kept with the results.

    python benchmarks/throughput.py                 # CPU: 400k rows x 32, 3 epochs
    python benchmarks/throughput.py --rows 2000000  # the size of the GPU run (auto on CUDA)

Writes ``benchmarks/results/throughput-<device>.json`` and ``.md`` (the form of
../shared/BENCHMARKS.md). Timings are wall clock on a possibly shared machine: the load average is
recorded, and ratios measured side by side in this one process are what counts.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from crosskd import Distiller
from crosskd.profiling import device_description
from crosskd.tabular import MLP
from crosskd.teachers import ModuleTeacher, Teacher, TeacherInfo
from crosskd.trainer import auto_batch_size

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/_results.py
from _results import Results, provenance_line  # noqa: E402

FEATURES = 32
TEMPERATURE, ALPHA, LR = 2.0, 0.5, 3e-3
HIDDEN = (64, 32)


# ----------------------------------------------------------------------------------- helpers


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class SyntheticTeacher(Teacher):
    """A fixed random two-layer network: logits computed once and cached by the trainer."""

    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.W1 = rng.normal(size=(FEATURES, 64)) / math.sqrt(FEATURES)
        self.W2 = rng.normal(size=(64, 2)) * 1.5 / math.sqrt(64)
        self.info = TeacherInfo(num_classes=2, classes=(0, 1), kind="synthetic")

    def _logits(self, X):
        h = np.maximum(np.asarray(X, dtype=np.float64) @ self.W1, 0.0)
        return h @ self.W2


def make_table(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, FEATURES)).astype(np.float32)
    logits = torch.from_numpy(SyntheticTeacher()._logits(X)).float()
    p1 = torch.softmax(logits, dim=1)[:, 1].numpy()
    y = (rng.random(n) < p1).astype(np.int64)
    return X, y, logits


def hand_kd_loss(s: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The KD loss as users write it (Hinton et al.): T^2 * KL + CE."""
    soft = F.kl_div(
        F.log_softmax(s / TEMPERATURE, dim=1),
        F.softmax(t / TEMPERATURE, dim=1),
        reduction="batchmean",
    )
    return ALPHA * TEMPERATURE**2 * soft + (1 - ALPHA) * F.cross_entropy(s, y)


@torch.no_grad()
def val_loss(model: nn.Module, X: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    out = torch.cat([model(X[i : i + 65536]) for i in range(0, len(X), 65536)]).float()
    return float(hand_kd_loss(out, t, y))


def student(seed: int) -> MLP:
    torch.manual_seed(seed)
    return MLP(FEATURES, 2, hidden=HIDDEN)


# ----------------------------------------------------------------------------------- tabular


def hand_loop(
    X: np.ndarray, y: np.ndarray, epochs: int, batch: int, device: torch.device, seed: int
) -> tuple[nn.Module, float]:
    """(a) The loop most users write: teacher logits once, TensorDataset + DataLoader(shuffle).

    Timed whole, like ``Distiller.fit``: teacher scoring, tensors, every epoch."""
    sync(device)
    started = time.perf_counter()
    logits = torch.from_numpy(SyntheticTeacher()._logits(X)).float()
    model = student(seed).to(device)
    data = TensorDataset(torch.from_numpy(X), logits, torch.from_numpy(y))
    loader = DataLoader(data, batch_size=batch, shuffle=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=1e-4)
    for _ in range(epochs):
        model.train()
        for xb, tb, yb in loader:
            xb, tb, yb = xb.to(device), tb.to(device), yb.to(device)
            loss = hand_kd_loss(model(xb), tb, yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    sync(device)
    return model, time.perf_counter() - started


def slice_loop(
    X: np.ndarray, y: np.ndarray, epochs: int, batch: int, device: torch.device, seed: int
) -> tuple[nn.Module, float]:
    """(b) A stronger hand-written loop: every tensor on the device once, one ``randperm`` per
    epoch, the rows permuted once per epoch and sliced per step (no DataLoader). Timed whole."""
    sync(device)
    started = time.perf_counter()
    logits = torch.from_numpy(SyntheticTeacher()._logits(X)).float().to(device)
    xs, ys = torch.from_numpy(X).to(device), torch.from_numpy(y).to(device)
    model = student(seed).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=1e-4)
    generator = torch.Generator(device=device).manual_seed(seed)
    n = len(xs)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(n, device=device, generator=generator)
        xp, tp, yp = xs[order], logits[order], ys[order]
        for s in range(0, n, batch):
            loss = hand_kd_loss(model(xp[s : s + batch]), tp[s : s + batch], yp[s : s + batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    sync(device)
    return model, time.perf_counter() - started


def distiller_run(
    X: np.ndarray, y: np.ndarray, epochs: int, batch: int, device: torch.device, seed: int
) -> tuple[Distiller, float]:
    """(c) ``Distiller.fit`` at the same batch and learning rate, no validation set (the hand
    loops have none). Timed whole from outside; ``fit_seconds_`` is kept beside it."""
    d = Distiller(
        SyntheticTeacher(),
        student(seed),
        temperature=TEMPERATURE,
        alpha=ALPHA,
        epochs=epochs,
        batch_size=batch,
        lr=LR,
        early_stopping=None,
        device=str(device),
        progress=False,
        seed=seed,
    )
    sync(device)
    started = time.perf_counter()
    d.fit(X, y)
    sync(device)
    return d, time.perf_counter() - started


LOOPS = {
    "dataloader": ("hand-written loop (a): DataLoader(shuffle=True), fp32", "baseline", hand_loop),
    "slice": (
        "hand-written loop (b): device tensors, randperm + slicing, fp32",
        "baseline",
        slice_loop,
    ),
    "distiller": ("Distiller", "distilled", distiller_run),
}


def tabular(args, device: torch.device) -> list[dict]:
    """At each batch size, the three loops run ``args.repeats`` times, interleaved; the best
    whole-fit rate of each is kept (the least disturbed by other work on a shared machine).
    Validation losses are those of the first run (the runs are seeded)."""
    X, y, logits = make_table(args.rows + args.val_rows, seed=1)
    X_tr, y_tr = X[: args.rows], y[: args.rows]
    X_va = torch.from_numpy(X[args.rows :]).to(device)
    y_va = torch.from_numpy(y[args.rows :]).to(device)
    t_va = logits[args.rows :].to(device)
    samples = args.rows * args.epochs
    rows = []
    for batch in args.batches:
        # warm-up: the first calls of a process (allocator, autograd, optimiser kernels) are
        # slow; none of the three loops should pay for them inside its timing
        for _, _, loop in LOOPS.values():
            loop(X_tr[: 4 * batch], y_tr[: 4 * batch], 1, batch, device, args.seed)
        found: dict[str, dict] = {}
        for repeat in range(args.repeats):
            for key, (label, role, loop) in LOOPS.items():
                model, seconds = loop(X_tr, y_tr, args.epochs, batch, device, args.seed)
                rate = samples / seconds
                if key not in found:
                    net = model.student_ if key == "distiller" else model
                    name = f"{label}, batch {batch}"
                    extra = {}
                    if key == "distiller":
                        name += f", lr {model.lr_:.3g}, precision {model.precision_}"
                        extra["fit_seconds_"] = []
                    found[key] = {
                        "model": name,
                        "role": role,
                        "batch_size": batch,
                        "metrics": {
                            "val_loss": val_loss(net, X_va, t_va, y_va),
                            "samples_per_s_runs": [],
                        },
                        **extra,
                    }
                m = found[key]["metrics"]
                m["samples_per_s_runs"].append(rate)
                m["samples_per_s"] = max(m["samples_per_s_runs"])
                if key == "distiller":
                    found[key]["fit_seconds_"].append(model.fit_seconds_)
                print(f"[batch {batch}, run {repeat + 1}] {key:<10} {rate:>12,.0f} samples/s")
        # every row's rate over loop (a)'s ("ratio") and over loop (b)'s ("ratio_vs_slice")
        rate_a = found["dataloader"]["metrics"]["samples_per_s"]
        rate_b = found["slice"]["metrics"]["samples_per_s"]
        for row in found.values():
            row["metrics"]["ratio"] = row["metrics"]["samples_per_s"] / rate_a
            row["metrics"]["ratio_vs_slice"] = row["metrics"]["samples_per_s"] / rate_b
        rows += list(found.values())
    for row in rows:
        m = row["metrics"]
        print(
            f"{row['model']:<90} {m['samples_per_s']:>12,.0f} samples/s  "
            f"x{m['ratio']:.2f} (vs slice x{m['ratio_vs_slice']:.2f})"
            f"  val_loss {m['val_loss']:.4f}"
        )
    return rows


# ----------------------------------------------------------------------------------- profile


def profile(args, device: torch.device) -> dict:
    """Per-step costs of the choices in the trainer's inner loop (best of 3, 100 steps)."""
    n, b = 100 * 512, 512
    X = torch.randn(n, FEATURES, device=device)
    T = torch.randn(n, 2, device=device)
    y = torch.randint(0, 2, (n,), device=device)
    order = torch.randperm(n, device=device)

    def best(fn) -> float:
        out = float("inf")
        for _ in range(3):
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            out = min(out, time.perf_counter() - start)
        return out / 100 * 1e6  # microseconds per step

    def gather():
        for s in range(0, n, b):
            idx = order[s : s + b]
            X[idx], T[idx], y[idx]

    def permute_slice():
        xp, tp, yp = X.index_select(0, order), T.index_select(0, order), y.index_select(0, order)
        for s in range(0, n, b):
            xp[s : s + b], tp[s : s + b], yp[s : s + b]

    out = {
        "batch_rows_us_gather_per_step": best(gather),
        "batch_rows_us_permute_once_then_slice": best(permute_slice),
    }
    for kind in ("for-loop", "foreach", "fused"):
        model = student(0).to(device)
        kw = {
            "for-loop": {"foreach": False},
            "foreach": {"foreach": True},
            "fused": {"fused": True},
        }
        try:
            opt = torch.optim.AdamW(model.parameters(), lr=LR, **kw[kind])
        except (RuntimeError, TypeError) as err:
            out[f"step_us_adamw_{kind}"] = f"unavailable: {err}"
            continue

        def steps(model=model, opt=opt):
            for s in range(0, n, b):
                loss = hand_kd_loss(model(X[s : s + b]), T[s : s + b], y[s : s + b])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

        out[f"step_us_adamw_{kind}"] = best(steps)
    if args.compile:
        model = student(0).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=LR, fused=True)
        try:
            started = time.perf_counter()
            compiled = torch.compile(model)
            loss = hand_kd_loss(compiled(X[:b]), T[:b], y[:b])
            loss.backward()
            out["compile_seconds"] = time.perf_counter() - started

            def csteps():
                for s in range(0, n, b):
                    loss = hand_kd_loss(compiled(X[s : s + b]), T[s : s + b], y[s : s + b])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()

            out["step_us_compiled_fused"] = best(csteps)
        except Exception as err:  # noqa: BLE001 (report whatever stops torch.compile here)
            out["step_us_compiled_fused"] = f"unavailable: {type(err).__name__}: {str(err)[:200]}"
    for key, value in out.items():
        print(f"  profile {key:<40} {value if isinstance(value, str) else f'{value:,.1f}'}")
    return out


# ----------------------------------------------------------------------------------- images


class SmallConvStudent(nn.Module):
    """Two conv blocks and a linear head: ~20k parameters."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        )  # fmt: skip
        self.head = nn.Linear(32, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def images(args, device: torch.device) -> list[dict]:
    import timm

    torch.manual_seed(0)
    teacher_net = timm.create_model("resnet10t", num_classes=10, pretrained=False).to(device).eval()
    n = args.images
    x = torch.randn(n + 1024, 3, 32, 32)
    with torch.no_grad():
        labels = torch.cat(
            [teacher_net(x[i : i + 512].to(device)).argmax(1).cpu() for i in range(0, len(x), 512)]
        )
    x_tr, y_tr = x[:n], labels[:n]
    batch = args.image_batch
    rows = []

    # plain fp32 loop, timed whole (model, optimiser, loader and every epoch)
    sync(device)
    started = time.perf_counter()
    torch.manual_seed(1)
    model = SmallConvStudent().to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=LR)
    loader = DataLoader(TensorDataset(x_tr, y_tr), batch_size=batch, shuffle=True)
    for _ in range(args.image_epochs):
        model.train()
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            with torch.no_grad():
                tb = teacher_net(xb)
            loss = hand_kd_loss(model(xb), tb, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
    sync(device)
    seconds = time.perf_counter() - started
    plain_rate = n * args.image_epochs / seconds
    rows.append(
        {
            "model": f"online KD, plain fp32 loop (resnet10t -> small CNN, batch {batch})",
            "role": "baseline",
            "metrics": {"samples_per_s": plain_rate, "ratio": 1.0},
        }
    )
    print(f"(images) plain fp32 loop {plain_rate:>10,.0f} samples/s")

    torch.manual_seed(1)
    d = Distiller(
        ModuleTeacher(
            teacher_net,
            device=str(device),
            precision="bf16-mixed" if device.type == "cuda" else "32",
        ),
        SmallConvStudent(),
        temperature=TEMPERATURE,
        alpha=ALPHA,
        epochs=args.image_epochs,
        batch_size=batch,
        lr=LR,
        teacher_mode="online",
        early_stopping=None,
        device=str(device),
        progress=False,
    )
    sync(device)
    started = time.perf_counter()
    d.fit(x_tr, y_tr.numpy())
    sync(device)
    seconds = time.perf_counter() - started  # the whole fit, like the plain loop's time
    rate = n * args.image_epochs / seconds
    rows.append(
        {
            "model": f"online KD, Distiller (precision {d.precision_}, batch {batch})",
            "role": "distilled",
            "metrics": {
                "samples_per_s": rate,
                "ratio": rate / plain_rate,
            },
        }
    )
    print(f"(images) Distiller       {rate:>10,.0f} samples/s  x{rate / plain_rate:.2f}")
    return rows


# ----------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; returns the results written."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--rows", type=int, default=None, help="training rows (CPU 400k, GPU 2M)")
    parser.add_argument("--val-rows", type=int, default=50_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument(
        "--batches",
        default=None,
        help="comma-separated batch sizes, each run by all three loops (default: 1024 on CPU; "
        "1024 and batch_size='auto''s CUDA choice on CUDA)",
    )
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--image-epochs", type=int, default=1)
    parser.add_argument("--image-batch", type=int, default=128)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default 1 on CPU)"
    )
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    parser.add_argument("--skip-images", action="store_true")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved runs; best kept")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = parser.parse_args(argv)

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    if args.rows is None:
        args.rows = 2_000_000 if device.type == "cuda" else 400_000
    if args.batches is None:
        batches = [1024]
        if device.type == "cuda":
            batches.append(auto_batch_size("cuda", args.rows))
        args.batches = sorted(set(batches))
    else:
        args.batches = [int(b) for b in args.batches.split(",")]
    if args.threads is None and device.type == "cpu":
        args.threads = 1
    if args.threads:
        torch.set_num_threads(args.threads)
    results = Results("throughput", argv, quick=False)
    print(f"device {device_description(device)}, threads {torch.get_num_threads()}")
    rows = tabular(args, device)
    prof = profile(args, device)
    if not args.skip_images:
        rows += images(args, device)
    result = results.write(
        rows,
        args.out,
        name=f"throughput-{device.type}",
        device=device_description(device),
        setup={
            "rows": args.rows,
            "val_rows": args.val_rows,
            "features": FEATURES,
            "epochs": args.epochs,
            "batches": args.batches,
            "student": f"MLP {FEATURES}-{'-'.join(map(str, HIDDEN))}-2",
            "temperature": TEMPERATURE,
            "alpha": ALPHA,
            "lr": LR,
            "images": args.images,
            "image_epochs": args.image_epochs,
            "image_batch": args.image_batch,
        },
        profile=prof,
    )
    name = f"throughput-{device.type}"
    Path(args.out, f"{name}.md").write_text(markdown(result))
    print(f"wrote {args.out}/{name}.json and .md")
    return result


def markdown(result: dict) -> str:
    """The benchmark's markdown report."""
    s = result["setup"]
    lines = [
        f"# Throughput ({result['device']})",
        "",
        provenance_line(result) + " A shared machine: ratios measured side by side in one "
        "process are what counts.",
        "",
        f"Tabular: {s['rows']:,} training rows x {s['features']} features (binary, teacher logits "
        f"computed once), {s['val_rows']:,} validation rows, student {s['student']}, "
        f"{s['epochs']} epochs, T={s['temperature']}, alpha={s['alpha']}, AdamW lr {s['lr']} for "
        "every loop, the same batch size for the three loops of a block. Times are whole fits: "
        "teacher scoring, tensors / encoding and every epoch (the Distiller: `fit` timed from "
        "outside, no validation set). Online images: "
        f"{s['images']:,} random 3x32x32 images, {s['image_epochs']} epoch(s), batch "
        f"{s['image_batch']} for both loops, timm resnet10t teacher (untrained: this measures "
        "speed only, not accuracy) run on every batch, small CNN student.",
        "",
        "| loop | samples/s | x loop (a) | x loop (b) | validation loss after the same epochs |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        m = row["metrics"]
        quality = f"{m['val_loss']:.4f}" if "val_loss" in m else "n/a (speed only)"
        ratio = f"{m['ratio']:.2f}"
        vs_slice = f"{m['ratio_vs_slice']:.2f}" if "ratio_vs_slice" in m else ""
        lines.append(
            f"| {row['model']} | {m['samples_per_s']:,.0f} | {ratio} | {vs_slice} | {quality} |"
        )
    lines += [
        "",
        "samples/s: best of the interleaved runs (`samples_per_s_runs` in the JSON). Loop (a) is "
        "the DataLoader loop most KD code uses; loop (b) keeps every tensor on the device and "
        "slices a once-per-epoch permutation, as the Distiller does for in-memory data; both use "
        "PyTorch's default AdamW and a hand-written KD loss.",
        "",
        "Profile of one training step (microseconds, best of 3 x 100 steps of 512 rows; "
        "`compile_seconds` is the one-off cost of `torch.compile`):",
        "",
    ]
    for key, value in result["profile"].items():
        lines.append(f"- `{key}`: {value if isinstance(value, str) else f'{value:,.1f}'}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
