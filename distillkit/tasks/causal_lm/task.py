"""Causal language models: prompt → response pairs, the loss on response tokens (prompt and padding masked).

Data: the embedded instruction task (``causal_lm.synthetic``), local files or hub datasets (``causal_lm.data``:
prompt/response fields, chat messages rendered with the tokenizer's chat template, alpaca/dolly presets). The
embedded tokenizer is a byte-level BPE trained on the training texts (deterministic). Evaluation
(``causal_lm.evaluate``): held-out perplexity of teacher and student, greedy generations scored by exact match and
ROUGE-L against the references, top-1 token agreement with the teacher, generation tokens/s of each and the speed-
up, parameters and compression."""

from __future__ import annotations

import logging
from typing import ClassVar

from distillkit.errors import require
from distillkit.tasks import OnPolicy, Task

log = logging.getLogger("distillkit")

PAD, EOS = "<pad>", "<eos>"


class CausalLM(Task):
    name = "causal_lm"
    metric = "exact_match"
    teacher_outputs = "topk"  # token-level outputs: the teacher's top-k next-token log-probs
    tokenizer_spec: ClassVar[dict] = {"kind": "byte-level-bpe"}

    # ------------------------------------------------------------------------------------------- data
    def load(self, cfg):
        import datasets

        from distillkit.tasks.splits import TaskData, sample

        if cfg.source == "lm_synthetic":
            from distillkit.tasks.causal_lm.synthetic import generate

            s = cfg.lm_synthetic
            made = generate(seed=s.seed, n_train=s.n_train, n_eval=s.n_eval, kinds=s.kinds)
            keep = lambda rows: datasets.Dataset.from_list(  # noqa: E731 (a one-line local function)
                [{"prompt": r["prompt"], "response": r["response"]} for r in rows]
            )
            train, evals = keep(made.train), keep(made.eval)
        else:
            train, evals = (self._split(cfg, which) for which in ("train", "eval"))
        train = sample(train, cfg.max_train_samples, cfg.sample_seed, "train")
        evals = sample(evals, cfg.max_eval_samples, cfg.sample_seed, "eval")
        require(
            len(train) > 0 and len(evals) > 0,
            "data",
            cfg.name,
            "has an empty train or eval split.",
            "check the split names and files.",
        )
        return TaskData(train, evals, [], has_pair=False)

    def _split(self, cfg, which: str):
        from distillkit.tasks.causal_lm import data as lm_data

        if cfg.source == "local":
            from distillkit.tasks.files import read_local

            key, path = f"data.{which}_file", getattr(cfg, f"{which}_file")
            raw, source = read_local(key, path), path
        else:
            key, spec = f"data.{which}_split", getattr(cfg, f"{which}_split")
            raw, source = lm_data.load_hub_split(cfg.path, cfg.config_name, spec, key), f"{cfg.path} {spec}"
        return lm_data.to_pairs(
            raw,
            "data",
            source,
            cfg.prompt_field,
            cfg.response_field,
            cfg.messages_field,
            cfg.preset,
            drop_missing=cfg.drop_missing,
        )

    def tokenizer_texts(self, task_data) -> list[str]:
        from distillkit.errors import ConfigError

        if "messages" in task_data.train.column_names:
            raise ConfigError(
                "data.messages_field",
                "messages",
                "holds chat turns, which are rendered with the "
                "tokenizer's chat template, and the embedded teacher's tokenizer (a byte-level BPE "
                "trained here) has no chat template.",
                "use a chat model's checkpoint as the teacher "
                "(teacher=hub teacher.path=<id or dir>, e.g. teacher=qwen2.5-1.5b), or give prompt and "
                "response fields (data.prompt_field / data.response_field) instead of messages.",
            )
        return [p + "\n" + r for p, r in zip(task_data.train["prompt"], task_data.train["response"])]

    def train_tokenizer(self, texts, vocab_size, out_dir):
        return train_byte_bpe(texts, vocab_size, out_dir)

    def check(self, cfg, task_data, tokenizer) -> None:
        """The tokenizer needs an end-of-sequence token (the response's last label) and a padding id; a chat
        dataset needs a chat template (rendering the first example raises the ConfigError)."""
        from distillkit.tasks.causal_lm import data as lm_data

        require(
            tokenizer.eos_token_id is not None,
            "teacher.path",
            cfg.teacher.path,
            "has a tokenizer without an end-of-sequence token, so a response could never end.",
            "use a causal LM's own tokenizer.",
        )
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token  # GPT-2 and Llama ship none; padding is masked anyway
            log.info(
                "The tokenizer has no padding token: padding with its end-of-sequence token %r (masked).",
                tokenizer.eos_token,
            )
        lm_data.render(task_data.train.select(range(1)), tokenizer, cfg.data.prompt_template)

    def tokenize(self, task_data, tokenizer, cfg):
        from distillkit.tasks.causal_lm import data as lm_data

        out = []
        for name, split in (("train", task_data.train), ("eval", task_data.eval)):
            rendered = lm_data.render(split, tokenizer, cfg.data.prompt_template)
            encoded, truncated = lm_data.encode(rendered, tokenizer, cfg.data.max_length)
            if truncated:
                log.warning(
                    "data.max_length=%d: %d of the %s split's %d examples were truncated (the prompt cut "
                    "from the left, long responses shortened).",
                    cfg.data.max_length,
                    truncated,
                    name,
                    len(split),
                )
            out.append(encoded)
        return out[0], out[1]

    def collator(self, tokenizer):
        from distillkit.tasks.causal_lm.data import LMCollator

        return LMCollator(tokenizer.pad_token_id)

    def data_view(self, ws, stage):
        """``teacher_responses``: the training prompts with the teacher's own responses (seq_kd), decoded once;
        ``generated``: the dataset a generation stage wrote into the run directory (blackbox_sft), plus the
        dataset's own rows with ``keep_original``."""
        if stage.data.kind == "teacher_responses":
            from distillkit.tasks.causal_lm.seq_kd import teacher_responses

            return teacher_responses(ws, stage)
        if stage.data.kind == "generated":
            import datasets

            from distillkit.tasks.causal_lm.generated import view

            options = stage.data.options
            path = ws.run_dir / "generated" / options.source / "train.jsonl"
            if not options.greybox:
                data = view(path, ws.tokenizer, ws.cfg)
            else:  # the endpoint's log-probs as the KD term's targets
                from distillkit.tasks.causal_lm.greybox import add_targets, report_alignment

                data, aligned, slots = view(path, ws.tokenizer, ws.cfg, greybox=True)
                report_alignment(stage.name, aligned, len(data))
            log.info("[%s] data view: %d rows the teacher wrote (%s)", stage.name, len(data), options.source)
            if options.keep_original:
                original = ws.train_set
                if options.greybox:  # the dataset's own answers: one-hot targets (the KD term is NTP there)
                    original, _ = add_targets(original, None, ws.tokenizer, slots)
                data = datasets.concatenate_datasets([data, original.cast(data.features)])
            return data
        return super().data_view(ws, stage)

    # ---------------------------------------------------------------------------- generating teachers
    def generation_prompts(self, task_data, system_prompt):
        from distillkit.tasks.causal_lm.generated import prompts

        return prompts(task_data, system_prompt)

    def generated_row(self, conversation, completion, system_prompt) -> dict:
        from distillkit.tasks.causal_lm.generated import row

        return row(conversation, completion, system_prompt)

    def render_conversation(self, conversation, tokenizer, cfg) -> tuple[str, bool]:
        from distillkit.tasks.causal_lm.generated import render

        return render(conversation, tokenizer, cfg.data.prompt_template, chat=cfg.data.messages_field is not None)

    def export_rows(self, split) -> list[dict]:
        from distillkit.tasks.causal_lm.generated import export_rows

        return export_rows(split)

    def reuse_overrides(self, folder: str, cfg) -> str:
        from distillkit.tasks.causal_lm.generated import reuse_overrides

        return reuse_overrides(folder, cfg)

    def self_improvement(self):
        """The task's side of method=star and method=critique_revise (answers, checkers, prompts)."""
        from distillkit.tasks.causal_lm import self_improve

        return self_improve

    # ----------------------------------------------------------------------------------------- models
    def model_class(self):
        from distillkit.tasks.causal_lm.models import model_class

        return model_class()

    def teacher_config(self, teacher_cfg, tokenizer, label_names):
        from distillkit.tasks.causal_lm.models import teacher_config

        return teacher_config(teacher_cfg, tokenizer)

    def student_config(self, student_cfg, teacher_config, tokenizer, label_names):
        from distillkit.tasks.causal_lm.models import student_config

        return student_config(student_cfg, teacher_config, tokenizer)

    # --------------------------------------------------------------------------------------- training
    def labels_only_method(self):
        from distillkit.config.llm import SFTMethodConfig

        return SFTMethodConfig()

    def on_policy(self) -> OnPolicy:
        from distillkit.tasks.causal_lm import evaluate

        return OnPolicy(rollout=evaluate.rollout, forward_on_both=evaluate.forward_on_both)

    # ------------------------------------------------------------------------------------- evaluation
    def evaluate_run(self, teacher, student, eval_set, collator, tokenizer, device, cfg) -> dict:
        from distillkit.tasks.causal_lm.report import evaluate_run

        return evaluate_run(teacher, student, eval_set, collator, tokenizer, device, cfg)

    def stage_scores(self, model, source, eval_set, collator, tokenizer, device, cfg) -> dict:
        from distillkit.tasks.causal_lm.report import stage_scores

        return stage_scores(model, source, eval_set, collator, tokenizer, device, cfg)

    def describe_scores(self, scores: dict) -> str:
        text = (
            f"eval perplexity {scores['perplexity']:.3f}, exact match {scores['exact_match']:.4f}, "
            f"ROUGE-L {scores['rouge_l']:.4f} ({scores['generated']} generated)"
        )
        if "agreement_with_teacher" in scores:
            text += f"; token agreement with its teacher {scores['agreement_with_teacher'] * 100:.1f}%"
        return text

    # ----------------------------------------------------------------------------------------- report
    def task_section(self, cfg, task_data, train_examples: int, eval_examples: int) -> dict:
        from distillkit.tasks.causal_lm.report import task_section

        return task_section(cfg, train_examples, eval_examples)

    def report_rows(self, results: dict):
        from distillkit.tasks.causal_lm.report import rows

        return rows(results)

    def eval_text(self, scores: dict) -> str:
        from distillkit.tasks.causal_lm.report import eval_text

        return eval_text(scores)

    def show_generations(self, results: dict, wandb_run=None) -> str:
        from distillkit.tasks.causal_lm.report import show_generations

        return show_generations(results, wandb_run)


def train_byte_bpe(texts: list[str], vocab_size: int, out_dir):
    """A byte-level BPE (GPT-2's pre-tokenizer, no prefix space; every byte in the alphabet, so no text is ever
    unknown) with ``<pad>`` = 0 and ``<eos>`` = 1, trained on ``texts`` and saved loadable by AutoTokenizer. The
    same texts give the same vocabulary on every machine and in every process (the teacher cache key relies on it)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[PAD, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, eos_token=EOS, model_input_names=["input_ids", "attention_mask"]
    )
    fast.save_pretrained(out_dir)
    return fast
