"""Shared test set-up: offline, a private hf-tuner cache, and a CLI runner."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest
from typer.testing import CliRunner


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
    assert "Traceback" not in result.output, result.output
    lines = [l for l in result.stderr.splitlines() if l.startswith("error:")]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
