"""Records as the field keeps them: JSON lines, CSV, Parquet, or a local ``datasets`` directory (``save_to_disk``),
read into plain dicts, each with where it stands (a line or row number, which errors name).

Why one reader for four formats: a capability file is whatever its user already has (WMDP and MMLU ship as
``datasets`` / Parquet, hand-made ones as JSONL or CSV); what the audit does with a record does not depend on the
file it came from. A file this cannot read — binary, torn, empty, of a format it does not know — is one line naming
it, never a traceback from the library that failed to parse it.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Iterator

from wrapperlab.errors import ConfigError, UserError

#: what :func:`read_records` reads, by suffix (a directory is a ``datasets`` one)
FORMATS = {".jsonl": "JSON lines", ".json": "JSON lines", ".ndjson": "JSON lines", ".csv": "CSV",
           ".parquet": "Parquet"}


def _why(e: Exception) -> str:
    """A library's exception in one short line."""
    return f"{type(e).__name__}: {' '.join(str(e).split())[:120]}"


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")  # a byte-order mark (as Excel saves CSV) is not a field name
    except UnicodeDecodeError as e:
        raise ConfigError(str(path), f"bytes that are not UTF-8 text (at byte {e.start})",
                          f"a text file ({FORMATS.get(path.suffix.lower(), 'JSON lines')})") from None


def _json_lines(path: Path) -> Iterator[tuple[int, Any]]:
    for number, line in enumerate(_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}:{number}", line[:60], f"a JSON object ({e.msg})") from None


def _csv(path: Path) -> Iterator[tuple[int, Any]]:
    reader = csv.DictReader(io.StringIO(_text(path), newline=""))
    try:
        for row in reader:
            if None in row:  # more cells than the header names
                raise ConfigError(f"{path}:{reader.line_num}", f"{len(row) - 1 + len(row[None])} cells",
                                  f"at most the header's {len(reader.fieldnames or [])}")
            yield reader.line_num, row
    except csv.Error as e:
        raise ConfigError(f"{path}:{reader.line_num}", "a malformed row", f"CSV ({e})") from None


def _parquet(path: Path) -> Iterator[tuple[int, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise UserError(f"{path}: reading Parquet needs pyarrow: pip install 'wrapperlab[hf]'") from None
    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as e:  # pyarrow raises ArrowInvalid / OSError for a torn or foreign file
        raise ConfigError(str(path), f"an unreadable Parquet file ({_why(e)})", "a Parquet table") from None
    yield from enumerate(rows, 1)


def _datasets_dir(path: Path, split: str | None) -> Iterator[tuple[int, Any]]:
    if not ((path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file()):
        raise UserError(f"{path}: a directory, but not one `datasets` saved (no dataset_info.json or "
                        "dataset_dict.json; Dataset.save_to_disk writes them)")
    try:
        import datasets
    except ImportError:
        raise UserError(f"{path}: reading a datasets directory needs datasets: pip install 'wrapperlab[hf]'") from None
    try:
        data = datasets.load_from_disk(str(path))
    except Exception as e:  # a torn arrow file, a state.json of another version
        raise ConfigError(str(path), f"an unreadable datasets directory ({_why(e)})",
                          "what Dataset.save_to_disk writes") from None
    if isinstance(data, datasets.DatasetDict):
        names = sorted(data)
        if split is None and len(names) == 1:
            split = names[0]
        if split not in data:
            raise ConfigError(f"{path}: split", split, f"one of the directory's splits {names} (--split)")
        data = data[split]
    elif split is not None:
        raise ConfigError("split", split, f"nothing: {path} holds one split")
    yield from enumerate(data, 1)


def read_records(path: str | Path, split: str | None = None) -> Iterator[tuple[int, Any]]:
    """``(where, record)`` for every record of ``path``: a line number (JSON lines, CSV) or a row number (Parquet,
    ``datasets``). ``split``: which split of a ``datasets`` directory holding several."""
    path = Path(path)
    if path.is_dir():
        return _datasets_dir(path, split)
    if not path.is_file():
        raise UserError(f"{path}: no such file (JSON lines, CSV, Parquet, or a datasets directory)")
    if split is not None:
        raise ConfigError("split", split, f"nothing: {path} is a file, not a datasets directory")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _csv(path)
    if suffix == ".parquet":
        return _parquet(path)
    if suffix in FORMATS or suffix in ("", ".txt"):
        return _json_lines(path)
    raise ConfigError(str(path), f"a {suffix} file", f"one of {sorted(FORMATS)} or a datasets directory")
