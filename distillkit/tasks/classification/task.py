"""Sequence classification (single texts or text pairs → class ids): the task every classic method was built
for, behind the task interface with its behaviour unchanged (``data.py``, ``evaluate.py`` do the work)."""

from __future__ import annotations

from distillkit.tasks import Task


class Classification(Task):
    name = "classification"
    causal = False
    metric = "accuracy"

    def load(self, data_cfg):
        from distillkit.tasks.classification.data import load_task

        return load_task(data_cfg)

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

    def evaluate_run(self, teacher, student, eval_set, collator, tokenizer, device, cfg) -> dict:
        from distillkit.tasks.classification import evaluate

        num_labels = student.config.num_labels
        return evaluate.evaluate_run(teacher, student, eval_set, collator, num_labels, device,
                                     cfg.hardware.eval_batch_size, cfg.eval)

    def stage_scores(self, model, source, eval_set, collator, tokenizer, device, cfg) -> dict:
        from distillkit.tasks.classification import evaluate

        return evaluate.stage_scores(model, source, eval_set, collator, model.config.num_labels, device,
                                     cfg.hardware.eval_batch_size)

    def describe_scores(self, scores: dict) -> str:
        from distillkit.tasks.classification import evaluate

        return evaluate.describe_scores(scores)
