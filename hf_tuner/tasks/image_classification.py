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

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..config import DataConfig, LabelledData
from ..data import Splits
from ..errors import ConfigError, DataError
from .base import CardInfo, DataPart, Family, Job, Loaded, Task, load_checked
from .parts.classification import Classification
from .parts.images import (DEFAULT_IMAGE_SIZE, ImageTransform, as_image_column, base_dir, build_image_processor,
                           check_images, collate_images, image_mode, is_folder, open_image, processor_size)



class ImageClassificationData(LabelledData, DataConfig):
    """`data:` of image classification: an image column (folders give `image` and `label`) and labels."""

    image_column: str = "image"
    augment: bool = False


@dataclass(frozen=True, kw_only=True)
class ViTFamily(Family):
    """`AutoModelForImageClassification` (ViT family) with its image processor: the checkpoint's, or
    a ViT one built from the image size."""

    auto_model: str = "AutoModelForImageClassification"
    processor: str = "AutoImageProcessor"
    needs_tokenizer: bool = False
    peft_task_type: Optional[str] = None  # peft has no TaskType for image classification ...
    lora_modules_to_save: tuple[str, ...] = ("classifier",)  # ... so the new head is listed to train fully

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
        job.num_channels = channels
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
            if d.label_column not in ds.column_names and is_folder(spec_of(name)):
                raise DataError(
                    f"the {name} image folder ({spec_of(name)}) has no class sub-folders: put each class's images "
                    "in a sub-folder named after the class"
                )
            return as_image_column(ds, d.image_column, base_dir(spec_of(name)), name)

        return load_checked(job, {"image_column": d.image_column}, after=as_images, label_column=d.label_column,
                            check=lambda name, ds: check_images(ds, d.image_column, name))

    def preprocess(self, job: Job, splits: Splits, processing: Any) -> Splits:
        d = job.cfg.data
        mode = image_mode(job.num_channels)

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
