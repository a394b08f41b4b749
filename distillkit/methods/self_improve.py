"""Self-improvement methods of the causal-LM task: ``star`` (Zelikman et al. 2022, the Self-Taught Reasoner: the
student writes rationales, keeps the ones that reach the right answer, and learns them, round after round) and
``critique_revise`` (Constitutional AI's supervised stage, Bai et al. 2022: the teacher answers, critiques its answer
against written principles, revises it, and the student learns the revisions). Both are generation stages
(``stages/generation/self_improve.py``: outside the optimizer budget, every completion cached) followed by NTP training
stages on what they wrote (the ``generated`` view)."""

from __future__ import annotations

from distillkit.config import llm as lc
from distillkit.methods.common import stage
from distillkit.methods.llm import learn_generated, ntp_term
from distillkit.recipe.objective import Dims, Objective
from distillkit.recipe.stage import DataView, GeneratedOptions, GenerationSpec, Stage, StudentSpec


def build_star(cfg: lc.StarMethodConfig, dims: Dims | None = None) -> list[Stage]:
    """[sft →] (star_gen<r> → round<r>) for r = 1..rounds. star_gen<r>: the current student (round 0: the starting
    student, after sft when sft_share > 0) writes for every training prompt; the rationales that reach the checker's
    answer are kept, the failures rationalised with the answer as a hint (outside the budget). round<r>: L = NTP on the
    kept rows, an equal share of the budget (what sft_share leaves); with ``restart`` it fine-tunes the round-0
    student anew (the paper), else it continues the last round's."""
    stages: list[Stage] = []
    if cfg.sft_share > 0:
        sft = stage("sft", Objective(name="sft", terms=[ntp_term(1.0)], needs_teacher=False))
        sft.budget.share = cfg.sft_share
        stages.append(sft)
    writer = "student"
    for r in range(1, cfg.rounds + 1):
        generate = Stage(
            f"star_gen{r}",
            None,
            teacher=None,
            student=StudentSpec(writer),  # the model that writes: the student as it is after round r − 1
            generation=GenerationSpec("star", cfg.system_prompt, True, generator=writer, options=cfg),
        )
        objective = Objective(
            name=f"{cfg.name}/round{r}",
            terms=[ntp_term(1.0)],
            needs_teacher=False,
            notes=f"ŷ: the student's own rationales that reach the checker's answer (round {r}"
            + (", rationalised with the answer as a hint)" if cfg.rationalize else ")")
            + ("; restarts from the round-0 student" if cfg.restart else "; continues the last round"),
        )
        base = "student" if cfg.restart else writer
        # the round-0 student with no sft stage is built again (same build, same seed: the same weights) rather than
        # copied: a resumed run that skips star_gen1 never made the model that stage wrote with
        model = (
            StudentSpec(f"round{r}", "copy", seed_offset=r, copy_of=base)
            if cfg.sft_share > 0 or base != "student"
            else StudentSpec(f"round{r}")
        )
        train = stage(
            f"round{r}",
            objective,
            student=model,
            data=DataView("generated", options=GeneratedOptions(f"star_gen{r}")),
            group="round",
            produces=True,
        )
        stages += [generate, train]
        writer = f"round{r}"
    return stages


def build_critique_revise(cfg: lc.CritiqueReviseMethodConfig, dims: Dims | None = None) -> list[Stage]:
    """generate → distill: the writer (the teacher, or the student itself) answers, critiques its answer against the
    principles and revises it (``generate``: outside the budget); L = NTP(ŷ_revised, p_s) on the revisions
    (``distill``: the whole budget)."""
    writer = None if cfg.writer == "teacher" else "student"  # None: the run's generating teacher
    generate = Stage(
        "generate",
        None,
        teacher=None,
        student=StudentSpec("student"),
        generation=GenerationSpec(
            "critique_revise", cfg.system_prompt, cfg.drop_truncated, generator=writer, options=cfg
        ),
    )
    written = f"the teacher's revisions after critiquing its answers against {len(cfg.principles)} principles"
    return [generate, learn_generated(cfg.name, written, cfg)]
