"""Task `image-classification`: ViT-family image classification.

Data: an image folder (one sub-folder per class), a CSV/JSONL/Parquet file whose `data.image_column`
holds image paths (relative to that file's folder, or absolute), or a Hub data set with an image
column. Every image a run uses is checked before training, so an unreadable file is a one-line
`DataError` naming it, not a crash mid-epoch. Images are decoded, (optionally) augmented and run
through the image processor on the fly (`Dataset.with_transform`), one batch at a time: nothing is
cached on disk, which keeps 224x224x3 float tensors out of the cache, and lets augmentation draw new
crops every epoch.
"""
from __future__ import annotations

import io
import math
import random
from pathlib import Path
from typing import Any, Optional

from ..config import DataConfig, LabelledData
from ..data import FILE_BUILDERS, Splits
from ..errors import ConfigError, DataError
from ..packaged import is_packaged, resolve_dataset
from .base import CardInfo, DataPart, Family, Job, Loaded, Task, load_checked
from .classification import Classification

DEFAULT_IMAGE_SIZE = 224  # ViT's default when neither model.image_size nor from_scratch.image_size says
CROP_SCALE = (0.5, 1.0)  # augmentation: the random crop keeps 50-100% of the image area
CROP_RATIO = (3 / 4, 4 / 3)  # ... with an aspect ratio in this range


class ImageClassificationData(LabelledData, DataConfig):
    """`data:` of image classification: an image column (folders give `image` and `label`) and labels."""

    image_column: str = "image"
    augment: bool = False


class ViTFamily(Family):
    """`AutoModelForImageClassification` (ViT family) with its image processor: the checkpoint's, or
    a ViT one built from the image size."""

    auto_model = "AutoModelForImageClassification"
    processor = "AutoImageProcessor"
    needs_tokenizer = False
    peft_task_type = None  # peft has no TaskType for image classification ...
    lora_modules_to_save = ("classifier",)  # ... so the new head is listed to train fully

    def build_processing(self, job: Job, splits: Splits) -> Any:
        m = job.cfg.model
        if m.from_scratch is not None:
            channels = int(m.from_scratch.overrides().get("num_channels", 3))
            return build_image_processor(scratch_image_size(job), channels)
        from transformers import AutoConfig, AutoImageProcessor

        from ..modeling import describe_load_error, model_source

        name = model_source(m)
        try:
            processor = AutoImageProcessor.from_pretrained(name, revision=m.revision, trust_remote_code=m.trust_remote_code)
        except OSError:  # a checkpoint without preprocessor_config.json: build one from its config
            try:
                config = AutoConfig.from_pretrained(name, revision=m.revision, trust_remote_code=m.trust_remote_code)
            except (OSError, ValueError) as exc:
                raise describe_load_error(name, exc) from None
            size = m.image_size or getattr(config, "image_size", DEFAULT_IMAGE_SIZE)
            return build_image_processor(size, getattr(config, "num_channels", 3))
        except ValueError as exc:
            raise describe_load_error(name, exc) from None
        if m.image_size and processor_size(processor) not in (None, m.image_size):
            raise ConfigError(
                f"model.image_size={m.image_size} but {m.name_or_path} takes {processor_size(processor)}x"
                f"{processor_size(processor)} images: remove model.image_size for a pretrained checkpoint"
            )
        return processor

    def config_kwargs(self, job: Job, splits: Splits, processing: Any) -> dict[str, Any]:
        return {"image_size": scratch_image_size(job)} if job.cfg.model.from_scratch is not None else {}

    def fix_up(self, job: Job, model: Any, processing: Any) -> Any:
        channels = int(getattr(model.config, "num_channels", 3))
        job.state["num_channels"] = channels
        mean = getattr(processing, "image_mean", None)
        if isinstance(mean, (list, tuple)) and len(mean) != channels:
            raise ConfigError(
                f"the model takes {channels}-channel images but the image processor normalises "
                f"{len(mean)} channels: make model.from_scratch.num_channels match the processor"
            )
        return model

    def probe_inputs(self, loaded: Loaded) -> dict[str, Any]:
        """Random images of the model's size and channels."""
        import torch

        config = loaded.model.config
        size = getattr(config, "image_size", DEFAULT_IMAGE_SIZE)
        size = size if isinstance(size, int) else size[0]
        generator = torch.Generator().manual_seed(0)
        return {"pixel_values": torch.rand(3, getattr(config, "num_channels", 3), size, size, generator=generator)}


def scratch_image_size(job: Job) -> int:
    """The image side of a ViT built from scratch (model.image_size or from_scratch.image_size)."""
    m = job.cfg.model
    own = m.from_scratch.overrides().get("image_size")
    if m.image_size and own and int(own) != m.image_size:
        raise ConfigError(
            f"model.image_size={m.image_size} but model.from_scratch.image_size={own}: set one of them"
        )
    return int(m.image_size or own or DEFAULT_IMAGE_SIZE)


class LabelledImages(DataPart):
    """An image (a file, a folder of class folders, a Hub image column) and a label per row; every
    image checked when loaded, decoded and processed on the fly."""

    schema = ImageClassificationData

    def load(self, job: Job) -> Splits:
        d, cfg = job.cfg.data, job.cfg
        if cfg.method.name == "lora" and cfg.model.from_scratch is not None and not cfg.method.save_merged:
            raise ConfigError(
                "method.save_merged=false keeps only the LoRA adapter, but a model built from scratch has no "
                "saved base model to load it onto: keep method.save_merged=true"
            )

        def spec_of(split: str) -> str:
            """The data source a split was read from (a split carved from train reads train's)."""
            return {"validation": d.validation, "test": d.test}.get(split) or d.train

        def as_images(name: str, ds: Any) -> Any:
            if d.label_column not in ds.column_names and _is_folder(spec_of(name)):
                raise DataError(
                    f"the {name} image folder ({spec_of(name)}) has no class sub-folders: put each class's images "
                    "in a sub-folder named after the class"
                )
            return as_image_column(ds, d.image_column, _base_dir(spec_of(name)), name)

        return load_checked(job, {"image_column": d.image_column}, after=as_images, label_column=d.label_column,
                            check=lambda name, ds: check_images(ds, d.image_column, name))

    def preprocess(self, job: Job, splits: Splits, processing: Any) -> Splits:
        d = job.cfg.data
        mode = image_mode(job.state.get("num_channels", 3))

        def attach(name: str, ds: Any) -> Any:
            augment = d.augment and name == "train"
            return ds.with_transform(ImageTransform(processing, d.image_column, mode, augment))

        return splits.map(attach)  # nothing is cached: images are processed on the fly

    def collator(self, job: Job, processing: Any) -> Any:
        return collate_images

    def defaults(self, job: Job) -> dict[str, Any]:
        # the raw image column must reach the transform; the Trainer would drop it otherwise
        return {"remove_unused_columns": False, "label_names": ["labels"]}

    def memory_sequence(self, job: Job, model_config: Any, lengths: list[Any]) -> int:
        patch = getattr(model_config, "patch_size", None)
        size = getattr(model_config, "image_size", None)
        return (size // patch) ** 2 + 1 if patch and size else 1  # patches + [CLS]

    def encode_inputs(self, job: Job, loaded: Loaded, batch: list[str]) -> dict[str, Any]:
        """Image files -> `pixel_values` (a missing file is a DataError naming it)."""
        for item in batch:
            if not Path(item).expanduser().is_file():
                raise DataError(f"image not found: {item} (predict takes paths of image files)")
        mode = image_mode(int(getattr(loaded.model.config, "num_channels", 3)))
        images = [open_image({"path": str(Path(p).expanduser()), "bytes": None}, mode, p) for p in batch]
        return {"pixel_values": loaded.processing(images, return_tensors="pt")["pixel_values"]}


TASK = Task(
    name="image-classification",
    family=ViTFamily(),
    data=LabelledImages(),
    objective=Classification(),
    card=CardInfo("image-classification", "Image Classification"),
)


# ------------------------------------------------------------------------------ data helpers


def _local_path(spec: Optional[str]) -> Optional[Path]:
    """The local file or folder a data spec names (packaged names resolved), None for Hub ids."""
    if not spec:
        return None
    path = Path(resolve_dataset(spec) if is_packaged(spec) else spec).expanduser()
    return path if path.exists() else None


def _is_folder(spec: Optional[str]) -> bool:
    path = _local_path(spec)
    return path is not None and path.is_dir()


def _base_dir(spec: Optional[str]) -> Optional[Path]:
    """Relative image paths in a data file are relative to the file's folder."""
    path = _local_path(spec)
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


def _describe(value: dict[str, Any], index: int) -> str:
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
                raise DataError(f"cannot read image {_describe(value, index)} in the {split} data: {reason} (fix or remove the file)") from None
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
