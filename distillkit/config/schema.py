"""Schema dataclasses, one per config group, and ``validate()`` that checks a composed config.

Hydra composes YAML from ``conf/``; ``validate`` merges each group into its schema (unknown keys and
wrong types fail there) and builds the objects, whose ``__post_init__`` checks ranges and cross-field
rules. Everything raises ``ConfigError`` naming the key, the value and the fix, before anything heavy
is imported. Checks that need the models or tokenizers (layer counts, vocabularies) live in
``models.py`` and run right after, still before any training.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from distillkit.config.augment import AugmentationConfig  # noqa: F401 (re-exported)
from distillkit.config.build import build_section
from distillkit.config.data import LOCAL_FORMATS, DataConfig, SyntheticDataConfig  # noqa: F401 (re-exported)
from distillkit.config.endpoint import EndpointConfig, SamplingSettings  # noqa: F401 (re-exported)
from distillkit.config.method import KDMethodConfig, NoneMethodConfig  # noqa: F401 (re-exported)
from distillkit.config.registry import METHOD_SCHEMAS, build_method
from distillkit.config.task import DEFAULT_TASK, TASKS, TaskConfig, check_task
from distillkit.errors import ConfigError, one_of, require
from distillkit.errors import positive as _positive
from distillkit.errors import unit_interval as _unit

# ------------------------------------------------------------------------------------------- models
ENCODER_TYPES = ["megatron-bert", "bert"]  # BERT-style encoders: identity attention applies to them
ARCH_TYPES = [t for row in TASKS.values() for t in row.arch_types]  # every model type some task builds from a config


@dataclass
class ArchConfig:
    """A BERT-style encoder built from a config (no download), with a WordPiece tokenizer of
    ``vocab_size`` tokens trained on the task's training texts."""

    # megatron-bert: BERT with pre-LayerNorm (trains faster from scratch) | bert; task=causal_lm: llama | gpt2
    model_type: str = "megatron-bert"
    num_layers: int = 12
    hidden_size: int = 128
    num_heads: int = 4
    intermediate_size: int = 512
    max_position_embeddings: int = 512
    vocab_size: int = 2000
    dropout: float = 0.1  # hidden and attention dropout; a derived student inherits it
    # The first k layers' attention value and output projections start as the identity, so [CLS] starts
    # as a bag of the sentence's words instead of a product of two near-zero matrices away from them.
    identity_attention_layers: int = 1
    num_key_value_heads: Optional[int] = None  # llama: grouped-query attention (null = num_heads)
    tie_word_embeddings: bool = True  # decoders: the output layer shares the input embeddings

    def __post_init__(self):
        one_of("teacher.arch.model_type", self.model_type, ARCH_TYPES)
        for f in fields(self):
            if f.name not in (
                "dropout",
                "model_type",
                "identity_attention_layers",
                "num_key_value_heads",
                "tie_word_embeddings",
            ):
                _positive(f"teacher.arch.{f.name}", getattr(self, f.name))
        require(
            0.0 <= self.dropout < 1.0,
            "teacher.arch.dropout",
            self.dropout,
            "is outside [0, 1).",
            "use a probability such as 0.1 (0 switches dropout off).",
        )
        require(
            self.model_type in ENCODER_TYPES or self.identity_attention_layers == 0,
            "teacher.arch.identity_attention_layers",
            self.identity_attention_layers,
            f"applies to BERT-style encoders, and model_type={self.model_type} is a decoder.",
            "set teacher.arch.identity_attention_layers=0.",
        )
        require(
            0 <= self.identity_attention_layers <= self.num_layers,
            "teacher.arch.identity_attention_layers",
            self.identity_attention_layers,
            f"is outside 0..num_layers={self.num_layers}.",
            "use 0 (plain initialisation) up to the number of layers; 1 is the default.",
        )
        require(
            self.vocab_size >= 100,
            "teacher.arch.vocab_size",
            self.vocab_size,
            "is too small for a WordPiece vocabulary.",
            "use at least 100.",
        )
        require(
            self.hidden_size % self.num_heads == 0,
            "teacher.arch.num_heads",
            self.num_heads,
            f"does not divide hidden_size={self.hidden_size}.",
            "pick a head count that divides the hidden size.",
        )
        kv = self.num_key_value_heads
        require(
            kv is None or (kv >= 1 and self.num_heads % kv == 0),
            "teacher.arch.num_key_value_heads",
            kv,
            f"must divide num_heads={self.num_heads} (each key/value head serves a group of query heads).",
            "use null (one per query head) or a divisor of num_heads.",
        )


@dataclass
class TeacherConfig:
    name: str = "embedded-bert-12l"
    path: Optional[str] = None  # hub id or local directory; null = build from `arch`
    arch: Optional[ArchConfig] = None
    prepare: str = "auto"  # auto: fine-tune when the checkpoint has no head fitted to the task
    prepare_epochs: float = 3.0
    prepare_learning_rate: float = 2e-5
    prepare_seed: int = 0  # fixed apart from the run's seed, so a seed sweep shares one teacher
    # The encoder layers' learning rate during preparation; null = prepare_learning_rate for everything.
    # A teacher trained from scratch learns far faster with slow layers and fast embeddings and head.
    prepare_layer_learning_rate: Optional[float] = None
    # The preparation's global batch (all processes and accumulation steps together), independent of the
    # hardware group: every process count and per-device batch then prepares, and reuses, one teacher.
    prepare_batch_size: int = 32
    revision: Optional[str] = None
    trust_remote_code: bool = False
    # The teacher's outputs computed once per training example, stored content-addressed, served by index
    # (distillkit/teachers/output_cache.py): auto (stages whose teacher is frozen and inputs fixed, within the budget)
    # | always (refuse a run where a stage cannot be cached) | never.
    cache_outputs: str = "auto"
    cache_budget_gb: float = 8.0  # auto: the largest entry it makes (hidden states and attention maps grow fast)
    cache_precision: str = "fp16"  # of the cached features (logits are always float32): fp16 | bf16 | fp32
    # Causal LMs (off-policy forward KL): the teacher's k most likely tokens per response position + the tail mass
    cache_topk: int = 64
    # A teacher that only writes text (teacher=openai): a chat-completions endpoint, no weights. ``arch`` is then only
    # the template of a student built from a config (as with teacher=none), and the methods that read the teacher's
    # logits or features do not apply (method=blackbox_sft does).
    endpoint: Optional[EndpointConfig] = None
    # How the teacher answers prompts when a method asks it to write (method=blackbox_sft): an endpoint, or a local
    # model through transformers' generate.
    sampling: SamplingSettings = field(default_factory=SamplingSettings)

    @property
    def has_model(self) -> bool:
        """Whether the teacher is a model the run loads (not teacher=none, not an endpoint)."""
        return self.name != "none" and self.endpoint is None

    def __post_init__(self):
        one_of("teacher.cache_outputs", self.cache_outputs, ["auto", "always", "never"])
        one_of("teacher.cache_precision", self.cache_precision, ["fp16", "bf16", "fp32"])
        _positive("teacher.cache_budget_gb", self.cache_budget_gb)
        _positive(
            "teacher.cache_topk",
            self.cache_topk,
            "use k >= 1, e.g. 64 (the loss is exact when k covers the "
            "vocabulary, a lower bound of the full KL below it).",
        )
        require(
            (self.path is None) != (self.arch is None),
            "teacher.path",
            self.path,
            "and teacher.arch are both set or both empty." if self.path else "is empty and there is no teacher.arch.",
            "give exactly one: a hub id / local directory in teacher.path, or an architecture in teacher.arch.",
        )
        one_of("teacher.prepare", self.prepare, ["auto", "always", "never"])
        _positive("teacher.prepare_epochs", self.prepare_epochs)
        _positive("teacher.prepare_learning_rate", self.prepare_learning_rate)
        _positive("teacher.prepare_batch_size", self.prepare_batch_size, "use an integer >= 1, e.g. 32.")
        require(
            self.prepare_layer_learning_rate is None or self.prepare_layer_learning_rate > 0,
            "teacher.prepare_layer_learning_rate",
            self.prepare_layer_learning_rate,
            "must be positive.",
            "use a positive value, or null for teacher.prepare_learning_rate.",
        )
        require(
            self.endpoint is None or self.path is None,
            "teacher.path",
            self.path,
            "is set for an endpoint teacher (teacher.endpoint), which has no weights to load.",
            "drop teacher.path (the endpoint answers), or drop teacher.endpoint to distil from that checkpoint.",
        )
        if self.path is None and self.has_model:
            require(
                self.prepare != "never",
                "teacher.prepare",
                self.prepare,
                "cannot be 'never' for a teacher built from a config: it has never seen the task.",
                "use teacher.prepare=auto, or give a fine-tuned checkpoint in teacher.path.",
            )


STUDENT_INITS = ["uniform", "first", "last", "list", "random"]


@dataclass
class StudentConfig:
    name: str = "bert-4l"
    path: Optional[str] = None  # hub id or local directory; null = derived from the teacher
    num_layers: Optional[int] = None
    hidden_size: Optional[int] = None  # null = the teacher's
    num_heads: Optional[int] = None
    intermediate_size: Optional[int] = None
    init: str = "uniform"
    layers: Optional[list[int]] = None  # init=list: which teacher layers, in order
    revision: Optional[str] = None
    trust_remote_code: bool = False

    def __post_init__(self):
        one_of("student.init", self.init, STUDENT_INITS)
        if self.path is not None:
            return
        require(
            self.num_layers is not None and self.num_layers >= 1,
            "student.num_layers",
            self.num_layers,
            "must be at least 1 for a student derived from the teacher.",
            "set student.num_layers=K.",
        )
        for key in ("hidden_size", "num_heads", "intermediate_size"):
            value = getattr(self, key)
            require(
                value is None or value > 0,
                f"student.{key}",
                value,
                "must be positive.",
                "use a positive size, or null for the teacher's.",
            )
        if self.init == "list":
            require(
                self.layers is not None and len(self.layers) == self.num_layers,
                "student.layers",
                self.layers,
                f"must list exactly num_layers={self.num_layers} teacher layers for init=list.",
                f"give {self.num_layers} 0-based teacher layer indices, e.g. student.layers=[0,5,11].",
            )
        else:
            require(
                self.layers is None,
                "student.layers",
                self.layers,
                f"is only used with init=list (init={self.init}).",
                "add student.init=list, or drop student.layers.",
            )


# ------------------------------------------------------------------------------- hardware, logging
@dataclass
class HardwareConfig:
    name: str = "auto"
    accelerator: str = "auto"  # auto | cpu | gpu
    devices: int = 1
    precision: str = "fp32"  # fp32 | bf16 | fp16
    per_device_batch_size: int = 32
    eval_batch_size: int = 128
    gradient_accumulation_steps: int = 1
    dataloader_workers: int = 0
    # The frozen teacher sharded with FSDP over the processes (devices > 1): for a teacher that does not fit one
    # device. Its outputs are then not cached, and evaluations run on every process (distillkit/teachers/sharding.py).
    shard_teacher: bool = False

    def __post_init__(self):
        one_of("hardware.accelerator", self.accelerator, ["auto", "cpu", "gpu"])
        one_of("hardware.precision", self.precision, ["fp32", "bf16", "fp16"])
        for key in ("devices", "per_device_batch_size", "eval_batch_size", "gradient_accumulation_steps"):
            _positive(f"hardware.{key}", getattr(self, key), "use an integer >= 1.")
        require(
            self.dataloader_workers >= 0,
            "hardware.dataloader_workers",
            self.dataloader_workers,
            "must not be negative.",
            "use 0 (load in the main process) or more.",
        )
        require(
            not self.shard_teacher or self.devices > 1,
            "hardware.shard_teacher",
            self.shard_teacher,
            "shards the teacher over the processes, and this run has one (hardware.devices=1).",
            "use hardware=ddp hardware.devices=N (N > 1), or drop hardware.shard_teacher.",
        )
        if self.accelerator == "cpu":
            require(
                self.precision != "fp16",
                "hardware.precision",
                self.precision,
                "is not supported on the CPU.",
                "use hardware.precision=bf16 or fp32 with a CPU, or hardware=gpu.",
            )


@dataclass
class LoggerConfig:
    name: str = "wandb"  # wandb | none
    project: str = "distillkit"
    entity: Optional[str] = None
    mode: str = "auto"  # auto | online | offline | disabled
    group: Optional[str] = None
    tags: list[str] = field(default_factory=list)

    def __post_init__(self):
        one_of("logger.name", self.name, ["wandb", "none"])
        one_of("logger.mode", self.mode, ["auto", "online", "offline", "disabled"])


@dataclass
class TrainConfig:
    epochs: float = 3.0
    max_steps: int = -1
    learning_rate: float = 1e-4
    # The encoder layers' rate, when it differs from learning_rate (which then drives embeddings, pooler and
    # head); null = learning_rate for everything. A student trained from scratch (student.init=random)
    # needs what the embedded teacher needs: slow layers, fast embeddings and head.
    layer_learning_rate: Optional[float] = None
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    lr_scheduler: str = "linear"
    max_grad_norm: float = 1.0
    logging_steps: int = 25
    save_steps: int = 100
    save_total_limit: int = 2
    group_by_length: bool = True  # batches of similar lengths: less padding, faster steps
    # Consecutive optimizer steps with a non-finite loss or gradient norm that are skipped before the run stops
    # as diverged (0: stop at the first). A skipped step leaves the weights as they were.
    nonfinite_patience: int = 0

    def __post_init__(self):
        _positive("train.epochs", self.epochs)
        require(
            self.max_steps == -1 or self.max_steps > 0,
            "train.max_steps",
            self.max_steps,
            "must be -1 (use epochs) or positive.",
            "use train.max_steps=-1 or a step count.",
        )
        _positive("train.learning_rate", self.learning_rate, "use a learning rate > 0, e.g. 1e-4.")
        require(
            self.layer_learning_rate is None or self.layer_learning_rate > 0,
            "train.layer_learning_rate",
            self.layer_learning_rate,
            "must be positive.",
            "use a positive value, or null for train.learning_rate.",
        )
        require(
            self.weight_decay >= 0, "train.weight_decay", self.weight_decay, "must not be negative.", "use 0 or more."
        )
        _unit("train.warmup_ratio", self.warmup_ratio)
        one_of("train.lr_scheduler", self.lr_scheduler, ["linear", "cosine", "constant", "constant_with_warmup"])
        _positive("train.max_grad_norm", self.max_grad_norm)
        for key in ("logging_steps", "save_steps", "save_total_limit"):
            _positive(f"train.{key}", getattr(self, key), "use an integer >= 1.")
        require(
            isinstance(self.nonfinite_patience, int) and self.nonfinite_patience >= 0,
            "train.nonfinite_patience",
            self.nonfinite_patience,
            "must be a count >= 0.",
            "use 0 (stop at the first NaN/inf) or e.g. 3.",
        )


@dataclass
class EvalConfig:
    latency_batches: int = 20
    throughput_batches: int = 2  # per repetition (eval.repeats): 2 × 5 × 128 samples per model
    threads: Optional[int] = 1  # torch CPU threads while speed is timed (null = torch's default); moot on GPU
    repeats: int = 5  # interleaved teacher/student repetitions; the report gives the median and the spread
    warmup: int = 2  # untimed passes of each kind per model before the first repetition
    # Evaluation during training, per student stage that reads logits: null (off) | epoch | every N steps.
    every: Any = None
    early_stopping_patience: Optional[int] = None  # evaluations without improvement before a stage stops
    keep: str = "last"  # last | best: the checkpoint (by eval accuracy) a stage ends with; best needs `every`

    def __post_init__(self):
        _positive("eval.latency_batches", self.latency_batches, "use an integer >= 1.")
        _positive("eval.throughput_batches", self.throughput_batches, "use an integer >= 1.")
        require(
            self.threads is None or self.threads >= 1,
            "eval.threads",
            self.threads,
            "must be >= 1 or null.",
            "use eval.threads=1 (steady latency on a shared CPU), a larger count, or null for torch's default.",
        )
        _positive("eval.repeats", self.repeats, "use an integer >= 1 (5 gives a median and a spread).")
        require(
            self.warmup >= 0,
            "eval.warmup",
            self.warmup,
            "must not be negative.",
            "use 0 (no warm-up) or a small count such as 2.",
        )
        self._check_eval_during_training()

    def _check_eval_during_training(self):
        every = self.every
        require(
            every is None
            or every == "epoch"
            or (isinstance(every, int) and not isinstance(every, bool) and every >= 1),
            "eval.every",
            every,
            "must be null (no evaluation during training), epoch, or a step count >= 1.",
            "use eval.every=epoch or e.g. eval.every=100.",
        )
        one_of("eval.keep", self.keep, ["last", "best"])
        require(
            self.early_stopping_patience is None or self.early_stopping_patience >= 1,
            "eval.early_stopping_patience",
            self.early_stopping_patience,
            "must be >= 1 or null.",
            "use null (no early stopping) or the evaluations without improvement to allow, e.g. 3.",
        )
        for key, value, off in (
            ("eval.keep", self.keep, "last"),
            ("eval.early_stopping_patience", self.early_stopping_patience, "null"),
        ):
            require(
                value in (None, "last") or every is not None,
                key,
                value,
                "needs evaluation during training, and eval.every is null.",
                f"add eval.every=epoch or eval.every=<steps>, or use {key}={off}.",
            )


@dataclass
class PairConfig:
    """Teacher×student specifics from ``conf/pair/<teacher>_<student>.yaml``, when such a file exists."""

    layer_map: Optional[list[int]] = None  # teacher layer (1..N) of student layers 1, 2, ...; used by strategy=auto

    def __post_init__(self):
        require(
            self.layer_map is None or all(isinstance(i, int) and i >= 1 for i in self.layer_map),
            "pair.layer_map",
            self.layer_map,
            "must list 1-based teacher layer numbers.",
            "fix the pair file (conf/pair/<teacher>_<student>.yaml), e.g. layer_map: [1, 5, 8, 12].",
        )


@dataclass
class RunConfig:
    """The whole validated configuration of one run."""

    data: DataConfig
    teacher: TeacherConfig
    student: StudentConfig
    method: Any  # one of METHOD_SCHEMAS' values
    augmentation: AugmentationConfig
    hardware: HardwareConfig
    logger: LoggerConfig
    train: TrainConfig
    eval: EvalConfig
    seed: int = 42
    resume: Optional[str] = None
    cache_dir: Optional[str] = None
    pair: PairConfig = field(default_factory=PairConfig)
    task: TaskConfig = field(default_factory=TaskConfig)


GROUP_SCHEMAS = {
    "task": TaskConfig,
    "data": DataConfig,
    "teacher": TeacherConfig,
    "student": StudentConfig,
    "augmentation": AugmentationConfig,
    "hardware": HardwareConfig,
    "logger": LoggerConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
}


def validate(cfg: DictConfig | dict) -> RunConfig:
    """Check a composed config and return the typed ``RunConfig``; raise ``ConfigError`` on any problem."""
    if isinstance(cfg, DictConfig):
        try:
            raw = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
        except OmegaConfBaseException as err:
            raise ConfigError(
                str(getattr(err, "full_key", "config")),
                None,
                f"could not be resolved: {err.msg}",
                "check the interpolations in your overrides.",
            ) from None
    else:
        raw = dict(cfg)
    raw.pop("hydra", None)
    parts = {}
    raw.setdefault("task", {"name": DEFAULT_TASK})  # a config.yaml written before tasks existed
    for group, schema in GROUP_SCHEMAS.items():
        require(
            isinstance(raw.get(group), dict),
            group,
            raw.get(group),
            "is missing from the config.",
            f"select an option, e.g. {group}=<option>, or restore conf/config.yaml's defaults.",
        )
        parts[group] = build_section(group, schema, raw[group])
    method = raw.get("method")
    require(
        isinstance(method, dict) and "name" in method,
        "method",
        method,
        "is missing or has no name.",
        "select one, e.g. method=kd.",
    )
    parts["method"] = build_method(method, "method")
    parts["pair"] = build_section("pair", PairConfig, raw.get("pair") or {})
    extra = set(raw) - set(parts) - {"seed", "resume", "cache_dir", "experiment", "local"}
    require(
        not extra,
        sorted(extra)[0] if extra else "",
        raw.get(sorted(extra)[0]) if extra else None,
        "is not a top-level setting.",
        f"check the spelling; top-level keys are {', '.join(sorted(parts))}, seed, resume, cache_dir.",
    )
    require(isinstance(raw.get("seed"), int), "seed", raw.get("seed"), "must be an integer.", "use e.g. seed=1.")
    check_task(parts)
    return RunConfig(**parts, seed=raw["seed"], resume=raw.get("resume"), cache_dir=raw.get("cache_dir"))


def register_schemas() -> None:
    """Store the schemas in Hydra's ConfigStore under ``schema/``, where each group's YAML extends them
    (``defaults: [/schema/<group>@_here_, _self_]``): every key then exists for command-line overrides,
    and Hydra rejects wrong types while composing. Called by the entry point and by tests."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for group, schema in GROUP_SCHEMAS.items():
        store.store(group="schema", name=group, node=schema)
    for name, schema in METHOD_SCHEMAS.items():
        store.store(group="schema", name=f"method_{name}", node=schema)
