"""Where one GRPO step's time goes on the `gpt2-tweets-grpo` twin, with the classifier reward as
shipped (the quickstart MiniLM's P(positive) of prompt + completion).

Trains the recipe for --steps steps through `hf_tuner.run.train` (the real run, nothing replaced)
with wall-clock timers wrapped around TRL's GRPOTrainer methods and the accelerator's backward:

  generation        GRPOTrainer._generate (tokenising the prompts, sampling the completions, decoding)
  reward scoring    GRPOTrainer._calculate_rewards (every reward function on every completion)
  log-probs, no grad  _get_per_token_logps_and_entropies under no_grad (the old policy's / the KL
                    reference's log-probs of the completions)
  policy forward    the same with grad (the loss's forward pass)
  backward          accelerator.backward
  other             the rest of the step: optimizer, scheduler, advantages, logging, data loading

The first step is left out of the table (warm-up: lazy initialisation, first allocations).

    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 .venv/bin/python bench/profile_grpo.py --steps 20 \\
        [--runs runs] [--threads 2] [overrides ...]

`--trl-sampling` switches hf-tuner's lean sampling off (completions from TRL's `model.generate`, as
before it), `--whole-reward` the reward's trimmed last layer (`families.first_token_last_layer`); with
both and the override `reward=[{model: runs/quickstart, label: positive, precision: fp32}]` the step
is TRL's own. `--model-decode` decodes through the policy's own forward instead of
`decoding.OneTokenDecoder` (the same tokens for a seed: the run folder beside --json,
bench/results/grpo-profile-run by default, ends with the same `model.safetensors` and
`samples_after.jsonl` either way). `--runs` is the folder
holding `quickstart/` and `gpt2-tweets/` (the recipe's reward and policy); they are trained there
first when missing. Extra arguments are recipe overrides (e.g. to try a setting).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("generation", "reward scoring", "log-probs, no grad", "policy forward", "backward", "other")


def ensure_runs(runs: Path) -> None:
    from hf_tuner.recipes import load_config
    from hf_tuner.run import train

    for name in ("quickstart", "gpt2-tweets"):
        if not (runs / name / "summary.json").is_file():
            print(f"training {name} into {runs / name} ...", file=sys.stderr, flush=True)
            train(load_config(name), name, str(runs / name), overwrite=True, argv=["profile"], on_status=lambda m: None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--runs", default=str(ROOT / "runs"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "grpo-profile.json"))
    parser.add_argument("--trl-sampling", action="store_true", help="completions from TRL's model.generate")
    parser.add_argument("--whole-reward", action="store_true", help="the reward model's last layer for every token")
    parser.add_argument("--model-decode", action="store_true", help="decoding steps through the policy's own forward, "
                        "not decoding.OneTokenDecoder")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()

    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch
    import trl

    torch.set_num_threads(args.threads)
    runs = Path(args.runs).resolve()
    ensure_runs(runs)

    steps: list[dict[str, float]] = []
    current: dict[str, float] = defaultdict(float)

    def timed(owner, name: str, part) -> None:
        original = getattr(owner, name)

        def wrapper(*a, **kw):
            t0 = time.perf_counter()
            try:
                return original(*a, **kw)
            finally:
                label = part() if callable(part) else part
                current[label] += time.perf_counter() - t0

        setattr(owner, name, wrapper)

    trainer_cls = trl.GRPOTrainer
    timed(trainer_cls, "_generate", "generation")
    timed(trainer_cls, "_calculate_rewards", "reward scoring")
    timed(trainer_cls, "_get_per_token_logps_and_entropies",
          lambda: "policy forward" if torch.is_grad_enabled() else "log-probs, no grad")
    from accelerate import Accelerator

    timed(Accelerator, "backward", "backward")

    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def on_step_begin(self, *_, **__):
            current.clear()
            current["_start"] = time.perf_counter()

        def on_step_end(self, *_, **__):
            total = time.perf_counter() - current.pop("_start")
            known = sum(current.values())
            steps.append({**{p: current.get(p, 0.0) for p in PARTS[:-1]}, "other": total - known, "total": total})

    from hf_tuner.recipes import load_config
    from hf_tuner.run import train
    from hf_tuner.tasks import policy
    from hf_tuner.tasks.parts import decoding, families

    if args.trl_sampling:
        policy.lean_sampling = lambda base: base
    if args.whole_reward:
        families.trims_to_first_token = lambda model: False
    if args.model_decode:
        decoding.decodes_one_token = lambda model: False
    overrides = [f"model.name_or_path={runs / 'gpt2-tweets'}", f"reward=[{{model: '{runs / 'quickstart'}', label: positive}}]",
                 f"training.max_steps={args.steps + 1}", "eval.before_training=false", "data.max_eval_samples=8",
                 "training.logging_steps=1000", *args.overrides]
    cfg = load_config("gpt2-tweets-grpo", overrides)
    out = Path(args.json).parent / "grpo-profile-run"
    summary = train(cfg, "profile-grpo", str(out), overwrite=True, argv=["profile"], on_status=lambda m: None,
                    callbacks=[lambda job, trainer, features: StepClock()]).model_dump()

    measured = steps[1:]  # the first step warms up
    mean = {k: sum(s[k] for s in measured) / len(measured) for k in (*PARTS, "total")}
    print(f"\ngpt2-tweets-grpo, {len(measured)} steps after 1 warm-up step, {args.threads} thread(s), "
          f"overrides {args.overrides or 'none'}{', TRL sampling' if args.trl_sampling else ''}"
          f"{', whole reward model' if args.whole_reward else ''}{', model decode' if args.model_decode else ''}; mean reward after: {summary['metrics'].get('mean_reward')}\n")
    print("| part | s / step | share |")
    print("|---|---|---|")
    for part in PARTS:
        print(f"| {part} | {mean[part]:.3f} | {mean[part] / mean['total']:.0%} |")
    print(f"| **step** | **{mean['total']:.3f}** | 100% |")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"args": vars(args), "mean": mean, "steps": steps}, indent=2))


if __name__ == "__main__":
    main()
