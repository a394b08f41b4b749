"""Teacher sources: where a stage's targets come from, behind one interface.

A source gives the teacher's ``Features`` for a batch given the objective's ``FeatureSpec`` (forward without
gradients, eval mode: no dropout, so the teacher sees the clean input), has hooks after each optimizer step
and each epoch, and has state to checkpoint (restored on resume). The trainer only ever calls these, so a
cached or a generating teacher is a new source here, never a trainer edit.

| source | what | features |
| --- | --- | --- |
| ``FrozenModel`` | ``prepared`` (the run's teacher) or ``stage:<model>`` (a model an earlier stage produced) | all |
| ``EMATeacher`` | an exponential moving average of the student being trained (mean teacher, DINO) | all |
| ``Snapshots`` | the mean prediction of the student's last K snapshots (every N steps or each epoch) | logits |
| ``Ensemble`` | the mean prediction of several frozen models (e.g. every born-again generation) | logits |
| ``CachedSource`` | a frozen source's outputs stored once per example (``teachers/output_cache.py``) | what it reads |

Mean predictions are log((1/K)·Σ_k softmax(z_k)): the ensemble's log-probabilities act as its logits.
"""

from __future__ import annotations

import copy
import logging

import torch

from distillkit.losses.self_distill import cosine_momentum, ema_update_, mean_probability_logits, update_center
from distillkit.models.features import Features, FeatureSpec, forward_features
from distillkit.models.loading import unwrap

log = logging.getLogger("distillkit")


def batch_rows(batch: dict) -> int:
    """The examples in a batch: the first dimension of its inputs."""
    return int(next(v.shape[0] for v in batch.values() if isinstance(v, torch.Tensor) and v.dim() > 0))


def _frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    twin = copy.deepcopy(unwrap(model)).eval()
    twin.requires_grad_(False)
    return twin


class TeacherSource:
    """The interface (and the no-op defaults)."""

    kind = "none"
    logits_only = False  # True: the source can give logits only, not hidden states, attentions or hooks

    total_steps = 0  # the stage's optimizer steps, set when training begins (the EMA's cosine schedule reads it)
    forward_rows = 0  # examples the source's models have run on (an ensemble of k counts each example k times)

    def setup(self, student: torch.nn.Module, device, world_size: int = 1) -> None:
        """Called once per stage before training, with the student about to be trained."""

    def outputs(self, batch: dict, spec: FeatureSpec, training: bool = True) -> Features | None:
        """The teacher's features for ``batch`` (no gradients); None when the source has nothing yet (no
        snapshot taken). ``training=False``: an evaluation, which must not change the source's state."""
        raise NotImplementedError

    def after_step(self, student: torch.nn.Module, step: int) -> None:
        """After each optimizer step (``step`` = the stage's global step, from 1)."""

    def after_epoch(self, student: torch.nn.Module, step: int) -> None:
        """After each epoch of the stage."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def modules(self) -> list[torch.nn.Module]:
        """The models the source runs (to switch their attention implementation, for instance)."""
        return []

    def describe(self) -> str:
        return self.kind


class FrozenModel(TeacherSource):
    """A fixed model: the prepared teacher, or the model an earlier stage produced."""

    def __init__(self, model: torch.nn.Module, kind: str = "prepared", name: str = "teacher", shard: bool = False):
        self.model, self.kind, self.name, self.shard = model, kind, name, shard

    def setup(self, student, device, world_size=1):
        if self.shard and world_size > 1:  # hardware.shard_teacher: FSDP over the processes (teachers/sharding.py)
            from distillkit.teachers.sharding import shard_frozen

            shard_frozen(self.model, device)
            return
        self.model.to(device).eval()
        self.model.requires_grad_(False)

    @torch.no_grad()
    def outputs(self, batch, spec, training=True):
        self.forward_rows += batch_rows(batch)
        return forward_features(self.model, batch, spec)

    def modules(self):
        return [self.model]

    def describe(self):
        return "prepared teacher" if self.kind == "prepared" else f"frozen model {self.name!r}"


class EMATeacher(TeacherSource):
    """θ_ema ← τ·θ_ema + (1 − τ)·θ_student after every optimizer step, starting from the student's initial
    weights. ``schedule="cosine"``: τ_k = final − (final − τ₀)·(cos(πk/K) + 1)/2 over the stage's K steps (DINO).
    The update reads only the student's weights, which DDP keeps equal on every process, so the EMA is the
    same everywhere. ``center_momentum``: DINO's centering, c ← m·c + (1 − m)·mean_batch(z_ema) (the batch mean
    averaged over processes), the teacher's logits given as z_ema − c."""

    kind = "ema"

    def __init__(
        self,
        momentum: float,
        schedule: str = "constant",
        final_momentum: float = 1.0,
        center_momentum: float | None = None,
    ):
        self.momentum, self.schedule, self.final_momentum = momentum, schedule, final_momentum
        self.center_momentum = center_momentum
        self.model: torch.nn.Module | None = None
        self.center: torch.Tensor | None = None
        self.world_size = 1

    def setup(self, student, device, world_size=1):
        self.world_size = world_size
        if self.model is None:
            self.model = _frozen_copy(student)
        self.model.to(device)

    def momentum_at(self, step: int) -> float:
        if self.schedule == "cosine":
            return cosine_momentum(self.momentum, step, self.total_steps, self.final_momentum)
        return self.momentum

    @torch.no_grad()
    def outputs(self, batch, spec, training=True):
        self.forward_rows += batch_rows(batch)
        features = forward_features(self.model, batch, spec)
        if self.center_momentum is None:
            return features
        logits = features.logits.float()
        if self.center is None:
            self.center = torch.zeros(logits.shape[-1], device=logits.device)
        centered = logits - self.center
        if training:
            mean = logits.mean(0)
            if self.world_size > 1:
                torch.distributed.all_reduce(mean)
                mean /= self.world_size
            self.center = update_center(self.center, logits, self.center_momentum, batch_mean=mean)
        features.logits = centered
        return features

    @torch.no_grad()
    def after_step(self, student, step):
        student = unwrap(student)
        tau = self.momentum_at(step - 1)  # the k-th update (k from 0) uses τ_k
        ema_update_(self.model.parameters(), student.parameters(), tau)
        ema_update_(self.model.buffers(), student.buffers(), tau)

    def state_dict(self):
        return {"model": self.model.state_dict(), "center": self.center}

    def load_state_dict(self, state):
        self.model.load_state_dict(state["model"])
        self.center = state.get("center")

    def modules(self):
        return [self.model] if self.model is not None else []

    def describe(self):
        tau = (
            f"τ {self.momentum:g} → {self.final_momentum:g} (cosine)"
            if self.schedule == "cosine"
            else f"τ={self.momentum:g}"
        )
        centering = f", centering m={self.center_momentum:g}" if self.center_momentum is not None else ""
        return f"EMA of the student ({tau}{centering})"


class Snapshots(TeacherSource):
    """The student's last ``k`` snapshots, taken every ``every`` optimizer steps (or each epoch when
    ``every="epoch"``); their mean prediction is the target. Nothing until the first snapshot."""

    kind = "snapshots"
    logits_only = True

    def __init__(self, k: int, every):
        self.k, self.every = k, every
        self.taken: list[torch.nn.Module] = []
        self.steps: list[int] = []
        self.student = None

    def setup(self, student, device, world_size=1):
        self.student, self.device = unwrap(student), device

    @torch.no_grad()
    def outputs(self, batch, spec, training=True):
        if not self.taken:
            return None
        self.forward_rows += batch_rows(batch) * len(self.taken)
        return Features(mean_probability_logits([forward_features(m, batch, FeatureSpec()).logits for m in self.taken]))

    def _take(self, student, step: int) -> None:
        self.taken.append(_frozen_copy(student))
        self.steps.append(step)
        del self.taken[: -self.k], self.steps[: -self.k]

    def _last(self, step: int) -> bool:
        """A snapshot at the stage's last step would teach nothing, and would make the report compare the
        student with itself: none is taken there."""
        return bool(self.total_steps) and step >= self.total_steps

    def after_step(self, student, step):
        if self.every != "epoch" and step % self.every == 0 and not self._last(step):
            self._take(student, step)

    def after_epoch(self, student, step):
        if self.every == "epoch" and not self._last(step):
            self._take(student, step)

    def state_dict(self):
        return {"snapshots": [m.state_dict() for m in self.taken], "steps": list(self.steps)}

    def load_state_dict(self, state):
        self.taken, self.steps = [], list(state["steps"])
        for weights in state["snapshots"]:
            twin = _frozen_copy(self.student)
            twin.load_state_dict(weights)
            self.taken.append(twin.to(self.device))

    def modules(self):
        return list(self.taken)

    def describe(self):
        when = "each epoch" if self.every == "epoch" else f"every {self.every} steps"
        return f"mean of the student's last {self.k} snapshot{'s' if self.k > 1 else ''} (taken {when})"


class Ensemble(TeacherSource):
    """The mean prediction of several frozen models."""

    kind = "ensemble"
    logits_only = True

    def __init__(self, models: dict[str, torch.nn.Module]):
        self.members = [FrozenModel(m, "stage", name) for name, m in models.items()]

    @property
    def forward_rows(self) -> int:
        return sum(m.forward_rows for m in self.members)

    def setup(self, student, device, world_size=1):
        for member in self.members:
            member.setup(student, device, world_size)

    @torch.no_grad()
    def outputs(self, batch, spec, training=True):
        return Features(mean_probability_logits([m.outputs(batch, FeatureSpec()).logits for m in self.members]))

    def modules(self):
        return [m.model for m in self.members]

    def describe(self):
        return f"ensemble of {', '.join(m.name for m in self.members)} (mean prediction)"


def build_source(spec, models: dict[str, torch.nn.Module], shard: bool = False) -> TeacherSource | None:
    """The source a stage's ``TeacherSpec`` names; ``models`` holds the run's models by name (the prepared
    teacher under "teacher"; sharded over the processes with ``shard``). None when the stage reads no teacher."""
    if spec is None:
        return None
    if spec.kind == "prepared":
        return FrozenModel(models["teacher"], shard=shard)
    if spec.kind == "stage":
        return FrozenModel(models[spec.models[0]], "stage", spec.models[0])
    if spec.kind == "ensemble":
        return Ensemble({name: models[name] for name in spec.models})
    if spec.kind == "ema":
        o = spec.options
        return EMATeacher(o.momentum, o.schedule, o.final_momentum, o.center_momentum)
    if spec.kind == "snapshots":
        return Snapshots(spec.options.k, spec.options.every)
    raise ValueError(f"unknown teacher source {spec.kind!r}")
