"""Shared parts of the side-by-side TRL benchmarks (bench_reward.py, bench_grpo.py): the Trainer timing
hook, the TRL CLI's path, waiting for a quiet machine, the interleaved-rounds runner, medians and ratios,
the JSON file, and parsing the dicts a Trainer prints.

The scripts run as files (`python bench/bench_X.py`, children too), so bench/ is sys.path[0] and they
import this module as `_common`.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

# a sitecustomize.py put on both sides' PYTHONPATH (the TRL CLI's training process inherits it through
# accelerate launch): it times `Trainer.train` in wall and CPU seconds and records the torch thread counts.
# CPU seconds per step hardly move when other work shares the machine; wall-clock throughput does.
TIMING_HOOK = r'''"""Bench instrumentation (both sides alike): time `transformers.Trainer.train` in wall and CPU seconds."""
import os

_OUT = os.environ.get("BENCH_TRAIN_TIMING")
if _OUT:
    import importlib.abc
    import importlib.util
    import sys

    def _patch(cls):
        import json
        import resource
        import time

        original = cls.train

        def train(self, *args, **kwargs):
            import torch

            r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            out = original(self, *args, **kwargs)
            r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            record = {"wall_s": round(t1 - t0, 3),
                      "cpu_s": round(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime, 3),
                      "involuntary_switches": r1.ru_nivcsw - r0.ru_nivcsw, "steps": self.state.global_step,
                      "torch_threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
                      "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "trainer": type(self).__name__}
            with open(_OUT, "a") as f:
                f.write(json.dumps(record) + "\n")
            return out

        cls.train = train

    class _Hook(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name != "transformers.trainer":
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(name)
            run = spec.loader.exec_module

            def exec_module(module):
                run(module)
                _patch(module.Trainer)

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, _Hook())
'''


def add_round_options(parser: argparse.ArgumentParser, variants: tuple[str, ...], json_default: Path) -> None:
    """The options every side-by-side bench takes after its own: threads, rounds, waiting, variants, the
    JSON file, and the hidden ones of a child run."""
    parser.add_argument("--threads", type=int, default=2, help="torch/OpenMP threads of every variant")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved rounds of all variants")
    parser.add_argument("--quiet-wait", type=float, default=300,
                        help="before each run, wait up to this many seconds for other work to use < 0.3 cores (0: don't)")
    parser.add_argument("--variants", default=",".join(variants))
    parser.add_argument("--json", default=str(json_default))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--run", help=argparse.SUPPRESS)


def trl_bin() -> str:
    return str(Path(sys.executable).with_name("trl"))


def printed_dicts(text: str) -> list[dict]:
    """Every dict the Trainer printed (its log lines)."""
    out = []
    for line in text.splitlines():
        start, end = line.find("{"), line.rfind("}")
        if start >= 0 and end > start:
            try:
                value = ast.literal_eval(line[start:end + 1])
            except (ValueError, SyntaxError):
                continue
            if isinstance(value, dict):
                out.append(value)
    return out


def final_metrics(logs: list[dict]) -> dict:
    """The Trainer's last metrics line (the last printed dict holding 'train_runtime'), values as floats."""
    final = next((d for d in reversed(logs) if "train_runtime" in d), None)
    if final is None:
        raise RuntimeError("no final metrics line (train_runtime) in the TRL CLI's output")
    return {k: float(v) for k, v in final.items()}


def others_busy(seconds: float = 3.0) -> float:
    """CPU cores kept busy on this machine over a short sample (/proc/stat; between runs: other people's work)."""
    def ticks() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        idle = values[3] + values[4]  # idle + iowait
        return sum(values) - idle, sum(values)

    busy0, total0 = ticks()
    time.sleep(seconds)
    busy1, total1 = ticks()
    return round((busy1 - busy0) / max(total1 - total0, 1) * (os.cpu_count() or 1), 2)


def wait_for_quiet(limit_s: float, threshold: float = 0.3) -> float:
    """Wait (up to limit_s) until other work uses less than `threshold` cores; return the last sample."""
    deadline = time.time() + limit_s
    while True:
        busy = others_busy()
        if busy < threshold or time.time() >= deadline:
            return busy
        time.sleep(10)


def run_rounds(work: Path, args: argparse.Namespace, variants: list[str],
               child_command: Callable[[str, int], list[str]],
               label_width: int) -> tuple[dict[str, list[dict]], float, float]:
    """Run every variant --repeats times, interleaved (alternating who goes first), each as
    `child_command(variant, repeat)` (a full command line printing one "RESULT {json}" line) with
    --threads OpenMP/MKL threads, offline, and the timing hook on its PYTHONPATH. Adds each run's wall
    time, the machine's other load just before it and the hook's CPU figures to its result.
    Returns (runs by variant, load average before, load average after)."""
    (work / "hook").mkdir()
    (work / "hook" / "sitecustomize.py").write_text(TIMING_HOOK)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(work / "hook"), os.environ.get("PYTHONPATH")]))}
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    load_before = os.getloadavg()[0]
    for repeat in range(args.repeats):
        order = variants if repeat % 2 == 0 else variants[::-1]  # alternate who goes first
        for variant in order:
            cmd = child_command(variant, repeat)
            busy = wait_for_quiet(args.quiet_wait) if args.quiet_wait > 0 else others_busy()
            started = time.time()
            timing = work / f"timing-{variant}-{repeat}.jsonl"
            proc = subprocess.run(cmd, env={**env, "BENCH_TRAIN_TIMING": str(timing)}, capture_output=True, text=True,
                                  cwd=work)
            line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
            if proc.returncode != 0 or line is None:
                sys.exit(f"{variant} failed:\n{proc.stderr[-4000:]}")
            result = json.loads(line[len("RESULT "):])
            result["wall_s"] = round(time.time() - started, 1)
            result["busy_cores_before"] = busy  # other work on the machine just before this run
            hooked = [json.loads(l) for l in timing.read_text().splitlines()] if timing.exists() else []
            if len(hooked) != 1:
                sys.exit(f"{variant}: expected one timed Trainer.train call, found {len(hooked)}")
            result.update({"train_cpu_s": hooked[0]["cpu_s"], "cpu_s_per_step": round(hooked[0]["cpu_s"] / result["steps"], 4),
                           "involuntary_switches": hooked[0]["involuntary_switches"],
                           "torch_threads": hooked[0]["torch_threads"], "omp_num_threads": hooked[0]["omp_num_threads"]})
            runs[variant].append(result)
            print(f"round {repeat + 1} {variant:{label_width}} {json.dumps(result)}", file=sys.stderr, flush=True)
    load_after = os.getloadavg()[0]
    return runs, load_before, load_after


def setting_differences(ours: dict, theirs: dict, ignored: set[str]) -> dict:
    """The fields of two resolved arguments classes (`to_dict()`) that differ, but for `ignored`."""
    return {k: {"hf-tuner": ours.get(k), "trl": theirs.get(k)} for k in sorted(set(ours) | set(theirs))
            if k not in ignored and ours.get(k) != theirs.get(k)}


def child_flags(args: argparse.Namespace, keys: tuple[str, ...]) -> list[str]:
    """`--key value` for each of `keys` of the parsed options: a child run gets the parent's settings."""
    return [item for key in keys for item in (f"--{key.replace('_', '-')}", str(getattr(args, key)))]


def print_grouping(runs: dict[str, list[dict]], medians: dict[str, dict]) -> None:
    """The length-grouped / random-order ratio of the pair benches (variants hf-tuner, hf-tuner-random)."""
    ratio, cpu_ratio, per_round, per_round_cpu = compare(runs, medians, "hf-tuner", "hf-tuner-random", "samples_per_second")
    if ratio is not None:
        print(f"length-grouped / random order pairs/s: {ratio:.2f}x (per round: {per_round}); "
              f"CPU s/step: {cpu_ratio:.2f}x (per round: {per_round_cpu})")


def medians_of(runs: dict[str, list[dict]]) -> dict[str, dict]:
    """Each variant's median of every numeric result field."""
    return {v: {k: statistics.median(r[k] for r in rs) for k in rs[0] if isinstance(rs[0][k], (int, float))}
            for v, rs in runs.items()}


def compare(runs: dict[str, list[dict]], medians: dict[str, dict], ours: str, theirs: str,
            metric: str) -> tuple[float | None, float | None, list[float], list[float]]:
    """ours / theirs on `metric` (higher is better) and theirs / ours on CPU s/step, of the medians and
    per round; (None, None, [], []) unless both variants ran."""
    if ours not in medians or theirs not in medians:
        return None, None, [], []
    a_runs, b_runs = runs[ours], runs[theirs]
    ratio = medians[ours][metric] / medians[theirs][metric]
    cpu_ratio = medians[theirs]["cpu_s_per_step"] / medians[ours]["cpu_s_per_step"]
    per_round = [round(a[metric] / b[metric], 3) for a, b in zip(a_runs, b_runs)]
    per_round_cpu = [round(b["cpu_s_per_step"] / a["cpu_s_per_step"], 3) for a, b in zip(a_runs, b_runs)]
    return ratio, cpu_ratio, per_round, per_round_cpu


def write_json(path: str, args: argparse.Namespace, info: dict, runs: dict, medians: dict,
               ratio: float | None, cpu_ratio: float | None, load_before: float, load_after: float) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps({"args": vars(args), "info": info, "runs": runs, "medians": medians,
                                      "ratio_hf_tuner_over_trl": ratio,
                                      "cpu_time_ratio_hf_tuner_over_trl": cpu_ratio,
                                      "load_average": [load_before, load_after]}, indent=2))
