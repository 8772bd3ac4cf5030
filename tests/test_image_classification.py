"""Task `image-classification`: ViT from scratch (full and LoRA) on small synthetic image sets written
by the tests, through the CLI; bad images and empty folders as clean errors; the augmentation."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import assert_clean_error

CLASSES = ["horizontal", "vertical", "plain"]  # stripes survive crops and horizontal flips


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """These tiny models step as fast on one thread, and many times faster on a busy shared CPU
    (measured here: 2 threads under load 7 took 144 s for this file, 1 thread 31 s)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def stripes(kind: str, rng: np.random.Generator, size: int = 16) -> np.ndarray:
    """A greyscale image of one class: noise plus horizontal / vertical stripes (or none)."""
    image = rng.integers(0, 70, (size, size)).astype(np.uint8)
    phase = int(rng.integers(0, 4))
    lines = (np.arange(size) + phase) % 4 < 2
    if kind == "horizontal":
        image[lines, :] = 230
    elif kind == "vertical":
        image[:, lines] = 230
    return image


def write_folder(root: Path, per_class: int, seed: int = 0) -> Path:
    """An image folder: root/<class>/<n>.png."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for kind in CLASSES:
        (root / kind).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(stripes(kind, rng), mode="L").save(root / kind / f"{i:03d}.png")
    return root


def write_csv(root: Path, per_class: int, seed: int = 0) -> Path:
    """root/data.csv with `path` (relative to root) and `label`; images in root/images/."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(per_class):
        for kind in CLASSES:
            name = f"images/{kind[0]}{i:03d}.png"
            Image.fromarray(stripes(kind, rng), mode="L").save(root / name)
            rows.append({"path": name, "label": kind})
    path = root / "data.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def recipe(tmp_path: Path, train: str, num_channels: int = 1, **sections) -> Path:
    """A tiny-ViT-from-scratch recipe file; `sections` override or add top-level sections."""
    data = {
        "task": "image-classification",
        "model": {"from_scratch": {
            "model_type": "vit", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
            "intermediate_size": 64, "image_size": 16, "patch_size": 4, "num_channels": num_channels,
        }},
        "data": {"train": train, "validation_size": 0.2},
        "training": {"learning_rate": 3e-3, "num_train_epochs": 4, "per_device_train_batch_size": 8,
                     "per_device_eval_batch_size": 64, "eval_strategy": "epoch", "save_strategy": "no",
                     "logging_steps": 5, "report_to": "none"},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def check_reloads(run: Path) -> None:
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    model = AutoModelForImageClassification.from_pretrained(run)
    processor = AutoImageProcessor.from_pretrained(run)
    assert sorted(model.config.id2label.values()) == sorted(CLASSES)
    assert processor.size["height"] == 16


def predict_json(cli, run: Path, *paths: Path) -> list[dict]:
    result = cli("predict", run, *paths, "--json", "--top-k", "2")
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


@pytest.mark.slow
def test_full_from_scratch_on_a_csv_of_paths(cli, tmp_path):
    """Full training of an RGB ViT (greyscale files converted) on a CSV of relative image paths,
    with augmentation and a held-out test split; reload, predict, and a missing image at predict time."""
    data = write_csv(tmp_path / "set", per_class=60)
    run = tmp_path / "run"
    path = recipe(tmp_path, str(data), num_channels=3, data={"image_column": "path", "test_size": 0.2, "augment": True},
                  training={"num_train_epochs": 10})
    result = cli("train", path, "-o", run)
    assert result.exit_code == 0, result.output
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["rows"] == {"train": 115, "validation": 29, "test": 36}
    assert summary["metrics"]["accuracy"] >= 0.8, summary["metrics"]  # chance is 0.33
    assert summary["test_metrics"]["accuracy"] >= 0.8, summary["test_metrics"]
    assert summary["metrics"]["accuracy"] > summary["metrics_before"]["accuracy"]
    assert {"accuracy", "f1"} <= set(summary["test_metrics"])
    check_reloads(run)

    images = [tmp_path / "set" / "images" / n for n in ("h000.png", "v000.png", "p000.png")]
    results = predict_json(cli, run, *images)
    assert [r["label"] for r in results] == ["horizontal", "vertical", "plain"], results
    assert len(results[0]["top"]) == 2 and results[0]["top"][0]["score"] >= results[0]["top"][1]["score"]

    assert_clean_error(cli("predict", run, tmp_path / "nope.png"), 2, "nope.png")


@pytest.mark.slow
def test_lora_from_scratch_on_an_image_folder(cli, tmp_path):
    """LoRA (q_proj,v_proj by default, classifier trained fully) on a greyscale image folder; the
    adapter and the merged model are saved; predict runs on the merged model."""
    folder = write_folder(tmp_path / "images", per_class=60)
    run = tmp_path / "run"
    path = recipe(tmp_path, str(folder), method={"name": "lora", "lora": {"r": 8, "alpha": 16}},
                  training={"learning_rate": 1e-2, "num_train_epochs": 10})
    result = cli("train", path, "-o", run)
    assert result.exit_code == 0, result.output
    summary = json.loads((run / "summary.json").read_text())
    assert summary["lora_target_modules"] == ["q_proj", "v_proj"]
    assert summary["trainable_params"] < summary["total_params"]
    assert summary["metrics"]["accuracy"] >= 0.8, summary["metrics"]  # chance is 0.33
    adapter = json.loads((run / "adapter" / "adapter_config.json").read_text())
    assert adapter["modules_to_save"] == ["classifier"]
    assert (run / "adapter" / "preprocessor_config.json").is_file()
    check_reloads(run)
    results = predict_json(cli, run, folder / "horizontal" / "000.png", folder / "vertical" / "000.png")
    assert [r["label"] for r in results] == ["horizontal", "vertical"], results


def test_unreadable_image_is_a_clean_error(cli, tmp_path):
    folder = write_folder(tmp_path / "images", per_class=3)
    (folder / "vertical" / "broken.png").write_bytes(b"this is not a png")
    assert_clean_error(cli("validate", recipe(tmp_path, str(folder))), 2, "broken.png")


def test_missing_image_path_in_a_csv_is_a_clean_error(cli, tmp_path):
    data = write_csv(tmp_path / "set", per_class=3)
    (tmp_path / "set" / "images" / "v001.png").unlink()
    result = cli("validate", recipe(tmp_path, str(data), data={"image_column": "path"}))
    assert_clean_error(result, 2, "v001.png", "not found")


def test_wrong_image_column_lists_the_columns(cli, tmp_path):
    data = write_csv(tmp_path / "set", per_class=3)
    assert_clean_error(cli("validate", recipe(tmp_path, str(data))), 2, "'image'", "path, label")


def test_folder_without_images_is_a_clean_error(cli, tmp_path):
    (tmp_path / "empty" / "cats").mkdir(parents=True)
    (tmp_path / "empty" / "cats" / "notes.txt").write_text("no images here")
    assert_clean_error(cli("validate", recipe(tmp_path, str(tmp_path / "empty"))), 2, "no images")


def test_folder_without_class_subfolders_is_a_clean_error(cli, tmp_path):
    from PIL import Image

    (tmp_path / "flat").mkdir()
    for i in range(4):
        Image.fromarray(stripes("plain", np.random.default_rng(i))).save(tmp_path / "flat" / f"{i}.png")
    assert_clean_error(cli("validate", recipe(tmp_path, str(tmp_path / "flat"))), 2, "sub-folder")


def test_conflicting_image_sizes_are_a_config_error(cli, tmp_path):
    folder = write_folder(tmp_path / "images", per_class=3)
    path = recipe(tmp_path, str(folder), model={"image_size": 32})
    assert_clean_error(cli("validate", path), 2, "image_size")


def test_augmentation_keeps_the_size_and_varies_the_image():
    import random

    from PIL import Image

    from hf_tuner.tasks.parts.images import augment_image

    random.seed(0)
    image = Image.fromarray(np.tile(np.arange(32, dtype=np.uint8) * 8, (24, 1)))  # a left-to-right ramp
    outputs = [np.asarray(augment_image(image)) for _ in range(8)]
    assert all(o.shape == (24, 32) for o in outputs)
    assert any(not np.array_equal(o, np.asarray(image)) for o in outputs)


def test_transform_gives_pixel_values_of_the_model_size(tmp_path):
    from datasets import Dataset, Image

    from hf_tuner.tasks.parts.images import ImageTransform, build_image_processor, collate_images

    folder = write_folder(tmp_path / "images", per_class=2)
    paths = sorted(str(p) for p in folder.rglob("*.png"))
    ds = Dataset.from_dict({"image": paths, "labels": list(range(len(paths)))}).cast_column("image", Image(decode=False))
    ds = ds.with_transform(ImageTransform(build_image_processor(8, 3), "image", "RGB"))
    batch = collate_images(ds.__getitems__([0, 1, 2]))
    assert tuple(batch["pixel_values"].shape) == (3, 3, 8, 8)
    assert batch["labels"].tolist() == [0, 1, 2]
    assert -1.0 <= float(batch["pixel_values"].min()) and float(batch["pixel_values"].max()) <= 1.0


@pytest.mark.slow
def test_lora_adapter_only_on_a_pretrained_checkpoint_and_a_hub_style_parquet(cli, tmp_path):
    """The Hub shape (beans): a Parquet file with embedded JPEG bytes and a ClassLabel `labels`
    column, a checkpoint folder without a classification head; LoRA saved as the adapter alone, and
    predict loads base + adapter."""
    import io

    import datasets
    from PIL import Image
    from transformers import ViTConfig, ViTModel

    from hf_tuner.tasks.parts.images import build_image_processor

    names = ["red", "green", "blue"]
    rng = np.random.default_rng(0)

    def coloured(k: int, shape=(40, 40, 3)) -> np.ndarray:
        image = rng.integers(0, 60, shape).astype(np.uint8)
        image[:, :, k] += 150
        return image

    rows: dict[str, list] = {"image": [], "labels": []}
    for i in range(60):
        buffer = io.BytesIO()
        Image.fromarray(coloured(i % 3)).save(buffer, format="JPEG")
        rows["image"].append({"bytes": buffer.getvalue(), "path": None})
        rows["labels"].append(i % 3)
    features = datasets.Features({"image": datasets.Image(), "labels": datasets.ClassLabel(names=names)})
    datasets.Dataset.from_dict(rows, features=features).to_parquet(tmp_path / "train.parquet")
    base = tmp_path / "vit-base"
    ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                       image_size=32, patch_size=8)).save_pretrained(base)
    build_image_processor(32, 3).save_pretrained(base)

    run = tmp_path / "run"
    path = recipe(tmp_path, str(tmp_path / "train.parquet"), data={"label_column": "labels"},
                  method={"name": "lora", "save_merged": False, "lora": {"r": 4, "alpha": 8}},
                  training={"learning_rate": 1e-2, "num_train_epochs": 3})
    spec = yaml.safe_load(path.read_text())
    spec["model"] = {"name_or_path": str(base)}
    path.write_text(yaml.safe_dump(spec))
    result = cli("train", path, "-o", run)
    assert result.exit_code == 0, result.output
    summary = json.loads((run / "summary.json").read_text())
    assert summary["labels"] == names
    assert summary["metrics"]["accuracy"] >= 0.8, summary["metrics"]
    assert not (run / "model.safetensors").exists() and (run / "adapter" / "adapter_model.safetensors").is_file()
    Image.fromarray(coloured(1, (50, 70, 3))).save(tmp_path / "green.jpg")
    [prediction] = predict_json(cli, run, tmp_path / "green.jpg")
    assert prediction["label"] == "green", prediction
