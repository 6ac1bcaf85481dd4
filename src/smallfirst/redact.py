"""Secrets out of text: mask them before anything is stored, previewed or sent to a provider.

`mask_secrets` replaces each secret with `[REDACTED:<kind>]`, keeping the context around it
(the key name, the user and host of a URL) so a reader still sees what was there. `preview`
masks first and truncates second, so a secret that straddles the cut cannot leak in part.
`find_secrets` is the detector itself; the security hard stop reuses it.

Detection runs on a normalised copy of the text: NFKC (fullwidth letters become ASCII),
invisible characters (zero-width, soft hyphen, bidi controls) dropped, JSON escapes (`\\n`,
`\\"`, `\\uXXXX`) decoded, Cyrillic and Greek look-alikes mapped to Latin. Each normalised character
remembers the original characters it came from, so what gets masked is the original text.

Two detectors: the shapes in data/secret_rules.yaml (provider token formats, PEM blocks,
connection strings, URL credentials, command-line passwords), and named assignments found here
(`password: x`, `"token":"x"`, `\\"secret\\":\\"x\\"`, `API_KEY=x`, `--api-key x`) from the names
listed in the same file. Each shape has cue strings; a shape whose cues are absent from the text
is never run, which keeps masking a clean 1 kB log window in the tens of microseconds.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import yaml

__all__ = ["SecretMatch", "find_secrets", "mask_collect", "mask_secrets", "preview", "secret_values", "sha256_text"]

RULES_PATH = Path(str(files("smallfirst") / "data" / "secret_rules.yaml"))


@dataclass(frozen=True)
class SecretMatch:
    kind: str  # e.g. "github_token", "private_key", "url_password", "secret" (a named assignment)
    span: tuple[int, int]  # the secret value itself, not the key name or URL around it
    # True for secrets recognisable by their own shape (a ghp_ token, a PEM block). A generic
    # `password=...` is masked all the same, but alone it is too common in CI logs to be a
    # security incident.
    distinctive: bool


# ---------------------------------------------------------------------- normalisation

# Characters that render as nothing (or only reorder text) and can be planted inside a token to
# slip it past a pattern.
_INVISIBLE_CLASS = (
    "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u2064\u2066-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0"
)
_INVISIBLE = re.compile(f"[{_INVISIBLE_CLASS}]")
# Letters NFKC leaves alone that look like Latin ones (the same table the hard stops use).
_CONFUSABLE = {
    "а": "a", "в": "b", "е": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c", "т": "t",
    "у": "y", "х": "x", "і": "i", "ј": "j", "ѕ": "s", "ԁ": "d", "ӏ": "l", "ɡ": "g",
    "α": "a", "ε": "e", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t", "υ": "u", "χ": "x",
}
_CONFUSABLE.update({k.upper(): v.upper() for k, v in list(_CONFUSABLE.items()) if len(k.upper()) == 1})
_SPECIAL = re.compile(f"[{_INVISIBLE_CLASS}{''.join(_CONFUSABLE)}]")
# What the slow path has to look at: a JSON/C escape, or a run of non-ASCII characters. Escapes
# are decoded so a JSON-escaped log line reads like the text it carries: its \n ends lines, its
# \" closes strings, its \u0067 is a g.
_WORK = re.compile(r"\\u[0-9a-fA-F]{4}|\\[nrt\"\\/]|[^\x00-\x7f]+")
_UNESCAPE = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\", "/": "/"}


@functools.lru_cache(maxsize=4096)
def _fold(ch: str) -> str:
    if _INVISIBLE.match(ch):
        return ""
    return "".join(_CONFUSABLE.get(c, c) for c in unicodedata.normalize("NFKC", ch))


def _normalise(text: str) -> tuple[str, list[int] | None, list[int] | None]:
    """The text detectors see, and for each of its characters the start and end offsets in
    `text` of what it came from; (text, None, None) when nothing changed, the common case."""
    escaped = "\\" in text
    if not escaped and (text.isascii() or (unicodedata.is_normalized("NFKC", text) and not _SPECIAL.search(text))):
        return text, None, None
    out: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    pos = 0
    for m in _WORK.finditer(text):
        a, b = m.span()
        if a > pos:
            out.append(text[pos:a])
            starts.extend(range(pos, a))
            ends.extend(range(pos + 1, a + 1))
        tok = m.group()
        if tok[0] == "\\":
            for c in _fold(chr(int(tok[2:], 16)) if tok[1] == "u" else _UNESCAPE[tok[1]]):
                out.append(c)
                starts.append(a)
                ends.append(b)
        else:
            for i, ch in enumerate(tok, a):
                for c in _fold(ch):
                    out.append(c)
                    starts.append(i)
                    ends.append(i + 1)
        pos = b
    if pos < len(text):
        out.append(text[pos:])
        starts.extend(range(pos, len(text)))
        ends.extend(range(pos + 1, len(text) + 1))
    return "".join(out), starts, ends


def _lower(text: str) -> str:
    low = text.lower()
    if len(low) != len(text):  # a rare character whose lower case is longer: keep offsets aligned
        low = "".join(c.lower() if len(c.lower()) == 1 else c for c in text)
    return low


# ---------------------------------------------------------------------- value checks

_PLACEHOLDER = re.compile(
    r"^(?:\$\{|\$\(|\{\{|\[REDACTED|\[MASKED|\[secure\]|\[hidden\]|\.\.\.|https?/"
    r"|(?:\$[A-Za-z_]\w*|%[A-Za-z_]\w*%|%\(\w+\)s|%s|<[^>]*>?|\*+|x{3,}"
    r"|null|none|nil|true|false|yes|no|on|off|undefined|redacted|masked|hidden|changeme|required|optional"
    r"|str|string|bytes|int|bool|secretstr|\d{1,6}|v?\d+(?:\.\d+)+)$)",
    re.IGNORECASE,
)
# A digest or an id, possibly after a name (Linux-pip-3f2a..., sha256:...): what a cache key or
# a content hash looks like, and no secret when its name is only weakly secret-like.
_DIGEST = re.compile(
    r"^(?:[\w.\-]*?[-_:=])?(?:[0-9a-f]{8,}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$",
    re.IGNORECASE,
)


def _is_placeholder(value: str) -> bool:
    """A reference to a secret, not the secret: templating, env vars, masks, types, numbers."""
    return bool(_PLACEHOLDER.match(value.strip("\"'")))


def _looks_random(value: str) -> bool:
    """Long, high-entropy and of mixed character classes: a key, not a word."""
    v = value.strip("\"'")
    if len(v) < 16:
        return False
    classes = any(c.islower() for c in v) + any(c.isupper() for c in v) + any(c.isdigit() for c in v)
    if classes < 2:
        return False
    n = len(v)
    entropy = -sum(k / n * math.log2(k / n) for k in Counter(v).values())
    return entropy >= 3.0


def _is_jwt(token: str) -> bool:
    parts = token.rstrip(".").split(".")
    return len(parts) in (2, 3) and parts[1].startswith("eyJ") and all(len(p) >= 8 for p in parts)


def _is_base64_lines(block: str) -> bool:
    """Key material: some line of 40 or more characters, and every long line random base64
    (upper and lower case and digits), not hex and not words."""
    lines = block.split()
    long_lines = [ln for ln in lines if len(ln) >= 40]
    return bool(long_lines) and all(
        any(c.isupper() for c in ln) and any(c.islower() for c in ln) and any(c.isdigit() for c in ln)
        for ln in long_lines)


_CHECKS: dict[str, Callable[[str], bool]] = {
    "base64_lines": _is_base64_lines,
    "jwt": _is_jwt,
    "openai": lambda t: len(t) >= 23 and any(c.isdigit() for c in t),
    "entropy": _looks_random,
    "not_placeholder": lambda v: not _is_placeholder(v),
}


# ---------------------------------------------------------------------- the rules


@dataclass(frozen=True)
class _Shape:
    kind: str
    rx: re.Pattern[str]
    cues: tuple[tuple[str, ...], ...]  # any group whose strings all occur in the text
    distinctive: bool
    check: Callable[[str], bool] | None
    word_start: bool  # the match must not follow a letter, digit or _
    pem_tail: bool


@dataclass(frozen=True)
class _Names:
    strong: tuple[str, ...]
    strong_after_separator: tuple[str, ...]
    weak: tuple[str, ...]
    not_secret: tuple[str, ...]
    not_after: tuple[str, ...]
    path_names: tuple[str, ...]
    suffixes: tuple[str, ...]
    cues: tuple[str, ...]


_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL}


def _load_rules(path: Path) -> tuple[tuple[_Shape, ...], _Names]:
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    shapes = []
    for r in data["shapes"]:
        flags = 0
        for f in r.get("flags", ""):
            flags |= _FLAGS[f]
        shapes.append(_Shape(
            kind=r["kind"],
            rx=re.compile(r["pattern"], flags),
            cues=tuple(tuple(c.split("+")) for c in r.get("cues", ())),
            distinctive=r.get("distinctive", True),
            check=_CHECKS[r["check"]] if "check" in r else None,
            word_start=r.get("word_start", True),
            pem_tail=r.get("extend") == "pem_tail",
        ))
    n = data["names"]
    names = _Names(**{k: tuple(n[k]) for k in _Names.__dataclass_fields__})
    return tuple(shapes), names


_SHAPES, _NAMES = _load_rules(RULES_PATH)
# Each distinct cue is tested once per text, then wakes up the shapes that name it.
_CUE_RANKS: dict[str, list[int]] = {}
for _rank, _shape in enumerate(_SHAPES):
    for _group in _shape.cues:
        if len(_group) == 1:
            _CUE_RANKS.setdefault(_group[0], []).append(_rank)
_CUES = tuple((cue, tuple(ranks)) for cue, ranks in _CUE_RANKS.items())
_CUE_SETS = tuple((rank, tuple(g for g in shape.cues if len(g) > 1)) for rank, shape in enumerate(_SHAPES)
                  if any(len(g) > 1 for g in shape.cues))
_UNCUED = bytes(0 if shape.cues else 1 for shape in _SHAPES)
# ---------------------------------------------------------------------- finding


def find_secrets(text: str, *, distinctive_only: bool = False) -> list[SecretMatch]:
    """Secrets in `text`, in order, non-overlapping. Spans are offsets in `text` as given.

    `distinctive_only` skips the detectors of generic assignments (the hard stops' view: a token
    with a recognisable shape is an incident, a `password=` in a log is not by itself)."""
    norm, starts, ends = _normalise(text)
    low = _lower(norm)
    # (start, end, rank, kind, distinctive) in `norm`; a lower rank names a merged span
    found: list[tuple[int, int, int, str, bool]] = []
    on = bytearray(_UNCUED)
    for cue, ranks in _CUES:
        if cue in low:
            for rank in ranks:
                on[rank] = 1
    for rank, groups in _CUE_SETS:
        if any(all(c in low for c in g) for g in groups):
            on[rank] = 1
    for rank, shape in enumerate(_SHAPES):
        if not on[rank] or (distinctive_only and not shape.distinctive):
            continue
        first = shape.rx.search(norm)  # cheaper than an iterator when, as usual, nothing matches
        if first is None:
            continue
        has_v = "v" in shape.rx.groupindex
        for m in shape.rx.finditer(norm, first.start()):
            a = m.start()
            if shape.word_start and a > 0 and (norm[a - 1].isalnum() or norm[a - 1] == "_"):
                continue
            start, end = m.span("v") if has_v and m.group("v") is not None else m.span()
            if shape.check is not None and not shape.check(norm[start:end]):
                continue
            if shape.pem_tail:
                start = _key_lines_before(norm, start)
            found.append((start, end, rank, shape.kind, shape.distinctive))
    if not distinctive_only:
        found.extend(_named_assignments(norm, low, len(_SHAPES)))
    return _merged(found, starts, ends)


def _merged(found: list[tuple[int, int, int, str, bool]], starts: list[int] | None,
            ends: list[int] | None) -> list[SecretMatch]:
    """Overlapping matches become one span (so no part of a bigger match survives), named by the
    earliest rule among them; then spans are mapped back onto the original text."""
    spans: list[list] = []
    for start, end, rank, kind, distinctive in sorted(found):
        if starts is not None and ends is not None:
            start, end = starts[start], ends[end - 1] if end > start else starts[start]
        if end <= start:
            continue
        if spans and start < spans[-1][1]:
            last = spans[-1]
            last[1] = max(last[1], end)
            if rank < last[2]:
                last[2], last[3] = rank, kind
            last[4] = last[4] or distinctive
        else:
            spans.append([start, end, rank, kind, distinctive])
    return [SecretMatch(kind, (start, end), distinctive) for start, end, _, kind, distinctive in spans]


# ---------------------------------------------------------------------- PEM tails

_LINE_BREAK = re.compile(r"\r?\n|\\r\\n|\\n")
_KEY_LINE = re.compile(r"[ \t]*[A-Za-z0-9+/=]*[ \t]*\r?")
_PEM_LOOKBACK = 16384


def _key_lines_before(text: str, end_line_start: int) -> int:
    """Start of the run of base64 key lines (real or JSON-escaped line breaks) just before an
    END line. The line right before END may be short (a key's last line); earlier ones are full."""
    lo = max(0, end_line_start - _PEM_LOOKBACK)
    breaks = [m for m in _LINE_BREAK.finditer(text, lo, end_line_start)]
    start, seg_end = end_line_start, end_line_start
    for i in range(len(breaks), -1, -1):
        seg_start = breaks[i - 1].end() if i > 0 else lo
        seg = text[seg_start:seg_end]
        last_line = start == end_line_start  # no key line taken yet: this one may be short
        if not _KEY_LINE.fullmatch(seg) or (not last_line and len(seg.strip()) < 16):
            break
        if seg.strip():
            start = seg_start
        if i == 0:
            break
        seg_end = breaks[i - 1].start()
    return start


# ---------------------------------------------------------------------- named assignments

_IDENT = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_.-")
_SEPARATORS = re.compile(r"[_.\-]+")
_STRONG, _WEAK = 2, 1
# After the key: its closing quote (plain, or escaped inside a JSON string) or bracket, the
# separator, and the value: quoted, escaped-quoted, or bare. A quote never closed on its line
# (a cut excerpt, a multi-line string) takes the rest of the line.
_ASSIGN = re.compile(
    r"""(?:\\{0,3}["'])?\]?
    (?P<sep>[ \t]*(?::=|=>|==|=|:(?!//|:))[ \t]*|[ \t]+)
    (?:(?P<eq>\\{1,3}")(?P<ev>[^\n]{1,4096}?)(?P=eq)
      |"(?P<dv>(?:[^"\\\n]|\\.){1,4096})"
      |'(?P<sv>[^'\n]{1,4096})'
      |\\{0,3}["'](?P<uv>[^\n]{1,4096})
      |(?P<bare>)(?=[^\s"']))""",
    re.VERBOSE,
)
# A bare value in running text ends at whitespace, a quote or markup, and at ; & , when what
# follows looks like the next key (connection strings, query strings, inline maps).
_BARE = re.compile(r"""(?:[^\s"'<;&,]|[;&,](?![ \t]*[A-Za-z_][\w. \-]{0,40}[=:]))+""")
# What may precede a YAML key for its plain value to run to the end of the line (YAML allows
# spaces in one): indentation, a list dash, a shell trace's +.
# ...or the start of a JSON string ({"msg":"password: a b c"}): the value ends with the string.
_IN_STRING = re.compile(r'[:\[,{][ \t]*"[ \t]*$')
_LINE_START = frozenset(("", "-", "+", "++", "export", "set", "env", "arg", "readonly", "declare -x", "local"))
_BLOCK = re.compile(r"^(?:!\S+[ \t]+)?[|>][-+0-9]*$")


def _name_strength(ident: str) -> int:
    """_STRONG, _WEAK or 0 for a key name as written (lower case)."""
    parts = [p for p in _SEPARATORS.split(ident) if p]
    if not parts:
        return 0
    # DB_PASS, basic_auth; not com.google.auth (a package) nor a test runner's PASS
    last = [p for p in re.split(r"[_\-]+", ident.rsplit(".", 1)[-1]) if p]
    core = last[:-1] if len(last) > 1 and last[-1] in _NAMES.suffixes else last
    if core and core[-1] in _NAMES.strong_after_separator and (len(core) > 1 or ident == "auth"):
        return _STRONG
    compact = "".join(parts)
    strength = 0
    for suffix in ("", *_NAMES.suffixes):
        if suffix and not compact.endswith(suffix):
            continue
        base = compact[: len(compact) - len(suffix)] if suffix else compact
        if base.endswith(_NAMES.not_secret):
            continue
        if base.endswith(_NAMES.strong):
            return _STRONG
        if base.endswith(_NAMES.weak):
            strength = _WEAK
    return strength


def _named_assignments(norm: str, low: str, rank: int) -> list[tuple[int, int, int, str, bool]]:
    positions: set[int] = set()
    for cue in _NAMES.cues:
        i = low.find(cue)
        while i != -1:
            positions.add(i)
            i = low.find(cue, i + 1)
    out: list[tuple[int, int, int, str, bool]] = []
    done = -1
    n = len(low)
    for i in sorted(positions):
        if i < done:
            continue
        s, e = i, i
        while s > 0 and low[s - 1] in _IDENT:
            s -= 1
        while e < n and low[e] in _IDENT:
            e += 1
        done = e
        ident = low[s:e]
        strength = _name_strength(ident)
        if not strength or low[max(0, s - 12):s].rstrip().endswith(_NAMES.not_after):
            continue
        dot = norm.rfind(".", s, e)
        if dot != -1 and dot + 1 < e and norm[dot + 1].isupper():
            continue  # com.acme.SshByPassword: a class name in a log line, not a key
        span = _assigned_value(norm, s, e, ident, strength)
        if span is not None:
            out.append((span[0], span[1], rank, "secret", False))
            done = max(done, span[1])
    return out


# A value that could be a key when it stands after a bare word ("token abc..."), not a phrase.
_TOKENISH = re.compile(r"[\w+/=\-.~%:@]+")
_CALL = re.compile(r"[A-Za-z_][\w.]*\($")


def _assigned_value(norm: str, s: int, e: int, ident: str, strength: int) -> tuple[int, int] | None:
    """The span of the value assigned to the key at norm[s:e], if it holds a secret."""
    m = _ASSIGN.match(norm, e)
    if m is None:
        return None
    spaced = not m.group("sep").strip()
    flag = ident.startswith("-")
    for group in ("ev", "dv", "sv", "uv"):
        if m.group(group) is not None:
            a, b = m.span(group)
            break
    else:
        a = m.end()
        line_start = norm.rfind("\n", 0, s) + 1
        before = norm[line_start:s]
        if m.group("sep").strip() == ":" and (before.strip().lower() in _LINE_START or _IN_STRING.search(before)):
            b = _line_end(norm, a, '"' if _IN_STRING.search(before) else None)
            if b > a and norm[a] == "#":
                return None
        else:
            bare = _BARE.match(norm, a)
            if bare is None:
                return None
            b = bare.end()
        while b > a and norm[b - 1] in ",;" or (b > a and norm[b - 1] in ")]}" and _unbalanced(norm[a:b])):
            b -= 1
        if _BLOCK.match(norm[a:b]):
            return _block_scalar(norm, s, b)
    value = norm[a:b]
    if _is_placeholder(value) or len(value.strip()) < 3 or _CALL.match(value):
        return None
    if m.group("sep") == ":" and ":" in value and m.group("bare") is not None:
        return None  # org.jenkins-ci.plugins:ssh-credentials:jar:277.v9: Maven coordinates
    if ident.strip("-.") in _NAMES.path_names and value.startswith(("/", "~")):
        return None  # PWD=/home/ci/build: the shell's working directory
    if spaced and not flag:
        # `token abc` is an assignment only on a command line (--token abc) or when the value
        # is plainly a key: one token, random, with letters and digits, not a path
        if not (_TOKENISH.fullmatch(value) and _looks_random(value) and any(c.isdigit() for c in value)
                and any(c.isalpha() for c in value)) or value.startswith(("/", "~/", "./", "../")) \
                or _DIGEST.match(value.rstrip(":")):
            return None
    if strength == _WEAK:
        # a weakly named key holds a secret only when its value looks random: one token, not a
        # hex id or digest, and not an identifier (long, or with digits)
        if not (_TOKENISH.fullmatch(value.strip("\"'")) and _looks_random(value)) or _DIGEST.match(value.strip("\"'")):
            return None
        if len(value) < 24 and not any(c.isdigit() for c in value):
            return None
    return a, b


def _line_end(norm: str, a: int, quote: str | None = None) -> int:
    """End of a value that runs to the end of its line (or of the JSON string it is in), before
    a ` #` comment and trailing blanks."""
    end = len(norm)
    for stop in ("\n", "\r", " #", "\t#", *((quote,) if quote else ())):
        j = norm.find(stop, a, end)
        if j != -1:
            end = j
    while end > a and norm[end - 1] in " \t":
        end -= 1
    return end


def _unbalanced(value: str) -> bool:
    closer = value[-1]
    opener = {")": "(", "]": "[", "}": "{"}[closer]
    return value.count(closer) > value.count(opener)


def _block_scalar(norm: str, key_start: int, after: int) -> tuple[int, int] | None:
    """`password: |` (or `!vault |`): the following lines indented deeper than the key."""
    line_start = norm.rfind("\n", 0, key_start) + 1
    indent = len(norm[line_start:key_start]) - len(norm[line_start:key_start].lstrip(" -"))
    nl = norm.find("\n", after)
    if nl == -1:
        return None
    pos, end = nl + 1, nl + 1
    while pos < len(norm):
        nxt = norm.find("\n", pos)
        line = norm[pos : len(norm) if nxt == -1 else nxt]
        if line.strip() and len(line) - len(line.lstrip(" ")) <= indent:
            break
        if line.strip():
            end = pos + len(line.rstrip("\r \t"))
        if nxt == -1:
            break
        pos = nxt + 1
    return (nl + 1, end) if end > nl + 1 else None


# ---------------------------------------------------------------------- masking


def mask_secrets(text: str, *, also: Iterable[str] = ()) -> str:
    """`text` with every secret replaced by `[REDACTED:<kind>]` and invisible characters dropped.

    `also`: secrets found elsewhere, e.g. in the input a model's answer or an error message was
    made from. Any FRAGMENT_CHARS consecutive characters of them in `text` are masked too, so a
    quote of part of a secret (a line cut by log compression, a truncated token) leaks nothing.
    """
    return _apply(text, find_secrets(text), also)


def secret_values(text: str) -> tuple[str, ...]:
    """The secrets in `text`, as they are written there: for `also`. Keep them in memory only."""
    return tuple(text[a:b] for a, b in (s.span for s in find_secrets(text)))


def mask_collect(text: str) -> tuple[str, tuple[str, ...]]:
    """`text` masked, and the secret values it held: pass them as `also` when masking what was
    derived from `text`. Keep them in memory only."""
    secrets = find_secrets(text)
    return _apply(text, secrets, ()), tuple(text[a:b] for a, b in (s.span for s in secrets))


FRAGMENT_CHARS = 8


def _apply(text: str, secrets: list[SecretMatch], also: Iterable[str]) -> str:
    spans = [(s.span[0], s.span[1], s.kind) for s in secrets]
    also = tuple(also)
    if also:
        spans = _merge_spans(spans + _fragments(text, also))
    if not spans:
        return _INVISIBLE.sub("", text) if not text.isascii() else text
    out, pos = [], 0
    for a, b, kind in spans:
        out.append(_INVISIBLE.sub("", text[pos:a]))
        out.append(f"[REDACTED:{kind}]")
        pos = b
    out.append(_INVISIBLE.sub("", text[pos:]))
    return "".join(out)


def _fragments(text: str, values: Iterable[str]) -> list[tuple[int, int, str]]:
    """Spans of `text` (original offsets) holding FRAGMENT_CHARS or more consecutive characters
    of one of `values`, compared in normalised form."""
    n = FRAGMENT_CHARS
    grams: set[str] = set()
    for v in values:
        nv = _normalise(v)[0]
        grams.update(nv[i : i + n] for i in range(len(nv) - n + 1))
    if not grams:
        return []
    norm, starts, ends = _normalise(text)
    hits = [i for i in range(len(norm) - n + 1) if norm[i : i + n] in grams]
    out: list[tuple[int, int, str]] = []
    for i in hits:
        a, b = i, i + n
        if starts is not None and ends is not None:
            a, b = starts[a], ends[b - 1]
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b), "fragment")
        else:
            out.append((a, b, "fragment"))
    return out


def _merge_spans(spans: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    out: list[tuple[int, int, str]] = []
    for a, b, kind in sorted(spans):
        if out and a < out[-1][1]:
            # a shape's own name says more than "fragment"
            out[-1] = (out[-1][0], max(out[-1][1], b), kind if out[-1][2] == "fragment" else out[-1][2])
        else:
            out.append((a, b, kind))
    return out


def preview(text: str, limit: int = 240) -> str:
    """A short one-line view of `text` that is safe to store: masked first, then whitespace
    collapsed, then cut to at most `limit` characters."""
    flat = " ".join(mask_secrets(text).split())
    if len(flat) <= limit:
        return flat
    if limit <= 1:
        return flat[:limit]
    return flat[: limit - 1] + "…"


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def mask_strings(value: Any) -> Any:
    """Every string in a JSON-able value masked (mask_secrets); keys, numbers and structure as
    they are, so the result still serialises to valid JSON."""
    if isinstance(value, str):
        return mask_secrets(value)
    if isinstance(value, Mapping):
        return {k: mask_strings(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask_strings(v) for v in value]
    return value
