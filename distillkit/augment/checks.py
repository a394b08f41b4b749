"""The augmentation checks that need more than the config, run at plan time (``plan.make_plan``), before any
weight is loaded or trained: each names the key, the value and the fix."""

from __future__ import annotations

import inspect

from distillkit.errors import ConfigError, require


def check(cfg, plan) -> None:
    aug = cfg.augmentation
    if not aug.selected:
        return
    _check_teacher_needed(cfg, plan)
    for name in ("synonym", "token_perturbation"):
        if aug.get(name):
            _check_synonyms(cfg, getattr(aug, name).source, f"augmentation.{name}.source")
    pseudo = aug.get("teacher_pseudo_data")
    require(
        pseudo is None or pseudo.min_confidence == 0 or cfg.teacher.name != "none",
        "augmentation.teacher_pseudo_data.min_confidence",
        pseudo.min_confidence if pseudo else None,
        "filters the new inputs by the run's teacher's confidence, and this run has no teacher (teacher=none).",
        "use 0 (keep every input), or pick a teacher.",
    )
    if pseudo is not None and pseudo.source == "augment":
        _check_synonyms(cfg, "auto", "augmentation.teacher_pseudo_data.source")
    if aug.get("mlm_replace") or (pseudo is not None and pseudo.source == "mlm"):
        _check_mlm(cfg)
    if aug.get("back_translation"):
        from distillkit.augment.generate import check_model_available

        bt = aug.back_translation
        check_model_available(bt.forward, "augmentation.back_translation.forward")
        check_model_available(bt.backward, "augmentation.back_translation.backward")
    mix = "mixup" if aug.get("mixup") else "cutmix" if aug.get("cutmix") else None
    if mix is not None and getattr(aug, mix).targets == "mixed":
        _check_mixed_targets(plan, mix)
    if aug.get("mixup"):
        for name, (config, _) in plan.model_configs.items():
            if config is not None and (name != "teacher" or any(_uses_teacher(s) for s in plan.method_stages)):
                _check_embeddings(config, name, plan.kind.model_class())


def _uses_teacher(stage) -> bool:
    return stage.teacher is not None and stage.teacher.kind == "prepared"


def _check_teacher_needed(cfg, plan) -> None:
    """Options that only a teacher can use, in a run whose stages have none."""
    aug = cfg.augmentation
    if any(s.teacher is not None for s in plan.method_stages):
        return
    method = cfg.method.name
    require(
        not aug.get("consistency"),
        "augmentation",
        "consistency",
        f"matches the student to a teacher, and method={method} trains without one.",
        "pick a method with a teacher (e.g. method=kd), or drop it.",
    )
    unused = [name for name in aug.offline if not aug.keeps_labels(name)]
    require(
        not unused,
        "augmentation",
        unused[0] if unused else None,
        f"makes examples that train on the teacher "
        f"alone, and method={method} has no teacher: they would never be used.",
        "pick a method with a teacher (e.g. method=kd)"
        + (
            "."
            if unused and unused[0] == "teacher_pseudo_data"
            else ", or keep the gold labels with augmentation.keep_labels=true."
        ),
    )


def _check_synonyms(cfg, source: str, key: str) -> None:
    if source == "wordnet" or (source == "auto" and cfg.data.source != "synthetic"):
        from distillkit.augment.wordnet import check_wordnet

        check_wordnet(key)


def _check_mlm(cfg) -> None:
    from distillkit.augment.generate import check_model_available
    from distillkit.augment.ops import resolve_mlm

    opts = cfg.augmentation.get("mlm_replace")
    model = opts.model if opts is not None else "auto"
    choice = resolve_mlm(model, opts.revision if opts else None, cfg, "augmentation.mlm_replace.model")
    if choice not in ("teacher", "embedded"):
        check_model_available(choice, "augmentation.mlm_replace.model", opts.revision)


def _check_mixed_targets(plan, mix: str) -> None:
    for stage in plan.method_stages:
        spec = stage.objective.teacher_features
        if stage.teacher is not None and (spec.hidden_states or spec.attentions or spec.hooks):
            raise ConfigError(
                f"augmentation.{mix}.targets",
                "mixed",
                f"mixes the two examples' soft targets, and "
                f"stage {stage.name!r} also reads the teacher's hidden states or attentions, which "
                "cannot be mixed that way.",
                f"use augmentation.{mix}.targets=teacher (the teacher "
                "runs on the mixed input itself), or a logit method such as method=kd.",
            )


def _check_embeddings(config, name: str, model_class) -> None:
    """mixup feeds each model its own mixed input embeddings: the model (the task's ``model_class``) must expose
    them and take them."""
    import torch

    try:
        with torch.device("meta"):
            model = model_class.from_config(config)
        embeddings = model.get_input_embeddings()
        takes = "inputs_embeds" in inspect.signature(model.forward).parameters
    except (NotImplementedError, AttributeError, ValueError) as err:
        embeddings, takes = None, f"({type(err).__name__}: {err})"
    require(
        embeddings is not None and takes is True,
        "augmentation",
        "mixup",
        f"mixes input embeddings, and the "
        f"{name} model ({config.model_type}) does not expose them through get_input_embeddings() or take "
        f"inputs_embeds{'' if takes in (True, False) else ' ' + str(takes)}.",
        "use augmentation=cutmix, which mixes token ids and works with any model.",
    )
