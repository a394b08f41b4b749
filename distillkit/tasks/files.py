"""The user's own data files (csv, tsv, json, jsonl, parquet), read one at a time, with errors that say
which file, what is wrong in it (the line, the byte, the columns) and the fix.

``datasets`` reports a bad local file as a generation error from deep inside its builder, naming neither
the line nor the cause. So cheap checks run first (size, binary content, UTF-8, a csv with only a
header), and when the builder still fails the file is re-scanned to find the line at fault. Nothing
here touches the hub: a local path never involves it.
"""

from __future__ import annotations

import codecs
import json
import logging
import os
import re

from distillkit.config.schema import LOCAL_FORMATS
from distillkit.errors import ConfigError

EXTENSIONS = ", ".join(sorted(LOCAL_FORMATS))
_CHUNK = 1 << 20
_UTF8_FIX = (
    "save it as UTF-8 (e.g. `iconv -f cp1252 -t utf-8 IN > OUT`, or 'CSV UTF-8' in a spreadsheet's "
    "Save As): csv, tsv and json files are read as UTF-8."
)
_JSON_FIX = (
    'write one JSON object per line, e.g. {"text": "a fine film", "label": 1} (JSON Lines), or, in a '
    ".json file, one array of such objects."
)


def read_local(key: str, path: str):
    """``path`` as a ``datasets.Dataset`` of its rows; any problem raises ``ConfigError(key, path, ...)``."""
    ext = os.path.splitext(path)[1].lower()
    if os.path.getsize(path) == 0:
        raise ConfigError(key, path, "is empty (0 bytes).", "check the path, or write the examples into it.")
    if LOCAL_FORMATS[ext] == "parquet":
        _check_parquet(key, path)
    else:
        _check_text(key, path)
        _check_has_rows(key, path, ext)
    data = _load(key, path, ext)
    if len(data) == 0:
        raise ConfigError(
            key,
            path,
            f"has no data rows (its columns: {', '.join(data.column_names)}).",
            "add the examples, one per row.",
        )
    return data


def _load(key: str, path: str, ext: str):
    import datasets

    kwargs = {"delimiter": "\t"} if ext == ".tsv" else {}
    quiet = logging.getLogger("datasets")  # the builder logs its own traceback-like lines; the error says it all
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        return datasets.load_dataset(LOCAL_FORMATS[ext], data_files={"train": path}, split="train", **kwargs)
    except Exception as err:  # the builders raise DatasetGenerationError, ArrowInvalid, ValueError, ...
        raise _diagnose(key, path, ext, err) from None
    finally:
        quiet.setLevel(level)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__


def _diagnose(key: str, path: str, ext: str, err: Exception) -> ConfigError:
    """Why the builder failed, as precisely as a second look at the file can tell."""
    cause = err.__cause__ or err.__context__ or err  # DatasetGenerationError wraps the reader's own error
    message = _first_line(cause)
    if ext in (".json", ".jsonl"):
        problem = json_problem(path)
        if problem:
            return ConfigError(key, path, problem, _JSON_FIX)
    if ext in (".csv", ".tsv"):
        sep = "tab" if ext == ".tsv" else "comma"
        fields = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", message)
        if fields:
            expected, line, saw = fields.groups()
            return ConfigError(
                key,
                path,
                f"line {line} has {saw} fields but the header has {expected}.",
                f"put double quotes around fields that contain a {sep}, or remove the extra field on line {line}.",
            )
        if "EOF inside string" in message:
            return ConfigError(
                key,
                path,
                f"has a double quote that is never closed ({message}).",
                'close the quote, or double quotes inside a quoted field ("" stands for ").',
            )
    if "corresponds to no data" in message:
        return ConfigError(key, path, "has no data rows.", "add the examples, one per row.")
    kind = LOCAL_FORMATS[ext] if ext != ".tsv" else "tsv"
    return ConfigError(
        key,
        path,
        f"could not be read as {kind} ({type(cause).__name__}: {message}).",
        f"check that it is a valid {kind} file with one example per row, and that its extension "
        f"says its format (one of {EXTENSIONS}).",
    )


def json_problem(path: str) -> str | None:
    """The first line of a json/jsonl file that is not a JSON object, said in words; None when all are."""
    with open(path, encoding="utf-8-sig") as f:
        head = f.read(1024).lstrip()
    if head.startswith("["):
        return _json_array_problem(path)
    with open(path, encoding="utf-8-sig") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                if number == 1 and line.strip() == "{":  # a pretty-printed document, not JSON Lines
                    return _json_document_problem(path)
                return f"line {number} is not valid JSON ({err.msg} at column {err.colno}): {line.strip()[:80]!r}."
            if not isinstance(record, dict):
                return f"line {number} is a JSON {type(record).__name__}, not an object: {line.strip()[:80]!r}."
    return None


def _json_document_problem(path: str) -> str:
    with open(path, encoding="utf-8-sig") as f:
        try:
            document = json.load(f)
        except json.JSONDecodeError as err:
            return f"is not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}."
    if isinstance(document, dict):
        return "holds a single JSON object spread over several lines, not one record per line."
    return f"holds a JSON {type(document).__name__}, not records."


def _json_array_problem(path: str) -> str | None:
    with open(path, encoding="utf-8-sig") as f:
        try:
            document = json.load(f)
        except json.JSONDecodeError as err:
            return f"is not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}."
    bad = next((i for i, record in enumerate(document) if not isinstance(record, dict)), None)
    if bad is not None:
        return f"holds a JSON array whose item {bad + 1} is a {type(document[bad]).__name__}, not an object."
    return None


def _check_parquet(key: str, path: str) -> None:
    with open(path, "rb") as f:
        head = f.read(4)
        f.seek(-4, os.SEEK_END)
        tail = f.read(4)
    if head == tail == b"PAR1" and os.path.getsize(path) >= 12:
        return
    try:
        with open(path, "rb") as f:
            f.read(_CHUNK).decode("utf-8")
        looks = " It looks like a text file."
    except UnicodeDecodeError:
        looks = ""
    raise ConfigError(
        key,
        path,
        f"is not a parquet file (it lacks parquet's PAR1 magic bytes).{looks}",
        f"give it the extension of its real format (one of {EXTENSIONS}), or write it with "
        "pandas' DataFrame.to_parquet or datasets' Dataset.to_parquet.",
    )


def _check_text(key: str, path: str) -> None:
    """A csv/tsv/json file must be UTF-8 text: refuse UTF-16, binary content and undecodable bytes, naming
    the byte offset and line, before ``datasets`` fails on them without either."""
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise ConfigError(key, path, "is UTF-16 encoded (it starts with a UTF-16 byte-order mark).", _UTF8_FIX)
    if head == b"PAR1":
        raise ConfigError(key, path, "is a parquet file with a text file's extension.", "rename it to end in .parquet.")
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with open(path, "rb") as f:
        while True:
            chunk = f.read(_CHUNK)
            nul = chunk.find(b"\0")
            if nul >= 0:
                at = offset + nul
                raise ConfigError(
                    key,
                    path,
                    f"is not a text file: it holds a NUL byte at byte offset {at} (line {_line_at(path, at)}).",
                    f"give a UTF-8 csv, tsv, json or jsonl file, or a parquet file named *.parquet "
                    f"(supported: {EXTENSIONS}).",
                )
            pending = len(decoder.getstate()[0])  # bytes of a character split across chunks
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as err:
                at = offset - pending + err.start
                raise ConfigError(
                    key,
                    path,
                    f"is not UTF-8: byte 0x{err.object[err.start]:02x} at byte offset {at} "
                    f"(line {_line_at(path, at)}) cannot be decoded ({err.reason}).",
                    _UTF8_FIX,
                ) from None
            if not chunk:
                return
            offset += len(chunk)


def _line_at(path: str, offset: int) -> int:
    """The 1-based line holding byte ``offset``."""
    with open(path, "rb") as f:
        return f.read(offset).count(b"\n") + 1


def _check_has_rows(key: str, path: str, ext: str) -> None:
    """A file of blank lines, or a csv/tsv with a header and nothing under it, said as such (``datasets``
    reports either as an unrelated error)."""
    found = []
    with open(path, encoding="utf-8-sig") as f:
        for line in f:
            if line.strip():
                found.append(line.strip())
                if len(found) == 2:
                    return
    if not found:
        raise ConfigError(key, path, "holds only blank lines.", "write the examples into it.")
    if ext in (".csv", ".tsv"):
        raise ConfigError(
            key,
            path,
            f"has a header line ({found[0][:120]}) but no data rows under it.",
            "add the examples, one per line under the header.",
        )


def row_lines(path: str, rows: int) -> list[int] | None:
    """The file line each data row starts on (csv, tsv, jsonl), so messages can point at lines; None for
    parquet, JSON arrays, or when the count disagrees with the ``rows`` the reader produced."""
    import csv

    ext = os.path.splitext(path)[1].lower()
    lines = []
    with open(path, encoding="utf-8-sig", newline="") as f:
        if ext in (".json", ".jsonl"):
            if f.read(1024).lstrip().startswith("["):
                return None
            f.seek(0)
            lines = [number for number, line in enumerate(f, 1) if line.strip()]
        elif ext in (".csv", ".tsv"):
            reader, last = csv.reader(f, delimiter="\t" if ext == ".tsv" else ","), 0
            for record in reader:
                start, last = last + 1, reader.line_num
                if record:
                    lines.append(start)
            lines = lines[1:]  # the header
    return lines if len(lines) == rows else None


def unloadable_dataset(key: str, path: str, err: Exception, files_fix: str) -> ConfigError:
    """The error for a dataset (``key`` = its path setting) that neither loads from disk nor from the hub: why
    (the hub switched off with no cached copy, or not found) and the ways out, ``files_fix`` naming the task's own
    file settings."""
    offline = os.environ.get("HF_DATASETS_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1"
    hint = (
        "the hub is switched off here (HF_DATASETS_OFFLINE/HF_HUB_OFFLINE=1) and no cached copy exists"
        if offline
        else "it is neither a readable local dataset nor reachable on the hub"
    )
    return ConfigError(
        key,
        path,
        f"could not be loaded: {hint} ({type(err).__name__}: {str(err).splitlines()[0][:200]}).",
        f"download it once with network, or save it with Dataset.save_to_disk, or as files ({EXTENSIONS}) and "
        f"{files_fix}.",
    )
