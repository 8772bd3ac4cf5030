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


@pytest.mark.parametrize("name, content, needles", [
    ("latin.csv", "text,label\nhello,positive\ncafé au lait,negative\n".encode("latin-1"), ("line 3", "not utf-8", "data.encoding")),
    ("ragged.csv", b"text,label\nhello,positive\nbad,row,extra\nfine,negative\n", ("line 3", "3 fields", "header has 2")),
    ("broken.jsonl", b'{"text": "a", "label": "positive"}\n{"text": "b", "label": \n{"text": "c", "label": "x"}\n',
     ("line 2", "not valid JSON")),
])
def test_a_file_that_does_not_parse_names_its_line(cli, tmp_path, name, content, needles):
    path = tmp_path / name
    path.write_bytes(content)
    result = cli("validate", "quickstart", f"data.train={path}")
    assert_clean_error(result, 2, name, *needles)
    assert "Failed to read file" not in result.output  # no log line of datasets leaks before ours


def test_data_encoding_reads_a_latin_1_file(cli, tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes(("text,label\n" + "".join(f"café {i},{'positive' if i % 2 else 'negative'}\n" for i in range(40))).encode("latin-1"))
    result = cli("validate", "quickstart", f"data.train={path}", "data.encoding=latin-1")
    assert result.exit_code == 0, result.output


def test_a_missing_data_file_is_reported_before_torch_is_imported(tmp_path):
    """The check that needs no model runs first: `validate` answers without importing torch (which
    takes most of the 7-10 s it took before)."""
    import subprocess
    import sys

    code = ("import sys\nfrom typer.testing import CliRunner\nfrom hf_tuner.cli import app\n"
            f"r = CliRunner().invoke(app, ['validate', 'quickstart', 'data.train={tmp_path}/missing.csv'])\n"
            "print(r.exit_code, 'torch' in sys.modules, r.stderr.strip())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout.split(" ", 2)
    assert out[:2] == ["2", "False"] and "data file not found" in out[2], out
