"""Do hf-tuner's two GRPO / RLOO speed levers leave the results statistically the same?

Trains a reward-tuning recipe (default `gpt2-tweets-grpo`, as shipped: the quickstart classifier's
P(positive) less `shared_tags`) once per seed with each setting, one after the other in this process:

  default     as hf-tuner runs it: the classifier reward under bf16 autocast where the CPU runs bf16
              natively (`precision: auto`), completions from `loops.sample` (inverse-CDF draws)
  exact       `precision: fp32` and TRL's own `model.generate` (hf-tuner's lean sampling switched off)

and reports, per run, the held-out mean reward before and after training (64 prompts, TRL's
generation settings, seeded) with its standard error, the classifier's mean, distinct-2, the rising
word's share and the training time; then the mean over seeds of each setting and the difference of
the after-training means against their standard error.

    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 .venv/bin/python bench/grpo_sameness.py [--recipe gpt2-tweets-rloo] \\
        [--seeds 42,1,2] [--settings default,exact] [--runs runs] [overrides ...]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def mean_se(values: list[float]) -> tuple[float, float]:
    m = sum(values) / len(values)
    if len(values) < 2:
        return m, float("nan")
    return m, math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1) / len(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="gpt2-tweets-grpo")
    parser.add_argument("--seeds", default="42,1,2")
    parser.add_argument("--settings", default="default,exact")
    parser.add_argument("--runs", default=str(ROOT / "runs"), help="the folder holding quickstart/ and gpt2-tweets/")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "grpo-sameness.json"))
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()

    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    from hf_tuner.recipes import load_config
    from hf_tuner.run import train
    from hf_tuner.tasks import policy

    sys.path.insert(0, str(Path(__file__).parent))
    from profile_grpo import ensure_runs

    torch.set_num_threads(args.threads)
    runs = Path(args.runs).resolve()
    ensure_runs(runs)
    lean = policy.lean_sampling
    results = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for setting in args.settings.split(","):
            cfg = load_config(args.recipe, [f"model.name_or_path={runs / 'gpt2-tweets'}", f"training.seed={seed}",
                                            *args.overrides])
            if setting == "exact":
                cfg.reward = [spec.model_copy(update={"precision": "fp32"}) if spec.model else spec for spec in cfg.reward]
            cfg.reward = [spec.model_copy(update={"model": str(runs / "quickstart")}) if spec.model else spec
                          for spec in cfg.reward]
            policy.lean_sampling = lean if setting == "default" else (lambda base: base)
            out = Path(args.json).parent / f"sameness-{args.recipe}-{setting}-{seed}"
            try:
                summary = train(cfg, args.recipe, str(out), overwrite=True, argv=["sameness"], on_status=lambda m: None)
            finally:
                policy.lean_sampling = lean
            after = [json.loads(line) for line in (out / "samples_after.jsonl").read_text().splitlines()]
            before = [json.loads(line) for line in (out / "samples_before.jsonl").read_text().splitlines()]
            classifier = next(k for k in after[0] if k.startswith("reward/") and "shared_tags" not in k)
            row = {"seed": seed, "setting": setting, "train_s": summary.train["runtime_s"],
                   "steps": summary.train["global_steps"],
                   "reward_before": mean_se([r["reward"] for r in before]), "reward_after": mean_se([r["reward"] for r in after]),
                   "classifier_before": mean_se([r[classifier] for r in before]),
                   "classifier_after": mean_se([r[classifier] for r in after]),
                   "distinct_2": summary.metrics.get("distinct_2"), "rising_word_share": summary.metrics.get("rising_word_share")}
            results.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)

    print(f"\n{args.recipe}, overrides {args.overrides or 'none'}, {args.threads} thread(s)\n")
    print("| setting | seed | train s | steps | mean reward before -> after (± SE) | classifier P(positive) after | "
          "distinct-2 | rising word share |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['setting']} | {r['seed']} | {r['train_s']:.1f} | {r['steps']} | {r['reward_before'][0]:.3f} -> "
              f"{r['reward_after'][0]:.3f} ± {r['reward_after'][1]:.3f} | {r['classifier_after'][0]:.3f} | "
              f"{r['distinct_2']} | {r['rising_word_share']} |")
    settings = args.settings.split(",")
    means = {}
    for setting in settings:
        mine = [r for r in results if r["setting"] == setting]
        means[setting] = (sum(r["reward_after"][0] for r in mine) / len(mine),
                          math.sqrt(sum(r["reward_after"][1] ** 2 for r in mine)) / len(mine),
                          sum(r["train_s"] for r in mine) / len(mine))
        print(f"\n{setting}: mean reward after {means[setting][0]:.3f} ± {means[setting][1]:.3f} (SE of the mean of "
              f"{len(mine)} seeds' held-out means), mean train {means[setting][2]:.1f} s")
    if len(settings) == 2:
        (a, sa, ta), (b, sb, tb) = means[settings[0]], means[settings[1]]
        print(f"{settings[0]} - {settings[1]}: {a - b:+.3f} (SE of the difference {math.hypot(sa, sb):.3f}); "
              f"train time {tb / ta:.2f}x")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"args": vars(args), "runs": results, "means": means}, indent=2))


if __name__ == "__main__":
    main()
