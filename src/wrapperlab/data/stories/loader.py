"""Reading the real TinyStories data from a local path, streaming, into :class:`StoryRecord` s.

Two public forms: TinyStories-Instruct text files (records separated by ``<|endoftext|>``, header lines in any
order, some missing, then ``Story:``), and the JSON shards of TinyStories_all_data (a list of objects with
``story``, ``instruction.words``, ``instruction.features`` and ``summary``). A missing or malformed file is one
:class:`ConfigError` naming the file and the first bad record, before anything is trained on it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

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
    """Stream a JSON shard item by item (a shard is ~100 MB; decoding it whole took about 4x that in memory)."""
    try:
        handle = path.open(encoding="utf-8")
    except OSError as e:
        raise ConfigError("stories data", str(path), f"a readable file ({e.strerror})") from None
    with handle:
        yield from _records_of(path, _json_items(handle, path))


def _json_items(handle, path: Path, chunk_size: int = 1 << 20) -> Iterator[Any]:
    """The items of a top-level JSON list, decoded one at a time while reading ``chunk_size`` characters at a time:
    only the current item and one chunk are held."""
    decoder = json.JSONDecoder()
    buf, pos, number = "", 0, 0

    def fill() -> bool:
        nonlocal buf, pos
        chunk = handle.read(chunk_size)
        buf, pos = buf[pos:] + chunk, 0
        return bool(chunk)

    def next_char() -> str:
        """The next non-space character, read on if needed ('' at the end of the file)."""
        nonlocal pos
        while True:
            while pos < len(buf) and buf[pos].isspace():
                pos += 1
            if pos < len(buf) or not fill():
                return buf[pos:pos + 1]

    def bad(what: str) -> ConfigError:
        return ConfigError(f"{path}", what, "a TinyStories_all_data JSON shard (a list of story objects)")

    first = next_char()
    if first != "[":
        kinds = {"{": "an object", '"': "a string", "": "an empty file"}
        raise ConfigError(f"{path}", kinds.get(first, "a single value"), "a JSON list of story objects")
    pos += 1
    if next_char() == "]":
        return
    while True:
        number += 1
        next_char()
        while True:
            try:
                item, end = decoder.raw_decode(buf, pos)
            except json.JSONDecodeError:
                if not fill():
                    raise bad(f"invalid JSON in record {number}") from None
                continue
            if end < len(buf):
                break
            if not fill():  # the item ends where the chunk does (a number may go on): decoded again once read on
                item, end = decoder.raw_decode(buf, pos)
                break
        pos = end
        yield item
        sep = next_char()
        if sep == "]":
            return
        if sep != ",":
            raise bad(f"invalid JSON after record {number}")
        pos += 1


def _records_of(path: Path, items: Iterator[Any]) -> Iterator[StoryRecord]:
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
