"""Task `token-classification`: CoNLL reading, sub-word label alignment, entity metrics, the bad inputs
a user hits first, and a tiny tagger trained end to end through every verb (validate, plan, train,
predict, eval, push), full and LoRA."""
from __future__ import annotations

import json
import random

import pytest
import yaml

from conftest import assert_clean_error, save_tiny_bert, write_files

PEOPLE = ["anna", "bob", "carla", "dmitri", "emma", "farid", "greta", "hiro", "ines", "jonas"]
CITIES = [["paris"], ["berlin"], ["new", "york"], ["tokyo"], ["los", "angeles"], ["rome"], ["san", "diego"], ["oslo"]]
FILLER = "yesterday today we saw met called visited in at the a with and from later".split()


def tagged_sentences(n: int, seed: int) -> list[dict]:
    """Sentences of filler words, one person (B-PER) and one city (B-LOC I-LOC...), shuffled in."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        parts = [([w], ["O"]) for w in rng.sample(FILLER, 4)]
        parts.append(([rng.choice(PEOPLE)], ["B-PER"]))
        city = rng.choice(CITIES)
        parts.append((city, ["B-LOC"] + ["I-LOC"] * (len(city) - 1)))
        rng.shuffle(parts)
        rows.append({"tokens": [w for words, _ in parts for w in words], "ner_tags": [t for _, tags in parts for t in tags]})
    return rows


@pytest.fixture(scope="module")
def ner_setup(tmp_path_factory):
    """A tiny BERT (1 layer, 32 wide) with a word-level vocabulary, and tagged sentences as JSONL."""
    from hf_tuner.modeling import train_tokenizer

    root = tmp_path_factory.mktemp("ner")
    train, val = tagged_sentences(240, 0), tagged_sentences(60, 1)
    for name, rows in (("train", train), ("val", val)):
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    texts = [" ".join(r["tokens"]) for r in train] * 3
    tokenizer = train_tokenizer(texts, "wordpiece", 200, 1, "encoder")
    import torch

    torch.manual_seed(0)
    save_tiny_bert(root / "base", tokenizer, layers=1, positions=64)
    recipe = {"task": "token-classification", "model": {"name_or_path": str(root / "base")},
              "data": {"train": str(root / "train.jsonl"), "validation": str(root / "val.jsonl"), "max_length": 32},
              "training": {"learning_rate": 3e-3, "num_train_epochs": 6, "per_device_train_batch_size": 16,
                           "save_strategy": "no", "eval_strategy": "no", "seed": 0}}
    (root / "ner.yaml").write_text(yaml.safe_dump(recipe))
    return root


# ------------------------------------------------------------------------------ unit: reading and aligning


def test_conll_files_are_read_in_four_and_two_columns(tmp_path):
    from hf_tuner.data import read_conll

    four = tmp_path / "a.conll"
    four.write_text("-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nPeter NNP B-NP B-PER\n"
                    "Blackburn NNP I-NP I-PER\n\n\n")
    ds = read_conll(four, "a.conll")
    assert ds["tokens"] == [["EU", "rejects"], ["Peter", "Blackburn"]]
    assert ds["ner_tags"] == [["B-ORG", "O"], ["B-PER", "I-PER"]]
    two = tmp_path / "b.bio"  # WNUT's file: tab-separated, and a line holding only a tab between tweets
    two.write_text("Empire\tB-facility\nState\tI-facility\n\t\n@paul\tO\n")
    assert read_conll(two, "b.bio")["tokens"] == [["Empire", "State"], ["@paul"]]


def test_label_alignment_first_subword_or_all_subwords():
    from hf_tuner.tasks.token_classification import IGNORE, align_labels

    names = ["O", "B-LOC", "I-LOC"]
    # [CLS] new yo ##rk is [SEP]: words 0, 1, 1, 2
    word_ids = [None, 0, 1, 1, 2, None]
    tags = [1, 2, 0]  # new=B-LOC york=I-LOC is=O
    assert align_labels(word_ids, tags, names, False) == [IGNORE, 1, 2, IGNORE, 0, IGNORE]
    # label_all_tokens: the later sub-word gets the word's tag, B- turned into I-
    assert align_labels([None, 0, 0, 1, None], [1, 0], names, True) == [IGNORE, 1, 2, 0, IGNORE]


def test_entity_metrics_and_tag_scheme_by_hand():
    from hf_tuner.metrics import entity_metrics, tag_scheme

    refs = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-LOC", "I-LOC"]]
    preds = [["B-PER", "I-PER", "O", "O"], ["O", "B-LOC", "I-LOC"]]
    m = entity_metrics(preds, refs)
    # 3 gold entities, 2 predicted, both right: P = 1, R = 2/3, F1 = 0.8; 6 of 7 tokens right
    assert (m["precision"], m["recall"], m["f1"]) == pytest.approx((1.0, 2 / 3, 0.8))
    assert m["accuracy"] == pytest.approx(6 / 7)
    assert m["per_type"]["LOC"]["recall"] == pytest.approx(0.5) and m["per_type"]["PER"]["f1"] == 1.0
    assert tag_scheme(["B-PER", "I-PER", "O"]) == "IOB2" and tag_scheme(["I-PER", "O", "I-LOC"]) == "IOB1"


def test_entities_are_grouped_with_character_offsets():
    from hf_tuner.tasks.token_classification import group_entities

    text = "anna flew to new york"
    words = [("B-PER", 0.9, 0, 4), ("O", 0.8, 5, 9), ("O", 0.7, 10, 12), ("B-LOC", 0.6, 13, 16), ("I-LOC", 0.4, 17, 21)]
    assert group_entities(text, words) == [
        {"text": "anna", "type": "PER", "score": 0.9, "start": 0, "end": 4},
        {"text": "new york", "type": "LOC", "score": 0.5, "start": 13, "end": 21}]


# ------------------------------------------------------------------------------ bad input


def test_bad_token_data_gets_one_line_that_names_the_row(cli, ner_setup, tmp_path):
    recipe = ner_setup / "ner.yaml"
    short = tmp_path / "short.jsonl"
    short.write_text(json.dumps({"tokens": ["a", "b"], "ner_tags": ["O"]}) + "\n" + json.dumps({"tokens": ["c"], "ner_tags": ["O"]}) + "\n")
    assert_clean_error(cli("validate", recipe, f"data.train={short}", f"data.validation={short}"), 2,
                       "row 0 of the train data has 2 words but 1 tags")
    assert_clean_error(cli("validate", recipe, "data.labels=[O,B-PER,I-PER]"), 2, "tag 'B-LOC'", "not in data.labels")
    ids = tmp_path / "ids.jsonl"
    ids.write_text(json.dumps({"tokens": ["a", "b"], "ner_tags": [0, 1]}) + "\n")
    assert_clean_error(cli("validate", recipe, f"data.train={ids}", f"data.validation={ids}"), 2, "ids without names",
                       "data.labels")
    one = tmp_path / "one.conll"
    one.write_text("EU B-ORG\nrejects\n")
    assert_clean_error(cli("validate", recipe, f"data.train={one}", f"data.validation={one}"), 2,
                       "line 2 has one column")


# ------------------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def ner_run(ner_setup):
    from typer.testing import CliRunner

    from hf_tuner.cli import app

    out = ner_setup / "run"
    result = CliRunner().invoke(app, ["train", str(ner_setup / "ner.yaml"), "-o", str(out)])
    assert result.exit_code == 0, (result.exception, result.output[-3000:])
    return out


@pytest.mark.slow
def test_a_tiny_tagger_learns_entities(ner_run):
    summary = json.loads((ner_run / "summary.json").read_text())
    before, after = summary["metrics_before"]["f1"], summary["metrics"]["f1"]
    # an untrained head tags at random (about chance: 0.21 here); the pattern (names and cities from
    # fixed lists) is easy, so a trained tagger finds most of the 120 entities (one SE is about 0.04)
    assert after > 0.8 and after > before + 0.5, (before, after)
    assert summary["labels"] == ["O", "B-LOC", "I-LOC", "B-PER"]  # people are one word: no I-PER
    assert any("IOB2 scheme" in n for n in summary["notes"])


@pytest.mark.slow
def test_tagger_predicts_entities_and_loads_in_the_pipeline(cli, ner_run):
    result = cli("predict", ner_run, "yesterday anna visited new york", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout.strip())
    assert {"text": "anna", "type": "PER"}.items() <= out["entities"][0].items()
    assert {"text": "new york", "type": "LOC", "start": 23, "end": 31}.items() <= out["entities"][1].items()
    from transformers import pipeline

    tagged = pipeline("token-classification", model=str(ner_run), aggregation_strategy="first")("emma met bob in oslo")
    assert [(e["entity_group"], e["word"]) for e in tagged] == [("PER", "emma"), ("PER", "bob"), ("LOC", "oslo")]


@pytest.mark.slow
def test_tagger_eval_reports_per_type_and_plan_counts_tokens(cli, ner_run, ner_setup):
    result = cli("eval", ner_run)
    assert result.exit_code == 0, result.output
    report = json.loads((ner_run / "eval" / "validation.json").read_text())
    summary = json.loads((ner_run / "summary.json").read_text())
    assert report["metrics"]["f1"] == pytest.approx(summary["metrics"]["f1"], abs=1e-6)
    assert set(report["per_class"]) == {"PER", "LOC"} and report["per_class"]["PER"]["support"] == 60
    assert "PER" in result.stdout and "LOC" in result.stdout
    result = cli("plan", ner_setup / "ner.yaml", "--json")
    assert result.exit_code == 0, result.output
    lengths = json.loads(result.stdout)["lengths"][0]
    # [CLS] + 6 or 7 words (one per token: the vocabulary is word-level) + [SEP]
    assert lengths["name"] == "tokens" and lengths["max"] <= 9 and lengths["p50"] >= 8


@pytest.mark.slow
def test_tagger_with_lora_trains_the_classifier_fully(cli, ner_setup, tmp_path):
    out = tmp_path / "lora"
    result = cli("train", ner_setup / "ner.yaml", "method.name=lora", "method.lora.target_modules=[query,key,value,dense]",
                 "training.learning_rate=1e-2", "training.num_train_epochs=10", "-o", out)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["trainable_params"] < summary["total_params"] / 5
    assert summary["metrics"]["f1"] > summary["metrics_before"]["f1"] + 0.3
    config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert config["task_type"] == "TOKEN_CLS" and "classifier" in (config["modules_to_save"] or [])


@pytest.mark.slow
def test_tagger_pushes_with_its_pipeline_tag(cli, ner_run, hub, monkeypatch, tmp_path):
    from conftest import HUB_TOKEN

    monkeypatch.setenv("HF_TOKEN", HUB_TOKEN)
    result = cli("push", ner_run, "--repo-id", "me/tagger", "--endpoint", hub.url)
    assert result.exit_code == 0, result.output
    files = write_files(hub.files("me/tagger"), tmp_path / "pushed")
    card = (files / "README.md").read_text()
    assert "pipeline_tag: token-classification" in card and "name: f1" in card


# ------------------------------------------------------------------------------ resume and two processes


def interrupted_then_resumed(recipe, out, *overrides: str) -> dict:
    """SIGTERM at checkpoint 10 (a new process), then `--resume` in this one: the resumed summary."""
    import signal
    import sys
    from pathlib import Path
    import subprocess
    import os

    from test_resume import finish, stop_at_checkpoint

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    args = [str(recipe), *overrides, "training.save_strategy=steps", "training.save_steps=10"]
    proc = subprocess.Popen([str(Path(sys.executable).parent / "hf-tuner"), "train", *args, "-o", str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    code, err = stop_at_checkpoint(proc, out, 10, signal.SIGTERM)
    assert code == 128 + signal.SIGTERM, err[-2000:]
    return finish(Path(args[0]), out, *args[1:], "--resume")


@pytest.mark.slow
def test_tagger_resumes_and_trains_in_two_processes(ner_setup, ner_run, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    whole = json.loads((ner_run / "summary.json").read_text())
    resumed = interrupted_then_resumed(ner_setup / "ner.yaml", tmp_path / "resumed")
    assert resumed["resumed"] and resumed["train"]["global_steps"] == whole["train"]["global_steps"]
    assert resumed["metrics"]["f1"] == pytest.approx(whole["metrics"]["f1"], abs=1e-4)
    assert resumed["metrics_before"]["f1"] == pytest.approx(whole["metrics_before"]["f1"])
    out = tmp_path / "two"
    result = subprocess.run([str(Path(sys.executable).parent / "hf-tuner"), "train", str(ner_setup / "ner.yaml"), "-n", "2",
                             "-o", str(out)], capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["distributed"] == "MULTI_CPU"
    assert summary["metrics"]["f1"] > 0.6  # half the steps of the single-process run, and still learning
