"""Teacher and student models, and the checks between them.

Everything that can be checked from model *configs* and tokenizers (layer counts, widths, the layer map,
vocabularies) is checked in ``plan_models`` before any weights are loaded or trained. The student is
either loaded (hub id / local directory) or derived from the teacher: the teacher's config with fewer
layers (optionally narrower), initialised from chosen teacher layers.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path

import torch

from distillkit.config.schema import StudentConfig
from distillkit.errors import ConfigError, first_line, require

# Matches the layer index in parameter names of the common encoder/decoder stacks:
# BERT/RoBERTa "encoder.layer.3.", DistilBERT "transformer.layer.3.", GPT-2 "h.3.", Llama "layers.3.".
LAYER_KEY = re.compile(r"(^|\.)(layer|layers|h)\.(\d+)\.")  # group 3: the layer index


def _hub_error(key: str, path: str, err: Exception) -> ConfigError:
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    why = (
        "it is not a local directory and the hub is switched off (HF_HUB_OFFLINE=1)"
        if offline
        else "it is not a local directory with a config.json, and it could not be fetched from the hub"
    )
    return ConfigError(
        key,
        path,
        f"could not be loaded: {why} ({first_line(err)}).",
        f"check the id, run once with network to fill the cache, or set {key} to a local directory "
        "saved with save_pretrained.",
    )


def looks_local(path: str) -> bool:
    """A path no hub id can be: absolute, ./ or ../ relative, ~, or an existing file system entry."""
    return os.path.exists(path) or path.startswith(("/", "./", "../", "~", "\\")) or os.path.isabs(path)


_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
)


def _local_problem(
    key: str, path: str, trust_remote_code: bool, weights: bool = False, failed: bool = False
) -> ConfigError | None:
    """What is wrong with local checkpoint directory ``path``, as the ConfigError to raise; None if nothing
    visible is (then a load failure is reported with transformers' own words, see ``_load_error``). A
    config without model_type counts only once loading ``failed``: transformers may still tell the
    architecture from the directory's name."""
    import json

    from transformers import CONFIG_MAPPING

    trust_key = key.split(".")[0] + ".trust_remote_code"
    if not os.path.isdir(path):
        what = "is a file, not a directory" if os.path.exists(path) else "does not exist"
        return ConfigError(
            key,
            path,
            f"looks like a local path but {what}.",
            "give the directory a model was saved to with save_pretrained (it holds config.json), "
            "or a hub id such as bert-base-uncased.",
        )
    config_file = Path(path) / "config.json"
    if not config_file.is_file():
        return ConfigError(
            key,
            path,
            "is a directory but has no config.json, so it is not a saved model.",
            "point at the directory save_pretrained wrote (config.json and the weights), e.g. the "
            "student/ folder of a run, not its parent.",
        )
    try:
        config = json.loads(config_file.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        return ConfigError(
            key,
            path,
            f"has a config.json that is not valid JSON ({err}).",
            "re-save the model with save_pretrained, or repair config.json.",
        )
    model_type, custom = config.get("model_type"), "auto_map" in config
    if custom and model_type not in CONFIG_MAPPING and not trust_remote_code:
        return ConfigError(
            key,
            path,
            f"contains custom code (config.json's auto_map, model_type {model_type!r}); "
            f"distillkit does not run it unless {trust_key}=true.",
            f"if you trust the code in {path}, add {trust_key}=true.",
        )
    if not custom and model_type not in CONFIG_MAPPING and (model_type or failed):
        import transformers

        problem = (
            f"has a config.json with model_type {model_type!r}, which transformers "
            f"{transformers.__version__} does not know."
            if model_type
            else "has a config.json without model_type, so transformers cannot tell the architecture."
        )
        return ConfigError(
            key,
            path,
            problem,
            "re-save the model with save_pretrained (it writes model_type), or "
            "upgrade transformers if the architecture is newer than this version.",
        )
    if weights and not any((Path(path) / name).is_file() for name in _WEIGHTS):
        return ConfigError(
            key,
            path,
            f"has a config.json but no weights file ({', '.join(_WEIGHTS)}).",
            "save the model with model.save_pretrained(directory), which writes the weights, or "
            "copy the weights file into the directory.",
        )
    return None


def _load_error(key: str, path: str, err: Exception, trust_remote_code: bool, weights: bool = False) -> ConfigError:
    """A failed load as a ConfigError: what is wrong with a local directory, else the hub wording."""
    if not looks_local(path):
        return _hub_error(key, path, err)
    return _local_problem(key, path, trust_remote_code, weights, failed=True) or ConfigError(
        key,
        path,
        f"is a local directory that transformers could not load ({first_line(err)}).",
        "check that the directory was written by save_pretrained with a compatible transformers version.",
    )


def check_local_checkpoint(key: str, path: str | None, trust_remote_code: bool) -> None:
    """At plan time: a local model directory must hold a readable config and weights (hub ids pass)."""
    if path is not None and looks_local(path):
        problem = _local_problem(key, path, trust_remote_code, weights=True)
        if problem is not None:
            raise problem


def auto_config(key: str, path: str, revision, trust_remote_code: bool):
    """The config of checkpoint ``path`` (a hub id or a local directory); a failure is a ConfigError naming ``key``."""
    from transformers import AutoConfig

    check_local_checkpoint(key, path, trust_remote_code)
    try:
        return AutoConfig.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code)
    except Exception as err:  # OSError, ValueError, EnvironmentError: all mean "cannot load"
        raise _load_error(key, path, err, trust_remote_code) from None


def load_tokenizer(key: str, path: str, revision=None, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    if key == "teacher.path":  # read before the teacher's config: say first what is wrong with the model
        check_local_checkpoint(key, path, trust_remote_code)
    if looks_local(path) and os.path.isdir(path) and not any((Path(path) / f).is_file() for f in _TOKENIZER_FILES):
        raise ConfigError(
            key,
            path,
            f"has no tokenizer files (none of {', '.join(_TOKENIZER_FILES)}).",
            "save the tokenizer next to the model with tokenizer.save_pretrained(directory).",
        )
    try:
        return AutoTokenizer.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code)
    except Exception as err:
        if looks_local(path) and os.path.isdir(path):
            raise ConfigError(
                key,
                path,
                f"has tokenizer files that could not be loaded ({first_line(err)}).",
                "re-save the tokenizer with tokenizer.save_pretrained(directory).",
            ) from None
        raise _load_error(key, path, err, trust_remote_code) from None


def select_layers(cfg: StudentConfig, teacher_layers: int) -> list[int] | None:
    """Which teacher layer initialises each student layer (None for init=random)."""
    k, n = cfg.num_layers, teacher_layers
    if cfg.init == "random":
        return None
    if cfg.init == "list":
        bad = [i for i in cfg.layers if not 0 <= i < n]
        require(
            not bad,
            "student.layers",
            cfg.layers,
            f"has layer(s) {bad} outside the teacher's 0..{n - 1}.",
            f"use 0-based indices below {n}.",
        )
        return list(cfg.layers)
    require(
        k <= n,
        "student.num_layers",
        k,
        f"exceeds the teacher's {n} layers, so init={cfg.init} cannot pick them.",
        f"use at most {n} layers, or student.init=random for a deeper student.",
    )
    if cfg.init == "first":
        return list(range(k))
    if cfg.init == "last":
        return list(range(n - k, n))
    if k == 1:
        return [n - 1]
    # uniform: spread from the first to the last layer; 12→6 gives DistilBERT's [0, 2, 4, 7, 9, 11].
    return [round(i * (n - 1) / (k - 1)) for i in range(k)]


def derive_config(cfg: StudentConfig, teacher_cfg):
    """A student's config derived from the teacher's: ``student.num_layers`` layers, narrowed where the student
    group sets a width (then its layers cannot be copied from the teacher's), checked. The task fits its head and
    picks the teacher layers it copies (``select_layers``)."""
    config = copy.deepcopy(teacher_cfg)
    config.num_hidden_layers = cfg.num_layers
    narrowed = False
    for key, attr in (
        ("hidden_size", "hidden_size"),
        ("num_heads", "num_attention_heads"),
        ("intermediate_size", "intermediate_size"),
    ):
        value = getattr(cfg, key)
        if value is not None and value != getattr(config, attr):
            setattr(config, attr, value)
            narrowed = True
            if key == "num_heads" and hasattr(config, "num_key_value_heads"):
                config.num_key_value_heads = value  # a narrowed decoder: one key/value head per query head
    require(
        config.hidden_size % config.num_attention_heads == 0,
        "student.num_heads",
        config.num_attention_heads,
        f"does not divide the student's hidden size {config.hidden_size}.",
        "set student.num_heads to a divisor of student.hidden_size.",
    )
    if narrowed:
        require(
            cfg.init == "random",
            "student.init",
            cfg.init,
            f"copies teacher layers, but the student's width differs from the teacher's "
            f"(hidden {config.hidden_size} vs {teacher_cfg.hidden_size}), so the weights do not fit.",
            "use student.init=random for a narrower student, or drop the width overrides.",
        )
    return config


def check_tokenizers(teacher_tok, student_tok, student_path: str) -> None:
    """Teacher and student must map text to the same ids, or logits and features do not correspond."""
    same = teacher_tok.get_vocab() == student_tok.get_vocab()
    require(
        same,
        "student.path",
        student_path,
        f"uses a different tokenizer from the teacher ({len(student_tok)} vs {len(teacher_tok)} tokens, or "
        "the same size with different ids).",
        "pick a student trained with the teacher's tokenizer, or derive one from the teacher (student=bert-6l etc.).",
    )


def build_from_config(config, seed: int, identity_layers: int = 0, *, model_class):
    """A ``model_class`` model (the task's Auto class) from scratch; the attention value/output of its first
    ``identity_layers`` layers start as the identity (``identity_attention``; capped at the model's depth), as the
    embedded teacher does."""
    torch.manual_seed(seed)
    model = model_class.from_config(config)
    if identity_layers > 0:
        identity_attention(model, min(identity_layers, config.num_hidden_layers))
    return model


def identity_attention(model: torch.nn.Module, layers: int) -> None:
    """Initialise the attention value and output projections of the first ``layers`` layers as the identity
    (BERT-style layouts): at the start each token, [CLS] included, receives the attention-weighted mean of
    the layer's inputs instead of a near-zero product of two random matrices, so the classifier reads a
    bag of the sentence's words from the first step."""
    for layer in model.base_model.encoder.layer[:layers]:
        attention = layer.attention
        for linear in (attention.self.value, attention.output.dense):
            with torch.no_grad():
                linear.weight.copy_(torch.eye(linear.weight.shape[0], linear.weight.shape[1]))
                linear.bias.zero_()


def load_pretrained(key: str, path: str, config, revision=None, trust_remote_code=False, *, model_class, **load_kwargs):
    """The checkpoint at ``path`` as a ``model_class`` model (the task's Auto class, with its ``load_kwargs``); a
    failure is a ConfigError naming ``key``."""
    try:
        return model_class.from_pretrained(
            path, config=config, revision=revision, trust_remote_code=trust_remote_code, **load_kwargs
        )
    except ConfigError:
        raise
    except Exception as err:
        raise _load_error(key, path, err, trust_remote_code, weights=True) from None


def derive_student(
    teacher: torch.nn.Module, config, layers: list[int] | None, seed: int, identity_layers: int = 0, *, model_class
):
    """A fresh ``model_class`` student from ``config``; unless ``layers`` is None, every parameter is copied from the
    teacher, layer i of the student from teacher layer ``layers[i]`` (embeddings, pooler and head as is).
    A student from scratch (``layers`` None) starts as the embedded teacher did: the attention value/output
    of its first ``identity_layers`` layers as the identity (see ``identity_attention``)."""
    student = build_from_config(config, seed, identity_layers if layers is None else 0, model_class=model_class)
    if layers is None:
        return student
    source = teacher.state_dict()
    target = student.state_dict()
    for name in target:
        match = LAYER_KEY.search(name)
        src = name
        if match:
            i = int(match.group(3))
            src = name[: match.start(3)] + str(layers[i]) + name[match.end(3) :]
        if src not in source or source[src].shape != target[name].shape:
            raise ConfigError(
                "student.init",
                "teacher layers",
                f"cannot initialise {name} from the teacher ({'missing' if src not in source else 'shape differs'}).",
                "use student.init=random, or a student of the teacher's architecture.",
            )
        target[name] = source[src].clone()
    student.load_state_dict(target)
    return student


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def save_model(model, tokenizer, directory: Path) -> None:
    """``save_pretrained`` of the model and its tokenizer: loadable by the task's Auto class."""
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside any (Distributed)DataParallel wrappers."""
    while isinstance(model, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
        model = model.module
    return model
