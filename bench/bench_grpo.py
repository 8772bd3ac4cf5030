"""GRPO training speed, side by side: hf-tuner's `grpo` task and TRL's own `trl grpo` CLI on the same
policy, prompts, reward function and generation settings.

Variants (each in its own child process, the same explicit thread count, run interleaved):
  hf-tuner     `hf_tuner.run.train` on the bundled `gpt2-tweets-grpo` recipe, its policy, data and
               reward pointed at the bench's files (`reward: [{function: FILE.py:NAME}]`)
  trl-grpo     the real `.venv/bin/trl grpo` CLI (which relaunches itself through `accelerate launch`),
               `--reward_funcs MODULE.NAME` (a dotted import path, resolved from its working folder)

Same for both: one policy folder (the bundled `gpt2-tweets` recipe, a 2 x 128 GPT-2 with a BPE tokenizer
trained on tweets, shortened to 1,500 tweets x 1 epoch and trained once by hf-tuner into the bench's temp
folder, or --policy DIR; it is also the reference model of the KL term), the same prompts (hf-tuner's train split of packaged:tweet-prompts after its
max_prompt_length filter, written once to a JSONL file both sides read), the same Python reward
function (one file, `rewards.py`), num_generations, per_device_train_batch_size (completions per
step), max_completion_length, temperature, beta, learning rate, max_steps, seed, fp32, no gradient
checkpointing (GRPOConfig turns it on by default: off on both sides), no evaluation or checkpoints,
and OMP_NUM_THREADS=--threads (accelerate would otherwise set 1 for the TRL CLI; the hf-tuner child
also calls torch.set_num_threads). The resolved GRPOConfig of both sides is compared before any run.

Speed is each side's own Trainer metric, train_steps_per_second (the TRL CLI's is parsed from the
metrics line it prints). Completions are sampled, so each side's mean completion length (from its
logged `completions/mean_length`) is reported too: generation cost follows it. A sitecustomize.py on
both sides' PYTHONPATH times `Trainer.train` in CPU seconds and records torch's thread count (see
TIMING_HOOK); before each run the script waits (--quiet-wait) for other work on the machine to stop.

    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 .venv/bin/python bench/bench_grpo.py [--max-steps 300] [--repeats 2]
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = ("hf-tuner", "trl-grpo")
RECIPE = "gpt2-tweets-grpo"
ROOT = Path(__file__).resolve().parent.parent
# GRPOConfig fields that may differ: paths and names, and hf-tuner's explicit reward_weights [1.0] (TRL: None = 1.0 each)
IGNORED = {"output_dir", "logging_dir", "run_name", "reward_weights", "hub_token", "project"}

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

REWARD_FILE = '''"""The bench's reward: +1 per positive word, -1 per negative word in a completion, over its word count."""
import re

POSITIVE = {"good", "great", "love", "happy", "thanks", "thank", "awesome", "best", "nice", "fun", "amazing", "lol", "cool"}
NEGATIVE = {"bad", "hate", "sad", "worst", "sucks", "sorry", "tired", "sick", "miss", "never", "no", "not", "ugh"}


def sentiment_words(completions, **kwargs):
    out = []
    for text in completions:
        words = re.findall(r"[a-z']+", text.lower())
        score = sum((w in POSITIVE) - (w in NEGATIVE) for w in words)
        out.append(score / max(len(words), 1))
    return out
'''


def trl_bin() -> str:
    return str(Path(sys.executable).with_name("trl"))


def hf_overrides(work: Path, args: argparse.Namespace) -> list[str]:
    return [f"model.name_or_path={work / 'policy'}", f"data.train={work / 'data' / 'train.jsonl'}",
            f"data.validation={work / 'val.jsonl'}", "data.max_train_samples=null",
            f"reward=[{{function: {work / 'rewards.py'}:sentiment_words}}]",
            f"training.num_generations={args.num_generations}", f"training.per_device_train_batch_size={args.batch_size}",
            f"training.max_completion_length={args.max_completion_length}", f"training.temperature={args.temperature}",
            f"training.beta={args.beta}", f"training.learning_rate={args.learning_rate}", f"training.max_steps={args.max_steps}",
            f"training.seed={args.seed}", "training.logging_steps=10", "training.save_strategy=no",
            "training.eval_strategy=no", "eval.before_training=false"]


def trl_args(work: Path, args: argparse.Namespace, out: Path) -> list[str]:
    return ["--model_name_or_path", str(work / "policy"),
            "--dataset_name", str(work / "data"),  # a folder holding train.jsonl: load_dataset(folder)["train"]
            "--reward_funcs", "rewards.sentiment_words",  # rewards.py in the working folder (TRL puts cwd on sys.path)
            "--output_dir", str(out), "--num_generations", str(args.num_generations),
            "--per_device_train_batch_size", str(args.batch_size), "--max_completion_length", str(args.max_completion_length),
            "--temperature", str(args.temperature), "--beta", str(args.beta), "--learning_rate", str(args.learning_rate),
            "--max_steps", str(args.max_steps), "--seed", str(args.seed), "--logging_steps", "10",
            "--eval_strategy", "no", "--save_strategy", "no", "--report_to", "none",
            "--bf16", "false", "--gradient_checkpointing", "false", "--use_cpu", "true",
            # unused with max_steps, no eval and no saves; set as hf-tuner resolves them so every field matches
            "--num_train_epochs", "1", "--per_device_eval_batch_size", "32", "--save_total_limit", "1"]


def prepare(work: Path, args: argparse.Namespace) -> dict:
    """Train the policy once, write the prompts and the reward file, compare both sides' settings."""
    from hf_tuner.recipes import load_config
    from hf_tuner.run import train, training_arguments
    from hf_tuner.tasks import get_task
    from trl.scripts.grpo import make_parser

    started = time.time()
    if args.policy:  # a policy folder from an earlier bench run (its `policy/`) or `hf-tuner train gpt2-tweets`
        shutil.copytree(args.policy, work / "policy")
    else:  # the gpt2-tweets recipe, shortened (1,500 tweets, 1 epoch): a policy that writes tweet-like text
        train(load_config("gpt2-tweets", [f"training.seed={args.seed}", "data.max_train_samples=1500",
                                          "training.num_train_epochs=1", "training.eval_strategy=no",
                                          "eval.before_training=false"]),
              "bench-policy", str(work / "policy"), overwrite=True, argv=["bench"], on_status=lambda m: None)
    policy_s = time.time() - started
    (work / "rewards.py").write_text(REWARD_FILE)

    # hf-tuner's own prompt split (seeded; prompts over data.max_prompt_length tokens dropped) -> JSONL
    cfg = load_config(RECIPE, [f"model.name_or_path={work / 'policy'}", f"training.seed={args.seed}",
                               f"reward=[{{function: {work / 'rewards.py'}:sentiment_words}}]"])
    task = get_task(cfg.task)(cfg)
    splits = task.load_data()
    features = task.preprocess(splits, task.load_processing(splits))
    (work / "data").mkdir()
    features.train.select_columns(["prompt"]).to_json(str(work / "data" / "train.jsonl"), lines=True, force_ascii=False)
    features.validation.select_columns(["prompt"]).select(range(min(args.eval_rows, len(features.validation)))).to_json(
        str(work / "val.jsonl"), lines=True, force_ascii=False)

    cfg = load_config(RECIPE, hf_overrides(work, args))
    task = get_task(cfg.task)(cfg)
    ours = training_arguments(cfg, task, work / "probe").to_dict()
    _, theirs, _, _ = make_parser().parse_args_and_config(trl_args(work, args, work / "probe"))
    theirs = theirs.to_dict()
    differences = {k: {"hf-tuner": ours.get(k), "trl": theirs.get(k)} for k in sorted(set(ours) | set(theirs))
                   if k not in IGNORED and ours.get(k) != theirs.get(k)}
    return {"prompts": len(features.train), "policy_train_s": round(policy_s, 1), "setting_differences": differences,
            "reward_weights": {"hf-tuner": ours.get("reward_weights"), "trl": theirs.get("reward_weights")}}


def log_means(history: list[dict]) -> dict:
    def mean(key: str):
        values = [float(h[key]) for h in history if key in h]
        return round(sum(values) / len(values), 3) if values else None

    return {"mean_completion_length": mean("completions/mean_length"), "mean_reward": mean("reward")}


def run_hf_tuner(work: Path, args: argparse.Namespace, run: str) -> dict:
    from hf_tuner.recipes import load_config
    from hf_tuner.run import train

    out = work / f"hf-{run}"
    cfg = load_config(RECIPE, hf_overrides(work, args))
    summary = train(cfg, "bench-grpo", str(out), overwrite=True, argv=["bench"], on_status=lambda m: None)
    t = summary["train"]
    history = json.loads((out / "log_history.json").read_text())
    return {"steps_per_second": t["steps_per_second"], "samples_per_second": t["samples_per_second"],
            "train_runtime_s": t["runtime_s"], "steps": t["global_steps"], **log_means(history),
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}


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


def run_trl(work: Path, args: argparse.Namespace, run: str) -> dict:
    out = work / f"trl-{run}"
    proc = subprocess.run([trl_bin(), "grpo", *trl_args(work, args, out)], capture_output=True, text=True,
                          cwd=work, env=os.environ)
    if proc.returncode != 0:
        raise RuntimeError(f"trl grpo failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    logs = printed_dicts(proc.stdout + "\n" + proc.stderr)
    final = next((d for d in reversed(logs) if "train_runtime" in d), None)
    if final is None:
        raise RuntimeError("no final metrics line (train_runtime) in the TRL CLI's output")
    m = {k: float(v) for k, v in final.items()}
    return {"steps_per_second": m["train_steps_per_second"], "samples_per_second": m["train_samples_per_second"],
            "train_runtime_s": round(m["train_runtime"], 2), "steps": round(m["train_steps_per_second"] * m["train_runtime"]),
            **log_means(logs), "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20, 2)}


def child(variant: str, work: Path, args: argparse.Namespace, run: str) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    return run_trl(work, args, run) if variant == "trl-grpo" else run_hf_tuner(work, args, run)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-steps", type=int, default=300, help="optimizer steps of every run")
    parser.add_argument("--num-generations", type=int, default=8, help="completions per prompt")
    parser.add_argument("--batch-size", type=int, default=16, help="completions per step (per_device_train_batch_size)")
    parser.add_argument("--max-completion-length", type=int, default=24)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--beta", type=float, default=0.05, help="KL coefficient (> 0: a reference model is loaded)")
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--eval-rows", type=int, default=8, help="held-out prompts hf-tuner completes after training")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--policy", help="reuse this policy folder instead of training one (e.g. runs/gpt2-tweets)")
    parser.add_argument("--threads", type=int, default=2, help="torch/OpenMP threads of every variant")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved rounds of all variants")
    parser.add_argument("--quiet-wait", type=float, default=300,
                        help="before each run, wait up to this many seconds for other work to use < 0.3 cores (0: don't)")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "grpo.json"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--run", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        print("RESULT " + json.dumps(child(args.child, Path(args.work), args, args.run)), flush=True)
        return

    work = Path(tempfile.mkdtemp(prefix="bench-grpo-"))
    os.environ["HF_TUNER_CACHE"] = str(work / "cache")
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    info = prepare(work, args)
    print(f"work folder {work}\n{json.dumps(info, indent=1)}", file=sys.stderr)
    if info["setting_differences"]:
        sys.exit(f"the two sides would not train with the same settings: {info['setting_differences']}")
    (work / "hook").mkdir()
    (work / "hook" / "sitecustomize.py").write_text(TIMING_HOOK)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(work / "hook"), os.environ.get("PYTHONPATH")]))}
    variants = args.variants.split(",")
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    load_before = os.getloadavg()[0]
    for repeat in range(args.repeats):
        order = variants if repeat % 2 == 0 else variants[::-1]  # alternate who goes first
        for variant in order:
            cmd = [sys.executable, __file__, "--child", variant, "--work", str(work), "--run", f"{repeat}"]
            for key in ("max_steps", "num_generations", "batch_size", "max_completion_length", "temperature", "beta",
                        "learning_rate", "eval_rows", "seed", "threads"):
                cmd += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
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
            print(f"round {repeat + 1} {variant:9} {json.dumps(result)}", file=sys.stderr, flush=True)
    load_after = os.getloadavg()[0]

    medians = {v: {k: statistics.median(r[k] for r in rs) for k in rs[0] if isinstance(rs[0][k], (int, float))}
               for v, rs in runs.items()}
    print(f"\nGRPO, {info['prompts']} tweet prompts, GPT-2 2x128 policy (gpt2-tweets), {args.num_generations} generations x "
          f"{args.max_completion_length} tokens, {args.batch_size} completions/step, beta {args.beta:g}, lr {args.learning_rate:g}, "
          f"{args.max_steps} steps, fp32, {args.threads} thread(s), medians of {args.repeats}; "
          f"load average {load_before:.1f} -> {load_after:.1f}\n")
    print("| variant | steps | train s | steps/s | completions/s | CPU s/step | torch threads | mean completion tokens "
          "| mean reward | peak RSS GB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for v, m in medians.items():
        print(f"| {v} | {m['steps']:g} | {m['train_runtime_s']:.2f} | {m['steps_per_second']:.3f} | "
              f"{m['samples_per_second']:.2f} | {m['cpu_s_per_step']:.3f} | {m['torch_threads']:g} | "
              f"{m.get('mean_completion_length', float('nan')):.2f} | {m.get('mean_reward', float('nan')):.3f} | "
              f"{m['peak_rss_gb']:.2f} |")
    ratio = cpu_ratio = None
    if "hf-tuner" in medians and "trl-grpo" in medians:
        ours, theirs = runs["hf-tuner"], runs["trl-grpo"]
        ratio = medians["hf-tuner"]["steps_per_second"] / medians["trl-grpo"]["steps_per_second"]
        cpu_ratio = medians["trl-grpo"]["cpu_s_per_step"] / medians["hf-tuner"]["cpu_s_per_step"]
        per_round = [round(a["steps_per_second"] / b["steps_per_second"], 3) for a, b in zip(ours, theirs)]
        per_round_cpu = [round(b["cpu_s_per_step"] / a["cpu_s_per_step"], 3) for a, b in zip(ours, theirs)]
        print(f"\nhf-tuner / trl grpo steps/s: {ratio:.2f}x (per round: {per_round}; target >= 0.95x)")
        print(f"same on CPU time (trl CPU s/step / hf-tuner CPU s/step): {cpu_ratio:.2f}x (per round: {per_round_cpu})")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"args": vars(args), "info": info, "runs": runs, "medians": medians,
                                               "ratio_hf_tuner_over_trl": ratio,
                                               "cpu_time_ratio_hf_tuner_over_trl": cpu_ratio,
                                               "load_average": [load_before, load_after]}, indent=2))


if __name__ == "__main__":
    main()
