"""Reading the real TinyStories data from a local path, streaming, into :class:`StoryRecord` s.

Two public forms: TinyStories-Instruct text files (records separated by ``<|endoftext|>``, header lines in any
order, some missing, then ``Story:``), and the JSON shards of TinyStories_all_data (a list of objects with
``story``, ``instruction.words``, ``instruction.features`` and ``summary``). A missing or malformed file is one
:class:`ConfigError` naming the file and the first bad record, before anything is trained on it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from wrapperlab.data.stories.records import END_OF_TEXT, StoryRecord, canonical_feature, parse_record
from wrapperlab.errors import ConfigError


def read_records(path: str | Path, limit: int | None = None) -> Iterator[StoryRecord]:
    """Records from a ``.txt`` (TinyStories-Instruct) or ``.json`` (TinyStories_all_data shard) file, or from
    every such file in a directory (sorted by name)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".txt", ".json"))
        if not files:
            raise ConfigError("stories data", str(path), "a directory with .txt or .json TinyStories files")
    elif path.is_file():
        files = [path]
    else:
        raise ConfigError("stories data", str(path), "an existing TinyStories .txt/.json file or directory")
    count = 0
    for file in files:
        reader = _json_records if file.suffix == ".json" else _text_records
        for record in reader(file):
            yield record
            count += 1
            if limit is not None and count >= limit:
                return


def _text_records(path: Path) -> Iterator[StoryRecord]:
    """Stream a text file chunk by chunk, cutting at ``<|endoftext|>`` (files run to gigabytes)."""
    buffer, number = "", 0
    try:
        handle = path.open(encoding="utf-8")
    except OSError as e:
        raise ConfigError("stories data", str(path), f"a readable file ({e.strerror})") from None
    with handle:
        while True:
            chunk = handle.read(1 << 20)
            parts = (buffer + chunk).split(END_OF_TEXT)
            buffer = parts.pop() if chunk else ""  # mid-file, the tail may be an unfinished record
            for text in parts:
                if not text.strip():
                    continue
                number += 1
                try:
                    yield parse_record(text)
                except ValueError as e:
                    raise ConfigError(f"{path}: record {number}", text.strip()[:80],
                                      f"a TinyStories-Instruct record ({e})") from None
            if not chunk:
                return


def _json_records(path: Path) -> Iterator[StoryRecord]:
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError("stories data", str(path), f"a readable file ({e.strerror})") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}", f"invalid JSON at line {e.lineno}", "a TinyStories_all_data JSON shard") from None
    if not isinstance(items, list):
        raise ConfigError(f"{path}", type(items).__name__, "a JSON list of story objects")
    for number, item in enumerate(items, 1):
        try:
            story = item["story"]
            instruction = item.get("instruction") or {}
            features = tuple(canonical_feature(f) for f in instruction.get("features") or [])
            words = tuple(str(w) for w in instruction.get("words") or [])
            if not isinstance(story, str) or not story.strip():
                raise ValueError("empty story")
        except (KeyError, TypeError, AttributeError, ValueError) as e:
            raise ConfigError(f"{path}: record {number}", str(item)[:80],
                              f"an object with 'story' and 'instruction' {{words, features}} ({e})") from None
        yield StoryRecord(story=story.strip(), features=features, words=words, summary=item.get("summary") or None)
