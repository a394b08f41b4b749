"""What a method asks for: its stages (teacher source, student, data view, budget) and each stage's objective (the
weighted loss terms and the features they read). Plain data, built by ``methods/``, run by ``stages/``."""
