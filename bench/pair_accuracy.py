"""Held-out pairwise reward accuracy of a preference-tuned run (KTO, ORPO, DPO), the way DPO measures it:
on each validation pair of the run's own recipe, does the policy's implicit reward
beta * log(pi / pi_ref) rank chosen above rejected? The reference is the model the run started from. KTO
reports only mean rewards; this gives it a per-pair measure with a standard error, sqrt(p (1 - p) / n).

    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 .venv/bin/python bench/pair_accuracy.py RUN [--beta 0.1]
"""
from __future__ import annotations

import argparse
import json
import math
import os


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run")
    parser.add_argument("--beta", type=float, default=0.1)
    args = parser.parse_args()
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

    from trl import DPOConfig, DPOTrainer

    from hf_tuner.recipes import load_run
    from hf_tuner.tasks import get_task
    from hf_tuner.tasks.parts.preference import load_pairs, reference_model

    run = load_run(args.run)
    job = get_task(run.cfg.task).bind(run.cfg)
    # the run's validation pairs, drawn as the run drew them (same data, seed and split settings)
    pairs = load_pairs(job).validation
    loaded = job.family.load_trained(run.path)
    reference = reference_model(job, run.cfg.model, loaded.model, loaded.processing)
    config = DPOConfig(output_dir="/tmp/pair_accuracy", beta=args.beta, per_device_eval_batch_size=64, report_to=[],
                       use_cpu=True, max_length=run.cfg.data.max_length, bf16=False, gradient_checkpointing=False)
    trainer = DPOTrainer(model=loaded.model, ref_model=reference, args=config, train_dataset=pairs, eval_dataset=pairs,
                         processing_class=loaded.processing)
    metrics = trainer.evaluate()
    p, n = metrics["eval_rewards/accuracies"], len(pairs)
    print(json.dumps({"run": args.run, "task": run.cfg.task, "pairs": n, "reward_accuracy": round(p, 4),
                      "standard_error": round(math.sqrt(p * (1 - p) / n), 4),
                      "reward_margin": round(metrics["eval_rewards/margins"], 4)}))


if __name__ == "__main__":
    main()
