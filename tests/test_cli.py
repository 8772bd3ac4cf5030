"""The CLI surface: --help, --version, recipes list/show/copy; start-up stays light."""
from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from hf_tuner import __version__


def test_help_and_recipes_list_do_not_import_torch():
    code = (
        "import sys\n"
        "from hf_tuner.cli import app\n"
        "for args in (['--help'], ['recipes', 'list'], ['recipes', 'show', 'quickstart']):\n"
        "    try:\n"
        "        app(args)\n"
        "    except SystemExit as e:\n"
        "        assert e.code in (0, None), e.code\n"
        "heavy = [m for m in ('torch', 'transformers', 'datasets', 'peft') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "validate" in result.stdout and "quickstart" in result.stdout


def test_console_script_and_module_entry_points():
    result = subprocess.run([sys.executable, "-m", "hf_tuner", "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == f"hf-tuner {__version__}"
    bindir = __import__("pathlib").Path(sys.executable).parent
    result = subprocess.run([str(bindir / "hf-tuner"), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for command in ("train", "validate", "recipes", "predict"):
        assert command in result.stdout


def test_recipes_list_shows_name_task_method_description(cli):
    result = cli("recipes", "list")
    assert result.exit_code == 0
    row = next(l for l in result.stdout.splitlines() if l.startswith("quickstart-lora "))
    assert "text-classification" in row and "lora" in row and "LoRA" in row


def test_recipes_show_and_copy(cli, tmp_path):
    shown = cli("recipes", "show", "quickstart")
    assert shown.exit_code == 0 and yaml.safe_load(shown.stdout)["task"] == "text-classification"
    copied = cli("recipes", "copy", "quickstart", tmp_path / "mine.yaml")
    # the copy is the recipe, its output_dir following the copy's name
    assert copied.exit_code == 0 and (tmp_path / "mine.yaml").read_text() == shown.stdout.replace(
        "output_dir: runs/quickstart", "output_dir: runs/mine")
    again = cli("recipes", "copy", "quickstart", tmp_path / "mine.yaml")
    assert again.exit_code == 2 and "already exists" in again.stderr


def test_validate_prints_what_would_run(cli):
    result = cli("validate", "quickstart-lora", "data.max_train_samples=100", "data.max_eval_samples=20")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "recipe OK" in out and "method           lora" in out
    assert '"train": 100' in out and '"validation": 20' in out
    assert '["negative", "positive"]' in out and "trainable of 22," in out


@pytest.mark.parametrize("args, needle", [
    (["train"], "Missing argument"),
    (["train", "quickstart", "-n", "abc"], "Invalid value for '--num-processes'"),
    (["runs", "--bogus"], "No such option: --bogus"),
])
def test_command_line_mistakes_keep_clicks_usage_block_and_exit_2(cli, args, needle):
    """The one exception to "one error: line" (README): click's own usage errors."""
    result = cli(*args)
    assert result.exit_code == 2, result.output
    assert "Usage: hf-tuner" in result.output and needle in result.output
    assert "Traceback" not in result.output
