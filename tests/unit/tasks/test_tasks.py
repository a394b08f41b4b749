"""The task table and the Task interface: every task is found through the one table (an unknown name is a
ConfigError naming task.name), the task packages import nothing of each other, shared code names no task, and the
cache keys the tasks feed (data, tokenizer, teacher settings) are the ones they had before the interface."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from distillkit import tasks
from distillkit.config.schema import TaskConfig, validate
from distillkit.config.task import DEFAULT_TASK, TASKS
from distillkit.errors import ConfigError
from tests.conftest import compose_config

PACKAGE = Path(tasks.__file__).resolve().parents[1]  # distillkit/


@pytest.mark.parametrize("name", list(TASKS))
def test_the_table_resolves_each_task(name):
    task = tasks.get(name)
    assert isinstance(task, tasks.Task) and task.name == name and task.row is TASKS[name]
    module, cls = TASKS[name].implementation.split(":")
    assert type(task).__module__ == module and type(task).__name__ == cls
    assert module.startswith(f"distillkit.tasks.{name}.")  # a task's implementation lives in its own package
    assert task.model_class().__name__.startswith("AutoModelFor")
    assert task.teacher_outputs in ("outputs", "topk") and task.metric
    assert bool(task.checkpoint_metric) == (task.row.no_eval_every is None)  # eval.every needs one


def test_the_default_task_is_the_first_row():
    assert tasks.get(None).name == tasks.get("").name == DEFAULT_TASK == next(iter(TASKS)) == TaskConfig().name


@pytest.mark.parametrize(
    "lookup",
    [
        lambda: tasks.get("image_classification"),
        lambda: TaskConfig(name="regression"),
        lambda: validate(compose_config(["task.name=summarisation"])),
    ],
)
def test_an_unknown_task_is_a_config_error_naming_task_name(lookup):
    with pytest.raises(ConfigError) as err:
        lookup()
    assert err.value.key == "task.name" and err.value.value in ("image_classification", "regression", "summarisation")
    assert all(name in err.value.fix for name in TASKS) and "docs/adding-a-task.md" in err.value.fix


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-level imports included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


@pytest.mark.parametrize("name", list(TASKS))
def test_task_packages_import_nothing_of_each_other(name):
    others = [f"distillkit.tasks.{other}" for other in TASKS if other != name]
    for path in (PACKAGE / "tasks" / name).glob("*.py"):
        bad = [m for m in _imports(path) if any(m == o or m.startswith(o + ".") for o in others)]
        assert not bad, f"{path.name} imports {bad}"
    # the interface module imports no member either: a task's own imports never pull in another task
    assert not [m for m in _imports(PACKAGE / "tasks" / "__init__.py") if m.startswith(f"distillkit.tasks.{name}")]


def _code_strings_and_names(path: Path):
    """(line, text) of the identifiers and non-docstring string constants of a module: what its code says, not its
    comments and docstrings."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node.lineno, node.value
        elif isinstance(node, ast.Name):
            yield node.lineno, node.id
        elif isinstance(node, ast.Attribute):
            yield node.lineno, node.attr
        elif isinstance(node, (ast.ImportFrom,)) and node.module:
            yield node.lineno, node.module
        elif isinstance(node, ast.Import):
            yield from ((node.lineno, a.name) for a in node.names)


def test_shared_code_never_names_a_task():
    """Outside tasks/ and the table's rows, code asks the Task object or the row, never the task's name (comments
    and docstrings may name tasks)."""
    pattern = re.compile(r"causal|causal_lm|classification")  # case-sensitive, as the grep
    table = PACKAGE / "config" / "task.py"
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.is_relative_to(PACKAGE / "tasks") or path == table:
            continue
        found += [
            f"{path.relative_to(PACKAGE)}:{line}: {text!r}"
            for line, text in _code_strings_and_names(path)
            if pattern.search(text)
        ]
    assert not found, "\n".join(found)


# The keys of the default settings of both tasks, computed by the code before the Task interface (commit 662d3bb):
# (prepared-teacher settings, data spec, embedded tokenizer spec), each store.entry_key of the dict.
KEYS = {
    (): ("8f11ff79d00d582d", "41c8d45edda223ab", "4ffd2d181a795a88"),
    ("task=causal_lm",): ("3f0be76d676ac2d4", "fb772803c5bd3769", "a4c09cb8ee03e812"),
    ("task=causal_lm", "teacher.arch.model_type=gpt2"): ("53d76e9850b78b76", "fb772803c5bd3769", "a4c09cb8ee03e812"),
    ("data.synthetic.sentences=3",): ("8f11ff79d00d582d", "8adfc1c0e70c379e", "1ad051a5eb844d28"),
}


@pytest.mark.parametrize("overrides", list(KEYS))
def test_the_tasks_keep_their_cache_keys(overrides, tmp_path):
    from distillkit import store
    from distillkit.plan import _data_spec, _teacher_settings

    cfg = validate(compose_config(list(overrides)))
    kind = tasks.get(cfg.task.name)
    data = _data_spec(cfg, tmp_path, kind)
    tokenizer = {"data": data, "vocab_size": cfg.teacher.arch.vocab_size, **kind.tokenizer_spec}
    keys = (store.entry_key(_teacher_settings(cfg, kind)), store.entry_key(data), store.entry_key(tokenizer))
    assert keys == KEYS[overrides]
    assert _data_spec(cfg, tmp_path) == data  # without the Task: the one cfg.task names
    own = set(TASKS[cfg.task.name].data_keys)
    assert not {k for name, row in TASKS.items() if name != cfg.task.name for k in row.data_keys} & set(data) - own
