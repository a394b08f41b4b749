"""Causal language models: prompt → response pairs, the loss on response tokens."""
