"""The causal-LM task's models: ``AutoModelForCausalLM``; a Llama or GPT-2 decoder built from ``teacher.arch``, or a
checkpoint (its output layer is the task's head: a checkpoint always fits)."""

from __future__ import annotations

from distillkit.config.schema import StudentConfig, TeacherConfig
from distillkit.errors import require
from distillkit.models.loading import auto_config, derive_config, select_layers


def model_class():
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM


def decoder_config(arch, tokenizer):
    """A causal LM's config from ``teacher.arch`` (llama | gpt2) and the tokenizer's special tokens."""
    from transformers import AutoConfig

    common = dict(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=arch.tie_word_embeddings,
    )
    if arch.model_type == "gpt2":
        return AutoConfig.for_model(
            "gpt2",
            n_embd=arch.hidden_size,
            n_layer=arch.num_layers,
            n_head=arch.num_heads,
            n_inner=arch.intermediate_size,
            n_positions=arch.max_position_embeddings,
            resid_pdrop=arch.dropout,
            embd_pdrop=arch.dropout,
            attn_pdrop=arch.dropout,
            **common,
        )
    return AutoConfig.for_model(
        "llama",
        hidden_size=arch.hidden_size,
        num_hidden_layers=arch.num_layers,
        num_attention_heads=arch.num_heads,
        num_key_value_heads=arch.num_key_value_heads or arch.num_heads,
        intermediate_size=arch.intermediate_size,
        max_position_embeddings=arch.max_position_embeddings,
        attention_dropout=arch.dropout,
        **common,
    )


def teacher_config(cfg: TeacherConfig, tokenizer, label_names=None):
    """The teacher's model config, and whether its checkpoint already fits the task (a causal LM checkpoint always
    has its output layer: it counts as fitted)."""
    if cfg.arch is not None:
        return decoder_config(cfg.arch, tokenizer), False
    return auto_config("teacher.path", cfg.path, cfg.revision, cfg.trust_remote_code), True


def student_config(cfg: StudentConfig, teacher_cfg, tokenizer, label_names=None):
    """The student's config (loaded, or derived from the teacher's) and its layer map, checked against the teacher."""
    if cfg.path is not None:
        config = auto_config("student.path", cfg.path, cfg.revision, cfg.trust_remote_code)
        check_vocab_rows(config.vocab_size, teacher_cfg.vocab_size, len(tokenizer), cfg.path)
        return config, None
    return derive_config(cfg, teacher_cfg), select_layers(cfg, teacher_cfg.num_hidden_layers)


def check_vocab_rows(student_rows: int, teacher_rows: int, tokens: int, student_path: str) -> None:
    """Causal LMs: both output layers must cover the tokenizer's ``tokens`` ids; rows beyond them (checkpoints pad
    their embedding matrices to a multiple of 64 or 128) may differ: the losses read the shared rows only."""
    require(
        min(student_rows, teacher_rows) >= tokens,
        "student.path",
        student_path,
        f"has an output layer of {student_rows} rows and the teacher {teacher_rows}, and the tokenizer has "
        f"{tokens} tokens: {'the student' if student_rows < tokens else 'the teacher'} cannot score every token, "
        "so the two are not from one tokenizer family.",
        "pick a student and teacher that share the tokenizer "
        "(e.g. teacher=qwen2.5-1.5b student=qwen2.5-0.5b, or teacher=gpt2-medium student=gpt2).",
    )
    if student_rows != teacher_rows:
        import logging

        logging.getLogger("distillkit").info(
            "Vocabulary: the teacher's output layer has %d rows, the student's %d, the tokenizer %d tokens; the "
            "rows beyond %d are padding and the token losses read the first %d only.",
            teacher_rows,
            student_rows,
            tokens,
            min(student_rows, teacher_rows),
            min(student_rows, teacher_rows),
        )
