"""`hf-tuner push` against a loopback fake Hub (tests/fake_hub.py): what arrives, what the card says,
that the received files reproduce the run, and that every failure is one line with the run untouched."""
from __future__ import annotations

import hashlib
import json
import shutil
import socket

import pytest
import yaml

from conftest import HUB_TOKEN as TOKEN, assert_clean_error, write_files
TEXTS = ["I love this airline, best flight ever", "worst service, lost my bags again", "thanks for the upgrade!",
         "delayed for five hours and nobody cared", "smooth landing, happy customer", "my seat was broken"]


def snapshot(folder) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def logits(model_dir_or_model, tokenizer_dir):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = model_dir_or_model
    if not hasattr(model, "forward"):
        model = AutoModelForSequenceClassification.from_pretrained(model_dir_or_model)
    with torch.no_grad():
        return model.eval()(**tok(TEXTS, truncation=True, max_length=32, padding=True, return_tensors="pt")).logits


def assert_no_token(*texts_or_folders):
    for item in texts_or_folders:
        if isinstance(item, str):
            assert TOKEN not in item
        else:
            for p in item.rglob("*"):
                if p.is_file():
                    assert TOKEN.encode() not in p.read_bytes(), p


@pytest.fixture(scope="module")
def run(tiny_lora_run, tmp_path_factory):
    """A copy of the session's tiny LoRA run, evaluated once on a small probe set (so the card has eval results)."""
    from typer.testing import CliRunner

    from hf_tuner.cli import app

    folder = tmp_path_factory.mktemp("push")
    dest = folder / "run"
    shutil.copytree(tiny_lora_run, dest)
    probe = folder / "probe.jsonl"
    probe.write_text("".join(json.dumps({"text": t, "label": ["positive", "negative"][i % 2]}) + "\n" for i, t in enumerate(TEXTS)))
    result = CliRunner().invoke(app, ["eval", str(dest), "--data", str(probe)])
    assert result.exit_code == 0, result.output
    return dest


def test_push_uploads_model_tokenizer_and_card_and_reproduces_predictions(cli, run, hub, tmp_path):
    before = snapshot(run)
    result = cli("push", run, "--repo-id", "me/tiny", "--token", TOKEN, "--endpoint", hub.url)
    assert result.exit_code == 0, result.output
    assert f"{hub.url}/me/tiny" in result.stdout
    assert hub.repos["me/tiny"]["private"] is True  # the recipe default
    files = hub.files("me/tiny")
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "README.md",
                 "config.yaml", "metrics.json"):
        assert name in files, sorted(files)
    assert "adapter_config.json" not in files and "summary.json" not in files
    card = files["README.md"].decode()
    meta = yaml.safe_load(card.split("---")[1])
    probe_acc = json.loads((run / "metrics.json").read_text())["eval"]["probe"]["metrics"]["accuracy"]
    results = {r["dataset"]["name"]: r for r in meta["model-index"][0]["results"]}
    assert {"validation", "probe"} <= set(results)
    assert {m["type"]: m["value"] for m in results["probe"]["metrics"]}["accuracy"] == pytest.approx(probe_acc)
    assert meta["pipeline_tag"] == "text-classification" and "hf-tuner" in meta["tags"]
    assert 'from_pretrained("me/tiny")' in card and "hf-tuner train quickstart-lora" in card and "## Training config" in card
    received = write_files(files, tmp_path / "received")
    assert logits(received, received).argmax(-1).tolist() == logits(run, run).argmax(-1).tolist()
    assert logits(received, received) == pytest.approx(logits(run, run), abs=1e-6)
    assert snapshot(run) == before
    assert_no_token(result.output, run, received)


def test_push_public_to_a_branch_with_a_message(cli, run, hub):
    result = cli("push", run, "--repo-id", "me/tiny", "--public", "--revision", "exp-1", "-m", "first try",
                 "--token", TOKEN, "--endpoint", hub.url)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().endswith(f"{hub.url}/me/tiny/tree/exp-1")
    assert hub.repos["me/tiny"]["private"] is False
    assert hub.commits[-1]["revision"] == "exp-1" and hub.commits[-1]["summary"] == "first try"
    assert "model.safetensors" in hub.files("me/tiny", "exp-1") and hub.files("me/tiny") == {}


def test_merge_lora_checks_the_merge_and_uploads_the_merged_model(cli, run, hub, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    before = snapshot(run)
    result = cli("push", run, "--repo-id", "me/merged", "--merge-lora", "--token", TOKEN, "--endpoint", hub.url)
    assert result.exit_code == 0, result.output
    assert "outputs match the adapter model" in result.stderr
    files = hub.files("me/merged")
    assert "model.safetensors" in files and "adapter_config.json" not in files
    received = write_files(files, tmp_path / "merged")
    base_path = json.loads((run / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"]
    base = AutoModelForSequenceClassification.from_pretrained(base_path, config=AutoModelForSequenceClassification.from_pretrained(run).config)
    adapted = PeftModel.from_pretrained(base, run / "adapter")
    assert logits(received, received) == pytest.approx(logits(adapted, run), abs=1e-5)
    assert snapshot(run) == before


def test_merge_lora_of_an_adapter_whose_base_was_never_saved_is_a_clean_error(cli, run, hub, tmp_path):
    """A LoRA run on a model built from scratch (or from two halves) has no base to load again: peft
    writes base_model_name_or_path as "" or null. --merge-lora says so in one line, pushes nothing."""
    copy = tmp_path / "scratch-lora"
    shutil.copytree(run, copy)
    config = copy / "adapter" / "adapter_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "base_model_name_or_path": None}))
    before = snapshot(copy)
    result = cli("push", copy, "--repo-id", "me/scratch", "--merge-lora", "--token", TOKEN, "--endpoint", hub.url)
    assert_clean_error(result, 2, "base model was built in the run", "without --merge-lora")
    assert not hub.repos.get("me/scratch", {}).get("branches", {}).get("main") and snapshot(copy) == before


def test_adapter_only_uploads_the_adapter_tokenizer_and_card(cli, run, hub, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    result = cli("push", run, "--repo-id", "me/adapter", "--adapter-only", "--token", TOKEN, "--endpoint", hub.url)
    assert result.exit_code == 0, result.output
    files = hub.files("me/adapter")
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "README.md"} <= set(files)
    assert "model.safetensors" not in files
    assert "library_name: peft" in files["README.md"].decode() and "PeftModel.from_pretrained" in files["README.md"].decode()
    received = write_files(files, tmp_path / "adapter")
    base_path = json.loads(files["adapter_config.json"])["base_model_name_or_path"]
    base = AutoModelForSequenceClassification.from_pretrained(base_path, config=AutoModelForSequenceClassification.from_pretrained(run).config)
    assert logits(PeftModel.from_pretrained(base, received), received) == pytest.approx(logits(run, run), abs=1e-5)


def test_token_from_the_environment_and_from_the_login_cache(cli, run, hub, monkeypatch, tmp_path):
    import huggingface_hub.constants as constants

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    result = cli("push", run, "--repo-id", "me/env", "--endpoint", hub.url)
    assert result.exit_code == 0, result.output
    monkeypatch.delenv("HF_TOKEN")
    login = tmp_path / "login" / "token"
    login.parent.mkdir()
    login.write_text(TOKEN)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(login))
    result = cli("push", run, "--repo-id", "me/login", "--endpoint", hub.url)
    assert result.exit_code == 0, result.output
    assert {"me/env", "me/login"} <= set(hub.repos)
    assert_no_token(result.output)


def test_failures_are_one_line_and_leave_the_run_untouched(cli, run, hub, monkeypatch):
    import huggingface_hub.utils._http as http

    monkeypatch.setattr(http.time, "sleep", lambda s: None)  # huggingface_hub retries a 500 five times
    before = snapshot(run)
    assert_clean_error(cli("push", run, "--repo-id", "me/x", "--endpoint", hub.url), 1, "no Hub token", "HF_TOKEN")
    bad = cli("push", run, "--repo-id", "me/x", "--token", "hf_WrongToken0123456789", "--endpoint", hub.url)
    assert_clean_error(bad, 1, "rejected the token", "401")
    assert "hf_WrongToken0123456789" not in bad.output
    hub.fail["create"] = 403
    assert_clean_error(cli("push", run, "--repo-id", "me/x", "--token", TOKEN, "--endpoint", hub.url), 1, "403", "me/x")
    hub.fail = {"commit": 500}
    result = cli("push", run, "--repo-id", "me/x", "--token", TOKEN, "--endpoint", hub.url)
    assert_clean_error(result, 1, "500", "server error")
    assert sum(r["path"].endswith("/commit/main") for r in hub.requests) > 1  # retried, then gave up
    assert hub.files("me/x") == {}
    assert_no_token(result.output)
    assert snapshot(run) == before


def test_unreachable_endpoint(cli, run, hub):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    before = snapshot(run)
    result = cli("push", run, "--repo-id", "me/x", "--token", TOKEN, "--endpoint", f"http://127.0.0.1:{port}")
    assert_clean_error(result, 1, "cannot reach the Hub", f"127.0.0.1:{port}")
    assert_no_token(result.output)
    assert snapshot(run) == before


def test_bad_run_folders_and_flags(cli, run, hub, tmp_path):
    assert_clean_error(cli("push", tmp_path / "missing", "--repo-id", "me/x", "--token", TOKEN), 2, "run folder not found")
    assert_clean_error(cli("push", tmp_path, "--repo-id", "me/x", "--token", TOKEN), 2, "not an hf-tuner run folder")
    assert_clean_error(cli("push", run, "--repo-id", "not a repo", "--token", TOKEN), 2, "not a Hub repository id")
    assert_clean_error(cli("push", run, "--repo-id", "me/x", "--merge-lora", "--adapter-only", "--token", TOKEN), 2, "exclude each other")
    full = tmp_path / "full"
    shutil.copytree(run, full, ignore=shutil.ignore_patterns("adapter"))
    cfg = yaml.safe_load((full / "config.yaml").read_text())
    cfg["method"]["name"] = "full"
    (full / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert_clean_error(cli("push", full, "--repo-id", "me/x", "--adapter-only", "--token", TOKEN), 2, "no LoRA adapter")
    assert hub.repos == {}


def test_offline_mode_is_a_clean_error(cli, run, hub, monkeypatch):
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert_clean_error(cli("push", run, "--repo-id", "me/x", "--token", TOKEN, "--endpoint", hub.url), 1, "HF_HUB_OFFLINE")


def test_hub_push_in_the_recipe_pushes_after_training(cli, run, hub, monkeypatch, tmp_path):
    """`hub.push: true`: `train` pushes once the run is saved; a failed push exits 1 and keeps the run."""
    import hf_tuner.run

    pushed = tmp_path / "pushed"
    shutil.copytree(run, pushed)
    cfg = yaml.safe_load((pushed / "config.yaml").read_text())
    cfg["hub"] = {"push": True, "repo_id": "me/auto", "endpoint": hub.url, "private": False}
    (pushed / "config.yaml").write_text(yaml.safe_dump(cfg))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(cfg))
    from hf_tuner.rundir import read_summary

    summary = read_summary(pushed).set(output_dir=str(pushed))
    monkeypatch.setattr(hf_tuner.run, "train", lambda *a, **k: summary)  # the run is already trained
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    result = cli("train", recipe)
    assert result.exit_code == 0, result.output
    assert "pushed to" in result.stdout and "me/auto" in result.stdout
    assert "model.safetensors" in hub.files("me/auto") and hub.repos["me/auto"]["private"] is False
    hub.fail["create"] = 500
    before = snapshot(pushed)
    result = cli("train", recipe)
    assert_clean_error(result, 1, "training finished", "is saved, but the push failed", "500")
    assert "Run finished" in result.stdout
    assert snapshot(pushed) == before


# ------------------------------------------------------------------------------------------------
# --merge-lora for the other tasks, on LoRA run folders assembled without training (random LoRA
# weights, so merged and unmerged outputs differ unless the merge is right)


def lora_run_folder(root, task: str, base_model, processing):
    """A finished LoRA run folder: `base_model` saved as the base, LoRA (non-zero B) saved by hf-tuner."""
    import torch

    from hf_tuner.config import save_config
    from hf_tuner.recipes import build_config
    from hf_tuner.modeling import apply_lora
    from hf_tuner.rundir import save_model
    from hf_tuner.tasks import get_task

    base_dir = root / "base"
    base_model.save_pretrained(base_dir)
    processing.save_pretrained(base_dir)
    cfg = build_config({"task": task, "model": {"name_or_path": str(base_dir)}, "data": {"train": "unused.jsonl"},
                        "method": {"name": "lora"}})
    family = get_task(task).family
    model = apply_lora(type(base_model).from_pretrained(base_dir), cfg.method.lora, family.peft_task_type, list(family.lora_modules_to_save))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    run = root / "run"
    run.mkdir()
    save_model(model, processing, run, save_merged=True)
    save_config(cfg, run / "config.yaml")
    (run / "summary.json").write_text(json.dumps({"status": "completed", "output_dir": str(run), "task": task,
                                                   "command": f"hf-tuner train {task}-recipe"}))
    return run


def test_merge_lora_for_an_image_classifier(cli, hub, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoConfig, ViTForImageClassification

    from hf_tuner.tasks.parts.images import build_image_processor

    config = AutoConfig.for_model("vit", image_size=28, patch_size=7, num_channels=1, hidden_size=32, num_hidden_layers=1,
                                  num_attention_heads=2, intermediate_size=64, num_labels=3)
    torch.manual_seed(0)
    run = lora_run_folder(tmp_path, "image-classification", ViTForImageClassification(config), build_image_processor(28, 1))
    before = snapshot(run)
    result = cli("push", run, "--repo-id", "me/vit", "--merge-lora", "--token", TOKEN, "--endpoint", hub.url)
    assert result.exit_code == 0, result.output
    assert "outputs match the adapter model" in result.stderr
    received = write_files(hub.files("me/vit"), tmp_path / "received")
    assert (received / "preprocessor_config.json").is_file() and not (received / "adapter_config.json").exists()
    pixels = torch.rand(2, 1, 28, 28)
    adapted = PeftModel.from_pretrained(ViTForImageClassification.from_pretrained(tmp_path / "base"), run / "adapter").eval()
    plain = ViTForImageClassification.from_pretrained(tmp_path / "base").eval()
    with torch.no_grad():
        want, got = adapted(pixel_values=pixels).logits, ViTForImageClassification.from_pretrained(received).eval()(pixel_values=pixels).logits
        assert not torch.allclose(plain(pixel_values=pixels).logits, want, atol=1e-3)  # the adapter matters
    assert got == pytest.approx(want, abs=1e-4)
    assert snapshot(run) == before


def test_merge_lora_and_adapter_only_for_seq2seq(cli, hub, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoConfig, AutoTokenizer, BartForConditionalGeneration

    from hf_tuner.modeling import train_tokenizer

    tok = train_tokenizer(TEXTS * 20, "byte-level-bpe", 400, 1, "encoder-decoder")
    config = AutoConfig.for_model("bart", vocab_size=len(tok), d_model=32, encoder_layers=1, decoder_layers=1,
                                  encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                                  max_position_embeddings=64, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                                  eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    run = lora_run_folder(tmp_path, "seq2seq", BartForConditionalGeneration(config), tok)
    result = cli("push", run, "--repo-id", "me/bart", "--merge-lora", "--token", TOKEN, "--endpoint", hub.url)
    assert result.exit_code == 0, result.output
    merged = write_files(hub.files("me/bart"), tmp_path / "merged")
    result = cli("push", run, "--repo-id", "me/bart-adapter", "--adapter-only", "--token", TOKEN, "--endpoint", hub.url)
    assert result.exit_code == 0, result.output
    adapter = write_files(hub.files("me/bart-adapter"), tmp_path / "adapter")
    assert "model.safetensors" not in hub.files("me/bart-adapter") and "AutoModelForSeq2SeqLM" in (adapter / "README.md").read_text()
    enc = AutoTokenizer.from_pretrained(merged)(TEXTS[:2], padding=True, return_tensors="pt")
    inputs = {**enc, "decoder_input_ids": enc["input_ids"][:, :5]}
    with torch.no_grad():
        want = PeftModel.from_pretrained(BartForConditionalGeneration.from_pretrained(tmp_path / "base"), adapter).eval()(**inputs).logits
        got = BartForConditionalGeneration.from_pretrained(merged).eval()(**inputs).logits
    assert got == pytest.approx(want, abs=1e-4)
