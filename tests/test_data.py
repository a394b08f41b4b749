"""Loading data from local files and local dataset directories, field mapping and its errors."""

import json

import datasets
import pytest

from distillkit.config import DataConfig
from distillkit.data import load_task, tokenize, train_wordpiece
from distillkit.errors import ConfigError


def _write(tmp_path, name, rows):
    path = tmp_path / name
    if name.endswith(".csv"):
        keys = list(rows[0])
        path.write_text(",".join(keys) + "\n" + "".join(",".join(str(r[k]) for k in keys) + "\n" for r in rows))
    elif name.endswith(".jsonl"):
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        datasets.Dataset.from_list(rows).to_parquet(str(path))
    return str(path)


ROWS = [{"review": "good food", "stars": "pos"}, {"review": "bad film", "stars": "neg"},
        {"review": "fine trip", "stars": "pos"}]


@pytest.mark.parametrize("ext", ["csv", "jsonl", "parquet"])
def test_local_files_map_fields_and_string_labels(tmp_path, ext):
    cfg = DataConfig(name="local", source="local", train_file=_write(tmp_path, f"train.{ext}", ROWS),
                     eval_file=_write(tmp_path, f"eval.{ext}", ROWS[:2]), text_field="review", label_field="stars")
    task = load_task(cfg)
    assert task.label_names == ["neg", "pos"]
    assert task.train["label"] == [1, 0, 1] and task.train["text"][0] == "good food"
    assert set(task.train.column_names) == {"text", "label"}


def test_missing_field_lists_the_columns(tmp_path):
    cfg = DataConfig(name="local", source="local", train_file=_write(tmp_path, "t.csv", ROWS),
                     eval_file=_write(tmp_path, "e.csv", ROWS), text_field="text", label_field="stars")
    with pytest.raises(ConfigError, match="review, stars") as info:
        load_task(cfg)
    assert info.value.key == "data.text_field" and info.value.value == "text"


def test_text_pairs_and_saved_dataset_directory(tmp_path):
    rows = [{"s1": "a cat", "s2": "a dog", "y": 0}, {"s1": "same", "s2": "same", "y": 1}]
    features = datasets.Features({"s1": datasets.Value("string"), "s2": datasets.Value("string"),
                                  "y": datasets.ClassLabel(names=["different", "same"])})
    split = datasets.Dataset.from_list(rows, features=features)
    datasets.DatasetDict({"train": split, "validation": split}).save_to_disk(str(tmp_path / "ds"))
    cfg = DataConfig(name="hub", source="hub", path=str(tmp_path / "ds"), text_field="s1", text_pair_field="s2",
                     label_field="y")
    task = load_task(cfg)
    assert task.has_pair and task.label_names == ["different", "same"]
    tok = train_wordpiece(["a cat", "a dog", "same"] * 5, 105, tmp_path / "tok")
    train, _ = tokenize(task, tok, 16)
    ids = train[0]["input_ids"]
    assert ids.count(tok.sep_token_id) == 2 and 1 in train[0]["token_type_ids"]  # [CLS] a [SEP] b [SEP]


def test_wrong_split_name(tmp_path):
    split = datasets.Dataset.from_list([{"text": "x", "label": 0}, {"text": "y", "label": 1}])
    datasets.DatasetDict({"train": split, "test": split}).save_to_disk(str(tmp_path / "ds"))
    with pytest.raises(ConfigError, match="use one of train, test") as info:
        load_task(DataConfig(name="hub", source="hub", path=str(tmp_path / "ds")))
    assert info.value.key == "data.eval_split"


def test_hub_dataset_offline_is_a_clear_error():
    with pytest.raises(ConfigError) as info:
        load_task(DataConfig(name="hub", source="hub", path="no-such-org/no-such-dataset"))
    assert info.value.key == "data.path" and "save_to_disk" in str(info.value)


def test_wordpiece_tokenizer_is_deterministic(tmp_path):
    texts = ["the film was not good but the ending was great"] * 30 + ["service never slow"] * 30
    a = train_wordpiece(texts, 110, tmp_path / "a")
    b = train_wordpiece(texts, 110, tmp_path / "b")
    assert a.get_vocab() == b.get_vocab()
    enc = a("the film was not good")
    assert enc["input_ids"][0] == a.cls_token_id and enc["input_ids"][-1] == a.sep_token_id
