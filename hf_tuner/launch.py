"""Multi-process launch: re-run an `hf-tuner` command under `accelerate launch`.

`hf-tuner train RECIPE --num-processes N` starts N training processes on this machine (one per GPU;
on a CPU-only machine N gloo processes) through accelerate's own launcher, exactly as
`accelerate launch -m hf_tuner train RECIPE` would. Multi-node jobs use `accelerate launch` directly
with its --num_machines/--machine_rank/--main_process_ip flags.
"""
from __future__ import annotations

import os
import subprocess
import sys

from .errors import ConfigError


def under_launcher() -> bool:
    """True inside a process started by accelerate/torchrun (then we must not launch again)."""
    return "LOCAL_RANK" in os.environ or "ACCELERATE_PROCESS_ID" in os.environ


def launch_command(num_processes: int, argv: list[str], mixed_precision: str = "no") -> list[str]:
    """The `accelerate launch` command line that runs `hf-tuner <argv>` in `num_processes` processes."""
    if num_processes < 2:
        raise ConfigError("--num-processes must be at least 2 to launch several processes")
    return [
        sys.executable, "-m", "accelerate.commands.launch",
        "--multi_gpu",  # also right on CPU: it gives real gloo processes (--cpu would run only one)
        "--num_processes", str(num_processes), "--num_machines", "1",
        "--mixed_precision", mixed_precision, "--dynamo_backend", "no",
        "-m", "hf_tuner", *argv,
    ]


def launch(num_processes: int, argv: list[str]) -> int:
    """Run the command in `num_processes` processes and return the launcher's exit code."""
    env = dict(os.environ)
    # accelerate sets OMP_NUM_THREADS=1 when it is unset, which halves CPU throughput: share the cores.
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // num_processes)))
    return subprocess.call(launch_command(num_processes, argv), env=env)
