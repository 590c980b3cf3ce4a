"""Small shared test helpers (imported by the test modules, not collected as tests)."""

from __future__ import annotations

import numpy as np

from crosskd.teachers.base import Teacher, TeacherInfo


class LinearTeacher(Teacher):
    """A known linear teacher: logits = X @ W, classes 0..k-1 unless given."""

    def __init__(self, W: np.ndarray, classes=None):
        self.W = W
        k = W.shape[1]
        self.info = TeacherInfo(num_classes=k, classes=tuple(classes or range(k)), kind="toy")

    def _logits(self, X):
        return np.asarray(X, dtype=np.float64) @ self.W
