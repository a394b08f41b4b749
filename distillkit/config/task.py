"""The ``task`` group's schema (``TaskConfig``) and ``check_task``, the rule that the method, the data, a teacher
built from a config, augmentation and ``eval.every`` serve the run's task; re-exported by ``distillkit.config.schema``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from distillkit.config.registry import REGISTRY
from distillkit.errors import one_of, require
from distillkit.errors import positive as _positive


DECODER_TYPES = ["llama", "gpt2"]  # causal LMs built from a config (task=causal_lm)


@dataclass
class TaskConfig:
    """What is learnt (DESIGN.md "Tasks"): ``classification`` (class ids; accuracy) or ``causal_lm`` (prompt →
    response; perplexity, exact match and ROUGE-L of greedy generations). The evaluation settings of causal_lm:"""

    name: str = "classification"  # classification | causal_lm
    max_new_tokens: int = 32  # greedy generation at evaluation (and seq_kd's teacher responses)
    eval_generations: Optional[int] = 400  # eval prompts generated and scored per model (null = all)
    stage_generations: int = 100  # the same, when a stage ends (its eval line)
    show_generations: int = 8  # generations written to the log and to W&B as a table
    speed_batches: int = 2  # prompt batches (eval_batch_size) whose generation is timed, per repetition

    def __post_init__(self):
        one_of("task.name", self.name, TASKS)
        _positive("task.max_new_tokens", self.max_new_tokens, "use a count >= 1, e.g. 32.")
        require(self.eval_generations is None or self.eval_generations >= 1, "task.eval_generations",
                self.eval_generations, "must be >= 1 or null.", "use e.g. 400, or null for every eval prompt.")
        _positive("task.stage_generations", self.stage_generations, "use a count >= 1, e.g. 100.")
        require(self.show_generations >= 0, "task.show_generations", self.show_generations, "must not be negative.",
                "use 0 (none) or a small count such as 8.")
        _positive("task.speed_batches", self.speed_batches, "use an integer >= 1.")


TASKS = ["classification", "causal_lm"]


def check_task(parts: dict) -> None:
    """The method, the data and a teacher built from a config must serve the task (``task.name``)."""
    task, method, data, teacher = parts["task"].name, parts["method"].name, parts["data"], parts["teacher"]
    other = "causal_lm" if task == "classification" else "classification"
    serves = REGISTRY[method].tasks
    require(task in serves, "method", method, f"distils {' and '.join(serves)} models, and this run's task is "
            f"{task}.", f"pick a method of the {task} task (conf/method/; the README lists them by task), or "
            f"task={other}.")
    lm_source = data.source == "lm_synthetic"
    require(lm_source == (task == "causal_lm") or data.source in ("local", "hub"), "data", data.name,
            f"is {'an instruction (prompt → response)' if lm_source else 'a classification'} dataset, and this "
            f"run's task is {task}.", "use data=lm_synthetic / lm_local / lm_hub / alpaca / dolly with "
            "task=causal_lm, and data=synthetic / sst2 / local / hub with task=classification.")
    require(not (parts["hardware"].shard_teacher and method == "seq_kd"), "hardware.shard_teacher", True,
            "shards the teacher over the processes, and method=seq_kd decodes the training prompts with the teacher "
            "on rank 0 alone.", "drop hardware.shard_teacher for seq_kd (or decode with a smaller teacher).")
    if task == "causal_lm":
        selected = parts["augmentation"].selected
        require(not selected, "augmentation", ",".join(selected), "applies to classification inputs, and this run's "
                "task is causal_lm (text augmentation of instructions would change their answers).",
                "drop the augmentation= override (augmentation=none).")
        every = parts["eval"].every
        require(every is None, "eval.every", every, "evaluates classifiers during training, and this run's task is "
                "causal_lm (its stages are evaluated when they end).", "drop eval.every (null).")
    arch = teacher.arch
    if arch is not None:
        decoder = arch.model_type in DECODER_TYPES
        require(decoder == (task == "causal_lm"), "teacher.arch.model_type", arch.model_type,
                f"builds {'a causal LM' if decoder else 'an encoder classifier'}, and this run's task is {task}.",
                f"use teacher={'embedded-llama' if task == 'causal_lm' else 'embedded-bert-12l'} (or another "
                f"teacher of the {task} task).")
