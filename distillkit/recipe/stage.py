"""What a stage is made of (DESIGN.md, "Stages and teacher sources"): its teacher source, its student, its
objective, its data view and its budget. Method builders (``distillkit/methods/``) return lists of
``Stage``; ``stages.plan_stages`` fills in the budget the method leaves to the run; ``stages.run_stage``
trains one. Plain data: nothing here loads or trains anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from distillkit.recipe.objective import Objective

TEACHER_KINDS = ("prepared", "stage", "ema", "snapshots", "ensemble")


@dataclass(frozen=True)
class EMAOptions:
    """An ``ema`` teacher: momentum τ (cosine-scheduled to ``final_momentum`` when ``schedule="cosine"``) and DINO's
    centering momentum (None: no centering)."""

    momentum: float
    schedule: str = "constant"
    final_momentum: float = 1.0
    center_momentum: float | None = None


@dataclass(frozen=True)
class SnapshotOptions:
    """A ``snapshots`` teacher: the mean prediction of the last ``k`` snapshots, one taken ``every`` N optimizer steps
    or each ``"epoch"``."""

    k: int = 1
    every: int | str = "epoch"


@dataclass(frozen=True)
class ResponsesOptions:
    """A ``teacher_responses`` view: how the teacher decodes (beams, new tokens; None = ``task.max_new_tokens``)
    and whether the dataset's own responses are kept beside the teacher's."""

    num_beams: int = 1
    max_new_tokens: int | None = None
    keep_original: bool = False


@dataclass(frozen=True)
class GeneratedOptions:
    """A ``generated`` view: the dataset the generation stage ``source`` wrote into the run directory, plus the
    dataset's own rows with ``keep_original``."""

    source: str
    keep_original: bool = False
    greybox: bool = False  # the rows' log-probs as top-k KD targets (tasks/causal_lm/greybox.py)


@dataclass(frozen=True)
class GenerationSpec:
    """A stage that trains nothing: the run's generating teacher (an endpoint, or the teacher model through
    ``generate``) writes a dataset into ``<run>/generated/<stage>/`` that a later stage's ``generated`` view reads.
    ``pipeline``: ``responses`` (the teacher answers the training prompts), ``self_instruct``, ``explanations``,
    ``dialogue`` (``stages/generation/pipelines.py``), ``label`` (``stages/generation/labelling.py``: a classifier's
    labels), ``star`` (a model of the run writes rationales, checked and rationalised) and ``critique_revise`` (the
    writer answers, critiques, revises; both ``stages/generation/self_improve.py``); the pipeline's own settings in
    ``options``. Outside the optimizer budget, as ``teacher_prep`` is; its record counts completions requested, cached,
    kept and rejected."""

    pipeline: str = "responses"
    system_prompt: str | None = None
    drop_truncated: bool = True
    # the pipeline's own settings: a dict (self_instruct, explanations, dialogue) or the method's config (star,
    # critique_revise); None for responses and label
    options: object = None
    label: LabelSpec | None = None  # pipeline=label (classification, blackbox_label): how answers become classes
    # who writes: None = the run's generating teacher; a model name = that model of the run (the stage's ``student``
    # names it: STaR's student writing its own rationales)
    generator: str | None = None


@dataclass(frozen=True)
class LabelSpec:
    """``pipeline=label``: the teacher answers ``template`` for each text; ``verbaliser`` (class → words, None: the
    class names) and ``match`` map the answer to a class; with ``soft``, the first answer token's top log-probs make
    a distribution over classes (``floor`` for absent ones); ``label_eval``: the eval split is labelled too (the
    teacher's accuracy)."""

    template: str
    verbaliser: dict | None = None
    match: str = "first"
    soft: bool = False
    floor: float = 1e-4
    label_eval: bool = True


_OPTIONS = {"ema": EMAOptions, "snapshots": SnapshotOptions}


@dataclass(frozen=True)
class TeacherSpec:
    """Where a stage's targets come from (``distillkit/teachers/sources.py`` builds the source):

    - ``prepared``: the run's teacher (fine-tuned on the task when needed, cached);
    - ``stage``: the model named ``models[0]`` that an earlier stage produced, frozen;
    - ``ema``: an exponential moving average of the student being trained;
    - ``snapshots``: the mean prediction of the student's last ``k`` snapshots;
    - ``ensemble``: the mean prediction of the frozen models named in ``models``."""

    kind: str
    models: tuple[str, ...] = ()
    options: EMAOptions | SnapshotOptions | None = None  # the ema and snapshots sources' settings

    def __post_init__(self):
        if self.kind not in TEACHER_KINDS:
            raise ValueError(f"unknown teacher source {self.kind!r}; known: {', '.join(TEACHER_KINDS)}")
        wanted = _OPTIONS.get(self.kind)
        if not (isinstance(self.options, wanted) if wanted else self.options is None):
            raise TypeError(
                f"a {self.kind!r} teacher takes {wanted.__name__ if wanted else 'no'} options, got {self.options!r}"
            )

    def describe(self) -> str:
        if self.kind == "stage":
            return f"stage:{self.models[0]}"
        if self.kind == "ensemble":
            return f"ensemble({', '.join(self.models)})"
        if self.kind == "snapshots":
            return f"snapshots(k={self.options.k}, every {self.options.every})"
        if self.kind == "ema":
            return f"ema(τ={self.options.momentum})"
        return self.kind


PREPARED = TeacherSpec("prepared")


@dataclass
class StudentSpec:
    """The model a stage trains, by name. Stages that name the same model continue training it (FitNets'
    hints → distill); the first stage to name a model creates it:

    - ``build="student"``: as the student group says (derived from the teacher, or its checkpoint), with the
      run's seed + ``seed_offset``;
    - ``build="teacher"``: the teacher group's model (``teacher_prep`` fine-tunes it);
    - ``build="depth"``: derived from the teacher like the student, but ``num_layers`` deep (an assistant);
    - ``build="copy"``: a copy of the model named ``copy_of`` (a later generation starting from an earlier one).

    ``dropout`` switches the model's hidden and attention dropout to this probability for the stage (the
    noise of noisy student and mean teacher); None leaves the model's own."""

    model: str = "student"
    build: str = "student"
    num_layers: int | None = None
    seed_offset: int = 0
    copy_of: str | None = None
    dropout: float | None = None


@dataclass
class DataView:
    """The examples a stage trains on: ``train`` (the training split), ``text_file`` (plain texts, no labels:
    TinyBERT's general distillation), ``train+unlabeled`` (the training split plus an unlabeled pool whose
    labels are IGNORE_INDEX, for pseudo-labelling), ``teacher_responses`` (causal LM: the training prompts with the
    teacher's own responses, generated once and cached; seq_kd), ``generated`` (the dataset a generation stage
    wrote into the run directory; blackbox_sft). ``train`` and ``train+unlabeled`` views also hold
    the run's offline augmented examples unless ``augment`` is False (``teacher_prep``: the teacher learns the
    task's own data)."""

    kind: str = "train"
    text_file: str | None = None
    unlabeled: str | None = None  # train+unlabeled: a text file, "train" (the training texts), or "generated"
    unlabeled_size: int | None = None  # generated: how many texts
    augment: bool = True  # add the run's offline augmented examples (``augmentation=``) to train views
    # teacher_responses: how the teacher decodes; generated: which generation stage wrote the dataset
    options: ResponsesOptions | GeneratedOptions | None = None

    def __post_init__(self):
        wanted = {"teacher_responses": ResponsesOptions, "generated": GeneratedOptions}.get(self.kind)
        if not (isinstance(self.options, wanted) if wanted else self.options is None):
            raise TypeError(
                f"a {self.kind!r} view takes {wanted.__name__ if wanted else 'no'} options, got {self.options!r}"
            )


@dataclass
class Budget:
    """How long and how fast a stage trains; None = the run's (``train.*``), filled in by ``plan_stages``. A method
    sets ``epochs`` to pin a stage (its own epochs, on top of the run's budget) or ``share`` to give it that part of
    the run's budget; ``stages.split_budget`` gives every other stage an equal part of the rest and turns shares into
    ``max_steps``."""

    epochs: float | None = None
    learning_rate: float | None = None
    layer_learning_rate: float | None = None  # the encoder layers' rate, when it differs from learning_rate
    learning_rate_key: str = "train.learning_rate"  # the settings the rates came from (for messages)
    layer_learning_rate_key: str = "train.layer_learning_rate"
    seed: int | None = None
    max_steps: int = -1
    batch_size: int | None = None  # per-device batch and accumulation steps; None = the hardware group's
    accumulation_steps: int | None = None
    share: float | None = None  # this fraction of the run's budget (train.epochs / train.max_steps, in steps)


@dataclass
class Stage:
    """One stage of a run: a training stage, or (``generation`` set, ``objective`` None) a generation stage that
    writes a dataset and trains nothing."""

    name: str
    objective: Objective | None
    teacher: TeacherSpec | None = PREPARED  # None: the objective reads no teacher
    student: StudentSpec = field(default_factory=StudentSpec)
    data: DataView = field(default_factory=DataView)
    budget: Budget = field(default_factory=Budget)
    produces: bool = (
        False  # the stage's model is one the report evaluates (a generation, round, assistant, the student)
    )
    cached: bool = False  # the stage's model is stored content-addressed and reused by later runs (teacher_prep)
    group: str | None = None  # the series this model belongs to in the report, e.g. "generation", "assistant"
    generation: GenerationSpec | None = None  # a generation stage: no objective, no budget, no model trained

    @property
    def trains(self) -> bool:
        return self.generation is None

    @property
    def trains_teacher(self) -> bool:
        return self.student.build == "teacher"
