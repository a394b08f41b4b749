"""Sequence classification (single texts or text pairs → class ids)."""
