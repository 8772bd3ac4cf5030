"""Every bundled recipe that names the Hub runs end to end against a stand-in Hub.

The recipes are found by globbing the bundled recipes (a recipe needs the Hub when it names a Hub id:
`hf_tuner.recipes.hub_ids`), never listed here. Each Hub id gets the stand-in of `hub_standins.STANDINS`
(a tiny model of the same architecture and tokenizer kind, or a few dozen rows with the real schema),
served by the loopback `fake_hub.FakeHub`. A recipe then goes through validate, plan, train (2 steps,
tiny batches), predict and eval, full and LoRA, in a fresh process whose HF_ENDPOINT is the fake Hub,
with an empty HF_HOME and offline mode off (only in that process).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hf_tuner.packaged import recipes_dir
from hf_tuner.recipes import hub_ids

sys.path.insert(0, str(Path(__file__).parent))
from hub_standins import STANDINS, build  # noqa: E402

RUNNER = Path(__file__).parent / "hub_recipe_runner.py"
ROOT = Path(__file__).resolve().parents[1]


def hub_recipes() -> dict[str, dict]:
    """Bundled recipe name -> its YAML, for every recipe that names a Hub id."""
    out = {}
    for path in sorted(recipes_dir().glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if hub_ids(data):
            out[path.stem] = data
    return out


HUB_RECIPES = hub_recipes()


def variants() -> list[tuple[str, str]]:
    """(recipe, method) pairs: each recipe as written, and LoRA for a full recipe with no `-lora` twin."""
    out = []
    for name, data in HUB_RECIPES.items():
        method = (data.get("method") or {}).get("name", "full")
        out.append((name, method))
        if method == "full" and f"{name}-lora" not in HUB_RECIPES:
            out.append((name, "lora"))
    return out


def missing_standins(name: str) -> list[str]:
    return [i for i in hub_ids(HUB_RECIPES[name]) if i not in STANDINS]


@pytest.mark.parametrize("name", sorted(HUB_RECIPES))
def test_every_hub_id_has_a_standin(name):
    missing = missing_standins(name)
    assert not missing, (f"recipe '{name}' names Hub id(s) {missing} with no stand-in: add one to STANDINS in "
                         "tests/hub_standins.py (a tiny model of the same architecture / a few rows with the real schema)")


def test_the_glob_finds_the_hub_recipes():
    # an independent expectation: the recipes README's table marks these "needs the Hub"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    marked = {n for n in (recipes_dir().glob("*.yaml")) if f"`{n.stem}`" in readme and "needs the Hub" in
              next((line for line in readme.splitlines() if f"`{n.stem}`" in line and line.startswith("|")), "")}
    assert {p.stem for p in marked} <= set(HUB_RECIPES)
    assert {"bert-sst2", "gpt2-sft", "bart-summarize", "vit-gpt2-flickr", "gpt2-imdb-grpo"} <= set(HUB_RECIPES)


@pytest.fixture(scope="session")
def standin_hub(tmp_path_factory):
    """The fake Hub serving every stand-in (built once per session)."""
    from fake_hub import FakeHub

    work = tmp_path_factory.mktemp("standins")
    hub = FakeHub(token="hf_StandinHubToken")
    for repo_id, standin in STANDINS.items():
        hub.serve(repo_id, build(repo_id, work), repo_type=standin.repo_type)
    yield hub
    hub.close()


def tiny_overrides(data: dict, method: str) -> list[str]:
    """Overrides that make any recipe cheap: 2 steps, small batches, few rows, short generations."""
    training = data.get("training") or {}
    out = [f"method.name={method}", "training.max_steps=2", "training.per_device_train_batch_size=2",
           "training.per_device_eval_batch_size=4", "training.logging_steps=1", "training.gradient_accumulation_steps=1",
           "data.max_train_samples=16", "data.max_eval_samples=8",
           "eval.max_new_tokens=8", "eval.num_beams=1", "eval.max_eval_generate_samples=4"]
    if "num_generations" in training:  # GRPO / RLOO: a group of 2 completions, short ones
        out += ["training.num_generations=2"]
    if "max_completion_length" in training:
        out += ["training.max_completion_length=8"]
    if "eval_steps" in training:
        out += ["training.eval_steps=2"]
    return out


def predict_args(task: str, tmp: Path) -> list[str]:
    """What a user would pass to `predict` for a run of this task."""
    if task.startswith("image"):
        from PIL import Image

        image = tmp / "leaf.png"
        Image.new("RGB", (40, 30), (30, 140, 60)).save(image)
        return [str(image)]
    if task == "masked-lm":
        return ["The movie was [MASK] good"]
    if task == "question-answering":
        return ["Who said so?", "--context", "It was Mary who said so in Paris."]
    return ["The movie was very good and the music was great", "--max-new-tokens", "8"]


def hub_env(hub, home: Path, offline: bool = False) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN")}
    env.update(HF_ENDPOINT=hub.url, HF_HOME=str(home), HF_HUB_DISABLE_TELEMETRY="1", TOKENIZERS_PARALLELISM="false",
               PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    if offline:
        env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    return env


def run_steps(steps: list[list[str]], env: dict, tmp: Path, timeout: int = 900) -> list[dict]:
    (tmp / "steps.json").write_text(json.dumps(steps))
    proc = subprocess.run([sys.executable, str(RUNNER), str(tmp / "steps.json"), str(tmp / "results.json")],
                          env=env, cwd=tmp, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0 and (tmp / "results.json").exists(), proc.stderr[-4000:]
    return json.loads((tmp / "results.json").read_text())


def failure(result: dict) -> str:
    return (f"`hf-tuner {' '.join(result['args'][:2])} ...` exited {result['exit_code']}\n"
            f"{result['exception'] or ''}\n{result['stderr'][-3000:]}\n{result['stdout'][-2000:]}")


def recipe_steps(name: str, method: str, tmp: Path) -> list[list[str]]:
    data = HUB_RECIPES[name]
    over, run = tiny_overrides(data, method), str(tmp / "run")
    return [["validate", name, *over], ["plan", name, *over, "--sample-rows", "16"],
            ["train", name, *over, "-o", run],
            ["predict", run, *predict_args(data["task"], tmp)],
            ["eval", run, "--max-samples", "8"],
            *([["eval", run, "--split", "test", "--max-samples", "8"]] if data["data"].get("test_split") or data["data"].get("test") else [])]


@pytest.mark.slow
@pytest.mark.parametrize("name,method", variants(), ids=[f"{n}-{m}" if not n.endswith(m) else n for n, m in variants()])
def test_hub_recipe_end_to_end(name, method, standin_hub, tmp_path, hf_tuner_cache):
    missing = missing_standins(name)
    if missing:
        pytest.fail(f"recipe '{name}' names Hub id(s) {missing} with no stand-in: add one to STANDINS in tests/hub_standins.py")
    env = dict(hub_env(standin_hub, tmp_path / "hf_home"), HF_TUNER_DEBUG="1")  # an unexpected failure shows its traceback
    results = run_steps(recipe_steps(name, method, tmp_path), env, tmp_path)
    for result in results:
        assert result["exit_code"] == 0 and result["exception"] is None, failure(result)
    assert len(results) == len(recipe_steps(name, method, tmp_path)), results[-1]["args"]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary.get("method", method) == method
    # the models and data came from the fake Hub, through the real download path
    for repo_id in hub_ids(HUB_RECIPES[name]):
        assert standin_hub.downloads(repo_id, STANDINS[repo_id].repo_type), f"nothing of {repo_id} was downloaded"


def one_error_line(result: dict) -> str:
    """The failure a user sees: a non-zero exit, no traceback, exactly one `error:` line (returned)."""
    assert result["exit_code"] != 0 and result["exception"] is None, failure(result)
    assert "Traceback" not in result["stderr"] + result["stdout"], result["stderr"]
    lines = [l for l in result["stderr"].splitlines() if l.startswith("error:")]
    assert len(lines) == 1, result["stderr"]
    return lines[0]


@pytest.mark.slow
def test_a_column_missing_on_the_hub_is_the_users_one_line_error(tmp_path, hf_tuner_cache):
    """bert-sst2 reads `sentence`; a Hub copy of SST-2 without it stops `validate` with one line naming it."""
    from fake_hub import FakeHub
    from hub_standins import without_column

    hub = FakeHub(token="hf_StandinHubToken")
    try:
        for repo_id in hub_ids(HUB_RECIPES["bert-sst2"]):
            files = build(repo_id, tmp_path / "standins")
            if STANDINS[repo_id].repo_type == "dataset":
                files = without_column(files, "sentence")
            hub.serve(repo_id, files, repo_type=STANDINS[repo_id].repo_type)
        over = tiny_overrides(HUB_RECIPES["bert-sst2"], "full")
        results = run_steps([["validate", "bert-sst2", *over], ["train", "bert-sst2", *over, "-o", str(tmp_path / "run")]],
                            hub_env(hub, tmp_path / "hf_home"), tmp_path)
    finally:
        hub.close()
    line = one_error_line(results[0])
    assert "sentence" in line and "idx" in line and "label" in line, line  # names the column and the ones there are
    assert len(results) == 1 and not (tmp_path / "run").exists()
    print(line)


@pytest.mark.slow
def test_offline_with_an_empty_cache_is_the_one_line_error(standin_hub, tmp_path, hf_tuner_cache):
    before = len(standin_hub.requests)
    over = tiny_overrides(HUB_RECIPES["bert-sst2"], "full")
    results = run_steps([["train", "bert-sst2", *over, "-o", str(tmp_path / "run")]],
                        hub_env(standin_hub, tmp_path / "empty_home", offline=True), tmp_path)
    line = one_error_line(results[0])
    assert "offline" in line and ("stanfordnlp/sst2" in line or "google-bert/bert-base-uncased" in line), line
    assert len(standin_hub.requests) == before  # offline: nothing asked of the Hub
    print(line)


@pytest.mark.slow
def test_online_once_then_offline_trains_from_the_cache(standin_hub, tmp_path, hf_tuner_cache):
    home = tmp_path / "hf_home"
    over = tiny_overrides(HUB_RECIPES["bert-sst2"], "full")
    online = run_steps([["train", "bert-sst2", *over, "-o", str(tmp_path / "online")]], hub_env(standin_hub, home), tmp_path)
    assert online[-1]["exit_code"] == 0, failure(online[-1])
    before = len(standin_hub.requests)
    offline = run_steps([["train", "bert-sst2", *over, "-o", str(tmp_path / "offline")],
                         ["predict", str(tmp_path / "offline"), "a good movie"]],
                        hub_env(standin_hub, home, offline=True), tmp_path)
    for result in offline:
        assert result["exit_code"] == 0, failure(result)
    assert len(standin_hub.requests) == before  # trained from the cache alone
    assert (tmp_path / "offline" / "summary.json").is_file()
