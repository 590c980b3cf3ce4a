"""Images: readers (IDX / MNIST, .npz, image folders), batch augmentation on the device,
preprocessing, and image students (an MLP on pixels, a small CNN, any timm model).

Importing this package does not import timm; :class:`TimmStudent` imports it when created.
"""

from .augment import (
    BatchAugment,
    Compose,
    RandomAffine,
    RandomBlur,
    RandomNoise,
    RandomShift,
    textline_augment,
    textline_augment_candidates,
)
from .crnn import CRNN, TinyBackbone
from .ctc_trainer import CTCDistiller
from .data import (
    as_images,
    load_digits_images,
    load_images,
    load_mnist,
    read_idx,
    read_image_folder,
    read_npz,
)
from .preprocess import ImagePreprocess
from .students import ImageMLP, SmallCNN, TimmStudent
from .textlines import (
    Alphabet,
    TextlineSplit,
    kfold_assignment,
    load_textlines,
    looks_like_textlines,
    read_textline_folder,
    read_textline_tsv,
    resize_textline,
    split_textlines,
)

__all__ = [
    "BatchAugment",
    "Compose",
    "RandomAffine",
    "RandomShift",
    "RandomBlur",
    "RandomNoise",
    "textline_augment",
    "textline_augment_candidates",
    "as_images",
    "load_digits_images",
    "load_images",
    "load_mnist",
    "read_idx",
    "read_image_folder",
    "read_npz",
    "ImagePreprocess",
    "ImageMLP",
    "SmallCNN",
    "TimmStudent",
    "distill_images",
    "distill_textlines",
    "Alphabet",
    "TextlineSplit",
    "kfold_assignment",
    "load_textlines",
    "looks_like_textlines",
    "read_textline_folder",
    "read_textline_tsv",
    "resize_textline",
    "split_textlines",
    "CRNN",
    "TinyBackbone",
    "CTCDistiller",
]


def __getattr__(name: str):  # noqa: ANN202 - lazy export of the pipeline functions
    if name == "distill_images":
        from .distill import distill_images

        return distill_images
    if name == "distill_textlines":
        from .textline_distill import distill_textlines

        return distill_textlines
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
