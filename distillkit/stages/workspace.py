"""The run context every stage runs in: configuration, run directory, device, W&B run, resume, and the run's
models, teacher sources and data views, each made when a stage first asks for it.

Models are kept by name (``StudentSpec.model``): ``teacher`` (the prepared or loaded teacher), ``student``,
and whatever a method's stages name (``gen0``, ``assistant6``, ``round1`` ...). A later stage's teacher
source can name an earlier stage's model (``stage:<name>``, ``ensemble``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from distillkit.config.schema import RunConfig
from distillkit.models import loading as model_lib
from distillkit.recipe.stage import Stage

if TYPE_CHECKING:  # types only: the plan is made above the stages (import-linter skips type-checking imports)
    import datasets

    from distillkit.augment.offline import AugmentedSet
    from distillkit.plan import Plan
    from distillkit.teachers.sources import TeacherSource

log = logging.getLogger("distillkit")


@dataclass
class Workspace:
    cfg: RunConfig
    plan: Plan
    run_dir: Path
    train_set: datasets.Dataset  # the tokenised training split
    eval_set: datasets.Dataset | None
    collator: Callable[[list[dict]], dict[str, torch.Tensor]]  # the task's batch collator
    wandb_run: Any = None  # a wandb Run on rank 0 with logger=wandb, else None
    resume: bool = False
    augmented: AugmentedSet | None = None  # the run's offline augmented examples
    models: dict[str, torch.nn.Module] = field(default_factory=dict)
    _pseudo_filtered: bool = False
    _sources: dict[str, TeacherSource | None] = field(default_factory=dict)  # by stage name
    _data: dict[tuple, datasets.Dataset] = field(default_factory=dict)  # by data-view key

    @property
    def tokenizer(self):
        return self.plan.tokenizer

    @property
    def everyone_evaluates(self) -> bool:
        """A teacher sharded over the processes runs only when every process runs it: evaluations then run on
        every process (rank 0 writes); otherwise on rank 0 alone."""
        from distillkit.teachers.sharding import is_sharded

        return is_sharded(self.models.get("teacher"))

    @property
    def use_cpu(self) -> bool:
        return self.plan.use_cpu

    # ------------------------------------------------------------------------------------ models
    def teacher(self) -> torch.nn.Module | None:
        """The run's teacher: prepared by ``teacher_prep`` (set there), or loaded as the teacher group says."""
        cfg = self.cfg
        if "teacher" not in self.models and cfg.teacher.has_model and not self.plan.prepare_teacher:
            self.models["teacher"] = model_lib.load_pretrained(
                "teacher.path",
                cfg.teacher.path,
                self.plan.teacher_config,
                cfg.teacher.revision,
                cfg.teacher.trust_remote_code,
                **self._load_args(),
            )
            self.plan.attention.switch(self.models["teacher"])
        return self.models.get("teacher")

    def model(self, stage: Stage) -> torch.nn.Module:
        """The model ``stage`` trains, made the first time a stage names it; the stage's dropout applied."""
        spec = stage.student
        if spec.model not in self.models:
            self.models[spec.model] = self._create(stage)
            if not stage.trains_teacher:  # the teacher is prepared as it is cached: with its own attention
                self.plan.attention.switch(self.models[spec.model])
        model = self.models[spec.model]
        if spec.dropout is not None:
            set_dropout(model, spec.dropout)
        return model

    def _create(self, stage: Stage) -> torch.nn.Module:
        cfg, spec = self.cfg, stage.student
        config, layers = self.plan.model_configs[spec.model]
        seed = stage.budget.seed
        identity = cfg.teacher.arch.identity_attention_layers if cfg.teacher.arch is not None else 0
        if spec.build == "teacher":
            torch.manual_seed(seed)
            if cfg.teacher.path is None:
                return model_lib.build_from_config(config, seed, identity, model_class=self.plan.kind.model_class())
            return model_lib.load_pretrained(
                "teacher.path",
                cfg.teacher.path,
                config,
                cfg.teacher.revision,
                cfg.teacher.trust_remote_code,
                **self._load_args(),
            )
        if spec.build == "copy":
            log.info("[%s] model %r starts as a copy of %r", stage.name, spec.model, spec.copy_of)
            import copy

            return copy.deepcopy(self.models[spec.copy_of])
        if spec.build == "student" and cfg.student.path is not None:
            return model_lib.load_pretrained(
                "student.path",
                cfg.student.path,
                config,
                cfg.student.revision,
                cfg.student.trust_remote_code,
                **self._load_args(),
            )
        return model_lib.derive_student(
            self.teacher() if layers is not None else None,
            config,
            layers,
            seed,
            identity,
            model_class=self.plan.kind.model_class(),
        )

    def _load_args(self) -> dict:
        """How ``load_pretrained`` loads a checkpoint for the run's task: its Auto class and its arguments."""
        return {"model_class": self.plan.kind.model_class(), **self.plan.kind.load_kwargs}

    # ----------------------------------------------------------------------------- sources, data
    def source(self, stage: Stage):
        """The stage's teacher source (one per stage, so its state lives as long as the stage)."""
        from distillkit.teachers.sources import build_source

        if stage.name not in self._sources:
            if stage.teacher is not None and stage.teacher.kind == "prepared":
                self.teacher()
            self._sources[stage.name] = build_source(stage.teacher, self.models, self.cfg.hardware.shard_teacher)
        return self._sources[stage.name]

    def train_data(self, stage: Stage):
        """The examples of the stage's data view (tokenised once per view): the training split, or the view the
        task makes (``Task.data_view``: a text file, an unlabeled pool, the teacher's responses)."""
        view = stage.data
        augmented = self.augmented is not None and view.augment and view.kind != "text_file"
        key = (
            view.kind,
            view.text_file,
            view.unlabeled,
            view.unlabeled_size,
            augmented,
            stage.teacher is None,
            view.options,
        )
        if key not in self._data:
            data = self.train_set if view.kind == "train" else self.plan.kind.data_view(self, stage)
            self._data[key] = self._with_augmented(data, stage) if augmented else data
        return self._data[key]

    def _with_augmented(self, data, stage: Stage):
        """``data`` plus the run's offline augmented examples: all of them for a stage with a teacher, those that
        keep a gold label for a stage without one. teacher_pseudo_data inputs are first filtered by the
        teacher's confidence (once, with the run's teacher)."""
        import datasets

        from distillkit.augment import offline

        pseudo = self.cfg.augmentation.get("teacher_pseudo_data")
        if pseudo is not None and not self._pseudo_filtered and stage.teacher is not None:
            offline.filter_confident(
                self.augmented,
                pseudo.min_confidence,
                self.teacher(),
                self.tokenizer,
                self.cfg.data.max_length,
                self.plan.device,
                self.cfg.hardware.eval_batch_size,
            )
            self._pseudo_filtered = True
        extra = offline.as_dataset(
            self.augmented, self.tokenizer, self.cfg.data.max_length, stage.teacher is None, data.features
        )
        if extra is None:
            return data
        log.info(
            "[%s] data view: %d examples + %d augmented%s",
            stage.name,
            len(data),
            len(extra),
            " (those with a gold label: the stage has no teacher)" if stage.teacher is None else "",
        )
        return datasets.concatenate_datasets([data, extra])


def set_dropout(model: torch.nn.Module, p: float) -> None:
    """Hidden and attention dropout of ``model`` set to ``p`` (the modules and the saved config)."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = p
    for key in ("hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "attention_dropout"):
        if hasattr(model.config, key):
            setattr(model.config, key, p)
