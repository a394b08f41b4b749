"""The plan: every check that needs only configs, tokenizers and shapes, before anything is trained.

``make_plan`` resolves the device, loads the task's data, the tokenizer and the model configs (the teacher's,
the student's, and those of every other model a method's stages name: assistants, generations), checks the
layer map, and lists the stages (``stages.plan_stages``). A plan is data; nothing is trained or loaded at
full size yet.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from distillkit import dist
from distillkit import store as cache
from distillkit.augment import checks as augment_checks
from distillkit.config.schema import TASKS, HardwareConfig, RunConfig, StudentConfig
from distillkit.errors import require
from distillkit.models import loading as models
from distillkit.recipe.objective import Dims
from distillkit.stages.planning import plan_stages
from distillkit.tasks.splits import TaskData
from distillkit.teachers import output_cache as teacher_cache

log = logging.getLogger("distillkit")


def resolve_device(hw: HardwareConfig) -> tuple[bool, torch.device]:
    """(use_cpu, device) for this process; a GPU request without a GPU fails here, not mid-run."""
    gpus = torch.cuda.device_count()
    if hw.accelerator == "gpu":
        require(
            gpus > 0,
            "hardware.accelerator",
            "gpu",
            "was requested but torch sees no CUDA device.",
            "use hardware=cpu (or hardware=auto), or check CUDA_VISIBLE_DEVICES and the torch build.",
        )
    use_cpu = hw.accelerator == "cpu" or gpus == 0
    if not use_cpu and hw.devices > 1:
        require(
            hw.devices <= gpus,
            "hardware.devices",
            hw.devices,
            f"exceeds the {gpus} visible GPU(s).",
            f"use hardware.devices={gpus} or fewer.",
        )
    require(
        not (use_cpu and hw.precision == "fp16"),
        "hardware.precision",
        "fp16",
        "needs a GPU, and this run uses the CPU.",
        "use hardware.precision=bf16 or fp32 on the CPU.",
    )
    return use_cpu, torch.device("cpu") if use_cpu else torch.device("cuda", dist.local_rank())


def _tokenizer(cfg: RunConfig, task, root: Path, kind):
    """The teacher's tokenizer; for a teacher built from a config, one the task trains on its training texts."""
    from transformers import AutoTokenizer

    if cfg.teacher.path is not None:
        return models.load_tokenizer(
            "teacher.path", cfg.teacher.path, cfg.teacher.revision, cfg.teacher.trust_remote_code
        )
    if not cfg.teacher.has_model and cfg.student.path is not None:  # no teacher model: the student's own tokenizer
        return models.load_tokenizer(
            "student.path", cfg.student.path, cfg.student.revision, cfg.student.trust_remote_code
        )
    spec = {"data": _data_spec(cfg, root, kind), "vocab_size": cfg.teacher.arch.vocab_size, **kind.tokenizer_spec}

    def train(tmp):
        kind.train_tokenizer(kind.tokenizer_texts(task), cfg.teacher.arch.vocab_size, tmp)

    return AutoTokenizer.from_pretrained(cache.find_or_build(root, "tokenizers", spec, train).path)


def _data_spec(cfg: RunConfig, root: Path, kind=None) -> dict:
    """The data settings of the run's task (``kind``; None: ``cfg.task``'s) and, for local files and dataset
    directories, their content digests: an entry built from a file is never reused after the file's text changes
    (the path alone would say nothing). Each task's key holds the shared settings and its own (its row's
    ``data_keys``), never another task's, so adding a task's settings changes no other task's keys."""
    from distillkit import tasks

    kind = kind or tasks.get(getattr(getattr(cfg, "task", None), "name", None))
    spec = {k: v for k, v in dataclasses.asdict(cfg.data).items() if k != "name"}
    for name, row in TASKS.items():
        if name != kind.name:
            for k in row.data_keys:
                spec.pop(k, None)
    spec = kind.data_spec(spec)
    local = [cfg.data.train_file, cfg.data.eval_file] if cfg.data.source == "local" else [cfg.data.path]
    spec["content"] = {str(p): cache.file_digest(root, p) for p in local if p and Path(p).exists()}
    return spec


# TrainingArguments that do not change the prepared weights: where and how often the run writes and logs,
# and how the work is spread over processes (the recipe's global batch stands in for the batch fields).
_NOT_RECIPE = (
    "output_dir",
    "logging",
    "log_",
    "save_",
    "report_to",
    "disable_tqdm",
    "dataloader_",
    "ddp_",
    "use_cpu",
    "per_device_",
    "gradient_accumulation_steps",
    "run_name",
    "push_to_hub",
    "hub_",
    "resume_from_checkpoint",
    "local_rank",
    "eval_",
    "per_gpu",
    "overwrite_output_dir",
    "print_",
)


def teacher_spec(cfg: RunConfig, plan: Plan, stage) -> dict:
    """Everything that determines a prepared teacher, its cache key: the teacher, the data (by content), the
    labels and tokenizer, and every setting that reaches its training, derived from the stage's own
    TrainingArguments so a setting added later cannot be forgotten. Hardware-free: the global batch is
    ``teacher.prepare_batch_size`` whatever the process count, so every DDP size reuses one teacher."""
    from distillkit.stages.runner import training_arguments

    args = training_arguments(cfg, stage, plan.cache_root / "unused", plan.use_cpu).to_dict()
    recipe = {k: v for k, v in args.items() if not k.startswith(_NOT_RECIPE)}
    return {
        "teacher": _teacher_settings(cfg, plan.kind),
        "data": _data_spec(cfg, plan.cache_root, plan.kind),
        "labels": plan.task.label_names,
        "tokenizer": cache.entry_key(plan.tokenizer.get_vocab()),
        "stage": {
            "epochs": stage.budget.epochs,
            "learning_rate": stage.budget.learning_rate,
            "seed": stage.budget.seed,
            "layer_learning_rate": stage.budget.layer_learning_rate,
            "method": stage.objective.formula(),
            "warmup_ratio": cfg.train.warmup_ratio,
        },  # the trainer turns it into steps itself
        "recipe": recipe,
    }


def _teacher_settings(cfg: RunConfig, kind) -> dict:
    """The teacher group's settings in its key: how its outputs are cached is no part of it, nor the arch settings
    only another task's models read (its row's ``arch_keys``: so every encoder teacher keeps the key it had before
    decoders existed, and a new task's settings change no other task's keys)."""
    # endpoint and sampling concern a teacher that writes text (method=blackbox_sft), never a prepared one's weights
    skip = ("name", "endpoint", "sampling")
    settings = {
        k: v for k, v in dataclasses.asdict(cfg.teacher).items() if k not in skip and not k.startswith("cache_")
    }
    if settings["arch"] is not None:
        for name, row in TASKS.items():
            if name != kind.name:
                for key in row.arch_keys:
                    settings["arch"].pop(key, None)
    return settings


def _prepare_batching(cfg: RunConfig) -> tuple[int, int]:
    """(per-device batch, accumulation steps) that make ``teacher.prepare_batch_size`` the global batch on this
    many processes, each step no larger than ``hardware.per_device_batch_size``."""
    world = dist.world_size(default=cfg.hardware.devices)
    batch = cfg.teacher.prepare_batch_size
    require(
        batch % world == 0,
        "teacher.prepare_batch_size",
        batch,
        f"does not divide over {world} processes.",
        f"use a multiple of {world}, e.g. teacher.prepare_batch_size={max(world, batch - batch % world)}.",
    )
    per_device = batch // world
    steps = next(
        a
        for a in range(1, per_device + 1)
        if per_device % a == 0 and per_device // a <= cfg.hardware.per_device_batch_size
    )
    return per_device // steps, steps


@dataclass
class Attention:
    """Attention maps exist only under eager attention (sdpa returns none): every model the run makes is
    switched when a stage reads them; ``restore`` puts each back, so evaluation times models as they ship."""

    needed_by: list[str] = field(default_factory=list)
    _before: list = field(default_factory=list)

    def switch(self, model) -> None:
        if self.needed_by and model.config._attn_implementation != "eager":
            if not self._before:
                log.info(
                    "Stage(s) %s read attention maps: the models switch to eager attention (slower than sdpa, "
                    "and needed for output_attentions).",
                    ", ".join(self.needed_by),
                )
            self._before.append((model, model.config._attn_implementation))
            model.set_attn_implementation("eager")

    def restore(self) -> None:
        for model, implementation in self._before:
            model.set_attn_implementation(implementation)
        self._before.clear()


@dataclass
class Plan:
    """Everything decided and checked before the first weight is loaded or trained."""

    task: TaskData  # the loaded splits (the task's data, not yet tokenised)
    tokenizer: object
    teacher_config: object  # None with teacher=none
    student_config: object
    student_layers: list[int] | None
    prepare_teacher: bool
    stages: list  # [teacher_prep] + the method's stages
    use_cpu: bool
    device: torch.device
    cache_root: Path
    model_configs: dict = field(default_factory=dict)  # model name → (config, teacher layers it copies or None)
    attention: Attention = field(default_factory=Attention)
    kind: object = None  # the run's Task (distillkit/tasks): everything task-specific is asked of it

    @property
    def method_stages(self) -> list:
        """The method's training stages (not teacher_prep, not a generation stage)."""
        return [s for s in self.stages if not s.trains_teacher and s.trains]

    @property
    def generation_stages(self) -> list:
        return [s for s in self.stages if not s.trains]


def make_plan(cfg: RunConfig) -> Plan:
    """The checks: device, data fields, tokenizers, model configs, layer map, stages. Raises ConfigError."""
    import datasets

    from distillkit import tasks

    datasets.disable_progress_bars()
    use_cpu, device = resolve_device(cfg.hardware)
    root = cache.usable_root(cfg.cache_dir)
    if cfg.teacher.endpoint is not None:  # an endpoint teacher: reachable, keyed, serving the model, before any work
        from distillkit.teachers import endpoint

        endpoint.check(cfg.teacher.endpoint)
    kind = tasks.get(cfg.task.name)
    task = kind.load(cfg.data)
    tokenizer = _tokenizer(cfg, task, root, kind)
    kind.check(cfg, task, tokenizer)
    t_config, head_fitted = kind.teacher_config(cfg.teacher, tokenizer, task.label_names)
    s_config, layers = kind.student_config(cfg.student, t_config, tokenizer, task.label_names)
    if cfg.student.path is not None:
        models.check_tokenizers(tokenizer, models.load_tokenizer("student.path", cfg.student.path), cfg.student.path)
    no_teacher = not cfg.teacher.has_model  # teacher=none, or an endpoint (teacher=openai): no weights to load
    require(
        no_teacher or head_fitted or cfg.teacher.prepare != "never",
        "teacher.prepare",
        "never",
        f"but {cfg.teacher.path} has no classifier for these {task.num_labels} labels.",
        "use teacher.prepare=auto to fine-tune it on the task first, or give a fine-tuned checkpoint.",
    )
    prepare = not no_teacher and (
        cfg.teacher.prepare == "always" or (cfg.teacher.prepare == "auto" and not head_fitted)
    )
    dims = Dims.from_configs(s_config, t_config, len(task.train), cfg.pair.layer_map, layers)
    stages = plan_stages(cfg, prepare, dims)
    teacher_cache.check(cfg, stages)
    if prepare:
        stages[0].budget.batch_size, stages[0].budget.accumulation_steps = _prepare_batching(cfg)
    plan = Plan(
        task,
        tokenizer,
        None if no_teacher else t_config,
        s_config,
        layers,
        prepare,
        stages,
        use_cpu,
        device,
        root,
        kind=kind,
    )
    plan.model_configs = _model_configs(cfg, plan, t_config, task.label_names)
    plan.attention.needed_by = [s.name for s in plan.method_stages if s.objective.needs_attentions]
    augment_checks.check(cfg, plan)
    warn_slow_from_scratch(cfg)
    return plan


# A student from scratch at the rate that fits a copied one barely moves in a short budget: measured on TREC with
# a real MiniLM-L6 teacher, a 4×128 student, 400 steps, 3 seeds (docs/benchmarks.md, "narrow student"). The
# embedded pairs (conf/pair/) set their own from-scratch rates; this warns only where nothing did.
FROM_SCRATCH_MIN_RATE = 1e-4


def warn_slow_from_scratch(cfg: RunConfig) -> str | None:
    """The warning (logged, and returned for tests) when a student from scratch (student.init=random) trains at
    train.learning_rate ≤ 1e-4, the rate for students copied from teacher layers; None otherwise."""
    if cfg.student.path is not None or cfg.student.init != "random" or cfg.train.learning_rate > FROM_SCRATCH_MIN_RATE:
        return None
    message = (
        f"student.init=random with train.learning_rate={cfg.train.learning_rate:g}: that rate suits a student "
        "copied from teacher layers; a student from scratch barely moves at it in a short budget (TREC, 4×128 "
        "student, 400 steps, 3 seeds: label-only accuracy 52.1 at 1e-4 against 74.6 at 1e-3, and the feature "
        "methods collapse to one class at 1e-4). Fix: train.learning_rate=1e-3 (or a pair file, conf/pair/, "
        "with the rates of your own)."
    )
    log.warning(message)
    return message


def _model_configs(cfg: RunConfig, plan: Plan, t_config, label_names) -> dict:
    """Each model the stages name → (its config, the teacher layers it copies or None); checked here."""
    configs = {"teacher": (t_config, None), "student": (plan.student_config, plan.student_layers)}
    for stage in plan.stages:
        spec = stage.student
        if spec.model in configs and spec.build != "depth":
            continue
        if spec.build == "copy":
            configs[spec.model] = configs[spec.copy_of]
        elif spec.build == "depth":
            init = cfg.student.init if cfg.student.path is None else "uniform"
            derived = StudentConfig(
                num_layers=spec.num_layers,
                init="random" if init == "list" else init,
                **(
                    {}
                    if cfg.student.path
                    else {k: getattr(cfg.student, k) for k in ("hidden_size", "num_heads", "intermediate_size")}
                ),
            )
            configs[spec.model] = plan.kind.student_config(derived, t_config, plan.tokenizer, label_names)
        else:
            configs[spec.model] = configs["student"]
    return configs
