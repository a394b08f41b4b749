"""The task table (``TASKS``: one row per ``task=<name>``), the ``task`` group's schema (``TaskConfig``) and
``check_task``, the rule that the method, the data, a teacher built from a config, augmentation and ``eval.every``
serve the run's task; re-exported by ``distillkit.config.schema``.

The table is the one place a task is named. A row is plain data, light to import, so the config check that runs
before anything heavy reads it: the facts about a task that a configuration can be checked against, and its
implementation (the ``Task`` subclass in its package under ``distillkit/tasks/``) as a ``"module:Class"`` string
that ``distillkit.tasks.get`` imports when a run is planned. Shared code asks the row or the ``Task`` object, never
the task's name. Adding a task: its package, its row here, its ``conf/`` files (docs/adding-a-task.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from distillkit.config.registry import REGISTRY
from distillkit.errors import ConfigError, require
from distillkit.errors import positive as _positive


@dataclass(frozen=True)
class TaskRow:
    """What a configuration is checked against for one task; everything else the task owns is in its package."""

    implementation: str  # "module:Class" of its distillkit.tasks.Task subclass, imported when a run is planned
    method_families: tuple[str, ...]  # the method table's families (MethodEntry.family) whose methods apply
    data_sources: tuple[str, ...]  # data.source values of its own datasets (local and hub files serve every task)
    dataset: str  # what its own datasets are, for messages: "a classification", "an instruction (...)"
    data_options: str  # the data= options of the task, for messages
    data_keys: tuple[str, ...]  # the data group's settings only this task reads: kept out of every other task's
    #                             cache keys (prepared teacher, tokenizer), so a new task never changes theirs
    input_keys: tuple[str, ...]  # the batch entries its models' forward takes (models.features.model_inputs)
    arch_types: tuple[str, ...]  # teacher.arch.model_type values it builds models of from a config
    arch_keys: tuple[str, ...]  # the teacher.arch settings only its models read: kept out of every other task's
    #                             prepared-teacher key (as data_keys are out of their data keys)
    models: str  # what those models are, for messages
    default_teacher: str  # the teacher= option built from a config, for messages
    no_augmentation: str | None = None  # why augmentation= does not apply to the task (None: it does)
    no_eval_every: str | None = None  # why eval.every (evaluation during training) does not (None: it does)


# The first row is the default task: TaskConfig's, and a config.yaml written before tasks existed.
TASKS: dict[str, TaskRow] = {
    "classification": TaskRow(
        "distillkit.tasks.classification.task:Classification",
        method_families=("logits", "features", "relations", "self-distillation", "chains"),
        data_sources=("synthetic",),
        dataset="a classification",
        data_options="synthetic / sst2 / local / hub",
        data_keys=("synthetic",),
        input_keys=("input_ids", "attention_mask", "token_type_ids", "position_ids"),
        arch_types=("megatron-bert", "bert"),
        arch_keys=(),
        models="an encoder classifier",
        default_teacher="embedded-bert-12l",
    ),
    "causal_lm": TaskRow(
        "distillkit.tasks.causal_lm.task:CausalLM",
        method_families=("llm",),
        data_sources=("lm_synthetic",),
        dataset="an instruction (prompt → response)",
        data_options="lm_synthetic / lm_local / lm_hub / alpaca / dolly",
        data_keys=("prompt_field", "response_field", "messages_field", "preset", "prompt_template", "lm_synthetic"),
        input_keys=("input_ids", "attention_mask", "position_ids"),
        arch_types=("llama", "gpt2"),
        arch_keys=("num_key_value_heads", "tie_word_embeddings"),
        models="a causal LM",
        default_teacher="embedded-llama",
        no_augmentation="text augmentation of instructions would change their answers",
        no_eval_every="its stages are evaluated when they end",
    ),
}
DEFAULT_TASK = next(iter(TASKS))
SHARED_DATA_SOURCES = ("local", "hub")  # files and hub datasets: each task reads them with its own fields
DATA_SOURCES = [source for r in TASKS.values() for source in r.data_sources] + list(SHARED_DATA_SOURCES)


def row(name: str) -> TaskRow:
    """The table's row of task ``name``; an unknown name is a ConfigError."""
    if name not in TASKS:
        raise ConfigError(
            "task.name",
            name,
            "is not a task distillkit knows.",
            f"use one of {', '.join(TASKS)} (conf/task/; a new task adds its row to "
            "distillkit/config/task.py's TASKS, see docs/adding-a-task.md).",
        )
    return TASKS[name]


def tasks_of_method(method: str) -> list[str]:
    """The tasks whose models ``method`` distils (its family is one of theirs), in table order."""
    family = REGISTRY[method].family
    return [name for name, r in TASKS.items() if family in r.method_families]


@dataclass
class TaskConfig:
    """What is learnt (DESIGN.md "Tasks"): ``classification`` (class ids; accuracy) or ``causal_lm`` (prompt →
    response; perplexity, exact match and ROUGE-L of greedy generations). The evaluation settings of causal_lm:"""

    name: str = DEFAULT_TASK  # a row of TASKS: classification | causal_lm
    max_new_tokens: int = 32  # greedy generation at evaluation (and seq_kd's teacher responses)
    eval_generations: Optional[int] = 400  # eval prompts generated and scored per model (null = all)
    stage_generations: int = 100  # the same, when a stage ends (its eval line)
    show_generations: int = 8  # generations written to the log and to W&B as a table
    speed_batches: int = 2  # prompt batches (eval_batch_size) whose generation is timed, per repetition

    def __post_init__(self):
        row(self.name)
        _positive("task.max_new_tokens", self.max_new_tokens, "use a count >= 1, e.g. 32.")
        require(
            self.eval_generations is None or self.eval_generations >= 1,
            "task.eval_generations",
            self.eval_generations,
            "must be >= 1 or null.",
            "use e.g. 400, or null for every eval prompt.",
        )
        _positive("task.stage_generations", self.stage_generations, "use a count >= 1, e.g. 100.")
        require(
            self.show_generations >= 0,
            "task.show_generations",
            self.show_generations,
            "must not be negative.",
            "use 0 (none) or a small count such as 8.",
        )
        _positive("task.speed_batches", self.speed_batches, "use an integer >= 1.")


def check_task(parts: dict) -> None:
    """The method, the data and a teacher built from a config must serve the task (``task.name``), and
    augmentation and ``eval.every`` must apply to it: each checked against the task's row."""
    task, method, data, teacher = parts["task"].name, parts["method"].name, parts["data"], parts["teacher"]
    own = row(task)
    serves = tasks_of_method(method)
    require(
        task in serves,
        "method",
        method,
        f"distils {' and '.join(serves)} models, and this run's task is {task}.",
        f"pick a method of the {task} task (conf/method/; the README lists them by task), or "
        f"task={serves[0] if serves else task}.",
    )
    owner = next((name for name, r in TASKS.items() if data.source in r.data_sources), None)
    named = [task] + ([owner] if owner not in (None, task) else [])  # the run's task, then the data's
    require(
        owner in (task, None) or data.source in SHARED_DATA_SOURCES,
        "data",
        data.name,
        f"is {TASKS[owner].dataset if owner else 'a'} dataset, and this run's task is {task}.",
        "use " + ", and ".join(f"data={TASKS[name].data_options} with task={name}" for name in named) + ".",
    )
    require(
        not (parts["hardware"].shard_teacher and method == "seq_kd"),
        "hardware.shard_teacher",
        True,
        "shards the teacher over the processes, and method=seq_kd decodes the training prompts with the teacher "
        "on rank 0 alone.",
        "drop hardware.shard_teacher for seq_kd (or decode with a smaller teacher).",
    )
    generating = [name for name, entry in REGISTRY.items() if entry.generates]
    require(
        teacher.endpoint is None or REGISTRY[method].generates,
        "teacher",
        teacher.name,
        f"is an endpoint ({teacher.endpoint.base_url if teacher.endpoint else ''}): it writes text and has no "
        f"logits, hidden states or weights, and method={method} reads them.",
        f"use a method whose teacher writes text ({', '.join(generating)}), or a teacher with weights.",
    )
    method_check = getattr(parts["method"], "check_run", None)  # a method's own checks against the other groups
    if method_check is not None:
        method_check(parts)
    if own.no_augmentation is not None:
        selected = parts["augmentation"].selected
        served = " and ".join(name for name, r in TASKS.items() if r.no_augmentation is None)
        require(
            not selected,
            "augmentation",
            ",".join(selected),
            f"applies to {served} inputs, and this run's task is {task} ({own.no_augmentation}).",
            "drop the augmentation= override (augmentation=none).",
        )
    if own.no_eval_every is not None:
        every = parts["eval"].every
        require(
            every is None,
            "eval.every",
            every,
            f"evaluates the student during training, and this run's task is {task} ({own.no_eval_every}).",
            "drop eval.every (null).",
        )
    arch = teacher.arch
    if arch is not None:
        builder = next((name for name, r in TASKS.items() if arch.model_type in r.arch_types), task)
        require(
            builder == task,
            "teacher.arch.model_type",
            arch.model_type,
            f"builds {TASKS[builder].models}, and this run's task is {task}.",
            f"use teacher={own.default_teacher} (or another teacher of the {task} task).",
        )
