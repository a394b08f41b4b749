"""The classification task's models: sequence classifiers (``AutoModelForSequenceClassification``) whose head has
one output per label; a BERT-style encoder built from ``teacher.arch``, or a checkpoint fitted with that head."""

from __future__ import annotations

from distillkit.config.schema import StudentConfig, TeacherConfig
from distillkit.errors import require
from distillkit.models.loading import auto_config, derive_config, select_layers


def model_class():
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification


def fit_labels(config, label_names: list[str]) -> None:
    """``config``'s head: one output per label, named (``id2label`` / ``label2id`` in the exported config)."""
    config.num_labels = len(label_names)
    config.id2label = dict(enumerate(label_names))
    config.label2id = {name: i for i, name in enumerate(label_names)}
    config.problem_type = "single_label_classification"


def encoder_config(arch, tokenizer):
    """A BERT-style encoder's config from ``teacher.arch`` (megatron-bert | bert) and the tokenizer."""
    from transformers import AutoConfig

    return AutoConfig.for_model(
        arch.model_type,
        vocab_size=len(tokenizer),
        hidden_size=arch.hidden_size,
        num_hidden_layers=arch.num_layers,
        num_attention_heads=arch.num_heads,
        intermediate_size=arch.intermediate_size,
        max_position_embeddings=arch.max_position_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        hidden_dropout_prob=arch.dropout,
        attention_probs_dropout_prob=arch.dropout,
    )


def teacher_config(cfg: TeacherConfig, tokenizer, label_names: list[str]):
    """The teacher's model config, and whether its checkpoint already has a head for these labels (then no
    ``teacher_prep`` is needed)."""
    if cfg.arch is not None:
        config = encoder_config(cfg.arch, tokenizer)
        fit_labels(config, label_names)
        return config, False
    config = auto_config("teacher.path", cfg.path, cfg.revision, cfg.trust_remote_code)
    fitted = (
        bool(getattr(config, "architectures", None))
        and any(a.endswith("ForSequenceClassification") for a in config.architectures)
        and config.num_labels == len(label_names)
    )
    if not fitted:
        fit_labels(config, label_names)
    return config, fitted


def student_config(cfg: StudentConfig, teacher_cfg, tokenizer, label_names: list[str]):
    """The student's config (loaded, or derived from the teacher's) with the labels' head, and its layer map,
    checked against the teacher: logits and inputs must line up, so the vocabularies must be equal."""
    if cfg.path is not None:
        config = auto_config("student.path", cfg.path, cfg.revision, cfg.trust_remote_code)
        fit_labels(config, label_names)
        require(
            config.vocab_size == teacher_cfg.vocab_size,
            "student.path",
            cfg.path,
            f"has a vocabulary of {config.vocab_size} tokens, the teacher {teacher_cfg.vocab_size}: logits and "
            "inputs would not line up.",
            "pick a student trained with the teacher's tokenizer.",
        )
        return config, None
    config = derive_config(cfg, teacher_cfg)
    fit_labels(config, label_names)
    return config, select_layers(cfg, teacher_cfg.num_hidden_layers)
