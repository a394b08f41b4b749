"""The black-box pipelines' pieces without a teacher: self_instruct's proposal filters (ROUGE-L near-duplicates on
hand cases, invalid tasks, the seed file's pre-flight), the answer line the evaluation reads after an explanation
trace, and the loss mask of multi-turn conversations (dialogue): exactly the assistant turns."""

from __future__ import annotations

import pytest

from distillkit.config.schema import validate
from distillkit.errors import ConfigError
from distillkit.stages.generation.pipelines import dialogue_users, judge_proposal, parse_proposal, rouge_l
from distillkit.tasks.causal_lm import generated
from distillkit.tasks.causal_lm import synthetic as lm_synthetic
from distillkit.tasks.causal_lm.evaluate import generation_scores
from distillkit.tasks.causal_lm.metrics import final_answer, rouge_l_score
from tests.conftest import TINY_LM, compose_config
from tests.unit.tasks.causal_lm.test_lm_data import CHAT, tiny_tokenizer

POOL = ["Write a short poem about the sea.", "What is 7 + 8?"]


@pytest.mark.parametrize(
    "task, reason",
    [
        ("Write a short poem about the sea.", "near_duplicate"),  # an exact duplicate: ROUGE-L 1
        ("write a  short poem about the SEA.", "near_duplicate"),  # case and spacing do not count
        ("Write a short poem about the ocean.", "near_duplicate"),  # a paraphrase: LCS 6 of 7 + 7 → 0.857 ≥ 0.7
        ("Compose a haiku describing waves at the sea.", None),  # a paraphrase: LCS 3 (a, the, sea.) → 0.4 < 0.7
        ("What is 3 + 4?", None),  # LCS 3 of 5 + 5 (what, is, +) → 0.6 < 0.7
        ("What is 7 + 9?", "near_duplicate"),  # LCS 4 of 5 + 5 → 0.8
        ("", "empty"),
        ("Draw a picture of a cat on a chair.", "invalid"),  # what a text model cannot do
        ("Summarise.", "invalid"),  # under 3 words
        ("- list three fruits", "invalid"),  # starts with punctuation
    ],
)
def test_self_instruct_rejects_near_duplicates_empty_and_invalid_tasks(task, reason):
    assert judge_proposal(task, POOL, 0.7) == reason


def test_the_rouge_l_filter_is_the_metrics_rouge_l_and_the_threshold_is_inclusive():
    a, b = "a b c d e f g h i j", "a b c d e f g x y z"  # LCS 7 of 10 + 10: exactly 0.7
    assert rouge_l(a, b) == pytest.approx(0.7) == pytest.approx(rouge_l_score(a, b).fmeasure)
    assert judge_proposal(b, [a], 0.7) == "near_duplicate" and judge_proposal(b, [a], 0.71) is None
    assert rouge_l("", "a b") == 0.0 == rouge_l("a b", "")


def test_a_proposal_is_its_first_line_without_the_task_number():
    assert parse_proposal("\n Task 4: Sort 3 1 2 please.\nTask 5: more") == "Sort 3 1 2 please."
    assert parse_proposal("   \n") == ""


def test_an_empty_or_malformed_seed_file_is_refused_before_any_work(tmp_path):
    empty = tmp_path / "seeds.jsonl"
    empty.write_text("\n")
    base = TINY_LM + ["method=blackbox_sft", "method.pipeline=self_instruct"]
    with pytest.raises(ConfigError) as err:
        validate(compose_config(base + [f"method.seed_file={empty}"]))
    assert err.value.key == "method.seed_file" and str(empty) in str(err.value) and "empty" in str(err.value)
    assert "method.seed_file=null" in err.value.fix
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "no prompt key"}\n')
    with pytest.raises(ConfigError) as err:
        validate(compose_config(base + [f"method.seed_file={bad}"]))
    assert err.value.key == "method.seed_file" and "line 1" in str(err.value)
    with pytest.raises(ConfigError) as err:
        validate(compose_config(base + [f"method.seed_file={tmp_path / 'missing.jsonl'}"]))
    assert err.value.key == "method.seed_file"


def test_the_pipeline_settings_are_checked():
    base = TINY_LM + ["method=blackbox_sft"]
    for override, key in [
        ("method.pipeline=vicuna", "method.pipeline"),
        ("method.rouge_threshold=1.5", "method.rouge_threshold"),
        ("method.turns=0", "method.turns"),
        ("method.system_prompts=[]", "method.system_prompts"),
    ]:
        with pytest.raises(ConfigError) as err:
            validate(compose_config(base + [override]))
        assert err.value.key == key


def test_the_evaluation_scores_an_explanation_traces_final_answer():
    trace = "Step by step, it gives 15.\nFinal answer: 15"
    assert (
        final_answer(trace) == "15"
        and final_answer("15") == "15"
        and final_answer("Final answer: a\nFinal answer: b") == "b"
    )
    scores = generation_scores({"predictions": [trace, "16", "15"], "references": ["15", "15", "15"]})
    assert scores["exact_match"] == pytest.approx(2 / 3)


CONV = [
    {"role": "user", "content": "What is 7 + 8?"},
    {"role": "assistant", "content": "15"},
    {"role": "user", "content": "Are you sure?"},
    {"role": "assistant", "content": "yes 15"},
]


@pytest.mark.parametrize("chat", [False, True])
def test_the_loss_mask_of_a_dialogue_covers_exactly_the_assistant_turns(chat):
    task = lm_synthetic.generate(0, 50, 20)
    tok = tiny_tokenizer(lm_synthetic.texts_for_tokenizer(task) + ["Are you sure?\nyes 15"])
    if chat:
        tok.chat_template = CHAT
    data, truncated = generated.encode_turns([CONV], tok, "{prompt}\n", 128)
    row = data[0]
    ids, labels = row["input_ids"], row["labels"]
    assert truncated == 0 and len(ids) == len(labels)
    # the labelled positions form two spans, each an answer followed by eos, and nothing else is labelled
    spans, cur = [], []
    for i, label in zip(ids, labels):
        if label == -100:
            if cur:
                spans.append(cur)
            cur = []
        else:
            assert label == i
            cur.append(i)
    spans += [cur] if cur else []
    eos = tok.eos_token_id
    assert [s[-1] for s in spans] == [eos, eos]
    assert [tok.decode(s[:-1]) for s in spans] == ["15", "yes 15"]
    # the unlabelled part is the user turns (and the template's text), the first prompt is what evaluation reads
    text = tok.decode([i for i, label in zip(ids, labels) if label == -100])
    assert "What is 7 + 8?" in text and "Are you sure?" in text and "15" not in text
    assert tok.decode(ids[: row["prompt_length"]]).endswith("<|assistant|>" if chat else "What is 7 + 8?\n")


def test_a_too_long_dialogue_keeps_its_first_answer():
    task = lm_synthetic.generate(0, 50, 20)
    tok = tiny_tokenizer(lm_synthetic.texts_for_tokenizer(task))
    full, _ = generated.encode_turns([CONV], tok, "{prompt}\n", 128)
    cut = len(full[0]["input_ids"]) - 2
    data, truncated = generated.encode_turns([CONV], tok, "{prompt}\n", cut)
    assert truncated == 1 and len(data[0]["input_ids"]) == cut
    assert data[0]["labels"][: full[0]["prompt_length"]] == [-100] * full[0]["prompt_length"]
    assert any(label != -100 for label in data[0]["labels"])


def test_dialogue_follow_ups_come_from_the_data_else_from_the_config():
    u = lambda text: {"role": "user", "content": text}  # noqa: E731
    a = {"role": "assistant", "content": "old answer"}
    chat = [u("Hi"), a, u("And then?"), a, u("Last?")]  # a chat row: all turns but its last answer
    plain = [{"role": "system", "content": "S"}, u("What is 7 + 8?")]
    assert dialogue_users([chat, plain, plain], 2, ["F1", "F2"]) == [
        ["Hi", "And then?"],
        ["What is 7 + 8?", "F2"],  # conversation 1 starts at follow-up 1
        ["What is 7 + 8?", "F1"],
    ]
    assert dialogue_users([chat], 5, ["F1"]) == [["Hi", "And then?", "Last?"]]  # the data's turns, no more
    assert dialogue_users([plain], 1, ["F1"]) == [["What is 7 + 8?"]]
