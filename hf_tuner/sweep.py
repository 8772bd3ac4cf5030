"""`hf-tuner sweep`: a hyperparameter search with Optuna over any recipe keys.

Each trial is an ordinary `train` run (`run.train`, or `accelerate launch ... train` when the launch
needs several processes) into `SWEEP/trial-NNN`, with the sampled values applied as `key=value`
overrides, exactly as typed on the command line. A Trainer callback reports the task's main metric
to the study at every evaluation and stops the run when Optuna's median pruner says so (its folder
ends with status `pruned`). The study lives in `SWEEP/study.db` (SQLite), so the same command run
again continues a killed sweep. At the end the folder gets `results.csv`, `best.yaml` (the recipe
with the best trial's values) and Optuna's history and importance plots.

Optuna is an optional dependency (`pip install 'hf-tuner[sweep]'`), imported only in here.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from . import rundir
from .errors import ConfigError, HfTunerError, TrialPruned

STUDY_DB = "study.db"
RESULTS = "results.csv"
BEST = "best.yaml"
HISTORY_PLOT = "optimization_history.png"
IMPORTANCE_PLOT = "param_importances.png"
TRIAL_PREFIX = "trial-"
DIST_HELP = "loguniform(1e-5,1e-3), uniform(0,0.3), int(1,4) or choice(8,16,32)"
KINDS = ("loguniform", "uniform", "int", "choice")


def require_optuna() -> None:
    """Fail in one line, before anything loads, when the `sweep` extra is not installed."""
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise ConfigError("hf-tuner sweep needs Optuna, which is not installed: pip install 'hf-tuner[sweep]'") from None


# ------------------------------------------------------------------------------------------ the space


@dataclass(frozen=True)
class Dist:
    """One searched recipe key: `training.learning_rate=loguniform(1e-5,1e-3)`."""

    key: str
    kind: str  # loguniform, uniform, int, choice
    args: tuple[Any, ...]
    text: str  # as typed

    def distribution(self) -> Any:
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.kind == "choice":
            return CategoricalDistribution(list(self.args))
        if self.kind == "int":
            return IntDistribution(self.args[0], self.args[1])
        return FloatDistribution(float(self.args[0]), float(self.args[1]), log=self.kind == "loguniform")

    def extremes(self) -> list[Any]:
        """The values checked against the recipe schema before the first trial."""
        return list(self.args)


def parse_space(items: list[str]) -> list[Dist]:
    """`KEY=DIST` strings -> Dists, with one-line errors that say what to write instead."""
    if not items:
        raise ConfigError(f"nothing to search: give at least one --space KEY=DIST, e.g. --space training.learning_rate="
                          f"loguniform(1e-5,1e-3) (DIST: {DIST_HELP})")
    out: list[Dist] = []
    for item in items:
        key, sep, text = item.partition("=")
        key, text = key.strip(), text.strip()
        if not sep or not key or not text:
            raise ConfigError(f"--space '{item}' is not KEY=DIST (e.g. training.learning_rate=loguniform(1e-5,1e-3))")
        if key in (d.key for d in out):
            raise ConfigError(f"--space {key} is given twice: search each key once")
        out.append(parse_dist(key, text))
    return out


def parse_dist(key: str, text: str) -> Dist:
    import yaml

    from .config import load_yaml, looks_like_float

    where = f"--space {key}={text}"
    match = re.fullmatch(r"\s*([A-Za-z_]+)\s*\((.*)\)\s*", text, re.S)
    if not match:
        raise ConfigError(f"{where}: '{text}' is not a distribution; write one of {DIST_HELP}")
    kind, inner = match.group(1).lower(), match.group(2)
    if kind not in KINDS:
        from .errors import did_you_mean

        raise ConfigError(f"{where}: unknown distribution '{match.group(1)}'{did_you_mean(kind, KINDS)}; "
                          f"write one of {DIST_HELP}")
    try:  # the arguments as YAML scalars, as an override's value is read: 1e-5 is a float, adamw_torch a string
        args = load_yaml(f"[{inner}]")
    except yaml.YAMLError:
        raise ConfigError(f"{where}: cannot read the arguments '{inner}'; write one of {DIST_HELP}") from None
    args = [float(a) if isinstance(a, str) and looks_like_float(a) else a for a in args]  # as parse_overrides does
    if any(isinstance(a, (list, dict)) for a in args):
        raise ConfigError(f"{where}: the arguments must be plain values (numbers or words), got '{inner}'")
    if kind == "choice":
        if not args:
            raise ConfigError(f"{where}: choice() needs at least one value, e.g. choice(8,16,32)")
        if len(set(map(repr, args))) != len(args):
            raise ConfigError(f"{where}: a value is listed twice; list each choice once")
        return Dist(key, kind, tuple(args), text)
    if len(args) != 2:
        raise ConfigError(f"{where}: {kind}() takes two values, low and high, e.g. {kind}({'1,4' if kind == 'int' else '1e-5,1e-3'})")
    low, high = args
    number = (int,) if kind == "int" else (int, float)
    if not all(isinstance(v, number) and not isinstance(v, bool) for v in args):
        what = "whole numbers" if kind == "int" else "numbers"
        raise ConfigError(f"{where}: {kind}() takes {what}, got '{inner}'")
    if kind == "loguniform" and low <= 0:
        raise ConfigError(f"{where}: loguniform needs 0 < low < high (a logarithm of {low} is undefined); "
                          f"e.g. loguniform(1e-6,{high}), or uniform({low},{high}) for a linear scale")
    if high < low or (high == low and kind != "int"):
        raise ConfigError(f"{where}: low {low} is not below high {high}; write {kind}({high},{low})" if high < low
                          else f"{where}: low and high are both {low}: set it with {key}={low} instead of searching it")
    return Dist(key, kind, (low, high), text)


def override(key: str, value: Any) -> str:
    """`key=value` as typed on the command line, read back by `config.parse_overrides` as `value`."""
    import json

    from .config import parse_overrides

    text = value if isinstance(value, str) else json.dumps(value)
    if parse_overrides([f"{key}={text}"])[0][1] != value:
        text = json.dumps(value)  # a string YAML would read as something else ("true", "1e-3", "null")
    return f"{key}={text}"


def check_space(recipe: str, overrides: list[str], space: list[Dist]) -> None:
    """Build the recipe with each searched key at its extremes (each choice): an unknown key or a
    value the schema refuses is one error before anything trains."""
    from .config import parse_overrides
    from .recipes import load_config

    fixed = {".".join(path) for path, _ in parse_overrides(overrides)}
    for dist in space:
        if dist.key in fixed:
            raise ConfigError(f"--space {dist.key} is also set by an override ({dist.key}=...): drop one of them")
        for value in dist.extremes():
            try:
                load_config(recipe, [*overrides, override(dist.key, value)])
            except ConfigError as exc:
                problem = str(exc).split(" (with overrides): ", 1)[-1]
                raise ConfigError(f"--space {dist.key}={dist.text}: {problem}") from None


# ------------------------------------------------------------------------------------------ the study


@dataclass
class SweepResult:
    """What `sweep` reports: the folder, the table, the best trial and notes."""

    folder: Path
    metric: str
    direction: str
    header: list[str]
    rows: list[list[Any]]
    best: Optional[dict[str, Any]] = None
    written: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def objective_of(cfg: Any) -> tuple[str, bool]:
    """The task's main metric for this recipe and whether greater is better (the task's objective says)."""
    from .tasks import get_task

    task = get_task(cfg.task)
    return task.objective.metric(task.bind(cfg)), task.objective.greater_is_better


def trial_dir(folder: Path, number: int) -> Path:
    return folder / f"{TRIAL_PREFIX}{number:03d}"


def storage_url(folder: Path) -> str:
    return f"sqlite:///{(folder / STUDY_DB).resolve()}"


def open_study(folder: Path, identity: Optional[dict[str, Any]] = None) -> Any:
    """The sweep's study in `folder/study.db`: created with `identity` (direction, metric, space,
    recipe, pruner settings) as user attributes, or loaded (then `identity` must match: a sweep
    continues only with the command that started it)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = storage_url(folder)
    exists = (folder / STUDY_DB).is_file()
    if identity is None:  # a trial's process: the study exists
        study = optuna.load_study(study_name=None, storage=url)
    else:
        study = optuna.create_study(study_name=folder.name, storage=url, direction=identity["direction"],
                                    load_if_exists=True)
        if not exists:
            for key, value in identity.items():
                study.set_user_attr(key, value)
        else:
            stored = study.user_attrs
            changed = [k for k, v in identity.items() if stored.get(k) != v]
            if changed:
                raise ConfigError(f"{folder} holds a sweep started with another {' and '.join(changed)}: run it again "
                                  "with the command that started it to continue it, or choose another -o folder")
    attrs = study.user_attrs
    from optuna.pruners import MedianPruner
    from optuna.samplers import TPESampler

    study.pruner = MedianPruner(n_startup_trials=int(attrs.get("startup_trials", 2)), n_warmup_steps=0)
    # seeded by the recipe's seed and the trials so far, so a continued sweep does not repeat the first draws
    study.sampler = TPESampler(seed=int(attrs.get("seed", 0)) + len(study.trials))
    return study


def finished(study: Any) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def outcome(folder: Path, number: int) -> tuple[str, Optional[float], str]:
    """What a trial's run folder says: ("complete", value, ""), ("pruned", None, why) or
    ("fail", None, why), read as `hf-tuner runs` reads it (the task's main metric)."""
    from .runs import run_info

    done = trial_dir(folder, number)
    if rundir.read_summary(done) is not None:
        info = run_info(done)
        if info.after is None or math.isnan(info.after):
            return "fail", None, f"no {info.metric} was measured"
        return "complete", info.after, ""
    staging = rundir.staging_dir(done)
    summary = rundir.read_summary(staging)
    if summary is None:
        return "fail", None, "it stopped before training started"
    if summary.status == "pruned":
        return "pruned", None, summary.error or ""
    return "fail", None, summary.error or f"status {summary.status}"


def recover(study: Any, folder: Path, on_status: Callable[[str], None]) -> None:
    """Trials a killed sweep left RUNNING (the sweep's lock is ours, so no process runs them): one whose
    run finished is told its metric; any other is marked FAIL, its folder removed, and its values
    queued to run again as a new trial."""
    from optuna.trial import TrialState

    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        state, value, _ = outcome(folder, trial.number)
        if state == "complete":
            study.tell(trial.number, value)
            on_status(f"trial {trial.number} finished before the sweep was stopped: {value:.4g}")
            continue
        study.tell(trial.number, state=TrialState.FAIL)
        rundir.discard(rundir.staging_dir(trial_dir(folder, trial.number)))
        (folder / f"{TRIAL_PREFIX}{trial.number:03d}.lock").unlink(missing_ok=True)
        study.enqueue_trial(trial.params)
        on_status(f"trial {trial.number} was interrupted: its values run again as a new trial")


# ------------------------------------------------------------------------------------------ pruning


def pruning_callback(trial: Any) -> Callable[[Any, Any, Any], Any]:
    """A `run.train` callback builder: at each evaluation during training, report the task's main
    metric to the study (at the global step) and raise `TrialPruned` when the pruner says so. A task
    whose Trainer evaluation lacks the metric (it is computed by the objective: QA's F1, a reward
    model's accuracy) gets it from the objective's own evaluation."""

    def build(job: Any, trainer: Any, features: Any) -> Any:
        from transformers import TrainerCallback

        metric = job.objective.metric(job)

        class ReportToStudy(TrainerCallback):
            training = False
            busy = False  # the objective's evaluation may call trainer.evaluate itself

            def on_train_begin(self, args, state, control, **kwargs):
                self.training = True

            def on_train_end(self, args, state, control, **kwargs):
                self.training = False

            def on_evaluate(self, args, state, control, metrics=None, **kwargs):
                if not self.training or self.busy:
                    return
                value = (metrics or {}).get(f"eval_{metric}")
                if value is None:
                    self.busy = True
                    try:
                        value = job.objective.evaluate(job, trainer, features, "validation", phase="trial").get(metric)
                    finally:
                        self.busy = False
                if not isinstance(value, (int, float)):
                    return
                step = state.global_step
                if trainer.accelerator.is_main_process:
                    trial.report(float(value), step)
                trainer.accelerator.wait_for_everyone()  # every process reads the same study, so all stop alike
                if trial.should_prune():
                    raise TrialPruned(f"pruned at step {step}: {metric} {value:.4g} is worse than the median of the "
                                      f"earlier trials at that step")

        return ReportToStudy()

    return build


def trial_from_ref(ref: str) -> Any:
    """The optuna Trial named by `--trial FOLDER#NUMBER` (what a launched trial's processes get)."""
    import optuna

    folder, _, number = ref.rpartition("#")
    if not folder or not number.isdigit() or not (Path(folder) / STUDY_DB).is_file():
        raise ConfigError(f"--trial '{ref}' is not SWEEP_FOLDER#NUMBER of a sweep (it is set by hf-tuner sweep)")
    study = open_study(Path(folder))
    found = [t for t in study.get_trials(deepcopy=False) if t.number == int(number)]
    if not found:
        raise ConfigError(f"--trial '{ref}': the sweep has no trial {number}")
    return optuna.trial.Trial(study, found[0]._trial_id)  # optuna has no public "trial by number" for a running trial


# ------------------------------------------------------------------------------------------ the sweep


def sweep(recipe: str, overrides: list[str], space_items: list[str], trials: int, output: Optional[str],
          launch: Any, launch_flags: list[str], startup_trials: int = 2,
          on_status: Callable[[str], None] = print) -> SweepResult:
    """Run (or continue) the search until `trials` trials finished (completed or pruned)."""
    require_optuna()
    from optuna.trial import TrialState

    if trials < 1:
        raise ConfigError("--trials must be at least 1")
    if startup_trials < 0:
        raise ConfigError("--startup-trials must be 0 or more")
    from .data import digest
    from .recipes import load_config, resolve_recipe

    space = parse_space(space_items)
    cfg = load_config(recipe, overrides)
    check_space(recipe, overrides, space)
    metric, greater = objective_of(cfg)
    name = Path(resolve_recipe(recipe)).stem
    folder = Path(output) if output else Path("runs") / f"{name}-sweep"
    identity = {"direction": "maximize" if greater else "minimize", "metric": metric, "recipe": digest(cfg.to_dict()),
                "space": [f"{d.key}={d.text}" for d in space], "startup_trials": startup_trials,
                "seed": cfg.training.seed}
    notes = []
    if cfg.training.eval_strategy == "no":
        notes.append("the recipe evaluates only after training (training.eval_strategy=no): no trial can be pruned")
    folder.mkdir(parents=True, exist_ok=True)
    with rundir.RunLock(folder):
        study = open_study(folder, identity)
        recover(study, folder, on_status)
        distributions = {d.key: d.distribution() for d in space}
        while finished(study) < trials:
            study = open_study(folder, identity)  # a fresh sampler seed per trial (see open_study)
            trial = study.ask(distributions)
            values = [override(k, v) for k, v in trial.params.items()]
            on_status(f"trial {trial.number} ({finished(study) + 1} of {trials}): {' '.join(values)}")
            error = _run_trial(recipe, [*overrides, *values], folder, trial, launch, launch_flags)
            state, value, why = outcome(folder, trial.number)
            why = error if state == "fail" and error else why
            if state == "complete":
                study.tell(trial, value)
                on_status(f"trial {trial.number}: {metric} {value:.4g}")
            elif state == "pruned":
                study.tell(trial, state=TrialState.PRUNED)
                on_status(f"trial {trial.number}: {why}")
            else:
                study.tell(trial, state=TrialState.FAIL)
                raise HfTunerError(f"trial {trial.number} failed: {why} (see {rundir.staging_dir(trial_dir(folder, trial.number))}); "
                                   "fix it and run the same command again to continue the sweep", 1)
        return _report(study, folder, recipe, overrides, metric, identity["direction"], notes)


def _run_trial(recipe: str, overrides: list[str], folder: Path, trial: Any, launch: Any,
               launch_flags: list[str]) -> Optional[str]:
    """Train one trial as `hf-tuner train RECIPE OVERRIDES -o SWEEP/trial-NNN` would: in this process,
    or through accelerate launch when the launch needs it (the same code path as `train`). Returns
    the error of a trial that failed (its run folder says how any trial ended)."""
    from .launch import launch as launch_run
    from .recipes import load_config, resolve_recipe
    from .run import train

    out = trial_dir(folder, trial.number)
    argv = ["train", recipe, *overrides, "-o", str(out), "--trial", f"{folder}#{trial.number}", *launch_flags]
    try:
        if launch is not None and launch.needed:
            launch_run(launch, argv)  # its processes report to the study and print any error; the folder says how it ended
            return None
        train(load_config(recipe, overrides), Path(resolve_recipe(recipe)).stem, str(out), argv=argv,
              on_status=lambda m: None, callbacks=[pruning_callback(trial)])
    except TrialPruned:
        pass  # the run folder says so (status pruned)
    except Exception as exc:  # noqa: BLE001 - a failed trial: the sweep stops on it and says why
        text = str(exc).strip().splitlines()
        return text[0] if text else type(exc).__name__
    finally:
        rundir.discard(rundir.staging_dir(out) / rundir.CHECKPOINTS)  # a stopped trial is not resumed: no checkpoints kept


def _report(study: Any, folder: Path, recipe: str, overrides: list[str], metric: str, direction: str,
            notes: list[str]) -> SweepResult:
    """results.csv, best.yaml and the plots; the table and notes for the terminal."""
    import csv

    from optuna.trial import TrialState

    import yaml

    from .config import apply_overrides, read_yaml
    from .recipes import build_config, resolve_recipe

    keys = list(study.user_attrs.get("space") or [])
    keys = [k.partition("=")[0] for k in keys]
    header = ["trial", "state", metric, *keys, "evaluations", "folder"]
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.WAITING:
            continue
        done = trial_dir(folder, t.number)
        where = done if done.is_dir() else rundir.staging_dir(done)
        rows.append([t.number, t.state.name.lower(), t.value, *[t.params.get(k) for k in keys],
                     len(t.intermediate_values), where.name if where.is_dir() else ""])
    with open(folder / RESULTS, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    result = SweepResult(folder, metric, direction, header, rows, written=[RESULTS], notes=notes)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if complete:
        best = study.best_trial
        values = [override(k, v) for k, v in best.params.items()]
        # the recipe as written (not the resolved config.yaml, whose every training key would then count as set
        # by the recipe and win over the task's defaults) with the overrides and the best values set
        data = apply_overrides(read_yaml(resolve_recipe(recipe)), [*overrides, *values])
        build_config(data, source=BEST)  # still a valid recipe (it holds no secret: the schema has no place for one)
        (folder / BEST).write_text(f"# best trial {best.number} of sweep {folder.name} ({metric} {best.value:.6g}): "
                                   f"{' '.join(values)}\n" + yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        result.best = {"trial": best.number, "value": best.value, "params": best.params,
                       "folder": str(trial_dir(folder, best.number))}
        result.written.append(BEST)
    else:
        result.notes.append("no trial completed: no best.yaml")
    result.written += _plots(study, folder, result.notes)
    return result


def _plots(study: Any, folder: Path, notes: list[str]) -> list[str]:
    """Optuna's optimisation history and parameter importances (where they can be computed)."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.trial import TrialState
    from optuna.visualization.matplotlib import plot_optimization_history, plot_param_importances

    written = []

    def save(ax: Any, name: str) -> None:
        ax.figure.set_size_inches(7, 4.5)
        ax.figure.tight_layout()
        ax.figure.savefig(folder / name, dpi=100)
        plt.close(ax.figure)
        written.append(name)

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optuna's matplotlib plots are "experimental"
        if complete:
            save(plot_optimization_history(study), HISTORY_PLOT)
        varied = [k for k in {k for t in complete for k in t.params}
                  if len({repr(t.params.get(k)) for t in complete}) > 1]
        if len(complete) < 2:
            notes.append(f"no {IMPORTANCE_PLOT}: parameter importances need at least 2 completed trials")
        elif not varied:
            notes.append(f"no {IMPORTANCE_PLOT}: no searched value varied among the completed trials")
        else:
            try:
                save(plot_param_importances(study), IMPORTANCE_PLOT)
            except (ValueError, RuntimeError) as exc:
                notes.append(f"no {IMPORTANCE_PLOT}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
    return written
