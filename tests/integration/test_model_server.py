"""``scripts/openai_stub_server.py --model-path``: a real local causal LM (a tiny Llama saved as a checkpoint) behind
the chat-completions API, reached with the ``openai`` client as ``teacher=openai`` reaches vLLM: its greedy answer
is the model's own, ``max_tokens`` cuts it (``finish_reason`` length), ``n`` gives that many answers, the log-probs
are the model's, and requests in flight together are generated as one batch."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from tests.integration.test_causal_lm import _saved_decoder

PROMPT = "add 3 and 4"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from scripts.openai_stub_server import Behaviour, StubServer

    path = tmp_path_factory.mktemp("served") / "llama"
    _saved_decoder(path, layers=2)
    with StubServer(Behaviour(models=("llama",), model_path=str(path), model_batch=4)) as server:
        yield server, path


@pytest.fixture(scope="module")
def client(served):
    openai = pytest.importorskip("openai")
    return openai.OpenAI(base_url=served[0].url, api_key="unused", max_retries=0, timeout=60)


def _ask(client, **settings):
    return client.chat.completions.create(model="llama", messages=[{"role": "user", "content": PROMPT}], **settings)


def test_a_greedy_answer_is_the_models_own_cut_at_max_tokens(served, client):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, path = served
    tok, model = AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path).eval()
    ids = tok(PROMPT + "\n", return_tensors="pt")  # no chat template: the turns' contents, as a plain completion
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=5, do_sample=False, pad_token_id=tok.pad_token_id)
    new = out[0, ids["input_ids"].shape[1] :].tolist()
    assert tok.eos_token_id not in new  # the random model runs on: the cap is what stops it
    reply = _ask(client, max_tokens=5, temperature=0)
    assert reply.choices[0].message.content == tok.decode(new, skip_special_tokens=True)
    assert reply.choices[0].finish_reason == "length"
    assert len(_ask(client, max_tokens=3, n=2, temperature=1.0, seed=0).choices) == 2


def test_log_probs_are_the_models_distribution_at_each_position(served, client):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, path = served
    tok, model = AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path).eval()
    reply = _ask(client, max_tokens=4, temperature=0, logprobs=True, top_logprobs=3)
    content = reply.choices[0].logprobs.content
    assert len(content) == 4
    ids = tok(PROMPT + "\n", return_tensors="pt")
    with torch.no_grad():  # the same greedy answer's ids (decoding and encoding again need not give them back)
        out = model.generate(**ids, max_new_tokens=4, do_sample=False, pad_token_id=tok.pad_token_id)
        logp = model(out).logits[0].log_softmax(-1)
    prompt = ids["input_ids"][0].tolist()
    for step, entry in enumerate(content):
        position = logp[len(prompt) - 1 + step]
        assert entry.logprob == pytest.approx(position.max().item(), abs=1e-4)  # greedy: the top token
        tops = [t.logprob for t in entry.top_logprobs]
        assert len(tops) == 3 and tops == sorted(tops, reverse=True)
        assert tops == pytest.approx(position.topk(3).values.tolist(), abs=1e-4)
        assert entry.top_logprobs[0].token == entry.token


def test_requests_in_flight_together_are_generated_as_one_batch(served, client):
    server, _ = served
    before = len(server.model.batches)
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda _: _ask(client, max_tokens=4, temperature=0), range(8)))
    assert all(r.choices[0].finish_reason in ("stop", "length") for r in replies)
    sizes = server.model.batches[before:]
    assert sum(sizes) == 8 and max(sizes) > 1 and max(sizes) <= 4, sizes


def test_blackbox_sft_learns_the_served_teachers_top_log_probs(served, tmp_path, caplog):
    """Grey-box end to end: the served model answers with its top log-probs, a student sharing its tokenizer learns
    the answers as the teacher's own tokens, and every row carries the teacher's alternatives as KD targets."""
    import json

    from distillkit.config.schema import validate
    from distillkit.run import RunContext, run
    from tests.conftest import TINY_LM, compose_config

    caplog.set_level("INFO", logger="distillkit")
    server, _ = served
    student = tmp_path / "student"
    _saved_decoder(student, layers=1)  # the served model's tokenizer, a student of its own
    overrides = [
        "data.lm_synthetic.n_train=24",
        "method=blackbox_sft",
        "method.kd_weight=0.5",
        "method.drop_truncated=false",
        "teacher=openai",
        f"teacher.endpoint.base_url={server.url}",
        "teacher.endpoint.model=llama",
        "teacher.endpoint.api_key_env=null",
        "teacher.sampling.max_tokens=4",
        "teacher.sampling.logprobs=true",
        "teacher.sampling.top_logprobs=3",
        "student=hub",
        f"student.path={student}",
        f"cache_dir={tmp_path / 'cache'}",
    ]
    cfg = validate(compose_config(TINY_LM + overrides))
    out = tmp_path / "run"
    out.mkdir()
    results = run(cfg, RunContext(output_dir=out, job_name="test", overrides=tuple(overrides), resume=False))
    assert results["status"] == "complete" and results["stages"][1]["steps"] == 4
    rows = [json.loads(line) for line in (out / "generated" / "generate" / "train.jsonl").read_text().splitlines()]
    assert len(rows) == 24 and all(len(r["logprobs"]) == 4 and len(r["logprobs"][0]["top_logprobs"]) == 3 for r in rows)
    assert "grey-box targets: 24 of 24 rows carry the teacher's top log-probs" in caplog.text
    assert "0.5·KL_topk(p̂_t ‖ p_s) + 0.5·NTP(y, p_s)" in json.dumps(results, ensure_ascii=False)
