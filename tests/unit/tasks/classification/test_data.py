"""Loading data from local files and local dataset directories, field mapping and its errors."""

import json

import datasets
import pytest

from distillkit.config.schema import ArchConfig, DataConfig, TeacherConfig
from distillkit.errors import ConfigError
from distillkit.tasks.classification.data import load_task, tokenize, train_wordpiece
from distillkit.tasks.splits import stratified_sample


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


ROWS = [
    {"review": "good food", "stars": "pos"},
    {"review": "bad film", "stars": "neg"},
    {"review": "fine trip", "stars": "pos"},
]


@pytest.mark.parametrize("ext", ["csv", "jsonl", "parquet"])
def test_local_files_map_fields_and_string_labels(tmp_path, ext):
    cfg = DataConfig(
        name="local",
        source="local",
        train_file=_write(tmp_path, f"train.{ext}", ROWS),
        eval_file=_write(tmp_path, f"eval.{ext}", ROWS[:2]),
        text_field="review",
        label_field="stars",
    )
    task = load_task(cfg)
    assert task.label_names == ["neg", "pos"]
    assert task.train["label"] == [1, 0, 1] and task.train["text"][0] == "good food"
    assert set(task.train.column_names) == {"text", "label"}


def test_missing_field_lists_the_columns(tmp_path):
    cfg = DataConfig(
        name="local",
        source="local",
        train_file=_write(tmp_path, "t.csv", ROWS),
        eval_file=_write(tmp_path, "e.csv", ROWS),
        text_field="text",
        label_field="stars",
    )
    with pytest.raises(ConfigError, match="its columns are: review, stars") as info:
        load_task(cfg)
    assert info.value.key == "data.train_file" and info.value.value == cfg.train_file  # the file, then the field
    assert "no column 'text' (data.text_field)" in str(info.value) and "data.text_field=review" in info.value.fix


def test_text_pairs_and_saved_dataset_directory(tmp_path):
    rows = [{"s1": "a cat", "s2": "a dog", "y": 0}, {"s1": "same", "s2": "same", "y": 1}]
    features = datasets.Features(
        {
            "s1": datasets.Value("string"),
            "s2": datasets.Value("string"),
            "y": datasets.ClassLabel(names=["different", "same"]),
        }
    )
    split = datasets.Dataset.from_list(rows, features=features)
    datasets.DatasetDict({"train": split, "validation": split}).save_to_disk(str(tmp_path / "ds"))
    cfg = DataConfig(
        name="hub", source="hub", path=str(tmp_path / "ds"), text_field="s1", text_pair_field="s2", label_field="y"
    )
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


def _local(tmp_path, train: str, evals: str, **settings) -> DataConfig:
    (tmp_path / "train.csv").write_text(train)
    (tmp_path / "dev.csv").write_text(evals)
    return DataConfig(
        name="local",
        source="local",
        train_file=str(tmp_path / "train.csv"),
        eval_file=str(tmp_path / "dev.csv"),
        **settings,
    )


def test_each_split_has_its_own_column_names(tmp_path):
    cfg = _local(
        tmp_path,
        "sentence,s2,y\ngood,a,1\nbad,b,0\n",
        "content,c2,gold\nnice,c,1\nawful,d,0\n",
        text_field="sentence",
        text_pair_field="s2",
        label_field="y",
        eval_text_field="content",
        eval_text_pair_field="c2",
        eval_label_field="gold",
    )
    task = load_task(cfg)
    assert task.has_pair and set(task.eval.column_names) == {"text", "text_pair", "label"}
    assert task.eval.to_list() == [
        {"text": "nice", "text_pair": "c", "label": 1},
        {"text": "awful", "text_pair": "d", "label": 0},
    ]
    assert task.train["text"] == ["good", "bad"]


def test_label_names_name_integer_labels_in_the_exported_config(tmp_path):
    from distillkit.tasks.classification.models import teacher_config

    cfg = _local(
        tmp_path,
        "text,label\ngood,1\nbad,0\nfine,1\n",
        "text,label\nnice,1\nawful,0\n",
        label_names=["negative", "positive"],
    )
    task = load_task(cfg)
    assert task.label_names == ["negative", "positive"] and task.train["label"] == [1, 0, 1]  # ids unchanged
    tok = train_wordpiece(["good bad fine nice awful"] * 5, 100, tmp_path / "tok")
    teacher = TeacherConfig(arch=ArchConfig(num_layers=2, hidden_size=32, num_heads=2, intermediate_size=64))
    config, _ = teacher_config(teacher, tok, task.label_names)
    assert config.id2label == {0: "negative", 1: "positive"} and config.label2id == {"negative": 0, "positive": 1}
    unnamed = load_task(_local(tmp_path, "text,label\ngood,1\nbad,0\n", "text,label\nnice,1\n"))
    assert unnamed.label_names == ["0", "1"]  # without names: as before


def test_label_names_order_string_labels(tmp_path):
    task = load_task(
        _local(tmp_path, "text,label\ngood,pos\nbad,neg\n", "text,label\nnice,pos\n", label_names=["pos", "neg"])
    )
    assert task.label_names == ["pos", "neg"] and task.train["label"] == [0, 1] and task.eval["label"] == [0]


def test_drop_missing_drops_and_counts_rows_with_an_empty_text_or_label(tmp_path, caplog):
    train = "text,label\ngood,pos\n,neg\nbad,\nfine,pos\n  ,pos\nawful,neg\n"
    cfg = _local(tmp_path, train, "text,label\nnice,pos\nmeh,\n")
    with pytest.raises(ConfigError, match="3 of 6 rows"):
        load_task(cfg)
    with caplog.at_level("INFO", logger="distillkit"):
        task = load_task(DataConfig(**{**cfg.__dict__, "drop_missing": True}))
    assert task.dropped == {"train": 3, "eval": 1}
    assert task.train["text"] == ["good", "fine", "awful"] and task.eval["text"] == ["nice"]
    assert task.label_names == ["neg", "pos"]  # no class for the empty label
    assert "dropped 3 of 6 rows of the train file" in caplog.text and "dropped 1 of 2" in caplog.text


def test_drop_missing_restores_integer_labels(tmp_path):
    """A csv's integer column with an empty cell reads as floats; once the row is dropped the labels are ints."""
    task = load_task(_local(tmp_path, "text,label\na,0\nb,\nc,1\n", "text,label\nd,1\ne,0\n", drop_missing=True))
    assert task.label_names == ["0", "1"] and task.train["label"] == [0, 1] and task.dropped["train"] == 1


def test_stratified_sample_keeps_shares_by_largest_remainder():
    labels = [0] * 5 + [1] * 3 + [2] * 2
    picked = stratified_sample(labels, 5, 0)
    assert picked == sorted(picked) and len(set(picked)) == 5
    counts = [sum(labels[i] == y for i in picked) for y in range(3)]
    assert counts == [3, 1, 1]  # 2.5, 1.5, 1.0: floors 2, 1, 1; the one left goes to the first of the .5 ties


def test_max_samples_draw_a_seeded_stratified_sample(tmp_path):
    rows = "".join(f"pos text {i},pos\n" for i in range(200)) + "".join(f"neg text {i},neg\n" for i in range(100))
    cfg = _local(tmp_path, "text,label\n" + rows, "text,label\n" + rows, max_train_samples=30, max_eval_samples=60)
    task = load_task(cfg)
    assert len(task.train) == 30 and task.train["label"].count(1) == 20 and task.train["label"].count(0) == 10
    assert len(task.eval) == 60 and task.eval["label"].count(1) == 40  # the first 60 rows would all be "pos"
    assert load_task(cfg).train["text"] == task.train["text"]  # same sample_seed: same rows
    other = load_task(DataConfig(**{**cfg.__dict__, "sample_seed": 1}))
    assert other.train["text"] != task.train["text"] and other.train["label"].count(1) == 20
    whole = load_task(DataConfig(**{**cfg.__dict__, "max_train_samples": 300, "max_eval_samples": None}))
    assert whole.train["text"] == [f"pos text {i}" for i in range(200)] + [f"neg text {i}" for i in range(100)]


def test_new_data_keys_compose_from_the_command_line(tmp_path):
    from distillkit.config.schema import validate
    from tests.conftest import compose_config

    (tmp_path / "t.csv").write_text("text,label\na,0\n")
    cfg = validate(
        compose_config(
            [
                "data=local",
                f"data.train_file={tmp_path / 't.csv'}",
                f"data.eval_file={tmp_path / 't.csv'}",
                "data.eval_text_field=content",
                "data.label_names=[negative,positive]",
                "data.drop_missing=true",
                "data.sample_seed=3",
            ]
        )
    )
    assert cfg.data.eval_text_field == "content" and cfg.data.label_names == ["negative", "positive"]
    assert cfg.data.drop_missing is True and cfg.data.sample_seed == 3
