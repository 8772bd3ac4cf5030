"""`hf-tuner runs`: the run folders under a folder, newest first, and `hf-tuner runs compare`: runs
side by side (the recipe keys that differ, metrics, training time and parameters, a plot of their
curves). Everything comes from what `train` wrote into each folder (`rundir`): summary.json,
config.yaml and log_history.json; nothing is loaded or trained.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

from . import rundir
from .errors import ConfigError, HfTunerError

NOT_APPLICABLE = "n/a"  # the run's task has no such metric
NOT_MEASURED = "-"  # the run has none (it did not finish, or measured nothing there)
MAX_DEPTH = 3  # folders of folders of runs (a sweep's runs/SWEEP/trial-NNN) are found too


@dataclass
class RunInfo:
    """One run folder (or staging folder) as `runs` lists it."""

    name: str  # the folder, relative to the folder listed (or as given to `compare`)
    path: str
    task: Optional[str]
    method: Optional[str]
    status: str  # completed / failed / interrupted / pruned / running
    note: str  # why, where the status needed working out (a killed run, a lock on another host)
    staging: bool  # an unfinished run's `<output_dir>.incomplete` folder
    metric: Optional[str]  # the task's main metric
    before: Optional[float]
    after: Optional[float]
    training_s: Optional[float]  # the Trainer's training time (finished runs)
    wall_s: Optional[float]  # start to finish (or to the last summary write of a killed run)
    started_at: Optional[str]
    error: Optional[str] = None
    summary: Any = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("summary")
        return out


# ------------------------------------------------------------------------------------------ one run


def run_status(path: Path, summary: rundir.RunSummary) -> tuple[str, str]:
    """The status of a run folder and a note on how it was worked out. A summary that says the run
    is running or training counts only while a live process holds the run's lock: a killed run
    cannot update its summary, and shows as interrupted."""
    if summary.status in ("completed", "failed", "interrupted", "pruned"):  # pruned: a sweep's pruner stopped it
        return summary.status, ""
    out = path.with_name(path.name.removesuffix(rundir.STAGING_SUFFIX))
    state, owner = rundir.lock_owner(out)
    if state == "live":
        return "running", f"pid {owner.get('pid')}" if owner else ""
    if state == "elsewhere":
        return "running", f"lock held by pid {owner.get('pid')} on host {owner.get('host')} (not checked from here)"
    return "interrupted", "killed: its summary says it was running, but no live process holds its lock"


def main_metric(path: Path, summary: rundir.RunSummary) -> Optional[str]:
    """The task's main metric for this run (the task's Objective says which; seq2seq's depends on
    the recipe's `eval.metrics`), or None when the run's task cannot be told."""
    if summary.improvement and summary.improvement.get("metric"):
        return str(summary.improvement["metric"])
    task_name = summary.task or rundir.run_task(path)
    if not task_name:
        return None
    from .config import read_yaml
    from .recipes import build_config
    from .tasks import get_task

    try:
        task = get_task(task_name)
    except HfTunerError:
        return None
    try:
        cfg = build_config(read_yaml(path / rundir.CONFIG), source=str(path / rundir.CONFIG))
        return task.objective.metric(task.bind(cfg))
    except HfTunerError:  # a recipe this version no longer accepts: the task's usual metric
        return task.objective.primary_metric


def run_info(path: Path, name: Optional[str] = None) -> RunInfo:
    """What `runs` shows of one run folder (a folder with summary.json)."""
    summary = rundir.read_summary(path)
    if summary is None:
        raise ConfigError(f"{path} is not an hf-tuner run folder (no readable summary.json): give a folder "
                          "`hf-tuner train` wrote (see `hf-tuner runs`)")
    status, note = run_status(path, summary)
    metric = main_metric(path, summary)
    before = _number((summary.metrics_before or {}).get(metric)) if metric else None
    after = _number((summary.metrics or {}).get(metric)) if metric else None
    training = (summary.train or {}).get("runtime_s")
    return RunInfo(
        name=name or path.name, path=str(path), task=summary.task or rundir.run_task(path), method=summary.method,
        status=status, note=note, staging=path.name.endswith(rundir.STAGING_SUFFIX), metric=metric, before=before,
        after=after, training_s=_number(training), wall_s=_wall(path, summary), started_at=summary.started_at,
        error=summary.error, summary=summary)


def _number(value: Any) -> Optional[float]:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _wall(path: Path, summary: rundir.RunSummary) -> Optional[float]:
    if summary.wall_time_s is not None:
        return summary.wall_time_s
    start = _time(summary.started_at)
    if start is None:
        return None
    end = _time(summary.finished_at)
    if end is None:  # a killed run: its summary was last written when training started
        try:
            end = (path / rundir.SUMMARY).stat().st_mtime
        except OSError:
            return None
    return round(max(end - start, 0.0), 1)


def _time(stamp: Optional[str]) -> Optional[float]:
    try:
        return datetime.fromisoformat(stamp).timestamp() if stamp else None
    except ValueError:
        return None


# ------------------------------------------------------------------------------------------ listing


def list_runs(folder: Path) -> list[RunInfo]:
    """Every run folder under `folder` (finished ones and `.incomplete` staging folders, in
    sub-folders too), newest first."""
    if not folder.is_dir():
        raise ConfigError(f"folder not found: {folder} (give the folder your runs are in; `train` writes runs/NAME)")
    if rundir.is_run_folder(folder):
        return [run_info(folder, folder.name)]
    found: list[RunInfo] = []

    def walk(here: Path, depth: int) -> None:
        for child in sorted(p for p in here.iterdir() if p.is_dir()):
            if rundir.is_run_folder(child):
                found.append(run_info(child, str(child.relative_to(folder))))
            elif depth < MAX_DEPTH and not child.name.startswith("."):
                walk(child, depth + 1)

    walk(folder, 1)
    return sorted(found, key=lambda r: (r.started_at or "", r.name), reverse=True)


def format_value(value: Any) -> str:
    if value is None:
        return NOT_MEASURED
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.0f}"
    return str(value)


def format_seconds(seconds: Optional[float]) -> str:
    if seconds is None:
        return NOT_MEASURED
    return f"{seconds:.0f} s" if seconds < 600 else f"{seconds / 60:.0f} min"


def render_list(runs: list[RunInfo]) -> str:
    """The `runs` table."""
    header = ["NAME", "TASK", "METHOD", "STATUS", "METRIC", "BEFORE -> AFTER", "TRAINING", "STARTED"]
    rows = []
    for r in runs:
        change = f"{format_value(r.before)} -> {format_value(r.after)}" if r.metric else NOT_MEASURED
        time = format_seconds(r.training_s) if r.training_s is not None else (
            f"({format_seconds(r.wall_s)} wall)" if r.wall_s is not None else NOT_MEASURED)
        started = r.started_at.replace("T", " ")[:16] if r.started_at else NOT_MEASURED
        rows.append([r.name, r.task or "?", r.method or "?", r.status, r.metric or NOT_MEASURED, change, time, started])
    lines = text_table(header, rows)
    notes = [f"  {r.name}: {r.note}" for r in runs if r.note] + [f"  {r.name}: {r.error}" for r in runs if r.error]
    return "\n".join(lines + (["", "notes:"] + notes if notes else []))


def text_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Left-aligned columns under a header, one string per line (`runs`, `runs compare`, `sweep`)."""
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    return ["  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip() for row in [header, *rows]]


# ------------------------------------------------------------------------------------------ compare


@dataclass
class Comparison:
    """Runs side by side: `config` holds only the recipe keys whose values differ."""

    runs: list[RunInfo]
    config: dict[str, list[Any]]  # dotted recipe key -> value per run (NOT_SET where a run's recipe lacks it)
    metrics: dict[str, list[Any]]  # "split/metric" -> value per run (NOT_APPLICABLE, or None: not measured)
    training: dict[str, list[Any]]

    def as_dict(self) -> dict[str, Any]:
        return {"runs": [r.as_dict() for r in self.runs], "config": self.config, "metrics": self.metrics,
                "training": self.training}


NOT_SET = "(unset)"


def compare_runs(paths: list[str]) -> Comparison:
    """Compare run folders (finished or not, of any tasks)."""
    from .config import read_yaml

    if len(paths) < 2:
        raise ConfigError("runs compare needs at least two run folders: hf-tuner runs compare A B [C ...]")
    runs, configs = [], []
    short = [Path(p).expanduser().name or p for p in paths]
    names = short if len(set(short)) == len(short) else paths  # folder names, unless two are alike
    for given, name in zip(paths, names):
        path = Path(given).expanduser()
        if not path.is_dir():
            raise ConfigError(f"run folder not found: {given}")
        if not rundir.is_run_folder(path) or not (path / rundir.CONFIG).is_file():
            raise ConfigError(f"{given} is not an hf-tuner run folder (no summary.json / config.yaml): give folders "
                              "`hf-tuner train` wrote (see `hf-tuner runs`)")
        runs.append(run_info(path, name))
        configs.append(_flatten(read_yaml(path / rundir.CONFIG)))
    keys = sorted(set().union(*configs))
    config = {}
    for key in keys:
        values = [c.get(key, NOT_SET) for c in configs]
        if any(v != values[0] for v in values[1:]):
            config[key] = values
    return Comparison(runs, config, _metric_rows(runs), _training_rows(runs))


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict) and data:
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): data}


def _metric_rows(runs: list[RunInfo]) -> dict[str, list[Any]]:
    """The main metric before and after, then every scalar metric of each split, per run: a value,
    NOT_APPLICABLE where the run measured that split but its task has no such metric, or None where
    the run measured nothing there (it did not finish)."""
    rows: dict[str, list[Any]] = {
        "main metric": [r.metric or None for r in runs],
        "main: before training": [r.before for r in runs],
        "main: after training": [r.after for r in runs],
    }
    for split, attr in (("validation", "metrics"), ("test", "test_metrics"), ("before training", "metrics_before")):
        measured = [getattr(r.summary, attr) for r in runs]
        names: list[str] = []
        for metrics in measured:
            names += [k for k, v in (metrics or {}).items() if _number(v) is not None and k not in names]
        for name in names:
            rows[f"{split}/{name}"] = [None if m is None else _number(m[name]) if name in m else NOT_APPLICABLE
                                       for m in measured]
    return rows


def _training_rows(runs: list[RunInfo]) -> dict[str, list[Any]]:
    def train(key: str) -> list[Any]:
        return [(r.summary.train or {}).get(key) for r in runs]

    return {
        "status": [r.status for r in runs],
        "task": [r.task for r in runs],
        "model": [r.summary.model for r in runs],
        "method": [r.method for r in runs],
        "training time (s)": [r.training_s for r in runs],
        "wall time (s)": [r.wall_s for r in runs],
        "samples/s": train("samples_per_second"),
        "steps": train("global_steps"),
        "epochs": train("epochs"),
        "learning rate": [r.summary.learning_rate for r in runs],
        "trainable params": [r.summary.trainable_params for r in runs],
        "total params": [r.summary.total_params for r in runs],
        "device": [r.summary.device for r in runs],
        "started": [r.started_at for r in runs],
    }


def render_comparison(c: Comparison) -> str:
    """The `runs compare` tables: recipe keys that differ, metrics, training."""
    names = [r.name for r in c.runs]
    lines: list[str] = []
    for title, rows in (("recipe keys that differ", c.config), ("metrics", c.metrics), ("training", c.training)):
        lines.append(f"{title}:")
        if not rows:
            lines += ["  (none)", ""]
            continue
        table = [[key, *[_cell(v) for v in values]] for key, values in rows.items()]
        lines += ["  " + line for line in text_table(["", *names], table)] + [""]
    return "\n".join(lines).rstrip()


def _cell(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10000:
        return f"{value:,}"
    if isinstance(value, (list, dict)):
        import json

        return json.dumps(value)
    return format_value(value)


# ------------------------------------------------------------------------------------------ plot


def curves(run: RunInfo) -> dict[str, Any]:
    """What `--plot` draws for one run, from its log_history.json (an unfinished run: its newest
    checkpoint's trainer state): training loss and evaluation loss per step, and its main metric at
    each evaluation (the before-training value at step 0)."""
    history = log_history(Path(run.path))
    history = [h for h in history if isinstance(h, dict) and isinstance(h.get("step"), (int, float))]
    train = [(h["step"], h["loss"]) for h in history if _number(h.get("loss")) is not None]
    evals = [(h["step"], h[k]) for h in history for k in ("eval_loss", "validation_loss") if _number(h.get(k)) is not None]
    metric = []
    if run.metric:
        if run.before is not None:
            metric.append((0, run.before))
        metric += [(h["step"], h[k]) for h in history for k in (f"eval_{run.metric}", f"validation_{run.metric}")
                   if _number(h.get(k)) is not None]
        if run.after is not None and (not metric or metric[-1][1] != run.after):
            last = max((s for s, _ in train), default=metric[-1][0] if metric else 0)
            metric.append((last, run.after))
    return {"label": run.name, "train_loss": train, "eval_loss": sorted(set(evals)), "metric": run.metric,
            "metric_points": sorted(set(metric))}


def log_history(path: Path) -> list[Any]:
    """The Trainer's log of a run: log_history.json, or for an unfinished run the log its newest
    complete checkpoint holds."""
    history = rundir.read_json(path / rundir.LOG_HISTORY)
    if history is None:
        checkpoint = rundir.latest_checkpoint(path)
        state = rundir.read_json(checkpoint / "trainer_state.json") if checkpoint else None
        history = state.get("log_history") if isinstance(state, dict) else None
    return history if isinstance(history, list) else []


def plot_comparison(c: Comparison, path: Path) -> Path:
    """All runs' loss curves and main metrics on one figure (PNG)."""
    from .plots import plot_runs

    if path.suffix.lower() != ".png":
        raise ConfigError(f"--plot {path}: give a .png file")
    series = [curves(r) for r in c.runs]
    if not any(s["train_loss"] or s["eval_loss"] or s["metric_points"] for s in series):
        raise ConfigError("nothing to plot: none of these runs has a log_history.json with losses or metrics "
                          "(a run writes it when training finished)")
    path.parent.mkdir(parents=True, exist_ok=True)
    plot_runs(series, path)
    return path
