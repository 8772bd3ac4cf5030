"""Task `image-captioning`: a ViT encoder + GPT-2 decoder (VisionEncoderDecoderModel). Tiny models on
48 drawn shapes ("a red circle"), half of them with two captions each."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import yaml

from conftest import assert_clean_error

COLORS = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 160, 30)}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """48 32x32 images of a coloured circle or square, captions in a JSONL file with relative paths
    (every other row has two captions), and tiny pretrained halves (ViT, GPT-2) plus a text encoder
    (BERT) and a decoder without cross-attention (Llama) for the error cases."""
    import transformers
    from PIL import Image, ImageDraw

    from hf_tuner.modeling import train_tokenizer
    from hf_tuner.tasks.parts.images import build_image_processor

    root = tmp_path_factory.mktemp("captions")
    (root / "img").mkdir()
    rng = random.Random(0)
    rows = []
    for i in range(48):
        color, shape = rng.choice(list(COLORS)), rng.choice(["circle", "square"])
        image = Image.new("RGB", (32, 32), "white")
        (ImageDraw.Draw(image).ellipse if shape == "circle" else ImageDraw.Draw(image).rectangle)((6, 6, 26, 26),
                                                                                                  fill=COLORS[color])
        image.save(root / "img" / f"{i}.png")
        caption = [f"a {color} {shape}", f"{color} {shape} on white"] if i % 2 else f"a {color} {shape}"
        rows.append({"image": f"img/{i}.png", "caption": caption})
    (root / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    tokenizer = train_tokenizer([f"a {c} {s} on white" for c in COLORS for s in ("circle", "square")] * 3,
                                "byte-level-bpe", 300, 1, "causal")
    small = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}
    transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=len(tokenizer), n_layer=1, n_embd=32, n_head=2,
                                                         n_positions=32, bos_token_id=0, eos_token_id=0)).save_pretrained(root / "gpt2")
    tokenizer.save_pretrained(root / "gpt2")
    transformers.ViTForImageClassification(transformers.ViTConfig(image_size=32, patch_size=8, num_labels=3, **small)) \
        .save_pretrained(root / "vit")
    build_image_processor(32, 3).save_pretrained(root / "vit")
    transformers.BertModel(transformers.BertConfig(vocab_size=100, **small)).save_pretrained(root / "bert")
    transformers.LlamaForCausalLM(transformers.LlamaConfig(vocab_size=len(tokenizer), num_key_value_heads=2, **small)) \
        .save_pretrained(root / "llama")
    tokenizer.save_pretrained(root / "llama")
    return root


def recipe(root: Path, name: str = "tiny.yaml", **sections) -> Path:
    data = {
        "task": "image-captioning",
        "model": {"from_scratch": {"model_type": "vision-encoder-decoder",
                                   "encoder": {"model_type": "vit", "hidden_size": 32, "num_hidden_layers": 1,
                                               "num_attention_heads": 2, "intermediate_size": 64, "patch_size": 8},
                                   "decoder": {"model_type": "gpt2", "n_layer": 1, "n_embd": 32, "n_head": 2,
                                               "n_positions": 32}},
                  "tokenizer": {"train": True, "vocab_size": 300, "min_frequency": 1}},
        "data": {"train": str(root / "captions.jsonl"), "image_size": 32, "max_target_length": 12,
                 "validation_size": 0.25},
        "training": {"learning_rate": 3e-3, "num_train_epochs": 12, "per_device_train_batch_size": 8,
                     "save_strategy": "no", "eval_strategy": "no", "logging_steps": 10},
        "eval": {"max_new_tokens": 12},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    path = root / name
    path.write_text(yaml.safe_dump(data))
    return path


HALVES = {"from_scratch": None, "tokenizer": None}


# ------------------------------------------------------------------------------------------ pieces


def test_loss_ignores_padding_but_not_eos():
    """GPT-2 pads with its eos (id 0 here): padding is masked by length, so the real eos stays a label."""
    import torch

    from hf_tuner.tasks.image_captioning import collate_captions

    rows = [{"pixel_values": torch.zeros(3, 4, 4), "labels": [5, 6, 7, 0]},
            {"pixel_values": torch.ones(3, 4, 4), "labels": [8, 0]}]
    batch = collate_captions(rows)
    assert batch["labels"].tolist() == [[5, 6, 7, 0], [8, 0, -100, -100]]
    assert batch["decoder_attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert batch["pixel_values"].shape == (2, 3, 4, 4)


def test_caption_metrics_score_against_every_reference(monkeypatch):
    import builtins

    from hf_tuner.tasks.image_captioning import CIDER_HINT, caption_metrics, coco_tokens

    assert coco_tokens("A Red-Circle, on white.") == "a red circle on white"
    refs = [["a red circle", "red circle on white"], ["a blue square on a table", "blue square"]]
    scores, hint = caption_metrics(["Red circle on white.", "a blue square on a table"], refs)
    assert hint is None
    assert scores["exact_match"] == 1.0 and scores["rougeL"] == pytest.approx(1.0) and scores["bleu"] > 99
    assert scores["cider"] > 0
    wrong, _ = caption_metrics(["a green square", "a red circle"], refs)
    assert wrong["exact_match"] == 0 and wrong["rougeL"] < 0.7 and wrong["cider"] < scores["cider"]
    # without the `captioning` extra: BLEU / ROUGE-L only, and the hint how to add CIDEr-D
    real_import = builtins.__import__
    monkeypatch.setattr(builtins, "__import__", lambda name, *a, **k: (_ for _ in ()).throw(ImportError(name))
                        if name.startswith("pycocoevalcap") else real_import(name, *a, **k))
    plain, hint = caption_metrics(["a red circle"], [["a red circle"]])
    assert hint == CIDER_HINT and "pip install 'hf-tuner[captioning]'" in hint and "cider" not in plain


def test_multi_caption_rows_train_on_each_caption_and_score_against_all(shapes):
    from hf_tuner.recipes import load_config
    from hf_tuner.tasks import get_task

    cfg = load_config(str(recipe(shapes, "rows.yaml")))
    job = get_task(cfg.task).bind(cfg)
    splits = job.data.load(job)
    processing = job.family.build_processing(job, splits)
    features = job.data.preprocess(job, splits, processing)
    captions = sum(len(c) if isinstance(c, list) else 1 for c in splits.train["caption"])
    assert len(features.train) == captions > len(splits.train)  # one training row per caption
    assert len(features.validation) == len(splits.validation)  # one evaluation row per image ...
    references = features.validation.with_format(None)["references"]
    assert [len(r) for r in references] == [len(c) if isinstance(c, list) else 1 for c in splits.validation["caption"]]
    row = features.train[0]  # ... images processed on the fly, the caption's tokens end with eos
    assert tuple(row["pixel_values"].shape) == (3, 32, 32) and row["labels"][-1] == processing.tokenizer.eos_token_id


# ------------------------------------------------------------------------------------------ bad input


def test_an_image_that_does_not_open_is_named(cli, shapes, tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "broken.png").write_bytes(b"not a png")
    (tmp_path / "img" / "ok.png").write_bytes((shapes / "img" / "0.png").read_bytes())
    rows = [{"image": "img/ok.png", "caption": "a shape"}] * 5 + [{"image": "img/broken.png", "caption": "a shape"}]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = cli("validate", recipe(shapes, "broken.yaml", data={"train": str(tmp_path / "c.jsonl"), "validation_size": 0.5}))
    assert_clean_error(result, 2, "broken.png")


def test_a_missing_caption_column_is_a_clean_error(cli, shapes):
    result = cli("validate", recipe(shapes, "nocol.yaml", data={"caption_column": "text"}))
    assert_clean_error(result, 2, "column 'text' not found", "caption", "data.caption_column")


def test_an_encoder_that_is_not_a_vision_model_is_a_clean_error(cli, shapes):
    result = cli("validate", recipe(shapes, "bert.yaml", model={**HALVES, "encoder": str(shapes / "bert"),
                                                                  "decoder": str(shapes / "gpt2")}))
    assert_clean_error(result, 2, "model.encoder", "not a vision encoder")


def test_a_decoder_without_cross_attention_is_a_clean_error(cli, shapes):
    result = cli("validate", recipe(shapes, "llama.yaml", model={**HALVES, "encoder": str(shapes / "vit"),
                                                                   "decoder": str(shapes / "llama")}))
    assert_clean_error(result, 2, "model.decoder", "without cross-attention")


def test_halves_are_for_captioning_only(cli):
    assert_clean_error(cli("validate", "quickstart", "model.encoder=a", "model.decoder=b"), 2, "model.encoder")


# ------------------------------------------------------------------------------------------ runs


@pytest.fixture(scope="module")
def full_run(shapes):
    from typer.testing import CliRunner

    from hf_tuner.cli import app

    out = shapes / "runs" / "full"
    result = CliRunner().invoke(app, ["train", str(recipe(shapes)), "-o", str(out)])
    assert result.exit_code == 0, result.output[-3000:]
    return out


@pytest.mark.slow
def test_training_learns_to_caption_and_to_stop(full_run, shapes):
    import torch
    from PIL import Image
    from transformers import AutoTokenizer, VisionEncoderDecoderModel

    from hf_tuner.tasks.image_captioning import CaptionProcessing

    summary = json.loads((full_run / "summary.json").read_text())
    before, after = summary["metrics_before"], summary["metrics"]
    assert after["loss"] < before["loss"] - 1
    assert after["rougeL"] > before["rougeL"] + 0.3  # a random model writes no caption words
    assert {"bleu", "rougeL", "exact_match", "cider"} <= set(after)
    assert any("cross-attention are new" in n for n in summary["notes"])
    # the generation config carries the tokenizer's ids, so generate() alone starts, pads and stops right
    generation = json.loads((full_run / "generation_config.json").read_text())
    eos = AutoTokenizer.from_pretrained(full_run).eos_token_id
    assert generation["decoder_start_token_id"] == generation["eos_token_id"] == generation["pad_token_id"] == eos
    model = VisionEncoderDecoderModel.from_pretrained(full_run).eval()
    pixels = CaptionProcessing.from_pretrained(full_run).images([Image.open(shapes / "img" / f"{i}.png").convert("RGB")
                                                                 for i in range(8)])
    with torch.no_grad():
        out = model.generate(pixel_values=pixels, max_new_tokens=12)
    # every caption ends with a learned eos before max_target_length (masking pads by id would hide it)
    assert all(eos in row[1:].tolist() and row[1:].tolist().index(eos) < 11 for row in out), out
    assert (full_run / "samples_before.png").is_file() and (full_run / "samples_after.png").is_file()
    assert "pipeline_tag: image-to-text" in (full_run / "README.md").read_text()


@pytest.mark.slow
def test_predict_captions_image_files(cli, full_run, shapes):
    result = cli("predict", full_run, shapes / "img" / "0.png", shapes / "img" / "1.png", "--num-beams", "2",
                 "--max-new-tokens", "6", "--json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [Path(r["input"]).name for r in rows] == ["0.png", "1.png"]
    assert all(r["output"] and len(r["output"].split()) <= 6 for r in rows)
    assert all(any(w in r["output"] for w in ("circle", "square")) for r in rows), rows
    assert_clean_error(cli("predict", full_run, shapes / "img" / "missing.png"), 2, "missing.png")


@pytest.mark.slow
def test_eval_reproduces_the_metrics_and_writes_a_sample_sheet(cli, full_run):
    summary = json.loads((full_run / "summary.json").read_text())
    result = cli("eval", full_run)
    assert result.exit_code == 0, result.output
    evaluated = json.loads((full_run / "eval" / "validation.json").read_text())
    assert evaluated["metrics"]["loss"] == pytest.approx(summary["metrics"]["loss"], abs=1e-4)
    assert evaluated["metrics"]["rougeL"] == pytest.approx(summary["metrics"]["rougeL"], abs=1e-6)
    assert (full_run / "eval" / "validation.samples.png").is_file()
    assert evaluated["samples"] and {"prediction", "references"} <= set(evaluated["samples"][0])


def test_plan_counts_the_activations_of_both_halves():
    import transformers

    from hf_tuner.preflight import estimate_memory

    enc = transformers.ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                 image_size=32, patch_size=8)
    dec = transformers.GPT2Config(n_layer=3, n_embd=64, n_head=4, vocab_size=100, add_cross_attention=True, is_decoder=True)
    model = transformers.VisionEncoderDecoderModel(
        config=transformers.VisionEncoderDecoderConfig.from_encoder_decoder_configs(enc, dec))
    memory = estimate_memory(model, seq=20, batch=4, precision="fp32", processes=1, shards="", gradient_checkpointing=False,
                             optimizer="adamw_torch", frozen_copies=0, runtime=0)

    def layers(n, h, heads):  # MEMORY_FORMULA's activations of n layers, fp32
        return int(n * 4 * 20 * h * (34 + 5 * heads * 20 / h) * 4 / 2)

    assert memory.terms["activations"] == layers(2, 32, 2) + layers(3, 64, 4)
    assert memory.terms["logits"] == 4 * 20 * 100 * 4 * 3  # the decoder's vocabulary


@pytest.mark.slow
def test_plan_runs_for_a_captioning_recipe(cli, shapes):
    result = cli("plan", recipe(shapes, "plan.yaml"))
    assert result.exit_code == 0, result.output
    assert "activations" in result.stdout and "vision-encoder-decoder from scratch" in result.stdout


@pytest.fixture(scope="module")
def lora_run(shapes):
    from typer.testing import CliRunner

    from hf_tuner.cli import app

    out = shapes / "runs" / "lora"
    path = recipe(shapes, "lora.yaml", method={"name": "lora", "lora": {
        "target_modules": "all-linear", "modules_to_save": ["embeddings", "wte", "wpe"]}},
        training={"learning_rate": 1e-2, "num_train_epochs": 4})
    result = CliRunner().invoke(app, ["train", str(path), "-o", str(out)])
    assert result.exit_code == 0, result.output[-3000:]
    return out


@pytest.mark.slow
def test_lora_adapts_both_halves_and_the_cross_attention(lora_run):
    out = lora_run
    summary = json.loads((out / "summary.json").read_text())
    targets = " ".join(summary["lora_target_modules"])
    assert "crossattention" in targets and "encoder." in targets and "decoder." in targets
    assert summary["trainable_params"] < summary["total_params"]
    assert summary["metrics"]["loss"] < summary["metrics_before"]["loss"]
    assert (out / "adapter" / "adapter_config.json").is_file() and (out / "model.safetensors").is_file()


@pytest.mark.slow
def test_pretrained_halves_train_with_new_cross_attention(cli, shapes):
    out = shapes / "runs" / "halves"
    result = cli("train", recipe(shapes, "halves.yaml", model={**HALVES, "encoder": str(shapes / "vit"),
                                                                 "decoder": str(shapes / "gpt2")},
                                 training={"max_steps": 2}), "-o", out)
    assert result.exit_code == 0, result.output[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert any("cross-attention layers are new" in n for n in summary["notes"])
    assert summary["model"] == f"{shapes / 'vit'} + {shapes / 'gpt2'}"
    from transformers import AutoImageProcessor, VisionEncoderDecoderModel

    model = VisionEncoderDecoderModel.from_pretrained(out)
    assert model.config.encoder.model_type == "vit" and model.config.decoder.add_cross_attention
    assert AutoImageProcessor.from_pretrained(out).size["height"] == 32


@pytest.mark.slow
def test_push_merges_a_lora_run_and_tags_it_image_to_text(cli, full_run, shapes, hub, tmp_path):
    """LoRA on the trained captioner (a saved base model the adapter can be merged onto again)."""
    from conftest import HUB_TOKEN

    out = shapes / "runs" / "lora-on-full"
    trained = cli("train", recipe(shapes, "lora2.yaml", model={**HALVES, "name_or_path": str(full_run)},
                                  method={"name": "lora", "lora": {"target_modules": "all-linear"}},
                                  training={"max_steps": 2}, eval={"before_training": False}), "-o", out)
    assert trained.exit_code == 0, trained.output[-3000:]
    result = cli("push", out, "--repo-id", "me/captions", "--merge-lora", "--token", HUB_TOKEN, "--endpoint", hub.url)
    assert result.exit_code == 0, result.output
    assert "outputs match the adapter model" in result.stderr  # the merge check ran on probe images
    files = hub.files("me/captions")
    assert {"model.safetensors", "generation_config.json", "preprocessor_config.json", "tokenizer.json"} <= set(files)
    meta = yaml.safe_load(files["README.md"].decode().split("---")[1])
    assert meta["pipeline_tag"] == "image-to-text"


@pytest.mark.slow
def test_resume_after_an_interrupt_and_two_processes(shapes, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    bin_ = str(Path(sys.executable).parent / "hf-tuner")
    env = {**os.environ, "HF_TUNER_CACHE": str(tmp_path / "cache")}
    # stopped once any checkpoint is complete: checkpoint-2 alone lives only until the next save rotates
    # it away, and a poll that missed that window once let the whole (then 6-step) run finish unstopped
    path = recipe(shapes, "resume.yaml", training={"max_steps": 24, "save_strategy": "steps", "save_steps": 2})
    one = tmp_path / "one"
    proc = subprocess.Popen([bin_, "train", str(path), "-o", str(one)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    checkpoints = Path(str(one) + ".incomplete") / "checkpoints"
    deadline = time.time() + 300
    while not any(checkpoints.glob("checkpoint-*/trainer_state.json")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=300)
    resumed = subprocess.run([bin_, "train", str(path), "-o", str(one), "--resume"], env=env, capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    single = json.loads((one / "summary.json").read_text())
    assert single["status"] == "completed" and single["resumed"] and single["train"]["global_steps"] == 24
    two = tmp_path / "two"
    result = subprocess.run([bin_, "train", str(path), "-n", "2", "-o", str(two), "training.max_steps=2",
                             "training.save_strategy=no"], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    double = json.loads((two / "summary.json").read_text())
    assert double["processes"] == 2
    # the same untrained model on the same 12 images: the same mean loss in 1 and 2 processes
    assert double["metrics_before"]["loss"] == pytest.approx(single["metrics_before"]["loss"], rel=0.02)
