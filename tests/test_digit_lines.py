"""Handwritten digit lines built from digit images: labels, sizes, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from crosskd import ConfigError
from crosskd.datasets.digit_lines import make_digit_lines, write_digit_lines


def _digits(n=50, seed=0):
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 1, 28, 28), dtype=np.float32)
    for i in range(n):
        x[i, 0, 6:22, 8 + i % 5 : 14 + i % 5] = rng.uniform(0.5, 1.0)
    return x, np.arange(n) % 10


def test_lines_hold_the_digits_of_their_labels():
    x, y = _digits()
    lines, texts = make_digit_lines(x, y, 20, seed=3)
    assert len(lines) == len(texts) == 20
    assert all(3 <= len(t) <= 10 and t.isdigit() for t in texts)
    assert all(line.dtype == np.uint8 and line.shape[0] == 34 for line in lines)
    # ink is dark on a light background, and there is some ink
    assert all(line.max() == 255 and line.min() < 128 for line in lines)
    again, texts_again = make_digit_lines(x, y, 20, seed=3)
    assert texts == texts_again and all(
        np.array_equal(a, b) for a, b in zip(lines, again, strict=True)
    )
    _, other = make_digit_lines(x, y, 20, seed=4)
    assert other != texts


def test_written_lines_read_back_with_their_labels(tmp_path):
    from crosskd.vision import load_textlines

    x, y = _digits()
    tsv = write_digit_lines(tmp_path, x, y, 5, seed=0)
    images, labels, files = load_textlines(tsv, height=32)
    assert images.shape[:3] == (5, 1, 32) and len(labels) == 5 and len(files) == 5
    _, texts = make_digit_lines(x, y, 5, seed=0)
    assert labels == texts


def test_bad_inputs():
    x, y = _digits()
    with pytest.raises(ConfigError, match="one label each"):
        make_digit_lines(x, y[:3], 2)
    with pytest.raises(ConfigError, match="min_digits"):
        make_digit_lines(x, y, 2, min_digits=5, max_digits=3)
