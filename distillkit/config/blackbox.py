"""The schema of ``method=blackbox_label`` (task=classification): a teacher that only writes text (an endpoint,
``teacher=openai``) labels the training texts through a prompt and a verbaliser, and a classifier learns those
labels (with the teacher's soft labels where the endpoint returns top log-probabilities). Its own module, beside
``llm.py``'s ``blackbox_sft``: a different task's family (logits), and settings a causal-LM run never reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from distillkit.errors import require, unit_interval

MATCHES = ("first", "exact")

# The zero-shot prompt: {labels} = the class names (comma-separated), {text} = the example (and {text_pair}).
DEFAULT_TEMPLATE = (
    "Classify the text into exactly one of these classes: {labels}.\n"
    "Answer with the class name only.\n\n"
    "Text: {text}\n"
    "Class:"
)


@dataclass
class BlackboxLabelMethodConfig:
    """Stage ``label`` (outside the optimizer budget): the teacher answers ``template`` for every training (and,
    with ``label_eval``, eval) text; ``verbaliser`` (class name → words; null = each class's own name) maps an
    answer to a class by ``match`` (``first``: the earliest verbaliser word in the answer, case-insensitive, at word
    boundaries, the longest at one position; ``exact``: the whole answer, trimmed of spaces and final punctuation,
    equals a word); an answer naming no class is rejected. With ``soft`` (by default: whether
    ``teacher.sampling.logprobs`` is on) the first answer token's top log-probabilities become a distribution over
    classes (``floor`` for classes absent from the top k, renormalised). Stage ``distill``:
    L = ce_weight·CE(ŷ, softmax(z_s)) + (1 − ce_weight)·T²·KL(p̂ ‖ softmax(z_s/T)), or CE alone without soft
    labels."""

    name: str = "blackbox_label"
    template: str = DEFAULT_TEMPLATE
    system_prompt: Optional[str] = None
    verbaliser: Any = (
        None  # {class name: [words]}; Any: an override replaces the whole mapping (method.verbaliser={...})
    )
    match: str = "first"
    soft: bool = False  # conf/method/blackbox_label.yaml: ${teacher.sampling.logprobs}
    floor: float = 1e-4  # probability of a class absent from the top-k log-probs, before renormalising
    temperature: float = 1.0
    ce_weight: float = 0.5  # α: the hard label's CE; the soft labels' KD term gets 1 − α (CE alone without soft)
    label_eval: bool = True  # the teacher labels the eval split too: its own accuracy in the report

    def __post_init__(self):
        require(
            "{text}" in self.template,
            "method.template",
            self.template,
            "does not contain {text}, so the teacher would never see the example it labels.",
            "put {text} (and optionally {labels}, {text_pair}) in the template.",
        )
        require(
            self.match in MATCHES,
            "method.match",
            self.match,
            "is not a matching rule.",
            "use first (the earliest verbaliser word in the answer) or exact (the whole answer is a word).",
        )
        require(
            self.verbaliser is None or isinstance(self.verbaliser, dict),
            "method.verbaliser",
            self.verbaliser,
            "is not a mapping from class names to lists of words.",
            "use e.g. method.verbaliser={food/positive:[yummy,tasty],food/negative:[bland]}, or null (the class "
            "names).",
        )
        for label, words in (self.verbaliser or {}).items():
            require(
                isinstance(words, (list, tuple))
                and bool(words)
                and all(isinstance(w, str) and w.strip() for w in words),
                f"method.verbaliser.{label}",
                list(words or []),
                "holds an empty word (or no word): an empty word would match every answer.",
                f"give class {label!r} one or more non-empty words, e.g. method.verbaliser.{label}=[{label}].",
            )
        require(
            0.0 < self.floor < 1.0,
            "method.floor",
            self.floor,
            "must be in (0, 1).",
            "use a small probability such as 1e-4.",
        )
        require(
            self.temperature > 0,
            "method.temperature",
            self.temperature,
            "must be > 0.",
            "use e.g. 1.0 (the teacher's distribution as it is) or 2.0.",
        )
        unit_interval("method.ce_weight", self.ce_weight)

    def check_run(self, parts: dict) -> None:
        """Checks against the other groups (``config.task.check_task``): the teacher must be an endpoint, and soft
        labels need the endpoint's top log-probabilities."""
        teacher = parts["teacher"]
        require(
            teacher.endpoint is not None,
            "teacher",
            teacher.name,
            "is a model with weights, and method=blackbox_label asks a teacher that writes text (an endpoint) to "
            "label the data.",
            "use teacher=openai (OpenAI, or a local language model served by vLLM / llama.cpp / TGI through "
            "teacher.endpoint.base_url), or method=kd to distil a classifier teacher's logits.",
        )
        s = teacher.sampling
        require(
            s.n == 1 or s.temperature > 0,
            "teacher.sampling.n",
            s.n,
            "asks for several answers per text to vote on its label, and teacher.sampling.temperature=0 makes them "
            "all the same greedy answer.",
            "sample them (e.g. teacher.sampling.temperature=0.7), or set teacher.sampling.n=1.",
        )
        require(
            not self.soft or (s.logprobs and (s.top_logprobs or 0) >= 2) or s.n > 1,
            "method.soft",
            self.soft,
            f"asks for soft labels, which are read from the endpoint's top log-probabilities or from the votes of "
            f"several answers, and teacher.sampling.logprobs={s.logprobs}, top_logprobs={s.top_logprobs}, n={s.n}.",
            "set teacher.sampling.logprobs=true teacher.sampling.top_logprobs=5 (k >= 2: the alternatives), or "
            "teacher.sampling.n=5 teacher.sampling.temperature=0.7 (the votes' shares), or method.soft=false for "
            "hard labels only.",
        )


def check_verbaliser(label_names: list[str], mapping: dict | None) -> None:
    """``method.verbaliser`` against the task's classes (checked when the method is built, before any work): a
    class the task does not have, a class left without words, a word two classes share (case-insensitive) are each a
    ConfigError naming the key, the value and the fix. None / empty: each class's own name."""
    if not mapping:
        return
    mapping = {str(k): list(v) for k, v in mapping.items()}
    for name in mapping:
        require(
            name in label_names,
            f"method.verbaliser.{name}",
            mapping[name],
            f"names a class the task does not have (its classes: {', '.join(label_names)}).",
            "use the task's class names as the verbaliser's keys (results.json's task.label_names).",
        )
    missing = [n for n in label_names if n not in mapping]
    require(
        not missing,
        "method.verbaliser",
        mapping,
        f"gives no words for class(es) {', '.join(missing)}, which the teacher could then never choose.",
        "give every class one or more words (or drop method.verbaliser: each class's own name).",
    )
    seen: dict[str, str] = {}
    for name in label_names:
        for word in (w.strip().lower() for w in mapping[name]):
            require(
                seen.get(word, name) == name,
                f"method.verbaliser.{name}",
                word,
                f"is also a word of class {seen.get(word)!r}: an answer with it would map to two classes.",
                "give each word to one class only.",
            )
            seen[word] = name
