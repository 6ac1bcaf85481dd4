"""Secrets out of text: mask them before anything is stored, previewed or sent to a provider.

`mask_secrets` replaces each secret with `[REDACTED:<kind>]`, keeping the context around it
(the key name, the user and host of a URL) so a reader still sees what was there. `preview`
masks first and truncates second, so a secret that straddles the cut cannot leak in part.
`find_secrets` is the detector itself; the security hard stop reuses it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Callable

__all__ = ["SecretMatch", "find_secrets", "mask_secrets", "preview", "sha256_text"]


@dataclass(frozen=True)
class SecretMatch:
    kind: str  # e.g. "github_token", "private_key", "url_password", "secret" (a generic key=value)
    span: tuple[int, int]  # the secret value itself, not the key name or URL around it
    # True for secrets recognisable by their own shape (a ghp_ token, a PEM block). A generic
    # `password=...` is masked all the same, but alone it is too common in CI logs to be a
    # security incident.
    distinctive: bool


# Zero-width characters can be planted inside a token to slip it past a pattern; they carry no
# meaning in logs, so they are dropped before matching.
_INVISIBLE = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u00ad]")

@dataclass(frozen=True)
class _Pattern:
    kind: str
    rx: re.Pattern[str]
    distinctive: bool
    # A lower-case string the text must contain for the pattern to be tried at all. Patterns
    # that start with a literal need none: the regex engine already skips ahead to it.
    cue: str | None = None
    # Check by hand that the match starts a word; a leading \b in the pattern would stop the
    # engine from skipping ahead to the literal.
    word_start: bool = False
    # Shape checks done after the match. Token patterns match the whole token possessively and
    # are checked here, so a long run of near-tokens ("sk-sk-sk-...") is scanned once, not once
    # per possible start.
    valid: Callable[[str], bool] | None = None


def _pat(
    kind: str,
    rx: str,
    *,
    flags: int = 0,
    distinctive: bool = True,
    cue: str | None = None,
    word_start: bool = True,
    valid: Callable[[str], bool] | None = None,
) -> _Pattern:
    return _Pattern(kind, re.compile(rx, flags), distinctive, cue, word_start, valid)


_KEY_LINE = re.compile(r"[ \t]*[A-Za-z0-9+/=]{32,}[ \t]*\r?")


def _generic_matches(rx: re.Pattern[str], clean: str, lower: str) -> list[re.Match[str]]:
    """Matches of the generic key=value pattern, tried only where a key word occurs: str.find is
    far faster than letting the engine try a case-insensitive alternation at every position."""
    if len(lower) != len(clean):  # a rare non-ASCII text whose lower-casing shifts offsets
        lower = "".join(c if len(c.lower()) != 1 else c.lower() for c in clean)
    starts: set[int] = set()
    for key in _GENERIC_KEYS:
        i = lower.find(key)
        while i != -1:
            starts.add(i)
            i = lower.find(key, i + 1)
    out: list[re.Match[str]] = []
    covered = -1
    for i in sorted(starts):
        # the key word may begin a little before the cue ("passwd" at "pass"; "apikey" at "key")
        for j in range(max(0, i - 7, covered), i + 1):
            m = rx.match(lower, j)
            if m is not None:
                out.append(m)
                covered = m.end()
                break
    return out


def _key_lines_before(text: str, end_line_start: int) -> int:
    """Start of the run of base64 key lines that ends just before an END line."""
    start = end_line_start
    while start > 0:
        prev = text.rfind("\n", 0, start - 1) + 1
        if not _KEY_LINE.fullmatch(text, prev, start - 1):
            break
        start = prev
    return start


def _is_jwt(token: str) -> bool:
    parts = token.rstrip(".").split(".")
    return len(parts) == 3 and parts[1].startswith("eyJ") and all(len(p) >= 8 for p in parts)


# The value is group "v" where a pattern has one, else the whole match. Earlier patterns win
# where matches overlap.
_PATTERNS: tuple[_Pattern, ...] = (
    # The whole block, multi-line; a block whose END line is missing runs to the end of the text.
    _pat("private_key", r"-----BEGIN (?P<label>[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?)-----.*?(?:-----END (?P=label)-----|\Z)",
         flags=re.DOTALL, word_start=False),
    # The tail of a block whose BEGIN line was cut off (an excerpt that starts mid-key): the END
    # line is matched here and find_secrets extends the match back over the key lines before it.
    _pat("private_key", r"^[ \t]*-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----",
         flags=re.MULTILINE, cue="-----end", word_start=False),
    _pat("aws_access_key", r"A(?:KIA|SIA|BIA|CCA|GPA|IDA|IPA|ROA|NPA|NVA|3T[A-Z0-9])[A-Z0-9]{16}(?![A-Za-z0-9])"),
    _pat("aws_secret_key",
         r"(?i:aws_?secret(?:_?access)?_?key|secret_?access_?key)[\"']?\s*[:=]\s*[\"']?(?P<v>[A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])",
         cue="secret", word_start=False),
    _pat("github_token", r"gh[pousr]_[A-Za-z0-9]{20,255}(?!\w)"),
    _pat("github_token", r"github_pat_[A-Za-z0-9_]{22,255}"),
    _pat("gitlab_token", r"glpat-[A-Za-z0-9_\-]{20,}"),
    _pat("slack_token", r"xox[abposr]-[A-Za-z0-9\-]{10,}"),
    _pat("slack_webhook", r"https://hooks\.slack\.com/services/[A-Za-z0-9/_\-]{20,}"),
    _pat("anthropic_key", r"sk-ant-[A-Za-z0-9_\-]{20,}"),
    _pat("openai_key", r"sk-[A-Za-z0-9_\-]++", valid=lambda t: len(t) >= 23 and any(c.isdigit() for c in t)),
    _pat("google_api_key", r"AIza[0-9A-Za-z_\-]{35}"),
    _pat("stripe_key", r"[sr]k_(?:live|test)_[0-9A-Za-z]{16,}+(?!\w)", cue="k_"),
    _pat("stripe_key", r"whsec_[0-9A-Za-z]{24,}+(?!\w)"),
    _pat("npm_token", r"npm_[A-Za-z0-9]{36}(?!\w)"),
    _pat("jwt", r"eyJ[A-Za-z0-9_\-.]++", valid=_is_jwt),
    _pat("npm_auth", r"_(?:authToken|auth|password)\s*=\s*[\"']?(?P<v>[^\s\"']+)"),
    # scheme://user:PASSWORD@host: the user and host stay readable.
    _pat("url_password", r"://[^\s:/@]+:(?P<v>[^\s@/]+)@", word_start=False),
    _pat("authorization",
         r"(?i:\bauthorization\b[\"']?\s*[:=]\s*[\"']?(?:(?:bearer|basic|token|bot|digest)\s+)?)(?P<v>[^\s\"',]{6,})",
         cue="authorization", word_start=False),
    _pat("authorization", r"\b(?i:bearer)\s+(?P<v>[A-Za-z0-9\-._~+/]{16,}=*)", cue="bearer", word_start=False),
    # key = value, key: value, "key": "value". The key must END in one of the words (TokenizerTest
    # is not a key); placeholders such as ${{ secrets.X }} and version numbers are filtered in
    # find_secrets. Matched on the lower-cased text, only where one of _GENERIC_KEYS occurs.
    _pat("secret",
         r"(?:password|passwd|passphrase|pwd|secret|api[_\-]?key|apikey|access[_\-]?key|private[_\-]?key|token)"
         r"(?:s|_?id)?[\"']?[ \t]*(?:=|:(?!//))[ \t]*"
         r"(?P<v>\"[^\"\n]{1,200}\"|'[^'\n]{1,200}'|[^\s\"',;&<>]+)",
         distinctive=False, word_start=False),
)
_GENERIC_KEYS = ("pass", "pwd", "secret", "key", "token")

# Values that are references to a secret, not the secret: templating, env vars, masks.
_PLACEHOLDER = re.compile(
    r"^[\"']?(?:\$|%|\{\{|<|\*{2,}|x{3,}|\[REDACTED|\[MASKED|\[secure\]|null$|none$|nil$|true$|false$|"
    r"undefined$|redacted$|changeme$|\.\.\.|v?\d+(?:\.\d+)*[\"']?$|https?/)",
    re.IGNORECASE,
)


def find_secrets(text: str, *, distinctive_only: bool = False) -> list[SecretMatch]:
    """Secrets in `text`, in order, non-overlapping. Spans are offsets in `text` as given.

    `distinctive_only` skips the generic key=value detector (the hard stops' view: a token with a
    recognisable shape is an incident, a `password=` in a log is not by itself)."""
    clean, offsets = _visible(text)
    lower = clean.lower()
    found: list[SecretMatch] = []
    taken: list[tuple[int, int]] = []
    for p in _PATTERNS:
        if p.cue is not None and p.cue not in lower:
            continue
        if not p.distinctive:
            if distinctive_only:
                continue
            matches = _generic_matches(p.rx, clean, lower)
        else:
            matches = p.rx.finditer(clean)
        for m in matches:
            if p.word_start and m.start() > 0 and (clean[m.start() - 1].isalnum() or clean[m.start() - 1] == "_"):
                continue
            if p.valid is not None and not p.valid(m.group()):
                continue
            start, end = m.span("v") if "v" in p.rx.groupindex and m.group("v") is not None else m.span()
            if p.kind == "private_key" and m.group().lstrip().startswith("-----END"):
                start = _key_lines_before(clean, start)
            if p.kind == "secret":
                value = clean[start:end]
                if _PLACEHOLDER.match(value) or len(value.strip("\"'")) < 3:
                    continue
                if value[0] in "\"'":
                    start, end = start + 1, end - 1
            if any(start < b and a < end for a, b in taken):
                continue
            taken.append((start, end))
            span = (offsets[start], offsets[end]) if offsets else (start, end)
            found.append(SecretMatch(p.kind, span, p.distinctive))
    return sorted(found, key=lambda s: s.span)


def mask_secrets(text: str) -> str:
    """`text` with every secret replaced by `[REDACTED:<kind>]`."""
    secrets = find_secrets(text)
    if not secrets:
        return _INVISIBLE.sub("", text)
    out, pos = [], 0
    for s in secrets:
        a, b = s.span
        out.append(_INVISIBLE.sub("", text[pos:a]))
        out.append(f"[REDACTED:{s.kind}]")
        pos = b
    out.append(_INVISIBLE.sub("", text[pos:]))
    return "".join(out)


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


def _visible(text: str) -> tuple[str, list[int] | None]:
    """`text` without invisible characters, and for each offset in it the offset in `text` (one
    extra entry for the end); None when nothing was removed, the common case."""
    if not _INVISIBLE.search(text):
        return text, None
    offsets = [i for i, ch in enumerate(text) if not _INVISIBLE.match(ch)]
    offsets.append(len(text))
    return _INVISIBLE.sub("", text), offsets
