"""`hf-tuner plan`: what a run will need, before it runs. From the recipe and a sample of its data,
without materialising any weights (the model is built on the meta device):

- parameters, total and trainable (LoRA included), counted on the meta model;
- token lengths of the sample (percentiles) and the share of rows the task's limit cuts or drops,
  from the task's own tokenizer and special tokens (its data part's `token_lengths`);
- steps per epoch for the launch (processes x per-device batch x accumulation);
- peak memory per device, as the sum of the terms in `MEMORY_FORMULA`, and whether it fits.

Estimates for hardware that cannot be measured here (GPUs) come from the stated formula only.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Optional

from .config import RunConfig

MIB = 1024 ** 2
MEMORY_FORMULA = """\
peak per device = runtime + weights + gradients + optimizer + activations (+ logits, + DDP buckets, + frozen copies)
  weights      = parameters x bytes per parameter (the dtype they load in; fp32 here), / processes under FSDP or ZeRO-3
  gradients    = trainable parameters x bytes per parameter, / processes under FSDP or ZeRO-2/3
  optimizer    = trainable parameters x 8 bytes (AdamW's two fp32 moments; SGD without momentum 0), sharded like gradients
  activations  = layers x batch x seq x hidden x (34 + 5 x heads x seq / hidden) x bytes per activation / 2
                 (Korthikanti et al. 2022, per transformer layer without recomputation; with gradient
                 checkpointing: layers x batch x seq x hidden x bytes + one layer's worth);
                 an encoder-decoder of two models (ViT + GPT-2): the sum over both halves
  logits       = batch x seq x vocabulary x 4 bytes x 3 (logits, log-softmax, their gradient), models with an LM head
                 (masked LMs: only the masked share of the positions, which is all their training head computes)
  DDP buckets  = gradients once more when several processes train full copies (DistributedDataParallel)
  frozen copy  = weights once more for a reference model (DPO, GRPO/RLOO with beta > 0, full fine-tuning)
  runtime      = CPU: this process's resident memory with the libraries, tokenizer and data loaded (measured);
                 GPU: 1 GiB for the CUDA context and kernels (assumed, not measured here)
  seq          = the longest sample row within the task's limit (batches are padded to their longest row)
  batch        = per_device_train_batch_size x sequences per example (2 for preference pairs)"""


@dataclass
class Memory:
    terms: dict[str, int] = field(default_factory=dict)  # name -> bytes per device

    @property
    def total(self) -> int:
        return sum(self.terms.values())


def rss_bytes() -> int:
    """This process's resident memory now (Linux /proc; else the peak so far)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def available_bytes() -> Optional[int]:
    """Memory the OS can still give (MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def model_dims(config: Any) -> dict[str, int]:
    """Layers, hidden size, heads and vocabulary of a transformers config (text or vision)."""
    def first(*names: str, default: int = 0) -> int:
        for name in names:
            value = getattr(config, name, None)
            if isinstance(value, int) and value > 0:
                return value
        return default

    layers = first("num_hidden_layers", "n_layer", "num_layers")
    if not layers:
        layers = first("encoder_layers") + first("decoder_layers")
    return {
        "layers": layers,
        "hidden": first("hidden_size", "n_embd", "d_model"),
        "heads": first("num_attention_heads", "n_head", "encoder_attention_heads", default=1),
        "vocab": first("vocab_size"),
    }


def estimate_memory(model: Any, seq: int, batch: int, precision: str, processes: int, shards: str,
                    gradient_checkpointing: bool, optimizer: str, frozen_copies: int, runtime: int,
                    logit_share: float = 1.0) -> Memory:
    """Peak memory per device by `MEMORY_FORMULA`."""
    params = {id(p): p for p in model.parameters()}.values()
    weight_bytes = sum(p.numel() * p.element_size() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    trainable_bytes = sum(p.numel() * p.element_size() for p in params if p.requires_grad)
    sharded_weights = "weights" in shards and processes > 1
    sharded_grads = "gradients" in shards and processes > 1
    sharded_optimizer = "optimizer" in shards and processes > 1
    n = max(processes, 1)
    mem = Memory()
    mem.terms["runtime"] = runtime
    mem.terms["weights"] = weight_bytes // (n if sharded_weights else 1)
    mem.terms["gradients"] = trainable_bytes // (n if sharded_grads else 1)
    state = 0 if optimizer.startswith("sgd") else 8
    mem.terms["optimizer"] = trainable * state // (n if sharded_optimizer else 1)
    config = getattr(model, "config", None)
    # an encoder-decoder made of two models (VisionEncoderDecoder): the activations of both halves
    halves = [getattr(config, "encoder", None), getattr(config, "decoder", None)]
    parts = halves if all(hasattr(h, "to_dict") for h in halves) else [config]
    act = 2 if precision in ("bf16", "fp16") else 4
    if precision in ("bf16", "fp16"):
        mem.terms["half-precision weight copy"] = sum(p.numel() for p in params) * 2 // (n if sharded_weights else 1)
    mem.terms["activations"] = 0
    for part in parts:
        dims = model_dims(part)
        h, layers, heads = dims["hidden"], dims["layers"], dims["heads"]
        per_layer = batch * seq * h * (34 + 5 * heads * seq / max(h, 1)) * act / 2
        if gradient_checkpointing:
            mem.terms["activations"] += int(layers * batch * seq * h * act + per_layer)
        else:
            mem.terms["activations"] += int(layers * per_layer)
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if output is not None and dims["vocab"]:
        mem.terms["logits"] = int(batch * seq * logit_share * dims["vocab"] * 4 * 3)
    if processes > 1 and not sharded_grads:
        mem.terms["DDP buckets"] = trainable_bytes
    if frozen_copies:
        mem.terms["frozen copy"] = frozen_copies * weight_bytes // (n if sharded_weights else 1)
    return mem


def steps_per_epoch(rows: int, per_device: int, processes: int, accumulation: int) -> int:
    """Optimizer steps in one epoch, as the Trainer counts them."""
    batches = math.ceil(rows / (per_device * processes))
    return max(batches // accumulation, 1)


def preflight(cfg: RunConfig, launch: Any, sample_rows: int = 2000) -> dict[str, Any]:
    """Everything `hf-tuner plan` prints, as data."""
    import tempfile
    from pathlib import Path

    from .modeling import has_accelerator, meta_models
    from .run import prepare, training_arguments

    with meta_models():  # what `train` builds, with every parameter on the meta device
        p = prepare(cfg)
    job, model, trainable, total = p.job, p.model, p.trainable, p.total
    job.objective.trainer_class()  # the training process holds these libraries too: count them in the runtime
    on_gpu = has_accelerator()
    runtime = 1024 * MIB if on_gpu else rss_bytes()

    train = p.splits.train
    sample = train.shuffle(seed=cfg.training.seed).select(range(min(sample_rows, len(train))))
    lengths = job.data.token_lengths(job, sample, p.processing)

    t = cfg.training
    processes = launch.num_processes
    with tempfile.TemporaryDirectory() as tmp:  # the arguments as training would build them (precision, optimizer, checkpointing)
        args = training_arguments(cfg, job, Path(tmp))
    precision = "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32"
    optimizer = str(getattr(args.optim, "value", args.optim))
    seq = job.data.memory_sequence(job, model.config, lengths)
    batch = t.per_device_train_batch_size * job.data.sequences_per_example
    mem = estimate_memory(model, seq, batch, precision, processes, launch.profile.shards,
                          bool(args.gradient_checkpointing), optimizer, job.objective.frozen_copies(job), runtime,
                          job.objective.logit_share(job))
    rows = job.data.training_rows(job, len(train), lengths)
    out: dict[str, Any] = {
        "task": cfg.task,
        "model": cfg.model.describe(),
        "method": cfg.method.name,
        "total_params": total,
        "trainable_params": trainable,
        "precision": precision,
        "optimizer": optimizer,
        "launch": f"profile {launch.profile.name}, {processes} process{'es' if processes > 1 else ''}",
        "train_rows": len(train),
        "sample_rows": len(sample),
        "lengths": [{"name": l.name, "limit": l.limit, "beyond": l.beyond, "over_limit": round(l.over(), 4),
                     **(l.percentiles() if l.values else {})} for l in lengths],
        "sequence_for_memory": seq,
        "steps_per_epoch": steps_per_epoch(rows, t.per_device_train_batch_size, processes, t.gradient_accumulation_steps),
        "global_batch": t.per_device_train_batch_size * processes * t.gradient_accumulation_steps,
        "memory_per_device": {k: v for k, v in mem.terms.items()},
        "memory_total": mem.total,
        "device": "gpu" if on_gpu else "cpu",
    }
    if rows != len(train):
        out["training_rows_estimated"] = rows
    if job.notes:
        out["notes"] = list(job.notes)  # e.g. pairs that truncation makes identical
    out["fits"], out["fit_note"] = fits(mem.total, processes // launch.num_machines, on_gpu)
    return out


def fits(per_device: int, local_processes: int, on_gpu: bool) -> tuple[Optional[bool], str]:
    """Whether the estimate fits the devices this machine has, and a line saying against what."""
    if on_gpu:
        import torch

        if not torch.cuda.is_available():
            return None, "cannot read the memory of this accelerator"
        count = torch.cuda.device_count()
        smallest = min(torch.cuda.get_device_properties(i).total_memory for i in range(count))
        ok = per_device <= smallest and local_processes <= count
        return ok, f"{count} GPU(s), the smallest with {smallest / 2**30:.1f} GiB"
    free = available_bytes()
    if free is None:
        return None, "cannot read this machine's free memory"
    need = per_device * max(local_processes, 1)
    return need <= free, f"{local_processes} CPU process(es) need {need / 2**30:.2f} GiB of {free / 2**30:.1f} GiB available"
