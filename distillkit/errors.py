"""The one exception type users see: a misconfiguration or bad input, reported as one paragraph.

Every check that can fail on user input raises ``ConfigError`` with the key, the value and the fix.
The entry point prints the message (no traceback) and exits with status 2.
"""


class ConfigError(Exception):
    """Bad configuration or input. ``str(err)`` is the whole message shown to the user."""

    def __init__(self, key: str, value, problem: str, fix: str):
        self.key, self.value, self.problem, self.fix = key, value, problem, fix
        super().__init__(f"{key}={value!r}: {problem} Fix: {fix}")


def require(condition: bool, key: str, value, problem: str, fix: str) -> None:
    """Raise ``ConfigError(key, value, problem, fix)`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(key, value, problem, fix)


def one_of(key: str, value, options) -> None:
    """``value`` must be one of ``options``."""
    options = list(options)
    require(value in options, key, value, "is not a valid choice.", f"use one of {', '.join(map(str, options))}.")


def positive(key: str, value, fix: str = "use a value > 0.") -> None:
    """``value`` must be a number > 0."""
    require(value is not None and value > 0, key, value, "must be positive.", fix)


def count_or_null(key: str, value, null_means: str, example) -> None:
    """``value`` must be null (``null_means``) or a count >= 1."""
    require(
        value is None or value >= 1, key, value, "must be >= 1 or null.", f"use null ({null_means}) or e.g. {example}."
    )


def unit_interval(key: str, value) -> None:
    """``value`` must lie in [0, 1]."""
    require(0.0 <= value <= 1.0, key, value, "is outside [0, 1].", "use a value between 0 and 1 inclusive.")


def non_negative(key: str, value) -> None:
    """A loss weight or count: ``value`` must be >= 0."""
    require(value is not None and value >= 0, key, value, "must not be negative.", "use 0 (off) or a positive value.")


def first_line(err: BaseException) -> str:
    """How a ConfigError quotes a library's exception: its type and the first line of its message (160 characters)."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0][:160] if lines else ''}"


class TrainingDiverged(Exception):
    """Training produced a non-finite loss or gradient norm. ``str(err)`` is the whole one-paragraph message
    (stage, step, what was non-finite, the fix); the CLI writes it to error.txt and exits with status 3."""


class Interrupted(BaseException):
    """SIGTERM, raised in the main thread like KeyboardInterrupt (SIGINT), so the run can record why it stopped."""

    def __init__(self, signal_name: str):
        self.signal_name = signal_name
        super().__init__(signal_name)
