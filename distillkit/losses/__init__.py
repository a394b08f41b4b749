"""The losses: pure functions of tensors (``logits``, ``token``, ``features``, ``relations``, ``contrastive``,
``self_distill``)."""

# The label no loss counts (prompt tokens, padding, unlabeled examples): PyTorch's cross-entropy default and
# the transformers convention, so HF collators and models agree with it.
IGNORE_INDEX = -100
