"""One trainer for every method: ``DistillationTrainer`` (a ``transformers.Trainer``).

``compute_loss`` runs the teacher frozen (eval mode, no gradients) when the method needs it, the student
with the features the method asks for, and sums the method's weighted terms. Each term's unweighted
value is averaged over the logging window and logged under ``loss/<name>``. Methods never subclass the
trainer; the per-step data flow is the same for all of them.
"""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback

from distillkit.features import forward_features
from distillkit.method_types import LossInputs, Method

ADAPTERS_FILE = "adapters.pt"


class DistillationTrainer(Trainer):
    def __init__(self, *args, method: Method, teacher: torch.nn.Module | None = None,
                 layer_learning_rate: float | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.method = method
        self.layer_learning_rate = layer_learning_rate
        self.teacher = None
        if method.needs_teacher:
            if teacher is None:
                raise ValueError(f"method {method.name!r} needs a teacher")
            self.teacher = teacher.to(self.args.device).eval()
            self.teacher.requires_grad_(False)
        method.adapters.to(self.args.device)
        # compute_loss returns a per-batch mean: let the Trainer divide it by the accumulation steps.
        self.loss_is_scaled_for_ga = False
        self.model_accepts_loss_kwargs = False
        self._term_sums: dict[str, torch.Tensor] = defaultdict(lambda: torch.zeros((), device=self.args.device))
        self._term_count = 0

    # ------------------------------------------------------------------------------------ the loss
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        student = forward_features(model, inputs, self.method.student_features)
        teacher = None
        if self.teacher is not None:
            with torch.no_grad():
                teacher = forward_features(self.teacher, inputs, self.method.teacher_features)
        loss, terms = self.method(LossInputs(student, teacher, inputs["labels"], inputs["attention_mask"],
                                             self.method.adapters, inputs))
        if model.training:
            for name, value in terms.items():
                self._term_sums[name] += value.float()
            self._term_count += 1
        return (loss, student) if return_outputs else loss

    def training_step(self, model, inputs, num_items_in_batch=None):
        """The Trainer's step, plus averaging the adapters' gradients over processes: DDP wraps only the
        student, so without this each process's projections / embedding heads would drift apart."""
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self.args.world_size > 1 and len(self.method.adapters):
            average_gradients(self.method.adapters.parameters(), self.args.world_size)
        return loss

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
        params = [p for p in self.method.adapters.parameters() if p.requires_grad]
        if params and not getattr(self, "_adapters_added", False):
            optimizer.add_param_group({"params": params, "weight_decay": self.args.weight_decay})
            self._adapters_added = True
        return optimizer

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if len(self.method.adapters) and self.args.should_save:
            folder = Path(self._get_output_dir(trial)) / f"checkpoint-{self.state.global_step}"
            torch.save(self.method.adapters.state_dict(), folder / ADAPTERS_FILE)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        path = Path(resume_from_checkpoint) / ADAPTERS_FILE
        if len(self.method.adapters) and path.exists():
            self.method.adapters.load_state_dict(torch.load(path, map_location=self.args.device))


# Parameter names of the repeated encoder/decoder blocks (BERT "encoder.layer.3.", GPT-2 "h.3.", Llama "layers.3.").
_LAYER_PARAM = re.compile(r"(^|\.)(layer|layers|h)\.\d+\.")


def split_layer_groups(optimizer, model: torch.nn.Module, layer_lr: float) -> None:
    """Give the parameters of the repeated layers their own rate ``layer_lr`` (embeddings and head keep the
    group's); weight decay is kept as the Trainer split it. Runs before the scheduler is made, so the
    schedule scales each group from its own rate."""
    in_layers = {id(p) for name, p in model.named_parameters() if _LAYER_PARAM.search(name)}
    for group in list(optimizer.param_groups):
        layers = [p for p in group["params"] if id(p) in in_layers]
        if layers:
            group["params"] = [p for p in group["params"] if id(p) not in in_layers]
            optimizer.add_param_group({**{k: v for k, v in group.items() if k != "params"}, "params": layers,
                                       "lr": layer_lr})
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
        record = {"stage": self.stage, "step": state.global_step, "epoch": round(state.epoch or 0.0, 4),
                  "time_s": round(time.time() - self.started, 3), **logs}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.wandb_run is not None:
            self.wandb_run.log({f"{self.stage}/step": state.global_step,
                                **{f"{self.stage}/{k}": v for k, v in logs.items() if isinstance(v, (int, float))}})
