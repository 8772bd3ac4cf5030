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

from hf_tuner.launch import list_profiles, resolve_launch

from conftest import assert_clean_error

ROOT = Path(__file__).resolve().parent.parent


def accelerate_env(cmd: list[str]) -> tuple[object, dict[str, str]]:
    """What accelerate's own launcher makes of a generated command: its parsed arguments (config
    file merged in) and the environment its processes would start with. Nothing is started."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    assert cmd[1:3] == ["-m", "accelerate.commands.launch"]
    args, defaults, _ = _validate_launch_command(launch_command_parser().parse_args(cmd[3:]))
    if args.use_deepspeed:
        args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)  # as launch_command does
        return args, prepare_deepspeed_cmd_env(args)[1]
    return args, prepare_multi_gpu_env(args)


def test_every_profile_becomes_the_launch_accelerate_would_run():
    expected = {  # profile -> environment accelerate gives the processes (what makes the Trainer shard)
        "ddp": {},
        "fsdp": {"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2", "FSDP_STATE_DICT_TYPE": "FULL_STATE_DICT"},
        "deepspeed-zero2": {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "2"},
        "deepspeed-zero3": {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3",
                            "ACCELERATE_DEEPSPEED_ZERO3_INIT": "true"},
    }
    assert sorted(p.name for p in list_profiles()) == sorted(expected)
    for name, env_expected in expected.items():
        cmd = resolve_launch(None, profile=name, num_processes=4).command(["train", "quickstart", "training.seed=1"])
        assert cmd[-5:] == ["-m", "hf_tuner", "train", "quickstart", "training.seed=1"]
        args, env = accelerate_env(cmd)
        assert args.num_processes == 4 and args.num_machines == 1 and not args.cpu, name
        assert args.multi_gpu == (name == "ddp") and args.use_fsdp == (name == "fsdp"), name
        assert args.use_deepspeed == name.startswith("deepspeed"), name
        assert env["ACCELERATE_MIXED_PRECISION"] == "no"  # precision comes from the recipe, not the profile
        for key, value in env_expected.items():
            assert env.get(key) == value, (name, key, env.get(key))


def test_readme_two_machine_line_generates_a_two_node_launch(cli, monkeypatch):
    line = next(l for l in (ROOT / "README.md").read_text().splitlines() if l.startswith("hf-tuner train") and "--num-machines 2" in l)
    argv = line.split()[1:]
    calls = []
    monkeypatch.setattr("hf_tuner.launch.subprocess.call", lambda cmd, env: calls.append((cmd, env)) or 0)
    monkeypatch.setattr("hf_tuner.launch.Launch.problem", lambda self: None)  # as on a machine with GPUs
    result = cli(*argv)  # the real `train` command: recipe checked, then handed to the launcher
    assert result.exit_code == 0, result.output
    (cmd, env_given), = calls
    assert env_given["OMP_NUM_THREADS"]  # accelerate would set 1 and starve a CPU run
    args, env = accelerate_env(cmd)
    # 16 processes over 2 machines: 8 per node, this node rank 0, rendezvous at the main machine
    assert (args.nnodes, args.nproc_per_node, args.node_rank) == ("2", "8", 0)
    assert args.rdzv_endpoint == "10.0.0.1:29500" if hasattr(args, "rdzv_endpoint") else args.master_addr == "10.0.0.1"
    assert env["ACCELERATE_USE_FSDP"] == "true"


def test_validate_reports_profile_processes_and_global_batch(cli):
    result = cli("validate", "quickstart", "--num-processes", "4", "training.gradient_accumulation_steps=2")
    assert result.exit_code == 0, result.output
    assert "profile ddp (MULTI_GPU; sharded: nothing)" in result.stdout
    assert "128 = 16 per device x 2 accumulation x 4 processes" in result.stdout  # the recipe's batch is 16
    assert "accelerate launch --config_file" in result.stdout and "--num_processes 4" in result.stdout


def test_launch_flags_are_checked(cli, tmp_path):
    assert_clean_error(cli("train", "quickstart", "--profile", "fdsp"), 2, "no launch profile named 'fdsp'", "fsdp")
    assert_clean_error(cli("train", "quickstart", "-n", "3", "--num-machines", "2", "--main-process-ip", "h"), 2,
                       "whole number per machine")
    assert_clean_error(cli("train", "quickstart", "-n", "4", "--num-machines", "2"), 2, "--main-process-ip")
    assert_clean_error(cli("train", "quickstart", "--machine-rank", "1"), 2, "--num-machines")
    bad = tmp_path / "bad.yaml"
    bad.write_text("num_processes: 2\n")
    assert_clean_error(cli("train", "quickstart", "--profile", str(bad)), 2, "not an accelerate config file")


def test_profiles_list_show_copy(cli, tmp_path):
    listing = cli("profiles", "list")
    assert listing.exit_code == 0 and "deepspeed-zero3" in listing.stdout and "weights+gradients+optimizer" in listing.stdout
    assert "fsdp_version: 2" in cli("profiles", "show", "fsdp").stdout
    assert cli("profiles", "copy", "fsdp", str(tmp_path)).exit_code == 0
    copied = tmp_path / "fsdp.yaml"
    assert copied.read_text() == (ROOT / "hf_tuner" / "profiles" / "fsdp.yaml").read_text()
    assert_clean_error(cli("profiles", "copy", "fsdp", str(tmp_path)), 2, "already exists")
    assert resolve_launch(None, profile=str(copied), num_processes=2).profile.distributed_type == "FSDP"


def test_sharded_profiles_are_refused_without_gpus(cli):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has GPUs")
    assert_clean_error(cli("train", "quickstart", "--profile", "fsdp", "-n", "2"), 2, "needs GPUs", "--profile ddp")


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
    assert summary["status"] == "completed" and summary["processes"] == 2 and summary["distributed"] == "MULTI_CPU"
    # an untrained 2-class model scores about ln 2 = 0.693: a loss scaled by the process count would not
    assert abs(summary["metrics_before"]["loss"] - 0.693) < 0.05, summary["metrics_before"]
    # the processes trained one model (DDP), so the saved weights reproduce the run's own metrics; had
    # each process trained its own copy, the run's metrics would average two models the folder lacks
    evaluated = subprocess.run([str(hf_tuner), "eval", str(out)], capture_output=True, text=True,
                               timeout=300, env=env)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    loss = float(evaluated.stdout.split("loss=")[1].split()[0])
    assert abs(loss - summary["metrics"]["loss"]) < 2e-3, (loss, summary["metrics"])
    # 120 training rows, batch 8 per process, 2 processes, 4 epochs -> 8 steps per epoch
    assert summary["train"]["global_steps"] == 32
    assert summary["metrics"]["accuracy"] > summary["metrics_before"]["accuracy"]
    assert result.stdout.count("Run finished") == 1  # only the main process reports
    from transformers import AutoModelForSequenceClassification

    assert AutoModelForSequenceClassification.from_pretrained(out).config.num_labels == 2


def test_a_recipe_names_its_launch_and_the_flags_win(cli):
    result = cli("validate", "quickstart", "launch.profile=ddp", "launch.num_processes=2")
    assert result.exit_code == 0, result.output
    assert "profile ddp" in result.stdout and "32 = 16 per device x 1 accumulation x 2 processes" in result.stdout
    # no deepspeed (or no GPU) here: validate refuses the launch as train would, before loading anything
    assert_clean_error(cli("validate", "quickstart", "launch.profile=deepspeed-zero2", "launch.num_processes=2"), 2,
                       "profile deepspeed-zero2 needs")
    flagged = cli("validate", "quickstart", "launch.profile=fsdp", "--profile", "ddp", "-n", "3")
    assert "profile ddp" in flagged.stdout and "x 3 processes" in flagged.stdout
    assert_clean_error(cli("validate", "quickstart", "launch.profil=fsdp"), 2, "launch.profil", "profile")
