"""Reward-model training throughput, side by side: hf-tuner's `reward-modeling` task and TRL's own
`trl reward` CLI on the same model, pairs and settings.

Variants (each in its own child process, the same explicit thread count, run interleaved):
  hf-tuner     `hf_tuner.run.train` on the bundled `tweets-reward` recipe (pairs pre-tokenised by
               hf-tuner, trained by trl.RewardTrainer), its data pointed at the bench's JSONL files
  trl-reward   the real `.venv/bin/trl reward` CLI (which relaunches itself through `accelerate launch`)

Same for both: packaged MiniLM (all-MiniLM-L6-v2, a one-output score head on top), the first --rows
pairs of hf-tuner's own train split of packaged:tweet-preferences (written once to a JSONL file that
both sides read), max_length, batch size, learning rate, epochs, seed, fp32, no gradient
checkpointing (RewardConfig turns it on by default: off on both sides), no evaluation or checkpoints
during training, and OMP_NUM_THREADS=--threads (accelerate would otherwise set 1 for the TRL CLI;
the hf-tuner child also calls torch.set_num_threads). Throughput is each side's own Trainer metric
(train_samples_per_second = pairs/s); the TRL CLI's is parsed from the metrics line it prints. A
sitecustomize.py on both sides' PYTHONPATH times `Trainer.train` in CPU seconds and records torch's thread
count (see TIMING_HOOK); before each run the script waits (--quiet-wait) for other work on the machine to stop.

Known difference, by necessity: `trl reward` on a BERT tokenizer (no eos token) crashes while
appending one unless given `--eos_token '[SEP]'`; it then tokenises prompt + chosen + "[SEP]", so
each of its sequences ends [SEP] [SEP] (one token longer than hf-tuner's [CLS] ... [SEP]).

After training, the TRL child scores the same held-out pairs with hf-tuner's pair metrics (pairwise
accuracy), so the two trained models can be compared too.

    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 .venv/bin/python bench/bench_reward.py [--rows 1000] [--repeats 2]
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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

VARIANTS = ("hf-tuner", "trl-reward")
RECIPE = "tweets-reward"
ROOT = Path(__file__).resolve().parent.parent
# RewardConfig fields that may differ between the two sides (every other one must be equal): paths and
# names; max_length (hf-tuner cuts pairs to data.max_length itself and gives RewardTrainer None; TRL drops
# longer pairs: none here, the script counts them); eos_token (TRL needs '[SEP]', see above)
IGNORED = {"output_dir", "logging_dir", "run_name", "hub_token", "project", "max_length", "eos_token"}


def trl_bin() -> str:
    return str(Path(sys.executable).with_name("trl"))


def hf_overrides(work: Path, args: argparse.Namespace) -> list[str]:
    return [f"data.train={work / 'data' / 'train.jsonl'}", f"data.validation={work / 'val.jsonl'}",
            f"data.max_length={args.max_length}", f"training.per_device_train_batch_size={args.batch_size}",
            f"training.learning_rate={args.learning_rate}", f"training.num_train_epochs={args.epochs}",
            f"training.seed={args.seed}", "training.logging_steps=10", "training.eval_strategy=no",
            "training.save_strategy=no", "eval.before_training=false"]


def trl_args(work: Path, args: argparse.Namespace, out: Path) -> list[str]:
    from hf_tuner.packaged import resolve_model

    return ["--model_name_or_path", resolve_model("packaged:all-MiniLM-L6-v2"),
            "--dataset_name", str(work / "data"),  # a folder holding train.jsonl: load_dataset(folder)["train"]
            "--output_dir", str(out), "--max_length", str(args.max_length),
            "--per_device_train_batch_size", str(args.batch_size), "--learning_rate", str(args.learning_rate),
            "--num_train_epochs", str(args.epochs), "--seed", str(args.seed), "--logging_steps", "10",
            "--eval_strategy", "no", "--save_strategy", "no", "--report_to", "none",
            "--bf16", "false", "--gradient_checkpointing", "false", "--use_cpu", "true",
            "--per_device_eval_batch_size", "64", "--save_total_limit", "1",  # unused (no eval, no saves): as hf-tuner
            "--eos_token", "[SEP]"]  # a BERT tokenizer has no eos token: TRL crashes appending one without this


def prepare(work: Path, args: argparse.Namespace) -> dict:
    """Write hf-tuner's train split (first --rows pairs) and --eval-rows held-out pairs as JSONL; check that
    both sides resolve the same training settings; count each side's tokens."""
    from transformers import AutoTokenizer

    from hf_tuner.recipes import load_config
    from hf_tuner.run import training_arguments
    from hf_tuner.tasks import get_task
    from trl.scripts.reward import make_parser

    cfg = load_config(RECIPE, [f"data.max_length={args.max_length}", f"training.seed={args.seed}"])
    splits = get_task(cfg.task)(cfg).load_data()
    train = splits.train.select(range(min(args.rows, len(splits.train))))
    val = splits.validation.select(range(min(args.eval_rows, len(splits.validation))))
    (work / "data").mkdir(parents=True)
    train.to_json(str(work / "data" / "train.jsonl"), lines=True, force_ascii=False)
    val.to_json(str(work / "val.jsonl"), lines=True, force_ascii=False)

    # the settings each side would train with, compared field by field
    cfg = load_config(RECIPE, hf_overrides(work, args))
    task = get_task(cfg.task)(cfg)
    ours = training_arguments(cfg, task, work / "probe").to_dict()
    _, theirs, _, _ = make_parser().parse_args_and_config(trl_args(work, args, work / "probe"))
    theirs = theirs.to_dict()
    differences = {k: {"hf-tuner": ours.get(k), "trl": theirs.get(k)} for k in sorted(set(ours) | set(theirs))
                   if k not in IGNORED and ours.get(k) != theirs.get(k)}

    tok = AutoTokenizer.from_pretrained(resolve_model_path())
    texts_c = [p + c for p, c in zip(train["prompt"], train["chosen"])]
    texts_r = [p + r for p, r in zip(train["prompt"], train["rejected"])]
    ours_ids = tok(texts_c + texts_r, truncation=True, max_length=args.max_length)["input_ids"]
    trl_ids = tok([t + "[SEP]" for t in texts_c + texts_r])["input_ids"]
    n = len(train)
    trl_kept = sum(1 for i in range(n) if len(trl_ids[i]) <= args.max_length and len(trl_ids[n + i]) <= args.max_length)
    return {"train_pairs": n, "eval_pairs": len(val), "setting_differences": differences,
            "tokens": {"hf-tuner": sum(map(len, ours_ids)), "trl-reward": sum(map(len, trl_ids))},
            "pairs_over_max_length": {"hf-tuner (cut)": sum(1 for ids in tok(texts_c + texts_r)["input_ids"]
                                                           if len(ids) > args.max_length),
                                      "trl-reward (dropped pairs)": n - trl_kept}}


def resolve_model_path() -> str:
    from hf_tuner.packaged import resolve_model

    return resolve_model("packaged:all-MiniLM-L6-v2")


def run_hf_tuner(work: Path, args: argparse.Namespace, run: str) -> dict:
    from hf_tuner.recipes import load_config
    from hf_tuner.run import train

    cfg = load_config(RECIPE, hf_overrides(work, args))
    summary = train(cfg, "bench-reward", str(work / f"hf-{run}"), overwrite=True, argv=["bench"], on_status=lambda m: None)
    t = summary["train"]
    return {"samples_per_second": t["samples_per_second"], "steps_per_second": t["steps_per_second"],
            "train_runtime_s": t["runtime_s"], "steps": t["global_steps"], "train_loss": round(t["train_loss"], 4),
            "eval_accuracy": summary["metrics"]["accuracy"],
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}


def final_metrics(stdout: str) -> dict:
    """The Trainer's last metrics line (a printed dict holding 'train_runtime')."""
    for line in reversed(stdout.splitlines()):
        start = line.find("{")
        if start >= 0 and "train_runtime" in line:
            return {k: float(v) for k, v in ast.literal_eval(line[start:line.rindex("}") + 1]).items()}
    raise RuntimeError("no final metrics line (train_runtime) in the TRL CLI's output")


def run_trl(work: Path, args: argparse.Namespace, run: str) -> dict:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from hf_tuner.tasks.reward_modeling import pair_encoder, pair_metrics
    from datasets import load_dataset

    out = work / f"trl-{run}"
    proc = subprocess.run([trl_bin(), "reward", *trl_args(work, args, out)], capture_output=True, text=True,
                          cwd=work, env=os.environ)
    if proc.returncode != 0:
        raise RuntimeError(f"trl reward failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    m = final_metrics(proc.stdout + "\n" + proc.stderr)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    # score the same held-out pairs as hf-tuner does (its tokenisation, its pair metrics)
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    val = load_dataset("json", data_files=str(work / "val.jsonl"), split="train")
    val = val.map(pair_encoder(tok, args.max_length), batched=True, remove_columns=val.column_names)
    torch.manual_seed(0)
    metrics = pair_metrics(model, val, tok.pad_token_id, 64)
    return {"samples_per_second": m["train_samples_per_second"], "steps_per_second": m["train_steps_per_second"],
            "train_runtime_s": round(m["train_runtime"], 2), "steps": round(m["train_steps_per_second"] * m["train_runtime"]),
            "train_loss": round(m["train_loss"], 4), "eval_accuracy": metrics["accuracy"], "peak_rss_gb": round(peak, 2)}


def child(variant: str, work: Path, args: argparse.Namespace, run: str) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    return run_trl(work, args, run) if variant == "trl-reward" else run_hf_tuner(work, args, run)


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
    parser.add_argument("--rows", type=int, default=1000, help="training pairs (one epoch: rows / batch steps)")
    parser.add_argument("--eval-rows", type=int, default=128, help="held-out pairs scored after training")
    parser.add_argument("--max-length", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=2, help="torch/OpenMP threads of every variant")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved rounds of all variants")
    parser.add_argument("--quiet-wait", type=float, default=300,
                        help="before each run, wait up to this many seconds for other work to use < 0.3 cores (0: don't)")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "reward.json"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--run", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        print("RESULT " + json.dumps(child(args.child, Path(args.work), args, args.run)), flush=True)
        return

    work = Path(tempfile.mkdtemp(prefix="bench-reward-"))
    os.environ["HF_TUNER_CACHE"] = str(work / "cache")
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
            cmd = [sys.executable, __file__, "--child", variant, "--work", str(work), "--run", f"{repeat}",
                   "--rows", str(args.rows), "--eval-rows", str(args.eval_rows), "--max-length", str(args.max_length),
                   "--batch-size", str(args.batch_size), "--learning-rate", str(args.learning_rate),
                   "--epochs", str(args.epochs), "--seed", str(args.seed), "--threads", str(args.threads)]
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
            print(f"round {repeat + 1} {variant:11} {json.dumps(result)}", file=sys.stderr, flush=True)
    load_after = os.getloadavg()[0]

    medians = {v: {k: statistics.median(r[k] for r in rs) for k in rs[0] if isinstance(rs[0][k], (int, float))}
               for v, rs in runs.items()}
    print(f"\n{info['train_pairs']} pairs, MiniLM-L6 reward model, max_length {args.max_length}, batch {args.batch_size}, "
          f"lr {args.learning_rate:g}, {args.epochs:g} epoch, fp32, {args.threads} thread(s), medians of {args.repeats}; "
          f"load average {load_before:.1f} -> {load_after:.1f}\n")
    print("| variant | steps | train s | pairs/s | steps/s | CPU s/step | torch threads | held-out accuracy | peak RSS GB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for v, m in medians.items():
        print(f"| {v} | {m['steps']:g} | {m['train_runtime_s']:.2f} | {m['samples_per_second']:.2f} | "
              f"{m['steps_per_second']:.3f} | {m['cpu_s_per_step']:.3f} | {m['torch_threads']:g} | "
              f"{m['eval_accuracy']:.3f} | {m['peak_rss_gb']:.2f} |")
    ratio = cpu_ratio = None
    if "hf-tuner" in medians and "trl-reward" in medians:
        ours, theirs = runs["hf-tuner"], runs["trl-reward"]
        ratio = medians["hf-tuner"]["samples_per_second"] / medians["trl-reward"]["samples_per_second"]
        cpu_ratio = medians["trl-reward"]["cpu_s_per_step"] / medians["hf-tuner"]["cpu_s_per_step"]
        per_round = [round(a["samples_per_second"] / b["samples_per_second"], 3) for a, b in zip(ours, theirs)]
        per_round_cpu = [round(b["cpu_s_per_step"] / a["cpu_s_per_step"], 3) for a, b in zip(ours, theirs)]
        print(f"\nhf-tuner / trl reward pairs/s: {ratio:.2f}x (per round: {per_round}; target >= 0.95x)")
        print(f"same on CPU time (trl CPU s/step / hf-tuner CPU s/step): {cpu_ratio:.2f}x (per round: {per_round_cpu})")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"args": vars(args), "info": info, "runs": runs, "medians": medians,
                                               "ratio_hf_tuner_over_trl": ratio,
                                               "cpu_time_ratio_hf_tuner_over_trl": cpu_ratio,
                                               "load_average": [load_before, load_after]}, indent=2))


if __name__ == "__main__":
    main()
