"""Online augmentation: what ``mixup``, ``cutmix`` and ``consistency`` do to each training batch.

``BatchAugmenter.mix(batch)`` returns the batch the student (and, with ``targets=teacher``, the teacher) runs
on, and how its targets mix:

- mixup: the batch gains ``"mix"`` (a ``MixPlan``); ``features.forward_features`` then feeds each model its own
  input embeddings mixed as e_i ← λ_i·e_i + (1 − λ_i)·e_perm(i), the attention mask being the union;
- cutmix: token spans of other examples pasted into the ids (4-D ``pixel_values``: CutMix boxes);
- either way, hard labels mix by the other example's weight w_i (1 − λ_i, or the pasted share) and, with
  ``targets=mixed``, the teacher runs on the clean batch and its soft targets mix the same way.

``consistency`` adds one term per step: T²·KL(p_t(x) ‖ p_s(x′)) on a noised view x′ of the clean batch
(tokens masked or replaced), optionally + the same against the teacher on x′. Randomness comes from a
generator seeded by (seed, process rank, optimizer step, micro-batch), so a resumed run repeats it.
Evaluation batches are never augmented.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from distillkit.augment import mixing


@dataclass
class Mixed:
    """A mixed batch: what the student runs on, and the other example's weight per row (for the targets)."""

    batch: dict
    weight_other: torch.Tensor  # (B,)
    perm: torch.Tensor  # (B,)
    targets: str  # teacher | mixed


class BatchAugmenter:
    def __init__(self, aug, tokenizer, seed: int, rank: int = 0):
        self.mix_name = "mixup" if aug.get("mixup") else "cutmix" if aug.get("cutmix") else None
        self.mix_opts = getattr(aug, self.mix_name) if self.mix_name else None
        self.consistency = aug.get("consistency")
        self.special_ids = torch.tensor(sorted(set(tokenizer.all_special_ids)))
        self.mask_id, self.vocab_size = tokenizer.mask_token_id, len(tokenizer)
        self.seed, self.rank = seed, rank
        self._step, self._micro = -1, 0

    def describe(self) -> str:
        parts = []
        if self.mix_name:
            o = self.mix_opts
            parts.append(f"{self.mix_name}(α={o.alpha:g}, share={o.share:g}, targets={o.targets})")
        if self.consistency:
            c = self.consistency
            parts.append(
                f"consistency({c.weight:g}·T²·KL(p_t(x) ‖ p_s(x′)), x′: {c.noise} p={c.p:g}"
                + (", + on the view" if c.on_view else "")
                + ")"
            )
        return ", ".join(parts)

    def generator(self, step: int) -> torch.Generator:
        """A fresh generator per micro-batch: (seed, rank, optimizer step, micro-batch within the step)."""
        self._micro = self._micro + 1 if step == self._step else 0
        self._step = step
        return torch.Generator().manual_seed(hash((self.seed, self.rank, step, self._micro)) % (2**63))

    def mix(self, batch: dict, generator: torch.Generator) -> Mixed | None:
        if self.mix_name is None:
            return None
        o = self.mix_opts
        size = batch["labels"].shape[0]
        plan = mixing.sample_mix(size, o.alpha, o.share, generator)
        device = batch["labels"].device
        plan = mixing.MixPlan(plan.lam.to(device), plan.perm.to(device))
        out = dict(batch)
        if self.mix_name == "mixup":
            mask = batch["attention_mask"]
            mixed_rows = (plan.lam < 1).unsqueeze(1)
            out["attention_mask"] = torch.where(mixed_rows, torch.maximum(mask, mask[plan.perm]), mask)
            out["mix"] = plan
            weight = 1 - plan.lam
        elif "pixel_values" in batch:
            out["pixel_values"], weight = mixing.cutmix_images(batch["pixel_values"], plan, generator)
        else:
            out["input_ids"], out["attention_mask"], weight = mixing.cutmix_tokens(
                batch["input_ids"], batch["attention_mask"], plan, generator, self.special_ids.to(device)
            )
        return Mixed(out, weight.to(device).float(), plan.perm, o.targets)

    def view(self, batch: dict, generator: torch.Generator) -> dict:
        """The consistency term's noised view x′ of the clean batch."""
        c = self.consistency
        ids = mixing.token_noise(
            batch["input_ids"],
            batch["attention_mask"],
            c.p,
            c.noise,
            generator,
            self.special_ids.to(batch["input_ids"].device),
            mask_id=self.mask_id,
            vocab_size=self.vocab_size,
        )
        return {**batch, "input_ids": ids}


def online_options(online: list[str], stage) -> list[str]:
    """The online augmentation options (of ``augmentation.online``) that reach ``stage``: none for a stage that trains
    the teacher; consistency (a term on the logits) only where the stage has a teacher and its loss reads the logits."""
    if stage.trains_teacher:
        return []
    consistency = stage.teacher is not None and stage.objective.reads_logits
    return [name for name in online if name != "consistency" or consistency]
