"""Contrastive Representation Distillation (CRD; Tian, Krishnan & Isola, ICLR 2020).

The student is trained to make its embedding of an example identifiable, among K other examples, from the
teacher's embedding of the same example (and vice versa), with the noise-contrastive estimation (NCE) loss of
the paper (§3.4, eq. 18-19). Negatives come from a momentum memory bank holding one embedding per training
example for each network, as in the authors' code (HobbitLong/RepDistiller: ``Embed``, ``ContrastMemory``,
``ContrastLoss``).

Three pieces:

- ``CRDHead``: the embedding heads g_s / g_t, a linear map to ``feat_dim`` followed by L2 normalisation.
- ``CRDMemory``: the two banks (student, teacher), the negative sampler and the two NCE constants Z.
- ``crd_loss``: scores of each anchor against the other network's bank, the NCE loss, then the bank update.

Scores and the loss are computed in fp32 (autocast disabled), whatever the dtype of the embeddings.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

#: The paper's CIFAR-100 setting: K = 16384 negatives for N = 50,000 training images, τ = 0.07, m = 0.5, d = 128.
PAPER_NEGATIVES = 16384
PAPER_NUM_EXAMPLES = 50_000
PAPER_TEMPERATURE = 0.07
PAPER_MOMENTUM = 0.5
PAPER_FEAT_DIM = 128


def default_negatives(num_examples: int) -> int:
    """The paper's K scaled to the dataset size: K = min(16384, max(1, round(16384 · N / 50000))), capped at N − 1.

    The paper uses K = 16384 negatives for CIFAR-100's N = 50,000 training images, i.e. about a third of the
    dataset; this keeps that ratio for smaller datasets (N = 8000 → 2621) and never exceeds the paper's K for
    larger ones. ``round`` is Python's (half to even). For N ≥ 2 the scaled value (≈ 0.33 N) only reaches
    N − 1 at N = 2, where both give K = 1. Raises ValueError for N < 2 (there is no other example to contrast).
    """
    if num_examples < 2:
        raise ValueError(f"CRD needs at least 2 training examples to draw negatives from, got {num_examples}")
    scaled = max(1, round(PAPER_NEGATIVES * num_examples / PAPER_NUM_EXAMPLES))
    return min(PAPER_NEGATIVES, scaled, num_examples - 1)


class CRDHead(torch.nn.Module):
    """Embedding head g(h) = W h + b, then h ↦ g / ‖g‖₂ (the paper's g_s / g_t, §3.1; ``Embed`` in their code).

    ``x``: (B, in_dim) features (the paper flattens the penultimate-layer features; pool or flatten before
    calling). Any leading shape (..., in_dim) is accepted and kept. Returns (..., feat_dim) unit vectors in fp32
    (the normalisation is done in fp32 even if the linear layer ran in bf16/fp16 under autocast).
    """

    def __init__(self, in_dim: int, feat_dim: int = PAPER_FEAT_DIM):
        super().__init__()
        if in_dim < 1 or feat_dim < 1:
            raise ValueError(f"in_dim and feat_dim must be >= 1, got in_dim={in_dim}, feat_dim={feat_dim}")
        self.in_dim = in_dim
        self.feat_dim = feat_dim
        self.linear = torch.nn.Linear(in_dim, feat_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 1 or x.shape[-1] != self.in_dim:
            raise ValueError(
                f"CRDHead expects features of shape (..., {self.in_dim}), got {tuple(x.shape)}; "
                "pool or flatten the features to (batch, in_dim) first."
            )
        return F.normalize(self.linear(x).float(), p=2, dim=-1)


class CRDMemory(torch.nn.Module):
    """Momentum memory bank of CRD (``ContrastMemory`` in the authors' code).

    Buffers (persistent, so they are saved in ``state_dict`` and restored on resume):

    - ``student_bank`` (N, feat_dim): one student embedding per training example (the paper's memory_v1);
    - ``teacher_bank`` (N, feat_dim): one teacher embedding per training example (memory_v2);
    - ``z`` (2,): the NCE normalisation constants [Z_s, Z_t] of the student-anchor and teacher-anchor scores.
      −1 means "not estimated yet": ``crd_loss`` sets each on its first call to Z = mean(exp(⟨·,·⟩/τ)) · N over
      that batch's B·(K+1) scores (as the authors' code does), and they stay fixed afterwards.

    The banks start as random unit vectors drawn from a ``torch.Generator`` seeded with ``seed``, so construction
    is deterministic (the authors' code draws uniform vectors in [−stdv, stdv]^d, not normalised; the first
    momentum updates wash the initialisation out either way).

    num_examples: N, the training-set size (dataset indices must lie in [0, N)); num_negatives: K;
    temperature: τ; momentum: m.
    """

    student_bank: torch.Tensor
    teacher_bank: torch.Tensor
    z: torch.Tensor

    def __init__(
        self,
        num_examples: int,
        feat_dim: int = PAPER_FEAT_DIM,
        num_negatives: int | None = None,
        temperature: float = PAPER_TEMPERATURE,
        momentum: float = PAPER_MOMENTUM,
        seed: int = 0,
    ):
        super().__init__()
        if num_examples < 2:
            raise ValueError(f"CRDMemory needs num_examples >= 2 (negatives are other examples), got {num_examples}")
        if feat_dim < 1:
            raise ValueError(f"feat_dim must be >= 1, got {feat_dim}")
        if num_negatives is None:
            num_negatives = default_negatives(num_examples)
        if num_negatives < 1:
            raise ValueError(f"num_negatives must be >= 1, got {num_negatives}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.num_examples = num_examples
        self.feat_dim = feat_dim
        self.num_negatives = num_negatives
        self.temperature = float(temperature)
        self.momentum = float(momentum)
        self.seed = seed

        gen = torch.Generator().manual_seed(seed)
        student = F.normalize(torch.randn(num_examples, feat_dim, generator=gen), dim=1)
        teacher = F.normalize(torch.randn(num_examples, feat_dim, generator=gen), dim=1)
        self.register_buffer("student_bank", student, persistent=True)
        self.register_buffer("teacher_bank", teacher, persistent=True)
        self.register_buffer("z", torch.full((2,), -1.0), persistent=True)

    def extra_repr(self) -> str:
        return (
            f"num_examples={self.num_examples}, feat_dim={self.feat_dim}, num_negatives={self.num_negatives}, "
            f"temperature={self.temperature}, momentum={self.momentum}"
        )

    def _check_indices(self, indices: torch.Tensor) -> None:
        if indices.dim() != 1 or indices.dtype not in (torch.int64, torch.int32):
            raise ValueError(
                f"indices must be a 1-D integer tensor of dataset indices, got shape {tuple(indices.shape)} "
                f"and dtype {indices.dtype}"
            )
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.num_examples):
            raise ValueError(
                f"dataset indices must lie in [0, {self.num_examples}), got range "
                f"[{int(indices.min())}, {int(indices.max())}]; was the memory built for another dataset?"
            )

    def sample(self, indices: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Contrast indices for a batch: (B,) dataset indices → (B, K+1) int64.

        Column 0 is the positive (the example itself, ``indices``); columns 1..K are drawn uniformly, with
        replacement, from the N − 1 *other* examples (draw j ∈ [0, N−1), then j ↦ j + 1 if j ≥ i, which is
        uniform over [0, N) ∖ {i}). The paper samples uniformly from all N, so its negatives contain the positive
        with probability 1/N; excluding it changes nothing noticeable for large N and avoids a "negative" that
        is the positive for tiny N. ``generator`` (a CPU generator) makes the draw reproducible; the default is
        the global RNG. The result is on ``indices.device``.
        """
        self._check_indices(indices)
        batch = indices.shape[0]
        pos = indices.detach().to("cpu", torch.int64)
        neg = torch.randint(0, self.num_examples - 1, (batch, self.num_negatives), generator=generator)
        neg = neg + (neg >= pos.unsqueeze(1)).long()
        return torch.cat([pos.unsqueeze(1), neg], dim=1).to(indices.device)

    @torch.no_grad()
    def update(self, indices: torch.Tensor, student_emb: torch.Tensor, teacher_emb: torch.Tensor) -> None:
        """Momentum update of both banks (the paper's §3.4 / ``ContrastMemory.forward``), in place, no grad:

            bank[i] ← (m · bank[i] + (1 − m) · e_i) / ‖m · bank[i] + (1 − m) · e_i‖₂

        for each dataset index i of the batch, with e_i the student (resp. teacher) embedding. The embeddings are
        used as given (the heads already normalise them). If an index occurs twice in a batch only one of its
        updates survives (which one is unspecified on GPU); a per-epoch shuffling sampler never does that.
        """
        self._check_indices(indices)
        batch = indices.shape[0]
        for name, emb in (("student", student_emb), ("teacher", teacher_emb)):
            if emb.shape != (batch, self.feat_dim):
                raise ValueError(
                    f"{name} embeddings must have shape ({batch}, {self.feat_dim}) to update the bank, "
                    f"got {tuple(emb.shape)}"
                )
        idx = indices.to(self.student_bank.device, torch.int64)
        for bank, emb in ((self.student_bank, student_emb), (self.teacher_bank, teacher_emb)):
            mixed = bank.index_select(0, idx) * self.momentum + emb.detach().to(bank) * (1.0 - self.momentum)
            bank.index_copy_(0, idx, F.normalize(mixed, p=2, dim=1))


def _bank_scores(anchor: torch.Tensor, bank: torch.Tensor, sample_idx: torch.Tensor, full: bool | None = None):
    """s[b, j] = ⟨anchor[b], bank[sample_idx[b, j]]⟩, (B, K+1), fp32, differentiable w.r.t. ``anchor`` only.

    Two equal ways: gather the B·(K+1) bank rows and take a batched dot product (memory B·(K+1)·D, the
    authors' code), or multiply by the whole bank and gather the scores (memory N·(D + B)); ``full=None`` picks
    the smaller. The bank is copied in both cases, so the in-place bank update after the loss does not
    invalidate the tensors autograd saved for the backward pass.
    """
    batch, width = sample_idx.shape
    n, d = bank.shape
    if full is None:
        full = n * (d + batch) < batch * width * d
    if full:
        return (anchor @ bank.detach().clone().t()).gather(1, sample_idx)
    rows = bank.detach()[sample_idx]  # (B, K+1, D), a copy
    return torch.bmm(rows, anchor.unsqueeze(-1)).squeeze(-1)


def nce_loss(log_p: torch.Tensor, num_examples: int) -> torch.Tensor:
    """NCE loss of CRD (paper eq. 18-19; ``ContrastLoss`` in the authors' code), averaged over the batch.

    ``log_p``: (B, K+1) log P with P_{b,j} = exp(s_{b,j}/τ) / Z, column 0 the positive. With P_n = 1/N the
    uniform noise distribution:

        L = −(1/B) Σ_b [ log(P_{b,0} / (P_{b,0} + K·P_n)) + Σ_{k=1..K} log(K·P_n / (P_{b,k} + K·P_n)) ]

    i.e. the binary log-likelihood that the positive came from the data and each negative from the noise
    (h(·) of eq. 18 with M = K). Computed in log space, log(P/(P + c)) = log P − logaddexp(log P, log c), so it
    is exact in fp32; the authors' code adds eps = 1e-7 to the denominators, a difference of order eps/(K·P_n).
    """
    if log_p.dim() != 2 or log_p.shape[1] < 2:
        raise ValueError(f"log_p must have shape (B, K+1) with K >= 1, got {tuple(log_p.shape)}")
    log_p = log_p.float()
    k = log_p.shape[1] - 1
    log_c = torch.tensor(math.log(k / num_examples), dtype=log_p.dtype, device=log_p.device)
    log_denominator = torch.logaddexp(log_p, log_c)  # log(P + K·P_n)
    log_d1 = log_p[:, 0] - log_denominator[:, 0]  # log(P_pos / (P_pos + K·P_n))
    log_d0 = log_c - log_denominator[:, 1:]  # log(K·P_n / (P_neg + K·P_n))
    return -(log_d1 + log_d0.sum(dim=1)).mean()


def crd_loss(
    student_emb: torch.Tensor,
    teacher_emb: torch.Tensor,
    memory: CRDMemory,
    indices: torch.Tensor,
    sample_idx: torch.Tensor | None = None,
) -> torch.Tensor:
    """CRD loss L_s + L_t (Tian et al. 2020, eq. 18-19), then the momentum update of the banks.

    student_emb = g_s(f_s), teacher_emb = g_t(f_t): (B, D) unit vectors (``CRDHead`` outputs; the teacher's
    should carry no gradient to the teacher network, but its head g_t is trained through it). indices: (B,)
    dataset indices. sample_idx: (B, K+1) contrast indices, column 0 equal to ``indices``; drawn with
    ``memory.sample(indices)`` (global RNG) when None.

    In this order:

    1. Scores against the banks as they are BEFORE this step's update, τ = memory.temperature:
           student anchor vs teacher bank:  s^s_{b,j} = ⟨student_emb[b], teacher_bank[sample_idx[b, j]]⟩
           teacher anchor vs student bank:  s^t_{b,j} = ⟨teacher_emb[b], student_bank[sample_idx[b, j]]⟩
    2. Z: for each anchor whose constant is still −1 in ``memory.z``, set Z = mean_{b,j} exp(s_{b,j}/τ) · N
       (over this batch, no gradient); afterwards Z stays fixed (and is saved with the memory).
    3. P_{b,j} = exp(s_{b,j}/τ) / Z, and with P_n = 1/N (see ``nce_loss``):
           L = −(1/B) Σ_b [ log(P_{b,0}/(P_{b,0} + K·P_n)) + Σ_{k=1..K} log(K·P_n/(P_{b,k} + K·P_n)) ]
       for each anchor, total = L(student anchor, Z_s) + L(teacher anchor, Z_t).
    4. ``memory.update(indices, student_emb.detach(), teacher_emb.detach())``, so the banks are refreshed every
       step; the returned loss (and its backward pass) is unaffected by this update.

    Returns the scalar loss in fp32. Gradients flow into both embeddings (hence g_s and g_t), never into the banks.
    """
    if student_emb.dim() != 2 or student_emb.shape != teacher_emb.shape:
        raise ValueError(
            f"student and teacher embeddings must both have shape (B, D), got {tuple(student_emb.shape)} and "
            f"{tuple(teacher_emb.shape)}; project both with a CRDHead of the same feat_dim."
        )
    batch, dim = student_emb.shape
    if dim != memory.feat_dim:
        raise ValueError(f"embeddings have dimension {dim} but the memory bank stores {memory.feat_dim}")
    if indices.shape != (batch,):
        raise ValueError(
            f"indices must have shape ({batch},) (one dataset index per example), got {tuple(indices.shape)}"
        )
    bank_device = memory.student_bank.device
    if sample_idx is None:
        sample_idx = memory.sample(indices)
    width = memory.num_negatives + 1
    if sample_idx.shape != (batch, width):
        raise ValueError(
            f"sample_idx must have shape ({batch}, {width}) (positive + K={memory.num_negatives} negatives), "
            f"got {tuple(sample_idx.shape)}"
        )
    sample_idx = sample_idx.to(bank_device, torch.int64)
    idx = indices.to(bank_device, torch.int64)
    if not torch.equal(sample_idx[:, 0], idx):
        raise ValueError("sample_idx[:, 0] must be the positives, i.e. equal to indices")
    if int(sample_idx.min()) < 0 or int(sample_idx.max()) >= memory.num_examples:
        raise ValueError(f"sample_idx entries must lie in [0, {memory.num_examples})")

    tau = memory.temperature
    with torch.autocast(device_type=bank_device.type, enabled=False):
        s_student = _bank_scores(student_emb.float().to(bank_device), memory.teacher_bank, sample_idx) / tau
        s_teacher = _bank_scores(teacher_emb.float().to(bank_device), memory.student_bank, sample_idx) / tau
        with torch.no_grad():
            # log Z = log mean exp(s/τ) + log N, via logsumexp; only the constants still at −1 are replaced.
            log_n = math.log(memory.num_examples)
            estimate = torch.stack(
                [torch.logsumexp(s.flatten(), dim=0) - math.log(s.numel()) + log_n for s in (s_student, s_teacher)]
            ).exp()
            memory.z.copy_(torch.where(memory.z < 0, estimate, memory.z))
        log_z = memory.z.log()
        loss = nce_loss(s_student - log_z[0], memory.num_examples) + nce_loss(s_teacher - log_z[1], memory.num_examples)

    memory.update(indices, student_emb.detach(), teacher_emb.detach())
    return loss
