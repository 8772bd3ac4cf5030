"""Every bad input ends with one `error:` line, exit code 2 and no traceback."""
from __future__ import annotations

import pandas as pd
import pytest

from conftest import assert_clean_error


@pytest.fixture
def recipe(tmp_path):
    """Write a CSV of labelled texts and a recipe using it; returns (recipe_path, csv_path)."""
    csv = tmp_path / "reviews.csv"
    pd.DataFrame({
        "review": [f"text number {i}" for i in range(40)],
        "stars": ["good" if i % 2 else "bad" for i in range(40)],
    }).to_csv(csv, index=False)
    path = tmp_path / "recipe.yaml"
    path.write_text(
        "task: text-classification\n"
        "model: {name_or_path: 'packaged:all-MiniLM-L6-v2'}\n"
        f"data: {{train: '{csv}', text_column: review, label_column: stars}}\n"
    )
    return path, csv


def test_missing_recipe(cli):
    assert_clean_error(cli("validate", "no-such-recipe"), 2, "no recipe named 'no-such-recipe'")


def test_missing_recipe_file(cli, tmp_path):
    assert_clean_error(cli("train", str(tmp_path / "gone.yaml")), 2, "recipe file not found")


def test_malformed_yaml(cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: [oops\n")
    assert_clean_error(cli("validate", bad), 2, "malformed YAML", "line")


def test_unknown_key_with_suggestion(cli, recipe):
    assert_clean_error(cli("validate", recipe[0], "training.learnig_rate=1e-4"), 2, "did you mean 'learning_rate'")


def test_wrong_type(cli, recipe):
    assert_clean_error(cli("validate", recipe[0], "training.per_device_train_batch_size=big"), 2,
                       "training.per_device_train_batch_size")


def test_missing_data_file(cli, recipe, tmp_path):
    assert_clean_error(cli("validate", recipe[0], f"data.train={tmp_path}/none.csv"), 2, "data file not found")


def test_missing_column_lists_the_columns(cli, recipe):
    result = cli("validate", recipe[0], "data.text_column=text")
    assert_clean_error(result, 2, "column 'text' not found", "columns are: review, stars")


def test_empty_data_set(cli, recipe, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("review,stars\n")
    assert_clean_error(cli("validate", recipe[0], f"data.train={empty}"), 2, "is empty")


def test_single_class(cli, recipe, tmp_path):
    one = tmp_path / "one.csv"
    pd.DataFrame({"review": ["a", "b", "c", "d"], "stars": ["good"] * 4}).to_csv(one, index=False)
    assert_clean_error(cli("validate", recipe[0], f"data.train={one}"), 2, "only one class", "at least two")


def test_label_column_with_missing_values(cli, recipe, tmp_path):
    holes = tmp_path / "holes.csv"
    pd.DataFrame({"review": ["a", "b", "c", "d"], "stars": ["good", None, "bad", "good"]}).to_csv(holes, index=False)
    assert_clean_error(cli("validate", recipe[0], f"data.train={holes}"), 2, "missing value", "row 1")


def test_unknown_label_in_data_labels(cli, recipe):
    assert_clean_error(cli("validate", recipe[0], "data.labels=[good, great]"), 2, "great")


def test_model_path_that_does_not_exist(cli, recipe, tmp_path):
    assert_clean_error(cli("validate", recipe[0], f"model.name_or_path={tmp_path}/no-model"), 2, "model path does not exist")


def test_unknown_packaged_model(cli, recipe):
    assert_clean_error(cli("validate", recipe[0], "model.name_or_path=packaged:all-MiniLM"), 2, "did you mean 'all-MiniLM-L6-v2'")


def test_lora_targets_that_match_nothing(cli, recipe):
    result = cli("validate", recipe[0], "method.name=lora", "method.lora.target_modules=[q_proj]")
    assert_clean_error(result, 2, "match nothing", "query")


def test_bf16_on_cpu_is_refused_before_training(cli, recipe, tmp_path):
    result = cli("train", recipe[0], "training.bf16=true", "-o", tmp_path / "run")
    assert_clean_error(result, 2, "bf16")
    assert not (tmp_path / "run").exists()


def test_predict_on_a_folder_that_is_not_a_run(cli, tmp_path):
    assert_clean_error(cli("predict", tmp_path, "hello"), 2, "not an hf-tuner run folder")
    assert_clean_error(cli("predict", tmp_path / "nope", "hello"), 2, "run folder not found")


@pytest.mark.parametrize("override, needle", [
    ("data.text_column=text", "column 'text' not found"),
    ("model.name_or_path=/no/such/model", "model path does not exist"),
])
def test_train_fails_cleanly_before_training_and_leaves_nothing(cli, recipe, tmp_path, override, needle):
    """Through `train`, not only `validate`: one error line, and neither the run folder nor its
    staging folder is left behind (nothing was trained)."""
    out = tmp_path / "run"
    assert_clean_error(cli("train", recipe[0], override, "-o", out), 2, needle)
    assert not out.exists() and not (tmp_path / "run.incomplete").exists()


def test_a_run_that_fails_during_training_keeps_its_staging_folder(cli, recipe, tmp_path, monkeypatch):
    import json

    import transformers

    def broken(self, *args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(transformers.Trainer, "train", broken)
    out = tmp_path / "run"
    result = cli("train", recipe[0], "data.max_train_samples=8", "eval.before_training=false", "-o", out)
    assert_clean_error(result, 1, "disk full")
    summary = json.loads((tmp_path / "run.incomplete" / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["error"] == "disk full"
    assert not out.exists()


def test_several_mistakes_are_reported_at_once_unknown_keys_first(cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: text-classification\ntrainng:\n  learning_rate: 1e-4\n")
    result = cli("validate", bad)
    assert_clean_error(result, 2, "3 problems", "unknown key 'trainng'", "did you mean 'training'",
                       "missing required key 'model'", "missing required key 'data'")
    line = result.stderr.strip()
    assert line.index("trainng") < line.index("missing required key 'model'")


def test_eval_metrics_on_a_task_with_a_fixed_set_is_an_error(cli):
    """A language model reports loss and perplexity whatever eval.metrics says: naming metrics there is an
    error, not silently ignored."""
    assert_clean_error(cli("validate", "gpt2-tweets", "eval.metrics=[rouge]"), 2, "eval.metrics",
                       "reports a fixed set of metrics", "perplexity")
