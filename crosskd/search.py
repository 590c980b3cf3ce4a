"""``temperature="auto"`` / ``alpha="auto"`` / ``method="auto"``: chosen on the validation rows.

Every point of a small grid (T in {1, 2, 4, 8}, alpha in {0.5, 0.9, 1.0}, method in {hinton,
dist}, plus Hinton on standardised logits with 3 or more classes (``search_["chosen"]
["standardize"]``); only the ``"auto"`` ones vary) trains the same student for a short budget:
together the trials cost about
one full run, so a searched fit costs about twice a plain one. Each trial is scored on the
validation rows by a smooth, label-based criterion that means the same whatever T and alpha are
(the distillation loss does not: it changes with T): average precision for two classes (the
fraud metric) and the log loss otherwise (accuracy ties on small validation sets). The best
pair then trains the full budget. The choice and every trial's score are kept in ``search_`` (and
``report.json`` of ``crosskd distill``); when the best two scores are closer than the
validation set can tell apart, ``search_["uncertain"]`` says so.
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .trainer import Distiller

__all__ = ["TEMPERATURES", "ALPHAS", "METHODS", "search_settings"]

TEMPERATURES = (1.0, 2.0, 4.0, 8.0)
ALPHAS = (0.5, 0.9, 1.0)
#: ``method="auto"``: Hinton's loss, and DIST, the one method that beat it by more than the seed
#: noise in ``benchmarks/methods.py`` on the fraud folds (level on the other tables measured).
METHODS = ("hinton", "dist")
#: ``method="auto"`` with 3 or more classes also tries Hinton's loss on standardised logits
#: (``standardize=True``): on MNIST (``benchmarks/methods.py --domain mnist``) it won on the
#: validation and test images for the small CNN student and lost for the 800-800 MLP, so the
#: validation rows choose. (With 2 classes standardised logits give no gradient.)
MULTICLASS_STANDARDIZED = ("hinton",)
#: each trial trains at least this many epochs
MIN_TRIAL_EPOCHS = 3


def _score(history: list[dict[str, float]], binary: bool) -> float:
    """The trial's best validation value: AP (higher is better) or minus the log loss."""
    key = "val_average_precision" if binary else "val_log_loss"
    values = [h[key] for h in history if key in h and math.isfinite(h[key])]
    if not values:
        return -math.inf
    return max(values) if binary else -min(values)


def _resolution(y_val: np.ndarray, binary: bool) -> float:
    """Roughly the smallest score difference the validation rows can resolve: one positive's
    worth of AP (1 / positives), or one row's worth of log loss (1 / rows)."""
    if binary:
        positives = max(1, int(np.sum(y_val == np.max(y_val))))
        return 1.0 / positives
    return 1.0 / max(1, len(y_val))


def search_settings(
    distiller: Distiller,
    X: Any,
    y: Any,
    eval_set: tuple[Any, Any],
    transfer: Any,
    full_epochs: int,
) -> dict[str, Any]:
    """Try the grid with short runs; returns ``search_`` (the chosen pair under ``"chosen"``).

    Args:
        distiller: the Distiller whose ``temperature`` and/or ``alpha`` is ``"auto"``.
        X, y, eval_set, transfer: as given to ``fit`` (``eval_set`` required).
        full_epochs: the epoch budget of the final run.
    """
    temperatures = TEMPERATURES if distiller.temperature == "auto" else (distiller.temperature,)
    alphas = ALPHAS if distiller.alpha == "auto" else (distiller.alpha,)
    standardize = bool(distiller.standardize)
    methods = [
        (m, standardize) for m in (METHODS if distiller.method == "auto" else (distiller.method,))
    ]
    searched_standardize = False
    if distiller.method == "auto" and not standardize:
        from .trainer import _as_label_array

        # the classes the fit will use (the teacher's, when it names them), not a recount
        if len(distiller._classes_from(X, _as_label_array(y))) >= 3:
            methods += [(m, True) for m in MULTICLASS_STANDARDIZED]
            searched_standardize = True
    grid = [(float(t), float(a), m) for t in temperatures for a in alphas for m in methods]
    if distiller.alpha not in ("auto",) and float(distiller.alpha) == 0.0:
        grid = [(float(temperatures[0]), 0.0, methods[0])]  # no KD term: T, method do not matter
        searched_standardize = False
    epochs = max(MIN_TRIAL_EPOCHS, full_epochs // len(grid))
    classes = None
    trials = []
    trial = distiller
    for temperature, alpha, (method, standardized) in grid:
        trial = copy.copy(distiller)
        trial.temperature, trial.alpha, trial.method = temperature, alpha, method
        trial.standardize = standardized
        trial.epochs, trial.schedule, trial.early_stopping = epochs, "cosine", None
        trial.progress, trial.checkpoint_dir = False, None
        trial.fit(X, y, eval_set=eval_set, transfer=transfer)
        classes = trial.classes_
        binary = len(classes) == 2
        trials.append(
            {
                "temperature": temperature,
                "alpha": alpha,
                "method": method,
                **({"standardize": standardized} if searched_standardize else {}),
                "score": _score(trial.history_, binary),
                "best_epoch": trial.best_epoch_,
            }
        )
    binary = classes is not None and len(classes) == 2
    ranked = sorted(trials, key=lambda t: -t["score"])
    best = ranked[0]
    y_val = trial._encode_labels(eval_set[1], len(eval_set[1]), "eval_set").numpy()
    resolution = _resolution(y_val, binary)
    uncertain = len(ranked) > 1 and (best["score"] - ranked[1]["score"]) < resolution
    return {
        "metric": "val_average_precision" if binary else "val_log_loss",
        "epochs_per_trial": epochs,
        "trials": trials,
        "chosen": {
            "temperature": best["temperature"],
            "alpha": best["alpha"],
            "method": best["method"],
            **({"standardize": best["standardize"]} if searched_standardize else {}),
        },
        "uncertain": bool(uncertain),
        "resolution": resolution,
    }
