"""The generation stage's pipelines beyond ``responses`` (``method.pipeline``), each on the same machinery as it: the
run's generating teacher behind the completion cache (a rerun or a resumed run pays for nothing twice), the progress
line, the filters, the rows in the task's format (``Task.generated_row``), the dataset and its card, the counts.

- ``self_instruct`` (Wang et al. 2023, "Self-Instruct"): a pool of seed tasks (``method.seed_file``, or the training
  prompts) grows to ``method.pool_size``: the teacher sees ``examples_per_prompt`` pool tasks and proposes a new
  one; a proposal that is empty, invalid (Wang et al.'s heuristics: under 3 or over 150 words, a task a text model
  cannot do such as drawing or reading a file, starting with punctuation) or a near-duplicate (ROUGE-L ≥
  ``rouge_threshold`` against a pool task) is rejected; the teacher answers the rest, and an answered task joins the
  pool. At most ``max_attempts`` proposals: when they run out first, a warning and the pool as it is.
- ``explanations`` (Mukherjee et al. 2023, "Orca"): each training prompt is sent after one of ``system_prompts`` (in
  turn) asking for a step-by-step explanation ending on the answer line ``Final answer: ...``; the student learns the
  whole trace (the system prompt used is kept with each row, not in its input); a trace without that line, when the
  system prompt asked for it, is rejected (``no_final_answer``) so the task's evaluation can read the answer.
- ``dialogue`` (Chiang et al. 2023, "Vicuna"): the teacher answers the first user turn, a follow-up user turn is
  appended (the data's own later turns when its rows are conversations, else ``follow_ups`` in turn) and the teacher
  answers again, up to ``turns`` assistant turns; a rejected answer ends its conversation there (a conversation
  without a first answer is dropped). The student learns every assistant turn.

Every request is made through ``teacher.generate`` in rounds, in a fixed order from a seeded random stream, so the
same run asks the same conversations again and finds them in the cache.
"""

from __future__ import annotations

import logging
import random
import re
import time

from distillkit.config.llm import FINAL_ANSWER, read_seed_file
from distillkit.errors import require
from distillkit.recipe.stage import Stage
from distillkit.stages.generation.common import CHUNK, Made, Progress, count, filter_answers, sampling_text

log = logging.getLogger("distillkit")

USER, SYSTEM, ASSISTANT = "user", "system", "assistant"

PROPOSAL = (
    "Come up with a new task for an AI assistant, different from the examples below and not a copy of any of them. "
    "Write only the task itself, on one line.\n\n{examples}\nTask {next}:"
)
# Wang et al.'s filter: tasks a language model cannot do (they read or make images, files, plots, ...)
UNSUITABLE = ("image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map", "maps", "draw",
              "plot", "go to", "video", "audio", "flowchart", "diagram")  # fmt: skip
_TASK_PREFIX = re.compile(r"^\s*(?:task\s*\d*\s*[:.)-]\s*)", re.IGNORECASE)


def run_pipeline(stage: Stage, ws, teacher, sampling) -> Made:
    return {"self_instruct": self_instruct, "explanations": explanations, "dialogue": dialogue}[
        stage.generation.pipeline
    ](stage, ws, teacher, sampling)


def _head(system_prompt: str | None) -> list[dict]:
    return [{"role": SYSTEM, "content": system_prompt}] if system_prompt else []


def _user_turns(conversation: list[dict]) -> list[str]:
    return [m["content"] for m in conversation if m["role"] == USER]


# ------------------------------------------------------------------------------------------------- self_instruct


def rouge_l(a: str, b: str) -> float:
    """ROUGE-L F1 of two texts on lower-cased whitespace tokens (the causal-LM metric's convention; 0 when either
    is empty)."""
    x, y = a.lower().split(), b.lower().split()
    if not x or not y:
        return 0.0
    prev = [0] * (len(y) + 1)
    for t in x:
        cur = [0]
        for j, u in enumerate(y):
            cur.append(prev[j] + 1 if t == u else max(prev[j + 1], cur[j]))
        prev = cur
    lcs = prev[-1]
    return 0.0 if lcs == 0 else 2 * lcs / (len(x) + len(y))


def parse_proposal(text: str) -> str:
    """The task a proposal holds: its first non-blank line, without a leading ``Task N:``."""
    line = next((ln for ln in text.splitlines() if ln.strip()), "")
    return _TASK_PREFIX.sub("", line).strip()


def judge_proposal(task: str, pool: list[str], threshold: float) -> str | None:
    """Why ``task`` is rejected (``empty``, ``invalid``, ``near_duplicate``: ROUGE-L ≥ ``threshold`` against a pool
    task), or None when it is kept."""
    if not task:
        return "empty"
    words = task.split()
    lowered = " " + " ".join(re.findall(r"[a-z]+", task.lower())) + " "
    if len(words) < 3 or len(words) > 150 or not task[0].isalnum() or any(f" {w} " in lowered for w in UNSUITABLE):
        return "invalid"
    if any(rouge_l(task, other) >= threshold for other in pool):
        return "near_duplicate"
    return None


def seed_tasks(options: dict, ws) -> tuple[list[str], str]:
    """(the seed tasks, where they came from): ``seed_file`` rows' ``prompt`` (or ``instruction``, with a non-empty
    ``input`` after a blank line), else the training prompts (a chat row: its first user turn)."""
    path = options.get("seed_file")
    if path:
        tasks = read_seed_file(path)
        return tasks, f"method.seed_file={path}"
    convs = ws.plan.kind.generation_prompts(ws.plan.task, None)
    return [_user_turns(c)[0] for c in convs if _user_turns(c)], f"the training prompts of data={ws.cfg.data.name}"


def self_instruct(stage: Stage, ws, teacher, sampling) -> Made:
    kind, spec, o = ws.plan.kind, stage.generation, stage.generation.options
    seeds, source = seed_tasks(o, ws)
    pool = list(dict.fromkeys(seeds))  # exact repeats among the seeds once
    want = o["pool_size"] - len(pool)
    require(
        want > 0,
        "method.pool_size",
        o["pool_size"],
        f"is not above the {len(pool)} seed tasks ({source}), so self_instruct would propose nothing.",
        f"raise method.pool_size above {len(pool)}, or give fewer seed tasks (method.seed_file).",
    )
    cap = o["max_attempts"] or 4 * want
    k = o["examples_per_prompt"]
    log.info(
        "[%s] self_instruct: %d seed tasks (%s) → a pool of %d; %s proposes and answers (%s), at most %d proposals; "
        "near-duplicates: ROUGE-L >= %g",
        stage.name,
        len(pool),
        source,
        o["pool_size"],
        teacher.describe(),
        sampling_text(sampling),
        cap,
        o["rouge_threshold"],
    )
    rng = random.Random(f"self_instruct:{sampling.seed}")
    progress = Progress(stage.name, cap, unit="proposals")
    rows, rejected, new, attempts, asked = [], {}, [], 0, 0
    started = time.perf_counter()
    while len(new) < want and attempts < cap:
        size = min(CHUNK, cap - attempts, want - len(new))
        proposals = []
        for _ in range(size):
            shown = rng.sample(pool, min(k, len(pool)))
            examples = "\n".join(f"Task {i + 1}: {t}" for i, t in enumerate(shown))
            proposals.append(_head(spec.system_prompt) + [{"role": USER, "content": PROPOSAL.format(
                examples=examples, next=len(shown) + 1)}])  # fmt: skip
        answers = teacher.generate(proposals, sampling)
        attempts += size
        asked += size
        accepted, why_of = [], {}  # accepted: (proposal index, task)
        for i, completions in enumerate(answers):
            why_of[i] = []
            for c in completions:
                task = parse_proposal(c.text)
                if spec.drop_truncated and c.finish_reason == "length" and task:
                    reason = "invalid"  # a task cut off by max_tokens
                else:
                    reason = judge_proposal(task, pool + [a for _, a in accepted], o["rouge_threshold"])
                if reason is None and len(new) + len(accepted) >= want:
                    reason = "surplus"  # n > 1: more good tasks than the pool has room for
                if reason is None:
                    accepted.append((i, task))
                else:
                    why_of[i].append(reason)
        # the teacher answers the accepted tasks; a task joins the pool with its first kept answer
        convs = [_head(spec.system_prompt) + [{"role": USER, "content": t}] for _, t in accepted]
        replies = teacher.generate(convs, sampling) if convs else []
        asked += len(convs)
        kept_of = dict.fromkeys(range(len(answers)), 0)
        for (i, task), conv, completions in zip(accepted, convs, replies):
            kept, why = filter_answers(completions, spec.drop_truncated)
            if kept:
                rows.append(kind.generated_row(conv, kept[0], spec.system_prompt))
                pool.append(task)
                new.append(task)
                kept_of[i] += 1
            else:  # the task is rejected once, for its first answer's reason
                why_of[i].append(f"answer_{why[0]}")
        for i in range(len(answers)):
            count(rejected, why_of[i])
            progress.add(kept_of[i], len(why_of[i]))
    seconds = time.perf_counter() - started
    if progress.done != progress.total:  # stopped before the most it could ask: the last progress line
        log.info("[%s] %s", stage.name, progress.line())
    cap_hit = len(new) < want
    require(
        len(new) > 0,
        "method.max_attempts",
        cap,
        f"ran out with no new task kept of {attempts} proposals (rejected: "
        + (", ".join(f"{r} {v}" for r, v in rejected.items()) or "none")
        + "), so the student would have nothing to learn.",
        "raise method.max_attempts, sample the teacher with more variety (teacher.sampling.temperature), or look at "
        f"its proposals in the completion cache ({teacher.root}).",
    )
    if cap_hit:
        log.warning(
            "[%s] self_instruct stopped at method.max_attempts=%d proposals with %d of the %d new tasks wanted "
            "(rejected: %s); the pool holds %d tasks. Raise method.max_attempts, lower method.pool_size, or sample "
            "the teacher with more variety (teacher.sampling.temperature).",
            stage.name,
            cap,
            len(new),
            want,
            ", ".join(f"{r} {v}" for r, v in rejected.items()) or "none",
            len(pool),
        )
    card = {
        "prompts": {
            "source": source,
            "system_prompt": spec.system_prompt,
            "template": "self_instruct: " + PROPOSAL.replace("\n", "\\n"),
        },
        "self_instruct": {
            "paper": "Wang et al. 2023, Self-Instruct: Aligning Language Models with Self-Generated Instructions",
            "seed_tasks": len(seeds),
            "seed_source": source,
            "pool_size_target": o["pool_size"],
            "pool_size": len(pool),
            "new_tasks": len(new),
            "proposals": attempts,
            "max_attempts": cap,
            "cap_hit": cap_hit,
            "examples_per_prompt": k,
            "rouge_threshold": o["rouge_threshold"],
        },
    }
    filters = {
        "invalid": "a proposal under 3 or over 150 words, starting with punctuation, cut by max_tokens, or asking for "
        "what a text model cannot do (" + ", ".join(UNSUITABLE) + ")",
        "near_duplicate": f"a proposal with ROUGE-L >= {o['rouge_threshold']:g} against a pool task",
        "surplus": "a good proposal beyond the pool's room (n > 1)",
        "answer_empty / answer_truncated": "the teacher's answer to a kept task was blank / cut by max_tokens",
    }
    return Made(rows, rejected, attempts, asked * sampling.n, seconds, filters, card)


# -------------------------------------------------------------------------------------------------- explanations


def explanations(stage: Stage, ws, teacher, sampling) -> Made:
    kind, spec = ws.plan.kind, stage.generation
    system_prompts = spec.options["system_prompts"]
    base = kind.generation_prompts(ws.plan.task, None)
    used = [system_prompts[i % len(system_prompts)] for i in range(len(base))]
    conversations = [_head(sp) + c for sp, c in zip(used, base)]
    log.info(
        "[%s] explanations: %s explains its answers to %d training prompts (%d system prompts in turn; %s)",
        stage.name,
        teacher.describe(),
        len(conversations),
        len(system_prompts),
        sampling_text(sampling),
    )
    progress, rows, rejected = Progress(stage.name, len(conversations)), [], {}
    started = time.perf_counter()
    for start in range(0, len(conversations), CHUNK):
        chunk = conversations[start : start + CHUNK]
        kept_rows: dict[int, list] = {}

        def take(i: int, answers, chunk=chunk, kept_rows=kept_rows, start=start) -> None:
            sp = used[start + i]
            kept, why = filter_answers(answers, spec.drop_truncated)
            if FINAL_ANSWER in sp:  # the system prompt asked for the answer line: a trace without it is rejected
                why += ["no_final_answer" for a in kept if FINAL_ANSWER not in a.text]
                kept = [a for a in kept if FINAL_ANSWER in a.text]
            count(rejected, why)
            kept_rows[i] = [kind.generated_row(chunk[i], a, sp) | {"system_prompt": sp} for a in kept]
            progress.add(len(kept), len(why))

        teacher.generate(chunk, sampling, take)
        rows += [row for i in range(len(chunk)) for row in kept_rows[i]]
    seconds = time.perf_counter() - started
    card = {
        "prompts": {
            "source": f"the training split of data={ws.cfg.data.name}",
            "system_prompt": None,
            "system_prompts": system_prompts,
            "template": "a system prompt asking for a step-by-step explanation (in turn; each row's "
            "'system_prompt'), then the training prompt as the user turn; the student sees the prompt alone",
        },
        "explanations": {
            "paper": "Mukherjee et al. 2023, Orca: Progressive Learning from Complex Explanation Traces of GPT-4",
            "response": f"the whole explanation trace, ending on the line '{FINAL_ANSWER} ...' that the task's "
            "evaluation reads",
            "rows_by_system_prompt": {sp: sum(r["system_prompt"] == sp for r in rows) for sp in system_prompts},
        },
    }
    filters = {"no_final_answer": f"the trace has no '{FINAL_ANSWER}' line though its system prompt asked for one"}
    return Made(rows, rejected, len(conversations), len(conversations) * sampling.n, seconds, filters, card)


# ------------------------------------------------------------------------------------------------------ dialogue


def dialogue_users(conversations: list[list[dict]], turns: int, follow_ups: list[str]) -> list[list[str]]:
    """Each conversation's user turns, at most ``turns``: a chat row's own (its assistant turns are the teacher's to
    write again), else its prompt and then ``follow_ups`` in turn (conversation i starts at follow-up i)."""
    users = []
    for i, c in enumerate(conversations):
        own = _user_turns(c)
        if len(own) > 1:
            users.append(own[:turns])
        else:
            users.append(own[:1] + [follow_ups[(i + t) % len(follow_ups)] for t in range(turns - 1)])
    return users


def dialogue(stage: Stage, ws, teacher, sampling) -> Made:
    """Rounds of one assistant turn each over the live conversations; the first kept answer continues each."""
    kind, spec, o = ws.plan.kind, stage.generation, stage.generation.options
    turns, follow_ups = o["turns"], o["follow_ups"]
    base = kind.generation_prompts(ws.plan.task, None)
    users = dialogue_users(base, turns, follow_ups)
    from_data = sum(len(_user_turns(c)) > 1 for c in base)
    log.info(
        "[%s] dialogue: %s holds %d conversations of up to %d assistant turns (%d with the data's own follow-ups, "
        "the rest from method.follow_ups; %s)",
        stage.name,
        teacher.describe(),
        len(base),
        turns,
        from_data,
        sampling_text(sampling),
    )
    # the pipeline's system turn, else a chat row's own (kept in its row, as responses keeps it)
    heads = [_head(spec.system_prompt) or [m for m in c if m["role"] == SYSTEM][:1] for c in base]
    convs = [h + [{"role": USER, "content": u[0]}] for h, u in zip(heads, users)]
    last = [None] * len(convs)  # each conversation's latest kept answer (a Completion)
    live = list(range(len(convs)))
    progress = Progress(stage.name, sum(len(u) for u in users), unit="turns")
    rejected, asked, answered_turns = {}, 0, 0
    started = time.perf_counter()
    for t in range(turns):
        if t > 0:  # the previous answer, then the next user turn
            live = [i for i in live if last[i] is not None and len(users[i]) > t]
            for i in live:
                convs[i] = convs[i] + [
                    {"role": ASSISTANT, "content": last[i].text},
                    {"role": USER, "content": users[i][t]},
                ]
        for start in range(0, len(live), CHUNK):
            chunk = live[start : start + CHUNK]

            def take(j: int, answers, chunk=chunk, t=t) -> None:
                i = chunk[j]
                kept, why = filter_answers(answers, spec.drop_truncated)
                count(rejected, why)
                if kept:
                    last[i] = kept[0]
                elif t > 0:
                    users[i] = users[i][:t]  # the conversation ends with its previous answer
                    convs[i] = convs[i][:-2]
                else:
                    last[i] = None
                progress.add(1 if kept else 0, len(why))

            teacher.generate([convs[i] for i in chunk], sampling, take)
            asked += len(chunk)
    seconds = time.perf_counter() - started
    if progress.done != progress.total:  # stopped before the most it could ask: the last progress line
        log.info("[%s] %s", stage.name, progress.line())
    rows = []
    for i, conv in enumerate(convs):
        if last[i] is None:
            continue  # no first answer: dropped
        rows.append(kind.generated_row(conv, last[i], spec.system_prompt))
        answered_turns += sum(m["role"] == ASSISTANT for m in conv) + 1
    card = {
        "prompts": {
            "source": f"the training split of data={ws.cfg.data.name}",
            "system_prompt": spec.system_prompt,
            "template": "the training prompt as the first user turn; after each answer the next user turn (the "
            "data's own, else method.follow_ups in turn)",
            "follow_ups": follow_ups,
        },
        "dialogue": {
            "paper": "Chiang et al. 2023, Vicuna: An Open-Source Chatbot Impressing GPT-4 with 90% ChatGPT Quality",
            "turns": turns,
            "conversations": len(rows),
            "assistant_turns": answered_turns,
            "follow_ups_from_data": from_data,
            "loss": "every assistant turn (user and system turns masked) in this run's generated view",
            "reuse_note": "data=lm_local reads these rows with data.messages_field=messages and a tokenizer with "
            "a chat template, and learns their last answer only",
        },
    }
    filters = {"ends": "a rejected answer ends its conversation at the previous turn (none kept: dropped)"}
    return Made(rows, rejected, len(convs), asked * sampling.n, seconds, filters, card)
