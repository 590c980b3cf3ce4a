"""Text lines for ``crosskd distill``: read line images, build a CRNN teacher and a CRNN student.

Everything else (output folder, split, baseline, report, plots) is the scaffold's:
:func:`crosskd.pipeline.run`. The defaults are the text-line schema of :mod:`crosskd.config`;
:data:`TEXTLINE_DEFAULTS` shows them with the CRNN arguments they build.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..config import defaults
from ..exceptions import BundleError, ConfigError, DataError
from ..pipeline import BaseKind, Parts, RunData, TeacherResult, check_timm_name
from ..tasks.ctc import frames_needed

__all__ = ["TEXTLINE_DEFAULTS", "TEXTLINE_AUGMENT", "TextlineKind", "distill_textlines"]

#: File name of the teacher a text-line run trains (reusable as ``teacher_model``).
TEACHER_NAME = "teacher.safetensors"
#: :func:`~crosskd.vision.textline_augment` arguments of ``augment=True`` (a small affine jitter,
#: blur and noise).
TEXTLINE_AUGMENT: dict[str, Any] = {
    "degrees": 3.0,
    "scale": [0.95, 1.05],
    "translate": 0.03,
    "blur": [0.1, 1.0],
    "blur_p": 0.3,
    "noise": [0.0, 0.05],
    "noise_p": 0.3,
}
#: The teacher CRNN's fixed arguments (benchmarks/textline_ctc.py: a timm resnet18 up to layer1,
#: 32 frames for a 128-pixel line); ``backbone`` is the ``teacher`` setting.
TEACHER_CRNN: dict[str, Any] = {"max_reduction": 4, "hidden": 256, "head": "conv"}


def _backbone(spec: str) -> str:
    return spec[len("timm:") :] if spec.startswith("timm:") else spec


def teacher_crnn(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The teacher's :class:`~crosskd.vision.CRNN` arguments for text-line ``settings``."""
    return {"backbone": _backbone(settings["teacher"]), **TEACHER_CRNN}


def student_crnn(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The student's :class:`~crosskd.vision.CRNN` arguments for text-line ``settings``."""
    return {
        "backbone": _backbone(settings["student"]),
        "width": settings["student_width"],
        "hidden": settings["head_width"],
        "head": "conv",
    }


def _defaults_view() -> dict[str, Any]:
    d = defaults("textline")
    return {
        **d,
        "teacher": teacher_crnn(d),
        "student": student_crnn(d),
        "augment": TEXTLINE_AUGMENT,
    }


#: The text-line defaults (:func:`crosskd.config.defaults` ``("textline")``), with ``teacher`` and
#: ``student`` as the CRNN arguments they build and ``augment`` as the augmentation's arguments.
TEXTLINE_DEFAULTS: dict[str, Any] = _defaults_view()


def _check_labels(labels: Sequence[str], files: Sequence[Path], source: Any) -> None:
    empty = [str(f) for f, label in zip(files, labels, strict=True) if not label]
    if empty:
        raise DataError(
            f"{len(empty)} text line(s) of {str(source)!r} have an empty label, e.g. {empty[0]!r}. "
            "Every line needs its text: name the image <text>.png, or give the text after the tab "
            "in the TSV."
        )


def _save(fitted: Any, path: Path, geometry: dict[str, Any]) -> Path:
    """``fitted.save(path)`` with the input geometry in the bundle's metadata."""
    return fitted.save(path, metadata={"input": geometry})


def _load_teacher(path: str | os.PathLike[str], device: str) -> tuple[Any, dict[str, Any]]:
    """A fitted CTCDistiller holding the teacher CRNN of ``path``, and its input geometry."""
    from ..io import read_bundle_info
    from .crnn import CRNN
    from .ctc_trainer import CTCDistiller

    p = Path(path)
    if not p.is_file():
        raise ConfigError(
            f"The teacher checkpoint {str(p)!r} does not exist. Give the teacher.safetensors "
            "written by an earlier text-line run as `teacher_model`, or leave it out to train one."
        )
    info = read_bundle_info(p)  # BundleError for a file that is not a crosskd bundle
    metadata = info.get("metadata") or {}
    if info.get("student_class") != "CRNN" or "alphabet" not in metadata:
        raise BundleError(
            f"{str(p)!r} is not a text-line teacher (it holds a {info.get('student_class')} "
            f"{'without' if 'alphabet' not in metadata else 'with'} an alphabet). Pass the "
            "teacher.safetensors of an earlier text-line run."
        )
    fitted = CTCDistiller.load(p, device=device)
    if not isinstance(fitted.student_, CRNN):  # pragma: no cover - checked via the header above
        raise BundleError(f"{str(p)!r} does not hold a CRNN.")
    return fitted, dict(metadata.get("input") or {})


def _model_name(cfg: Mapping[str, Any]) -> str:
    backbone = cfg.get("backbone", "tiny")
    size = f"tiny w{cfg.get('width', 16)}" if backbone == "tiny" else str(backbone)
    return f"CRNN {size} {cfg.get('head', 'conv')}{cfg.get('hidden', 64)}"


def _check_backbone(spec: Any, what: str) -> None:
    if isinstance(spec, str) and (spec.endswith(".safetensors") or os.path.isfile(spec)):
        raise ConfigError(
            f"`{what}` is the backbone of a CRNN to train (tiny or a timm CNN name), got the file "
            f"{spec!r}. To use a trained teacher, give it as `teacher_model`."
        )
    if spec in ("mlp", "cnn"):
        raise ConfigError(
            f"`{what}` for text lines is a CRNN backbone (tiny or a timm CNN name such as "
            f"resnet18), got {spec!r}; mlp and cnn students read images."
        )
    if not isinstance(spec, str) or _backbone(spec) != "tiny":
        check_timm_name(_backbone(spec) if isinstance(spec, str) else spec, f"`{what}`")


class TextlineKind(BaseKind):
    """Text lines read with CTC: a CRNN teacher (trained, or a checkpoint) and a CRNN student."""

    name = "textline"
    sequence = True

    loaded: Any = None  # a fitted CTCDistiller of the teacher_model
    #: ``augment="auto"``: the name of the augmentation the first model trained chose on the
    #: validation lines (the teacher's run, or the baseline's with a given teacher_model); the
    #: later models of the run use it.
    augment_choice: str | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.choices: dict[str, dict[str, Any]] = {}

    def check(self) -> None:
        s = self.s
        _check_backbone(s["student"], "student")
        if s["teacher_model"] is None:
            _check_backbone(s["teacher"], "teacher")
            return
        if "teacher" in self.given:
            raise ConfigError(
                "`teacher` chooses the backbone of a teacher to train, but `teacher_model` gives "
                "a trained one (its architecture is in the file). Give one of them."
            )
        self.loaded, geometry = _load_teacher(s["teacher_model"], s["device"])
        net = self.loaded.student_
        if getattr(net, "pool", "mean") == "flatten":  # a CRNN tied to its input height
            geometry.setdefault("height", net.height)
        geometry.setdefault("channels", net.in_chans)
        for key in ("height", "channels"):
            own = geometry.get(key)
            if own is None:
                continue
            if key in self.given and s[key] != own:
                raise ConfigError(
                    f"The teacher {str(s['teacher_model'])!r} reads lines of {key} {own}, but "
                    f"`{key}` {s[key]} was asked for. Leave `{key}` out (the teacher's is used) or "
                    "train a new teacher."
                )
            s[key] = int(own)

    def read(self, echo: Callable[[str], Any]) -> RunData:
        from .textlines import load_textlines

        s = self.s
        read = {
            "height": s["height"],
            "channels": s["channels"],
            "skip_unreadable": s["skip_unreadable"],
        }
        x, y, files = load_textlines(s["data"], width=s["width"], **read)
        _check_labels(y, files, s["data"])
        result = RunData(x=x, y=list(y))
        if s["test"] is not None:
            x_test, y_test, test_files = load_textlines(s["test"], width=int(x.shape[-1]), **read)
            _check_labels(y_test, test_files, s["test"])
            result.x_test, result.y_test = x_test, list(y_test)
            result.test_source = str(Path(s["test"]).resolve())
        c, h, w = (int(v) for v in x.shape[1:])
        self.geometry = {"height": h, "width": w, "channels": c}
        result.info = {"input_shape": [c, h, w]}
        return result

    def prepare(self, data: RunData, parts: Parts, echo: Callable[[str], Any]) -> None:
        from .textlines import Alphabet

        y_train = parts.train[1]
        if self.loaded is not None:
            alphabet = self.loaded.alphabet_
            missing = sorted({ch for label in y_train for ch in label} - set(alphabet.chars))
            if missing:
                shown = ", ".join(f"{ch!r}" for ch in missing[:20])
                raise DataError(
                    f"The training labels have {len(missing)} character(s) that the teacher "
                    f"{str(self.s['teacher_model'])!r} cannot read ({shown}); its alphabet is "
                    f"{''.join(alphabet.chars)!r}. Train a new teacher on this data (leave "
                    "`teacher_model` out), or remove the lines with those characters."
                )
        else:
            alphabet = Alphabet.from_labels(y_train)
        self.alphabet = alphabet
        others = [*parts.val[1], *parts.test[1]]
        unseen = sorted({ch for label in others for ch in label} - set(alphabet.chars))
        if unseen:
            echo(
                f"note: the validation / test labels have {len(unseen)} character(s) that no "
                f"training label has ({', '.join(repr(ch) for ch in unseen[:20])}); the models "
                "cannot read them."
            )
        data.info.update({"alphabet": alphabet.to_dict(), "characters_not_in_alphabet": unseen})
        g = self.geometry
        self.shape = {"num_classes": alphabet.num_classes, "in_chans": g["channels"],
                      "height": g["height"]}  # fmt: skip
        nets = [("student", self.student_model())]
        if self.loaded is None:
            nets.append(("teacher", self._teacher_model()))
        longest = max(y_train, key=frames_needed)
        for role, net in nets:
            frames = net.output_frames(g["height"], g["width"])
            if frames_needed(longest) > frames:
                raise DataError(
                    f"The training label {longest!r} needs {frames_needed(longest)} CTC frames "
                    f"(one per character and one between repeats), but the {role} reads {frames} "
                    f"frames from a line {g['width']} pixels wide (one frame per {net.reduction} "
                    "pixels). Use a larger `width` (null: the widest training line), or a backbone "
                    "with less horizontal reduction."
                )

    def _teacher_model(self) -> Any:
        from .crnn import CRNN

        torch.manual_seed(self.s["seed"])
        return CRNN(**{**teacher_crnn(self.s), **self.shape})

    def student_model(self) -> Any:
        from .crnn import CRNN

        torch.manual_seed(self.s["seed"])
        return CRNN(**{**student_crnn(self.s), **self.shape})

    def teacher(self, parts: Parts, out: Path, echo: Callable[[str], Any]) -> TeacherResult:
        if self.loaded is not None:
            net = self.loaded.student_
            echo(f"teacher: {self.s['teacher_model']} (alphabet {''.join(self.alphabet.chars)!r})")
            file = Path(self.s["teacher_model"])
            return TeacherResult(net, net, file, False, _model_name(net.config()), self.loaded)
        net = self._teacher_model()
        epochs = self.s["teacher_epochs"] or self.s["epochs"]
        budget = (
            "epochs: until the validation CER stops improving"
            if epochs == "auto"
            else f"{epochs} epoch{'s' if epochs != 1 else ''}"
        )
        echo(f"training the teacher: a {_model_name(net.config())} on {len(parts.train[1]):,} "
             f"lines ({budget}) ...")  # fmt: skip
        self.role = "teacher"
        fitted = self.fit(None, net, 0.0, parts, epochs)
        if fitted.augment_search_ is not None:
            scores = fitted.augment_search_["candidates"]
            shown = ", ".join(f"{k} {v['val_cer']:.3f}" for k, v in scores.items())
            span = fitted.augment_search_["epochs"]
            span = f"of {span}" if isinstance(span, str) else f"after {span} epochs"
            echo(f"augmentation: {fitted.augment_} (validation CER {span}: {shown})")  # fmt: skip
        choice = self.choices["teacher"]
        echo(f"teacher: {choice['epochs_run']} epochs (stopped: {choice['stop_reason']}), best "
             f"epoch {choice['best_epoch']}")  # fmt: skip
        file = _save(fitted, out / TEACHER_NAME, self.geometry)
        return TeacherResult(fitted.student_, fitted.student_, file, True,
                             _model_name(net.config()), fitted)  # fmt: skip

    def fit(self, teacher: Any, student: Any, alpha: float, parts: Parts, epochs: int) -> Any:
        from .augment import textline_augment, textline_augment_candidates
        from .ctc_trainer import CTCDistiller

        s, g = self.s, self.geometry
        seed = s["seed"] + (1 if teacher is not None else 0)
        frames = [m.output_frames(g["height"], g["width"]) for m in (teacher, student) if m]
        if s["augment"] == "auto":
            # chosen once, by the first model trained, on the validation lines; then reused
            augment = (
                "auto"
                if self.augment_choice is None
                else textline_augment_candidates(seed)[self.augment_choice]
            )
        else:
            augment = textline_augment(seed, **TEXTLINE_AUGMENT) if s["augment"] else None
        fitted = CTCDistiller(
            teacher,
            student,
            alphabet=self.alphabet,
            mode=s["kd_mode"],
            resample="linear" if len(set(frames)) > 1 else None,
            warmup_epochs=s["warmup_epochs"],
            augment=augment,
            mutual=bool(s["mutual"]) and teacher is not None,
            **self.trainer_settings(alpha, epochs),
        ).fit(*parts.train, eval_set=parts.val)
        if fitted.augment_search_ is not None:
            self.augment_choice = fitted.augment_
        self.choices[self.role] = _run_choices(fitted, s["augment"], self.augment_choice)
        return fitted

    def evaluate(self, model: Any, x: Any, y: Any) -> tuple[dict[str, float], Any]:
        fitted = model.fitted if isinstance(model, TeacherResult) else model
        return fitted.evaluate(x, y), fitted.predict(x)

    def predictor(self, model: Any) -> Callable[[Any], Any]:
        from ..losses import greedy_decode
        from ..pipeline import copy_to_cpu

        net = copy_to_cpu(model.module if isinstance(model, TeacherResult) else model.student_)
        return lambda x: greedy_decode(net(torch.as_tensor(x)))

    def describe(self, model: Any) -> dict[str, Any]:
        net = model.module if isinstance(model, TeacherResult) else model.student_
        cfg = net.config()
        part = {"model": _model_name(cfg), "config": cfg,
                "frames": net.output_frames(self.geometry["height"], self.geometry["width"])}  # fmt: skip
        return {"kind": "crnn", **part} if isinstance(model, TeacherResult) else part

    def save(self, fitted: Any, path: Path) -> Path:
        return _save(fitted, path, self.geometry)

    def extra(self, fitted: Any, parts: Parts, echo: Callable[[str], Any]) -> dict[str, Any]:
        return {"textline_choices": self.choices}


def _run_choices(fitted: Any, setting: Any, choice: str | None) -> dict[str, Any]:
    """What one text-line model's training chose: its augmentation (and why), its epoch budget,
    the epochs it ran and why it stopped, its all-blank plateau restarts."""
    if setting == "auto":
        why = (
            "chosen on the validation lines"
            if fitted.augment_search_ is not None
            else "the choice made on the validation lines by the run's first model"
        )
    else:
        why = "given"
    if setting == "auto":
        augment = fitted.augment_ if fitted.augment_search_ is not None else choice
    else:
        augment = "default" if setting else "none"
    return {
        "augment": augment,
        "augment_reason": why,
        "augment_search": fitted.augment_search_,
        "epochs": fitted.epochs_,
        "epochs_run": len(fitted.history_),
        "best_epoch": fitted.best_epoch_,
        "best_val_cer": min((float(h["val_cer"]) for h in fitted.history_), default=None),
        "stop_reason": fitted.stop_reason_,
        "restarts": fitted.restarts_,
        "mutual": fitted.mutual_,
        "plateau_check_epoch": getattr(fitted, "plateau_epochs_", None),
    }


def distill_textlines(
    data: str | os.PathLike[str], out: str | os.PathLike[str], **settings: Any
) -> dict:
    """Train (or load) a CRNN teacher on text lines, distil it into a small CRNN, write the results.

    Reads the lines (:func:`crosskd.vision.load_textlines`: a folder of ``<label>.png`` images or a
    TSV of ``path<TAB>label`` lines; colour images are converted to grey, every image is resized to
    ``height`` and padded to one width), builds the :class:`~crosskd.vision.Alphabet` from the
    training labels, trains the teacher on labels unless ``teacher_model`` is given, the baseline
    (the student on labels alone) and the student distilled with
    :class:`~crosskd.vision.CTCDistiller`. Each model keeps the weights of its epoch with the
    lowest validation CER.

    Args:
        data: the training lines (folder or TSV).
        out: output folder (created; refused when it holds other files).
        **settings: ``progress`` (show progress bars), ``echo`` (where progress lines and the table
            go: ``print``; ``lambda s: None`` for silence), and any text-line setting of :mod:`crosskd.config` (``test``, ``teacher_model``
            (a ``teacher.safetensors`` of an earlier run), ``teacher`` and ``student`` (CRNN
            backbones), ``student_width``, ``head_width``, ``kd_mode``, ``height``, ``width``,
            ``augment``, ``epochs``, ``baseline``, ...); defaults in :data:`TEXTLINE_DEFAULTS`.

    Returns:
        The report (also ``out/report.json``; see :mod:`crosskd.pipeline`). Files:
        ``student.safetensors`` and (when one was trained) ``teacher.safetensors``, both loadable
        with :meth:`crosskd.vision.CTCDistiller.load` (``crosskd.load("out/")`` for the student),
        ``config.yaml``, ``summary.md`` and ``curves.png``.
    """
    from ..pipeline import distill

    return distill("textline", {"data": data, "out": out, **settings})
