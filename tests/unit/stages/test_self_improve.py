"""The self-improvement pieces without a model: STaR's rationalisation prompt and final answers, the checkers (the
task's own, one named in the config, the pre-flight error naming method.checker), the critique and revision prompts,
the stage lists and their budget split, and the STaR pipeline with a scripted writer (a failure rationalised with
the hint is kept under its original prompt)."""

from __future__ import annotations

import types

import pytest

from distillkit.config.schema import validate
from distillkit.errors import ConfigError
from distillkit.methods.self_improve import build_critique_revise, build_star
from distillkit.stages.planning import split_budget
from distillkit.tasks.causal_lm import self_improve as si
from distillkit.teachers.generating import Completion
from tests.conftest import TINY_LM, compose_config

USER = {"role": "user", "content": "What is 7 + 8?"}
SYSTEM = {"role": "system", "content": "Think first."}


def _cfg(*overrides):
    return validate(compose_config(TINY_LM + list(overrides)))


def test_the_rationalisation_prompt_gives_the_answer_as_a_hint_in_a_copy():
    conversation = [SYSTEM, USER]
    hinted = si.rationalization(conversation, "15", "{prompt}\nHint: the answer is {answer}.")
    assert hinted == [SYSTEM, {"role": "user", "content": "What is 7 + 8?\nHint: the answer is 15."}]
    assert conversation == [SYSTEM, USER]  # the original (the kept row's prompt) is untouched
    chat = [USER, {"role": "assistant", "content": "15"}, {"role": "user", "content": "And 1 + 1?"}]
    assert si.rationalization(chat, "2", "{prompt} (it is {answer})")[-1]["content"] == "And 1 + 1? (it is 2)"
    assert si.rationalization(chat, "2", "{prompt} (it is {answer})")[0] == USER  # only the last user turn


def test_the_final_answer_follows_the_last_marker_else_it_is_the_last_line():
    assert si.final_answer("7 + 8: add the units.\nAnswer: 15", "Answer:") == "15"
    assert si.final_answer("Answer: 3. Then again, Answer: 15 ", "Answer:") == "15"
    assert si.final_answer("7 and 8 make\n15\n\n", "Answer:") == "15"
    assert si.final_answer("15", None) == "15" and si.final_answer("  ", "Answer:") == ""


def test_the_tasks_checker_recomputes_embedded_answers_else_reads_the_reference():
    assert si.task_checker("What is 7 + 8?", " 15 ", "wrong reference") is True  # solved from the prompt
    assert si.task_checker("What is 7 + 8?", "16", "16") is False
    assert si.task_checker("Name a colour.", "red  ", "red") is True and not si.task_checker("Name a colour.", "b", "r")
    assert si.load_checker(None) is si.task_checker
    assert si.load_checker("tests.star_checker:by_kind")("What is 7 + 8?", "x", "y") is False


@pytest.mark.parametrize(
    "value,says",
    [
        ("tests.star_checker", "not of the form module:function"),
        ("tests.no_such_module:check", "cannot be imported"),
        ("tests.star_checker:missing", "names nothing callable"),
        ("tests.star_checker:NOT_A_FUNCTION", "names nothing callable"),
    ],
)
def test_a_checker_that_cannot_be_imported_is_refused_before_any_work_naming_the_key(value, says):
    with pytest.raises(ConfigError) as err:
        _cfg("method=star", f"method.checker={value}")
    assert err.value.key == "method.checker" and says in str(err.value) and value in str(err.value)


def test_other_star_and_critique_settings_are_checked():
    with pytest.raises(ConfigError) as err:
        _cfg("method=star", "method.hint_template='{prompt} only'")
    assert err.value.key == "method.hint_template"
    with pytest.raises(ConfigError) as err:
        _cfg("method=critique_revise", "method.principles=[]")
    assert err.value.key == "method.principles"
    with pytest.raises(ConfigError) as err:
        _cfg("method=critique_revise", "method.revise_template='Fix {answer}'")
    assert err.value.key == "method.revise_template" and "{critique}" in str(err.value)


def test_critique_and_revision_prompts_hold_the_request_answer_principles_and_critique():
    cfg = _cfg("method=critique_revise").method
    asked = si.critique([SYSTEM, USER], "16", ["Be right.", "Be brief."], cfg.critique_template)
    assert asked[0] == SYSTEM and len(asked) == 2
    assert "Request: What is 7 + 8?\nAnswer: 16\n" in asked[1]["content"]
    assert "1. Be right.\n2. Be brief." in asked[1]["content"]
    revise = si.revision([USER], "16", "Wrong: 15.", cfg.revise_template)[0]["content"]
    assert revise.startswith("Request: What is 7 + 8?\nAnswer: 16\nCritique: Wrong: 15.\n")


@pytest.mark.parametrize("restart", [False, True])
def test_star_stages_rounds_and_their_budget(restart):
    cfg = _cfg("method=star", "method.rounds=3", "method.sft_share=0.4", f"method.restart={restart}")
    stages = build_star(cfg.method)
    assert [s.name for s in stages] == ["sft", "star_gen1", "round1", "star_gen2", "round2", "star_gen3", "round3"]
    gens = [s for s in stages if not s.trains]
    assert [s.generation.generator for s in gens] == ["student", "round1", "round2"]
    assert [s.student.model for s in gens] == ["student", "round1", "round2"]  # the writer: the last round's model
    rounds = [s for s in stages if s.name.startswith("round")]
    assert [s.student.copy_of for s in rounds] == (["student"] * 3 if restart else ["student", "round1", "round2"])
    assert [s.data.options.source for s in rounds] == ["star_gen1", "star_gen2", "star_gen3"]
    assert all(s.produces and s.group == "round" for s in rounds)
    if not restart:  # no sft stage: round 1 builds the round-0 student again (a resumed run never made it)
        plain = build_star(_cfg("method=star", "method.rounds=2", "method.sft_share=0").method)
        assert [(s.student.build, s.student.copy_of, s.student.seed_offset) for s in plain if s.trains] == [
            ("student", None, 0),
            ("copy", "round1", 2),
        ]
    trained = [s for s in stages if s.trains]
    split_budget(_cfg("train.max_steps=100"), trained, 128)  # generation stages stay outside it
    assert [s.budget.max_steps for s in trained] == [40, 20, 20, 20]


def test_critique_revise_is_generate_then_distill_on_the_revisions():
    generate, distill = build_critique_revise(_cfg("method=critique_revise").method)
    assert generate.generation.pipeline == "critique_revise" and not generate.trains
    assert generate.generation.generator is None  # the run's teacher writes (an endpoint, or the teacher model)
    generate, _ = build_critique_revise(_cfg("method=critique_revise", "method.writer=student").method)
    assert generate.generation.generator == "student" and generate.student.model == "student"
    assert distill.data.kind == "generated" and distill.data.options.source == "generate"


class _Scripted:
    """A generating teacher that answers by a script: {user text: answer}; counts like CachedTeacher."""

    kind, root, hits, misses = "local", "nowhere", 0, 0

    def __init__(self, script):
        self.script, self.asked = script, []

    def generate(self, conversations, sampling, on_each=None):
        self.misses += len(conversations)
        self.asked += [c[-1]["content"] for c in conversations]
        return [[Completion(self.script.get(c[-1]["content"], ""))] for c in conversations]

    def describe(self):
        return "scripted"


def test_star_keeps_right_answers_and_rationalised_failures_under_their_original_prompt(monkeypatch, tmp_path):
    import datasets

    from distillkit.stages.generation import self_improve
    from distillkit.tasks.causal_lm.task import CausalLM
    from distillkit.tasks.splits import TaskData

    cfg = _cfg("method=star")
    train = datasets.Dataset.from_dict(
        {"prompt": ["What is 7 + 8?", "What is 2 + 2?", "What is 1 + 1?"], "response": ["15", "4", "2"]}
    )
    hint = "\nHint: the answer is {a}."
    writer = _Scripted(
        {
            "What is 7 + 8?": "7 and 8.\nAnswer: 15",  # right at once
            "What is 2 + 2?": "Answer: 5",  # wrong, then right with the hint
            "What is 2 + 2?" + hint.format(a=4): "2 and 2 make 4.\nAnswer: 4",
            "What is 1 + 1?": "Answer: 3",  # wrong, and wrong again with the hint
            "What is 1 + 1?" + hint.format(a=2): "Answer: 11",
        }
    )
    monkeypatch.setattr(self_improve, "generating_teacher", lambda ws, stage=None: writer)
    stage = next(s for s in build_star(cfg.method) if not s.trains)  # star_gen1
    ws = types.SimpleNamespace(
        cfg=cfg, run_dir=tmp_path, plan=types.SimpleNamespace(kind=CausalLM(), task=TaskData(train, train, [], False))
    )
    record = self_improve.star(stage, ws, tmp_path / "out")
    g = record["generation"]
    assert (g["correct"], g["accuracy"], g["rationalization_attempts"], g["rationalized"]) == (1, 0.3333, 2, 1)
    assert (g["kept"], g["rejected_by"], g["completions_requested"]) == (2, {"wrong_after_hint": 1}, 5)
    rows = [__import__("json").loads(line) for line in (tmp_path / "out" / "train.jsonl").read_text().splitlines()]
    assert [(r["prompt"], r["response"]) for r in rows] == [
        ("What is 7 + 8?", "7 and 8.\nAnswer: 15"),
        ("What is 2 + 2?", "2 and 2 make 4.\nAnswer: 4"),  # the hinted rationale, no hint
    ]
    assert sum("Hint:" in a for a in writer.asked) == 2  # the hint was shown, on rationalisation only
