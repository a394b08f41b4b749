"""The bad-input catalogue, data part: every bad local file (and bad data setting) ends in one ConfigError that
names the file's key and path, what is wrong in it, and the fix; never a traceback, never the hub."""

import json

import datasets
import pytest

from distillkit.config.schema import DataConfig
from distillkit.errors import ConfigError
from distillkit.tasks.classification.data import load_task

GOOD = "text,label\ngood film,1\nbad film,0\nfine plot,1\n"


def _file(tmp_path, name, content):
    path = tmp_path / name
    if isinstance(content, list):  # rows → parquet
        datasets.Dataset.from_list(content).to_parquet(str(path))
    else:
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return str(path)


def _refused(tmp_path, train, evals, key, words, **settings):
    """Load train/eval contents (file name → content); the error must carry ``key``, name its file, say every
    one of ``words`` and a fix, in one paragraph that never mentions the hub."""
    (tname, tcontent), (ename, econtent) = train, evals
    cfg = DataConfig(
        name="local",
        source="local",
        train_file=_file(tmp_path, tname, tcontent),
        eval_file=_file(tmp_path, ename, econtent),
        **settings,
    )
    with pytest.raises(ConfigError) as info:
        load_task(cfg)
    err, message = info.value, str(info.value)
    assert err.key == key, message
    if key in ("data.train_file", "data.eval_file"):
        assert err.value == getattr(cfg, key.split(".")[1]) and message.startswith(f"{key}={err.value!r}:")
    for word in words:
        assert word in message, message
    assert err.fix and "Fix: " in message and "\n" not in message
    assert "hub" not in message.lower() and "Traceback" not in message
    return err


OK = ("train.csv", GOOD)


@pytest.mark.parametrize(
    "evals,words",
    [
        (("dev.csv", ""), ["is empty (0 bytes)"]),
        (("dev.csv", "text,label\n\n"), ["header line (text,label)", "no data rows"]),
        (("dev.csv", "   \n\n"), ["only blank lines"]),
        (
            ("dev.jsonl", '{"text": "a", "label": 0}\n\n{"text": "b", label: 1}\n'),
            ["line 3 is not valid JSON", "double quotes", "column 15"],
        ),
        (("dev.jsonl", '{"text": "a", "label": 0}\n[1, 2]\n'), ["line 2 is a JSON list, not an object"]),
        (("dev.json", '[{"text": "a", "label": 0},\n {"text": "b" "label": 1}]'), ["line 2, column 15"]),
        (("dev.json", '[{"text": "a", "label": 0}, 7]'), ["item 2 is a int, not an object"]),
        (
            ("dev.csv", "text,label\ncaf\xe9,1\n".encode("latin-1")),
            ["not UTF-8", "byte 0xe9 at byte offset 14 (line 2)", "save it as UTF-8"],
        ),
        (("dev.csv", "text,label\nnice,1\n".encode("utf-16")), ["UTF-16"]),
        (("dev.csv", bytes(range(256))), ["not a text file", "NUL byte at byte offset 0", ".parquet"]),
        (
            ("dev.csv", "text,label\nnice,1\nbad, film,0\n"),
            ["line 3 has 3 fields but the header has 2", "double quotes"],
        ),
        (("dev.csv", 'text,label\n"nice,1\nbad,0\n'), ["double quote that is never closed"]),
        (("dev.tsv", "text,label\nnice,1\n"), ["one column 'text,label'", "rename it to .csv"]),
        (("dev.parquet", GOOD), ["not a parquet file", "looks like a text file"]),
    ],
)
def test_an_unreadable_eval_file_is_named_with_its_problem(tmp_path, evals, words):
    _refused(tmp_path, OK, evals, "data.eval_file", words)


def test_a_parquet_file_named_csv(tmp_path):
    _refused(
        tmp_path, OK, ("dev.csv", [{"text": "a", "label": 0}]), "data.eval_file", ["is a parquet file", "rename it"]
    )


def test_eval_columns_that_differ_name_both_sets_and_the_eval_keys(tmp_path):
    err = _refused(
        tmp_path,
        ("train.csv", "sentence,label\ngood,1\nbad,0\n"),
        ("dev.csv", "content,label\nnice,1\nawful,0\n"),
        "data.eval_file",
        [
            "no column 'sentence' (data.text_field)",
            "its columns are: content, label",
            "The train file has: sentence, label",
            "data.eval_label_field",
        ],
        text_field="sentence",
    )
    assert err.fix.startswith("set data.eval_text_field=content.")


def test_a_missing_label_column_in_the_train_file(tmp_path):
    err = _refused(
        tmp_path,
        ("train.csv", "text,stars\ngood,1\nbad,0\n"),
        ("dev.csv", GOOD),
        "data.train_file",
        ["no column 'label' (data.label_field)", "its columns are: text, stars"],
    )
    assert err.fix.startswith("set data.label_field=stars.")


@pytest.mark.parametrize(
    "train,settings,key,words",
    [
        # data.text_field naming the label column, or a numeric one, or a column of lists
        (("train.csv", GOOD), {"text_field": "label"}, "data.text_field", ["also named by data.label_field"]),
        (
            ("train.csv", "text,label,n\na,1,5\nb,0,6\n"),
            {"text_field": "n", "eval_text_field": "text"},
            "data.train_file",
            ["column 'n' (data.text_field) holds int64 values, not text", "a text column (text)"],
        ),
        (
            ("train.parquet", [{"text": ["a", "b"], "label": 0}, {"text": ["c"], "label": 1}]),
            {},
            "data.train_file",
            ["column 'text' (data.text_field) holds lists, not text", "one string per example"],
        ),
        (
            ("train.jsonl", '{"text": "a", "label": 0}\n{"text": 5, "label": 1}\n'),
            {},
            "data.train_file",
            ["not text on line 2", "e.g. 5"],
        ),
        (
            ("train.csv", "text,label\na,0.5\nb,1.0\n"),
            {},
            "data.train_file",
            ["numbers that are not whole (0.5 on line 2)", "class ids or names"],
        ),
        (
            ("train.jsonl", '{"text": "a", "label": 0}\n{"text": "b", "label": "pos"}\n'),
            {},
            "data.train_file",
            ["mixes int (line 1) and str (line 2) labels"],
        ),
        (
            ("train.csv", "text,label\na,pos\nb,\nc,neg\nd, \ne,pos\n"),
            {},
            "data.train_file",
            [
                "2 of 5 rows with an empty text or label",
                "empty label in column 'label' (lines 3, 5)",
                "data.drop_missing=true",
            ],
        ),
        (
            ("train.csv", 'text,label\n"two\nlines",1\n,0\nc,1\n'),
            {},
            "data.train_file",
            ["1 with an empty text in column 'text' (line 4)"],
        ),
        (
            ("train.csv", "text,label\n" + "".join(f"t{i},{i % 2}\n" for i in range(300))),
            {"text_field": "label", "label_field": "text"},
            "data.train_file",
            ["holds int64 values, not text"],
        ),
        (
            ("train.csv", "text,label\n" + "".join(f"t{i},{'pos' if i % 2 else 'neg'}\n" for i in range(300))),
            {"text_field": "label", "label_field": "text"},
            "data.train_file",
            ["distinct values", "swapped"],
        ),
    ],
)
def test_bad_columns_and_values_in_the_train_file(tmp_path, train, settings, key, words):
    _refused(
        tmp_path,
        train,
        ("dev.csv", "text,label\nnice,pos\nbad,neg\n") if "pos" in str(train) else ("dev.csv", GOOD),
        key,
        words,
        **settings,
    )


def test_train_and_eval_labels_of_different_kinds(tmp_path):
    _refused(
        tmp_path,
        OK,
        ("dev.csv", "text,label\nnice,pos\n"),
        "data.eval_file",
        ["string labels in column 'label'", "the train file has integer labels"],
    )


@pytest.mark.parametrize(
    "names,words",
    [
        (["a", "b", "c"], ["id(s) [2] never occur"]),
        (["only"], ["at least two distinct"]),
    ],
)
def test_label_names_must_match_integer_labels(tmp_path, names, words):
    cfg = dict(
        name="local",
        source="local",
        train_file=_file(tmp_path, "t.csv", GOOD),
        eval_file=_file(tmp_path, "e.csv", GOOD),
        label_names=names,
    )
    with pytest.raises(ConfigError) as info:
        load_task(DataConfig(**cfg))
    assert info.value.key == "data.label_names" and all(w in str(info.value) for w in words)


def test_label_names_out_of_range_and_unnamed_strings(tmp_path):
    with pytest.raises(ConfigError, match=r"label\(s\) \[2\] outside that range"):
        load_task(
            DataConfig(
                name="local",
                source="local",
                train_file=_file(tmp_path, "t.csv", "text,label\na,1\nb,2\n"),
                eval_file=_file(tmp_path, "e.csv", GOOD),
                label_names=["x", "y"],
            )
        )
    strings = _file(tmp_path, "s.csv", "text,label\na,pos\nb,neg\n")
    with pytest.raises(ConfigError, match=r"lacks the label\(s\) \['neg'\]"):
        load_task(
            DataConfig(
                name="local", source="local", train_file=strings, eval_file=strings, label_names=["pos", "negative"]
            )
        )


def test_valid_oddities_load(tmp_path):
    """A BOM, quoted newlines, blank lines in a jsonl and a JSON array are fine, not errors."""
    train = _file(tmp_path, "t.csv", '\ufefftext,label\n"two\nlines",1\nplain,0\n')
    evals = _file(tmp_path, "e.json", json.dumps([{"text": "a", "label": 0}, {"text": "b", "label": 1}]))
    task = load_task(DataConfig(name="local", source="local", train_file=train, eval_file=evals))
    assert task.train["text"] == ["two\nlines", "plain"] and task.eval["label"] == [0, 1]
    jsonl = _file(tmp_path, "e.jsonl", '{"text": "a", "label": 0}\n\n{"text": "b", "label": 1}\n')
    assert load_task(DataConfig(name="local", source="local", train_file=train, eval_file=jsonl)).eval["text"] == [
        "a",
        "b",
    ]


def test_synthetic_refuses_settings_for_files():
    with pytest.raises(ConfigError) as info:
        load_task(DataConfig(label_names=["a", "b"]))
    assert info.value.key == "data.label_names" and "synthetic" in str(info.value)
