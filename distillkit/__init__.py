"""distillkit: knowledge-distillation experiments from one Hydra-configured CLI."""

from pathlib import Path

__version__ = "0.1.0"


def conf_dir() -> Path:
    """The Hydra config directory: ``distillkit/conf`` in an installed wheel, ``conf/`` in a checkout."""
    here = Path(__file__).resolve().parent
    packaged = here / "conf"
    return packaged if (packaged / "config.yaml").exists() else here.parent / "conf"
