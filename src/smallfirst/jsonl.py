"""Reading labelled JSONL (training data, eval data) with errors that name the file and line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence


def read_jsonl(path: Path, error: type[Exception], what: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; `error` names file:line on bad input."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot read {what}: {exc}") from None
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise error(f"{path}:{lineno}: malformed JSON: {exc.msg}") from None
        if not isinstance(obj, dict):
            raise error(f"{path}:{lineno}: each line must be a JSON object")
        yield lineno, obj


def label_mapping(label_map: Mapping[str, str] | None) -> dict[str, str]:
    """A label map without its comment keys (`"_comment": ...`)."""
    return {k: v for k, v in (label_map or {}).items() if not k.startswith("_")}


def map_label(label: str, mapping: Mapping[str, str], labels: Sequence[str], where: str, error: type[Exception]) -> str:
    mapped = mapping.get(label, label)
    if mapped not in labels:
        via = f" (mapped to {mapped!r})" if mapped != label else ""
        raise error(f"{where}: label {label!r}{via} is not one of the task's labels {list(labels)}")
    return mapped
