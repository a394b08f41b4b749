"""Sequence classification (single texts or text pairs → class ids): the task every classic method was built
for, behind the task interface (``data.py``, ``models.py``, ``evaluate.py``, ``report.py`` do the work)."""

from __future__ import annotations

import logging
from typing import ClassVar

from distillkit.tasks import Task

log = logging.getLogger("distillkit")


class Classification(Task):
    name = "classification"
    metric = "accuracy"
    checkpoint_metric = "accuracy"
    teacher_outputs = "outputs"
    load_kwargs: ClassVar[dict] = {"ignore_mismatched_sizes": True}  # a checkpoint's head for other labels: replaced

    # ------------------------------------------------------------------------------------------- data
    def load(self, data_cfg):
        from distillkit.tasks.classification.data import load_task

        return load_task(data_cfg)

    def data_spec(self, spec: dict) -> dict:
        if spec["synthetic"]["sentences"] == 1:  # the key of every one-sentence entry made before the setting existed
            del spec["synthetic"]["sentences"]
        return spec

    def tokenizer_texts(self, task_data) -> list[str]:
        return list(task_data.train["text"]) + (list(task_data.train["text_pair"]) if task_data.has_pair else [])

    def train_tokenizer(self, texts, vocab_size, out_dir):
        from distillkit.tasks.classification.data import train_wordpiece

        return train_wordpiece(texts, vocab_size, out_dir)

    def tokenize(self, task_data, tokenizer, cfg):
        from distillkit.tasks.classification.data import tokenize

        return tokenize(task_data, tokenizer, cfg.data.max_length)

    def collator(self, tokenizer):
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer)

    def data_view(self, ws, stage):
        """``text_file`` (plain texts, no labels: TinyBERT's general distillation) and ``train+unlabeled`` (the
        training split plus an unlabeled pool whose labels are IGNORE_INDEX, for pseudo-labelling)."""
        from distillkit.tasks.classification.data import tokenize_text_file

        view = stage.data
        if view.kind == "text_file":
            return tokenize_text_file(view.text_file, ws.tokenizer, ws.cfg.data.max_length)
        if view.kind == "train+unlabeled":
            return _with_unlabeled(ws, view)
        if view.kind == "generated":  # the dataset a label stage wrote (blackbox_label)
            from distillkit.tasks.classification.labels import view as labelled

            path = ws.run_dir / "generated" / view.options.source / "train.jsonl"
            data = labelled(path, ws.tokenizer, ws.cfg, ws.plan.task.num_labels)
            log.info("[%s] data view: %d texts the teacher labelled (%s)", stage.name, len(data), view.options.source)
            return data
        return super().data_view(ws, stage)

    # ---------------------------------------------------------------------------- generating teachers
    def labeller(self, label_names, spec):
        from distillkit.tasks.classification.labels import Labeller

        return Labeller(label_names, spec)

    def export_rows(self, split) -> list[dict]:
        cols = [c for c in ("text", "text_pair", "label") if c in split.column_names]
        return split.select_columns(cols).to_list()

    def reuse_overrides(self, folder: str, cfg) -> str:
        from distillkit.tasks.classification.labels import reuse_overrides

        return reuse_overrides(folder, cfg)

    # ----------------------------------------------------------------------------------------- models
    def model_class(self):
        from distillkit.tasks.classification.models import model_class

        return model_class()

    def teacher_config(self, teacher_cfg, tokenizer, label_names):
        from distillkit.tasks.classification.models import teacher_config

        return teacher_config(teacher_cfg, tokenizer, label_names)

    def student_config(self, student_cfg, teacher_config, tokenizer, label_names):
        from distillkit.tasks.classification.models import student_config

        return student_config(student_cfg, teacher_config, tokenizer, label_names)

    # --------------------------------------------------------------------------------------- training
    def labels_only_method(self):
        from distillkit.config.method import NoneMethodConfig

        return NoneMethodConfig()

    def compute_metrics(self, model_config):
        from distillkit.tasks.classification.evaluate import trainer_metrics

        return trainer_metrics(model_config.num_labels)

    # ------------------------------------------------------------------------------------- evaluation
    def evaluate_run(self, teacher, student, eval_set, collator, tokenizer, device, cfg) -> dict:
        from distillkit.tasks.classification import evaluate

        num_labels = student.config.num_labels
        return evaluate.evaluate_run(
            teacher, student, eval_set, collator, num_labels, device, cfg.hardware.eval_batch_size, cfg.eval
        )

    def stage_scores(self, model, source, eval_set, collator, tokenizer, device, cfg) -> dict:
        from distillkit.tasks.classification import evaluate

        return evaluate.stage_scores(
            model, source, eval_set, collator, model.config.num_labels, device, cfg.hardware.eval_batch_size
        )

    def describe_scores(self, scores: dict) -> str:
        from distillkit.tasks.classification import evaluate

        return evaluate.describe_scores(scores)

    # ----------------------------------------------------------------------------------------- report
    def task_section(self, cfg, task_data, train_examples: int, eval_examples: int) -> dict:
        from distillkit.tasks.classification.report import task_section

        return task_section(task_data, train_examples, eval_examples)

    def report_rows(self, results: dict):
        from distillkit.tasks.classification.report import rows

        return rows(results)

    def eval_text(self, scores: dict) -> str:
        from distillkit.tasks.classification.report import eval_text

        return eval_text(scores)


def _with_unlabeled(ws, view):
    """The training split plus an unlabeled pool (labels IGNORE_INDEX), for pseudo-labelling."""
    import datasets

    from distillkit.tasks.classification.data import tokenize_texts, unlabeled_texts

    texts = unlabeled_texts(ws.cfg.data, ws.plan.task, view.unlabeled, view.unlabeled_size)
    n = len(ws.train_set)
    pool = tokenize_texts(texts, ws.tokenizer, ws.cfg.data.max_length, first_idx=n)
    pool = pool.select_columns(ws.train_set.column_names).cast(ws.train_set.features)
    log.info("data view: %d labeled + %d unlabeled examples (%s)", n, len(texts), view.unlabeled)
    return datasets.concatenate_datasets([ws.train_set, pool])
