"""The one find-or-build helper of the content-addressed cache (``store.find_or_build``): where an entry lives, who
builds it, what a failed or declined build leaves, and the progress line of a long build."""

from __future__ import annotations

import json
import logging
import re
import threading
import time

import pytest

from distillkit import dist, store

SPEC = {"what": "a test entry", "n": 3}


def write_one(tmp):
    (tmp / "data.txt").write_text("made")
    return "value"


def listing(root, kind="things") -> list[str]:
    return sorted(p.name for p in (root / kind).iterdir())


def test_an_entry_is_built_once_where_its_key_says_then_found(tmp_path):
    calls = []

    def build(tmp):
        calls.append(tmp)
        return write_one(tmp)

    first = store.find_or_build(tmp_path, "things", SPEC, build)
    key = store.entry_key(SPEC)
    assert first.path == tmp_path / "things" / key == store.entry_dir(tmp_path, "things", SPEC)
    assert first.built and first.value == "value" and first.seconds > 0 and first.problem is None
    assert (first.path / "data.txt").read_text() == "made"
    assert json.loads((first.path / "spec.json").read_text()) == SPEC
    assert calls[0].name.startswith(f".tmp-{key}-")  # built beside the entry, then renamed
    assert listing(tmp_path) == sorted([key, f"{key}.lock"])

    again = store.find_or_build(tmp_path, "things", SPEC, build)
    assert len(calls) == 1  # not rebuilt
    assert again.path == first.path and not again.built and again.value is None and again.seconds == 0.0


@pytest.mark.parametrize("every_rank", [False, True])
def test_a_second_builder_waits_on_the_lock_and_reuses_the_entry(tmp_path, every_rank, caplog):
    started, release, calls, results = threading.Event(), threading.Event(), [], {}

    def slow(tmp):
        calls.append(1)
        started.set()
        assert release.wait(30)
        return write_one(tmp)

    def job(name):
        results[name] = store.find_or_build(tmp_path, "things", SPEC, slow, every_rank=every_rank)

    first = threading.Thread(target=job, args=("first",))
    first.start()
    assert started.wait(30)
    second = threading.Thread(target=job, args=("second",))
    with caplog.at_level(logging.INFO, logger="distillkit"):
        second.start()
        deadline = time.time() + 30
        while "Waiting for another run" not in caplog.text and time.time() < deadline:
            time.sleep(0.02)
        assert "second" not in results  # still waiting for the first builder's lock
        release.set()
        first.join(30)
        second.join(30)
    assert len(calls) == 1
    assert results["first"].built and not results["second"].built
    assert results["second"].path == results["first"].path and (results["first"].path / "data.txt").exists()


@pytest.mark.parametrize("every_rank", [False, True])
def test_a_failed_build_leaves_no_entry_and_no_temporary_directory(tmp_path, every_rank):
    def failing(tmp):
        (tmp / "half.txt").write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        store.find_or_build(tmp_path, "things", SPEC, failing, every_rank=every_rank)
    assert listing(tmp_path) == [f"{store.entry_key(SPEC)}.lock"]
    assert store.find_or_build(tmp_path, "things", SPEC, write_one, every_rank=every_rank).built  # a later run builds


@pytest.mark.parametrize("every_rank", [False, True])
def test_a_declined_build_says_why_and_leaves_nothing(tmp_path, every_rank):
    def declining(tmp):
        (tmp / "half.txt").write_text("half")
        raise store.Declined("the outputs overflow fp16")

    entry = store.find_or_build(tmp_path, "things", SPEC, declining, every_rank=every_rank)
    assert entry.problem == "the outputs overflow fp16" and not entry.built and not entry.path.exists()
    assert listing(tmp_path) == [f"{store.entry_key(SPEC)}.lock"]


def test_every_rank_builds_in_the_shared_building_directory_and_clears_a_dead_runs_leftovers(tmp_path):
    key = store.entry_key(SPEC)
    leftover = tmp_path / "things" / f".building-{key}"
    leftover.mkdir(parents=True)
    (leftover / "stale.npy").write_text("from a run that died")
    seen = []

    def build(tmp):
        seen.append((tmp.name, sorted(p.name for p in tmp.iterdir())))
        return write_one(tmp)

    entry = store.find_or_build(tmp_path, "things", SPEC, build, every_rank=True)
    assert seen == [(f".building-{key}", [])]  # every rank can name it; emptied first
    assert entry.built and sorted(p.name for p in entry.path.iterdir()) == ["data.txt", "spec.json"]
    assert listing(tmp_path) == sorted([key, f"{key}.lock"])


def test_under_a_process_group_rank_0_builds_and_the_others_wait_at_the_barrier(tmp_path, monkeypatch):
    events = []
    monkeypatch.setattr(dist, "initialized", lambda: True)
    monkeypatch.setattr(dist, "barrier", lambda: events.append("barrier"))
    monkeypatch.setattr(dist, "is_main", lambda: False)
    monkeypatch.setattr(store, "locked", lambda final: pytest.fail("only rank 0 takes the lock"))

    other = store.find_or_build(tmp_path, "things", SPEC, lambda tmp: pytest.fail("only rank 0 builds"))
    assert events == ["barrier"] and not other.built and other.path == store.entry_dir(tmp_path, "things", SPEC)


def test_without_a_process_group_every_process_is_a_run_of_its_own(tmp_path, monkeypatch):
    """Before the ranks form a group (the plan, offline augmentation) a rank > 0 takes the lock like any run."""
    monkeypatch.setattr(dist, "is_main", lambda: False)
    assert not dist.initialized()
    assert store.find_or_build(tmp_path, "things", SPEC, write_one).built


def test_a_long_build_says_so_in_the_log_and_a_short_one_does_not(tmp_path, monkeypatch, caplog):
    key = store.entry_key(SPEC)
    with caplog.at_level(logging.INFO, logger="distillkit"):
        store.find_or_build(tmp_path, "quick", SPEC, write_one)
        assert "building" not in caplog.text

        monkeypatch.setattr(store, "PROGRESS_AFTER_S", 0.05)

        def slow(tmp):
            time.sleep(0.3)
            return write_one(tmp)

        store.find_or_build(tmp_path, "slow", SPEC, slow)
    said, took = [r.getMessage() for r in caplog.records][-2:]
    assert said == f"building slow {key} ..." and re.fullmatch(rf"\.\.\. built slow {key} in \d+ s", took)
