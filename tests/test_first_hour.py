"""A new user's first hour: progress where a terminal shows it, output scripts can read, and the small
traps of copying recipes, `train --dry-run` and an impossible launch profile."""
from __future__ import annotations

import json

import pytest

from conftest import assert_clean_error


def test_runs_json_is_an_empty_list_without_runs(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("runs", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout) == [], result.output


def test_recipes_and_profiles_list_as_json(cli):
    recipes = json.loads(cli("recipes", "list", "--json").stdout)
    assert {"name": "quickstart", "task": "text-classification", "method": "full"}.items() <= \
        next(r for r in recipes if r["name"] == "quickstart").items()
    profiles = json.loads(cli("profiles", "list", "--json").stdout)
    assert {"ddp", "fsdp"} <= {p["name"] for p in profiles} and all("distributed_type" in p for p in profiles)


def test_validate_refuses_a_launch_profile_this_machine_cannot_run(cli):
    from hf_tuner.modeling import has_accelerator

    if has_accelerator():
        pytest.skip("this machine has GPUs: fsdp can run here")
    assert_clean_error(cli("validate", "quickstart", "--profile", "fsdp", "-n", "2"), 2, "needs GPUs", "--profile ddp")


def test_a_recipe_copied_into_a_new_folder_or_under_a_new_name(cli, tmp_path):
    result = cli("recipes", "copy", "quickstart", f"{tmp_path}/mine/")
    assert result.exit_code == 0 and (tmp_path / "mine" / "quickstart.yaml").is_file(), result.output
    result = cli("recipes", "copy", "quickstart", tmp_path / "my.yaml")
    assert result.exit_code == 0, result.output
    text = (tmp_path / "my.yaml").read_text()
    assert "output_dir: runs/my\n" in text and "runs/quickstart" not in text  # two copies, two run folders
    assert "output_dir: runs/quickstart" in (tmp_path / "mine" / "quickstart.yaml").read_text()  # same name: kept


def test_train_dry_run_points_to_validate(cli):
    assert_clean_error(cli("train", "quickstart", "--dry-run"), 2, "hf-tuner validate quickstart")


def test_shell_completion_is_offered(cli):
    assert "--install-completion" in cli("--help").stdout


@pytest.mark.parametrize("terminal", [True, False])
def test_training_shows_a_progress_bar_on_a_terminal_only(monkeypatch, tmp_path, terminal):
    import sys

    from hf_tuner.recipes import load_config
    from hf_tuner.run import training_arguments
    from hf_tuner.tasks import get_task

    monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal)
    cfg = load_config("quickstart")
    args = training_arguments(cfg, get_task(cfg.task).bind(cfg), tmp_path)
    assert args.disable_tqdm is (not terminal)
    cfg = load_config("quickstart", ["training.disable_tqdm=true"])  # the recipe's word wins
    assert training_arguments(cfg, get_task(cfg.task).bind(cfg), tmp_path).disable_tqdm is True


def test_plan_names_each_measured_field_once(cli):
    result = cli("plan", "ner-tweets", "data.max_train_samples=64")
    assert result.exit_code == 0, result.output
    assert "tokens tokens" not in result.stdout and "tokens " in result.stdout
