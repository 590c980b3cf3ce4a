"""Images: readers (IDX / MNIST, .npz, image folders), batch augmentation on the device,
preprocessing, and image students (an MLP on pixels, a small CNN, any timm model).

Importing this package does not import timm; :class:`TimmStudent` imports it when created.
"""

from .augment import BatchAugment, Compose, RandomAffine, RandomShift
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

__all__ = [
    "BatchAugment",
    "Compose",
    "RandomAffine",
    "RandomShift",
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
]


def __getattr__(name: str):  # noqa: ANN202 - lazy export of the pipeline function
    if name == "distill_images":
        from .distill import distill_images

        return distill_images
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
