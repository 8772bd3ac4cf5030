"""Task `question-answering`: SQuAD EM / F1 by hand, the nested SQuAD JSON, windows over long contexts,
post-processing (n-best, v2's null answer), the bad inputs a user hits first, and a tiny extractive
model trained end to end through every verb (validate, plan, train, predict, eval, push), full and LoRA."""
from __future__ import annotations

import json
import random

import pytest
import yaml

from conftest import assert_clean_error, save_tiny_bert, write_files

COLORS = ["red", "blue", "green", "yellow", "purple", "orange", "black", "white"]
FILLER = "the a cat dog house car tree sky was is big small old new very near far my your".split()


def color_questions(n: int, seed: int, unanswerable: float = 0.25) -> list[dict]:
    """Filler contexts with one colour word in them (the answer to "which colour ?"), or none (no
    answer, SQuAD v2 style)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = [rng.choice(FILLER) for _ in range(rng.randint(6, 12))]
        answers = {"text": [], "answer_start": []}
        if rng.random() >= unanswerable:
            color = rng.choice(COLORS)
            words.insert(rng.randrange(len(words) + 1), color)
            context = " ".join(words)
            start = len(" ".join(words[:words.index(color)])) + (1 if words.index(color) else 0)
            answers = {"text": [color], "answer_start": [start]}
        rows.append({"id": f"q{seed}-{i}", "question": "which colour ?", "context": " ".join(words), "answers": answers})
    return rows


@pytest.fixture(scope="module")
def qa_setup(tmp_path_factory):
    import torch

    from hf_tuner.modeling import train_tokenizer

    root = tmp_path_factory.mktemp("qa")
    train, val = color_questions(300, 0), color_questions(80, 1)
    for name, rows in (("train", train), ("val", val)):
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    tokenizer = train_tokenizer([r["context"] + " which colour ?" for r in train] * 3, "wordpiece", 200, 1, "encoder")
    torch.manual_seed(0)
    save_tiny_bert(root / "base", tokenizer, layers=1, positions=64)
    recipe = {"task": "question-answering", "model": {"name_or_path": str(root / "base")},
              "data": {"train": str(root / "train.jsonl"), "validation": str(root / "val.jsonl"),
                       "version_2_with_negative": True, "max_length": 48, "doc_stride": 16},
              "training": {"learning_rate": 3e-3, "num_train_epochs": 8, "per_device_train_batch_size": 16,
                           "save_strategy": "no", "eval_strategy": "no", "seed": 0}}
    (root / "qa.yaml").write_text(yaml.safe_dump(recipe))
    return root


# ------------------------------------------------------------------------------ unit


def test_squad_em_and_f1_by_hand():
    from hf_tuner.metrics import normalize_answer, squad_metrics

    assert normalize_answer("The  Eiffel-Tower, in Paris!") == "eiffeltower in paris"
    assert normalize_answer("an apple a day") == "apple day"
    v1 = squad_metrics({"1": "the Eiffel Tower", "2": "in Paris France"}, {"1": ["Eiffel Tower"], "2": ["Paris", "France"]})
    # 1: exact after normalisation; 2: EM 0, F1 best over golds = 2*(1/3*1)/(1/3+1) = 0.5
    assert v1 == pytest.approx({"exact_match": 50.0, "f1": 75.0})
    v2 = squad_metrics({"1": "", "2": "blue", "3": "x"}, {"1": [], "2": ["blue"], "3": []}, version_2=True)
    # an unanswerable question scores 1 only for an empty prediction
    assert v2 == pytest.approx({"exact_match": 200 / 3, "f1": 200 / 3, "HasAns_exact": 100.0, "HasAns_f1": 100.0,
                                "HasAns_total": 1, "NoAns_exact": 50.0, "NoAns_f1": 50.0, "NoAns_total": 2})


def test_the_nested_squad_json_is_detected(cli, qa_setup, tmp_path):
    squad = {"version": "v2.0", "data": [{"title": "Colours", "paragraphs": [
        {"context": "the sky was blue", "qas": [
            {"id": "a", "question": "which colour ?", "answers": [{"text": "blue", "answer_start": 12}]},
            {"id": "b", "question": "which car ?", "answers": [], "is_impossible": True}]},
        {"context": "my red car", "qas": [{"id": "c", "question": "which colour ?", "answers": [{"text": "red", "answer_start": 3}]}]}]}]}
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(squad))
    result = cli("validate", qa_setup / "qa.yaml", f"data.train={path}", f"data.validation={path}")
    assert result.exit_code == 0, result.output
    assert '"train": 3' in result.stdout
    assert_clean_error(cli("validate", qa_setup / "qa.yaml", f"data.train={path}", f"data.validation={path}",
                           "data.version_2_with_negative=false"), 2, "row 1 of the train data has no answer",
                       "version_2_with_negative")


def test_an_answer_in_the_second_window_is_found(qa_setup):
    from transformers import AutoTokenizer

    from hf_tuner.config import DataConfig  # noqa: F401
    from hf_tuner.tasks.question_answering import QuestionAnsweringData, window_features

    tokenizer = AutoTokenizer.from_pretrained(qa_setup / "base")
    words = ["the", "cat"] * 12 + ["red"] + ["dog"] * 3
    context = " ".join(words)
    d = QuestionAnsweringData(train="x", max_length=20, doc_stride=6)
    batch = {"question": ["which colour ?"], "context": [context], "example_index": [0],
             "answers": [{"text": ["red"], "answer_start": [context.index("red")]}]}
    out = window_features(tokenizer, batch, d)
    assert len(out["input_ids"]) >= 2
    found = [i for i, (s, e) in enumerate(zip(out["start_positions"], out["end_positions"])) if s]
    assert found and found[0] >= 1  # not in the first window: it points at CLS (0) there
    i = found[0]
    assert tokenizer.decode(out["input_ids"][i][out["start_positions"][i]:out["end_positions"][i] + 1]) == "red"
    assert out["start_positions"][0] == out["end_positions"][0] == 0


def test_post_processing_picks_spans_and_the_null_answer():
    import datasets

    from hf_tuner.tasks.question_answering import QuestionAnsweringData, best_answers

    examples = datasets.Dataset.from_dict({"example_index": [0], "context": ["the red car"]})
    # tokens: [CLS] q [SEP] the red car [SEP]; context offsets on positions 3..5
    features = {"example_index": [0], "offset_mapping": [[None, None, None, [0, 3], [4, 7], [8, 11], None]]}
    start = [[1.0, 0, 0, 0, 5.0, 1.0, 0]]
    end = [[1.0, 0, 0, 0, 4.0, 2.0, 0]]
    v1 = QuestionAnsweringData(train="x")
    best, nbest = best_answers(examples, features, start, end, v1)
    assert best[0]["text"] == "red" and (best[0]["start"], best[0]["end"]) == (4, 7)
    assert nbest[0][0]["text"] == "red" and nbest[0][1]["text"] == "red car"  # 5+2 after 5+4
    v2 = QuestionAnsweringData(train="x", version_2_with_negative=True, null_score_diff_threshold=0.0)
    assert best_answers(examples, features, start, end, v2)[0][0]["text"] == "red"  # null 2 < span 9
    loud_null = [[20.0, 0, 0, 0, 5.0, 1.0, 0]]
    assert best_answers(examples, features, loud_null, end, v2)[0][0]["text"] == ""  # null 21 > span 9
    lenient = QuestionAnsweringData(train="x", version_2_with_negative=True, null_score_diff_threshold=20.0)
    assert best_answers(examples, features, loud_null, end, lenient)[0][0]["text"] == "red"


def test_bad_answers_are_counted_and_named(cli, qa_setup, tmp_path):
    rows = color_questions(5, 3, unanswerable=0.0)
    rows[2]["answers"]["answer_start"] = [0]
    rows[4]["answers"]["answer_start"] = [1]
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert_clean_error(cli("validate", qa_setup / "qa.yaml", f"data.train={path}", f"data.validation={path}"), 2,
                       "2 answer(s) in the train data do not match their context", "first: row 2")


# ------------------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def qa_run(qa_setup):
    from typer.testing import CliRunner

    from hf_tuner.cli import app

    out = qa_setup / "run"
    result = CliRunner().invoke(app, ["train", str(qa_setup / "qa.yaml"), "-o", str(out)])
    assert result.exit_code == 0, (result.exception, result.output[-3000:])
    return out


@pytest.mark.slow
def test_a_tiny_reader_learns_to_extract_and_abstain(qa_run):
    summary = json.loads((qa_run / "summary.json").read_text())
    before, after = summary["metrics_before"], summary["metrics"]
    # untrained: a random span or the null answer; about a quarter of the questions have no answer,
    # so always abstaining would score 25: the trained model must find the colours as well
    assert before["f1"] < 40 and after["f1"] > 80, (before, after)
    assert after["HasAns_f1"] > 80 and after["NoAns_total"] + after["HasAns_total"] == 80


@pytest.mark.slow
def test_reader_predicts_spans_and_no_answer(cli, qa_run, tmp_path):
    context = tmp_path / "context.txt"
    context.write_text("my old car was very green near the house")
    result = cli("predict", qa_run, "--context", context, "which colour ?", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout.strip())
    assert out["answer"] == "green" and (out["start"], out["end"]) == (20, 25)
    result = cli("predict", qa_run, "--context", "the big dog was near my house", "which colour ?")
    assert result.exit_code == 0, result.output
    assert "no answer" in result.stdout
    assert_clean_error(cli("predict", qa_run, "which colour ?"), 2, "--context")


@pytest.mark.slow
def test_reader_eval_writes_predictions_and_plan_counts_windows(cli, qa_run, qa_setup):
    result = cli("eval", qa_run)
    assert result.exit_code == 0, result.output
    report = json.loads((qa_run / "eval" / "validation.json").read_text())
    summary = json.loads((qa_run / "summary.json").read_text())
    assert report["metrics"]["f1"] == pytest.approx(summary["metrics"]["f1"], abs=1e-4)
    predictions = json.loads((qa_run / "eval" / "validation.predictions.json").read_text())
    nbest = json.loads((qa_run / "eval" / "validation.nbest_predictions.json").read_text())
    assert len(predictions) == 80 and set(predictions) == set(nbest)
    assert all(0 <= c["probability"] <= 1 for c in next(iter(nbest.values())))
    from transformers import AutoModelForQuestionAnswering

    assert AutoModelForQuestionAnswering.from_pretrained(qa_run).config.architectures == ["BertForQuestionAnswering"]
    result = cli("plan", qa_setup / "qa.yaml", "data.max_length=24", "data.doc_stride=4", "--json")
    assert result.exit_code == 0, result.output
    planned = json.loads(result.stdout)
    # contexts of 6-13 words + "which colour ?" + 3 specials: up to 20 tokens; windows of 24 hold every row
    assert planned["lengths"][0]["max"] <= 20 and planned.get("training_rows_estimated", 300) == 300


@pytest.mark.slow
def test_reader_with_lora_trains_the_qa_head_fully(cli, qa_setup, tmp_path):
    out = tmp_path / "lora"
    result = cli("train", qa_setup / "qa.yaml", "method.name=lora", "method.lora.target_modules=[query,value]",
                 "training.learning_rate=1e-2", "-o", out)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["trainable_params"] < summary["total_params"] / 4
    assert summary["metrics"]["f1"] > summary["metrics_before"]["f1"] + 20
    config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert config["task_type"] == "QUESTION_ANS" and "qa_outputs" in (config["modules_to_save"] or [])


@pytest.mark.slow
def test_reader_pushes_with_its_pipeline_tag(cli, qa_run, hub, monkeypatch, tmp_path):
    from conftest import HUB_TOKEN

    monkeypatch.setenv("HF_TOKEN", HUB_TOKEN)
    result = cli("push", qa_run, "--repo-id", "me/reader", "--endpoint", hub.url)
    assert result.exit_code == 0, result.output
    card = (write_files(hub.files("me/reader"), tmp_path / "pushed") / "README.md").read_text()
    assert "pipeline_tag: question-answering" in card and "name: exact_match" in card


@pytest.mark.slow
def test_reader_resumes_and_trains_in_two_processes(qa_setup, qa_run, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    from test_token_classification import interrupted_then_resumed

    whole = json.loads((qa_run / "summary.json").read_text())
    resumed = interrupted_then_resumed(qa_setup / "qa.yaml", tmp_path / "resumed")
    assert resumed["metrics"]["f1"] == pytest.approx(whole["metrics"]["f1"], abs=1e-3)
    assert resumed["metrics_before"]["f1"] == pytest.approx(whole["metrics_before"]["f1"])
    out = tmp_path / "two"
    result = subprocess.run([str(Path(sys.executable).parent / "hf-tuner"), "train", str(qa_setup / "qa.yaml"), "-n", "2",
                             "-o", str(out)], capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["metrics"]["HasAns_total"] + summary["metrics"]["NoAns_total"] == 80
    assert summary["metrics"]["f1"] > summary["metrics_before"]["f1"] + 20
