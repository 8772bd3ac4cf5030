"""Does the length-grouped default cost quality? Each task's offline twin trained at a schedule where the
model has learned, three ways, over several seeds; each run in its own child process:

  grouped        the default: `train_sampling_strategy: group_by_length` (hf_tuner.tasks.parts.sampling: batches
                 of about one length, the batches shuffled)
  grouped-stock  the same with transformers' mega-batch order (each mega-batch's batches longest to
                 shortest, the mega-batches one after another): hf-tuner's default before issue 31
  random         `train_sampling_strategy: random`

Reports, per task and variant, the quality metric's mean and standard error over the seeds (the seeds'
spread / sqrt(n)), the untrained model's metric (the same for every variant: evaluated before training)
and training samples/s. Quality does not depend on the machine's load (training on CPU is
deterministic), the samples/s do: quote speed from the side-by-side benches, on a quiet machine.

    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 .venv/bin/python bench/bench_grouping.py \
        [--tasks ner,dpo,...] [--seeds 42,1,2] [--variants grouped,grouped-stock,random]

The DPO twin starts from a `gpt2-tweets` run (--policy; trained first when the folder is missing).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent

@dataclass(frozen=True)
class Twin:
    """A task's offline twin as this bench trains it."""
    recipe: str
    overrides: tuple[str, ...]
    metric: str
    greater_is_better: bool
    schedule: str  # what it trains for: the recipe's own schedule unless said
    # the metric at the recipe's own schedule, where the bench trains for less (README's recipe table): the
    # comparison must be taken where the model has learned, within 80% of it (tests/test_bench_grouping.py)
    full_schedule: Optional[float] = None


TASKS: dict[str, Twin] = {
    "ner": Twin("ner-tweets", ("training.num_train_epochs=2",), "f1", True,
                "2 of the recipe's 5 epochs, 256 steps", full_schedule=0.540),
    "dpo": Twin("gpt2-tweets-dpo", (), "reward_accuracy", True, "the recipe's 2 epochs"),
    "reward": Twin("tweets-reward", (), "accuracy", True, "the recipe's 1 epoch"),
    "sft": Twin("gpt2-tweets", ("data.packing=false",), "perplexity", False,
                "the recipe's 2 epochs, unpacked: packed blocks all have one length"),
    "text": Twin("quickstart", (), "accuracy", True, "the recipe's 2 epochs"),
    "qa": Twin("qa-tweets", (), "f1", True, "the recipe's 4 epochs"),
}
VARIANTS = ("grouped", "grouped-stock", "random")


def child(task: str, variant: str, seed: int, policy: str) -> None:
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    if variant == "grouped-stock":
        from transformers.trainer_pt_utils import get_length_grouped_indices

        import hf_tuner.tasks.parts.sampling as sampling

        sampling.length_grouped_indices = get_length_grouped_indices
    from hf_tuner.recipes import load_config
    from hf_tuner.run import train

    twin = TASKS[task]
    recipe, overrides, metric = twin.recipe, twin.overrides, twin.metric
    strategy = "random" if variant == "random" else "group_by_length"
    extra = [f"model.name_or_path={policy}"] if task == "dpo" else []
    cfg = load_config(recipe, [*overrides, *extra, f"training.seed={seed}", "eval.before_training=true",
                               f"training.train_sampling_strategy={strategy}", "training.eval_strategy=no"])
    summary = train(cfg, recipe, str(Path(tempfile.mkdtemp()) / "run"), argv=["bench"], on_status=lambda m: None)
    if summary.train_sampling_strategy != strategy:
        raise SystemExit(f"trained with {summary.train_sampling_strategy}, not {strategy}")
    print("RESULT " + json.dumps({"task": task, "variant": variant, "seed": seed, "metric": metric,
                                  "after": summary.metrics[metric], "before": summary.metrics_before[metric],
                                  "samples_per_second": summary.train["samples_per_second"],
                                  "steps": summary.train["global_steps"]}), flush=True)


def mean_se(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else float("nan"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--seeds", default="42,1,2")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--policy", default=str(ROOT / "runs" / "gpt2-tweets"))
    parser.add_argument("--jsonl", default=str(ROOT / "bench" / "results" / "grouping.jsonl"),
                        help="one line per run, appended as runs finish")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        task, variant, seed = args.child
        return child(task, variant, int(seed), args.policy)
    tasks, variants = args.tasks.split(","), args.variants.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    if "dpo" in tasks and not (Path(args.policy) / "summary.json").is_file():
        subprocess.run([str(Path(sys.executable).with_name("hf-tuner")), "train", "gpt2-tweets", "-o", args.policy],
                       env=env, check=True, cwd=ROOT)
    Path(args.jsonl).parent.mkdir(parents=True, exist_ok=True)
    results: list[dict] = []
    for task in tasks:
        for seed in seeds:
            for variant in variants:
                cmd = [sys.executable, __file__, "--child", task, variant, str(seed), "--policy", args.policy]
                proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
                line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
                if proc.returncode != 0 or line is None:
                    sys.exit(f"{task} {variant} seed {seed} failed:\n{proc.stderr[-4000:]}")
                result = json.loads(line[len("RESULT "):])
                results.append(result)
                with open(args.jsonl, "a") as f:
                    f.write(json.dumps(result) + "\n")
                print(json.dumps(result), file=sys.stderr, flush=True)
    print_table(results)


def print_table(results: list[dict]) -> None:
    """Markdown: per task and variant the metric's mean +- SE over the seeds, the untrained metric, samples/s."""
    print("| task (schedule) | metric (untrained) | " + " | ".join(VARIANTS) + " | grouped - random (SE) |")
    print("|---|---|" + "---|" * (len(VARIANTS) + 1))
    for task, twin in TASKS.items():
        rows = [r for r in results if r["task"] == task]
        if not rows:
            continue
        cells, means = [], {}
        for variant in VARIANTS:
            values = [r["after"] for r in rows if r["variant"] == variant]
            if not values:
                cells.append("-")
                continue
            mean, se = mean_se(values)
            means[variant] = values
            speed = statistics.fmean(r["samples_per_second"] for r in rows if r["variant"] == variant)
            cells.append(f"{mean:.3f} +- {se:.3f} ({len(values)} seeds, {speed:.1f}/s)")
        gap = "-"
        if "grouped" in means and "random" in means and len(means["grouped"]) == len(means["random"]):
            diffs = [a - b for a, b in zip(means["grouped"], means["random"])]  # paired by seed
            mean, se = mean_se(diffs)
            gap = f"{mean:+.3f} ({se:.3f})"
        before = statistics.fmean(r["before"] for r in rows)
        print(f"| {task}: `{twin.recipe}` ({twin.schedule}) | {twin.metric} ({before:.3f}) | " + " | ".join(cells) + f" | {gap} |")


if __name__ == "__main__":
    main()
