"""Tasks (DESIGN.md "Tasks"): what the data looks like and what "good" means, behind one interface.

A task is a package under ``tasks/`` (``classification/``, ``causal_lm/``) whose ``task.py`` implements ``Task``:
its data and tokenizer, its models (Auto class, configs built from ``teacher.arch`` or a checkpoint), its training
targets and the methods' view of them, its metrics (the one that picks the best checkpoint included), its
evaluation, its report rows and results.json section. Tasks are found through one table, ``TASKS`` in
``distillkit/config/task.py`` (plain rows the config check reads; each names its ``Task`` subclass as a
``"module:Class"`` string): ``get(name)`` imports the member the row names. The rest of the run (plan, stages,
trainer, teacher sources, report) asks the ``Task`` object, never the task's name. Shared pieces of several tasks
live beside this file (``splits.py``, ``files.py``, ``lexicon.py``); tasks never import each other.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from distillkit.config.task import DEFAULT_TASK, TASKS, TaskRow, row


@dataclass(frozen=True)
class OnPolicy:
    """What the trainer needs from a task for on-policy objectives (GKD, reverse KL, MiniLLM): ``rollout(model,
    inputs, max_new_tokens, eos_token_id, pad_token_id, temperature=, top_p=, seed=)`` (the batch with the student's
    own responses; MiniLLM's also ``teacher=, teacher_mix=``: each token drawn from α·p_teacher + (1 − α)·q_student)
    and ``forward_on_both(model, objective, sampled, data, pad_token_id)`` (one forward over the sampled
    and the dataset's rows, for a loss that reads both)."""

    rollout: Callable
    forward_on_both: Callable


class Task:
    """The interface. ``get(name)`` gives the member; its row in ``TASKS`` holds the facts the config check reads."""

    name = ""
    metric = ""  # the headline metric of results.json's task section
    checkpoint_metric = ""  # eval.every (where its row allows it): the metric (greater is better) that picks the best
    #                         checkpoint and stops early, a key of compute_metrics' result
    teacher_outputs = "outputs"  # the teacher-output cache its outputs use: "outputs" (teachers/output_cache.py:
    #                              whole outputs per example) or "topk" (teachers/topk_cache.py: top-k per token)
    tokenizer_spec: ClassVar[dict] = {}  # extra keys of the embedded tokenizer's cache key (the key of its entries)
    load_kwargs: ClassVar[dict] = {}  # extra arguments of the model class's from_pretrained

    @property
    def row(self) -> TaskRow:
        return TASKS[self.name]

    # ------------------------------------------------------------------------------------------ data
    def load(self, data_cfg):
        """The train/eval splits (``splits.TaskData``), checked, not tokenised."""
        raise NotImplementedError

    def data_spec(self, spec: dict) -> dict:
        """The data settings in cache keys (prepared teacher, tokenizer): ``spec`` holds the shared settings and
        this task's own (its row's ``data_keys``); a task may drop a setting at its old default, so entries made
        before the setting existed keep their keys."""
        return spec

    def tokenizer_texts(self, task_data) -> list[str]:
        """The texts the embedded tokenizer is trained on (the training split only)."""
        raise NotImplementedError

    def train_tokenizer(self, texts: list[str], vocab_size: int, out_dir):
        raise NotImplementedError

    def check(self, cfg, task_data, tokenizer) -> None:
        """Plan-time checks that need the tokenizer (ConfigError)."""

    def tokenize(self, task_data, tokenizer, cfg):
        """(train_set, eval_set): tokenised datasets the collator batches."""
        raise NotImplementedError

    def collator(self, tokenizer):
        raise NotImplementedError

    def data_view(self, ws, stage):
        """The examples of a stage's data view other than ``train`` (``DataView.kind``: ``text_file``,
        ``train+unlabeled``, ``teacher_responses``), tokenised; a view the task has none of raises."""
        raise ValueError(f"task {self.name} has no {stage.data.kind!r} data view (stage {stage.name!r})")

    # ---------------------------------------------------------------------------- generating teachers
    # A task whose methods include a generation stage (blackbox_sft: the task row's method families say which)
    def generation_prompts(self, task_data, system_prompt: str | None) -> list[list[dict]]:
        """The conversations (chat message lists) a generating teacher is asked: one per training row."""
        raise NotImplementedError(f"task {self.name} has no generation pipeline")

    def generated_row(self, conversation: list[dict], completion, system_prompt: str | None) -> dict:
        """The dataset row (the task's own file format) of a teacher's answer to ``conversation``."""
        raise NotImplementedError(f"task {self.name} has no generation pipeline")

    def render_conversation(self, conversation: list[dict], tokenizer, cfg) -> tuple[str, bool]:
        """(prompt text, whether it holds the special tokens already): how a local teacher model reads it."""
        raise NotImplementedError(f"task {self.name} has no generation pipeline")

    def self_improvement(self):
        """The module of the task's self-improvement pieces (method=star, critique_revise): ``references``,
        ``final_answer``, ``load_checker``, ``rationalization``, ``critique``, ``revision``."""
        raise NotImplementedError(f"task {self.name} has no self-improvement pipeline")

    def export_rows(self, split) -> list[dict]:
        """A split's rows as the task reads them back from a local file (a generated dataset's eval.jsonl)."""
        raise NotImplementedError(f"task {self.name} has no generation pipeline")

    def reuse_overrides(self, folder: str, cfg) -> str:
        """The command-line overrides that train on the generated dataset in ``folder`` (a card's reuse line)."""
        raise NotImplementedError(f"task {self.name} has no generation pipeline")

    def labeller(self, label_names: list[str], spec):
        """pipeline=label (blackbox_label): an object with ``prompts(split)`` (the conversations asking the teacher for
        each row's class), ``read(completion)`` → (class id or None, soft label or None) and ``row(example, label,
        soft, answer)`` (a labelled row in the task's file format), for ``spec`` (a ``recipe.stage.LabelSpec``)."""
        raise NotImplementedError(f"task {self.name} has no labelling pipeline")

    # ---------------------------------------------------------------------------------------- models
    def model_class(self):
        """The transformers Auto class of the task's models (``from_config`` / ``from_pretrained``)."""
        raise NotImplementedError

    def teacher_config(self, teacher_cfg, tokenizer, label_names: list[str]):
        """(the teacher's model config, whether its checkpoint already fits the task: no ``teacher_prep``)."""
        raise NotImplementedError

    def student_config(self, student_cfg, teacher_config, tokenizer, label_names: list[str]):
        """(the student's model config, the teacher layers it copies or None), checked against the teacher."""
        raise NotImplementedError

    # -------------------------------------------------------------------------------------- training
    def labels_only_method(self):
        """The method config of ``teacher_prep``: the teacher fitted to the task's own targets, nothing else."""
        raise NotImplementedError

    def compute_metrics(self, model_config):
        """The Trainer's ``compute_metrics`` for evaluation during training (``eval.every``), reporting
        ``checkpoint_metric``; None where the task's row says eval.every does not apply."""

    def on_policy(self) -> OnPolicy | None:
        """The rollout pieces on-policy objectives need (``OnPolicy``), or None where the task has none."""

    # ------------------------------------------------------------------------------------ evaluation
    def evaluate_run(self, teacher, student, eval_set, collator, tokenizer, device, cfg) -> dict:
        """results.json's teacher / student / comparison / speed sections."""
        raise NotImplementedError

    def stage_scores(self, model, source, eval_set, collator, tokenizer, device, cfg) -> dict:
        """A stage's model on the eval split when the stage ends (its record's ``eval``)."""
        raise NotImplementedError

    def describe_scores(self, scores: dict) -> str:
        """A stage's ``stage_scores`` as the log line written when the stage ends."""
        raise NotImplementedError

    # ---------------------------------------------------------------------------------------- report
    def task_section(self, cfg, task_data, train_examples: int, eval_examples: int) -> dict:
        """results.json's ``task`` section."""
        raise NotImplementedError

    def report_rows(self, results: dict) -> list[tuple[str, str, str, str]]:
        """The printed table's rows (``report.format_table``): (figure, teacher, student, comparison)."""
        raise NotImplementedError

    def eval_text(self, scores: dict) -> str:
        """A stage's ``eval`` in the printed table's list of the models the stages produced."""
        raise NotImplementedError

    def show_generations(self, results: dict, wandb_run=None) -> str:
        """A sample of the student's outputs for the log (and W&B), or "" where the task shows none."""
        return ""


def get(name: str | None) -> Task:
    """The task ``name`` (``task.name``; None: the default task), from the one table; an unknown name is a
    ConfigError naming ``task.name``. Its package is imported here, not before."""
    module, cls = row(name or DEFAULT_TASK).implementation.split(":")
    return getattr(importlib.import_module(module), cls)()
