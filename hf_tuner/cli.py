"""The `hf-tuner` command line: parse, call one function, print, exit. No ML happens here, and
nothing heavy is imported until a command needs it (`--help` and `recipes list` stay fast)."""
from __future__ import annotations

import functools
import json
import os
from typing import Any, Callable, List, Optional

import typer

from . import __version__
from .errors import HfTunerError

app = typer.Typer(
    name="hf-tuner",
    help="Fine-tune Hugging Face models from recipes (full or LoRA; classifiers, language and chat models, seq2seq, "
         "vision, reward models, DPO, ORPO, KTO, GRPO/RLOO), then evaluate, compare runs and push.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
recipes_app = typer.Typer(help="List, show and copy the bundled recipes.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(recipes_app, name="recipes")
profiles_app = typer.Typer(help="List, show and copy the launch profiles (accelerate config files: ddp, fsdp, deepspeed).",
                           no_args_is_help=True, rich_markup_mode=None)
app.add_typer(profiles_app, name="profiles")

OVERRIDES_HELP = "Dotted overrides typed by the schema, e.g. training.learning_rate=3e-5 method.name=lora"


def fail(message: str, code: int) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def handle_errors(fn: Callable) -> Callable:
    """Turn every failure into one line on stderr and a non-zero exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except HfTunerError as exc:
            from .secrets import redact

            fail(redact(str(exc)), exc.exit_code)
        except KeyboardInterrupt as exc:  # Ctrl-C, or a signal `train` turned into an Interruption
            fail(str(exc) or "interrupted", getattr(exc, "exit_code", 130))
        except Exception as exc:  # noqa: BLE001 - the last line of defence against tracebacks
            if os.environ.get("HF_TUNER_DEBUG"):
                raise
            from .secrets import redact

            text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            fail(f"{type(exc).__name__}: {redact(text)} (set HF_TUNER_DEBUG=1 to see the traceback)", 1)

    return wrapper


def _version(value: bool) -> None:
    if value:
        typer.echo(f"hf-tuner {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Fine-tune Hugging Face models from recipes."""


# ----------------------------------------------------------------------------- recipes


@recipes_app.command("list")
@handle_errors
def recipes_list(as_json: bool = typer.Option(False, "--json", help="Print a JSON list.")) -> None:
    """List the bundled recipes: name, task, method, what they need to run, description."""
    from .recipes import list_recipes

    infos = list_recipes()
    if as_json:
        typer.echo(json.dumps([{"name": r.name, "task": r.task, "method": r.method, "runs": r.runs,
                                "description": r.description} for r in infos]))
        return
    width = max((len(r.name) for r in infos), default=4)
    twidth = max((len(r.task) for r in infos), default=4)
    rwidth = max((len(r.runs) for r in infos), default=4)
    typer.echo(f"{'NAME'.ljust(width)}  {'TASK'.ljust(twidth)}  METHOD  {'RUNS'.ljust(rwidth)}  DESCRIPTION")
    for r in infos:
        typer.echo(f"{r.name.ljust(width)}  {r.task.ljust(twidth)}  {r.method.ljust(6)}  {r.runs.ljust(rwidth)}  {r.description}")


@recipes_app.command("show")
@handle_errors
def recipes_show(
    name: str = typer.Argument(..., help="Recipe name or YAML path."),
    keys: bool = typer.Option(False, "--keys", help="Also list the data: keys of the recipe's task and their defaults."),
) -> None:
    """Print a recipe's YAML (with --keys: and every data: key its task takes)."""
    from .config import read_yaml
    from .recipes import resolve_recipe, task_keys

    path = resolve_recipe(name)
    typer.echo(path.read_text(encoding="utf-8"), nl=False)
    if keys:
        typer.echo("\n".join(task_keys(str(read_yaml(path).get("task")))))


@recipes_app.command("copy")
@handle_errors
def recipes_copy(
    name: str = typer.Argument(..., help="Bundled recipe name."),
    dest: str = typer.Argument(..., help="File or folder to copy it to."),
    force: bool = typer.Option(False, "--force", help="Overwrite DEST if it exists."),
) -> None:
    """Copy a bundled recipe to DEST as a starting point to edit."""
    from .recipes import copy_recipe

    typer.echo(f"wrote {copy_recipe(name, dest, force)}")


# ----------------------------------------------------------------------------- profiles


@profiles_app.command("list")
@handle_errors
def profiles_list(as_json: bool = typer.Option(False, "--json", help="Print a JSON list.")) -> None:
    """List the launch profiles: name, accelerate distributed type, what is sharded, description."""
    from .launch import list_profiles

    infos = list_profiles()
    if as_json:
        typer.echo(json.dumps([{"name": p.name, "distributed_type": p.distributed_type, "sharded": p.shards,
                                "description": p.description} for p in infos]))
        return
    width = max(len(p.name) for p in infos)
    typer.echo(f"{'NAME'.ljust(width)}  {'TYPE'.ljust(10)}  {'SHARDED'.ljust(27)}  DESCRIPTION")
    for p in infos:
        typer.echo(f"{p.name.ljust(width)}  {p.distributed_type.ljust(10)}  {p.shards.ljust(27)}  {p.description}")


@profiles_app.command("show")
@handle_errors
def profiles_show(name: str = typer.Argument(..., help="Profile name or accelerate config file.")) -> None:
    """Print a launch profile (an accelerate config file)."""
    from .launch import resolve_profile

    typer.echo(resolve_profile(name).path.read_text(encoding="utf-8"), nl=False)


@profiles_app.command("copy")
@handle_errors
def profiles_copy(
    name: str = typer.Argument(..., help="Bundled profile name."),
    dest: str = typer.Argument(..., help="File or folder to copy it to."),
    force: bool = typer.Option(False, "--force", help="Overwrite DEST if it exists."),
) -> None:
    """Copy a launch profile to DEST to edit; use it with --profile DEST."""
    from .launch import copy_profile

    typer.echo(f"wrote {copy_profile(name, dest, force)}")


# ----------------------------------------------------------------------------- validate / train

# How a run is launched (validate reports it, train does it); the flags win over the recipe's launch:
PROFILE = typer.Option(None, "--profile", help="Launch profile: ddp (default), fsdp, deepspeed-zero2, deepspeed-zero3, or an accelerate config file.")
NUM_PROCESSES = typer.Option(None, "--num-processes", "-n", help="Processes of all machines together (one per GPU; gloo on CPU).")
NUM_MACHINES = typer.Option(1, "--num-machines", help="Machines in a multi-node run (run the same command on each).")
MACHINE_RANK = typer.Option(0, "--machine-rank", help="This machine's rank, 0 on the main machine.")
MAIN_IP = typer.Option(None, "--main-process-ip", help="Address of the machine with rank 0 (multi-node).")
MAIN_PORT = typer.Option(None, "--main-process-port", help="Port on the rank-0 machine (default 29500).")


def _launch_flags(profile, num_processes, num_machines, machine_rank, main_ip, main_port) -> list[str]:
    """The launch flags as given, kept in the run's command line (and its resume hint)."""
    pairs = (("--profile", profile), ("--num-processes", num_processes), ("--num-machines", num_machines if num_machines != 1 else None),
             ("--machine-rank", machine_rank or None), ("--main-process-ip", main_ip), ("--main-process-port", main_port))
    return [item for flag, value in pairs if value is not None for item in (flag, str(value))]


def _launch_setup(cfg: Any, profile, num_processes, num_machines, machine_rank, main_ip, main_port) -> Any:
    from .launch import resolve_launch

    return resolve_launch(cfg.launch, profile=profile, num_processes=num_processes, num_machines=num_machines,
                       machine_rank=machine_rank, main_process_ip=main_ip, main_process_port=main_port)


@app.command()
@handle_errors
def validate(
    recipe: str = typer.Argument(..., help="Bundled recipe name or path to a YAML recipe."),
    overrides: Optional[List[str]] = typer.Argument(None, help=OVERRIDES_HELP),
    profile: Optional[str] = PROFILE,
    num_processes: Optional[int] = NUM_PROCESSES,
    num_machines: int = NUM_MACHINES,
    machine_rank: int = MACHINE_RANK,
    main_process_ip: Optional[str] = MAIN_IP,
    main_process_port: Optional[int] = MAIN_PORT,
    show_examples: int = typer.Option(0, "--show-examples", min=0, help="Print the first N training examples as the model sees them, the trained part [[marked]]."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object: the facts (and the examples: {text, trained})."),
) -> None:
    """Check a recipe and its data without training, and print what would run and how it launches."""
    from .recipes import load_config
    from .run import describe, prepare, training_examples

    from .errors import ConfigError

    cfg = load_config(recipe, overrides or [])
    launch = _launch_setup(cfg, profile, num_processes, num_machines, machine_rank, main_process_ip, main_process_port)
    problem = launch.problem()
    if problem:  # the recipe may be fine, but `train` would refuse this launch here
        raise ConfigError(problem)
    prepared = prepare(cfg)
    facts = describe(prepared)
    facts.update(launch.facts(cfg.training.per_device_train_batch_size, cfg.training.gradient_accumulation_steps))
    if launch.needed:
        facts["launch_command"] = launch.display(["train", recipe, *(overrides or [])])
    examples = training_examples(prepared, show_examples) if show_examples else []
    if as_json:
        typer.echo(json.dumps({"recipe": "ok", **facts, **({"examples": examples} if show_examples else {})},
                              ensure_ascii=False, default=str))
        return
    typer.echo("recipe OK")
    _print_facts(facts)
    for i, example in enumerate(examples, 1):
        typer.echo(f"--- example {i} (the trained part [[marked]])")
        typer.echo(marked(example["text"], example["trained"]))


@app.command()
@handle_errors
def train(
    recipe: str = typer.Argument(..., help="Bundled recipe name or path to a YAML recipe."),
    overrides: Optional[List[str]] = typer.Argument(None, help=OVERRIDES_HELP),
    output_dir: Optional[str] = typer.Option(None, "--output-dir", "-o", help="Run folder (default: the recipe's output_dir, else runs/RECIPE)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a finished run in the output folder (or an unfinished run's checkpoints)."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run from its newest complete checkpoint."),
    profile: Optional[str] = PROFILE,
    num_processes: Optional[int] = NUM_PROCESSES,
    num_machines: int = NUM_MACHINES,
    machine_rank: int = MACHINE_RANK,
    main_process_ip: Optional[str] = MAIN_IP,
    main_process_port: Optional[int] = MAIN_PORT,
    trial: Optional[str] = typer.Option(None, "--trial", hidden=True, help="Set by `hf-tuner sweep`: SWEEP#NUMBER, the trial this run is."),
    dry_run: bool = typer.Option(False, "--dry-run", hidden=True, help="Not a train option: see `hf-tuner validate`."),
) -> None:
    """Fine-tune as a recipe says and write a run folder (several processes or machines: through accelerate launch)."""
    from pathlib import Path

    if dry_run:
        from .errors import ConfigError

        raise ConfigError(f"train has no --dry-run: `hf-tuner validate {recipe}` checks the recipe, its data and model "
                          f"without training, and `hf-tuner plan {recipe}` estimates memory and steps")

    from .launch import launch, under_launcher
    from .recipes import load_config, resolve_recipe
    from .run import train as run_train

    cfg = load_config(recipe, overrides or [])  # fail on a bad recipe before starting any process
    name = Path(resolve_recipe(recipe)).stem
    argv = ["train", recipe, *(overrides or []), *(["-o", output_dir] if output_dir else []), *(["--overwrite"] if overwrite else []),
            *(["--resume"] if resume else []), *(["--trial", trial] if trial else []),
            *_launch_flags(profile, num_processes, num_machines, machine_rank, main_process_ip, main_process_port)]
    setup = _launch_setup(cfg, profile, num_processes, num_machines, machine_rank, main_process_ip, main_process_port)
    if setup.needed and not under_launcher():
        code = launch(setup, argv)
        if code:
            raise typer.Exit(code)
        return
    callbacks = []
    if trial:  # a sweep's trial, launched: its processes report to the study and stop when pruned
        from .sweep import pruning_callback, trial_from_ref

        callbacks.append(pruning_callback(trial_from_ref(trial)))
    summary = run_train(cfg, name, output_dir, overwrite, argv=argv, on_status=lambda m: typer.echo(m, err=True), resume=resume,
                        callbacks=callbacks)
    if os.environ.get("RANK", "0") == "0":  # under a launcher, only the main process reports
        _print_summary(summary)
    if cfg.hub.push and os.environ.get("RANK", "0") == "0":
        from .hub import push_after_training

        typer.echo(f"  pushed to        {push_after_training(summary.output_dir, cfg, on_status=lambda m: typer.echo(m, err=True))}")


@app.command()
@handle_errors
def sweep(
    recipe: str = typer.Argument(..., help="Bundled recipe name or path to a YAML recipe."),
    overrides: Optional[List[str]] = typer.Argument(None, help=OVERRIDES_HELP + " (the same in every trial)"),
    trials: int = typer.Option(..., "--trials", "-t", help="Trials to finish (completed or pruned), counting those of an earlier, stopped run of the same sweep."),
    space: List[str] = typer.Option(..., "--space", help="KEY=DIST, repeatable: DIST is loguniform(1e-5,1e-3), uniform(0,0.3), int(1,4) or choice(8,16,32)."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Sweep folder: the study, one run folder per trial, results (default: runs/RECIPE-sweep)."),
    startup_trials: int = typer.Option(2, "--startup-trials", help="Trials that complete before the median pruner may stop one."),
    profile: Optional[str] = PROFILE,
    num_processes: Optional[int] = NUM_PROCESSES,
) -> None:
    """Search hyperparameters with Optuna: each trial is a run folder SWEEP/trial-NNN, pruned on the task's main
    metric; the same command continues a stopped sweep; writes results.csv, best.yaml and plots."""
    from .recipes import load_config
    from .sweep import require_optuna, sweep as run_sweep

    require_optuna()
    cfg = load_config(recipe, overrides or [])
    setup = _launch_setup(cfg, profile, num_processes, 1, 0, None, None)
    result = run_sweep(recipe, overrides or [], space, trials, output, setup, _launch_flags(profile, num_processes, 1, 0, None, None),
                       startup_trials, on_status=lambda m: typer.echo(m, err=True))
    from .runs import format_value, text_table

    typer.echo(f"sweep {result.folder}: {result.metric} ({result.direction})")
    typer.echo("\n".join(text_table(result.header, [[format_value(v) for v in row] for row in result.rows])))
    if result.best:
        params = " ".join(f"{k}={v}" for k, v in result.best["params"].items())
        typer.echo(f"best: trial {result.best['trial']}, {result.metric} {format_value(result.best['value'])} ({params})")
        typer.echo(f"  train it again   hf-tuner train {result.folder / 'best.yaml'} -o {result.folder}-best")
    typer.echo(f"wrote {', '.join(str(result.folder / w) for w in result.written)}")
    for note in result.notes:
        typer.echo(f"note: {note}", err=True)


@app.command("plan")
@handle_errors
def plan_command(
    recipe: str = typer.Argument(..., help="Bundled recipe name or path to a YAML recipe."),
    overrides: Optional[List[str]] = typer.Argument(None, help=OVERRIDES_HELP),
    profile: Optional[str] = PROFILE,
    num_processes: Optional[int] = NUM_PROCESSES,
    num_machines: int = NUM_MACHINES,
    sample_rows: int = typer.Option(2000, "--sample-rows", help="Training rows to measure token lengths on (a seeded sample)."),
    formula: bool = typer.Option(False, "--formula", help="Also print the memory formula (always printed for GPUs)."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as one JSON object."),
) -> None:
    """Preflight: parameters, token lengths, steps per epoch and peak memory per device, without loading weights."""
    from .preflight import MEMORY_FORMULA, preflight
    from .recipes import load_config

    cfg = load_config(recipe, overrides or [])
    launch = _launch_setup(cfg, profile, num_processes, num_machines, 0, "planned" if num_machines > 1 else None, None)
    p = preflight(cfg, launch, sample_rows)
    if as_json:
        typer.echo(json.dumps(p))
        return
    gib = lambda b: f"{b / 2**30:.2f} GiB" if b >= 2**30 else f"{b / 2**20:.0f} MiB"  # noqa: E731
    t, n = p["trainable_params"], p["total_params"]
    typer.echo(f"plan for {recipe} ({p['task']}, {p['method']}, {p['model']})")
    typer.echo(f"  {'parameters':<16} {t:,} trainable of {n:,} ({100 * t / max(n, 1):.2f}%), counted on the meta device")
    typer.echo(f"  {'launch':<16} {p['launch']}, global batch {p['global_batch']}")
    typer.echo(f"  {'training rows':<16} {p['train_rows']:,} ({p['sample_rows']:,} measured)"
               + (f", about {p['training_rows_estimated']:,} examples per epoch" if "training_rows_estimated" in p else ""))
    for l in p["lengths"]:
        spread = " ".join(f"{k}={v}" for k, v in l.items() if k.startswith("p") or k == "max")
        label = "tokens" if l["name"] == "tokens" else f"tokens {l['name']}"
        typer.echo(f"  {label:<16} {spread}; limit {l['limit']}: {100 * l['over_limit']:.1f}% of rows {l['beyond']}")
    typer.echo(f"  {'steps/epoch':<16} {p['steps_per_epoch']:,}")
    for note in p.get("notes", []):
        typer.echo(f"  {'note':<16} {note}")
    typer.echo(f"  {'memory/device':<16} {gib(p['memory_total'])} ({p['device']}, {p['precision']}, {p['optimizer']}, "
               f"longest batch {p['sequence_for_memory']} tokens)")
    for name, value in p["memory_per_device"].items():
        typer.echo(f"    {name:<26} {gib(value):>10}")
    verdict = {True: "yes", False: "NO", None: "unknown"}[p["fits"]]
    typer.echo(f"  {'fits':<16} {verdict}: {p['fit_note']}")
    if p["fits"] is False:
        typer.echo("warning: the estimate does not fit this machine: lower per_device_train_batch_size (raise "
                   "gradient_accumulation_steps to keep the global batch), use LoRA, gradient checkpointing, "
                   "or a sharding profile (fsdp, deepspeed-zero3)", err=True)
    if formula or p["device"] == "gpu":
        typer.echo(MEMORY_FORMULA)
    else:
        typer.echo("  (the memory formula: hf-tuner plan --formula)")


@app.command()
@handle_errors
def predict(
    run_dir: str = typer.Argument(..., help="A run folder written by `hf-tuner train`."),
    inputs: Optional[List[str]] = typer.Argument(None, help="Texts (or image paths) to run the model on."),
    file: Optional[str] = typer.Option(None, "--file", "-f", help="Read inputs from this file, one per line (chat models: a JSONL file of {\"messages\": [...]}: each conversation's last user turn is answered)."),
    message: Optional[List[str]] = typer.Option(None, "--message", help="Chat models: a user message to answer (repeatable: one reply each)."),
    system: Optional[List[str]] = typer.Option(None, "--system", help="Chat models: a system message before each --message (repeatable)."),
    top_k: int = typer.Option(3, "--top-k", help="Classification: how many labels to show."),
    max_new_tokens: int = typer.Option(50, "--max-new-tokens", help="Generation: tokens to generate."),
    do_sample: bool = typer.Option(False, "--sample/--greedy", help="Generation: sample instead of greedy/beam decoding."),
    temperature: float = typer.Option(1.0, "--temperature", help="Generation: sampling temperature."),
    top_p: float = typer.Option(1.0, "--top-p", help="Generation: nucleus sampling."),
    num_beams: int = typer.Option(1, "--num-beams", help="Generation: beam search width."),
    seed: int = typer.Option(0, "--seed", help="Generation: random seed for sampling."),
    context: Optional[str] = typer.Option(None, "--context", help="Question answering: the text (or a file holding it) the answers come from."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per input."),
) -> None:
    """Run a trained model on inputs: generate text, classify texts/images, tag entities, answer questions."""
    from .predict import gather_inputs
    from .predict import predict as run_predict

    items = gather_inputs(list(inputs or []), file, message, system)
    results = run_predict(run_dir, items, top_k=top_k, max_new_tokens=max_new_tokens, do_sample=do_sample,
                          temperature=temperature, top_p=top_p, num_beams=num_beams, seed=seed,
                          **({"context": context} if context is not None else {}))
    for result, line in results:
        typer.echo(json.dumps(result, ensure_ascii=False) if as_json else line)


@app.command("eval")
@handle_errors
def eval_command(
    model: Optional[str] = typer.Argument(None, help="A run folder, or any model folder / Hub model id (then give --task)."),
    data: Optional[str] = typer.Option(None, "--data", "-d", help="Data file / folder / Hub data set id (with --benchmark: a local copy of it)."),
    split: Optional[str] = typer.Option(None, "--split", help="Split: of a Hub data set, or a run's own 'validation' (default) / 'test'."),
    benchmark: Optional[str] = typer.Option(None, "--benchmark", "-b", help="A named benchmark (see --list-benchmarks)."),
    task: Optional[str] = typer.Option(None, "--task", help="Task of a model that is not a run folder."),
    column: Optional[List[str]] = typer.Option(None, "--column", "-c", help="Column mapping as recipe data keys, e.g. text_column=sentence (repeatable)."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Results JSON (default: RUN/eval/NAME.json)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Evaluation batch size."),
    max_samples: Optional[int] = typer.Option(None, "--max-samples", help="Evaluate on at most N rows (seeded sample)."),
    harness: Optional[str] = typer.Option(None, "--harness", help="Causal LMs: lm-evaluation-harness tasks, comma-separated."),
    harness_include: Optional[str] = typer.Option(None, "--harness-include", help="Folder of local lm-eval task YAMLs."),
    list_benchmarks: bool = typer.Option(False, "--list-benchmarks", help="List the named benchmarks and exit."),
) -> None:
    """Evaluate a trained model on a data set or named benchmark; results go to JSON and the run's card."""
    from .errors import ConfigError

    if list_benchmarks:
        from .benchmarks import BENCHMARKS

        width = max(len(b.name) for b in BENCHMARKS)
        typer.echo(f"{'NAME'.ljust(width)}  {'TASK'.ljust(20)}  {'DATA SET'.ljust(40)}  SPLIT       DESCRIPTION")
        for b in BENCHMARKS:
            ds = b.dataset + (f" ({b.config})" if b.config else "")
            typer.echo(f"{b.name.ljust(width)}  {b.task.ljust(20)}  {ds.ljust(40)}  {b.split.ljust(10)}  {b.description}")
        return
    if not model:
        raise ConfigError("missing MODEL: give a run folder or a model (or --list-benchmarks)")
    status = lambda m: typer.echo(m, err=True)  # noqa: E731
    if harness:
        from .harness import run_harness

        res = run_harness(model, harness, harness_include, batch_size, max_samples, output, task, on_status=status)
        for name, entry in res["harness"].items():
            typer.echo(f"{name}: " + "  ".join(f"{k}={v:.4f}" for k, v in entry["metrics"].items()))
        if data is None and benchmark is None:
            if res.get("output"):
                typer.echo(f"wrote {res['output']}")
            return
    from .evaluation import evaluate

    res = evaluate(model, data, split, benchmark, task, column, output, batch_size, max_samples, on_status=status)
    typer.echo(f"{res['name']} ({res['rows']} rows, {res['runtime_s']} s): "
               + "  ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in res["metrics"].items()))
    for label, r in (res.get("per_class") or {}).items():
        typer.echo(f"  {label:<20} precision={r['precision']:.4f}  recall={r['recall']:.4f}  f1={r['f1']:.4f}  support={r['support']}")
    if res.get("output"):
        typer.echo(f"wrote {res['output']}" + (f" and {res['confusion_matrix_png']}" if res.get("confusion_matrix_png") else ""))


@app.command()
@handle_errors
def push(
    run_dir: str = typer.Argument(..., help="A run folder written by `hf-tuner train`."),
    repo_id: Optional[str] = typer.Option(None, "--repo-id", help="Hub repository ORG/NAME (default: the recipe's hub.repo_id)."),
    private: Optional[bool] = typer.Option(None, "--private/--public", help="Repository visibility (default: the recipe's hub.private, true)."),
    revision: Optional[str] = typer.Option(None, "--revision", help="Branch to push to (created if missing)."),
    merge_lora: bool = typer.Option(False, "--merge-lora", help="LoRA: merge base + adapter, check outputs match, upload the merged model."),
    adapter_only: bool = typer.Option(False, "--adapter-only", help="LoRA: upload only the adapter, tokenizer and card."),
    commit_message: Optional[str] = typer.Option(None, "--commit-message", "-m", help="Commit message."),
    token: Optional[str] = typer.Option(None, "--token", help="Hub token (default: $HF_TOKEN or the `hf auth login` cache)."),
    endpoint: Optional[str] = typer.Option(None, "--endpoint", help="Hub URL (default: $HF_ENDPOINT or https://huggingface.co)."),
) -> None:
    """Upload a finished run (model, tokenizer, model card with eval results) to the Hugging Face Hub."""
    from .errors import ConfigError
    from .hub import push as run_push

    if merge_lora and adapter_only:
        raise ConfigError("--merge-lora and --adapter-only exclude each other: pick one")
    url = run_push(run_dir, repo_id, private, revision, "adapter" if adapter_only else None, merge_lora,
                   commit_message, token, endpoint, on_status=lambda m: typer.echo(m, err=True))
    typer.echo(f"pushed {run_dir} to {url}")


@app.command("runs")
@handle_errors
def runs_command(
    args: Optional[List[str]] = typer.Argument(None, metavar="FOLDER | compare RUN RUN [RUN ...]",
                                               help="A folder of runs (default runs/), or `compare` and two or more run folders."),
    as_json: bool = typer.Option(False, "--json", help="Print the table as JSON."),
    plot: Optional[str] = typer.Option(None, "--plot", help="compare: draw the runs' loss curves and main metrics into this PNG."),
) -> None:
    """List runs newest first (status, main metric before -> after, training time), or compare runs:
    `hf-tuner runs compare A B [C ...]` shows the recipe keys that differ, metrics, time and parameters."""
    from pathlib import Path

    from .errors import ConfigError
    from .runs import compare_runs, list_runs, plot_comparison, render_comparison, render_list

    args = list(args or [])
    if args[:1] == ["compare"]:
        comparison = compare_runs(args[1:])
        if plot:
            plot_comparison(comparison, Path(plot))
        typer.echo(json.dumps(comparison.as_dict()) if as_json else render_comparison(comparison))
        if plot and not as_json:
            typer.echo(f"wrote {plot}")
        return
    if plot:
        raise ConfigError("--plot goes with `hf-tuner runs compare A B ... --plot out.png`")
    if len(args) > 1:
        raise ConfigError(f"runs takes one folder, got {len(args)}: to put runs side by side, use "
                          f"`hf-tuner runs compare {' '.join(args)}`")
    folder = Path(args[0]) if args else Path("runs")
    if not args and not folder.is_dir():
        typer.echo("[]" if as_json else
                   "no runs yet: runs/ does not exist here (train one with `hf-tuner train quickstart`, or give the folder)")
        return
    found = list_runs(folder)
    if as_json:
        typer.echo(json.dumps([r.as_dict() for r in found]))
    elif not found:
        typer.echo(f"no run folders under {folder}")
    else:
        typer.echo(render_list(found))


def marked(text: str, trained: list[str]) -> str:
    """`text` with each of the `trained` substrings (in order) wrapped in [[ ]]."""
    out, at = [], 0
    for part in trained:
        found = text.find(part, at)
        if found < 0:
            continue
        out += [text[at:found], "[[", part, "]]"]
        at = found + len(part)
    return "".join(out) + text[at:]


def _print_facts(facts: dict[str, Any]) -> None:
    for key, value in facts.items():
        if key in ("trainable_params", "total_params"):
            continue
        if isinstance(value, (dict, list)):
            value = json.dumps(value)
        typer.echo(f"  {key:<16} {value}")
    if "total_params" in facts:
        t, n = facts["trainable_params"], facts["total_params"]
        typer.echo(f"  {'parameters':<16} {t:,} trainable of {n:,} ({100 * t / max(n, 1):.2f}%)")


def _print_summary(s: Any) -> None:
    """The closing lines of `train` (`s`: the run's `rundir.RunSummary`)."""
    def fmt(metrics: Optional[dict]) -> str:
        if not metrics:
            return "-"
        return "  ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())

    train_info = s.train or {}
    typer.echo("")
    typer.echo(f"Run finished: {s.output_dir}")
    typer.echo(f"  task/method      {s.task} / {s.method}  ({s.model})")
    typer.echo(f"  rows             {json.dumps(s.rows)}")
    typer.echo(f"  parameters       {s.trainable_params:,} trainable of {s.total_params:,}")
    typer.echo(f"  training         {train_info.get('runtime_s')} s, {train_info.get('samples_per_second')} samples/s, "
               f"{train_info.get('global_steps')} steps on {s.device} ({s.precision})")
    if s.metrics_before:
        typer.echo(f"  before training  {fmt(s.metrics_before)}")
    typer.echo(f"  after training   {fmt(s.metrics)}")
    if s.test_metrics:
        typer.echo(f"  test             {fmt(s.test_metrics)}")
    typer.echo(f"  load it          from_pretrained({s.output_dir!r})")


def run() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    run()
