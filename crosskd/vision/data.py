"""Image data in memory: IDX files (MNIST), numpy arrays / ``.npz``, image folders.

Every reader returns images the way the trainer and the image models take them: a float32 numpy
array of shape ``(N, C, H, W)`` with values in [0, 1] (see :func:`as_images`), and int64 labels.
"""

from __future__ import annotations

import gzip
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import ConfigError, DataError

__all__ = [
    "read_idx",
    "load_mnist",
    "read_npz",
    "read_image_folder",
    "load_images",
    "load_digits_images",
    "as_images",
    "IMAGE_SUFFIXES",
]

#: File name endings read by :func:`read_image_folder`.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm")

#: Unreadable image files named one by one in an error or warning; the others are counted.
SHOWN_UNREADABLE = 10

# IDX type codes: numpy big-endian dtypes
_IDX_TYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or raw (detected from the bytes, not the name).

    Args:
        path: e.g. ``train-images-idx3-ubyte.gz``.

    Returns:
        The array with the file's shape, e.g. ``(60000, 28, 28)`` uint8 for MNIST images and
        ``(60000,)`` uint8 for labels; multi-byte types are converted to native byte order.

    Raises:
        DataError: the file is missing, not an IDX file (wrong magic number), or its size does not
            match the dimensions in its header (truncated or extra bytes).
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"IDX file {str(p)!r} does not exist.")
    raw = p.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataError(
                f"{str(p)!r} looks gzipped but could not be decompressed ({exc}); it is probably "
                "truncated. Download it again."
            ) from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES or raw[3] == 0:
        raise DataError(
            f"{str(p)!r} is not an IDX file: its magic number is {raw[:4].hex() or 'missing'}, "
            "expected 0000TTNN (two zero bytes, a type code 08/09/0b/0c/0d/0e, the number of "
            "dimensions). Pass an MNIST-format file such as train-images-idx3-ubyte(.gz)."
        )
    dtype, ndim = _IDX_TYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(
            f"{str(p)!r} is truncated: its header announces {ndim} dimensions but the file has "
            f"only {len(raw)} bytes."
        )
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(
            f"{str(p)!r} has {len(raw) - header} data bytes but its header says shape {shape} of "
            f"{dtype.name} ({expected} bytes). The file is truncated or corrupt; download it again."
        )
    arr = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def _find(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise DataError(
        f"{str(folder)!r} has no {stem}(.gz). An MNIST folder holds train-images-idx3-ubyte, "
        "train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (gzipped or not)."
    )


def load_mnist(
    split: str = "train", root: str | os.PathLike[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """MNIST (or any dataset in the same four-file IDX layout, e.g. Fashion-MNIST).

    Args:
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000).
        root: the folder with the IDX files; default ``ocr/mnist`` in the reference data
            (``$CROSSKD_DATA`` or ``../shared/data``).

    Returns:
        ``(images, labels)``: ``(N, 1, 28, 28)`` float32 in [0, 1] and ``(N,)`` int64.
    """
    if split not in ("train", "test"):
        raise ConfigError(f"split must be 'train' or 'test', got {split!r}.")
    if root is None:
        from ..datasets._paths import reference_path

        folder = reference_path("ocr", "mnist")
    else:
        folder = Path(root)
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(_find(folder, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(_find(folder, f"{prefix}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(
            f"{str(folder)!r}: the {split} images have shape {images.shape} and the labels "
            f"{labels.shape}; expected (N, H, W) images and N labels."
        )
    return as_images(images), labels.astype(np.int64)


def as_images(x: Any, *, name: str = "images") -> np.ndarray:
    """Images as the models take them: float32 ``(N, C, H, W)`` in [0, 1].

    Accepts ``(N, H, W)`` (one channel), ``(N, C, H, W)`` with C in {1, 3, 4}, or ``(N, H, W, C)``
    with C in {1, 3, 4}; uint8 (0-255) or float already in [0, 1]. A flat ``(N, D)`` array with D a
    square (784 -> 28x28) is reshaped to one-channel images.

    Raises:
        DataError: another shape, a non-numeric dtype, or floats outside [0, 1].
    """
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{name} must be numeric, got dtype {arr.dtype}.")
    if arr.ndim == 2:
        side = int(round(np.sqrt(arr.shape[1])))
        if side * side != arr.shape[1]:
            raise DataError(
                f"{name} has shape {arr.shape}: flat rows of {arr.shape[1]} values are not square "
                "images. Pass (N, H, W) or (N, C, H, W) arrays."
            )
        arr = arr.reshape(len(arr), 1, side, side)
    elif arr.ndim == 3:
        arr = arr[:, None]
    elif arr.ndim == 4:
        if arr.shape[1] not in (1, 3, 4) and arr.shape[-1] in (1, 3, 4):
            arr = arr.transpose(0, 3, 1, 2)
        elif arr.shape[1] not in (1, 3, 4):
            raise DataError(
                f"{name} has shape {arr.shape}: neither (N, C, H, W) nor (N, H, W, C) with 1, 3 or "
                "4 channels."
            )
    else:
        raise DataError(
            f"{name} must be (N, H, W), (N, C, H, W) or (N, H, W, C); got shape {arr.shape}."
        )
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr, dtype=np.float32) / np.float32(255.0)
    out = np.ascontiguousarray(arr, dtype=np.float32)
    if out.size:
        lo, hi = float(out.min()), float(out.max())
        if lo < -1e-6 or hi > 1.0 + 1e-6:
            raise DataError(
                f"{name} are {arr.dtype} with values in [{lo:g}, {hi:g}]; expected uint8 (0-255) "
                "or floats in [0, 1]. Divide by 255 (or by the maximum value) first."
            )
    return out


def read_npz(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels from a ``.npz`` file with arrays ``x`` and ``y``.

    Returns:
        ``(images, labels)``: ``(N, C, H, W)`` float32 in [0, 1] (see :func:`as_images`) and ``(N,)``.

    Raises:
        DataError: missing file or arrays, or lengths that differ.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{str(p)!r} does not exist.")
    try:
        with np.load(p, allow_pickle=False) as data:
            keys = set(data.files)
            if not {"x", "y"} <= keys:
                raise DataError(
                    f"{str(p)!r} holds arrays {sorted(keys)}; expected 'x' (images) and 'y' "
                    "(labels). Save with np.savez(path, x=images, y=labels)."
                )
            x, y = data["x"], data["y"]
    except (ValueError, OSError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(
            f"Could not read {str(p)!r} as a .npz without pickle ({exc}). Save numeric arrays "
            "with np.savez."
        ) from None
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(
            f"{str(p)!r}: y must hold one label per image; got x {x.shape} and y {y.shape}."
        )
    return as_images(x, name=f"{p.name}['x']"), y


def read_image_folder(
    path: str | os.PathLike[str],
    *,
    size: Sequence[int] | None = None,
    channels: int | None = None,
    classes: Sequence[str] | None = None,
    skip_unreadable: bool = False,
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Images in one subfolder per class (``root/<class>/<image>``), read with Pillow.

    Every file is tried before anything is reported: unreadable images (corrupt, empty, not an
    image) are listed together in one error, or skipped with one warning that lists them.

    Args:
        path: the root folder.
        size: ``(H, W)`` to resize every image to; None: all images must have the same size.
        channels: 1 (grey) or 3 (RGB); None: 1 when every image is grey, else 3.
        classes: class names in label order; default: the subfolder names, sorted. Pass the
            training classes when reading a test folder, so the labels agree.
        skip_unreadable: leave unreadable images out (a ``UserWarning`` lists them) instead of
            raising.

    Returns:
        ``(images, labels, classes)``: ``(N, C, H, W)`` float32 in [0, 1], ``(N,)`` int64 and the
        class names.

    Raises:
        DataError: no class folders or no images; unreadable images (the message names the first
            ten and counts them all) unless ``skip_unreadable``; or an image whose size differs
            from the first one (the message names the file).
    """
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:  # pragma: no cover
        raise ConfigError("Reading image folders needs Pillow: pip install pillow.") from None
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"Image folder {str(root)!r} does not exist or is not a folder.")
    found = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if classes is None:
        classes = found
    classes = tuple(str(c) for c in classes)
    if not classes:
        raise DataError(
            f"{str(root)!r} has no class subfolders. Put the images of each class in its own "
            "subfolder: root/<class name>/<image>.png."
        )
    extra = sorted(set(found) - set(classes))
    if extra:
        raise DataError(
            f"{str(root)!r} has class folders {extra} that are not among the classes {list(classes)}."
        )
    target = None if size is None else (int(size[0]), int(size[1]))
    if channels not in (None, 1, 3):
        raise ConfigError(f"channels must be 1, 3 or None, got {channels!r}.")
    pixels: list[np.ndarray] = []
    labels: list[int] = []
    unreadable: list[tuple[str, str]] = []
    n_files = 0
    first: tuple[Path, tuple[int, int]] | None = None
    for label, name in enumerate(classes):
        folder = root / name
        if not folder.is_dir():
            continue
        for file in sorted(folder.iterdir()):
            if not file.is_file() or file.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            n_files += 1
            try:
                with Image.open(file) as img:
                    img.load()
                    mode = "L" if img.mode in ("1", "L", "I;16", "I", "F") else "RGB"
                    img = img.convert(
                        mode if channels is None else ("L" if channels == 1 else "RGB")
                    )
                    if target is not None and img.size != (target[1], target[0]):
                        img = img.resize((target[1], target[0]), Image.BILINEAR)
                    arr = np.asarray(img, dtype=np.uint8)
            except (UnidentifiedImageError, OSError, ValueError) as exc:
                unreadable.append((repr(str(file)), unreadable_reason(exc, file)))
                continue
            hw = arr.shape[:2]
            if first is None:
                first = (file, hw)
            elif hw != first[1]:
                raise DataError(
                    f"The image {str(file)!r} is {hw[0]}x{hw[1]} but {str(first[0])!r} is "
                    f"{first[1][0]}x{first[1][1]}; all images must have one size. Pass size=(H, W) "
                    "(--image-size) to resize them."
                )
            pixels.append(arr)
            labels.append(label)
    report_unreadable(unreadable, n_files, repr(str(root)), skip_unreadable and bool(pixels))
    if not pixels:
        raise DataError(
            f"{str(root)!r} has class folders {list(classes)} but no images ({', '.join(IMAGE_SUFFIXES)})."
        )
    if channels is None and any(p.ndim == 3 for p in pixels):
        pixels = [np.repeat(p[..., None], 3, axis=2) if p.ndim == 2 else p for p in pixels]
    stacked = np.stack(pixels)
    if stacked.ndim == 4:
        stacked = stacked.transpose(0, 3, 1, 2)
    return as_images(stacked), np.asarray(labels, dtype=np.int64), classes


def report_unreadable(
    unreadable: Sequence[tuple[str, str]],
    n_files: int,
    where: str,
    skip: bool,
    hint: str = "",
) -> None:
    """Raise one :class:`DataError` that lists unreadable image files, or warn that they were skipped.

    Args:
        unreadable: ``(file, reason)`` pairs as shown in the message (e.g. ``"'a/b.png'"`` and
            ``"UnidentifiedImageError: ..."``), in reading order; nothing happens when empty.
        n_files: how many image files were tried.
        where: the folder or list they came from, for the message.
        skip: warn (``UserWarning``) instead of raising.
        hint: words added to the error's advice.
    """
    if not unreadable:
        return
    shown = "; ".join(f"{name} ({reason})" for name, reason in unreadable[:SHOWN_UNREADABLE])
    rest = len(unreadable) - SHOWN_UNREADABLE
    more = f"; and {rest} more" if rest > 0 else ""
    count = f"{len(unreadable)} of the {n_files} image files in {where}"
    if skip:
        warnings.warn(
            f"skipped {len(unreadable)} unreadable image file(s), {count}: {shown}{more}.",
            UserWarning,
            stacklevel=3,
        )
        return
    if len(unreadable) == 1:
        what, them = f"the image {shown}, {count}", "it"
    else:
        what, them = f"{count}: {shown}{more}", "them"
    raise DataError(
        f"Could not read {what}. Remove or replace {them}{hint}, or set `skip_unreadable` (skip_unreadable=True in Python) to "
        "leave unreadable images out (a warning lists them)."
    )


def unreadable_reason(exc: BaseException, file: Path) -> str:
    """Why the image ``file`` could not be read (``exc`` is what Pillow raised), in a few words."""
    from PIL import UnidentifiedImageError

    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, UnidentifiedImageError):
        try:
            empty = file.stat().st_size == 0
        except OSError:
            empty = False
        return "an empty file" if empty else "not an image format Pillow reads"
    return f"{type(exc).__name__}: {exc}"


def load_images(
    path: str | os.PathLike[str],
    *,
    split: str = "train",
    size: Sequence[int] | None = None,
    classes: Sequence[str] | None = None,
    skip_unreadable: bool = False,
) -> tuple[np.ndarray, np.ndarray, tuple[Any, ...]]:
    """Images from any supported source, detected from the path.

    - a ``.npz`` file with ``x`` and ``y``;
    - an IDX images file (its labels file is found by name: ``-images-idx3-`` -> ``-labels-idx1-``);
    - a folder holding the four MNIST IDX files (``split`` picks train or t10k);
    - a folder with one subfolder per class (``skip_unreadable``: see :func:`read_image_folder`).

    Returns:
        ``(images, labels, classes)``: ``(N, C, H, W)`` float32 in [0, 1], ``(N,)`` int64 label
        codes, and the class labels in code order.
    """
    p = Path(path)
    if not p.exists():
        raise DataError(f"{str(p)!r} does not exist.")
    if p.is_file() and p.suffix == ".npz":
        x, y = read_npz(p)
        values, codes = np.unique(y, return_inverse=True)
        return x, codes.astype(np.int64), tuple(v.item() for v in values)
    if p.is_file() and "idx" in p.name:
        guess = p.name.replace("images-idx3", "labels-idx1")
        stem = guess[: -len(".gz")] if guess.endswith(".gz") else guess
        label_file = next(
            (p.with_name(n) for n in (guess, stem, stem + ".gz") if p.with_name(n).is_file()),
            p.with_name(guess),
        )
        if label_file == p or not label_file.is_file():
            raise DataError(
                f"No labels file found for {str(p)!r} (looked for {label_file.name!r}). Keep the "
                "MNIST names (...-images-idx3-ubyte and ...-labels-idx1-ubyte) side by side."
            )
        images, labels = read_idx(p), read_idx(label_file)
        if len(images) != len(labels):
            raise DataError(
                f"{p.name} has {len(images)} images but {label_file.name} has {len(labels)} labels."
            )
        return as_images(images), labels.astype(np.int64), tuple(range(int(labels.max()) + 1))
    if p.is_dir():
        if any(f.name.startswith(("train-images-idx3", "t10k-images-idx3")) for f in p.iterdir()):
            x, y = load_mnist(split, p)
            return x, y, tuple(range(int(y.max()) + 1))
        return read_image_folder(p, size=size, classes=classes, skip_unreadable=skip_unreadable)
    raise DataError(
        f"Cannot tell what {str(p)!r} holds. Pass a .npz with x and y, an IDX images file, a folder "
        "of MNIST IDX files, or a folder with one subfolder of images per class."
    )


def load_digits_images() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits (1,797 images, no download) as ``(N, 1, 8, 8)`` in [0, 1].

    Returns:
        ``(images, labels)``: float32 and int64.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    return x, digits.target.astype(np.int64)


def looks_like_images(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names image data that :func:`load_images` reads (not a table).

    True for a ``.npz`` file, an IDX file, and an existing folder (an MNIST folder or one subfolder
    per class); False for anything else, such as a ``.csv`` or ``.parquet`` table.
    """
    p = Path(path)
    if p.suffix.lower() == ".npz" or (p.is_file() and "idx" in p.name):
        return True
    return p.is_dir()
