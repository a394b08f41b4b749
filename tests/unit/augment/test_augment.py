"""The augmentation group wired into runs: config and errors, the offline pool (cache, provenance, duplicates,
labels), what the teacher sees, the online options inside the trainer, and every option end to end."""

from __future__ import annotations

import dataclasses
import math
import sys

import pytest
import torch

from distillkit.config.augment import OFFLINE, ONLINE
from distillkit.config.schema import validate
from distillkit.errors import ConfigError
from tests.conftest import TINY, compose_config
from tests.helpers import ROOT

OPTIONS = OFFLINE + ONLINE
CONF = ROOT / "conf" / "augmentation"


def _cfg(overrides=(), cache_dir=None):
    extra = [f"cache_dir={cache_dir}"] if cache_dir else []
    return validate(compose_config(TINY + extra + list(overrides)))


def _plan(overrides, cache_dir):
    from distillkit.plan import make_plan

    cfg = _cfg(overrides, cache_dir)
    return cfg, make_plan(cfg)


# ----------------------------------------------------------------------------------------------- config
def test_every_option_has_a_file_and_selects_only_itself():
    assert sorted(p.stem for p in CONF.glob("*.yaml")) == sorted(OPTIONS + ("none",))
    assert validate(compose_config()).augmentation.selected == []
    for option in OPTIONS:
        aug = validate(compose_config([f"augmentation={option}"])).augmentation
        assert aug.selected == [option] and aug.name == option
        text = (CONF / f"{option}.yaml").read_text()
        assert "python -m distillkit" in text and "20" in text  # a command and a cited source (year)
    aug = validate(compose_config(["augmentation=[synonym,mixup]", "augmentation.synonym.p=0.3"])).augmentation
    assert aug.offline == ["synonym"] and aug.online == ["mixup"] and aug.synonym.p == 0.3


def test_label_keeping_defaults_and_override():
    aug = validate(compose_config(["augmentation=[synonym,mlm_replace,teacher_pseudo_data]"])).augmentation
    assert [aug.keeps_labels(o) for o in aug.offline] == [True, False, False]
    aug = validate(
        compose_config(["augmentation=[synonym,mlm_replace,teacher_pseudo_data]", "augmentation.keep_labels=true"])
    ).augmentation
    assert [aug.keeps_labels(o) for o in aug.offline] == [True, True, False]  # pseudo-data never has labels


@pytest.mark.parametrize(
    "overrides,key",
    [
        (["augmentation=synonym", "augmentation.copies=0"], "augmentation.copies"),
        (["augmentation=synonym", "augmentation.synonym.p=1.5"], "augmentation.synonym.p"),
        (
            ["augmentation=token_perturbation", "augmentation.token_perturbation.delete=-0.1"],
            "augmentation.token_perturbation.delete",
        ),
        (["augmentation=mixup", "augmentation.mixup.share=2"], "augmentation.mixup.share"),
        (["augmentation=mixup", "augmentation.mixup.alpha=0"], "augmentation.mixup.alpha"),
        (["augmentation=consistency", "augmentation.consistency.noise=blur"], "augmentation.consistency.noise"),
        (
            ["augmentation=teacher_pseudo_data", "augmentation.teacher_pseudo_data.min_confidence=2"],
            "augmentation.teacher_pseudo_data.min_confidence",
        ),
        (["augmentation=[mixup,cutmix]"], "augmentation"),
        (["data.synthetic.sentences=0"], "data.synthetic.sentences"),
    ],
)
def test_bad_values_fail_at_validation(overrides, key):
    with pytest.raises(ConfigError) as info:
        _cfg(overrides)
    assert info.value.key == key, str(info.value)


def test_settings_of_an_unselected_option_are_refused_before_hydra_starts():
    from distillkit import preflight

    with pytest.raises(ConfigError) as info:
        preflight.check(["augmentation=synonym", "augmentation.mixup.alpha=1"])
    assert info.value.key == "augmentation.mixup.alpha" and "does not select" in str(info.value)
    with pytest.raises(ConfigError):
        preflight.check(["-m", "augmentation=synonym,consistency", "augmentation.mixup.alpha=1"])
    assert preflight.check(["-m", "augmentation=synonym,mixup", "augmentation.mixup.alpha=1"]).jobs == 2
    with pytest.raises(ConfigError) as info:
        preflight.check(["augmentation=no_such_option"])
    assert info.value.key == "augmentation" and "synonym" in info.value.fix


@pytest.mark.parametrize(
    "overrides,key,words",
    [
        (["method=none", "augmentation=consistency"], "augmentation", "trains without one"),
        (["method=none", "augmentation=mlm_replace"], "augmentation", "teacher alone"),
        (
            ["method=tinybert", "augmentation=mixup", "augmentation.mixup.targets=mixed"],
            "augmentation.mixup.targets",
            "hidden states",
        ),
        (["augmentation=back_translation"], "augmentation.back_translation.forward", "HF_HUB_OFFLINE"),
        (
            [
                "teacher=none",
                "method=born_again",
                "method.gen0=labels",
                "augmentation=teacher_pseudo_data",
                "augmentation.teacher_pseudo_data.min_confidence=0.5",
            ],
            "augmentation.teacher_pseudo_data.min_confidence",
            "no teacher",
        ),
        (
            ["augmentation=mlm_replace", "augmentation.mlm_replace.model=/no/such/mlm"],
            "augmentation.mlm_replace.model",
            "/no/such/mlm",
        ),
        (
            ["augmentation=mlm_replace", "data=local", "data.train_file=x.csv", "data.eval_file=x.csv"],
            "augmentation.mlm_replace.model",
            "no MLM head",
        ),
    ],
)
def test_plan_errors_before_any_weight_is_loaded(overrides, key, words, cache_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.csv").write_text("text,label\na b c,0\nd e f,1\n")
    with pytest.raises(ConfigError) as info:
        _plan(overrides, cache_dir)
    assert info.value.key == key and words in str(info.value), str(info.value)


def test_missing_wordnet_stops_the_plan_with_the_install_command(cache_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.csv").write_text("text,label\nthe film was good,0\nthe food was bad,1\n")
    monkeypatch.setitem(sys.modules, "nltk", None)  # as if nltk were not installed
    from distillkit.augment import wordnet

    if hasattr(wordnet.wordnet_synonyms, "cache_clear"):
        wordnet.wordnet_synonyms.cache_clear()
    for option in ("synonym", "token_perturbation"):
        with pytest.raises(ConfigError) as info:
            _plan([f"augmentation={option}", "data=local", "data.train_file=x.csv", "data.eval_file=x.csv"], cache_dir)
        assert info.value.key == f"augmentation.{option}.source" and "nltk" in str(info.value)


def _wordnet_available() -> bool:
    try:
        from distillkit.augment.wordnet import check_wordnet

        check_wordnet("x")
        return True
    except ConfigError:
        return False


@pytest.mark.skipif(not _wordnet_available(), reason="nltk or its WordNet corpus is not installed")
def test_real_text_gets_wordnet_synonyms(cache_dir, tmp_path, monkeypatch):
    """data=local: source=auto means WordNet; the new texts differ from their sources only in replaced words."""
    from distillkit.augment import offline

    monkeypatch.chdir(tmp_path)
    rows = [
        "The movie was a wonderful surprise.",
        "I did not enjoy the soup at all.",
        "Our hotel room was small but clean.",
        "This album is a masterpiece of modern music.",
    ] * 5
    (tmp_path / "x.csv").write_text("text,label\n" + "".join(f"{t},{i % 2}\n" for i, t in enumerate(rows)))
    cfg, plan = _plan(
        [
            "augmentation=synonym",
            "augmentation.synonym.p=0.5",
            "data=local",
            "data.train_file=x.csv",
            "data.eval_file=x.csv",
        ],
        cache_dir,
    )
    made = offline.build(cfg, plan).rows
    assert made and all(len(r["text"].split()) >= len(rows[r["source"]].split()) for r in made)
    for r in made:
        source = rows[r["source"]].split()
        assert "not" in r["text"].split() or "not" not in source  # negations stay
    assert any("film" in r["text"].lower() or "picture" in r["text"].lower() for r in made if r["source"] % 4 == 0)


def test_mixup_refuses_a_model_without_reachable_input_embeddings(cache_dir, monkeypatch):
    from transformers import AutoModelForSequenceClassification

    real = AutoModelForSequenceClassification.from_config

    def opaque(config, **kwargs):
        model = real(config, **kwargs)
        model.get_input_embeddings = lambda: (_ for _ in ()).throw(NotImplementedError("no embeddings"))
        return model

    monkeypatch.setattr(AutoModelForSequenceClassification, "from_config", opaque)
    with pytest.raises(ConfigError) as info:
        _plan(["augmentation=mixup"], cache_dir)
    assert info.value.value == "mixup" and "cutmix" in info.value.fix
    _plan(["augmentation=cutmix"], cache_dir)  # cutmix mixes token ids: any model


# ------------------------------------------------------------------------------------------ offline pool
def test_the_cache_key_changes_with_every_setting(cache_dir):
    from distillkit.augment.offline import entry_spec
    from distillkit.store import entry_key

    changes = {
        "synonym": {"p": 0.3},
        "token_perturbation": {"insert": 0.2, "delete": 0.2, "swap": 0.2},
        "sentence_shuffle": {"min_sentences": 3},
        "teacher_pseudo_data": {"strength": 0.5, "size": 10, "source": "mlm"},
        "mlm_replace": {"p": 0.2, "top_k": 5, "train_steps": 50},
        "back_translation": {
            "forward": "a",
            "backward": "b",
            "sample": False,
            "num_beams": 4,
            "top_p": 0.5,
            "temperature": 0.7,
            "max_new_tokens": 9,
        },
    }
    cfg, plan = _plan(["augmentation=synonym"], cache_dir)
    texts = list(plan.task.train["text"])
    for option, settings in changes.items():
        base = dataclasses.replace(
            cfg.augmentation, **{option: dataclasses.replace(getattr(cfg.augmentation, option), enabled=True)}
        )
        key = entry_key(entry_spec(dataclasses.replace(cfg, augmentation=base), plan, option, texts))
        for field, value in settings.items():
            opts = dataclasses.replace(getattr(base, option), **{field: value})
            changed = dataclasses.replace(cfg, augmentation=dataclasses.replace(base, **{option: opts}))
            assert entry_key(entry_spec(changed, plan, option, texts)) != key, (option, field)
        for common in ({"copies": 2}, {"seed": 7}):
            changed = dataclasses.replace(cfg, augmentation=dataclasses.replace(base, **common))
            assert entry_key(entry_spec(changed, plan, option, texts)) != key, (option, common)
        if option == "synonym":  # the key holds the resolved synonym source: auto is the lexicon here
            same = dataclasses.replace(base, synonym=dataclasses.replace(base.synonym, source="lexicon"))
            assert entry_key(entry_spec(dataclasses.replace(cfg, augmentation=same), plan, option, texts)) == key
        fewer = entry_spec(dataclasses.replace(cfg, augmentation=base), plan, option, texts[:-1])
        assert entry_key(fewer) != key, option


def test_offline_pool_provenance_labels_duplicates_and_cache(cache_dir, tmp_path):
    from distillkit.augment import offline

    cfg, plan = _plan(["augmentation=[synonym,token_perturbation]", "augmentation.copies=2"], cache_dir)
    texts, labels = list(plan.task.train["text"]), list(plan.task.train["label"])
    first = offline.build(cfg, plan)
    assert set(first.made) == {"synonym", "token_perturbation"} and not any(first.cached.values())
    assert len(first.rows) == sum(first.kept.values()) and first.duplicates == sum(first.made.values()) - len(
        first.rows
    )
    new_texts = [r["text"] for r in first.rows]
    assert len(set(new_texts)) == len(new_texts) and not set(new_texts) & set(texts)  # no exact duplicates
    for r in first.rows:
        assert r["label"] == labels[r["source"]] and r["how"] in ("synonym", "token_perturbation")
    again = offline.build(cfg, plan)
    assert all(again.cached.values()) and again.rows == first.rows
    other = offline.build(dataclasses.replace(cfg, seed=cfg.seed + 1), plan)
    assert [r["text"] for r in other.rows] != new_texts  # another seed, other new texts


def test_new_examples_are_logged_beside_their_sources_and_sent_to_wandb_as_a_table(caplog):
    import logging

    from distillkit.augment.offline import AugmentedSet, show
    from distillkit.losses import IGNORE_INDEX

    texts = ["the soup was bland .", "the film was gripping .", "the hotel was noisy ."]
    rows = [
        {"text": "the soup was stale .", "label": 1, "source": 0, "how": "synonym"},
        {"text": "the movie was gripping .", "label": 2, "source": 1, "how": "synonym"},
        {"text": "the hotel was crowded .", "label": IGNORE_INDEX, "source": 2, "how": "mlm_replace"},
    ]
    logged = []
    run = type("Run", (), {"log": lambda self, data: logged.append(data)})()
    with caplog.at_level(logging.INFO, logger="distillkit"):
        show(AugmentedSet(rows, 0.1), texts, 2, run)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("augmentation example")]
    assert len(lines) == 2 and {"(synonym, label 1)", "(mlm_replace, teacher only)"} <= {
        line.split(":")[0].replace("augmentation example ", "") for line in lines
    }
    assert "source: the hotel was noisy ." in "".join(lines) and "new:    the hotel was crowded ." in "".join(lines)
    table = logged[0]["augmentation/examples"]
    assert table.columns == ["option", "source_index", "source", "augmented", "label"] and len(table.data) == 3
    assert table.data[2] == ["mlm_replace", 2, "the hotel was noisy .", "the hotel was crowded .", IGNORE_INDEX]


def test_sentence_shuffle_on_the_multi_sentence_mode(cache_dir):
    from distillkit.augment import offline

    cfg, plan = _plan(["augmentation=sentence_shuffle", "data.synthetic.sentences=3", "data.max_length=128"], cache_dir)
    rows = offline.build(cfg, plan).rows
    texts = list(plan.task.train["text"])
    assert len(rows) > 0.8 * len(texts)
    for r in rows[:50]:
        source = texts[r["source"]]
        assert sorted(r["text"].split()) == sorted(source.split()) and r["text"] != source


def test_mlm_replace_uses_the_teachers_own_mlm_head_when_it_has_one(tmp_path):
    from types import SimpleNamespace

    from transformers import BertConfig, BertForMaskedLM, BertForSequenceClassification

    from distillkit.augment.ops import resolve_mlm

    config = BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=16)
    BertForMaskedLM(config).save_pretrained(tmp_path / "with-head")
    BertForSequenceClassification(config).save_pretrained(tmp_path / "classifier")
    cfg = lambda path, source="local": SimpleNamespace(  # noqa: E731 (a one-line local function)
        teacher=SimpleNamespace(path=str(path), revision=None), data=SimpleNamespace(source=source, name=source)
    )
    assert resolve_mlm("auto", None, cfg(tmp_path / "with-head"), "k") == "teacher"
    assert resolve_mlm("auto", None, cfg(tmp_path / "classifier", "synthetic"), "k") == "embedded"
    with pytest.raises(ConfigError) as info:
        resolve_mlm("teacher", None, cfg(tmp_path / "classifier", "synthetic"), "k")
    assert "no MLM head" in str(info.value) and "bert-base-uncased" in info.value.fix
    assert resolve_mlm("/some/mlm", None, cfg(tmp_path / "classifier"), "k") == "/some/mlm"


# ------------------------------------------------------------------------------------------ online options
def _tiny_pair(tmp_path):
    """A teacher and a student (no dropout), a tokenizer and a collated batch of 8 texts."""
    from transformers import BertConfig, BertForSequenceClassification, DataCollatorWithPadding

    from distillkit.tasks.classification.data import train_wordpiece
    from distillkit.tasks.classification.synthetic import generate

    texts = [r["text"] for r in generate(seed=0, n_train=64, n_eval=1, label_noise=0.0).train]
    tokenizer = train_wordpiece(texts, 200, tmp_path / "tok")
    make = lambda layers, seed: (  # noqa: E731 (a one-line local function)
        torch.manual_seed(seed),
        BertForSequenceClassification(
            BertConfig(
                vocab_size=len(tokenizer),
                hidden_size=16,
                num_hidden_layers=layers,
                num_attention_heads=2,
                intermediate_size=32,
                num_labels=8,
                hidden_dropout_prob=0.0,
                attention_probs_dropout_prob=0.0,
                initializer_range=0.5,
            )
        ),
    )[1]
    enc = [dict(tokenizer(t), labels=i % 8) for i, t in enumerate(texts[:8])]
    teacher, student = make(2, 0), make(1, 1)
    with torch.no_grad():  # an untrained head gives near-uniform outputs: make the inputs matter
        teacher.classifier.weight.mul_(100)
    return teacher, student, tokenizer, DataCollatorWithPadding(tokenizer)(enc)


def _trainer(student, teacher, tokenizer, tmp_path, overrides):
    from transformers import TrainingArguments

    from distillkit.augment.online import BatchAugmenter
    from distillkit.config.schema import KDMethodConfig
    from distillkit.methods import build_objective
    from distillkit.teachers.sources import FrozenModel
    from distillkit.training.trainer import DistillationTrainer

    aug = validate(compose_config(overrides)).augmentation
    args = TrainingArguments(output_dir=str(tmp_path / "t"), use_cpu=True, report_to="none")
    return DistillationTrainer(
        model=student,
        args=args,
        objective=build_objective(KDMethodConfig()),
        source=FrozenModel(teacher),
        augment=BatchAugmenter(aug, tokenizer, seed=0),
    )


def test_pseudo_data_keeps_the_inputs_the_teacher_is_confident_about(tmp_path):
    from distillkit.augment.offline import AugmentedSet, filter_confident
    from distillkit.losses import IGNORE_INDEX
    from distillkit.tasks.classification.synthetic import generate

    teacher, _, tokenizer, _ = _tiny_pair(tmp_path)
    texts = [r["text"] for r in generate(seed=1, n_train=40, n_eval=1, label_noise=0.0).train]
    rows = [{"text": t, "label": IGNORE_INDEX, "source": i, "how": "teacher_pseudo_data"} for i, t in enumerate(texts)]
    rows.append({"text": "kept whatever", "label": 3, "source": 0, "how": "synonym"})
    with torch.no_grad():
        enc = tokenizer(texts, padding=True, return_tensors="pt")
        confidence = teacher(**enc).logits.softmax(-1).amax(-1)
    threshold = float(confidence.median())
    pool = AugmentedSet(list(rows), 0.0)
    filter_confident(pool, threshold, teacher, tokenizer, 64, "cpu", batch_size=7)
    expected = {t for t, c in zip(texts, confidence.tolist()) if c >= threshold}
    assert {r["text"] for r in pool.rows if r["how"] == "teacher_pseudo_data"} == expected
    assert pool.filtered == len(texts) - len(expected) > 0 and pool.rows[-1]["how"] == "synonym"


@pytest.mark.parametrize("targets", ["teacher", "mixed"])
@pytest.mark.parametrize("option", ["mixup", "cutmix"])
def test_mixing_nothing_is_plain_kd(option, targets, tmp_path):
    """share=0 (every λ = 1): the loss is the plain KD loss, through the embeddings path for mixup, and through
    the mixed soft targets (log-probabilities, a shift of the logits) for targets=mixed."""
    teacher, student, tokenizer, batch = _tiny_pair(tmp_path)
    trainer = _trainer(
        student,
        teacher,
        tokenizer,
        tmp_path,
        [f"augmentation={option}", f"augmentation.{option}.share=0", f"augmentation.{option}.targets={targets}"],
    )
    student.train()
    mixed = trainer.compute_loss(student, batch)
    trainer.augment = None
    plain = trainer.compute_loss(student, batch)
    assert torch.allclose(mixed, plain, atol=1e-6)


def test_mixup_changes_the_loss_and_mixes_labels_by_lambda(tmp_path):
    teacher, student, tokenizer, batch = _tiny_pair(tmp_path)
    trainer = _trainer(student, teacher, tokenizer, tmp_path, ["augmentation=mixup", "augmentation.mixup.share=1"])
    mixed = trainer.augment.mix(batch, torch.Generator().manual_seed(0))
    lam = 1 - mixed.weight_other
    assert ((lam >= 0.5) & (lam <= 1)).all() and (lam < 1).any() and "mix" in mixed.batch
    student.train()
    assert not torch.allclose(
        trainer.compute_loss(student, batch),
        (setattr(trainer, "augment", None), trainer.compute_loss(student, batch))[1],
    )


def test_cutmix_target_weights_are_the_pasted_share(tmp_path):
    teacher, student, tokenizer, batch = _tiny_pair(tmp_path)
    trainer = _trainer(
        student,
        teacher,
        tokenizer,
        tmp_path,
        ["augmentation=cutmix", "augmentation.cutmix.share=1", "augmentation.cutmix.targets=mixed"],
    )
    mixed = trainer.augment.mix(batch, torch.Generator().manual_seed(3))
    special = set(tokenizer.all_special_ids)
    for i in range(len(batch["labels"])):
        real = [
            j
            for j, (t, m) in enumerate(zip(batch["input_ids"][i], batch["attention_mask"][i]))
            if m and int(t) not in special
        ]
        changed = sum(int(batch["input_ids"][i][j] != mixed.batch["input_ids"][i][j]) for j in real)
        assert changed <= round(float(mixed.weight_other[i]) * len(real))  # a pasted token may equal the old one
        assert math.isclose(
            float(mixed.weight_other[i]) * len(real), round(float(mixed.weight_other[i]) * len(real)), abs_tol=1e-4
        )


def test_consistency_is_zero_when_the_view_is_the_input_and_the_student_is_the_teacher(tmp_path):
    import copy

    teacher, _, tokenizer, batch = _tiny_pair(tmp_path)
    student = copy.deepcopy(teacher)
    trainer = _trainer(
        student,
        teacher,
        tokenizer,
        tmp_path,
        ["augmentation=consistency", "augmentation.consistency.p=0", "augmentation.consistency.on_view=true"],
    )
    student.train()
    generator = torch.Generator().manual_seed(0)
    clean = teacher(**{k: batch[k] for k in ("input_ids", "attention_mask")}).logits
    assert float(trainer._consistency(student, batch, clean, generator).detach()) == pytest.approx(0.0, abs=1e-6)
    trainer.augment.consistency = dataclasses.replace(trainer.augment.consistency, p=0.5)
    assert float(trainer._consistency(student, batch, clean, generator).detach()) > 1e-3
