"""The printed report lists every stage of a run: its budget, time and final loss terms; its speed rows
carry their spread and say how they were measured; the W&B summary holds every reported number (the W&B log
line that says why a run is offline: tests/integration/test_report.py)."""

from distillkit.config.schema import validate
from distillkit.report import budget_section, format_table, stage_line, summary_for_wandb
from tests.conftest import TINY, compose_config


def test_stage_lines_say_what_each_stage_did():
    assert stage_line({"name": "teacher_prep", "cached": True, "cache_dir": "/c/t"}) == "teacher_prep   cached (/c/t)"
    line = stage_line(
        {
            "name": "intermediate",
            "steps": 750,
            "wall_time_s": 61.4,
            "resumed_from": None,
            "final_loss_terms": {"embedding": 0.0012345, "hidden": 0.25},
        }
    )
    assert line == "intermediate   750 steps · 61 s · embedding=0.001234 hidden=0.25"
    resumed = stage_line(
        {"name": "prediction", "steps": 6, "wall_time_s": 2.0, "resumed_from": "done", "final_loss_terms": {}}
    )
    assert resumed == "prediction     6 steps · 2 s · resumed"


SPEED = {
    "device": "cpu",
    "threads": 1,
    "clock": "thread_cpu",
    "repeats": 5,
    "warmup": 2,
    "latency_examples": 20,
    "throughput_batches": 2,
    "batch_size": 128,
    "spread": "half the min-max range of the repetitions, relative to their median",
}


def results(speed=SPEED):
    model = {
        "accuracy": 0.7,
        "f1_macro": 0.69,
        "params": 1000,
        "latency_ms": 5.5,
        "latency_ms_spread": 0.031,
        "throughput_samples_s": 400.0,
        "throughput_samples_s_spread": 0.02,
    }
    return {
        "run": {"teacher": "t", "student": "s", "method": "kd", "data": "synthetic", "seed": 1, "wall_time_s": 9},
        "task": {"eval_examples": 64},
        "teacher": model,
        "student": {**model, "latency_ms": 1.9},
        "comparison": {
            "retention": 1.0,
            "compression": 2.5,
            "agreement": 0.9,
            "kl_to_teacher": 0.1,
            "latency_speedup": 2.9,
            "latency_speedup_spread": 0.04,
            "speedup": 3.1,
            "speedup_spread": 0.123,
        },
        "speed": speed,
        "stages": [],
    }


def test_speed_rows_show_the_spread_and_how_speed_was_measured():
    lines = format_table(results()).splitlines()
    latency = next(line for line in lines if line.startswith("latency"))
    assert "5.50 (±3%)" in latency and "1.90 (±3%)" in latency and "speed-up 2.90× (±4%)" in latency
    assert "speed-up 3.10× (±12%)" in next(line for line in lines if line.startswith("throughput"))
    note = next(line for line in lines if line.startswith("speed:"))
    assert "1 CPU thread, thread CPU time" in note and "median of 5 repetitions" in note
    assert "± half their range, relative to the median" in note
    gpu = dict(SPEED, device="cuda", threads=None, clock="wall")
    gpu_note = next(line for line in format_table(results(gpu)).splitlines() if line.startswith("speed:"))
    assert "cuda, wall time (CPU threads do not matter)" in gpu_note


def test_wandb_summary_holds_the_spreads_and_the_measurement():
    flat = summary_for_wandb(results())
    assert flat["comparison/latency_speedup_spread"] == 0.04 and flat["student/latency_ms_spread"] == 0.031
    assert flat["speed/threads"] == 1 and flat["speed/repeats"] == 5 and flat["speed/clock"] == "thread_cpu"


def test_stage_lines_and_wandb_summary_say_whether_the_teacher_was_cached():
    cached = {
        "used": True,
        "reason": "r",
        "entry": "/c/teacher_outputs/k",
        "size_bytes": 320_512,
        "built": False,
        "build_s": 0.0,
        "saved_s": 31.4,
        "precision": {"logits": "fp32", "features": "fp16"},
    }
    stage = {
        "name": "distill",
        "steps": 750,
        "wall_time_s": 35.2,
        "resumed_from": None,
        "final_loss_terms": {},
        "teacher_cache": cached,
    }
    assert stage_line(stage) == "distill        750 steps · 35 s · teacher outputs cached (0.3 MB, reused, saved ~31 s)"
    built = dict(cached, built=True, build_s=9.2, size_bytes=2.5e9, saved_s=-3.0)
    assert "(2.50 GB, built in 9 s, saved ~-3 s)" in stage_line(dict(stage, teacher_cache=built))
    online = {"used": False, "reason": "online augmentation (mixup) changes the inputs at every step"}
    assert stage_line(dict(stage, teacher_cache=online)).endswith(
        "· teacher online (online augmentation (mixup) changes the inputs at every step)"
    )
    flat = summary_for_wandb(dict(results(), stages=[stage]))
    assert flat["stages/distill/teacher_cache_used"] is True and flat["stages/distill/teacher_cache_saved_s"] == 31.4
    assert flat["stages/distill/teacher_cache_size_bytes"] == 320_512


def _stage(name, steps, share, examples, forwards, wall):
    return {
        "name": name,
        "cached": False,
        "steps": steps,
        "share": share,
        "examples": examples,
        "teacher_forwards": forwards,
        "wall_time_s": wall,
        "resumed_from": None,
        "final_loss_terms": {},
    }


def test_budget_section_adds_up_the_stages_and_sets_teacher_prep_apart():
    cfg = validate(compose_config(TINY + ["train.max_steps=-1", "train.epochs=2"]))  # 256 examples, batch 16
    stages = [
        {"name": "teacher_prep", "cached": True, "steps": 0, "wall_time_s": 0.0},
        _stage("intermediate", 16, 0.5, 256, 256, 3.25),
        _stage("prediction", 16, 0.5, 256, 0, 1.5),  # teacher outputs read from a cache built by another run
    ]
    budget = budget_section(cfg, 256, stages)
    assert (budget["planned_steps"], budget["steps_per_epoch"], budget["pinned"]) == (32, 16, [])
    assert budget["total"] == {"steps": 32, "examples": 512, "teacher_forwards": 256, "wall_time_s": 4.75}
    assert [r["name"] for r in budget["stages"]] == ["intermediate", "prediction"]
    assert budget["teacher_prep"]["cached"] is True
    pinned = budget_section(cfg, 256, [_stage("general", 40, None, 640, 640, 9.0)] + stages[1:])
    assert pinned["pinned"] == ["general"] and pinned["total"]["steps"] == 72 and pinned["teacher_prep"] is None
    flat = summary_for_wandb({**results(), "budget": budget, "stages": stages})
    assert flat["budget/steps"] == 32 and flat["budget/examples"] == 512 and flat["budget/planned_steps"] == 32
    assert flat["stages/intermediate/share"] == 0.5 and flat["stages/prediction/teacher_forwards"] == 0
    table = format_table({**results(), "budget": budget, "stages": stages})
    assert "budget: 32 optimizer steps (planned 32) · 512 examples · 256 teacher forwards · 5 s" in table
    assert "intermediate   16 steps (50% of the budget) · 3 s" in table


def test_self_improvement_generation_lines_show_accuracy_and_revisions():
    base = {"kept": 20, "rejected": 12, "completions_requested": 44, "cached_hits": 0, "paid": 44}
    star = {"pipeline": "star", "writer": "round1", "accuracy": 0.5, "rationalized": 4, **base}
    line = stage_line({"name": "star_gen2", "wall_time_s": 3.0, "generation": star})
    assert "round1 right on 50.0% of the prompts before rationalisation, 4 rationalised" in line
    assert "outside the budget" in line
    revise = {"pipeline": "critique_revise", "revised": 8, "unchanged": 12, **base}
    line = stage_line({"name": "generate", "wall_time_s": 3.0, "generation": revise})
    assert "8 revised, 12 unchanged" in line
