"""What a user installs: every distillkit package ships in a non-editable install."""

from tests.helpers import ROOT


def test_every_package_ships_in_a_non_editable_install():
    """`pip install .` (the README's first command) installs only the packages pyproject.toml lists: a new
    subpackage missing there works in the editable test install and fails for every user."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "distillkit").rglob("__init__.py")}
    assert found <= listed, f"add {sorted(found - listed)} to [tool.setuptools] packages"
