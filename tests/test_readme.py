"""Every `hf-tuner` command the README shows (its ```bash blocks) is either run here and exits 0, or
is left out by a stated rule: it trains (each recipe has its own tests), needs the Hub or GPUs, names
a file of the user's, or needs a trained run this test does not make. The commands on
runs/quickstart and runs/quickstart-lora run against a stand-in: the session's tiny trained
quickstart-lora run (`tiny_lora_run`), copied to both names."""
from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
STAND_INS = ("quickstart", "quickstart-lora")  # run folders this test provides
USER_FILES = re.compile(r"\.(csv|tsv|jsonl|json|png|jpe?g|txt)$|^my-model-folder$")


def readme_commands() -> list[str]:
    """The `hf-tuner ...` commands of the README's bash blocks and the `$ hf-tuner ...` lines of its
    other examples, in order (`a && b` gives two)."""
    commands = []
    for kind, block in re.findall(r"```(\w*)\n(.*?)```", README.read_text(encoding="utf-8"), re.S):
        for line in block.splitlines():
            line = re.split(r"\s#", line)[0].strip()
            if kind != "bash":
                line = line[2:] if line.startswith("$ hf-tuner ") else ""
            commands += [c.strip() for c in line.split("&&") if c.strip().startswith("hf-tuner ")]
    return commands


def copied_from() -> dict[str, str]:
    """Files the README's `hf-tuner recipes copy NAME FILE` commands make -> NAME."""
    out = {}
    for command in readme_commands():
        args = shlex.split(command)[1:]
        if args[:2] == ["recipes", "copy"]:
            out[args[3]] = args[2]
    return out


def left_out(command: str) -> str | None:
    """Why a README command is not run here, or None when it is (the rules, in order)."""
    from hf_tuner.recipes import needs, resolve_recipe

    args = shlex.split(command)[1:]
    verb = args[0]
    if verb == "push":
        return "pushes to the Hub"
    if verb in ("train", "sweep"):
        return "trains (every recipe has its own tests; sweep: tests/test_sweep.py)"
    if "--harness" in args:
        return "lm-eval's tasks download their data from the Hub"
    if "--benchmark" in args and "--data" not in args:
        return "the benchmark comes from the Hub"
    files = [a for a in args[1:] if USER_FILES.search(a) and not a.startswith("compare")]
    if files and verb != "runs" and not (verb == "recipes" and args[1] == "copy"):
        return f"names a file of the user's ({files[0]})"
    if verb in ("validate", "plan"):
        import yaml

        recipe = copied_from().get(args[1], args[1])  # my.yaml: the README made it with `recipes copy`
        data = yaml.safe_load(resolve_recipe(recipe).read_text())
        if needs(data) == "hub":
            return f"{args[1]} needs the Hub"
        start = str((data.get("model") or {}).get("name_or_path") or "")
        if start.startswith("runs/") and start.split("/")[1] not in STAND_INS:
            return f"{args[1]} starts from a trained {start}"
    runs = [a.split("/")[1] for a in args[1:] if a.startswith("runs/")]
    missing = [r for r in runs if r not in STAND_INS]
    if missing:
        return f"needs a trained runs/{missing[0]}"
    return None


def heavy(command: str) -> bool:
    """Run in the slow test: it uses the stand-in runs, or loads data and builds a model (plan, validate)."""
    args = shlex.split(command)
    return any(a.startswith("runs/") for a in args) or args[1] in ("plan", "validate")


def test_the_readme_shows_the_commands_this_test_knows():
    commands = readme_commands()
    assert len(commands) > 40
    for expected in ("hf-tuner recipes list", "hf-tuner runs", "hf-tuner profiles list", "hf-tuner eval --list-benchmarks",
                     "hf-tuner plan quickstart data.max_length=40"):
        assert expected in commands


def test_every_readme_command_that_needs_no_network_gpu_or_training_exits_0(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ran = []
    for command in readme_commands():
        if heavy(command) or left_out(command):
            continue
        result = cli(*shlex.split(command)[1:])
        assert result.exit_code == 0, (command, result.output[-2000:])
        ran.append(command)
    assert "hf-tuner recipes copy bert-sst2 my.yaml" in ran and (tmp_path / "my.yaml").is_file()
    assert len(ran) >= 6, ran


@pytest.mark.slow
def test_readme_commands_on_runs_and_plans_exit_0(cli, tiny_lora_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in STAND_INS:
        shutil.copytree(tiny_lora_run, tmp_path / "runs" / name)
    ran = []
    for command in readme_commands():
        if not heavy(command) or left_out(command):
            continue
        result = cli(*shlex.split(command)[1:])
        assert result.exit_code == 0, (command, result.output[-2000:])
        ran.append(command)
    assert any(c.startswith("hf-tuner predict runs/quickstart ") for c in ran)
    assert any(c.startswith("hf-tuner runs compare") for c in ran) and (tmp_path / "compare.png").is_file()
    assert "hf-tuner eval runs/quickstart" in ran
    assert "hf-tuner plan quickstart data.max_length=40" in ran


def test_the_readme_counts_the_benches_make_bench_runs():
    makefile = (README.parent / "Makefile").read_text(encoding="utf-8")
    benches = re.findall(r"bench/(bench_\w+)\.py", makefile.split("\nbench:")[1].split("\n\n")[0])
    words = {4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight"}
    assert f"{words[len(benches)]} benches" in README.read_text(encoding="utf-8"), benches
