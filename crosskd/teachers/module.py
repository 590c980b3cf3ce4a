"""Teachers that are PyTorch modules (an MLP, a timm CNN, ...) returning logits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .._device import autocast, check_precision, resolve_device
from ..exceptions import DataError, TeacherError
from .base import Teacher, TeacherInfo, num_rows

__all__ = ["ModuleTeacher"]


class ModuleTeacher(Teacher):
    """A ``torch.nn.Module`` whose ``forward`` returns ``(batch, num_classes)`` logits.

    The module is moved to ``device`` and put in eval mode *in place*, and left in eval mode (dropout
    off, batch norm using its running statistics); every call sets eval mode again. Do not share the
    module object with a model that is being trained.

    ``num_classes`` comes from ``classes`` when given, else from the module's ``num_classes``
    attribute (timm models have one), else from the width of the output the first time rows are
    scored; reading :attr:`info` before that raises :class:`TeacherError`.

    Args:
        module: the network. ``forward(*inputs)`` must return a 2-D logits tensor.
        device: "cpu", "cuda", "cuda:N" or "auto".
        precision: "32", "bf16-mixed" or "16-mixed" (autocast while scoring; logits come back
            float32).
        batch_size: rows per forward pass in :meth:`logits`.
        classes: class labels in logit order; default ``0..num_classes-1``.

    Raises:
        TeacherError: ``module`` is not a ``torch.nn.Module``.
        DeviceError, ConfigError: the device or precision is unavailable or invalid.
    """

    def __init__(
        self,
        module: torch.nn.Module,
        device: str | torch.device = "cpu",
        precision: str = "32",
        batch_size: int | None = 1024,
        classes: Sequence[Any] | None = None,
    ) -> None:
        if not isinstance(module, torch.nn.Module):
            raise TeacherError(
                f"ModuleTeacher takes a torch.nn.Module; got a {type(module).__name__}. For "
                "scikit-learn models use SklearnTeacher, for LightGBM LightGBMTeacher."
            )
        self.device = resolve_device(device)
        self.precision = check_precision(precision)
        self.module = module.to(self.device).eval()
        self.batch_size = batch_size
        self._float_dtype = next(
            (p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32
        )
        self._info: TeacherInfo | None = None
        if classes is not None:
            self._set_info(tuple(classes))
        else:
            declared = getattr(module, "num_classes", None)
            if isinstance(declared, int) and declared > 0:
                self._set_info(tuple(range(declared)))

    @property
    def info(self) -> TeacherInfo:  # type: ignore[override]
        """What the teacher is; known once ``classes`` was given or rows were scored."""
        if self._info is None:
            raise TeacherError(
                "This ModuleTeacher does not know its number of classes yet: pass "
                "classes=range(num_classes) when creating it, or call logits(X) once first."
            )
        return self._info

    def __repr__(self) -> str:
        width = "unknown" if self._info is None else self._info.num_classes
        return f"ModuleTeacher({type(self.module).__name__}, num_classes={width}, device={str(self.device)!r})"

    def _set_info(self, classes: tuple[Any, ...]) -> None:
        self._info = TeacherInfo(
            num_classes=len(classes),
            classes=classes,
            kind="torch",
            extra={
                "module": type(self.module).__name__,
                "device": str(self.device),
                "precision": self.precision,
            },
        )

    def logits(self, X: Any, batch_size: int | None = None) -> torch.Tensor:
        """Teacher logits for every row of ``X``.

        Args:
            X: a numpy array, a tensor, or a tuple of them (passed to ``forward`` as positional
                arguments, sliced together by rows). Floating inputs are cast to the module's
                floating dtype.
            batch_size: rows per forward pass; default ``self.batch_size``.

        Returns:
            ``(n_samples, num_classes)`` float32 CPU tensor.
        """
        if self._info is None and num_rows(X) > 0:
            first = self._take_first_row(X)
            width = self._logits(first).shape[-1]
            self._set_info(tuple(range(width)))
        return super().logits(X, batch_size)

    def logits_on_device(self, *inputs: torch.Tensor) -> torch.Tensor:
        """Logits for one batch already on the teacher's device (the trainer's online mode).

        Runs under ``torch.no_grad`` (not inference mode, so the result can be used as a target in a
        loss that is back-propagated) with the teacher's autocast.

        Args:
            *inputs: tensors passed to ``forward``, batch first.

        Returns:
            ``(batch, num_classes)`` float32 tensor on the teacher's device.
        """
        self.module.eval()
        moved = [x if x.device == self.device else x.to(self.device) for x in inputs]
        with torch.no_grad(), autocast(self.device, self.precision):
            out = self.module(*moved)
        out = self._check_output(out, moved[0].shape[0] if moved else None)
        if self._info is None:
            self._set_info(tuple(range(out.shape[-1])))
        return out.float()

    def _logits(self, X: Any) -> np.ndarray:
        inputs = X if isinstance(X, tuple) else (X,)
        tensors = [self._to_tensor(x) for x in inputs]
        self.module.eval()
        with torch.inference_mode(), autocast(self.device, self.precision):
            out = self.module(*tensors)
            out = self._check_output(out, num_rows(X)).float().cpu()
        # numpy, so that the base class builds an ordinary (not inference-mode) tensor from it
        return out.numpy()

    def _check_output(self, out: Any, n: int | None) -> torch.Tensor:
        if not torch.is_tensor(out):
            raise DataError(
                f"{type(self.module).__name__}.forward returned a {type(out).__name__}; "
                "ModuleTeacher needs a (batch, num_classes) logits tensor. Wrap the module so that "
                "forward returns the logits only."
            )
        if out.ndim != 2 or (n is not None and out.shape[0] != n):
            raise DataError(
                f"{type(self.module).__name__}.forward returned shape {tuple(out.shape)} for {n} "
                f"rows; ModuleTeacher needs 2-D logits of shape ({n}, num_classes). Flatten or "
                "pool the output in the module (sequence outputs need a sequence teacher)."
            )
        return out

    def _to_tensor(self, x: Any) -> torch.Tensor:
        if hasattr(x, "columns") and hasattr(x, "to_numpy"):
            x = x.to_numpy()
        if not torch.is_tensor(x):
            try:
                x = torch.as_tensor(np.asarray(x))
            except (TypeError, ValueError) as err:
                raise DataError(
                    f"ModuleTeacher could not turn a {type(x).__name__} into a tensor ({err}). "
                    "Pass numeric numpy arrays or tensors."
                ) from None
        if x.is_floating_point():
            return x.to(self.device, self._float_dtype)
        return x.to(self.device)

    @staticmethod
    def _take_first_row(X: Any) -> Any:
        if isinstance(X, tuple):
            return tuple(x[:1] for x in X)
        if hasattr(X, "iloc"):
            return X.iloc[:1]
        return X[:1]
