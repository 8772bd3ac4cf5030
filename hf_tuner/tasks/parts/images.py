"""Image pieces several tasks share (image classification, image captioning): image columns of files,
folders and Hub sets as undecoded `datasets.Image` columns, checked before training; decoding into
PIL images; the ViT image processor built from a size; the training augmentation; batching."""
from __future__ import annotations

import io
import math
import random
from pathlib import Path
from typing import Any, Optional

from ...data import FILE_BUILDERS
from ...errors import ConfigError, DataError
from ...packaged import is_packaged, resolve_dataset

DEFAULT_IMAGE_SIZE = 224  # ViT's default when neither model.image_size nor from_scratch.image_size says
CROP_SCALE = (0.5, 1.0)  # augmentation: the random crop keeps 50-100% of the image area
CROP_RATIO = (3 / 4, 4 / 3)  # ... with an aspect ratio in this range


def local_path(spec: Optional[str]) -> Optional[Path]:
    """The local file or folder a data spec names (packaged names resolved), None for Hub ids."""
    if not spec:
        return None
    path = Path(resolve_dataset(spec) if is_packaged(spec) else spec).expanduser()
    return path if path.exists() else None


def is_folder(spec: Optional[str]) -> bool:
    path = local_path(spec)
    return path is not None and path.is_dir()


def base_dir(spec: Optional[str]) -> Optional[Path]:
    """Relative image paths in a data file are relative to the file's folder."""
    path = local_path(spec)
    if path is not None and path.is_file() and path.suffix.lower() in FILE_BUILDERS:
        return path.resolve().parent
    return None


def as_image_column(ds: Any, column: str, base: Optional[Path], split: str) -> Any:
    """Make `column` an undecoded `datasets.Image` column: image features are kept, strings are
    taken as file paths (resolved against `base`) and must exist."""
    from datasets import Image, Value

    feature = ds.features[column]
    if isinstance(feature, Image):
        return ds.cast_column(column, Image(decode=False))
    if not (isinstance(feature, Value) and feature.dtype in ("string", "large_string")):
        raise DataError(
            f"column '{column}' of the {split} data holds {feature}, not images or image paths (set data.image_column)"
        )

    def resolve(value: Optional[str]) -> str:
        if value is None or not str(value).strip():
            raise DataError(f"image column '{column}' has an empty path in the {split} data: drop or fill such rows")
        path = Path(str(value).strip()).expanduser()
        if not path.is_absolute() and base is not None:
            path = base / path
        if not path.is_file():
            where = f" (relative paths are read from {base})" if base is not None else ""
            raise DataError(f"image file not found: {value} in the {split} data{where}")
        return str(path.resolve())

    paths = [resolve(v) for v in ds[column]]
    ds = ds.remove_columns(column).add_column(column, paths)
    return ds.cast_column(column, Image(decode=False))


def describe_image(value: dict[str, Any], index: int) -> str:
    return value.get("path") or f"row {index}"


def open_image(value: dict[str, Any], mode: str, name: Optional[str] = None) -> Any:
    """Decode one undecoded image ({"path", "bytes"}) into a PIL image of `mode`, or a DataError
    naming the file."""
    from PIL import Image

    source = io.BytesIO(value["bytes"]) if value.get("bytes") else value.get("path")
    label = name or value.get("path") or "an image"
    try:
        with Image.open(source) as im:
            im.load()
            return im.convert(mode)
    except FileNotFoundError:
        raise DataError(f"image not found: {label}") from None
    except Exception as exc:  # PIL raises many types for broken files
        raise DataError(f"cannot read image {label}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None


def check_images(ds: Any, column: str, split: str, batch_size: int = 512) -> None:
    """Open every image of a split (PIL `verify`: headers and checksums, no full decode); the first
    unreadable one is a DataError naming it."""
    from PIL import Image

    index = 0
    for batch in ds.select_columns([column]).iter(batch_size=batch_size):
        for value in batch[column]:
            source = io.BytesIO(value["bytes"]) if value.get("bytes") else value.get("path")
            try:
                with Image.open(source) as im:
                    im.verify()
            except Exception as exc:
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise DataError(f"cannot read image {describe_image(value, index)} in the {split} data: {reason} (fix or remove the file)") from None
            index += 1


def image_mode(num_channels: int) -> str:
    """The PIL mode images are converted to: greyscale for 1-channel models, else RGB."""
    if num_channels not in (1, 3):
        raise ConfigError(f"num_channels={num_channels}: image classification takes 1 (greyscale) or 3 (RGB) channels")
    return "L" if num_channels == 1 else "RGB"


def processor_size(processor: Any) -> Optional[int]:
    """The square side an image processor resizes to (None when it is not a fixed square)."""
    size = getattr(processor, "size", None) or {}
    if hasattr(size, "items"):
        size = dict(size)
    h, w = size.get("height"), size.get("width")
    return int(h) if h and h == w else None


def build_image_processor(size: int, num_channels: int) -> Any:
    """A ViT image processor: resize to size x size, scale to [0, 1], normalise with mean/std 0.5."""
    from transformers import ViTImageProcessorPil

    image_mode(num_channels)
    return ViTImageProcessorPil(
        size={"height": size, "width": size}, image_mean=[0.5] * num_channels, image_std=[0.5] * num_channels,
    )


def random_resized_crop(image: Any, scale: tuple[float, float] = CROP_SCALE, ratio: tuple[float, float] = CROP_RATIO) -> Any:
    """A random crop of `scale` of the area and `ratio` aspect, resized back to the image's size
    (torchvision's RandomResizedCrop, in PIL). Uses Python's `random`, which the run seeds."""
    from PIL import Image

    width, height = image.size
    area = width * height
    for _ in range(10):
        target = area * random.uniform(*scale)
        aspect = math.exp(random.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            x, y = random.randint(0, width - w), random.randint(0, height - h)
            return image.resize((width, height), Image.BILINEAR, box=(x, y, x + w, y + h))
    return image


def augment_image(image: Any) -> Any:
    """The training augmentation: a random resized crop, then a horizontal flip half of the time."""
    from PIL import Image

    image = random_resized_crop(image)
    if random.random() < 0.5:
        image = image.transpose(Image.FLIP_LEFT_RIGHT)
    return image


class ImageTransform:
    """`Dataset.with_transform` function: undecoded images -> `pixel_values` (+ `labels`), per batch."""

    def __init__(self, processor: Any, column: str, mode: str, augment: bool = False):
        self.processor, self.column, self.mode, self.augment = processor, column, mode, augment

    def __call__(self, batch: dict[str, list]) -> dict[str, Any]:
        images = [open_image(v, self.mode) for v in batch[self.column]]
        if self.augment:
            images = [augment_image(im) for im in images]
        out = {"pixel_values": self.processor(images, return_tensors="pt")["pixel_values"]}
        if "labels" in batch:
            out["labels"] = batch["labels"]
        return out


def collate_images(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack rows of `pixel_values` (+ `labels`) into a batch."""
    import torch

    batch = {"pixel_values": torch.stack([torch.as_tensor(r["pixel_values"]) for r in rows])}
    if rows and "labels" in rows[0]:
        batch["labels"] = torch.tensor([int(r["labels"]) for r in rows], dtype=torch.long)
    return batch
