"""Text-line images for CTC recognition: readers, the character alphabet, resizing and splits.

A text-line data set is either

- a **folder** of images whose file-name stem is the label (``images/3x7bn.png`` reads "3x7bn"), or
- a **TSV** file of ``path<TAB>label`` lines, paths relative to the TSV file's folder (labels may
  contain spaces; a first line ``path<TAB>label`` is taken as a header and skipped).

Every image is converted to grey (or RGB), resized to a fixed ``height`` keeping its aspect ratio,
and padded on the right to a fixed ``width`` (see :func:`resize_textline`), so a batch is one
``(N, C, height, width)`` float32 array in [0, 1], the layout every crosskd image model reads.

The :class:`Alphabet` maps characters (any Unicode code points) to class indices, with index 0
reserved for the CTC blank; it is built from the training labels and saved with the model.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import ConfigError, DataError
from .data import IMAGE_SUFFIXES, as_images, report_unreadable, unreadable_reason

__all__ = [
    "Alphabet",
    "TextlineSplit",
    "read_textline_folder",
    "read_textline_tsv",
    "load_textlines",
    "looks_like_textlines",
    "resize_textline",
    "split_textlines",
    "kfold_assignment",
]

#: Index of the CTC blank in every :class:`Alphabet`.
BLANK = 0


class Alphabet:
    """Characters <-> class indices for CTC, with index 0 the blank.

    Characters are Unicode code points (Python ``str`` items), so any script works; a label is
    encoded character by character. Character ``chars[i]`` has class index ``i + 1``.

    Args:
        chars: the characters, in index order; each must be one code point and appear once.

    Example:
        >>> a = Alphabet.from_labels(["ab", "ba", "ç"])
        >>> a.chars, a.num_classes, a.encode("ça")
        (('a', 'b', 'ç'), 4, [3, 1])
    """

    def __init__(self, chars: Iterable[str]) -> None:
        chars = tuple(chars)
        bad = [c for c in chars if not isinstance(c, str) or len(c) != 1]
        if bad:
            raise ConfigError(
                f"Alphabet characters must be single characters (str of length 1); got {bad[:5]!r}."
            )
        if len(set(chars)) != len(chars):
            dup = sorted({c for c in chars if chars.count(c) > 1})
            raise ConfigError(f"Alphabet characters must be distinct; repeated: {dup!r}.")
        if not chars:
            raise ConfigError("An Alphabet needs at least one character.")
        self.chars: tuple[str, ...] = chars
        self._index = {c: i + 1 for i, c in enumerate(chars)}

    @classmethod
    def from_labels(cls, labels: Iterable[str]) -> Alphabet:
        """The sorted set of characters in ``labels`` (the training labels)."""
        seen: set[str] = set()
        for label in labels:
            if not isinstance(label, str):
                raise DataError(f"Labels must be strings, got {type(label).__name__} {label!r}.")
            seen.update(label)
        if not seen:
            raise DataError("The labels contain no characters; cannot build an alphabet.")
        return cls(sorted(seen))

    @property
    def num_classes(self) -> int:
        """Number of model outputs: the characters plus the blank."""
        return len(self.chars) + 1

    @property
    def blank(self) -> int:
        """Class index of the CTC blank (always 0)."""
        return BLANK

    def __len__(self) -> int:
        return len(self.chars)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Alphabet) and other.chars == self.chars

    def __hash__(self) -> int:
        return hash(self.chars)

    def __repr__(self) -> str:
        return f"Alphabet({''.join(self.chars)!r})"

    def encode(self, label: str) -> list[int]:
        """Class indices (1..len) of the characters of ``label``.

        Raises:
            DataError: a character is not in the alphabet (the message names it and the label).
        """
        if not isinstance(label, str):
            raise DataError(f"A label must be a string, got {type(label).__name__} {label!r}.")
        try:
            return [self._index[c] for c in label]
        except KeyError:
            missing = sorted({c for c in label if c not in self._index})
            shown = ", ".join(f"{c!r} (U+{ord(c):04X})" for c in missing)
            raise DataError(
                f"The label {label!r} has character(s) {shown} that are not in the alphabet "
                f"{''.join(self.chars)!r}. Build the alphabet from labels that include them "
                "(Alphabet.from_labels), or remove such lines."
            ) from None

    def decode(self, indices: Iterable[int]) -> str:
        """The string of class ``indices`` (blanks are skipped; no repeat collapsing: see
        :func:`crosskd.losses.greedy_decode`)."""
        out = []
        for i in indices:
            i = int(i)
            if i == BLANK:
                continue
            if not (1 <= i <= len(self.chars)):
                raise DataError(
                    f"Class index {i} is outside the alphabet's range 0..{len(self.chars)}."
                )
            out.append(self.chars[i - 1])
        return "".join(out)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form, stored in model bundles (:meth:`from_dict` inverts it)."""
        return {"chars": list(self.chars), "blank": BLANK}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Alphabet:
        """The alphabet saved by :meth:`to_dict`."""
        if not isinstance(data, dict) or "chars" not in data:
            raise ConfigError(f"Alphabet.from_dict expects {{'chars': [...]}}, got {data!r}.")
        if int(data.get("blank", BLANK)) != BLANK:
            raise ConfigError(f"Only blank index {BLANK} is supported, got {data.get('blank')!r}.")
        return cls(data["chars"])


# --------------------------------------------------------------------------------------- resize


def resize_textline(
    image: Any, height: int, width: int, *, pad_value: float | str = "auto"
) -> np.ndarray:
    """Resize one image to ``height`` keeping the aspect ratio, then pad on the right to ``width``.

    An image that would be wider than ``width`` after resizing is squeezed to ``width`` (its aspect
    ratio is then not kept): choose ``width`` from the widest lines to avoid it.

    Args:
        image: a PIL image, or a ``(H, W)`` / ``(H, W, C)`` uint8 array.
        height: output height in pixels.
        width: output width in pixels.
        pad_value: value in [0, 1] of the padding, or ``"auto"``: the median of the image's
            border pixels (its background, light or dark).

    Returns:
        ``(H, W)`` or ``(H, W, C)`` uint8 array of size ``height x width``.
    """
    from PIL import Image

    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    w0, h0 = image.size
    if w0 < 1 or h0 < 1:
        raise DataError(f"Cannot resize an empty image of size {w0}x{h0}.")
    new_w = max(1, min(int(width), int(round(w0 * height / h0))))
    resized = np.asarray(image.resize((new_w, int(height)), Image.BILINEAR), dtype=np.uint8)
    if new_w == width:
        return resized
    if pad_value == "auto":
        border = np.concatenate(
            [
                resized[0].reshape(-1),
                resized[-1].reshape(-1),
                resized[:, 0].reshape(-1),
                resized[:, -1].reshape(-1),
            ]
        )
        fill = int(np.median(border))
    else:
        value = float(pad_value)
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"pad_value must be in [0, 1] or 'auto', got {pad_value!r}.")
        fill = int(round(value * 255))
    out = np.full((int(height), int(width), *resized.shape[2:]), fill, dtype=np.uint8)
    out[:, :new_w] = resized
    return out


def _convert(image: Any, mode: str) -> Any:
    """``image`` as an 8-bit ``"L"`` (grey) or ``"RGB"`` PIL image.

    Pillow's plain ``convert`` gets two kinds of files wrong, both common for scanned or rendered
    text: a transparent background (dark text on transparent pixels) drops the alpha channel and
    leaves the text on black, and a 16-bit grey image is clipped at 255 instead of scaled (a white
    line becomes all white). Transparent pixels are composited onto white here, and 16-bit, 32-bit
    integer and float images are scaled to 0..255.
    """
    from PIL import Image

    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode == "P" and "transparency" in image.info
    ):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    elif image.mode.startswith("I") or image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        top = float(values.max()) if values.size else 0.0
        if image.mode.startswith("I;16"):
            scale = 255.0 / 65535.0
        elif image.mode == "F" and top <= 1.0:
            scale = 255.0  # float images in [0, 1]
        elif top <= 255.0:
            scale = 1.0
        elif top <= 65535.0:
            scale = 255.0 / 65535.0
        else:
            scale = 255.0 / top
        grey = np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)
        image = Image.fromarray(grey)  # (H, W) uint8: mode "L"
    return image.convert(mode)


def looks_like_textlines(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is text-line data for :func:`load_textlines` (cheap: no image is decoded).

    True for a folder holding image files and no subfolders (the file-name stem is the label), a
    folder whose only content is an ``images/`` subfolder of image files (the shared captcha layout;
    as a class folder it would hold a single class), and a ``.tsv`` file whose first line (after an
    optional ``path<TAB>label`` header) names an existing image file. Anything else (a class-folder
    tree, an MNIST folder, a ``.csv``, a ``.tsv`` table) is False.
    """
    p = Path(path)

    def plain(folder: Path) -> tuple[list[Path], list[Path]]:
        entries = [e for e in folder.iterdir() if not e.name.startswith(".")]
        images = [e for e in entries if e.is_file() and e.suffix.lower() in IMAGE_SUFFIXES]
        return images, [e for e in entries if e.is_dir()]

    try:
        if p.is_dir():
            images, folders = plain(p)
            if images:
                return not folders
            if [f.name for f in folders] == ["images"]:
                inner_images, inner_folders = plain(folders[0])
                return bool(inner_images) and not inner_folders
            return False
        if p.is_file() and p.suffix.lower() == ".tsv":
            with open(p, encoding="utf-8", errors="replace") as fh:
                for number, line in enumerate(fh, start=1):
                    line = line.rstrip("\r\n")
                    if not line.strip():
                        continue
                    rel, _, label = line.partition("\t")
                    if number == 1 and (rel.strip().lower(), label.strip().lower()) == (
                        "path",
                        "label",
                    ):
                        continue
                    return Path(rel).suffix.lower() in IMAGE_SUFFIXES and (p.parent / rel).is_file()
    except OSError:
        return False
    return False


def _read_lines(
    files: Sequence[Path],
    names: Sequence[str],
    height: int,
    width: int | None,
    channels: int,
    pad_value: float | str,
    skip_unreadable: bool,
    where: str,
    hint: str = "",
) -> tuple[np.ndarray, list[int]]:
    """The images of ``files`` as one batch, and the positions in ``files`` of those read.

    ``names`` are the files as the messages show them; unreadable files are reported together
    (see :func:`crosskd.vision.data.report_unreadable`).
    """
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:  # pragma: no cover
        raise ConfigError("Reading text-line images needs Pillow: pip install pillow.") from None
    if isinstance(height, bool) or not isinstance(height, int) or height < 1:
        raise ConfigError(f"height must be a positive integer, got {height!r}.")
    if width is not None and (isinstance(width, bool) or not isinstance(width, int) or width < 1):
        raise ConfigError(f"width must be a positive integer or None, got {width!r}.")
    if channels not in (1, 3):
        raise ConfigError(f"channels must be 1 (grey) or 3 (RGB), got {channels!r}.")
    images = []
    kept: list[int] = []
    unreadable: list[tuple[str, str]] = []
    for i, file in enumerate(files):
        try:
            with Image.open(file) as img:
                img.load()
                images.append(_convert(img, "L" if channels == 1 else "RGB"))
                kept.append(i)
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            unreadable.append((names[i], unreadable_reason(exc, Path(file))))
    report_unreadable(unreadable, len(files), where, skip_unreadable and bool(images), hint)
    if width is None:
        widest = max(int(round(im.size[0] * height / im.size[1])) for im in images)
        width = -(-widest // 4) * 4  # a multiple of 4, for the models' pooling
    arrays = [resize_textline(im, height, width, pad_value=pad_value) for im in images]
    stacked = np.stack(arrays)
    if stacked.ndim == 4:
        stacked = stacked.transpose(0, 3, 1, 2)
    return as_images(stacked), kept


def read_textline_folder(
    path: str | os.PathLike[str],
    *,
    height: int = 32,
    width: int | None = None,
    channels: int = 1,
    pad_value: float | str = "auto",
    skip_unreadable: bool = False,
) -> tuple[np.ndarray, list[str], list[Path]]:
    """Images in one folder whose file-name stem is the label (``<folder>/<label>.png``).

    Files are read in sorted name order; files that are not images (by suffix) and hidden files
    are skipped. Every image is tried before anything is reported: unreadable ones (corrupt, empty)
    are listed together in one error, or left out with one warning that lists them.

    Args:
        path: the folder.
        height: height every image is resized to (aspect ratio kept).
        width: width every image is padded to; None: the widest resized image, rounded up to a
            multiple of 4. Pass the training width when reading test data.
        channels: 1 (grey) or 3 (RGB).
        pad_value: padding value in [0, 1] or ``"auto"`` (the image's border median).
        skip_unreadable: leave unreadable images (and their labels) out, with a ``UserWarning``
            that lists them, instead of raising.

    Returns:
        ``(images, labels, files)``: ``(N, channels, height, width)`` float32 in [0, 1], the N
        label strings and the N file paths (of the images read).

    Raises:
        DataError: the folder is missing or holds no images, or images cannot be read (the
            message names the first ten and counts them all) and ``skip_unreadable`` is False.
    """
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"Text-line folder {str(root)!r} does not exist or is not a folder.")
    files = sorted(
        f
        for f in root.iterdir()
        if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".")
    )
    if not files:
        raise DataError(
            f"{str(root)!r} holds no images ({', '.join(IMAGE_SUFFIXES)}). Put one image per text "
            "line there, named <label>.png, or pass a TSV of path<TAB>label lines."
        )
    names = [repr(str(f)) for f in files]
    images, kept = _read_lines(
        files, names, height, width, channels, pad_value, skip_unreadable, repr(str(root))
    )
    files = [files[i] for i in kept]
    return images, [f.stem for f in files], files


def read_textline_tsv(
    path: str | os.PathLike[str],
    *,
    height: int = 32,
    width: int | None = None,
    channels: int = 1,
    pad_value: float | str = "auto",
    skip_unreadable: bool = False,
) -> tuple[np.ndarray, list[str], list[Path]]:
    """Images listed in a TSV file of ``path<TAB>label`` lines (paths relative to the TSV).

    Empty lines are skipped; a first line ``path<TAB>label`` is a header. The label is everything
    after the first tab (it may contain spaces, not tabs or newlines). Arguments and return value as
    :func:`read_textline_folder`; listed files that are missing count as unreadable.

    Raises:
        DataError: the file is missing or empty, a line has no tab (the message gives its number),
            or images are missing or unreadable (the message names the first ten and counts them
            all) and ``skip_unreadable`` is False.
    """
    tsv = Path(path)
    if not tsv.is_file():
        raise DataError(f"Text-line TSV {str(tsv)!r} does not exist or is not a file.")
    files: list[Path] = []
    labels: list[str] = []
    names: list[str] = []
    with open(tsv, encoding="utf-8", newline="") as fh:
        for number, line in enumerate(fh, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            if "\t" not in line:
                raise DataError(
                    f"{str(tsv)!r} line {number} has no tab: {line[:80]!r}. Each line must be "
                    "path<TAB>label."
                )
            rel, label = line.split("\t", 1)
            if number == 1 and (rel.strip().lower(), label.strip().lower()) == ("path", "label"):
                continue
            files.append(tsv.parent / rel)
            labels.append(label)
            names.append(f"on line {number}: {str(tsv.parent / rel)!r}")
    if not files:
        raise DataError(f"{str(tsv)!r} lists no images.")
    images, kept = _read_lines(
        files,
        names,
        height,
        width,
        channels,
        pad_value,
        skip_unreadable,
        f"the list {str(tsv)!r}",
        " (or their lines in the TSV; paths are relative to the TSV file's folder)",
    )
    return images, [labels[i] for i in kept], [files[i] for i in kept]


def load_textlines(
    path: str | os.PathLike[str], **kwargs: Any
) -> tuple[np.ndarray, list[str], list[Path]]:
    """:func:`read_textline_folder` for a folder, :func:`read_textline_tsv` for a ``.tsv`` file.

    A folder holding an ``images/`` subfolder and no images of its own (the layout of the shared
    captcha data) is read from ``images/``.
    """
    p = Path(path)
    if p.is_dir():
        direct = any(f.suffix.lower() in IMAGE_SUFFIXES for f in p.iterdir() if f.is_file())
        if not direct and (p / "images").is_dir():
            p = p / "images"
        return read_textline_folder(p, **kwargs)
    if p.is_file():
        return read_textline_tsv(p, **kwargs)
    raise DataError(
        f"{str(p)!r} does not exist. Pass a folder of <label>.png images or a TSV of "
        "path<TAB>label lines."
    )


# ---------------------------------------------------------------------------------------- split


def _check_n_seed(n: int, seed: int) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"n must be a positive integer (the number of lines), got {n!r}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ConfigError(f"seed must be an integer, got {seed!r}.")


def _digest(indices: np.ndarray) -> str:
    return hashlib.sha256(np.asarray(indices, dtype=np.int64).tobytes()).hexdigest()[:12]


@dataclass(frozen=True)
class TextlineSplit:
    """Row indices of a seeded train / validation / test split (see :func:`split_textlines`)."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    seed: int

    def report(self) -> dict[str, Any]:
        """JSON-safe summary to publish with results: seed, sizes and a digest of each part."""
        return {
            "seed": int(self.seed),
            "n_train": len(self.train),
            "n_val": len(self.val),
            "n_test": len(self.test),
            "sha256_12": {
                "train": _digest(self.train),
                "val": _digest(self.val),
                "test": _digest(self.test),
            },
        }


def split_textlines(
    n: int, *, val: int | float = 0.1, test: int | float = 0.1, seed: int = 0
) -> TextlineSplit:
    """A seeded random split of ``n`` lines into train / validation / test row indices.

    Args:
        n: number of lines.
        val: validation size, as a count (int) or a fraction of ``n`` (float in [0, 1)).
        test: test size, likewise.
        seed: seed of the permutation (numpy ``default_rng``); the same seed gives the same split.

    Returns:
        A :class:`TextlineSplit` (sorted indices per part; ``.report()`` to publish it).
    """
    _check_n_seed(n, seed)

    def count(value: int | float, name: str) -> int:
        if isinstance(value, float):
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"{name} as a fraction must be in [0, 1), got {value!r}.")
            return int(round(value * n))
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{name} must be a count >= 0 or a fraction, got {value!r}.")
        return value

    n_val, n_test = count(val, "val"), count(test, "test")
    if n_val + n_test >= n:
        raise ConfigError(
            f"val ({n_val}) + test ({n_test}) leave no training lines out of {n}; make them smaller."
        )
    order = np.random.default_rng(seed).permutation(n)
    return TextlineSplit(
        train=np.sort(order[n_val + n_test :]),
        val=np.sort(order[:n_val]),
        test=np.sort(order[n_val : n_val + n_test]),
        seed=int(seed),
    )


def kfold_assignment(n: int, k: int = 5, *, seed: int = 0) -> np.ndarray:
    """A seeded fold number in ``0..k-1`` for each of ``n`` lines; fold sizes differ by at most 1.

    Every line is in exactly one test fold, so k-fold cross-validation tests each line once.

    Returns:
        ``(n,)`` int64 array of fold numbers (``np.flatnonzero(folds == i)`` is fold i's test set).
    """
    _check_n_seed(n, seed)
    if isinstance(k, bool) or not isinstance(k, int) or not 2 <= k <= n:
        raise ConfigError(f"k must be an integer in [2, n={n}], got {k!r}.")
    order = np.random.default_rng(seed).permutation(n)
    folds = np.empty(n, dtype=np.int64)
    folds[order] = np.arange(n) % k
    return folds
