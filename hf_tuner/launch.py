"""Multi-process and multi-node launch: re-run an `hf-tuner` command under `accelerate launch`.

A launch profile is an accelerate config file (`hf_tuner/profiles/*.yaml`: ddp, fsdp,
deepspeed-zero2, deepspeed-zero3, or the user's own file) that says how the processes share the
model. `hf-tuner train RECIPE --profile fsdp --num-processes N` runs exactly what
`accelerate launch --config_file fsdp.yaml --num_processes N -m hf_tuner train RECIPE` would: one
process per GPU, or N gloo processes on a CPU-only machine. `--num-processes` counts the processes
of all machines together, as accelerate does. Nothing here imports torch.
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .errors import ConfigError, did_you_mean

DEFAULT_PROFILE = "ddp"
DEEPSPEED_TYPES = ("DEEPSPEED",)
SHARDED_TYPES = ("FSDP", "DEEPSPEED", "XLA")


def profiles_dir() -> Path:
    return Path(__file__).parent / "profiles"


@dataclass(frozen=True)
class Profile:
    """A launch profile: an accelerate config file and what it says."""

    name: str
    path: Path
    distributed_type: str  # accelerate's: MULTI_GPU (DDP), FSDP, DEEPSPEED ...
    description: str = ""
    settings: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def shards(self) -> str:
        """What the processes split among themselves (the rest each process holds whole)."""
        if self.distributed_type == "FSDP":
            return "weights+gradients+optimizer"
        if self.distributed_type in DEEPSPEED_TYPES:
            stage = int((self.settings.get("deepspeed_config") or {}).get("zero_stage", 0))
            return {1: "optimizer", 2: "gradients+optimizer", 3: "weights+gradients+optimizer"}.get(stage, "nothing")
        return "nothing"


def read_profile(path: Path, name: Optional[str] = None) -> Profile:
    """Read an accelerate config file into a Profile (one-line errors for a bad file)."""
    import yaml

    if not path.is_file():
        raise ConfigError(f"launch profile file not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"malformed YAML in launch profile {path}: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(data, dict) or "distributed_type" not in data:
        raise ConfigError(f"{path} is not an accelerate config file: it has no distributed_type "
                          "(start from `hf-tuner profiles copy ddp FILE`)")
    description = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("# description:")), "")
    return Profile(name or path.stem, path, str(data["distributed_type"]), description, data)


def list_profiles() -> list[Profile]:
    """The bundled profiles, sorted by name."""
    return [read_profile(p) for p in sorted(profiles_dir().glob("*.yaml"), key=lambda p: p.stem)]


def resolve_profile(name: str) -> Profile:
    """A bundled profile name or the path of an accelerate config file -> the Profile."""
    candidate = Path(name).expanduser()
    if candidate.suffix in (".yaml", ".yml", ".json") or "/" in name:
        return read_profile(candidate)
    bundled = profiles_dir() / f"{name}.yaml"
    if bundled.is_file():
        return read_profile(bundled)
    names = [p.name for p in list_profiles()]
    raise ConfigError(f"no launch profile named '{name}'{did_you_mean(name, names)}: the profiles are "
                      f"{', '.join(names)} (`hf-tuner profiles list`), or pass the path of an accelerate config file")


def copy_profile(name: str, dest: str, force: bool = False) -> Path:
    """Copy a bundled profile to DEST (a file, or a folder to put NAME.yaml in) to edit."""
    from .recipes import copy_file

    return copy_file(resolve_profile(name).path, dest, force)


def under_launcher() -> bool:
    """True inside a process started by accelerate/torchrun (then we must not launch again)."""
    return "LOCAL_RANK" in os.environ or "ACCELERATE_PROCESS_ID" in os.environ


@dataclass(frozen=True)
class Launch:
    """How a run is started: the profile, the processes of all machines, and this machine's place."""

    profile: Profile
    num_processes: int = 1
    num_machines: int = 1
    machine_rank: int = 0
    main_process_ip: Optional[str] = None
    main_process_port: Optional[int] = None

    @property
    def needed(self) -> bool:
        """Whether the run goes through `accelerate launch` (else it trains in this process)."""
        return self.num_processes > 1 or self.num_machines > 1 or self.profile.name != DEFAULT_PROFILE

    def command(self, argv: list[str]) -> list[str]:
        """The `accelerate launch` command line that runs `hf-tuner <argv>` as this launch says."""
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(self.profile.path),
               "--num_processes", str(self.num_processes), "--num_machines", str(self.num_machines)]
        if self.num_machines > 1:
            cmd += ["--machine_rank", str(self.machine_rank), "--main_process_ip", str(self.main_process_ip),
                    "--main_process_port", str(self.main_process_port)]
        elif self.main_process_port is not None:
            cmd += ["--main_process_port", str(self.main_process_port)]
        return [*cmd, "-m", "hf_tuner", *argv]

    def display(self, argv: list[str]) -> str:
        """The command as a user would type it (`accelerate launch ...`), secrets hidden."""
        from .secrets import command_line

        return command_line(self.command(argv)[3:], program=("accelerate", "launch"))

    def facts(self, per_device_batch: int, accumulation: int) -> dict[str, Any]:
        """What `validate` says about the launch: profile, processes, effective global batch size."""
        machines = f" on {self.num_machines} machines ({self.num_processes // self.num_machines} each)" if self.num_machines > 1 else ""
        out = {
            "launch": f"profile {self.profile.name} ({self.profile.distributed_type}; sharded: {self.profile.shards})",
            "processes": f"{self.num_processes}{machines}",
            "global_batch": (f"{per_device_batch * accumulation * self.num_processes} = {per_device_batch} per device x "
                             f"{accumulation} accumulation x {self.num_processes} processes"),
        }
        problem = self.problem()
        if problem:
            out["launch_problem"] = problem
        return out

    def problem(self) -> Optional[str]:
        """Why this launch cannot run here (one line), or None."""
        import importlib.util

        if self.profile.distributed_type in DEEPSPEED_TYPES and importlib.util.find_spec("deepspeed") is None:
            return f"profile {self.profile.name} needs DeepSpeed, which is not installed: pip install deepspeed"
        if self.profile.distributed_type in SHARDED_TYPES:
            from .modeling import has_accelerator

            if not has_accelerator():
                # accelerate 1.x sets FSDP / DeepSpeed up only on accelerators: on CPU processes it
                # falls back to plain data parallel (FSDP) or no distribution at all, so say it
                return (f"profile {self.profile.name} needs GPUs: accelerate shards models only on accelerators, "
                        "and this machine has none; use --profile ddp here")
        return None


def resolve_launch(recipe_launch: Any = None, *, profile: Optional[str] = None, num_processes: Optional[int] = None,
                num_machines: int = 1, machine_rank: int = 0, main_process_ip: Optional[str] = None,
                main_process_port: Optional[int] = None) -> Launch:
    """The Launch from the recipe's `launch:` section and the command-line flags (the flags win)."""
    profile = profile or getattr(recipe_launch, "profile", None) or DEFAULT_PROFILE
    processes = num_processes or getattr(recipe_launch, "num_processes", None) or 1
    if processes < 1:
        raise ConfigError("--num-processes must be at least 1")
    if num_machines < 1:
        raise ConfigError("--num-machines must be at least 1")
    if num_machines > 1:
        if processes % num_machines or processes < num_machines:
            raise ConfigError(f"--num-processes {processes} is not a whole number per machine over {num_machines} "
                              "machines: it counts the processes of all machines together (e.g. 2 machines x 8 GPUs = 16)")
        if not 0 <= machine_rank < num_machines:
            raise ConfigError(f"--machine-rank {machine_rank} is not one of 0..{num_machines - 1}")
        if not main_process_ip:
            raise ConfigError("a multi-machine run needs --main-process-ip: the address of the machine with --machine-rank 0")
        main_process_port = main_process_port or 29500
    elif machine_rank:
        raise ConfigError("--machine-rank needs --num-machines above 1")
    if main_process_port is not None and not 0 < main_process_port < 65536:
        raise ConfigError(f"--main-process-port {main_process_port} is not a port number (1-65535)")
    return Launch(resolve_profile(profile), processes, num_machines, machine_rank, main_process_ip, main_process_port)


def launch(setup: Launch, argv: list[str]) -> int:
    """Run the command as `setup` says and return the launcher's exit code."""
    problem = setup.problem()
    if problem:
        raise ConfigError(problem)
    env = dict(os.environ)
    # accelerate sets OMP_NUM_THREADS=1 when it is unset, which starves the CPU: share this machine's cores
    local = max(1, setup.num_processes // setup.num_machines)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // local)))
    return subprocess.call(setup.command(argv), env=env)
