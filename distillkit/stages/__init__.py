"""Stages: what a stage is made of (``types``), planning the list, running one, checkpoints and resume."""
