"""`hf-tuner plan`: parameter counts on the meta device, token lengths, steps and memory."""
from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from hf_tuner.launch import resolve_launch
from hf_tuner.recipes import build_config

POS, NEG = ["great", "love", "happy", "nice"], ["awful", "hate", "sad", "bad"]


def sentiment_csv(path: Path, rows: int = 60, words: int = 6) -> Path:
    rng = random.Random(0)
    data = [{"text": " ".join(rng.choices(POS if i % 2 else NEG, k=words)), "label": "positive" if i % 2 else "negative"}
            for i in range(rows)]
    pd.DataFrame(data).to_csv(path, index=False)
    return path


def recipes(tmp: Path) -> dict[str, dict]:
    """Recipes of several tasks, models and methods that load offline."""
    csv = str(sentiment_csv(tmp / "s.csv"))
    pairs = tmp / "pairs.csv"
    pd.DataFrame({"src": ["the cat sleeps", "a dog runs"] * 20, "tgt": ["le chat dort", "un chien court"] * 20}).to_csv(pairs, index=False)
    bpe = {"train": True, "type": "byte-level-bpe", "vocab_size": 300, "min_frequency": 1}
    return {
        "minilm-full": {"task": "text-classification", "model": {"name_or_path": "packaged:all-MiniLM-L6-v2"},
                        "data": {"train": csv}},
        "minilm-lora": {"task": "text-classification", "model": {"name_or_path": "packaged:all-MiniLM-L6-v2"},
                        "data": {"train": csv}, "method": {"name": "lora"}},
        "gpt2-lora": {"task": "causal-lm", "data": {"train": csv, "max_length": 32}, "method": {"name": "lora"},
                      "model": {"from_scratch": {"model_type": "gpt2", "n_layer": 2, "n_embd": 32, "n_head": 2, "n_positions": 64},
                                "tokenizer": bpe}},
        "bart-full": {"task": "seq2seq", "data": {"train": str(pairs), "source_column": "src", "target_column": "tgt"},
                      "model": {"from_scratch": {"model_type": "bart", "encoder_layers": 1, "decoder_layers": 1, "d_model": 32,
                                                 "encoder_attention_heads": 2, "decoder_attention_heads": 2,
                                                 "encoder_ffn_dim": 64, "decoder_ffn_dim": 64, "max_position_embeddings": 160},
                                "tokenizer": bpe}},
    }


@pytest.mark.parametrize("name", ["minilm-full", "minilm-lora", "gpt2-lora", "bart-full"])
def test_meta_parameter_counts_equal_the_loaded_model(name, tmp_path):
    from hf_tuner.preflight import preflight
    from hf_tuner.run import prepare

    cfg = build_config(recipes(tmp_path)[name])
    real = prepare(cfg)  # the model `train` builds, weights and all
    planned = preflight(cfg, resolve_launch(None))
    assert (planned["trainable_params"], planned["total_params"]) == (real.trainable, real.total)
    if cfg.method.name == "lora":
        assert 0 < planned["trainable_params"] < planned["total_params"] / 10


def test_token_lengths_truncation_share_and_steps_match_hand_counts(cli, tmp_path):
    # MiniLM's vocabulary has each of these words as one token: a row of k words is k + 2 tokens
    rows = [{"text": " ".join(["good"] * 50), "label": "positive"} for _ in range(10)]
    rows += [{"text": " ".join(["bad"] * 10), "label": "negative"} for _ in range(30)]
    pd.DataFrame(rows).to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame(rows[:4] + rows[-4:]).to_csv(tmp_path / "val.csv", index=False)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("task: text-classification\nmodel: {name_or_path: 'packaged:all-MiniLM-L6-v2'}\n"
                      f"data: {{train: '{tmp_path / 'train.csv'}', validation: '{tmp_path / 'val.csv'}', max_length: 32}}\n"
                      "training: {per_device_train_batch_size: 8}\n")
    result = cli("plan", str(recipe), "-n", "2", "--json")
    assert result.exit_code == 0, result.output
    p = json.loads(result.stdout)
    (lengths,) = p["lengths"]
    assert lengths["over_limit"] == 0.25  # 10 of 40 rows are 52 tokens, over the limit of 32
    assert (lengths["p50"], lengths["max"], lengths["limit"]) == (12, 52, 32)
    assert p["steps_per_epoch"] == 3 and p["global_batch"] == 16  # ceil(40 / (8 x 2 processes))
    assert p["sequence_for_memory"] == 32  # the longest batch is cut to the limit
    text = cli("plan", str(recipe)).stdout
    assert "25.0% of rows cut" in text and "steps/epoch      5" in text  # ceil(40 / 8) on one process


def test_sharding_divides_what_the_profile_shards(tmp_path):
    from hf_tuner.modeling import meta_models
    from hf_tuner.preflight import estimate_memory
    from hf_tuner.run import prepare

    with meta_models():
        p = prepare(build_config(recipes(tmp_path)["minilm-full"]))
    n = p.total
    args = dict(seq=32, batch=8, precision="fp32", gradient_checkpointing=False, optimizer="adamw_torch",
                frozen_copies=0, runtime=0)
    single = estimate_memory(p.model, processes=1, shards="nothing", **args).terms
    ddp = estimate_memory(p.model, processes=4, shards="nothing", **args).terms
    fsdp = estimate_memory(p.model, processes=4, shards="weights+gradients+optimizer", **args).terms
    zero2 = estimate_memory(p.model, processes=4, shards="gradients+optimizer", **args).terms
    assert single["weights"] == 4 * n and single["optimizer"] == 8 * n and "DDP buckets" not in single  # fp32, AdamW
    assert ddp["DDP buckets"] == 4 * n and ddp["weights"] == 4 * n
    assert fsdp["weights"] == n and fsdp["gradients"] == n and fsdp["optimizer"] == 2 * n
    assert zero2["weights"] == 4 * n and zero2["optimizer"] == 2 * n
    assert single["activations"] == fsdp["activations"]  # each process still runs its own batch


def test_a_plan_that_does_not_fit_warns(cli, tmp_path, monkeypatch):
    monkeypatch.setattr("hf_tuner.preflight.available_bytes", lambda: 100 * 2 ** 20)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("task: text-classification\nmodel: {name_or_path: 'packaged:all-MiniLM-L6-v2'}\n"
                      f"data: {{train: '{sentiment_csv(tmp_path / 's.csv')}'}}\n")
    result = cli("plan", str(recipe), "--formula")
    assert result.exit_code == 0, result.output
    assert "fits             NO" in result.stdout and "warning: the estimate does not fit" in result.stderr
    assert "Korthikanti" in result.stdout  # --formula states how the estimate is made


@pytest.mark.slow
def test_quickstart_memory_estimate_is_within_30_percent_of_peak_rss(tmp_path):
    overrides = ["data.max_train_samples=400", "data.max_eval_samples=100", "training.num_train_epochs=1"]
    bin_dir = Path(sys.executable).parent
    planned = subprocess.run([str(bin_dir / "hf-tuner"), "plan", "quickstart", *overrides, "--json"],
                             capture_output=True, text=True, timeout=300)
    assert planned.returncode == 0, planned.stderr[-2000:]
    estimate = json.loads(planned.stdout)["memory_total"]
    # peak RSS of the training process alone: measured in a fresh parent so no other child counts
    measure = ("import resource, subprocess, sys; rc = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL, "
               "stderr=subprocess.DEVNULL); print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)")
    trained = subprocess.run([sys.executable, "-c", measure, str(bin_dir / "hf-tuner"), "train", "quickstart", *overrides,
                              "-o", str(tmp_path / "run")], capture_output=True, text=True, timeout=900)
    rc, peak = map(int, trained.stdout.split())
    assert rc == 0, trained.stderr[-2000:]
    assert abs(estimate - peak) <= 0.3 * peak, (estimate, peak)
