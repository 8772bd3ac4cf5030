"""Run hf-tuner commands in one fresh process, the way a user's shell would see the environment
(HF_ENDPOINT, HF_HOME and offline mode are read when huggingface_hub / datasets are imported).

    python tests/hub_recipe_runner.py steps.json results.json

steps.json: a list of argument lists (`["train", "bert-sst2", ...]`), run in order with the in-process
Typer runner; stops at the first that fails. results.json: one {"args", "exit_code", "stdout",
"stderr", "exception"} per step run.
"""
from __future__ import annotations

import json
import sys
import traceback


def main(steps_path: str, results_path: str) -> int:
    from typer.testing import CliRunner

    from hf_tuner.cli import app

    results = []
    for args in json.loads(open(steps_path, encoding="utf-8").read()):
        result = CliRunner().invoke(app, args, catch_exceptions=True)
        exc = result.exception
        results.append({"args": args, "exit_code": result.exit_code, "stdout": result.stdout, "stderr": result.stderr,
                        "exception": None if exc is None or isinstance(exc, SystemExit)
                        else "".join(traceback.format_exception(exc))[-4000:]})
        with open(results_path, "w", encoding="utf-8") as f:
            json.dump(results, f)
        if result.exit_code != 0:
            break
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
