"""A TinyStories-Instruct record, and its text form.

The text form is the dataset's: header lines (``Features:``, ``Words:``, ``Summary:``, ``Random sentence:``) in any
order, some possibly missing, then ``Story:`` and the story, which may span lines. A record round-trips exactly
through :func:`format_record` / :func:`parse_record` for any header order, so a model's prompt (the header) and its
continuation (the story) are always cut at the same place.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

#: The six features of TinyStories-Instruct, in the dataset's spelling.
FEATURES = ("Twist", "Foreshadowing", "Dialogue", "BadEnding", "MoralValue", "Conflict")
HEADERS = ("Features", "Words", "Summary", "Random sentence")
STORY = "Story:"
END_OF_TEXT = "<|endoftext|>"
_CANONICAL = {f.lower(): f for f in FEATURES} | {"bad ending": "BadEnding", "moral value": "MoralValue"}


def canonical_feature(name: str) -> str:
    """``"bad ending"``, ``"badending"`` or ``"BadEnding"`` -> ``"BadEnding"``; unknown names raise ValueError."""
    key = name.strip().lower()
    if key not in _CANONICAL:
        raise ValueError(f"unknown feature {name.strip()!r} (known: {', '.join(FEATURES)})")
    return _CANONICAL[key]


@dataclass(frozen=True)
class StoryRecord:
    """One instruction + story. ``features`` are what the instruction asks for; ``true_features`` what the story
    really contains (known for generated records; for real data assumed equal to ``features``). The deletion
    protocols edit the instruction without touching the story, so the two can differ."""

    story: str
    features: tuple[str, ...] = ()
    words: tuple[str, ...] = ()
    summary: str | None = None
    random_sentence: str | None = None
    true_features: tuple[str, ...] | None = None
    header_order: tuple[str, ...] = HEADERS  # the order the header lines are written in
    extra: dict = field(default_factory=dict, compare=False)  # e.g. where a twist sentence starts

    @property
    def has(self) -> tuple[str, ...]:
        """The features the story text actually has."""
        return self.features if self.true_features is None else self.true_features

    def with_features(self, features: tuple[str, ...]) -> "StoryRecord":
        """The same story under another instruction (what a deletion protocol does)."""
        return replace(self, features=tuple(features), true_features=self.has)


def header(record: StoryRecord) -> str:
    """The prompt: header lines in the record's order, then ``Story:`` (the model continues from here)."""
    lines = []
    for name in record.header_order:
        if name == "Features" and record.features:
            lines.append("Features: " + ", ".join(record.features))
        elif name == "Words" and record.words:
            lines.append("Words: " + ", ".join(record.words))
        elif name == "Summary" and record.summary:
            lines.append("Summary: " + record.summary)
        elif name == "Random sentence" and record.random_sentence:
            lines.append("Random sentence: " + record.random_sentence)
    return "\n".join(lines + [STORY]) + " "


def format_record(record: StoryRecord) -> str:
    return header(record) + record.story


def parse_record(text: str) -> StoryRecord:
    """The inverse of :func:`format_record`; also reads the real files' variants (``Story:`` alone on its line,
    blank lines, headers missing or in any order). Raises ValueError naming what is wrong."""
    body = text.strip("\n")
    at = body.find(STORY)
    if at < 0:
        raise ValueError("no 'Story:' line")
    head, story = body[:at], body[at + len(STORY):]
    story = story[1:] if story.startswith(" ") else story.lstrip("\n")
    fields: dict[str, str] = {}
    order = []
    for line in head.splitlines():
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        if not sep or name.strip() not in HEADERS:
            raise ValueError(f"unexpected header line {line[:60]!r}")
        fields[name.strip()] = value.strip()
        order.append(name.strip())
    features = tuple(canonical_feature(f) for f in fields.get("Features", "").split(",") if f.strip())
    words = tuple(w.strip() for w in fields.get("Words", "").split(",") if w.strip())
    order += [h for h in HEADERS if h not in order]
    return StoryRecord(story=story.strip(), features=features, words=words,
                       summary=fields.get("Summary") or None, random_sentence=fields.get("Random sentence") or None,
                       header_order=tuple(order))
