"""Multi-process training through accelerate: two real (gloo) processes on the CPU."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from hf_tuner.launch import launch_command


def test_launch_command_uses_real_processes():
    cmd = launch_command(2, ["train", "quickstart"])
    assert cmd[1:3] == ["-m", "accelerate.commands.launch"]
    assert "--multi_gpu" in cmd and "--cpu" not in cmd  # --cpu would silently run one process
    assert cmd[cmd.index("--num_processes") + 1] == "2"
    assert cmd[-4:] == ["-m", "hf_tuner", "train", "quickstart"]


def write_tiny_recipe(tmp_path: Path) -> Path:
    """A tiny BERT (from scratch, with its own WordPiece tokenizer) on an easy word-sentiment task."""
    rng = random.Random(0)
    pos, neg = ["great", "love", "happy", "nice"], ["awful", "hate", "sad", "bad"]
    rows = []
    for i in range(160):
        words = rng.choices(pos if i % 2 else neg, k=3) + rng.choices(["the", "a", "day", "food"], k=2)
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": "positive" if i % 2 else "negative"})
    pd.DataFrame(rows).to_csv(tmp_path / "tiny.csv", index=False)
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(
        "task: text-classification\n"
        "model:\n"
        "  from_scratch: {model_type: bert, hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2,"
        " intermediate_size: 64, max_position_embeddings: 64}\n"
        "  tokenizer: {train: true, type: wordpiece, vocab_size: 120, min_frequency: 1}\n"
        f"data: {{train: '{tmp_path / 'tiny.csv'}', max_length: 16, validation_size: 0.25}}\n"
        "training: {num_train_epochs: 4, learning_rate: 5.0e-3, per_device_train_batch_size: 8,"
        " save_strategy: 'no', eval_strategy: 'no', logging_steps: 5}\n"
    )
    return recipe


@pytest.mark.slow
def test_two_process_training_writes_one_run(tmp_path):
    recipe = write_tiny_recipe(tmp_path)
    out = tmp_path / "run"
    hf_tuner = Path(sys.executable).parent / "hf-tuner"
    env = {**os.environ, "HF_TUNER_CACHE": str(tmp_path / "cache")}
    result = subprocess.run([str(hf_tuner), "train", str(recipe), "--num-processes", "2", "-o", str(out)],
                            capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["processes"] == 2
    # 120 training rows, batch 8 per process, 2 processes, 4 epochs -> 8 steps per epoch
    assert summary["train"]["global_steps"] == 32
    assert summary["metrics"]["accuracy"] > summary["metrics_before"]["accuracy"]
    assert result.stdout.count("Run finished") == 1  # only the main process reports
    from transformers import AutoModelForSequenceClassification

    assert AutoModelForSequenceClassification.from_pretrained(out).config.num_labels == 2
