"""Mapping a train and an eval split onto the task's columns (``text``, [``text_pair``], ``label``).

Every check a real file needs, each ending in one ``ConfigError`` that names the file (or the hub split),
what is wrong and the fix: the columns exist (per split, since an eval file may name them differently:
``data.eval_text_field`` etc.), text columns hold text, labels are class names or integer ids of one kind
in both splits, no text or label is empty (or those rows are dropped with ``data.drop_missing=true``),
and ``data.label_names`` agree with the labels found.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from distillkit.config.schema import DataConfig
from distillkit.errors import ConfigError, require

if TYPE_CHECKING:  # annotations only: datasets is imported where data are loaded
    import datasets

log = logging.getLogger("distillkit")

EVAL_KEYS_NOTE = (
    "Each split may name its columns differently: data.eval_text_field, data.eval_text_pair_field and "
    "data.eval_label_field name the eval split's own (null = the train split's)."
)
LABEL_KINDS = ("classlabel", "int", "text", "bool")


@dataclass
class Split:
    """One split on its way to the task, and what its messages need: where it came from."""

    name: str  # "train" | "eval"
    data: datasets.Dataset
    columns: dict  # canonical name → (config key, column), e.g. {"text": ("data.eval_text_field", "content")}
    file_key: str | None = None  # "data.train_file" / "data.eval_file" for a local file; None for a hub split
    source: str | None = None  # the file's path, or the hub split's name
    _lines: list | None = None

    @property
    def what(self) -> str:
        return f"the {self.name} file" if self.file_key else f"the {self.name} split '{self.source}'"

    def error(self, field: str, problem: str, fix: str) -> ConfigError:
        """A local file's problem is reported against the file; a hub split's against the column's key."""
        if self.file_key:
            return ConfigError(self.file_key, self.source, problem, fix)
        key, column = self.columns[field]
        return ConfigError(key, column, f"[{self.what}] {problem}", fix)

    def where(self, rows: list[int]) -> str:
        """'lines 3, 8' (file lines) or 'rows 3, 8' (data rows from 1), for the first five of ``rows``."""
        if self.file_key and self._lines is None:
            from distillkit.tasks.files import row_lines

            self._lines = row_lines(self.source, len(self.data)) or []
        shown = ", ".join(str(self._lines[r] if self._lines else r + 1) for r in rows[:5])
        more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
        return f"{'line' if self._lines else 'row'}{'s' if len(rows) > 1 else ''} {shown}{more}"


def map_splits(cfg: DataConfig, train: Split, evals: Split):
    """(train, eval, label names, rows dropped per split): both splits checked and mapped to text /
    [text_pair] / label with labels 0..C-1. Valid input maps exactly as it always has."""
    for split, other in ((train, evals), (evals, train)):
        _check_columns(split, other)
    for split in (train, evals):
        _check_text_types(split)
        _check_label_type(split)
    _check_label_kinds(train, evals)
    dropped = {split.name: _missing(cfg, split) for split in (train, evals)}
    names, to_id = _labels(cfg, train, evals)
    return _convert(train, to_id), _convert(evals, to_id), names, dropped


def kind(feature) -> str:
    """text | int | float | bool | null | classlabel | json | other."""
    from datasets import ClassLabel, Value

    if isinstance(feature, ClassLabel):
        return "classlabel"
    if isinstance(feature, Value):
        dtype = feature.dtype
        if dtype in ("string", "large_string"):
            return "text"
        if dtype.startswith(("int", "uint")):
            return "int"
        for name in ("float", "bool", "null"):
            if dtype.startswith(name):
                return name
    return "json" if type(feature).__name__ == "Json" else "other"


def _describe(feature) -> str:
    from datasets import Value

    if isinstance(feature, Value):
        return f"{feature.dtype} values"
    if isinstance(feature, dict):
        return "nested records (JSON objects)"
    name = type(feature).__name__
    return "lists" if name in ("List", "LargeList", "Sequence") else f"{name} values"


def _column(split: Split, field: str) -> list:
    """The column's values as Python objects, through Arrow (iterating a ``datasets`` column is ~100× slower)."""
    col = split.columns[field][1]
    if kind(split.data.features[col]) == "json":
        return list(split.data[col])  # decoded JSON values
    return split.data.with_format("arrow")[col].to_pylist()


def _check_columns(split: Split, other: Split) -> None:
    cols = split.data.column_names
    missing = [(field, key, col) for field, (key, col) in split.columns.items() if col not in cols]
    if not missing:
        used = [(key, col) for key, col in split.columns.values()]
        for i, (key, col) in enumerate(used):
            twice = [k for k, c in used[i + 1 :] if c == col]
            require(
                not twice,
                key,
                col,
                f"is also named by {twice[0] if twice else ''}: each of text, text pair and "
                "label needs its own column.",
                f"point {key} or {twice[0] if twice else ''} at another column.",
            )
        return
    problem = (
        f"has no column {', '.join(repr(col) + f' ({key})' for _, key, col in missing)}; "
        f"its columns are: {', '.join(cols)}."
    )
    if set(cols) != set(other.data.column_names):
        problem += f" {other.what[0].upper()}{other.what[1:]} has: {', '.join(other.data.column_names)}."
    if len(cols) == 1 and ("," in cols[0] or "\t" in cols[0]):
        raise split.error(
            missing[0][0],
            f"has its header read as the one column {cols[0]!r}: its delimiter is not the "
            "one its extension says (.csv: comma, .tsv: tab).",
            "rename it to .csv if it is comma-separated, to .tsv if it is tab-separated.",
        )
    prefix = "data.eval_" if split.name == "eval" else "data."
    sets = " ".join(f"{prefix}{field}_field={_guess(split, other, field) or '<column>'}" for field, _, _ in missing)
    raise split.error(missing[0][0], problem, f"set {sets}. {EVAL_KEYS_NOTE}")


def _guess(split: Split, other: Split, field: str) -> str | None:
    """The one column ``field`` most likely means: of the right kind, unused, and preferably not in the other
    split (the column the other split calls by another name)."""
    taken = {col for f, (_, col) in split.columns.items() if f != field}
    features = split.data.features
    fits = [
        c
        for c in split.data.column_names
        if c not in taken and kind(features[c]) in (("text",) if field != "label" else LABEL_KINDS)
    ]
    fresh = [c for c in fits if c not in other.data.column_names]
    return next((group[0] for group in (fresh, fits) if len(group) == 1), None)


def _check_text_types(split: Split) -> None:
    features = split.data.features
    for field in ("text", "text_pair"):
        if field not in split.columns:
            continue
        key, col = split.columns[field]
        found = kind(features[col])
        if found in ("text", "null"):
            continue
        if found == "json":  # some rows text, some not
            values = _column(split, field)
            bad = [i for i, v in enumerate(values) if v is not None and not isinstance(v, str)]
            if bad:
                raise split.error(
                    field,
                    f"column '{col}' ({key}) holds values that are not text on {split.where(bad)}, "
                    f"e.g. {values[bad[0]]!r}.",
                    "write every text as a string (in JSON: in quotes).",
                )
            continue
        texts = [c for c in split.data.column_names if kind(features[c]) == "text"]
        problem = f"column '{col}' ({key}) holds {_describe(features[col])}, not text."
        if col == split.columns["label"][1]:
            problem += " It is the label column."
        fix_key = ("data.eval_" if split.name == "eval" else "data.") + f"{field}_field"
        fix = (
            f"point {fix_key} at a text column ({', '.join(texts)})."
            if texts
            else f"point {fix_key} at a column of strings; this one has none."
        )
        if _describe(features[col]) == "lists":
            json_note = (
                "; a .json file that is one object of columns is read as a single row: write one record per line"
                if str(split.source).lower().endswith(".json")
                else ""
            )
            fix = f"give one string per example (join the pieces){json_note}. Or {fix}"
        raise split.error(field, problem, fix)


def _check_label_type(split: Split) -> None:
    key, col = split.columns["label"]
    feature = split.data.features[col]
    found = kind(feature)
    if found in LABEL_KINDS + ("null",):
        return
    values = _column(split, "label")
    fix = f"point {key} at a column of class names or integer class ids: distillkit trains classifiers."
    if found == "float":
        bad = [i for i, v in enumerate(values) if not _is_missing(v) and not float(v).is_integer()]
        if bad:
            raise split.error(
                "label",
                f"label column '{col}' holds numbers that are not whole ({values[bad[0]]!r} on "
                f"{split.where(bad)}): a classifier needs class ids or names, not a score.",
                fix,
            )
        return  # whole numbers read as floats (a csv's int column with empty cells): used as ints
    if found == "json":
        first = {}
        for i, v in enumerate(values):
            if v is not None:
                first.setdefault(type(v).__name__, i)
        kinds = " and ".join(f"{t} ({split.where([i])})" for t, i in first.items())
        raise split.error(
            "label",
            f"label column '{col}' mixes {kinds} labels.",
            "write every label the same way: all class names, or all integer ids.",
        )
    raise split.error("label", f"label column '{col}' ({key}) holds {_describe(feature)}, not class labels.", fix)


def _label_kind(split: Split) -> str | None:
    found = kind(split.data.features[split.columns["label"][1]])
    return {"int": "integer", "float": "integer", "bool": "integer", "text": "string"}.get(found)


def _check_label_kinds(train: Split, evals: Split) -> None:
    a, b = _label_kind(train), _label_kind(evals)
    if a and b and a != b:
        raise evals.error(
            "label",
            f"has {b} labels in column '{evals.columns['label'][1]}', but {train.what} has "
            f"{a} labels in column '{train.columns['label'][1]}'.",
            "write the labels of both splits the same way (all class names, or all integer ids), "
            "or check data.eval_label_field.",
        )


def _is_missing(value) -> bool:
    return (
        value is None
        or (isinstance(value, float) and math.isnan(value))
        or (isinstance(value, str) and not value.strip())
    )


def _missing(cfg: DataConfig, split: Split) -> int:
    """Refuse rows with an empty text or label, saying how many and where, or drop them with
    ``data.drop_missing=true`` (and log how many): an empty label must never become a class of its own."""
    empty = {}
    for field in split.columns:
        rows = [i for i, v in enumerate(_column(split, field)) if _is_missing(v)]
        if rows:
            empty[field] = rows
    if not empty:
        return 0
    drop = sorted(set().union(*empty.values()))
    parts = "; ".join(
        f"{len(rows)} with an empty {'label' if f == 'label' else 'text'} in column "
        f"'{split.columns[f][1]}' ({split.where(rows)})"
        for f, rows in empty.items()
    )
    if not cfg.drop_missing:
        raise split.error(
            next(iter(empty)),
            f"has {len(drop)} of {len(split.data)} rows with an empty text or label "
            f"(blank, null, or in a csv also NA/NaN/None): {parts}.",
            "fill them in or delete those rows, "
            "or add data.drop_missing=true to drop them (the run logs how many it drops).",
        )
    if len(drop) == len(split.data):
        raise split.error(
            next(iter(empty)),
            f"has no row with both a text and a label: {parts}.",
            "check the column keys (data.text_field, data.label_field and their data.eval_* forms).",
        )
    dropped = set(drop)
    split.data = split.data.select([i for i in range(len(split.data)) if i not in dropped])
    log.info(
        "data.drop_missing=true: dropped %d of %d rows of %s: %s.",
        len(drop),
        len(split.data) + len(drop),
        split.what,
        parts,
    )
    return len(drop)


def _labels(cfg: DataConfig, train: Split, evals: Split):
    """The label names (index = class id) and the map from label values to ids (None: already ids)."""
    from datasets import ClassLabel

    given = list(cfg.label_names) if cfg.label_names else None
    feature = train.data.features[train.columns["label"][1]]
    if isinstance(feature, ClassLabel):  # ids are already 0..C-1
        names = list(feature.names)
        require(
            given is None or len(given) == len(names),
            "data.label_names",
            given,
            f"gives {len(given or [])} names but the dataset's labels have {len(names)} classes ({', '.join(names)}).",
            f"give {len(names)} names in class-id order, or drop data.label_names.",
        )
        return given or names, None
    values = set()
    for split in (train, evals):
        column = _column(split, "label")
        values |= (
            {int(v) for v in column} if kind(split.data.features[split.columns["label"][1]]) == "float" else set(column)
        )
    if given is None:  # integer labels in numeric order (0..C-1 keep their ids), string labels alphabetically
        ordered = sorted(values, key=lambda v: (isinstance(v, str), v))
        names, to_id = [str(v) for v in ordered], {v: i for i, v in enumerate(ordered)}
    elif all(isinstance(v, str) for v in values):  # label_names gives the order of string labels
        _agree(given, sorted(values - set(given)), [n for n in given if n not in values], "label")
        names, to_id = given, {name: i for i, name in enumerate(given)}
    else:  # label_names names the integer ids 0..C-1
        _agree(
            given,
            sorted(v for v in values if not 0 <= v < len(given)),
            [i for i in range(len(given)) if i not in values],
            "id",
        )
        names, to_id = given, {v: int(v) for v in values}
    require(
        len(names) >= 2,
        train.columns["label"][0],
        train.columns["label"][1],
        f"has {len(names)} distinct label(s).",
        "a classification task needs at least two classes; check the field.",
    )
    rows = len(train.data) + len(evals.data)
    if len(names) > 100 and len(names) >= 0.8 * rows:  # nearly one class per row: a text column
        raise train.error(
            "label",
            f"label column '{train.columns['label'][1]}' has {len(names)} distinct values "
            f"in {rows} rows (train and eval): it looks like text, not class labels.",
            "check data.label_field and data.text_field (are they swapped?).",
        )
    return names, to_id


def _agree(given: list, unnamed: list, unused: list, what: str) -> None:
    if what == "id":
        problem = (
            f"names ids 0..{len(given) - 1}, but the data has label(s) {unnamed} outside that range."
            if unnamed
            else f"names {len(given)} classes, but id(s) {unused} never occur in the data."
        )
        fix = "give one name per class id, in id order (id 0 first)."
    else:
        problem = (
            f"lacks the label(s) {unnamed} found in the data."
            if unnamed
            else f"names {unused}, which never occur(s) in the data."
        )
        fix = "list every label value of the data exactly once, in the order the class ids should take."
    if unnamed or unused:
        raise ConfigError("data.label_names", given, problem, fix)


def _convert(split: Split, to_id):
    rename = {col: field for field, (_, col) in split.columns.items()}
    data = split.data.remove_columns([c for c in split.data.column_names if c not in rename])
    data = data.rename_columns({k: v for k, v in rename.items() if k != v})
    if to_id is not None:
        data = data.map(lambda row: {"label_id": to_id[row["label"]]}, remove_columns=["label"])
        return data.rename_column("label_id", "label")
    # GLUE-style test splits carry label -1: keep only labelled rows.
    return data.filter(lambda row: row["label"] is not None and row["label"] >= 0)
