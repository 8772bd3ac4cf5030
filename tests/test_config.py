"""Recipe schema, overrides and recipe lookup (no training, no torch)."""
from __future__ import annotations

import dataclasses

import pytest
import yaml

from hf_tuner.arguments import ARGUMENT_NAMES
from hf_tuner.config import apply_overrides, parse_overrides
from hf_tuner.errors import ConfigError
from hf_tuner.recipes import build_config, copy_recipe, list_recipes, load_config, resolve_recipe

MINIMAL = {"task": "text-classification", "model": {"name_or_path": "m"}, "data": {"train": "t.csv"}}


@pytest.mark.parametrize("path", sorted(ARGUMENT_NAMES))
def test_argument_names_match_the_installed_library(path):
    from hf_tuner.arguments import import_object

    installed = {f.name for f in dataclasses.fields(import_object(path))}
    assert ARGUMENT_NAMES[path] == installed


def test_overrides_are_parsed_as_yaml_and_typed_by_the_schema():
    data = apply_overrides(MINIMAL, [
        "training.learning_rate=3e-5", "method.name=lora", "method.lora.target_modules=[query,value]",
        "training.num_train_epochs=2", "data.labels=[neg, pos]", "training.bf16=false",
    ])
    cfg = build_config(data)
    assert cfg.training.learning_rate == pytest.approx(3e-5)
    assert cfg.method.name == "lora"
    assert cfg.method.lora.target_modules == ["query", "value"]
    assert cfg.training.num_train_epochs == 2.0
    assert cfg.data.labels == ["neg", "pos"]
    assert cfg.training.bf16 is False
    assert "training" not in MINIMAL  # the input dict is not modified


def test_override_without_equals_is_an_error():
    with pytest.raises(ConfigError, match="not key=value"):
        parse_overrides(["training.learning_rate"])


def test_unknown_key_suggests_the_right_one():
    with pytest.raises(ConfigError, match=r"unknown key 'data.text_colum'.*did you mean 'text_column'"):
        build_config({**MINIMAL, "data": {"train": "t.csv", "text_colum": "x"}})
    with pytest.raises(ConfigError, match=r"unknown key 'modle'.*did you mean 'model'"):
        build_config({**MINIMAL, "modle": {}})


def test_unknown_training_argument_suggests_the_right_one():
    with pytest.raises(ConfigError, match=r"'learning_rat' is not a TrainingArguments name \(did you mean 'learning_rate'"):
        build_config({**MINIMAL, "training": {"learning_rat": 1e-4}})


def test_passthrough_training_argument_is_accepted():
    cfg = build_config({**MINIMAL, "training": {"adam_beta2": 0.98, "label_smoothing_factor": 0.1}})
    assert cfg.training.model_dump()["adam_beta2"] == 0.98


@pytest.mark.parametrize("key, hint", [
    ("evaluation_strategy", "eval_strategy"), ("no_cuda", "use_cpu"), ("hub_token", "HF_TOKEN"),
    ("output_dir", "output_dir"),
])
def test_renamed_and_owned_training_keys_point_to_the_new_place(key, hint):
    with pytest.raises(ConfigError, match=hint):
        build_config({**MINIMAL, "training": {key: "x"}})


def test_wrong_type_names_the_key():
    with pytest.raises(ConfigError, match=r"'training.num_train_epochs' has a bad value 'many'"):
        build_config({**MINIMAL, "training": {"num_train_epochs": "many"}})
    with pytest.raises(ConfigError, match=r"'method.name' cannot be 'qlora'"):
        build_config({**MINIMAL, "method": {"name": "qlora"}})


def test_model_needs_exactly_one_source():
    with pytest.raises(ConfigError, match="exactly one of model.name_or_path"):
        build_config({**MINIMAL, "model": {}})


def test_push_needs_a_repo_id():
    with pytest.raises(ConfigError, match="hub.repo_id"):
        build_config({**MINIMAL, "hub": {"push": True}})


def test_malformed_yaml_names_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("task: text-classification\nmodel: [unclosed\n")
    with pytest.raises(ConfigError, match=r"malformed YAML in .*bad.yaml at line"):
        load_config(str(path))


def test_missing_recipe_suggests_a_bundled_one(tmp_path):
    with pytest.raises(ConfigError, match=r"no recipe named 'quickstar' \(did you mean 'quickstart'"):
        resolve_recipe("quickstar")
    with pytest.raises(ConfigError, match="recipe file not found"):
        resolve_recipe(str(tmp_path / "nope.yaml"))


def test_every_bundled_recipe_is_valid(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # recipes that chain run folders (runs/NAME) are valid before those exist
    infos = list_recipes()
    names = {r.name for r in infos}
    assert {"quickstart", "quickstart-lora", "bert-sst2", "bert-sst2-lora"} <= names
    for info in infos:
        cfg = load_config(str(info.path))
        assert cfg.task == info.task and cfg.method.name == info.method
        assert info.description, f"{info.name} has no description"


def test_copy_recipe_refuses_to_overwrite(tmp_path):
    dest = copy_recipe("quickstart", str(tmp_path))
    assert yaml.safe_load(dest.read_text())["task"] == "text-classification"
    with pytest.raises(ConfigError, match="already exists"):
        copy_recipe("quickstart", str(dest))
    copy_recipe("quickstart", str(dest), force=True)


def test_yes_no_words_are_words_for_string_choices(tmp_path):
    """`training.eval_strategy=no` as TrainingArguments spells it: YAML 1.1 would read it as False."""
    assert build_config(apply_overrides(MINIMAL, ["training.eval_strategy=no"])).training.eval_strategy == "no"
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(MINIMAL) + "training:\n  save_strategy: no\n  use_cpu: yes\n  eval_strategy: no\n")
    cfg = load_config(str(path))
    assert cfg.training.save_strategy == "no" and cfg.training.eval_strategy == "no" and cfg.training.use_cpu is True
    assert load_config(str(path), ["training.use_cpu=off"]).training.use_cpu is False
    with pytest.raises(ConfigError, match="'training.eval_strategy' cannot be 'off'"):
        load_config(str(path), ["training.eval_strategy=off"])


def test_data_keys_belong_to_the_task():
    with pytest.raises(ConfigError, match=r"'data.source_column': it is a key of seq2seq data"):
        build_config({**MINIMAL, "data": {"train": "t.csv", "source_column": "x"}})
    seq2seq = build_config({**MINIMAL, "task": "seq2seq", "data": {"train": "t.csv", "source_column": "x"}})
    assert seq2seq.data.source_column == "x"
    with pytest.raises(ConfigError, match="'predict_with_generate' is not a TrainingArguments name"):
        build_config({**MINIMAL, "training": {"predict_with_generate": True}})


def test_learning_rate_follows_the_method_unless_set():
    from hf_tuner.run import learning_rate
    from hf_tuner.tasks import get_task

    for method, expected in (("full", 5e-5), ("lora", 5e-4)):
        cfg = build_config({**MINIMAL, "method": {"name": method}})
        assert learning_rate(cfg, get_task(cfg.task).bind(cfg)) == (expected, f"the {method} default; set training.learning_rate to change it")
    cfg = build_config({**MINIMAL, "method": {"name": "lora"}, "training": {"learning_rate": 2e-3}})
    assert learning_rate(cfg, get_task(cfg.task).bind(cfg))[0] == 2e-3
    # the quickstart recipe no longer pins the full fine-tuning rate, so method.name=lora gets LoRA's
    lora = load_config("quickstart", ["method.name=lora"])
    assert lora.training.learning_rate is None


def test_task_defaults_apply_unless_the_recipe_sets_them(tmp_path):
    from hf_tuner.run import training_arguments
    from hf_tuner.tasks import get_task

    cfg = build_config(MINIMAL)
    args = training_arguments(cfg, get_task(cfg.task).bind(cfg), tmp_path)
    assert args.train_sampling_strategy == "group_by_length" and args.learning_rate == 5e-5
    cfg = build_config({**MINIMAL, "training": {"train_sampling_strategy": "random"}})
    assert training_arguments(cfg, get_task(cfg.task).bind(cfg), tmp_path).train_sampling_strategy == "random"
    packed = build_config({**MINIMAL, "task": "causal-lm", "data": {"train": "t.csv", "packing": True}})
    assert training_arguments(packed, get_task("causal-lm").bind(packed), tmp_path).train_sampling_strategy == "random"
