"""One trainer for every method: ``DistillationTrainer`` (a ``transformers.Trainer``).

``compute_loss`` asks the stage's teacher source (``distillkit/teachers/sources.py``) for the teacher's features
when the objective reads a teacher, runs the student with the features the objective asks for, and sums the
objective's weighted terms (``LossInputs.progress`` tells a term where the stage's training stands: optimizer steps
done, of how many, per epoch). Online augmentation (``distillkit/augment/online.py``: mixup, cutmix, consistency)
changes the training batch the two models see and adds its own term, in this one place. Each term's unweighted
value is averaged over the logging window and logged under ``loss/<name>``. Objectives never subclass the trainer;
the per- step data flow is the same for all of them. The source's hooks run after every optimizer step and epoch
(``SourceCallback``) and its state is saved with every checkpoint (``teacher_source.pt``) and restored on resume.

Evaluation during training (``eval.every``) reads the student's logits only, through the Trainer's own
eval loop, best-metric tracking and ``EarlyStoppingCallback``. A ``NonFiniteGuard`` stops a stage at its
first non-finite loss or gradient norm (before the optimizer applies it) and refuses to checkpoint
non-finite weights, so the last checkpoint on disk is always a good one.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback

from distillkit.augment.mixing import mix_logits
from distillkit.errors import TrainingDiverged
from distillkit.models.features import forward_features, model_inputs
from distillkit.models.loading import LAYER_KEY
from distillkit.recipe.objective import LossInputs, Objective, Progress
from distillkit.teachers.sources import batch_rows

ADAPTERS_FILE = "adapters.pt"
SOURCE_FILE = "teacher_source.pt"
COUNTS_FILE = "budget_counts.json"  # the examples and teacher forward rows the stage had spent at the checkpoint
log = logging.getLogger(__name__)


@dataclass
class NonFiniteGuard:
    """What a stage does on a NaN/inf loss or gradient norm: skip up to ``patience`` such optimizer steps in a
    row (gradients dropped, weights unchanged), then raise ``TrainingDiverged`` with ``fix`` in its message."""

    stage: str
    patience: int
    fix: str  # what to change, from the stage's configuration (stages.divergence_fix)
    ignore_grad_norm: bool = False  # fp16: an inf gradient norm is the loss scaler's skipped step, not divergence
    count: int = 0  # non-finite steps in a row


class DistillationTrainer(Trainer):
    def __init__(
        self,
        *args,
        objective: Objective,
        source=None,
        layer_learning_rate: float | None = None,
        warmup_ratio: float = 0.0,
        guard: NonFiniteGuard | None = None,
        augment=None,
        on_policy=None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.objective = objective
        self.on_policy = on_policy  # the task's rollout pieces (tasks.OnPolicy), for an objective with a rollout
        self.augment = augment  # augment.online.BatchAugmenter: mixup / cutmix / consistency on training batches
        self.layer_learning_rate = layer_learning_rate
        self.warmup_ratio = warmup_ratio
        self.guard = guard
        self._loss_finite: torch.Tensor | None = None  # all micro-batch losses of this optimizer step finite
        self.source = source if objective.needs_teacher else None
        if objective.needs_teacher and source is None:
            raise ValueError(f"objective {objective.name!r} reads a teacher and the stage names no teacher source")
        if objective.rollout is not None and on_policy is None:
            raise ValueError(
                f"objective {objective.name!r} samples the student's own responses and the task has no "
                "rollout (Task.on_policy)"
            )
        if self.source is not None:
            self.source.setup(self.model, self.args.device, self.args.world_size)
            self.add_callback(SourceCallback(self.source))
        objective.adapters.to(self.args.device)
        # compute_loss returns a per-batch mean: let the Trainer divide it by the accumulation steps.
        self.loss_is_scaled_for_ga = False
        self.model_accepts_loss_kwargs = False
        self._term_sums: dict[str, torch.Tensor] = defaultdict(lambda: torch.zeros((), device=self.args.device))
        self._term_count = 0
        self._steps_per_epoch: int | None = None  # the Trainer's optimizer steps per epoch, when training begins
        # this process's training examples and the teacher's forward rows for them (saved with checkpoints)
        self.counts = {"examples": 0, "teacher_forwards": 0}

    # ------------------------------------------------------------------------------------ the loss
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        teacher_rows = self.source.forward_rows if self.source is not None else 0
        rows = batch_rows(inputs)
        on_policy = self._rollout(model, inputs) if model.training and self.objective.rollout else None
        data, inputs = (inputs, on_policy) if on_policy is not None else (None, inputs)
        augment = self.augment if model.training else None
        generator = augment.generator(self.state.global_step) if augment is not None else None
        mixed = augment.mix(inputs, generator) if augment is not None else None
        batch = mixed.batch if mixed is not None else inputs
        progress = self._progress()
        if data is not None and self.objective.data_terms:  # an NTP anchor: the dataset's rows in the same forward
            student, on_data = self.on_policy.forward_on_both(
                model, self.objective, batch, data, self.processing_class.pad_token_id
            )
            data_inputs = LossInputs(
                on_data, None, data["labels"], data["attention_mask"], self.objective.adapters, data, None, progress
            )
        else:
            student, data_inputs = forward_features(model, batch, self.objective.student_features), None
        teacher, clean_logits = self._teacher(inputs, mixed, model.training)
        label_mix = (mixed.weight_other, mixed.perm) if mixed is not None else None
        loss, terms = self.objective(
            LossInputs(
                student,
                teacher,
                inputs["labels"],
                batch["attention_mask"],
                self.objective.adapters,
                batch,
                label_mix,
                progress,
            ),
            data_inputs,
        )
        if augment is not None and augment.consistency is not None and teacher is not None:
            term = self._consistency(model, inputs, clean_logits, generator)
            loss = loss + augment.consistency.weight * term
            terms["consistency"] = term.detach()
        if model.training and self.objective.rollout is not None:
            terms["on_policy_batches"] = torch.tensor(float(on_policy is not None), device=loss.device)
        if model.training:
            for name, value in terms.items():
                self._term_sums[name] += value.float()
            self._term_count += 1
            self.counts["examples"] += rows
            self.counts["teacher_forwards"] += (
                self.source.forward_rows if self.source is not None else 0
            ) - teacher_rows
        return (loss, student) if return_outputs else loss

    def set_initial_training_values(self, args, dataloader):
        """The Trainer's own count of the stage's length (called as training begins, a resumed stage included); its
        optimizer steps per epoch are kept for ``LossInputs.progress``."""
        values = super().set_initial_training_values(args, dataloader)
        self._steps_per_epoch = values[1]  # (num_train_epochs, num_update_steps_per_epoch, …)
        return values

    def _progress(self) -> Progress | None:
        """Where the stage's training stands (``recipe.objective.Progress``); None before training begins."""
        if self._steps_per_epoch is None or not self.state.max_steps:
            return None
        return Progress(self.state.global_step, self.state.max_steps, self._steps_per_epoch)

    def _rollout(self, model, inputs: dict) -> dict | None:
        """On-policy objectives (GKD, reverse KL, MiniLLM): with probability ``rollout.fraction`` the batch's responses
        become the student's own samples (the task's ``OnPolicy.rollout``; with ``rollout.teacher_mix`` drawn from
        the mixture with the stage's teacher), drawn inside the training step; None keeps the batch. The coin and the
        samples are seeded by (stage seed, step, process), so a resumed stage draws the same ones."""
        from distillkit.models.loading import unwrap

        plan = self.objective.rollout
        seed = (self.args.seed * 1_000_003 + self.state.global_step) * 1009 + self.args.process_index
        coin = torch.Generator().manual_seed(seed)
        if plan.fraction < 1.0 and torch.rand((), generator=coin).item() >= plan.fraction:
            return None
        tok = self.processing_class
        mix = {"teacher": self._sampling_teacher(), "teacher_mix": plan.teacher_mix} if plan.teacher_mix else {}
        return self.on_policy.rollout(
            unwrap(model),
            inputs,
            plan.max_new_tokens,
            tok.eos_token_id,
            tok.pad_token_id,
            temperature=plan.temperature,
            top_p=plan.top_p,
            seed=seed,
            **mix,
        )

    def _sampling_teacher(self):
        """The one model of the stage's teacher source, for sampling from a mixture with it (MiniLLM)."""
        models = self.source.modules() if self.source is not None else []
        if len(models) != 1:
            raise ValueError(
                f"objective {self.objective.name!r} samples from a mixture with the teacher's next-token "
                f"distribution and the stage's teacher source ({self.source.describe() if self.source else 'none'}) "
                f"is {len(models)} models, not one"
            )
        return models[0]

    def _teacher(self, inputs: dict, mixed, training: bool):
        """The teacher's features for the loss, and its logits on the clean batch when it ran on it (else None).
        On a mixed batch it runs on the mixed input (targets=teacher), or on the clean one with its soft targets
        mixed as the inputs were (targets=mixed)."""
        if self.source is None:
            return None, None
        clean = mixed is None or mixed.targets == "mixed"
        teacher = self.source.outputs(
            inputs if clean else mixed.batch, self.objective.teacher_features, training=training
        )
        if teacher is None or not clean:
            return teacher, None
        if mixed is None:
            return teacher, teacher.logits
        return dataclasses.replace(
            teacher, logits=mix_logits(teacher.logits, mixed.weight_other, mixed.perm)
        ), teacher.logits

    def _consistency(self, model, inputs: dict, clean_logits, generator) -> torch.Tensor:
        """T²·KL(p_t(x) ‖ p_s(x′)) on a noised view x′ (+ the same against the teacher on x′ with on_view). The extra
        teacher calls pass training=False: a stateful source (EMA centering) updates once per batch, not per call."""
        from distillkit.augment.mixing import consistency_kl
        from distillkit.models.features import FeatureSpec

        opts = self.augment.consistency
        if clean_logits is None:  # the teacher ran on a mixed batch: run it on the clean one
            clean_logits = self.source.outputs(inputs, FeatureSpec(), training=False).logits
        view = self.augment.view(inputs, generator)
        student_view = forward_features(model, view, FeatureSpec()).logits
        term = consistency_kl(clean_logits, student_view, opts.temperature)
        if opts.on_view:
            teacher_view = self.source.outputs(view, FeatureSpec(), training=False).logits
            term = term + consistency_kl(teacher_view, student_view, opts.temperature)
        return term

    def training_step(self, model, inputs, num_items_in_batch=None):
        """The Trainer's step, plus averaging the adapters' gradients over processes: DDP wraps only the
        student, so without this each process's projections / embedding heads would drift apart."""
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self.args.world_size > 1 and len(self.objective.adapters):
            average_gradients(self.objective.adapters.parameters(), self.args.world_size)
        if self.guard is not None:  # a flag on the device: no sync until the step's gradient norm is read
            finite = torch.isfinite(loss.detach()).all()
            self._loss_finite = finite if self._loss_finite is None else self._loss_finite & finite
        return loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Evaluation during training: the student's logits and the labels, nothing else. The metric is the
        task's (``Task.compute_metrics``), so the teacher's forward and the loss terms would be wasted work."""
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            logits = model(**model_inputs(inputs)).logits
        return None, logits.detach(), inputs["labels"].detach()

    # ------------------------------------------------------------------- schedule, divergence
    def create_scheduler(self, num_training_steps: int, optimizer=None):
        """transformers reads a warm-up value >= 1 as a step count; ``train.warmup_ratio`` is a ratio, so the
        steps are counted here from the stage's total: ceil(ratio × optimizer steps)."""
        if self.lr_scheduler is None:
            from transformers import get_scheduler

            self.lr_scheduler = get_scheduler(
                self.args.lr_scheduler_type,
                optimizer=optimizer or self.optimizer,
                num_warmup_steps=warmup_steps(self.warmup_ratio, num_training_steps),
                num_training_steps=num_training_steps,
                scheduler_specific_kwargs=self.args.lr_scheduler_kwargs,
            )
            self._created_lr_scheduler = True
        return self.lr_scheduler

    def _get_grad_norm(self, model, grad_norm=None):
        """Called once per optimizer step, before the optimizer applies the gradients: the place to stop."""
        grad_norm = super()._get_grad_norm(model, grad_norm)
        if self.guard is not None:
            self._check_step(model, grad_norm)
        return grad_norm

    def _check_step(self, model, grad_norm) -> None:
        loss_ok = self._loss_finite if self._loss_finite is not None else torch.tensor(True)
        self._loss_finite = None
        norm = torch.as_tensor(grad_norm if grad_norm is not None else 0.0, dtype=torch.float32)
        flags = torch.stack([~loss_ok.to(self.args.device), ~torch.isfinite(norm.to(self.args.device))]).float()
        if self.args.world_size > 1:  # every process stops at the same step, or none does
            torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
        bad_loss, bad_norm = (bool(f) for f in flags.tolist())
        bad_norm = bad_norm and not self.guard.ignore_grad_norm
        if not (bad_loss or bad_norm):
            self.guard.count = 0
            return
        what = " and ".join(
            w
            for w, bad in (("the loss was NaN or inf", bad_loss), (f"the gradient norm was {float(norm)}", bad_norm))
            if bad
        )
        self.guard.count += 1
        if self.guard.count > self.guard.patience:
            self._diverged(self.state.global_step + 1, what)
        log.warning(
            "[%s] step %d: %s; step skipped (%d in a row, train.nonfinite_patience=%d)",
            self.guard.stage,
            self.state.global_step + 1,
            what,
            self.guard.count,
            self.guard.patience,
        )
        model.zero_grad(set_to_none=True)
        self.objective.adapters.zero_grad(set_to_none=True)

    def _diverged(self, step: int, what: str):
        from distillkit.training.checkpoints import last_checkpoint

        kept = last_checkpoint(Path(self.args.output_dir))
        kept = f"The last good checkpoint is {kept}." if kept else "No checkpoint of this stage was saved before."
        raise TrainingDiverged(
            f"Training diverged in stage {self.guard.stage} at step {step}: {what}. The stage "
            f"stopped there; the run is not complete (no results.json, no exported student). "
            f"{kept} Fix: {self.guard.fix}"
        )

    def check_weights(self) -> None:
        """Raise ``TrainingDiverged`` if the student or the adapters hold NaN/inf: a finite loss can still take a
        step that overflows the weights, and such weights must never be checkpointed or exported."""
        if self.guard is None:
            return
        params = list(self.model.parameters()) + list(self.objective.adapters.parameters())
        if params and not bool(torch.stack([torch.isfinite(p.detach()).all() for p in params]).all()):
            self._diverged(self.state.global_step, "the weights after this step hold NaN/inf values")

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add each loss term's mean since the last log (averaged over processes) to the training logs."""
        if self._term_count and "loss" in logs:
            names = sorted(self._term_sums)
            means = torch.stack([self._term_sums[n] for n in names]) / self._term_count
            means = self.accelerator.reduce(means, reduction="mean")
            for name, value in zip(names, means.tolist()):
                logs[f"loss/{name}"] = round(value, 6)
            self._term_sums.clear()
            self._term_count = 0
        super().log(logs, start_time)

    # ----------------------------------------------------------- adapters: trained, checkpointed
    def create_optimizer(self, model=None):
        optimizer = super().create_optimizer(model)
        if self.layer_learning_rate is not None and not getattr(self, "_layer_groups_split", False):
            split_layer_groups(optimizer, self.model, self.layer_learning_rate)
            self._layer_groups_split = True
        params = [p for p in self.objective.adapters.parameters() if p.requires_grad]
        if params and not getattr(self, "_adapters_added", False):
            optimizer.add_param_group({"params": params, "weight_decay": self.args.weight_decay})
            self._adapters_added = True
        return optimizer

    def _save_checkpoint(self, model, trial):
        self.check_weights()
        super()._save_checkpoint(model, trial)
        if not self.args.should_save:
            return
        folder = Path(self._get_output_dir(trial)) / f"checkpoint-{self.state.global_step}"
        if len(self.objective.adapters):
            torch.save(self.objective.adapters.state_dict(), folder / ADAPTERS_FILE)
        state = self.source.state_dict() if self.source is not None else {}
        if state:
            torch.save(state, folder / SOURCE_FILE)
        (folder / COUNTS_FILE).write_text(json.dumps(self.counts))  # rank 0's: the others' are the same shape

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        path = Path(resume_from_checkpoint) / ADAPTERS_FILE
        if len(self.objective.adapters) and path.exists():
            self.objective.adapters.load_state_dict(torch.load(path, map_location=self.args.device, weights_only=True))
        path = Path(resume_from_checkpoint) / COUNTS_FILE
        if path.exists():
            self.counts.update(json.loads(path.read_text()))
        path = Path(resume_from_checkpoint) / SOURCE_FILE
        if self.source is not None and path.exists():
            self.source.load_state_dict(torch.load(path, map_location=self.args.device, weights_only=True))
            log.info("teacher source state (%s) restored from %s", self.source.describe(), path)

    def load_best(self) -> dict | None:
        """``eval.keep=best``: load the best checkpoint's student (the Trainer's ``_load_best_model``) and its
        adapters; return ``{"step", "value"}`` of that checkpoint (``value``: its ``metric_for_best_model``, the
        task's checkpoint metric), or None if no evaluation found one."""
        best = self.state.best_model_checkpoint
        if best is None:
            return None
        self._load_best_model()
        path = Path(best) / ADAPTERS_FILE
        if len(self.objective.adapters) and path.exists():
            self.objective.adapters.load_state_dict(torch.load(path, map_location=self.args.device, weights_only=True))
        step = int(Path(best).name.split("-")[-1])
        key = f"eval_{self.args.metric_for_best_model}"
        value = next(
            (r[key] for r in self.state.log_history if r.get("step") == step and key in r), self.state.best_metric
        )
        return {"step": step, "value": value}


def warmup_steps(ratio: float, total_steps: int) -> int:
    """Warm-up steps for ``ratio`` of ``total_steps`` optimizer steps (ratio 1.0: all of them)."""
    return math.ceil(ratio * total_steps)


class SourceCallback(TrainerCallback):
    """The teacher source's hooks: after every optimizer step (the EMA update, step snapshots) and every epoch
    (epoch snapshots). The Trainer passes the unwrapped student, whose weights DDP keeps equal everywhere."""

    def __init__(self, source):
        self.source = source

    def on_train_begin(self, args, state, control, **kwargs):
        self.source.total_steps = state.max_steps

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.source.after_step(model, state.global_step)

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        self.source.after_epoch(model, state.global_step)


class SaveBestCallback(TrainerCallback):
    """``eval.keep=best``: checkpoint at every evaluation that improves the metric, whatever
    ``train.save_steps`` says, so the best model always has a checkpoint to come back to. (transformers'
    ``load_best_model_at_end`` instead demands save steps that are multiples of eval steps and an epoch
    save strategy for epoch evaluation; this keeps ``train.save_steps`` for resuming.) Runs before the
    Trainer updates ``state.best_metric``, like ``EarlyStoppingCallback``."""

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        value = (metrics or {}).get(f"eval_{args.metric_for_best_model}")
        if value is not None and (state.best_metric is None or value > state.best_metric):
            control.should_save = True


def split_layer_groups(optimizer, model: torch.nn.Module, layer_lr: float) -> None:
    """Give the parameters of the repeated layers their own rate ``layer_lr`` (embeddings and head keep the
    group's); weight decay is kept as the Trainer split it. Runs before the scheduler is made, so the
    schedule scales each group from its own rate."""
    in_layers = {id(p) for name, p in model.named_parameters() if LAYER_KEY.search(name)}
    for group in list(optimizer.param_groups):
        layers = [p for p in group["params"] if id(p) in in_layers]
        if layers:
            group["params"] = [p for p in group["params"] if id(p) not in in_layers]
            optimizer.add_param_group(
                {**{k: v for k, v in group.items() if k != "params"}, "params": layers, "lr": layer_lr}
            )
    optimizer.param_groups[:] = [g for g in optimizer.param_groups if g["params"]]


def average_gradients(params, world_size: int) -> None:
    """Replace each gradient by its mean over the process group (gloo has no AVG: sum, then divide).
    Called after every micro-step: gradients accumulated from earlier micro-steps are already equal on
    every process, so averaging the running sum is the same as summing the averages."""
    for param in params:
        if param.grad is not None:
            torch.distributed.all_reduce(param.grad)
            param.grad.div_(world_size)


class MetricsCallback(TrainerCallback):
    """Per-step metrics of one stage: appended to ``metrics.jsonl`` and sent to W&B under ``<stage>/``,
    each stage with its own step axis. Only the main process writes."""

    def __init__(self, stage: str, path: Path, wandb_run=None):
        self.stage, self.path, self.wandb_run = stage, path, wandb_run
        self.started = time.time()
        if wandb_run is not None:
            wandb_run.define_metric(f"{stage}/step")
            wandb_run.define_metric(f"{stage}/*", step_metric=f"{stage}/step")

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        logs = {(f"eval/{k[5:]}" if k.startswith("eval_") else k): v for k, v in logs.items()}
        record = {
            "stage": self.stage,
            "step": state.global_step,
            "epoch": round(state.epoch or 0.0, 4),
            "time_s": round(time.time() - self.started, 3),
            **logs,
        }
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.wandb_run is not None:
            self.wandb_run.log(
                {
                    f"{self.stage}/step": state.global_step,
                    **{f"{self.stage}/{k}": v for k, v in logs.items() if isinstance(v, (int, float))},
                }
            )
