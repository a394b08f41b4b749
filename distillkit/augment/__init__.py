"""Augmentation: new training examples made before training (offline) and batch transforms inside it (online)."""
