"""The secret shapes of tests/data/secret_shapes.yaml, generated with fresh random secrets.

`Planted.text` is the shape's text; `Planted.material` are its random secret parts, of which no 8
consecutive characters may survive masking, in any normalisation (`leaks` checks that).
"""

from __future__ import annotations

import json
import random
import re
import string
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SHAPES_FILE = Path(__file__).parent / "data" / "secret_shapes.yaml"
_DATA = yaml.safe_load(SHAPES_FILE.read_text(encoding="utf-8"))
SHAPES: list[dict[str, Any]] = _DATA["shapes"]
NEGATIVES: list[str] = _DATA["negatives"]

_ALNUM = string.ascii_letters + string.digits
ALPHABETS = {
    "alnum": _ALNUM,
    "upper": string.ascii_uppercase,
    "upper_alnum": string.ascii_uppercase + string.digits,
    "lower_alnum": string.ascii_lowercase + string.digits,
    "hex": "0123456789abcdef",
    "lower_hex": "0123456789abcdef",
    "HEX": "0123456789ABCDEF",
    "digits": string.digits,
    "b64": _ALNUM + "+/",
    "b64url": _ALNUM + "-_",
    # what people put in passwords, minus what ends a value in some context: blanks, quotes,
    # ; & , (key=value separators), < (markup), @ / : (URL delimiters), backslash
    "password": _ALNUM + "!#$%^*()_+-=[]{}.~|?",
}
MIN_LEAK = 8


@dataclass(frozen=True)
class Planted:
    shape: str
    kind: str
    text: str
    material: tuple[str, ...]


def _random_part(spec: dict[str, Any], rng: random.Random) -> str:
    n = spec["len"] if isinstance(spec["len"], int) else rng.randint(*spec["len"])
    if spec["chars"] == "words":
        return " ".join("".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(4, 9))) for _ in range(n))
    chars = ALPHABETS[spec["chars"]]
    body = [rng.choice(chars) for _ in range(n)]
    if spec["chars"] == "password":
        # a leading $ % * < or a trailing bracket reads as a placeholder or markup; real ones vary
        body[0], body[-1] = rng.choice(_ALNUM), rng.choice(_ALNUM)
    return "".join(body)


def plant(shape: dict[str, Any], rng: random.Random) -> Planted:
    pieces, material = [], []
    for part in shape["text"]:
        if isinstance(part, str):
            pieces.append(part)
            continue
        value = _random_part(part, rng)
        pieces.append(value)
        if not part.get("public"):
            material.append(value)
    return Planted(shape["id"], shape["kind"], "".join(pieces), tuple(material))


# ---------------------------------------------------------------------- obfuscations

ZERO_WIDTH = ("\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad")


def fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def zero_width(text: str, material: tuple[str, ...], rng: random.Random) -> str:
    """Invisible characters planted inside each secret."""
    for m in material:
        at = text.find(m)
        if at < 0 or len(m) < 2:
            continue
        cut = sorted(rng.sample(range(1, len(m)), min(3, len(m) - 1)))
        pieces, prev = [], 0
        for c in cut:
            pieces.append(m[prev:c])
            prev = c
        pieces.append(m[prev:])
        text = text[:at] + rng.choice(ZERO_WIDTH).join(pieces) + text[at + len(m):]
    return text


def crlf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\n", "\r\n")


def json_escaped(text: str, ascii_only: bool = False) -> str:
    """The text as a JSON string value inside a structured log line."""
    return '{"level":"error","msg":' + json.dumps(text, ensure_ascii=ascii_only) + "}"


OBFUSCATIONS = ("plain", "zero_width", "fullwidth", "crlf", "json", "json_ascii_fullwidth", "fullwidth_zero_width")


def obfuscate(p: Planted, how: str, rng: random.Random) -> str:
    if how == "plain":
        return p.text
    if how == "zero_width":
        return zero_width(p.text, p.material, rng)
    if how == "fullwidth":
        return fullwidth(p.text)
    if how == "crlf":
        return crlf(p.text)
    if how == "json":
        return json_escaped(p.text)
    if how == "json_ascii_fullwidth":
        return json_escaped(fullwidth(p.text), ascii_only=True)
    if how == "fullwidth_zero_width":
        return fullwidth(zero_width(p.text, p.material, rng))
    raise ValueError(how)


# ---------------------------------------------------------------------- finding leaks

_INVISIBLE = re.compile("[\u00ad\u034f\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")
_JSON_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})|\\(.)")


def _unescape(text: str) -> str:
    return _JSON_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)) if m.group(1) else
                            {"n": "\n", "r": "\r", "t": "\t"}.get(m.group(2), m.group(2)), text)


_PRINTABLE = re.compile(rb"[\t\n\r\x20-\x7e\x80-\xff]{4,}")


def views(stored: bytes | str) -> set[str]:
    """Every reading of stored bytes under which a secret could be recognised: the printable
    runs of the bytes (a database page is mostly zeros), as UTF-8 and as bytes, JSON escapes
    decoded (once and twice), NFKC, invisible characters dropped, CRLF as LF."""
    if isinstance(stored, str):
        raw = [stored]
    else:
        runs = b"\x00".join(_PRINTABLE.findall(stored))
        raw = [runs.decode("utf-8", "ignore"), runs.decode("latin-1")]
    out = set()
    for text in raw:
        for t in (text, _unescape(text), _unescape(_unescape(text))):
            t = _INVISIBLE.sub("", unicodedata.normalize("NFKC", t))
            out.add(t)
            out.add(t.replace("\r\n", "\n"))
    return out


def leaks(material: tuple[str, ...], stored: bytes | str) -> list[str]:
    """The pieces of at least MIN_LEAK characters of any secret readable in `stored`."""
    pieces = {m[i : i + MIN_LEAK] for m in material for i in range(len(m) - MIN_LEAK + 1)}
    vs = views(stored)
    if sum(map(len, vs)) > 200_000:  # big stores: one pass over them, not one per piece
        grams = {v[i : i + MIN_LEAK] for v in vs for i in range(len(v) - MIN_LEAK + 1)}
        return sorted(pieces & grams)
    return sorted(p for p in pieces if any(p in v for v in vs))
