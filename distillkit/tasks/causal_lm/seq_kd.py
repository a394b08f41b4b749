"""Sequence-level KD's data view (Kim & Rush 2016): the training prompts with the teacher's own responses.

The teacher decodes every training prompt once (greedy, or beam search with ``method.num_beams`` > 1; at most
``method.max_new_tokens`` or ``task.max_new_tokens`` tokens), and the responses are stored content-addressed
under ``<cache>/teacher_responses/<key>/`` (key: the teacher's weights, the tokenised training split, the decoding
settings), so later runs of a sweep reuse them. Under DDP rank 0 decodes while the others wait at a barrier.
"""

from __future__ import annotations

import json
import logging

import torch

from distillkit import dist
from distillkit import store as cache

log = logging.getLogger("distillkit")


def _settings(ws, stage) -> dict:
    o = stage.data.options
    return {"num_beams": o.num_beams, "max_new_tokens": o.max_new_tokens or ws.cfg.task.max_new_tokens}


@torch.no_grad()
def decode_all(
    model, data, collator, device, batch_size: int, num_beams: int, max_new_tokens: int, eos_id: int, pad_id: int
) -> list[list[int]]:
    """The model's response token ids to every row's prompt, in row order, up to and including the first eos."""
    from torch.utils.data import DataLoader
    from transformers import GenerationConfig

    model.eval()
    config = GenerationConfig(
        max_new_tokens=max_new_tokens, do_sample=False, num_beams=num_beams, eos_token_id=eos_id, pad_token_id=pad_id
    )
    out = []
    for batch in DataLoader(data, batch_size=batch_size, shuffle=False, collate_fn=collator):
        prompt = batch["prompt_ids"].to(device)
        ids = model.generate(
            input_ids=prompt, attention_mask=batch["prompt_mask"].to(device), generation_config=config
        )[:, prompt.shape[1] :].tolist()
        for row in ids:
            cut = row.index(eos_id) + 1 if eos_id in row else len(row)
            out.append(row[:cut])
    return out


def teacher_responses(ws, stage):
    """The stage's view: each training row's prompt followed by the teacher's response (labels on the response),
    plus the original rows with ``keep_original``."""
    import datasets

    from distillkit.store import data_digest, weights_digest

    settings, teacher = _settings(ws, stage), ws.teacher()
    spec = {
        "kind": "teacher_responses",
        "teacher": weights_digest(teacher),
        "data": data_digest(ws.train_set),
        **settings,
    }

    def decode(tmp) -> int:
        teacher.to(ws.plan.device)
        tok = ws.tokenizer
        responses = decode_all(
            teacher,
            ws.train_set,
            ws.collator,
            ws.plan.device,
            ws.cfg.hardware.eval_batch_size,
            settings["num_beams"],
            settings["max_new_tokens"],
            tok.eos_token_id,
            tok.pad_token_id,
        )
        (tmp / "responses.json").write_text(json.dumps(responses))
        return len(responses)

    entry = cache.find_or_build(ws.plan.cache_root, "teacher_responses", spec, decode)  # rank 0 decodes
    if entry.built:
        log.info(
            "[%s] the teacher answered %d training prompts in %.1f s (%s); cached in %s",
            stage.name,
            entry.value,
            entry.seconds,
            _how(settings),
            entry.path,
        )
    elif dist.is_main():
        log.info("[%s] reusing the teacher's responses (%s) from %s", stage.name, _how(settings), entry.path)
    responses = json.loads((entry.path / "responses.json").read_text())
    view = _with_responses(ws.train_set, responses)
    if stage.data.options.keep_original:
        view = datasets.concatenate_datasets([view, ws.train_set.cast(view.features)])
    return view


def _how(settings: dict) -> str:
    beams = settings["num_beams"]
    return f"{'greedy' if beams == 1 else f'beam search, {beams} beams'}, at most {settings['max_new_tokens']} tokens"


def _with_responses(train_set, responses: list[list[int]]):
    """Rows of ``train_set`` with their response replaced: input_ids = prompt + response, labels −100 on the
    prompt, the response ids on the response (the collator's format)."""
    import datasets

    rows = {"input_ids": [], "attention_mask": [], "labels": [], "prompt_length": [], "idx": []}
    for row, response in zip(train_set, responses):
        prompt = row["input_ids"][: row["prompt_length"]]
        rows["input_ids"].append(prompt + response)
        rows["attention_mask"].append([1] * (len(prompt) + len(response)))
        rows["labels"].append([-100] * len(prompt) + response)
        rows["prompt_length"].append(row["prompt_length"])
        rows["idx"].append(row["idx"])
    return datasets.Dataset.from_dict(rows)
