"""End to end: `hf-tuner train` on a slice of the quickstart (full and LoRA), then reload and predict."""
from __future__ import annotations

import json

import pytest
import yaml

pytestmark = pytest.mark.slow

# A small slice of the quickstart: 400 tweets, 2 epochs. The validation split is ~70% negative.
SLICE = ["data.max_train_samples=400", "data.max_eval_samples=200", "data.max_length=64",
         "training.num_train_epochs=2", "eval.before_training=true"]


def majority_share(run_dir) -> float:
    """The accuracy of always answering the most common validation label."""
    from hf_tuner.config import read_yaml
    from hf_tuner.recipes import build_config
    from hf_tuner.tasks import get_task

    job = get_task("text-classification").bind(build_config(read_yaml(run_dir / "config.yaml")))
    labels = job.data.load(job).validation["labels"]
    return max(labels.count(v) for v in set(labels)) / len(labels)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    from typer.testing import CliRunner

    from hf_tuner.cli import app

    out = tmp_path_factory.mktemp("runs") / "full"
    result = CliRunner().invoke(app, ["train", "quickstart", *SLICE, "-o", str(out)])
    return out, result


def test_full_training_writes_a_complete_run_folder(full_run):
    out, result = full_run
    assert result.exit_code == 0, result.output
    for name in ("config.json", "model.safetensors", "tokenizer.json", "config.yaml", "metrics.json",
                 "summary.json", "loss.png", "README.md"):
        assert (out / name).is_file(), name
    assert not (out / "checkpoints").exists()
    assert not out.with_name("full.incomplete").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["method"] == "full"
    assert summary["command"].startswith("hf-tuner train quickstart data.max_train_samples=400")
    assert summary["rows"] == {"train": 400, "validation": 200}
    assert summary["trainable_params"] == summary["total_params"] > 20_000_000
    assert summary["train"]["samples_per_second"] > 0
    assert {"torch", "transformers", "peft"} <= set(summary["versions"])
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["data"]["max_train_samples"] == 400 and config["training"]["num_train_epochs"] == 2
    assert "Run finished" in result.stdout and "after training" in result.stdout


def test_full_training_beats_the_majority_class_and_the_untrained_model(full_run):
    out, _ = full_run
    summary = json.loads((out / "summary.json").read_text())
    accuracy = summary["metrics"]["accuracy"]
    assert accuracy > majority_share(out) + 0.05
    assert accuracy > summary["metrics_before"]["accuracy"] + 0.1
    assert summary["metrics"]["loss"] < summary["metrics_before"]["loss"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["validation"]["accuracy"] == accuracy


def test_saved_model_reloads_and_predicts(full_run, cli):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    out, _ = full_run
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.id2label == {0: "negative", 1: "positive"}
    classify = pipeline("text-classification", model=model, tokenizer=AutoTokenizer.from_pretrained(out))
    assert classify("I hate this, worst flight ever, lost my bags")[0]["label"] == "negative"
    result = cli("predict", out, "I love this, what a wonderful day, thank you!", "worst flight ever, lost my bags", "--json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["input"][:5] for r in rows] == ["I lov", "worst"]
    assert all({t["label"] for t in r["top"]} == {"negative", "positive"} for r in rows)
    p_positive = [next(t["score"] for t in r["top"] if t["label"] == "positive") for r in rows]
    assert p_positive[0] > p_positive[1] + 0.1  # the happy tweet is more positive than the angry one
    assert rows[1]["label"] == "negative"


def test_finished_run_is_not_overwritten_without_permission(full_run, cli):
    out, _ = full_run
    before = (out / "model.safetensors").stat().st_mtime_ns
    result = cli("train", "quickstart", *SLICE, "-o", out)
    assert result.exit_code == 2 and "--overwrite" in result.stderr
    assert (out / "model.safetensors").stat().st_mtime_ns == before


def test_second_run_reuses_the_tokenised_data(full_run, cli, tmp_path):
    out, _ = full_run
    result = cli("train", "quickstart", *SLICE, "training.max_steps=1", "eval.before_training=false",
                 "-o", tmp_path / "again")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "again" / "summary.json").read_text())
    assert summary["tokenised_from_cache"] == {"train": True, "validation": True}


def test_lora_training_saves_adapter_and_merged_model(cli, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    from hf_tuner.rundir import load_trained

    out = tmp_path / "lora"
    # 50 steps is few for LoRA: a higher rate than the recipe's (measured: 0.81 vs 0.725 majority)
    result = cli("train", "quickstart-lora", *SLICE, "training.learning_rate=2e-3", "-o", out)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "lora" and summary["lora_target_modules"] == ["query", "value"]
    assert summary["trainable_params"] < summary["total_params"] / 50
    assert summary["metrics"]["accuracy"] > majority_share(out) + 0.03
    assert summary["metrics"]["accuracy"] > summary["metrics_before"]["accuracy"] + 0.1
    assert (out / "adapter" / "adapter_config.json").is_file()
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    # the merged model and base + adapter give the same predictions
    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(out)
    batch = tokenizer(["so happy today", "awful service"], return_tensors="pt", padding=True)
    merged = AutoModelForSequenceClassification.from_pretrained(out).eval()
    adapted = load_trained(AutoModelForSequenceClassification, out, adapter=True).eval()
    assert isinstance(adapted, PeftModel)
    with torch.no_grad():
        assert torch.allclose(merged(**batch).logits, adapted(**batch).logits, atol=1e-4)
