"""The printed report lists every stage of a run: its budget, time and final loss terms."""

from distillkit.report import stage_line


def test_stage_lines_say_what_each_stage_did():
    assert stage_line({"name": "teacher_prep", "cached": True, "cache_dir": "/c/t"}) == "teacher_prep   cached (/c/t)"
    line = stage_line({"name": "intermediate", "steps": 750, "wall_time_s": 61.4, "resumed_from": None,
                       "final_loss_terms": {"embedding": 0.0012345, "hidden": 0.25}})
    assert line == "intermediate   750 steps · 61 s · embedding=0.001234 hidden=0.25"
    resumed = stage_line({"name": "prediction", "steps": 6, "wall_time_s": 2.0, "resumed_from": "done",
                          "final_loss_terms": {}})
    assert resumed == "prediction     6 steps · 2 s · resumed"
