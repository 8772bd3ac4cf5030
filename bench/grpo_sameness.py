"""Do hf-tuner's two GRPO / RLOO speed levers leave the results statistically the same?

Trains a reward-tuning recipe (default `gpt2-tweets-grpo`, as shipped: the quickstart classifier's
P(positive) less `shared_tags`) once per seed with each setting, one after the other in this process:

  default     as hf-tuner runs it: the classifier reward at `precision: auto` (bf16 on a GPU of compute
              capability 8+, fp32 elsewhere), completions from `loops.sample` (inverse-CDF draws)
  exact       `precision: fp32`, TRL's own `model.generate` (hf-tuner's lean sampling switched off) and
              the whole reward model (its last layer for every token, not only the first)

and reports, per run, the held-out mean reward before and after training (64 prompts, TRL's
generation settings, seeded) with its standard error, the classifier's mean, "coachella" counts (the
twin's known hack), distinct-2, the rising word's share and the training time; then the mean over
seeds of each setting and the difference of the after-training means, against two standard errors:
one from the runs' own held-out standard errors, one from the spread of the seeds' means.

    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 .venv/bin/python bench/grpo_sameness.py [--recipe gpt2-tweets-rloo] \\
        [--seeds 42,1,2] [--settings default,exact] [--runs runs] [--reuse] [overrides ...]
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
    parser.add_argument("--reuse", action="store_true", help="report a completed run folder of a setting and seed "
                        "instead of training it again")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()

    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    from hf_tuner.recipes import load_config
    from hf_tuner.run import train
    from hf_tuner.rundir import RunSummary
    from hf_tuner.tasks import policy
    from hf_tuner.tasks.parts import families

    sys.path.insert(0, str(Path(__file__).parent))
    from profile_grpo import ensure_runs

    torch.set_num_threads(args.threads)
    runs = Path(args.runs).resolve()
    ensure_runs(runs)
    lean, trims = policy.lean_sampling, families.trims_to_first_token
    results = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for setting in args.settings.split(","):
            cfg = load_config(args.recipe, [f"model.name_or_path={runs / 'gpt2-tweets'}", f"training.seed={seed}",
                                            *args.overrides])
            if setting == "exact":
                cfg.reward = [spec.model_copy(update={"precision": "fp32"}) if spec.model else spec for spec in cfg.reward]
            cfg.reward = [spec.model_copy(update={"model": str(runs / "quickstart")}) if spec.model else spec
                          for spec in cfg.reward]
            out = Path(args.json).with_name(f"{Path(args.json).stem}-{setting}-{seed}")  # the run folder, kept
            done = out / "summary.json"
            if args.reuse and done.is_file() and json.loads(done.read_text()).get("status") == "completed":
                summary = RunSummary.model_validate_json(done.read_text())  # this setting and seed, trained before
            else:
                policy.lean_sampling = lean if setting == "default" else (lambda base: base)
                families.trims_to_first_token = trims if setting == "default" else (lambda model: False)
                try:
                    summary = train(cfg, args.recipe, str(out), overwrite=True, argv=["sameness"], on_status=lambda m: None)
                finally:
                    policy.lean_sampling, families.trims_to_first_token = lean, trims
            # (split on newlines only: a completion may hold U+2028, which str.splitlines also splits on)
            after = [json.loads(line) for line in (out / "samples_after.jsonl").read_text().split("\n") if line]
            before = [json.loads(line) for line in (out / "samples_before.jsonl").read_text().split("\n") if line]
            classifier = next(k for k in after[0] if k.startswith("reward/") and "shared_tags" not in k)
            hacked = sum("coachella" in r["completion"].lower() for r in before), sum("coachella" in r["completion"].lower() for r in after)
            row = {"seed": seed, "setting": setting, "train_s": summary.train["runtime_s"],
                   "steps": summary.train["global_steps"],
                   "reward_before": mean_se([r["reward"] for r in before]), "reward_after": mean_se([r["reward"] for r in after]),
                   "classifier_before": mean_se([r[classifier] for r in before]),
                   "classifier_after": mean_se([r[classifier] for r in after]),
                   "coachella": hacked, "samples": len(after),
                   "distinct_2_before": (summary.metrics_before or {}).get("distinct_2"),
                   "distinct_2": summary.metrics.get("distinct_2"), "rising_word_share": summary.metrics.get("rising_word_share")}
            results.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)

    print(f"\n{args.recipe}, overrides {args.overrides or 'none'}, {args.threads} thread(s)\n")
    print("| setting | seed | train s | steps | mean reward before -> after (± SE) | classifier P(positive) before -> after | "
          "with 'coachella' | distinct-2 | rising word share |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['setting']} | {r['seed']} | {r['train_s']:.1f} | {r['steps']} | {r['reward_before'][0]:.3f} -> "
              f"{r['reward_after'][0]:.3f} ± {r['reward_after'][1]:.3f} | {r['classifier_before'][0]:.3f} -> "
              f"{r['classifier_after'][0]:.3f} | {r['coachella'][0]} -> {r['coachella'][1]} of {r['samples']} | "
              f"{r['distinct_2_before']} -> {r['distinct_2']} | {r['rising_word_share']} |")
    settings = args.settings.split(",")
    means = {}
    for setting in settings:
        mine = [r for r in results if r["setting"] == setting]
        mean, seeds_se = mean_se([r["reward_after"][0] for r in mine])
        means[setting] = (mean, math.sqrt(sum(r["reward_after"][1] ** 2 for r in mine)) / len(mine), seeds_se,
                          sum(r["train_s"] for r in mine) / len(mine))
        print(f"\n{setting}: mean reward after {mean:.3f} ± {means[setting][1]:.3f} (from the runs' held-out SEs) "
              f"± {seeds_se:.3f} (from the spread of {len(mine)} seeds), mean train {means[setting][3]:.1f} s")
    if len(settings) == 2:
        (a, sa, spread_a, ta), (b, sb, spread_b, tb) = means[settings[0]], means[settings[1]]
        print(f"{settings[0]} - {settings[1]}: {a - b:+.3f} (SE of the difference {math.hypot(sa, sb):.3f} from the "
              f"runs, {math.hypot(spread_a, spread_b):.3f} from the seeds' spread); train time {tb / ta:.2f}x")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"args": vars(args), "runs": results, "means": means}, indent=2))


if __name__ == "__main__":
    main()
