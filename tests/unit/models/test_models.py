"""Student derivation, layer maps, and the model checks that run before any training."""

import pytest
import torch
from transformers import AutoModelForSequenceClassification, BertConfig

from distillkit.config.schema import StudentConfig, TeacherConfig
from distillkit.errors import ConfigError
from distillkit.models import loading as models
from distillkit.tasks.classification.data import train_wordpiece
from distillkit.tasks.classification.models import student_config, teacher_config

LABELS = ["a", "b", "c"]
CLASSIFIER = AutoModelForSequenceClassification  # the classification task's models (Task.model_class)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    texts = ["the film was not good", "a fine meal but slow service", "never again", "great trip"] * 20
    return train_wordpiece(texts, 120, tmp_path_factory.mktemp("tok"))


def _teacher(tokenizer, layers=6):
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=3,
    )
    return models.build_from_config(config, seed=0, model_class=CLASSIFIER)


@pytest.mark.parametrize(
    "init,k,n,expected",
    [
        ("uniform", 6, 12, [0, 2, 4, 7, 9, 11]),  # DistilBERT's choice
        ("uniform", 4, 12, [0, 4, 7, 11]),
        ("uniform", 1, 12, [11]),
        ("first", 3, 12, [0, 1, 2]),
        ("last", 3, 12, [9, 10, 11]),
        ("random", 3, 12, None),
    ],
)
def test_select_layers(init, k, n, expected):
    assert models.select_layers(StudentConfig(num_layers=k, init=init), n) == expected


def test_select_layers_errors_name_the_range():
    with pytest.raises(ConfigError, match="exceeds the teacher's 12 layers") as info:
        models.select_layers(StudentConfig(num_layers=14), 12)
    assert info.value.key == "student.num_layers"
    with pytest.raises(ConfigError, match=r"\[12\] outside the teacher's 0..11"):
        models.select_layers(StudentConfig(num_layers=2, init="list", layers=[0, 12]), 12)


def test_derived_student_copies_the_chosen_teacher_layers(tokenizer):
    teacher = _teacher(tokenizer)
    t_cfg = teacher.config
    s_cfg, layers = student_config(StudentConfig(num_layers=2, init="list", layers=[1, 4]), t_cfg, tokenizer, LABELS)
    student = models.derive_student(teacher, s_cfg, layers, seed=0, model_class=CLASSIFIER)
    assert student.config.num_hidden_layers == 2
    for i, src in enumerate(layers):
        s_w = student.bert.encoder.layer[i].attention.self.query.weight
        assert torch.equal(s_w, teacher.bert.encoder.layer[src].attention.self.query.weight)
    assert torch.equal(student.bert.embeddings.word_embeddings.weight, teacher.bert.embeddings.word_embeddings.weight)
    assert torch.equal(student.classifier.weight, teacher.classifier.weight)


def test_random_init_does_not_copy(tokenizer):
    teacher = _teacher(tokenizer)
    s_cfg, layers = student_config(StudentConfig(num_layers=2, init="random"), teacher.config, tokenizer, LABELS)
    student = models.derive_student(teacher, s_cfg, layers, seed=0, model_class=CLASSIFIER)
    assert not torch.equal(
        student.bert.encoder.layer[0].attention.self.query.weight,
        teacher.bert.encoder.layer[0].attention.self.query.weight,
    )
    assert not torch.equal(student.bert.encoder.layer[0].attention.self.value.weight, torch.eye(16))


def test_student_from_scratch_starts_with_the_teachers_identity_attention(tokenizer):
    teacher = _teacher(tokenizer)
    s_cfg, layers = student_config(StudentConfig(num_layers=2, init="random"), teacher.config, tokenizer, LABELS)
    student = models.derive_student(teacher, s_cfg, layers, seed=0, identity_layers=1, model_class=CLASSIFIER)
    first, second = student.bert.encoder.layer[0].attention, student.bert.encoder.layer[1].attention
    width = s_cfg.hidden_size
    assert torch.equal(first.self.value.weight, torch.eye(width))
    assert torch.equal(first.output.dense.weight, torch.eye(width))
    assert not torch.equal(second.self.value.weight, torch.eye(width))
    # more identity layers than the student has: all of them, no error
    deep = models.derive_student(teacher, s_cfg, layers, seed=0, identity_layers=12, model_class=CLASSIFIER)
    assert torch.equal(deep.bert.encoder.layer[1].attention.self.value.weight, torch.eye(width))
    # a student copied from the teacher keeps the teacher's weights
    s_cfg, layers = student_config(StudentConfig(num_layers=2, init="first"), teacher.config, tokenizer, LABELS)
    copied = models.derive_student(teacher, s_cfg, layers, seed=0, identity_layers=1, model_class=CLASSIFIER)
    assert torch.equal(
        copied.bert.encoder.layer[0].attention.self.value.weight,
        teacher.bert.encoder.layer[0].attention.self.value.weight,
    )


def test_narrower_student_needs_random_init(tokenizer):
    teacher = _teacher(tokenizer)
    with pytest.raises(ConfigError, match="width differs") as info:
        student_config(StudentConfig(num_layers=2, hidden_size=8), teacher.config, tokenizer, LABELS)
    assert info.value.key == "student.init"
    s_cfg, layers = student_config(
        StudentConfig(num_layers=2, hidden_size=8, init="random"), teacher.config, tokenizer, LABELS
    )
    assert s_cfg.hidden_size == 8 and layers is None
    with pytest.raises(ConfigError, match="does not divide"):
        student_config(StudentConfig(num_layers=2, hidden_size=9, init="random"), teacher.config, tokenizer, LABELS)


def test_local_checkpoint_teacher_and_head_detection(tokenizer, tmp_path):
    teacher = _teacher(tokenizer)
    teacher.config.architectures = ["BertForSequenceClassification"]
    models.save_model(teacher, tokenizer, tmp_path / "t")
    config, fitted = teacher_config(TeacherConfig(path=str(tmp_path / "t")), tokenizer, LABELS)
    assert fitted and config.num_labels == 3
    _, fitted = teacher_config(TeacherConfig(path=str(tmp_path / "t")), tokenizer, LABELS + ["d"])
    assert not fitted  # 3-way head, 4 labels: it must be prepared


def test_missing_hub_model_offline_says_so_and_how_to_fix():
    with pytest.raises(ConfigError) as info:
        teacher_config(TeacherConfig(path="no-such-org/no-such-model"), None, LABELS)
    message = str(info.value)
    assert info.value.key == "teacher.path" and "HF_HUB_OFFLINE=1" in message and "local directory" in message


def test_student_with_another_tokenizer_is_rejected(tokenizer, tmp_path):
    other = train_wordpiece(["completely different words here"] * 10, 110, tmp_path / "other")
    with pytest.raises(ConfigError, match="different tokenizer") as info:
        models.check_tokenizers(tokenizer, other, "/models/other")
    assert info.value.key == "student.path"
    models.check_tokenizers(tokenizer, tokenizer, "/models/same")


def test_hub_student_vocabulary_must_match(tokenizer, tmp_path):
    teacher = _teacher(tokenizer)
    small = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    AutoModelForSequenceClassification.from_config(small).save_pretrained(tmp_path / "s")
    with pytest.raises(ConfigError, match="vocabulary of 50 tokens"):
        student_config(StudentConfig(path=str(tmp_path / "s")), teacher.config, tokenizer, LABELS)


def test_identity_attention_makes_cls_start_as_the_mean_of_the_layer_inputs(tokenizer):
    from transformers import AutoConfig

    config = AutoConfig.for_model(
        "megatron-bert",
        vocab_size=len(tokenizer),
        hidden_size=16,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=3,
        attention_probs_dropout_prob=0.0,
        hidden_dropout_prob=0.0,
    )
    model = models.build_from_config(config, seed=0, model_class=CLASSIFIER).eval()
    models.identity_attention(model, 1)
    first, second = model.bert.encoder.layer[0].attention, model.bert.encoder.layer[1].attention
    assert torch.equal(first.self.value.weight, torch.eye(16)) and torch.equal(first.output.dense.weight, torch.eye(16))
    assert not torch.equal(second.self.value.weight, torch.eye(16))  # only the first layer
    # with uniform attention (query/key zeroed) the attention block adds exactly the mean of its normed inputs
    with torch.no_grad():
        first.self.query.weight.zero_(), first.self.query.bias.zero_()
        ids = torch.tensor([[2, 5, 7, 9, 3]])
        x = model.bert.embeddings(input_ids=ids)
        out = first(x)[0] if isinstance(first(x), tuple) else first(x)
    normed = first.ln(x)
    assert torch.allclose(out - x, normed.mean(1, keepdim=True).expand_as(x), atol=1e-5)


# ------------------------------------------------------------------ local directories that cannot be loaded
def _break_config(**fields):
    def mutate(path):
        import json

        config = json.loads((path / "config.json").read_text())
        config.update(fields)
        (path / "config.json").write_text(json.dumps(config))

    return mutate


def _remove(*names):
    def mutate(path):
        for name in names:
            (path / name).unlink()

    return mutate


@pytest.fixture(scope="module")
def saved_teacher(tokenizer, tmp_path_factory):
    path = tmp_path_factory.mktemp("saved") / "teacher"
    models.save_model(_teacher(tokenizer, layers=2), tokenizer, path)
    return path


@pytest.mark.parametrize(
    "mutate,text",
    [
        (_remove("config.json"), "is a directory but has no config.json"),
        (lambda p: (p / "config.json").write_text('{"model_type": "bert",'), "config.json that is not valid JSON"),
        (
            _break_config(model_type="my-bert", auto_map={"AutoConfig": "code.MyConfig"}),
            "contains custom code (config.json's auto_map, model_type 'my-bert'); distillkit does not run it unless "
            "teacher.trust_remote_code=true",
        ),
        (_break_config(model_type="no-such-architecture"), "model_type 'no-such-architecture', which transformers"),
        (_break_config(model_type=None), "config.json without model_type"),
        (_remove("model.safetensors"), "has a config.json but no weights file"),
        (_remove("tokenizer.json", "tokenizer_config.json"), "has no tokenizer files"),
    ],
)
def test_a_local_directory_that_cannot_be_loaded_says_what_is_wrong(saved_teacher, tmp_path, mutate, text, tokenizer):
    import shutil

    path = tmp_path / "teacher"
    shutil.copytree(saved_teacher, path)
    mutate(path)
    with pytest.raises(ConfigError) as info:  # the plan reads the tokenizer first, then the config
        cfg = TeacherConfig(path=str(path))
        models.load_tokenizer("teacher.path", cfg.path)
        teacher_config(cfg, tokenizer, LABELS)
    message = str(info.value)
    assert info.value.key == "teacher.path" and text in message and "Fix:" in message
    assert "hub" not in message.split("Fix:")[0]  # a local directory is never reported as a hub problem


def test_local_directory_problems_are_found_for_the_student_and_at_load_time(saved_teacher, tmp_path, tokenizer):
    import shutil

    path = tmp_path / "student"
    shutil.copytree(saved_teacher, path)
    (path / "model.safetensors").unlink()
    teacher_cfg, _ = teacher_config(TeacherConfig(path=str(saved_teacher)), tokenizer, LABELS)
    with pytest.raises(ConfigError, match="no weights file") as info:  # at plan time, before any training
        student_config(StudentConfig(path=str(path)), teacher_cfg, tokenizer, LABELS)
    assert info.value.key == "student.path"
    with pytest.raises(ConfigError, match="no weights file"):
        models.load_pretrained("student.path", str(path), None, model_class=CLASSIFIER)
    with pytest.raises(ConfigError, match="looks like a local path but does not exist"):
        teacher_config(TeacherConfig(path=str(tmp_path / "nowhere")), tokenizer, LABELS)
    # custom code is accepted once trusted; then transformers' own failure (no code file here) is reported
    custom = tmp_path / "custom"
    shutil.copytree(saved_teacher, custom)
    _break_config(model_type="my-bert", auto_map={"AutoConfig": "code.MyConfig"})(custom)
    with pytest.raises(ConfigError, match="is a local directory that transformers could not load"):
        teacher_config(TeacherConfig(path=str(custom), trust_remote_code=True), tokenizer, LABELS)
