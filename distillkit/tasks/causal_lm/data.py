"""Data for the ``causal_lm`` task: prompt/response examples, rendered to text, tokenised, collated.

Sources: local files (``data_files.read_local``), hub datasets or ``save_to_disk`` directories
(``load_hub_split``), and the embedded generator (``causal_lm.synthetic``). ``to_pairs`` maps a raw split onto
canonical columns (``prompt``/``response``, or ``messages``), ``render`` writes each row as a prompt text
and a response text (a plain template or the tokenizer's chat template), ``encode`` tokenises with the loss
on response tokens only (labels -100 on the prompt), and ``LMCollator`` pads a batch (and left-pads the
prompts for ``model.generate``). Every problem with user input is one ``ConfigError`` naming the key, the
value and the fix.
"""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path

from distillkit.errors import ConfigError, require

log = logging.getLogger("distillkit")

PRESETS: dict[str, dict] = {
    "alpaca": {"path": "tatsu-lab/alpaca", "instruction": "instruction", "input": "input", "response": "output"},
    "dolly": {
        "path": "databricks/databricks-dolly-15k",
        "instruction": "instruction",
        "input": "context",
        "response": "response",
    },
}
DEFAULT_TEMPLATE = "{prompt}\n"  # matches lm_synthetic.SEP: prompt, newline, response
ALPACA_TEMPLATE = "### Instruction:\n{prompt}\n\n### Response:\n"

_LIKELY = {
    "prompt": ("prompt", "instruction", "question", "query", "input", "text"),
    "response": ("response", "output", "answer", "completion", "target", "chosen"),
    "messages": ("messages", "conversations", "conversation", "chat", "dialog", "dialogue"),
}
_SPLIT_RE = re.compile(r"^\s*([\w.-]+)\s*(?:\[\s*(-?\d+%?)?\s*:\s*(-?\d+%?)?\s*\])?\s*$")


def to_pairs(
    ds,
    key: str,
    source: str,
    prompt_field="prompt",
    response_field="response",
    messages_field=None,
    preset=None,
    drop_missing: bool = False,
):
    """A ``datasets.Dataset`` with columns (``prompt``, ``response``) of strings, or one column ``messages``
    (lists of {"role", "content"} ending with an assistant turn) when ``messages_field`` is set, or built by
    ``preset`` (a name in ``PRESETS`` or such a mapping: prompt = instruction + "\\n\\n" + input when the input
    is non-empty; a missing input column counts as empty). ``key`` is the config section the errors are named
    under ("data" -> ``data.prompt_field``, ``data.drop_missing``, ...); ``source`` (a file path or split name)
    says where the rows came from. Missing columns, malformed conversations and (unless ``drop_missing``)
    empty prompts/responses raise ``ConfigError``; with ``drop_missing`` those rows are dropped and logged."""
    import datasets

    if preset is not None:
        fields, rows = _preset_rows(ds, key, source, preset)
    elif messages_field:
        fkey = f"{key}.messages_field"
        _need_columns(ds, key, source, {fkey: messages_field}, None)
        convs = [_conversation(v, i, key, messages_field, source) for i, v in enumerate(_values(ds, messages_field))]
        fields = {"prompt": (fkey, messages_field), "response": (fkey, messages_field)}
        rows = {
            "prompt": [c if c and len(c) > 1 else None for c in convs],
            "response": [c if c and _text(c[-1]["content"]) else None for c in convs],
        }
    else:
        fields = {
            "prompt": (f"{key}.prompt_field", prompt_field),
            "response": (f"{key}.response_field", response_field),
        }
        _need_columns(ds, key, source, dict(fields.values()), None)
        rows = {"prompt": _texts(ds, prompt_field), "response": _texts(ds, response_field)}
    keep = _drop_missing(rows, fields, key, source, drop_missing)
    if messages_field and preset is None:
        return datasets.Dataset.from_dict({"messages": [rows["response"][i] for i in keep]})
    return datasets.Dataset.from_dict({f: [rows[f][i] for i in keep] for f in ("prompt", "response")})


def _preset_rows(ds, key: str, source: str, preset) -> tuple[dict, dict]:
    """(fields, rows) of a preset: prompt = instruction, plus "\n\n" + input when that is non-empty."""
    if not isinstance(preset, dict):
        require(
            preset in PRESETS,
            f"{key}.preset",
            preset,
            "is not a known preset.",
            f"use one of {', '.join(PRESETS)}, or name the columns with {key}.prompt_field/{key}.response_field.",
        )
    spec, fkey = PRESETS[preset] if isinstance(preset, str) else preset, f"{key}.preset"
    for col in (spec["instruction"], spec["response"]):
        _need_columns(ds, key, source, {fkey: col}, preset)
    instructions, outputs = _texts(ds, spec["instruction"]), _texts(ds, spec["response"])
    inputs = _texts(ds, spec["input"]) if spec.get("input") in ds.column_names else [None] * len(ds)
    prompts = [i if i is None or x is None else f"{i}\n\n{x}" for i, x in zip(instructions, inputs)]
    return {"prompt": (fkey, spec["instruction"]), "response": (fkey, spec["response"])}, {
        "prompt": prompts,
        "response": outputs,
    }


def _need_columns(ds, key: str, source: str, wanted: dict, preset) -> None:
    """Every column in ``wanted`` (config key -> column) must exist; else name the columns the split has."""
    cols = list(ds.column_names)
    for fkey, col in wanted.items():
        if col in cols:
            continue
        problem = f"[{source}] has no column {col!r}; its columns are: {', '.join(cols)}."
        if fkey.endswith(".preset"):
            raise ConfigError(
                fkey,
                preset,
                problem.replace(";", " (which the preset reads);", 1),
                f"use the preset only for its dataset's layout, or drop {fkey} and name the columns "
                f"with {key}.prompt_field and {key}.response_field.",
            )
        field = next(f for f in _LIKELY if fkey.endswith(f"{f}_field"))
        guess = next((c for c in _LIKELY[field] if c in cols and c not in wanted.values()), None)
        fix = f"set {fkey}={guess} (the column that looks right)" if guess else f"set {fkey} to one of its columns"
        if {"instruction", "output"} <= set(cols):
            fix += f", or use {key}.preset=alpaca"
        elif {"instruction", "response", "context"} <= set(cols):
            fix += f", or use {key}.preset=dolly"
        raise ConfigError(fkey, col, problem, fix + ".")


def _values(ds, col: str) -> list:
    """A column's values as Python objects, through Arrow (iterating a ``datasets`` column is slow)."""
    if type(ds.features[col]).__name__ == "Json":
        return list(ds[col])
    return ds.with_format("arrow")[col].to_pylist()


def _text(value) -> str | None:
    """A cell as text, or None when it is empty (None, NaN, blank). A csv reads "55" as the number 55 (or
    55.0 in a column with gaps): numbers come back as their digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = value if isinstance(value, str) else str(value)
    return text if text.strip() else None


def _texts(ds, col: str) -> list:
    return [_text(v) for v in _values(ds, col)]


def _conversation(value, row: int, key: str, col: str, source: str) -> list[dict] | None:
    """One row's messages as [{"role", "content"}], None when empty; malformed ones raise ``ConfigError``."""
    fkey, fix = (
        f"{key}.messages_field",
        (
            'give each row a list like [{"role": "user", "content": "..."}, '
            '{"role": "assistant", "content": "..."}] ending with the assistant turn.'
        ),
    )
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass
    if value is None or value == []:
        return None
    if not isinstance(value, list) or not all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and "content" in m for m in value
    ):
        raise ConfigError(
            fkey,
            col,
            f"[{source}] row {row + 1} is not a list of messages with 'role' and 'content' "
            f"(it holds {str(value)[:80]!r}).",
            fix,
        )
    turns = [{"role": m["role"], "content": "" if m["content"] is None else str(m["content"])} for m in value]
    require(
        turns[-1]["role"] == "assistant",
        fkey,
        col,
        f"[{source}] row {row + 1}: the last turn is "
        f"{turns[-1]['role']!r}, not 'assistant' (its content is what the student learns to write).",
        fix,
    )
    return turns


def _drop_missing(rows: dict, fields: dict, key: str, source: str, drop: bool) -> list[int]:
    """Indices of the rows with a prompt and a response; refuse the others (or drop and log them)."""
    empty = {f: [i for i, v in enumerate(rows[f]) if v is None] for f in ("response", "prompt")}
    empty = {f: r for f, r in empty.items() if r}
    n = len(rows["prompt"])
    if not empty:
        return list(range(n))
    bad = set().union(*empty.values())

    def where(r):
        return f"row{'s' if len(r) > 1 else ''} {', '.join(str(i + 1) for i in r[:5])}" + (
            f" and {len(r) - 5} more" if len(r) > 5 else ""
        )

    parts = "; ".join(f"{len(r)} with an empty {f} ({where(r)})" for f, r in empty.items())
    fkey, col = fields[next(iter(empty))]
    if not drop:
        raise ConfigError(
            fkey,
            col,
            f"[{source}] has {len(bad)} of {n} rows without a {' or '.join(empty)} "
            f"(blank, null or NaN; rows counted from 1): {parts}.",
            f"fill them in or delete those rows, or add {key}.drop_missing=true to drop them.",
        )
    require(
        len(bad) < n,
        fkey,
        col,
        f"[{source}] has no row with both a prompt and a response: {parts}.",
        f"check the column keys ({key}.prompt_field/{key}.response_field, {key}.messages_field, {key}.preset).",
    )
    log.info("%s.drop_missing=true: dropped %d of %d rows of %s: %s.", key, len(bad), n, source, parts)
    return [i for i in range(n) if i not in bad]


def split_spec(spec: str) -> tuple[str, slice | None]:
    """'train' -> ('train', None); 'train[:500]' -> ('train', slice(None, 500)); 'train[-5%:]' ->
    ('train', slice('-5%', None)): absolute bounds are ints, percentages stay strings until
    ``resolve_slice`` sees the length. Bad syntax (or a percentage over 100) raises ValueError."""
    m = _SPLIT_RE.match(spec) if isinstance(spec, str) else None
    if m is None:
        raise ValueError(
            f"{spec!r} is not a split spec: write a split name, optionally sliced, e.g. train, "
            "train[:500], train[-500:], train[10%:] or train[:-5%]."
        )
    name, start, stop = m.groups()
    if "[" not in spec:
        return name, None
    for bound in (start, stop):
        if bound and bound.endswith("%") and abs(int(bound[:-1])) > 100:
            raise ValueError(f"{spec!r}: a percentage bound must lie within -100% and 100%.")
    parse = lambda b: None if b is None else b if b.endswith("%") else int(b)  # noqa: E731 (a one-line local function)
    return name, slice(parse(start), parse(stop))


def resolve_slice(sl: slice | None, n: int) -> range:
    """The row indices of ``sl`` (from ``split_spec``) in a split of ``n`` rows; percentages are rounded."""
    if sl is None:
        return range(n)
    at = lambda b: b if not isinstance(b, str) else round(n * int(b[:-1]) / 100)  # noqa: E731 (a one-line local function)
    return range(n)[slice(at(sl.start), at(sl.stop))]


def load_hub_split(path: str, config_name, spec: str, key: str):
    """One split (``spec``, e.g. 'train[:500]', checked under the config key ``key``) of a hub dataset or of a
    local ``save_to_disk`` directory (a DatasetDict, or a single Dataset called 'train' or its own split name),
    sliced by ``split_spec``. A path that cannot be loaded raises ``ConfigError`` on ``<section>.path``."""
    try:
        name, sl = split_spec(spec)
    except ValueError as err:
        raise ConfigError(
            key, spec, f"is not a valid split: {err}", "write e.g. train, train[:500], train[-500:] or train[:5%]."
        ) from None
    raw = _load_raw(path, config_name, key)
    if hasattr(raw, "keys"):  # DatasetDict
        require(
            name in raw,
            key,
            spec,
            f"names the split {name!r}, which {path} does not have.",
            f"use one of {', '.join(raw.keys())}.",
        )
        split = raw[name]
    else:
        own = str(raw.split) if raw.split else "train"
        require(
            name in (own, "train"),
            key,
            spec,
            f"names the split {name!r}, but {path} holds one Dataset (not a DatasetDict).",
            f"name it {own} and slice it, e.g. {own}[:-500] and {own}[-500:].",
        )
        split = raw
    rows = resolve_slice(sl, len(split))
    require(
        len(rows) > 0,
        key,
        spec,
        f"selects no rows of the {len(split)} in split {name!r}.",
        "widen the slice, e.g. train[:500] or train[-10%:].",
    )
    return split if len(rows) == len(split) else split.select(rows)


def _load_raw(path: str, config_name, key: str):
    import datasets

    from distillkit.tasks.files import unloadable_dataset

    section = key.rsplit(".", 1)[0] if "." in key else key
    try:
        p = Path(path)
        if p.is_dir() and ((p / "dataset_dict.json").exists() or (p / "state.json").exists()):
            return datasets.load_from_disk(path)
        return datasets.load_dataset(path, config_name)
    except Exception as err:  # datasets raises many types for "not found" / "offline"
        files = f"use data=lm_local with {section}.train_file=... {section}.eval_file=..."
        raise unloadable_dataset(f"{section}.path", path, err, files) from None


def render(pairs, tokenizer, template: str = DEFAULT_TEMPLATE, key: str = "data.messages_field") -> list[dict]:
    """[{"prompt_text", "response_text", "chat"}], one per row of ``pairs`` (a Dataset or list of rows from
    ``to_pairs``). prompt/response rows: prompt_text = ``template.format(prompt=...)``, chat False. messages
    rows: prompt_text = the chat template applied to all turns but the last, with the generation prompt;
    response_text = the last (assistant) turn's content; chat True (the text already holds any BOS). A
    tokenizer without a chat template for a messages dataset raises ``ConfigError(key, ...)``."""
    rows = pairs.to_list() if hasattr(pairs, "to_list") else list(pairs)
    if rows and "messages" in rows[0]:
        require(
            getattr(tokenizer, "chat_template", None) is not None,
            key,
            "messages",
            "needs the tokenizer's chat template to write conversations, and the tokenizer has no chat template.",
            "pick a chat/instruct model's tokenizer, or give prompt/response fields instead "
            "(data.prompt_field, data.response_field).",
        )
        return [
            {
                "prompt_text": tokenizer.apply_chat_template(
                    r["messages"][:-1], tokenize=False, add_generation_prompt=True
                ),
                "response_text": r["messages"][-1]["content"],
                "chat": True,
            }
            for r in rows
        ]
    if "{prompt}" not in template:
        raise ValueError(f"the prompt template {template!r} has no {{prompt}} placeholder")
    return [
        {"prompt_text": template.format(prompt=r["prompt"]), "response_text": r["response"], "chat": False}
        for r in rows
    ]


def encode(rendered: list[dict], tokenizer, max_length: int):
    """(dataset, n_truncated). Columns: input_ids (prompt ids + response ids + eos), attention_mask (all 1),
    labels (-100 on the prompt, the ids themselves on the response and eos: unshifted, the loss shifts),
    prompt_length, idx (row number). Prompt ids carry the tokenizer's special tokens unless the row is
    ``chat`` (its template wrote them). A row's ``response_ids``, when given, are its response's ids (the
    tokens a teacher wrote) instead of the tokenizer's split of ``response_text``. Rows longer than
    ``max_length`` keep at most ``max_length - max(1, max_length // 4)`` response tokens (eos last), then lose
    prompt tokens from the left (a leading BOS is kept). ValueError without an eos token or with max_length < 2."""
    import datasets

    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no eos token: a response must end with one so the model learns to stop")
    if max_length < 2:
        raise ValueError(f"max_length={max_length}: a row needs at least one prompt and one response token")
    prompts = [None] * len(rendered)
    for chat in (False, True):
        at = [i for i, r in enumerate(rendered) if bool(r.get("chat")) == chat]
        if at:
            ids = tokenizer([rendered[i]["prompt_text"] for i in at], add_special_tokens=not chat)["input_ids"]
            for i, p in zip(at, ids):
                prompts[i] = p
    responses = (
        tokenizer([r["response_text"] for r in rendered], add_special_tokens=False)["input_ids"] if rendered else []
    )
    for i, r in enumerate(rendered):  # a teacher's own tokens of its answer (greybox.teacher_token_ids)
        if r.get("response_ids") is not None:
            responses[i] = r["response_ids"]
    keep_response = max_length - max(1, max_length // 4)
    columns = {k: [] for k in ("input_ids", "attention_mask", "labels", "prompt_length", "idx")}
    truncated = 0
    for i, (p, r) in enumerate(zip(prompts, responses)):
        r = list(r)[: keep_response - 1] + [eos]
        room = max_length - len(r)
        if len(p) > room:
            lead = [p[0]] if tokenizer.bos_token_id is not None and p and p[0] == tokenizer.bos_token_id else []
            p = lead + p[len(p) - (room - len(lead)) :] if room > len(lead) else p[-room:]
        truncated += len(p) + len(r) < len(prompts[i]) + len(responses[i]) + 1
        columns["input_ids"].append(p + r)
        columns["attention_mask"].append([1] * (len(p) + len(r)))
        columns["labels"].append([-100] * len(p) + r)
        columns["prompt_length"].append(len(p))
        columns["idx"].append(i)
    return datasets.Dataset.from_dict(columns), truncated


def references(dataset, tokenizer) -> list[str]:
    """Each row's response text, decoded from its labelled ids (labels != -100, the final eos dropped,
    special tokens skipped): the references generated text is scored against."""
    eos, out = tokenizer.eos_token_id, []
    for labels in dataset.with_format("arrow")["labels"].to_pylist():
        ids = [t for t in labels if t != -100]
        if ids and ids[-1] == eos:
            ids = ids[:-1]
        out.append(tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False))
    return out


class LMCollator:
    """Pads a list of ``encode`` rows into a batch of tensors: input_ids (B, S) right-padded with
    ``pad_token_id``, attention_mask (B, S) 1/0, labels (B, S) padded with -100, prompt_ids (B, P) the
    prompt part of each row LEFT-padded (for ``model.generate``) with prompt_mask (B, P), and each key in
    ``passthrough`` present in the rows as a (B,) long tensor. S and P are the longest row and prompt; rows with
    grey-box targets (``greybox.add_targets``: per response position) give topk_ids / topk_logp (B, S−1, k) and
    topk_tail (B, S−1) at the positions that predict a response token, as the top-k cache serves them (elsewhere
    one-hot on id 0, never read); other keys are ignored."""

    def __init__(self, pad_token_id: int, passthrough=("idx", "teacher_row")):
        if pad_token_id is None:
            raise ValueError("pad_token_id is None: give the tokenizer's pad id (or its eos id when it has no pad)")
        self.pad_token_id, self.passthrough = int(pad_token_id), tuple(passthrough)

    def __call__(self, features: list[dict]) -> dict:
        import torch

        ids = [_plain(f["input_ids"]) for f in features]
        labels = [_plain(f["labels"]) for f in features]
        plen = [int(f["prompt_length"]) for f in features]
        b, s, p = len(ids), max(map(len, ids)), max(plen)
        batch = {
            "input_ids": torch.full((b, s), self.pad_token_id, dtype=torch.long),
            "attention_mask": torch.zeros((b, s), dtype=torch.long),
            "labels": torch.full((b, s), -100, dtype=torch.long),
            "prompt_ids": torch.full((b, p), self.pad_token_id, dtype=torch.long),
            "prompt_mask": torch.zeros((b, p), dtype=torch.long),
        }
        for i, (row, lab, n) in enumerate(zip(ids, labels, plen)):
            batch["input_ids"][i, : len(row)] = torch.tensor(row, dtype=torch.long)
            batch["attention_mask"][i, : len(row)] = 1
            batch["labels"][i, : len(lab)] = torch.tensor(lab, dtype=torch.long)
            if n:
                batch["prompt_ids"][i, p - n :] = torch.tensor(row[:n], dtype=torch.long)
                batch["prompt_mask"][i, p - n :] = 1
        for k in self.passthrough:
            if features and all(k in f for f in features):
                batch[k] = torch.tensor([int(f[k]) for f in features], dtype=torch.long)
        if features and all("topk_ids" in f for f in features):
            batch.update(_topk_targets(features, labels, s))
        return batch


def _topk_targets(features: list[dict], labels: list[list[int]], s: int) -> dict:
    import torch

    k = next((len(f["topk_ids"][0]) for f in features if len(f["topk_ids"])), 1)
    b = len(features)
    ids = torch.arange(k, dtype=torch.long).expand(b, max(s - 1, 0), k).clone()
    logp = torch.full((b, max(s - 1, 0), k), float("-inf"))
    logp[..., 0] = 0.0
    tail = torch.full((b, max(s - 1, 0)), float("-inf"))
    for i, (f, lab) in enumerate(zip(features, labels)):
        where = [t for t in range(len(lab) - 1) if lab[t + 1] != -100]
        if len(where) != len(f["topk_ids"]):
            raise ValueError(f"row {i}: {len(f['topk_ids'])} grey-box targets for {len(where)} response positions")
        if where:
            ids[i, where] = torch.tensor(_plain(f["topk_ids"]), dtype=torch.long)
            logp[i, where] = torch.tensor(_plain(f["topk_logp"]), dtype=torch.float32)
            tail[i, where] = torch.tensor(_plain(f["topk_tail"]), dtype=torch.float32)
    return {"topk_ids": ids, "topk_logp": logp, "topk_tail": tail}


def _plain(values) -> list:
    """A (nested) list from a row's column, whatever the dataset's format (lists, numpy arrays)."""
    return values.tolist() if hasattr(values, "tolist") else [_plain(v) if hasattr(v, "tolist") else v for v in values]
