"""teacher=openai against a real HTTP server (``scripts/openai_stub_server.py``, started in a thread by the
``openai_stub`` fixture): retries with back-off on 429, 5xx and time-outs; the completion cache that keeps a rerun
from paying twice; each pre-flight error as one paragraph naming the key, the value and the fix."""

from __future__ import annotations

import pytest

from distillkit.config.endpoint import EndpointConfig, SamplingSettings
from distillkit.errors import ConfigError
from distillkit.teachers import endpoint
from distillkit.teachers.generating import CachedTeacher

ADD, REVERSE = "What is 7 + 8?", "Reverse the list: pasta dull ferry"


def conv(prompt: str) -> list[dict]:
    return [{"role": "user", "content": prompt}]


def config(server, **kw) -> EndpointConfig:
    return EndpointConfig(**{"base_url": server.url, "model": "stub", "api_key_env": None, "timeout": 1.0, **kw})


def test_429_500_and_a_timeout_are_retried_until_an_answer(openai_stub):
    server = openai_stub(fail_first=[429, 500, "timeout"], timeout_s=2.0)
    teacher = endpoint.EndpointTeacher(config(server, timeout=0.5, max_retries=3, concurrency=1))
    out = teacher.generate([conv(ADD)], SamplingSettings())
    assert [c.text for c in out[0]] == ["15"]
    assert [c.status for c in server.calls] == [429, 500, -1, 200]  # -1: the request that hung past the timeout


def test_retries_run_out_into_one_paragraph(openai_stub):
    server = openai_stub(fail_first=[503, 503, 503])
    teacher = endpoint.EndpointTeacher(config(server, max_retries=2))
    with pytest.raises(ConfigError) as err:
        teacher.generate([conv(ADD)], SamplingSettings())
    assert err.value.key == "teacher.endpoint" and "after 2 retries" in str(err.value) and "503" in str(err.value)
    assert "nothing is paid twice" in err.value.fix and len(server.calls) == 3


def test_the_cache_answers_a_second_time_without_a_call(openai_stub, tmp_path):
    server = openai_stub()
    sampling = SamplingSettings(n=2, logprobs=True, top_logprobs=1)
    first = CachedTeacher(endpoint.EndpointTeacher(config(server)), tmp_path)
    answers = first.generate([conv(ADD), conv(REVERSE)], sampling)
    assert [[c.text for c in a] for a in answers] == [["15", "15"], ["ferry dull pasta"] * 2]
    assert answers[1][0].logprobs[0]["token"] == "ferry" and len(server.calls) == 2 and first.misses == 2
    again = CachedTeacher(endpoint.EndpointTeacher(config(server, base_url=server.url + "/")), tmp_path)  # a rerun
    seen = []
    assert again.generate([conv(REVERSE), conv(ADD)], sampling, lambda i, a: seen.append(i)) == answers[::-1]
    assert len(server.calls) == 2 and (again.hits, again.misses) == (2, 0) and sorted(seen) == [0, 1]
    again.generate([conv(ADD)], SamplingSettings(temperature=0.7))  # other settings: another completion
    assert len(server.calls) == 3


def test_check_passes_and_lists_the_models(openai_stub, monkeypatch):
    server = openai_stub(models=("stub", "other"), api_key="sk-test-123")
    monkeypatch.setenv("STUB_KEY", "sk-test-123")
    assert endpoint.check(config(server, api_key_env="STUB_KEY")) == ["stub", "other"]


def test_check_names_an_unset_key_variable(openai_stub, monkeypatch):
    server = openai_stub(api_key="sk-test-123")
    monkeypatch.delenv("STUB_KEY", raising=False)
    with pytest.raises(ConfigError) as err:
        endpoint.check(config(server, api_key_env="STUB_KEY"))
    assert (err.value.key, err.value.value) == ("teacher.endpoint.api_key_env", "STUB_KEY")
    assert "not set" in str(err.value) and "export STUB_KEY=" in err.value.fix and server.model_lists == 0


def test_check_names_a_refused_key_without_echoing_it(openai_stub, monkeypatch):
    server = openai_stub(api_key="sk-right")
    monkeypatch.setenv("STUB_KEY", "sk-wrong-secret")
    with pytest.raises(ConfigError) as err:
        endpoint.check(config(server, api_key_env="STUB_KEY"))
    assert err.value.key == "teacher.endpoint.api_key_env" and "401" in str(err.value)
    assert "sk-wrong-secret" not in str(err.value)


def test_check_says_once_that_the_endpoint_is_unreachable():
    from scripts.openai_stub_server import free_port

    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    with pytest.raises(ConfigError) as err:
        endpoint.check(EndpointConfig(base_url=url, model="stub", api_key_env=None, check_timeout=2.0))
    assert (err.value.key, err.value.value) == ("teacher.endpoint.base_url", url)
    assert "cannot be reached" in str(err.value) and "one try" in str(err.value) and "vllm serve" in err.value.fix


def test_check_names_a_model_the_endpoint_does_not_list(openai_stub):
    server = openai_stub(models=("llama-3-8b", "qwen"))
    with pytest.raises(ConfigError) as err:
        endpoint.check(config(server, model="gpt-4o"))
    assert (err.value.key, err.value.value) == ("teacher.endpoint.model", "gpt-4o")
    assert "llama-3-8b, qwen" in str(err.value) and server.model_lists == 1


def test_a_key_pasted_as_the_variable_name_is_refused_unechoed():
    with pytest.raises(ConfigError) as err:
        EndpointConfig(model="m", api_key_env="sk-proj-abcdefghijklmnop0123456789")
    assert err.value.key == "teacher.endpoint.api_key_env" and "sk-proj" not in str(err.value)
