"""Schema dataclasses of the ``method`` group's causal-LM family (``task=causal_lm``): sft, forward_kl, reverse_kl,
gkd, minillm, seq_kd. Their builders are in ``distillkit/methods/llm.py``; the table is
``distillkit/config/registry.py``. Every token-level term is a mean over response tokens (prompt and padding masked)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from distillkit.errors import count_or_null, positive, require, unit_interval


def read_seed_file(path: str) -> list[str]:
    """The tasks of a seed jsonl; a missing, unreadable or empty file is a ``ConfigError`` on ``method.seed_file``."""
    fix = 'give a jsonl with one seed task per line, e.g. {"prompt": "What is 2 + 3?"}, or method.seed_file=null '
    fix += "(the training prompts are the seeds)."
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as err:
        require(False, "method.seed_file", path, f"cannot be read ({err.strerror or err}).", fix)
    tasks = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        text = (row.get("prompt") or row.get("instruction")) if isinstance(row, dict) else None
        require(
            isinstance(text, str) and text.strip() != "",
            "method.seed_file",
            path,
            f"line {n} is not a JSON object with a non-empty 'prompt' (or 'instruction'): {line[:80]!r}.",
            fix,
        )
        extra = row.get("input") if isinstance(row.get("input"), str) else ""
        tasks.append(text.strip() + (f"\n\n{extra.strip()}" if extra.strip() else ""))
    require(len(tasks) > 0, "method.seed_file", path, "holds no seed task (the file is empty).", fix)
    return tasks


def _chunk(value) -> None:
    require(
        value is None or value >= 1,
        "method.chunk_size",
        value,
        "must be >= 1 or null.",
        "use null (all tokens at once) or e.g. 1024 response tokens per chunk (large vocabularies).",
    )


def _sft_share(value: float) -> None:
    require(
        0.0 <= value < 1.0,
        "method.sft_share",
        value,
        "is outside [0, 1): the distillation stage needs a share of the budget.",
        "use 0 (a student already fine-tuned on the task) up to e.g. 0.5.",
    )


def _distill_rate(value) -> None:
    require(
        value is None or value > 0,
        "method.distill_learning_rate",
        value,
        "must be > 0 or null.",
        "use null (train.learning_rate) or a rate below it for a student the sft stage has already fitted, "
        "e.g. a tenth of it.",
    )


def _ntp_weight(value: float) -> None:
    require(
        0.0 <= value < 1.0,
        "method.ntp_weight",
        value,
        "is outside [0, 1): the distillation term needs a share of the loss.",
        "use 0 (the paper's loss) up to e.g. 0.5.",
    )


def _temperature(value: float) -> None:
    positive("method.temperature", value, "use a temperature > 0 (1 = the models' own distributions).")


@dataclass
class SamplingConfig:
    """How the student samples its own responses inside the training step (on-policy batches)."""

    max_new_tokens: int = 24
    temperature: float = 1.0  # of the sampling (the loss has its own method.temperature)
    top_p: float = 1.0

    def __post_init__(self):
        positive("method.sampling.max_new_tokens", self.max_new_tokens, "use a count >= 1, e.g. 16.")
        positive("method.sampling.temperature", self.temperature, "use a temperature > 0, e.g. 1.0.")
        require(
            0.0 < self.top_p <= 1.0,
            "method.sampling.top_p",
            self.top_p,
            "is outside (0, 1].",
            "use 1.0 (no nucleus cut) or e.g. 0.95.",
        )


@dataclass
class SFTMethodConfig:
    """Next-token prediction on the dataset's responses: the baseline (no teacher read)."""

    name: str = "sft"


@dataclass
class ForwardKLMethodConfig:
    """L = kd_weight·T²·KL(p_t ‖ p_s) + (1 − kd_weight)·NTP(y, p_s), per response token."""

    name: str = "forward_kl"
    temperature: float = 1.0
    kd_weight: float = 0.5  # λ: the weight of the KD (teacher) term; NTP on the dataset's responses gets 1 − λ
    chunk_size: Optional[int] = None

    def __post_init__(self):
        _temperature(self.temperature)
        unit_interval("method.kd_weight", self.kd_weight)
        _chunk(self.chunk_size)


@dataclass
class ReverseKLMethodConfig:
    """Per-token reverse KL(p_s ‖ p_t) on responses the student samples itself (fraction ``on_policy`` of the
    batches; the others use the dataset's responses)."""

    name: str = "reverse_kl"
    temperature: float = 1.0
    on_policy: float = 1.0
    sft_share: float = 0.5  # a first stage `sft` takes this share of train.epochs (the papers start from SFT)
    distill_learning_rate: Optional[float] = None  # the distill stage's peak rate; null = train.learning_rate
    ntp_weight: float = 0.0  # μ: L = (1 − μ)·KD + μ·NTP on the dataset's responses (read beside the samples)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    chunk_size: Optional[int] = None

    def __post_init__(self):
        _sft_share(self.sft_share)
        _distill_rate(self.distill_learning_rate)
        _ntp_weight(self.ntp_weight)
        _temperature(self.temperature)
        unit_interval("method.on_policy", self.on_policy)
        _chunk(self.chunk_size)


@dataclass
class GKDMethodConfig:
    """Agarwal et al. 2024: generalized JSD(β) per token; with probability ``on_policy`` (the paper's λ) the batch
    is the student's own samples, else the dataset's responses."""

    name: str = "gkd"
    beta: float = 0.5  # 0 = forward KL(p_t ‖ p_s), 1 = reverse KL(p_s ‖ p_t)
    on_policy: float = 0.5  # λ
    temperature: float = 1.0
    sft_share: float = 0.5  # a first stage `sft` takes this share of train.epochs (the papers start from SFT)
    distill_learning_rate: Optional[float] = None  # the distill stage's peak rate; null = train.learning_rate
    ntp_weight: float = 0.0  # μ: L = (1 − μ)·KD + μ·NTP on the dataset's responses (read beside the samples)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    chunk_size: Optional[int] = None

    def __post_init__(self):
        _sft_share(self.sft_share)
        _distill_rate(self.distill_learning_rate)
        _ntp_weight(self.ntp_weight)
        unit_interval("method.beta", self.beta)
        unit_interval("method.on_policy", self.on_policy)
        _temperature(self.temperature)
        _chunk(self.chunk_size)


@dataclass
class MiniLLMMethodConfig:
    """Gu et al. 2024 (MiniLLM): the policy-gradient form of the sequence-level reverse KL KL(q_θ ‖ p) with the
    single-step decomposition, length-normalised future rewards and teacher-mixed sampling (``losses/minillm.py``).
    Every batch is sampled from p̃ = teacher_mix·p + (1 − teacher_mix)·q_θ inside the training step."""

    name: str = "minillm"
    teacher_mix: float = 0.2  # α of p̃ = α·p + (1 − α)·q_θ (0: the student's own samples, no teacher while sampling)
    length_norm: bool = True  # R^Norm_{t+1}: the mean, not the sum, of the future rewards
    discount: float = 1.0  # γ of the future rewards (1 = the paper; LMOps's default is 0.95)
    ratio_clip: Optional[float] = 0.2  # ε of PPO's clip on ρ_t = w_t (LMOps's cliprange); null = plain REINFORCE
    reward_clip: Optional[float] = None  # r_t clipped to [−c, c]; null = none
    sft_share: float = 0.5  # a first stage `sft` takes this share of train.epochs (the paper starts from SFT)
    distill_learning_rate: Optional[float] = None  # the distill stage's peak rate; null = train.learning_rate
    ntp_weight: float = 0.0  # μ: L = (1 − μ)·MiniLLM + μ·NTP on the dataset's responses (the paper's L_PT, here)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    chunk_size: Optional[int] = None  # of the single-step term's (rows, V) temporaries

    def __post_init__(self):
        require(
            0.0 <= self.teacher_mix < 1.0,
            "method.teacher_mix",
            self.teacher_mix,
            "is outside [0, 1): it is α of the sampling mixture α·p_teacher + (1 − α)·q_student, and at 1 the "
            "student never samples and its importance weights q/p are unbounded.",
            "use 0.2 (the paper's), or 0 for the student's own samples only.",
        )
        require(
            0.0 < self.discount <= 1.0,
            "method.discount",
            self.discount,
            "is outside (0, 1].",
            "use 1.0 (the paper's undiscounted future reward) or e.g. 0.95 (LMOps's code).",
        )
        require(
            self.ratio_clip is None or 0.0 < self.ratio_clip < 1.0,
            "method.ratio_clip",
            self.ratio_clip,
            "is outside (0, 1): it is PPO's ε, the importance ratio kept within [1 − ε, 1 + ε].",
            "use 0.2 (LMOps's) or null (no clipping).",
        )
        require(
            self.reward_clip is None or self.reward_clip > 0,
            "method.reward_clip",
            self.reward_clip,
            "must be > 0 or null.",
            "use null (no clipping) or a bound on |log p − log q| per token such as 10.",
        )
        for key, value in (("temperature", self.sampling.temperature), ("top_p", self.sampling.top_p)):
            require(
                value == 1.0,
                f"method.sampling.{key}",
                value,
                "is not 1.0: MiniLLM samples from the mixture p̃ = α·p + (1 − α)·q itself, and its importance "
                "weights q/p̃ assume exactly that distribution.",
                f"leave method.sampling.{key} at 1.0 (method.teacher_mix sets how much the teacher steers them).",
            )
        _sft_share(self.sft_share)
        _distill_rate(self.distill_learning_rate)
        _ntp_weight(self.ntp_weight)
        _chunk(self.chunk_size)


@dataclass
class SeqKDMethodConfig:
    """Kim & Rush 2016: the teacher answers every training prompt once (greedy, or beam search with num_beams > 1;
    cached), and the student learns those answers by next-token prediction."""

    name: str = "seq_kd"
    num_beams: int = 1
    max_new_tokens: Optional[int] = None  # null = task.max_new_tokens
    keep_original: bool = False  # true: train on the dataset's responses as well as the teacher's

    def __post_init__(self):
        positive("method.num_beams", self.num_beams, "use 1 (greedy) or a beam width such as 4.")
        count_or_null("method.max_new_tokens", self.max_new_tokens, "task.max_new_tokens", 64)


# the answer line an explanation trace ends on; the causal-LM evaluation scores what follows its last occurrence
FINAL_ANSWER = "Final answer:"
PIPELINES = ("responses", "self_instruct", "explanations", "dialogue")

# Orca's system prompts (Mukherjee et al. 2023), shortened; each asks for the reasoning and ends on the answer line
# the causal-LM evaluation reads (``Final answer: ...``, see tasks/causal_lm/metrics.final_answer).
EXPLANATION_PROMPTS = [
    "You are a helpful assistant. Think step by step and justify your answer. "
    "End with a last line 'Final answer: <the answer>'.",
    "You are an AI assistant. Explain your reasoning step by step, as if to a student, before you answer. "
    "End with a last line 'Final answer: <the answer>'.",
    "You are a careful assistant. Break the task into steps, solve each, then check the result. "
    "End with a last line 'Final answer: <the answer>'.",
]
# Vicuna-style follow-up user turns for dialogue when the data has no later turns of its own
FOLLOW_UPS = [
    "Are you sure? Check your answer once more.",
    "Can you explain how you got that?",
    "Please repeat the answer only.",
]


@dataclass
class BlackboxSFTMethodConfig:
    """Black-box distillation: a teacher that writes text (an endpoint, ``teacher=openai``, or a local model) makes
    a dataset in a first stage (``generate``, outside the optimizer budget, like teacher_prep), and the student
    learns it by next-token prediction in the next (``distill``: the run's whole budget). ``pipeline``: ``responses``
    (Alpaca's recipe: the teacher answers the training prompts), ``self_instruct`` (Wang et al. 2023: it grows a pool of
    tasks from seed tasks and answers them), ``explanations`` (Orca: step-by-step traces under system prompts),
    ``dialogue`` (Vicuna: multi-turn conversations, the loss on every answer); docs/blackbox.md. The teacher's sampling
    is ``teacher.sampling``."""

    name: str = "blackbox_sft"
    pipeline: str = "responses"
    system_prompt: Optional[str] = None  # a system turn put before each prompt sent to the teacher
    drop_truncated: bool = True  # reject completions cut by max_tokens (finish_reason "length")
    keep_original: bool = False  # true: train on the dataset's own responses as well as the teacher's
    # grey-box: the weight of a forward-KL term on the endpoint's top log-probs (teacher.sampling.logprobs=true,
    # top_logprobs=k): L = λ·KL_topk(p_t ‖ p_s) + (1 − λ)·NTP; 0: text only
    kd_weight: float = 0.0
    # pipeline=self_instruct (Wang et al. 2023): grow a pool of tasks from seed tasks
    seed_file: Optional[str] = None  # a jsonl of seed tasks ({"prompt"} or {"instruction"}); null: training prompts
    pool_size: int = 64  # stop once the pool (seed tasks included) holds this many tasks
    max_attempts: Optional[int] = None  # proposals asked for at most; null: 4 x the new tasks wanted
    examples_per_prompt: int = 3  # pool tasks shown to the teacher in each proposal request
    rouge_threshold: float = 0.7  # a proposal with ROUGE-L >= this against a pool task is a near-duplicate
    # pipeline=explanations (Orca, Mukherjee et al. 2023): one system prompt per training prompt, in turn
    system_prompts: list[str] = field(default_factory=lambda: list(EXPLANATION_PROMPTS))
    # pipeline=dialogue (Vicuna, Chiang et al. 2023): conversations of up to `turns` assistant turns
    turns: int = 2
    follow_ups: list[str] = field(default_factory=lambda: list(FOLLOW_UPS))

    def __post_init__(self):
        require(
            self.pipeline in PIPELINES,
            "method.pipeline",
            self.pipeline,
            "is not a pipeline blackbox_sft knows.",
            f"use one of {', '.join(PIPELINES)} (responses: the teacher answers the training prompts; self_instruct: "
            "it proposes new tasks and answers them; explanations: it answers with step-by-step explanations; "
            "dialogue: it holds multi-turn conversations).",
        )
        positive("method.pool_size", self.pool_size, "use a pool size such as 64 (seed tasks included).")
        positive("method.examples_per_prompt", self.examples_per_prompt, "use e.g. 3 (Wang et al. show 8).")
        count_or_null("method.max_attempts", self.max_attempts, "4 x the new tasks wanted", 500)
        require(
            0.0 < self.rouge_threshold <= 1.0,
            "method.rouge_threshold",
            self.rouge_threshold,
            "is outside (0, 1].",
            "use 0.7 (Wang et al.); 1.0 rejects exact repeats only.",
        )
        if self.pipeline == "self_instruct" and self.seed_file:  # before any work: an empty or unreadable seed file
            read_seed_file(self.seed_file)
        positive("method.turns", self.turns, "use 2 or more assistant turns per conversation (1: one answer).")
        unit_interval("method.kd_weight", self.kd_weight)
        require(
            self.kd_weight == 0 or self.pipeline != "dialogue",
            "method.kd_weight",
            self.kd_weight,
            "reads the log-probs of one answer per row, and pipeline=dialogue trains on several answers per row.",
            "use method.kd_weight=0 with dialogue, or the responses / explanations / self_instruct pipeline.",
        )
        for key, values in (("method.system_prompts", self.system_prompts), ("method.follow_ups", self.follow_ups)):
            require(
                len(values) > 0 and all(isinstance(v, str) and v.strip() for v in values),
                key,
                list(values),
                "must be a non-empty list of non-blank strings.",
                f'leave {key} at its default, or give e.g. {key}=\'["...", "..."]\'.',
            )

    def check_run(self, parts: dict) -> None:
        """``method.kd_weight`` > 0 against the teacher group: an endpoint asked for its top log-probs."""
        if self.kd_weight == 0:
            return
        teacher = parts["teacher"]
        require(
            teacher.endpoint is not None,
            "method.kd_weight",
            self.kd_weight,
            f"reads an endpoint's top log-probs, and teacher={teacher.name} is a model with weights (it writes text "
            "only here).",
            "use method=forward_kl for a teacher model's full distribution (white-box), or teacher=openai.",
        )
        s = teacher.sampling
        require(
            bool(s.logprobs) and (s.top_logprobs or 0) >= 1,
            "method.kd_weight",
            self.kd_weight,
            f"reads the endpoint's top log-probs, and teacher.sampling.logprobs={s.logprobs}, "
            f"top_logprobs={s.top_logprobs}.",
            "set teacher.sampling.logprobs=true teacher.sampling.top_logprobs=5 (OpenAI allows up to 20), or "
            "method.kd_weight=0 for text only.",
        )


def _checker(value) -> None:
    """``method.checker``: null (the task's own), or ``module:function`` importable now (before any work)."""
    if value is None:
        return
    import importlib

    fix = (
        "name an importable function as module:function, e.g. method.checker=mypkg.checks:is_correct "
        "(called as f(prompt, answer, reference) -> bool), or null for the task's own checker."
    )
    module, _, function = str(value).partition(":")
    require(bool(module and function), "method.checker", value, "is not of the form module:function.", fix)
    try:
        found = getattr(importlib.import_module(module), function, None)
    except ImportError as err:
        require(False, "method.checker", value, f"cannot be imported: {err}.", fix)
    require(callable(found), "method.checker", value, f"names nothing callable in module {module}.", fix)


@dataclass
class StarMethodConfig:
    """Zelikman et al. 2022, STaR (the Self-Taught Reasoner): ``rounds`` times, the current student writes a
    rationale and an answer for every training prompt (a generation stage); the rationales whose final answer the
    checker accepts are kept; for the others, rationalisation asks again with the correct answer given as a hint and
    keeps the rationale when it now reaches the answer (the kept row's prompt is the original one, without the hint);
    then the student is fine-tuned on the kept rows (a training stage, an equal share of the budget)."""

    name: str = "star"
    rounds: int = 3
    restart: bool = False  # true: each round fine-tunes the round-0 student again (the paper); false: continues
    sft_share: float = 0.3  # a first stage `sft` (NTP on the data) takes this share, so round 0 can write; 0 for a
    # student that already answers the task (a checkpoint)
    rationalize: bool = True
    hint_template: str = "{prompt}\nHint: the answer is {answer}."
    answer_marker: str = "Answer:"  # the final answer follows the last marker; without one, the last line is it
    checker: Optional[str] = None  # module:function (prompt, answer, reference) -> bool; null: the task's own
    system_prompt: Optional[str] = None  # a system turn before each prompt the student is asked (not kept)
    temperature: float = 0.0  # the student's sampling when it writes (0: greedy)
    max_new_tokens: Optional[int] = None  # null: task.max_new_tokens

    def __post_init__(self):
        positive("method.rounds", self.rounds, "use 1 or more rounds, e.g. 3.")
        _sft_share(self.sft_share)
        require(
            "{prompt}" in self.hint_template and "{answer}" in self.hint_template,
            "method.hint_template",
            self.hint_template,
            "needs both {prompt} and {answer}: rationalisation shows the prompt with its correct answer as a hint.",
            "use e.g. '{prompt}\\nHint: the answer is {answer}.'",
        )
        require(
            self.temperature >= 0,
            "method.temperature",
            self.temperature,
            "must be >= 0.",
            "use 0 (greedy) or e.g. 0.7.",
        )
        count_or_null("method.max_new_tokens", self.max_new_tokens, "task.max_new_tokens", 64)
        _checker(self.checker)


DEFAULT_PRINCIPLES = [
    "The answer must be correct: check every fact, number and step.",
    "The answer must do exactly what the prompt asks, in the form it asks for, and nothing else.",
    "The answer must be concise: no filler, no repetition.",
    "The answer must be harmless and honest: no invented facts, and say so when unsure.",
]


@dataclass
class CritiqueReviseMethodConfig:
    """Constitutional-AI-style self-critique and revision (Bai et al. 2022, the supervised stage): a generating
    model (``writer``: the run's teacher, an endpoint or local) answers each training prompt, is asked to critique
    its answer against written ``principles``, then to revise it; the student learns the revisions by next-token
    prediction (generate → distill, as blackbox_sft)."""

    name: str = "critique_revise"
    writer: str = "teacher"  # who answers, critiques and revises: the run's teacher (endpoint or local), or the student
    principles: list[str] = field(default_factory=lambda: list(DEFAULT_PRINCIPLES))
    critique_template: str = (
        "Here is a request and an answer to it.\nRequest: {prompt}\nAnswer: {answer}\n"
        "Critique the answer against these principles:\n{principles}\nSay what is wrong, or 'No issues.'"
    )
    revise_template: str = (
        "Request: {prompt}\nAnswer: {answer}\nCritique: {critique}\n"
        "Rewrite the answer so that it follows the principles and the critique. Reply with the revised answer only."
    )
    system_prompt: Optional[str] = None  # a system turn before each request (not kept in the dataset)
    drop_truncated: bool = True  # reject answers or revisions cut by teacher.sampling.max_tokens
    keep_original: bool = False  # true: train on the dataset's own responses as well

    def __post_init__(self):
        require(
            self.writer in ("teacher", "student"),
            "method.writer",
            self.writer,
            "is not a writer critique_revise knows.",
            "use teacher (the run's teacher: teacher=openai for an endpoint, or the teacher model) or student (the "
            "student critiques and revises its own answers, then learns the revisions).",
        )
        require(
            len(self.principles) > 0 and all(isinstance(p, str) and p.strip() for p in self.principles),
            "method.principles",
            self.principles,
            "must be a non-empty list of non-empty strings: the critique checks the answer against them.",
            'leave the defaults, or give e.g. method.principles=\'["Be correct.","Be brief."]\'.',
        )
        for key, template, needs in (
            ("critique_template", self.critique_template, ("{prompt}", "{answer}", "{principles}")),
            ("revise_template", self.revise_template, ("{prompt}", "{answer}", "{critique}")),
        ):
            missing = [n for n in needs if n not in template]
            require(
                not missing,
                f"method.{key}",
                template,
                f"lacks {', '.join(missing)}.",
                "keep every placeholder of the default template.",
            )
