"""Hard stops: inputs a local model must never answer, whatever its confidence.

Four categories, checked on the input before any model runs:

- security:   CVE/GHSA ids, advisories and audit findings, leaked secrets and reports of leaks,
              security incidents (breaches, malware, compromised accounts).
- access:     a remote system or account refusing: HTTP 401/403, registry and git host logins,
              tokens, one-time passwords, cloud credentials, RBAC, sudo and credential prompts
              with nobody to answer them (in the CI locales git and sudo are translated into),
              and requests for access or credentials.
- production: irreversible or production operations: destroy, drop, truncate, unqualified
              delete or update, wiping datastores and data directories, deleting cloud
              resources, force pushes to main, applies, deploys and migrations against
              production, credential rotation.
- novel:      crash classes a routine classifier has no business labelling: segfaults, core
              dumps, kernel panics, internal compiler errors, heap corruption.

The rules are data: `data/hardstops/<category>.yaml`, grouped by family, each rule with its
cue words, pattern(s), named context checks (`hardstop_context.py`) and the examples it must
fire on and must not, which the tests run. The files are loaded, validated (errors name the file
and line) and compiled once. Routine failures - timeouts, full disks, out of memory, network
errors - are never hard stops: a classifier labels those.

Precision matters as much as recall: these run on every input, and real CI logs are full of
maven-deploy-plugin, TokenizerTest, `delete` in test names, 404s for missing versions, passing
tests named for the 403 they check, changelogs, docs. Rules use word boundaries and context.

Speed: text is NFKC-normalised and casefolded once; a set of its words decides which rules can
possibly match, and only those rules' regexes run, only near their cue words. An input with no
cue costs one normalisation and one tokenisation.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

import yaml

from smallfirst.hardstop_context import CHECKS, FRAGMENTS, Check, placeholder_at
from smallfirst.reasons import HARD_STOP_CATEGORIES
from smallfirst.redact import SecretMatch, find_secrets, mask_secrets
from smallfirst.tasks import HardStopMatch

if TYPE_CHECKING:
    from smallfirst.policy import Policy

__all__ = ["HardStops", "Rule", "RuleFileError", "builtin_rules", "load_rules", "normalise"]

EXCERPT_MAX = 80
RULES_DIR = Path(__file__).parent / "data" / "hardstops"

# ---------------------------------------------------------------- normalisation

_INVISIBLE = frozenset("\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e")
# Letters NFKC leaves alone that look like Latin ones: enough to stop "DRОP TABLE" with a Cyrillic O.
_CONFUSABLE = {
    "а": "a", "в": "b", "е": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c", "т": "t",
    "у": "y", "х": "x", "і": "i", "ј": "j", "ѕ": "s", "ԁ": "d", "ӏ": "l", "ɡ": "g",
    "α": "a", "ε": "e", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t", "υ": "u", "χ": "x",
}
_UNCONFUSE = str.maketrans(_CONFUSABLE)
_NON_ASCII_RUN = re.compile(r"[^\x00-\x7f]+")
_SPECIAL = re.compile("[" + "".join(sorted(_INVISIBLE | set(_CONFUSABLE) | {c.upper() for c in _CONFUSABLE})) + "]")
# A word holding a look-alike letter; it is mapped to Latin unless it also holds a Cyrillic or
# Greek letter that has no Latin twin, which makes it a real word of that script ("Ошибка").
_CONFUSABLE_WORD = re.compile(r"[^\W\d_]*[" + "".join(_CONFUSABLE) + r"][^\W\d_]*")
_REAL_NON_LATIN = re.compile(
    "[" + "".join(c for c in map(chr, [*range(0x370, 0x400), *range(0x400, 0x530)]) if c.isalpha() and c not in _CONFUSABLE) + "]"
)


def _unconfuse(norm: str) -> str:
    """Map look-alike letters to Latin in words that are not real Cyrillic or Greek words.

    "DRОP" (a Cyrillic O among Latin letters) and "ассеѕѕ" (all look-alikes) become Latin;
    "пароль" and "Ошибка" stay as they are, so rules can be written for Russian or Greek text.
    Short all-look-alike words of those languages ("не", "на") are mapped too; rule patterns go
    through this same function, so they still line up. Every mapping is one character to one."""
    if not _SPECIAL.search(norm):
        return norm
    parts, pos = [], 0
    for m in _CONFUSABLE_WORD.finditer(norm):
        if _REAL_NON_LATIN.search(m.group()):
            continue
        parts.append(norm[pos : m.start()])
        parts.append(m.group().translate(_UNCONFUSE))
        pos = m.end()
    parts.append(norm[pos:])
    return "".join(parts)


def normalise(text: str) -> tuple[str, list[int] | None]:
    """NFKC + casefold, invisible characters dropped, look-alike letters mapped to Latin.

    Returns the normalised text and, for each of its characters, the offset in `text` it came
    from (with one extra entry for the end), or None when every character kept its offset.
    """
    if text.isascii():
        return text.lower(), None
    # Most non-ASCII logs only carry a few check marks or box-drawing characters that NFKC and
    # casefolding leave at one character each: then offsets are unchanged and no map is needed.
    # (lower() rather than casefold() here: it is much faster on long text, and the characters the
    # two treat differently, such as the sharp s, never occur in a rule: the loader checks.)
    if unicodedata.is_normalized("NFKC", text) and not _SPECIAL.search(text):
        lowered = text.lower()
        if len(lowered) == len(text):
            return lowered, None
    parts: list[str] = []
    offsets: list[int] = []
    pos = 0
    for m in _NON_ASCII_RUN.finditer(text):
        if m.start() > pos:
            parts.append(text[pos : m.start()].lower())
            offsets.extend(range(pos, m.start()))
        for i in range(m.start(), m.end()):
            ch = text[i]
            if ch in _INVISIBLE:
                continue
            n = unicodedata.normalize("NFKC", ch).casefold()
            parts.append(n)
            offsets.extend([i] * len(n))
        pos = m.end()
    parts.append(text[pos:].lower())
    offsets.extend(range(pos, len(text) + 1))
    return _unconfuse("".join(parts)), offsets


# Word cues are found by splitting on these; '-' and '_' stay inside words, so `test_token_refresh`
# is one word and never the cue `token`.
_SEPARATORS = b"()[]{}<>:;,.!?\"'=/\\|`*#@&+~^$%\t\r\n\x0b\x0c"
_SPLIT = bytes.maketrans(_SEPARATORS, b" " * len(_SEPARATORS))


def _words(norm: str) -> set[bytes]:
    return set(norm.encode("utf-8", "surrogatepass").translate(_SPLIT).split())


# ---------------------------------------------------------------- rules as data


@dataclass(frozen=True)
class Rule:
    id: str
    category: str
    family: str
    # The pattern(s) as alternatives that each start with a literal, so the regex engine can skip
    # ahead to it (a leading \b or group costs 100x on a long log), each with whether it must start
    # a word (its \b is checked in code) and the cues that let it run (as the prefilter reports
    # them: "x", "x" for "x*", "x" for "*x*").
    matchers: tuple[tuple[re.Pattern[str], bool, frozenset[str]], ...]
    patterns: tuple[str, ...]  # the patterns as written, fragments filled in and look-alikes folded
    # Words one of which must occur for the rule to be possible: "x" a word, "x*" a word starting
    # with x, "*x*" anywhere in the text (for scripts written without spaces; non-ASCII only). The
    # rule's own cues and those of its patterns that carry their own.
    cues: tuple[str, ...]
    checks: tuple[Check, ...]  # context checks on the normalised text; all must accept a match
    fire: tuple[str, ...]  # examples it must fire on
    pass_: tuple[str, ...]  # look-alikes nothing may fire on
    source: str  # "access.yaml:120", for messages

    def accepts(self, norm: str, m: re.Match[str]) -> bool:
        return all(check(norm, m) for check in self.checks)

    def fires(self, text: str) -> bool:
        """This rule alone, cue prefilter included, on `text`."""
        norm, _ = normalise(text)
        words = _words(norm)
        cues = _Cues((self,)).candidates(norm, words, {w[:3] for w in words}).get(0)
        return cues is not None and _first_hit(self, norm, cues) is not None


class RuleFileError(ValueError):
    """A rule file that cannot be used. `str()` reads `file:line: field: message`."""

    def __init__(self, file: str, line: int | None, field: str, message: str):
        self.file, self.line, self.field, self.message = file, line, field, message
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {field}: {message}" if field else f"{where}: {message}")


_FILE_KEYS = {"category", "context", "families"}
_FAMILY_KEYS = {"about", "rules"}
_RULE_KEYS = {"id", "cues", "pattern", "patterns", "context", "skip_context", "fire", "pass"}


def load_rules(paths: Iterable[Path]) -> tuple[Rule, ...]:
    """Every rule of the given files, validated and compiled, in file order."""
    rules: list[Rule] = []
    seen: dict[str, str] = {}
    for path in paths:
        for rule in _load_file(path):
            if rule.id in seen:
                raise RuleFileError(path.name, int(rule.source.rsplit(":", 1)[1]), "id",
                                    f"{rule.id!r} is already defined at {seen[rule.id]}")
            seen[rule.id] = rule.source
            rules.append(rule)
    return tuple(rules)


@functools.cache
def builtin_rules() -> tuple[Rule, ...]:
    return load_rules(sorted(RULES_DIR.glob("*.yaml")))


class _Reader:
    """One rule file's YAML nodes, read with errors that name the file, line and field."""

    def __init__(self, name: str):
        self.name = name

    def compose(self, source: str) -> yaml.Node:
        try:
            return yaml.compose(source, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            raise RuleFileError(self.name, mark.line + 1 if mark else None, "", f"YAML syntax: {getattr(exc, 'problem', exc)}") from None

    def fail(self, node: yaml.Node, field: str, message: str) -> RuleFileError:
        return RuleFileError(self.name, node.start_mark.line + 1, field, message)

    def mapping(self, node: yaml.Node, field: str, allowed: set[str], required: set[str]) -> dict[str, yaml.Node]:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, field, "must be a mapping")
        out: dict[str, yaml.Node] = {}
        for k, v in node.value:
            key = f"{field}.{k.value}".lstrip(".")
            if k.value in out:
                raise self.fail(k, key, "duplicate key")
            if allowed and k.value not in allowed:
                raise self.fail(k, key, f"unknown key; use {sorted(allowed)}")
            out[k.value] = v
        for key in sorted(required - set(out)):
            raise self.fail(node, f"{field}.{key}".lstrip("."), "missing")
        return out

    def text(self, node: yaml.Node, field: str) -> str:
        if isinstance(node, yaml.ScalarNode) and node.tag != "tag:yaml.org,2002:str":
            raise self.fail(node, field, f"must be a string; quote {node.value!r} (YAML reads it as {node.tag.rsplit(':', 1)[-1]})")
        if not isinstance(node, yaml.ScalarNode) or not node.value:
            raise self.fail(node, field, "must be a non-empty string")
        return node.value

    def nodes(self, node: yaml.Node, field: str) -> list[yaml.Node]:
        if not isinstance(node, yaml.SequenceNode) or not node.value:
            raise self.fail(node, field, "must be a non-empty list")
        return node.value

    def texts(self, node: yaml.Node, field: str) -> list[str]:
        return [self.text(n, f"{field}[{i}]") for i, n in enumerate(self.nodes(node, field))]

    def checks(self, node: yaml.Node, field: str) -> list[str]:
        names = self.texts(node, field)
        for n, name in zip(node.value, names):
            if name not in CHECKS:
                raise self.fail(n, field, f"unknown context check {name!r}; use {sorted(CHECKS)}")
        return names

    def cues(self, node: yaml.Node, field: str) -> tuple[str, ...]:
        return tuple(_cue(cue, lambda msg, n=n: self.fail(n, field, msg)) for n, cue in zip(node.value, self.texts(node, field)))

    def pattern(self, node: yaml.Node, field: str) -> str:
        return _pattern_source(self.text(node, field), lambda msg: self.fail(node, field, msg))


def _load_file(path: Path) -> list[Rule]:
    reader = _Reader(path.name)
    top = reader.mapping(reader.compose(path.read_text(encoding="utf-8")), "", _FILE_KEYS, {"category", "families"})
    category = reader.text(top["category"], "category")
    if category not in HARD_STOP_CATEGORIES:
        raise reader.fail(top["category"], "category", f"{category!r} is not one of {list(HARD_STOP_CATEGORIES)}")
    defaults = reader.checks(top["context"], "context") if "context" in top else []
    rules: list[Rule] = []
    for family, fnode in reader.mapping(top["families"], "families", set(), set()).items():
        fam = reader.mapping(fnode, f"families.{family}", _FAMILY_KEYS, {"about", "rules"})
        reader.text(fam["about"], f"{family}.about")
        for index, rnode in enumerate(reader.nodes(fam["rules"], f"{family}.rules")):
            rules.append(_parse_rule(reader, rnode, f"{family}.rules[{index}]", category, family, defaults))
    return rules


def _parse_rule(reader: _Reader, node: yaml.Node, field: str, category: str, family: str, defaults: list[str]) -> Rule:
    r = reader.mapping(node, field, _RULE_KEYS, {"id", "fire", "pass"})
    rid = reader.text(r["id"], "id")
    if not rid.startswith(category + "."):
        raise reader.fail(r["id"], "id", f"{rid!r} must start with {category + '.'!r}")
    if ("pattern" in r) == ("patterns" in r):
        raise reader.fail(node, rid, "give exactly one of pattern or patterns")
    cues = reader.cues(r["cues"], f"{rid}.cues") if "cues" in r else ()
    # A pattern is a string (run when one of the rule's cues occurs) or {cues, pattern} (run when
    # one of its own does): alternatives with rare words of their own stay cheap.
    sources: list[tuple[yaml.Node, str, tuple[str, ...]]] = []
    for i, pn in enumerate(reader.nodes(r["patterns"], f"{rid}.patterns") if "patterns" in r else [r["pattern"]]):
        where = f"{rid}.patterns[{i}]" if "patterns" in r else f"{rid}.pattern"
        if isinstance(pn, yaml.MappingNode):
            pm = reader.mapping(pn, where, {"cues", "pattern"}, {"cues", "pattern"})
            sources.append((pm["pattern"], reader.pattern(pm["pattern"], f"{where}.pattern"), reader.cues(pm["cues"], f"{where}.cues")))
        else:
            if not cues:
                raise reader.fail(pn, f"{rid}.cues", "missing: a pattern without its own cues needs the rule's")
            sources.append((pn, reader.pattern(pn, where), cues))
    own = reader.checks(r["context"], f"{rid}.context") if "context" in r else []
    skip = reader.checks(r["skip_context"], f"{rid}.skip_context") if "skip_context" in r else []
    for n, name in zip(r["skip_context"].value if skip else [], skip):
        if name not in defaults:
            raise reader.fail(n, f"{rid}.skip_context", f"{name!r} is not a context check of this file")
    # The rule's own checks run first: they are the selective ones, the file's are generic.
    names = [c for c in own if c not in defaults] + [c for c in defaults if c not in skip]
    return Rule(
        id=rid,
        category=category,
        family=family,
        matchers=_compile(sources, reader, rid),
        patterns=tuple(s for _, s, _ in sources),
        cues=tuple(dict.fromkeys(cue for _, _, own_cues in sources for cue in own_cues)),
        checks=tuple(CHECKS[c] for c in names),
        fire=tuple(reader.texts(r["fire"], f"{rid}.fire")),
        pass_=tuple(reader.texts(r["pass"], f"{rid}.pass")),
        source=f"{reader.name}:{node.start_mark.line + 1}",
    )


_FRAGMENT = re.compile(r"\{\{(\w+)\}\}")
_ESCAPE = re.compile(r"\\.", re.DOTALL)


def _pattern_source(source: str, fail) -> str:
    """A pattern as written -> as compiled: `{{name}}` fragments filled in, look-alike letters
    folded as `normalise` folds the input. Patterns are written as normalised text is: lower
    case, NFKC (so no full-width colon, no sharp s)."""
    literal = _ESCAPE.sub("", source)
    if literal != unicodedata.normalize("NFKC", literal).casefold() or literal != literal.lower():
        raise fail("must be written in lower case and NFKC form, as normalised input is (escapes like \\S are fine)")

    def fill(m: re.Match[str]) -> str:
        if m.group(1) not in FRAGMENTS:
            raise fail(f"unknown fragment {{{{{m.group(1)}}}}}; use {sorted(FRAGMENTS)}")
        return FRAGMENTS[m.group(1)]

    source = _FRAGMENT.sub(fill, source)
    # Fold look-alikes word by word, leaving escapes (\s, \b) alone so they do not join words.
    parts, pos = [], 0
    for m in _ESCAPE.finditer(source):
        parts.append(_unconfuse(source[pos : m.start()]))
        parts.append(m.group())
        pos = m.end()
    parts.append(_unconfuse(source[pos:]))
    return "".join(parts)


def _compile(sources: list[tuple[yaml.Node, str, tuple[str, ...]]], reader: _Reader, rid: str) -> tuple[tuple[re.Pattern[str], bool, frozenset[str]], ...]:
    matchers: list[tuple[re.Pattern[str], bool, frozenset[str]]] = []
    for node, source, cues in sources:
        gate = frozenset(_cue_body(c) for c in cues)
        try:
            re.compile(source)
            matchers += [(re.compile(alt), word_start, gate) for alt, word_start in _literal_first(source)]
        except re.error as exc:
            raise reader.fail(node, f"{rid}.pattern", f"bad regex: {exc}") from None
    return tuple(matchers)


def _cue_body(cue: str) -> str:
    """A cue as the prefilter reports it present: "x*" -> "x", "*x*" -> "x"."""
    return cue[1:-1] if cue.startswith("*") and cue.endswith("*") and len(cue) > 2 else cue.rstrip("*")


_MAX_ALTERNATIVES = 64


def _literal_first(source: str) -> list[tuple[str, bool]]:
    r"""`source` as alternatives that match the same text, each starting with a literal where it
    can: top-level `|` split, a leading group of alternatives distributed (`\b(?:rails|rake)\s`
    -> `rails\s`, `rake\s`), a leading \b before a word character dropped (and flagged, to be
    checked in code). CPython's regex engine only skips ahead fast to a literal prefix."""
    out: list[tuple[str, bool]] = []
    pending = [(alt, False) for alt in _split_top(source)]
    while pending:
        alt, word_start = pending.pop(0)
        if alt.startswith("\\b") and len(alt) > 2 and (alt[2].isalnum() or alt[2] == "_" or alt.startswith("\\b(?:")):
            pending.insert(0, (alt[2:], True))
            continue
        group = _leading_group(alt)
        if group is not None and len(out) + len(pending) < _MAX_ALTERNATIVES:
            inner, rest, optional = group
            pending[:0] = [(x + rest, word_start) for x in _split_top(inner)] + ([(rest, word_start)] if optional else [])
            continue
        if word_start and not (alt[:1].isalnum() or alt[:1] == "_"):
            # \b before something that is not a literal word character keeps its regex meaning.
            alt, word_start = "\\b" + alt, False
        out.append((alt, word_start))
    return out


def _split_top(source: str) -> list[str]:
    """Split a regex at its top-level `|`s."""
    parts, depth, start, i, in_class = [], 0, 0, 0, False
    while i < len(source):
        c = source[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
            if source[i + 1 : i + 2] == "]" or source[i + 1 : i + 3] == "^]":
                i += 2 if source[i + 1] == "]" else 3
                continue
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "|" and depth == 0:
            parts.append(source[start:i])
            start = i + 1
        i += 1
    parts.append(source[start:])
    return parts


def _leading_group(alt: str) -> tuple[str, str, bool] | None:
    """(inner, rest, optional) when `alt` starts with a non-capturing group, bare or with `?`."""
    if not alt.startswith("(?:"):
        return None
    depth, i, in_class = 0, 0, False
    while i < len(alt):
        c = alt[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                rest = alt[i + 1 :]
                if rest[:1] == "?" and rest[1:2] not in ("?", "+"):
                    return alt[3:i], rest[1:], True
                if rest[:1] in ("?", "*", "+", "{"):
                    return None
                return alt[3:i], rest, False
        i += 1
    return None


def _cue(cue: str, fail) -> str:
    if cue.startswith("*") and cue.endswith("*") and len(cue) > 2:
        body = cue[1:-1]
        if body.isascii():
            raise fail(f"substring cue {cue!r} must hold a non-ASCII character (ASCII cues are words or prefixes)")
        norm, _ = normalise(body)
        return f"*{norm}*"
    prefix = cue.endswith("*")
    body = cue.rstrip("*")
    norm, _ = normalise(body)
    if norm != body or not body:
        raise fail(f"cue {cue!r} must be written as normalised text is (lower case)")
    if _words(norm) != {norm.encode()}:
        raise fail(f"cue {cue!r} is not one word as the input is split into words")
    if prefix and len(norm.encode()) < 3:
        raise fail(f"prefix cue {cue!r} needs at least 3 bytes before the *")
    return cue


# ---------------------------------------------------------------- cue prefilter


class _Cues:
    """Which rules an input can possibly trigger, from the set of its words.

    Exact cue words are looked up with one set intersection; prefix cues (`cve-*`) through the
    set of 3-byte word heads; substring cues (`*鉴权*`) only when the input is not ASCII. So no
    rule costs anything on an input that lacks its cue."""

    def __init__(self, rules: Sequence[Rule]):
        self.exact: dict[bytes, list[int]] = {}
        self.prefix: dict[bytes, list[int]] = {}
        self.substring: dict[str, list[int]] = {}
        for i, rule in enumerate(rules):
            for cue in rule.cues:
                if cue.startswith("*") and cue.endswith("*"):
                    self.substring.setdefault(cue[1:-1], []).append(i)
                elif cue.endswith("*"):
                    self.prefix.setdefault(cue[:-1].encode(), []).append(i)
                else:
                    self.exact.setdefault(cue.encode(), []).append(i)
        self.exact_keys = frozenset(self.exact)
        # One pass finds the substring cues present; a shorter cue inside a found one is present too.
        self.substring_rx = re.compile("|".join(re.escape(c) for c in sorted(self.substring, key=len, reverse=True))) if self.substring else None

    def candidates(self, norm: str, words: set[bytes], heads: set[bytes]) -> dict[int, list[str]]:
        """rule index -> the cue strings present (for locating windows)."""
        out: dict[int, list[str]] = {}
        for cue in words & self.exact_keys:
            for i in self.exact[cue]:
                out.setdefault(i, []).append(cue.decode())
        if self.prefix:
            for cue, idx in self.prefix.items():
                if cue[:3] in heads:
                    for i in idx:
                        out.setdefault(i, []).append(cue.decode())
        if self.substring_rx is not None and not norm.isascii():
            found = set(self.substring_rx.findall(norm))
            for cue, idx in self.substring.items():
                if cue in found or any(cue in f for f in found):
                    for i in idx:
                        out.setdefault(i, []).append(cue)
        return out


# ---------------------------------------------------------------- policy phrases


@dataclass(frozen=True)
class _Phrase:
    id: str
    category: str
    pattern: re.Pattern[str]
    first_word: bytes


def _phrase_rule(category: str, index: int, phrase: str) -> _Phrase | None:
    norm, _ = normalise(phrase)
    words = norm.split()
    if not words:
        return None
    # Whole phrase, case-insensitively: word boundaries at both ends wherever the phrase starts or
    # ends with a word character; any run of whitespace between its words.
    body = r"\s+".join(re.escape(w) for w in words)
    left = r"(?<![\w])" if re.match(r"\w", norm.strip()) else ""
    right = r"(?![\w])" if re.search(r"\w$", norm.strip()) else ""
    cue = norm.encode("utf-8").translate(_SPLIT).split()
    return _Phrase(f"policy.{category}.{index}", category, re.compile(left + body + right), cue[0] if cue else b"")


# Policy phrases get the generic context checks of their category's rules: a phrase in a passing
# test's name, a changelog entry or a CI step that sets a login up is not the thing it names.
_PHRASE_CHECKS: dict[str, tuple[Check, ...]] = {
    "security": (),
    "access": tuple(CHECKS[c] for c in ("not_a_test_report", "not_a_changelog_entry", "not_auth_setup")),
    "production": tuple(CHECKS[c] for c in ("not_a_test_report", "not_a_changelog_entry")),
    "novel": (),
}


# ---------------------------------------------------------------- scanning


class HardStops:
    """The built-in rules plus phrases from the policy. The policy can add, never remove."""

    def __init__(self, extra: Mapping[str, Sequence[str]] | None = None, *, rules: Sequence[Rule] | None = None):
        unknown = [c for c in (extra or {}) if c not in HARD_STOP_CATEGORIES]
        if unknown:
            raise ValueError(f"unknown hard-stop categories {unknown}; use {list(HARD_STOP_CATEGORIES)}")
        self._rules = tuple(builtin_rules() if rules is None else rules)
        self._cues = _cues_for(self._rules)
        self._phrases: dict[str, list[_Phrase]] = {c: [] for c in HARD_STOP_CATEGORIES}
        for category, phrases in (extra or {}).items():
            for i, phrase in enumerate(phrases):
                rule = _phrase_rule(category, i, phrase)
                if rule is not None:
                    self._phrases[category].append(rule)

    @classmethod
    def from_policy(cls, policy: "Policy") -> "HardStops":
        return cls(policy.hard_stops)

    @property
    def rule_ids(self) -> list[str]:
        return [r.id for r in self._rules] + ["security.secret"] + [p.id for ps in self._phrases.values() for p in ps]

    def first(self, text: str) -> HardStopMatch | None:
        """The first match in category order (security, access, production, novel), or None."""
        return next(iter(self._scan(text, stop_at_first=True)), None)

    def scan(self, text: str) -> list[HardStopMatch]:
        """At most one match per category, in category order; within a category the earliest."""
        return self._scan(text, stop_at_first=False)

    def _scan(self, text: str, *, stop_at_first: bool) -> list[HardStopMatch]:
        if not text:
            return []
        norm, offsets = normalise(text)
        words = _words(norm)
        heads = {w[:3] for w in words}
        candidates = self._cues.candidates(norm, words, heads)
        found: list[HardStopMatch] = []
        for category in HARD_STOP_CATEGORIES:
            best: tuple[int, int, str] | None = None  # (start, end, rule id) in normalised offsets
            for i, cues in candidates.items():
                rule = self._rules[i]
                if rule.category != category:
                    continue
                hit = _first_hit(rule, norm, cues)
                if hit is not None and (best is None or hit[0] < best[0]):
                    best = (hit[0], hit[1], rule.id)
            for phrase in self._phrases[category]:
                if phrase.first_word and phrase.first_word not in words:
                    continue
                for m in phrase.pattern.finditer(norm):
                    if all(check(norm, m) for check in _PHRASE_CHECKS[category]):
                        if best is None or m.start() < best[0]:
                            best = (m.start(), m.end(), phrase.id)
                        break
            span: tuple[int, int] | None = None
            rule_id, secret_kind = "", None
            if best is not None:
                span = _original_span(best[0], best[1], offsets)
                rule_id = best[2]
            if category == "security":
                # A secret in the input is a security stop: it must not reach a log or a model.
                secret = _first_secret(text, norm, words, heads)
                if secret is not None and (span is None or secret.span[0] < span[0]):
                    span, rule_id, secret_kind = secret.span, "security.secret", secret.kind
            if span is not None:
                found.append(HardStopMatch(category, rule_id, span, _excerpt(text, *span, secret_kind)))
                if stop_at_first:
                    break
        return found


@functools.cache
def _builtin_cues() -> "_Cues":
    return _Cues(builtin_rules())


def _cues_for(rules: tuple[Rule, ...]) -> _Cues:
    return _builtin_cues() if rules is builtin_rules() else _Cues(rules)


def _first_hit(rule: Rule, norm: str, cues: list[str]) -> tuple[int, int] | None:
    """The earliest accepted match of any of the rule's alternatives, each searched only near
    the present cues that gate it."""
    best: tuple[int, int] | None = None
    windows: dict[tuple[str, ...], list[tuple[int, int]]] = {}
    for rx, word_start, gate in rule.matchers:
        active = tuple(c for c in cues if c in gate)
        if not active:
            continue
        if active not in windows:
            windows[active] = _windows(norm, active)
        for lo, hi in windows[active]:
            if best is not None and lo >= best[0]:
                break
            hit = _first_accepted(rule, rx, word_start, norm, lo, hi)
            if hit is not None:
                if best is None or hit[0] < best[0]:
                    best = hit
                break  # windows are in order: nothing later in them can start earlier
    return best


def _first_accepted(rule: Rule, rx: re.Pattern[str], word_start: bool, norm: str, lo: int, hi: int) -> tuple[int, int] | None:
    for m in rx.finditer(norm, lo, hi):
        if word_start and m.start() > 0 and _is_word_char(norm[m.start() - 1]):
            continue
        if rule.accepts(norm, m):
            return m.start(), m.end()
    return None


def _is_word_char(c: str) -> bool:
    return c.isalnum() or c == "_"


_WINDOW = 240
_MAX_WINDOWS = 40


def _windows(norm: str, cues: Iterable[str]) -> list[tuple[int, int]]:
    """Stretches of text around the cue words, merged, in order; the whole text when a cue is so
    frequent that windows would cost more than one pass."""
    starts: list[int] = []
    for cue in cues:
        i = norm.find(cue)
        while i != -1:
            starts.append(i)
            if len(starts) > _MAX_WINDOWS:
                return [(0, len(norm))]
            i = norm.find(cue, i + 1)
    merged: list[tuple[int, int]] = []
    for s in sorted(starts):
        lo, hi = max(0, s - _WINDOW), min(len(norm), s + _WINDOW)
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


# ---------------------------------------------------------------- secrets

# Words and word prefixes that make a distinctive secret possible (the detector lives in redact).
_SECRET_WORDS = frozenset(
    (b"-----begin", b"-----end", b"_authtoken", b"_auth", b"_password", b"authorization", b"bearer", b"hooks")
)
_SECRET_PREFIXES = (
    "akia", "asia", "abia", "acca", "agpa", "aida", "aipa", "aroa", "anpa", "anva", "a3t",
    "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "glpat-", "xox", "sk-", "aiza",
    "sk_live_", "rk_live_", "sk_test_", "rk_test_", "whsec_", "npm_", "eyj",
)
# The prefixes by their first three bytes, as a word's head is kept: most inputs share no head
# with any of them, and one set intersection says so (28 substring tests did, per input).
_SECRET_PREFIX_HEADS: dict[bytes, tuple[str, ...]] = {
    head: tuple(p for p in _SECRET_PREFIXES if p[:3].encode() == head)
    for head in {p[:3].encode() for p in _SECRET_PREFIXES}
}
_URL_PASSWORD = re.compile(r"://[^\s:/@]+:[^\s@/]+@")
# A token a log wrapper broke across two lines: a known prefix, the first part up to the line's
# end, the rest on the next line after indentation.
_WRAPPED_TOKEN = re.compile(
    r"\b(?:gh[pousr]_|github_pat_|glpat-|npm_|xox[abposr]-|[sr]k_live_)[A-Za-z0-9_-]{8,}\r?\n[ \t]*[A-Za-z0-9_-]{4,}(?![^\s])"
)


def _first_secret(text: str, norm: str, words: set[bytes], heads: set[bytes]) -> SecretMatch | None:
    cued = not _SECRET_WORDS.isdisjoint(words) or any(
        p in norm for h in heads.intersection(_SECRET_PREFIX_HEADS) for p in _SECRET_PREFIX_HEADS[h]
    )
    if not cued and not ("://" in text and _URL_PASSWORD.search(text)):
        return None
    for secret in find_secrets(text, distinctive_only=True):
        if not placeholder_at(text, secret.span[0]):
            return secret
    return _wrapped_secret(text) if cued else None


def _wrapped_secret(text: str) -> SecretMatch | None:
    for m in _WRAPPED_TOKEN.finditer(text):
        first, _, rest = m.group().partition("\n")
        joined = first.rstrip("\r") + rest.strip()
        found = find_secrets(joined, distinctive_only=True)
        if found and found[0].span == (0, len(joined)):
            return SecretMatch(found[0].kind, m.span(), True)
    return None


def _original_span(start: int, end: int, offsets: list[int] | None) -> tuple[int, int]:
    if offsets is None:
        return start, end
    return offsets[start], offsets[end - 1] + 1 if end > start else offsets[start]


_CONTEXT = 24
_MAX_TOKEN = 200  # a "word" longer than this may itself be a secret; never cut into one


def _excerpt(text: str, start: int, end: int, secret_kind: str | None = None) -> str:
    """The match with a little context, masked, on one line, at most EXCERPT_MAX characters.

    Context is widened to whitespace before masking, so no token is cut: a cut secret would no
    longer look like one and could slip through. A secret is always shown as its kind, never in
    part (one a log wrapper split over two lines would not look like a secret to the masker)."""
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    line_end = len(text) if line_end < 0 else line_end
    lo = _to_space(text, max(line_start, start - _CONTEXT), line_start, -1)
    if secret_kind is not None:
        before = " ".join(mask_secrets(text[lo:start]).split()) if lo is not None else ""
        return f"{before} [REDACTED:{secret_kind}]".strip()[-EXCERPT_MAX:]
    hi = _to_space(text, min(line_end, end + _CONTEXT), line_end, +1)
    lo = start if lo is None else lo
    hi = end if hi is None else hi
    masked = " ".join(mask_secrets(text[lo:hi]).split())
    if len(masked) <= EXCERPT_MAX:
        return masked
    core = " ".join(mask_secrets(text[start:end]).split())
    at = masked.find(core) if core else -1
    begin = 0 if at < 0 else max(0, min(at - _CONTEXT // 2, len(masked) - EXCERPT_MAX))
    return masked[begin : begin + EXCERPT_MAX]


def _to_space(text: str, i: int, bound: int, step: int) -> int | None:
    """i moved outwards to the nearest whitespace, not past bound; None if none is near."""
    for _ in range(_MAX_TOKEN):
        if i == bound or text[i if step > 0 else i - 1].isspace():
            return i
        i += step
    return None
