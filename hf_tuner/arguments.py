"""The `training:` section's names, per arguments class, without importing transformers or trl.

A task names its arguments class by import path (``Task.arguments``); a recipe's `training:` keys
are checked against that class's field names, kept here as literals so that loading a recipe stays
cheap (tests/test_config.py compares every list with the installed library).
"""
from __future__ import annotations

import importlib
from typing import Any

# `transformers.TrainingArguments` fields (transformers 5.23).
TRAINING_ARGUMENTS = frozenset(
    """per_device_train_batch_size num_train_epochs max_steps learning_rate lr_scheduler_type
    lr_scheduler_kwargs warmup_steps optim optim_args weight_decay adam_beta1 adam_beta2 adam_epsilon
    optim_target_modules gradient_accumulation_steps average_tokens_across_devices max_grad_norm
    label_smoothing_factor bf16 fp16 bf16_full_eval fp16_full_eval tf32 activation_checkpointing
    activation_checkpointing_kwargs gradient_checkpointing gradient_checkpointing_kwargs torch_compile
    torch_compile_backend torch_compile_mode use_liger_kernel liger_kernel_config use_cache
    neftune_noise_alpha torch_empty_cache_steps auto_find_batch_size logging_strategy logging_steps
    logging_first_step log_on_each_node logging_nan_inf_filter include_num_input_tokens_seen log_level
    log_level_replica disable_tqdm report_to run_name project trackio_space_id trackio_bucket_id
    trackio_static_space_id eval_strategy eval_steps eval_delay per_device_eval_batch_size
    prediction_loss_only eval_on_start eval_do_concat_batches eval_use_gather_object
    eval_accumulation_steps include_for_metrics batch_eval_metrics save_only_model save_strategy
    save_steps save_on_each_node save_total_limit enable_jit_checkpoint load_best_model_at_end
    metric_for_best_model greater_is_better ignore_data_skip restore_callback_states_from_checkpoint
    full_determinism seed data_seed use_cpu accelerator_config parallelism_config
    dataloader_drop_last dataloader_num_workers dataloader_pin_memory dataloader_persistent_workers
    dataloader_prefetch_factor dataloader_multiprocessing_context dataloader_in_order
    remove_unused_columns label_names train_sampling_strategy length_column_name
    ddp_find_unused_parameters ddp_bucket_cap_mb ddp_broadcast_buffers ddp_static_graph ddp_backend
    ddp_timeout fsdp fsdp_config deepspeed debug skip_memory_metrics resume_from_checkpoint
    push_to_hub hub_token hub_private_repo hub_model_id hub_strategy
    hub_always_push hub_revision output_dir do_train do_eval do_predict local_rank""".split()
)
# `transformers.Seq2SeqTrainingArguments` adds generation settings.
SEQ2SEQ_TRAINING_ARGUMENTS = TRAINING_ARGUMENTS | frozenset(
    "predict_with_generate generation_config generation_num_beams sortish_sampler generation_max_length".split()
)

# `trl.RewardConfig` (trl 1.16) adds:
REWARD_CONFIG = TRAINING_ARGUMENTS | frozenset(
    """model_init_kwargs trust_remote_code chat_template_path disable_dropout dataset_num_proc
    eos_token max_length pad_to_multiple_of center_rewards_coefficient activation_offloading
    pad_token""".split()
)

# `trl.DPOConfig` (trl 1.16) adds:
DPO_CONFIG = TRAINING_ARGUMENTS | frozenset(
    """model_init_kwargs trust_remote_code router_aux_loss_coef disable_dropout dataset_num_proc
    max_length truncation_mode padding_free pad_to_multiple_of precompute_ref_log_probs
    precompute_ref_batch_size loss_type loss_weights ld_alpha f_divergence_type
    f_alpha_divergence_coef label_smoothing beta use_weighting discopop_tau activation_offloading
    sync_ref_model ref_model_mixup_alpha ref_model_sync_steps pad_token""".split()
)

# `trl.KTOConfig` (trl 1.16) adds:
KTO_CONFIG = TRAINING_ARGUMENTS | frozenset(
    """model_init_kwargs trust_remote_code router_aux_loss_coef disable_dropout dataset_num_proc max_length
    pad_to_multiple_of precompute_ref_log_probs precompute_ref_batch_size loss_type beta desirable_weight
    undesirable_weight activation_offloading sync_ref_model ref_model_mixup_alpha ref_model_sync_steps""".split()
)

# `trl.experimental.orpo.ORPOConfig` (trl 1.16) adds:
ORPO_CONFIG = TRAINING_ARGUMENTS | frozenset(
    """max_length max_completion_length beta disable_dropout padding_value generate_during_eval
    is_encoder_decoder model_init_kwargs trust_remote_code dataset_num_proc""".split()
)

# `trl.GRPOConfig` (trl 1.16) adds:
GRPO_CONFIG = TRAINING_ARGUMENTS | frozenset(
    """model_init_kwargs trust_remote_code router_aux_loss_coef disable_dropout cast_lm_head_to_fp32
    num_generations num_generations_eval max_completion_length ds3_gather_for_generation
    shuffle_dataset pad_to_multiple_of generation_batch_size steps_per_generation temperature top_p
    top_k min_p generation_kwargs chat_template_kwargs repetition_penalty cache_implementation
    use_vllm vllm_mode vllm_model_impl vllm_enable_sleep_mode vllm_structured_outputs_regex
    vllm_server_base_url vllm_server_host vllm_server_port vllm_server_timeout vllm_group_port
    vllm_gpu_memory_utilization vllm_max_model_length vllm_tensor_parallel_size beta num_iterations
    epsilon delta epsilon_high sapo_temperature_neg sapo_temperature_pos vespo_k_pos
    vespo_lambda_pos vespo_k_neg vespo_lambda_neg importance_sampling_level reward_weights
    multi_objective_aggregation scale_rewards loss_type mask_truncated_completions sync_ref_model
    ref_model_mixup_alpha ref_model_sync_steps top_entropy_quantile entropy_coef
    use_adaptive_entropy entropy_coef_min entropy_coef_max entropy_coef_delta entropy_target
    max_tool_calling_iterations vllm_importance_sampling_correction vllm_importance_sampling_mode
    vllm_importance_sampling_clip_max vllm_importance_sampling_clip_min off_policy_mask_threshold
    use_bias_correction_kl log_completions log_multimodal num_completions_to_print
    log_unique_prompts log_completions_hub_repo use_transformers_continuous_batching
    transformers_continuous_batching_config use_transformers_paged vllm_importance_sampling_cap""".split()
)

# `trl.RLOOConfig` (trl 1.16) adds:
RLOO_CONFIG = TRAINING_ARGUMENTS | frozenset(
    """model_init_kwargs trust_remote_code router_aux_loss_coef disable_dropout num_generations
    num_generations_eval max_completion_length ds3_gather_for_generation shuffle_dataset
    pad_to_multiple_of generation_batch_size steps_per_generation temperature top_p top_k min_p
    generation_kwargs chat_template_kwargs repetition_penalty cache_implementation use_vllm
    vllm_mode vllm_model_impl vllm_enable_sleep_mode vllm_structured_outputs_regex
    vllm_server_base_url vllm_server_host vllm_server_port vllm_server_timeout vllm_group_port
    vllm_gpu_memory_utilization vllm_max_model_length vllm_tensor_parallel_size beta num_iterations
    epsilon epsilon_high reward_weights normalize_advantages reward_clip_range
    mask_truncated_completions sync_ref_model ref_model_mixup_alpha ref_model_sync_steps
    log_completions log_multimodal num_completions_to_print log_unique_prompts
    use_transformers_continuous_batching transformers_continuous_batching_config
    use_transformers_paged""".split()
)

ARGUMENT_NAMES: dict[str, frozenset[str]] = {
    "transformers:TrainingArguments": TRAINING_ARGUMENTS,
    "transformers:Seq2SeqTrainingArguments": SEQ2SEQ_TRAINING_ARGUMENTS,
    "trl:RewardConfig": REWARD_CONFIG,
    "trl:DPOConfig": DPO_CONFIG,
    "trl.experimental.orpo:ORPOConfig": ORPO_CONFIG,
    "trl:KTOConfig": KTO_CONFIG,
    "trl:GRPOConfig": GRPO_CONFIG,
    "trl:RLOOConfig": RLOO_CONFIG,
}

# Argument names that hf-tuner owns elsewhere in the recipe, with where they went.
OWNED = {
    "output_dir": "use the top-level `output_dir` key or --output-dir",
    "push_to_hub": "use `hub.push: true`",
    "hub_token": "never put a token in a recipe: set HF_TOKEN or run `hf auth login`",
    "hub_model_id": "use `hub.repo_id`",
    "hub_private_repo": "use `hub.private`",
    "hub_strategy": "use the `hub:` section",
    "hub_always_push": "use the `hub:` section",
    "hub_revision": "use `hub.revision`",
    "do_train": "hf-tuner always trains in `train` and evaluates in `eval`",
    "do_eval": "set `training.eval_strategy`",
    "do_predict": "use `hf-tuner predict`",
    "local_rank": "set by the launcher",
    "max_length": "use `data.max_length`",
    "trust_remote_code": "use `model.trust_remote_code`",
}
# Names that used to be arguments and now have another name: answered directly.
RENAMED = {
    "evaluation_strategy": "eval_strategy",
    "no_cuda": "use_cpu",
    "warmup_ratio": "warmup_steps (a float below 1 is a ratio)",
    "group_by_length": "train_sampling_strategy: group_by_length",
    "overwrite_output_dir": "the --overwrite flag of `hf-tuner train`",
}


# `training.report_to` values (transformers 5.23's INTEGRATION_TO_CALLBACK) -> the modules one of
# which must be importable, and the package to install
TRACKERS: dict[str, tuple[tuple[str, ...], str]] = {
    "tensorboard": (("tensorboard", "tensorboardX"), "tensorboard"),
    "trackio": (("trackio",), "trackio"),
    "wandb": (("wandb",), "wandb"),
    "mlflow": (("mlflow",), "mlflow"),
    "comet_ml": (("comet_ml",), "comet-ml"),
    "neptune": (("neptune",), "neptune"),
    "azure_ml": (("azureml",), "azureml-core"),
    "codecarbon": (("codecarbon",), "codecarbon"),
    "clearml": (("clearml",), "clearml"),
    "dagshub": (("dagshub",), "dagshub"),
    "flyte": (("flytekit",), "flytekit"),
    "dvclive": (("dvclive",), "dvclive"),
    "swanlab": (("swanlab",), "swanlab"),
    "kubeflow": (("kubeflow",), "kubeflow-training"),
}
TRACKING_EXTRA = ("tensorboard", "trackio")  # pip install 'hf-tuner[tracking]'


def unknown_tracker(name: str) -> str | None:
    """Why `training.report_to` cannot name `name` (no such tracker), or None."""
    if name in ("none", "all") or name in TRACKERS:
        return None
    from .errors import did_you_mean

    return f"unknown tracker '{name}'{did_you_mean(name, TRACKERS)}; trackers: none, {', '.join(TRACKERS)}"


def missing_tracker(name: str) -> str | None:
    """What to install when tracker `name`'s package is not installed here, or None. Checked without
    importing anything (`train` and `validate` ask before loading a model)."""
    if name not in TRACKERS:
        return None
    modules, package = TRACKERS[name]
    if any(_importable(m) for m in modules):
        return None
    install = "pip install 'hf-tuner[tracking]'" if name in TRACKING_EXTRA else f"pip install {package}"
    return f"training.report_to: {name} needs the {package} package, which is not installed: {install}"


def _importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def class_name(path: str) -> str:
    """'transformers:TrainingArguments' -> 'TrainingArguments'."""
    return path.rpartition(":")[2]


def names_of(path: str) -> frozenset[str]:
    """The field names of the arguments class at `path` (a literal list when there is one)."""
    if path in ARGUMENT_NAMES:
        return ARGUMENT_NAMES[path]
    import dataclasses

    return frozenset(f.name for f in dataclasses.fields(import_object(path)))


def import_object(path: str) -> Any:
    """'package.module:Name' -> the object."""
    module, _, name = path.partition(":")
    if module.startswith("trl.experimental"):  # ORPO's home in trl 1.x; the task's docs say it is experimental there
        import os

        os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    return getattr(importlib.import_module(module), name)
