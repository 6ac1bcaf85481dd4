"""Log text: compress a long CI or service log to a budget, and pull out the names it cites.

`compress_log` keeps what a reader (or a small model) needs to name a failure: the error lines
with some context, the first and the last error block, and the tail of the log, where CI
failures usually are. What a CI runner prints after the failing step (cache uploads, post-job
cleanup: `data/ci_epilogues.yaml`) is dropped first. Repeated and near-repeated lines (progress
bars, download counters, timestamps) collapse into one line with a count. It is a pure,
deterministic function.

`extract_paths`, `extract_error_codes` and `extract_identifiers` serve the gate's grounding
check: a summary may only cite file names, error codes and identifiers that occur in its input.
The same functions run on the input and on the summary, so a name extracted from one is
extracted the same way from the other.
"""

from __future__ import annotations

import functools
import re
from bisect import bisect_right
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CompressedLog",
    "compress_log",
    "drop_epilogues",
    "extract_error_codes",
    "extract_identifiers",
    "extract_paths",
]


@dataclass(frozen=True)
class CompressedLog:
    text: str
    original_chars: int
    original_lines: int
    kept_lines: int  # lines of the original represented in `text` (a collapsed run counts fully)

    # Extracted on demand: the router only needs `text`, and extraction is ~20% of the cost.
    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(extract_paths(self.text))

    @property
    def error_codes(self) -> tuple[str, ...]:
        return tuple(extract_error_codes(self.text))

    @property
    def ratio(self) -> float:
        return self.original_chars / max(1, len(self.text))


# ---------------------------------------------------------------- line cleaning and shapes
#
# The regexes below run once over the whole text, not once per line: per-line calls cost more in
# interpreter overhead than the matching itself, and a 30k-character log must compress in a few ms.

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07\n]*\x07")
# GitHub Actions prefixes every raw log line with one of these; they make no two lines equal.
_LEADING_STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z ", re.MULTILINE)

# What varies between near-repeats: numbers, times, sizes, hex ids (a token with a digit, with any
# leading hex letters), and the length of progress bars and padding.
_NUMBER = re.compile(r"[0-9][0-9a-zA-Z_.:,\-]*")  # starts at a digit: the engine skips ahead to one
# An id that started with hex letters: "a3f9c1" -> "a0" -> "0". Bounded, so a long run of letters
# cannot make the match quadratic.
_HEX_HEAD = re.compile(r"[a-f]{1,16}0")
_BAR = re.compile(r"[=#\->*|_~.]{3,}")


def _clean_lines(text: str) -> list[str]:
    if "\x1b" in text:
        text = _ANSI.sub("", text)
    if _LEADING_STAMP.match(text):
        text = _LEADING_STAMP.sub("", text)
    return [line.rstrip() for line in text.splitlines()]


def _shapes(lines: list[str]) -> list[str]:
    """Two lines with the same shape are near-repeats: equal up to numbers, ids and times."""
    shaped = _BAR.sub("=", _HEX_HEAD.sub("0", _NUMBER.sub("0", "\n".join(lines)))).split("\n")
    return [" ".join(s.split()) for s in shaped]  # padding varies with the numbers it aligns


# ---------------------------------------------------------------- what makes a line important

# Literal cues, lower case. A line holding none of them cannot be an error line, so the precise
# pattern below only runs on the few lines that do (str.find is far faster than regex alternation).
_CUES = (
    "error", "err!", "fail", "fatal", "panic", "critical", "exception", "traceback", "caused by",
    "stack", "assert", "expected", "actual", "but was", "exit", "non-zero", "cannot", "can't",
    "could not", "unable to", "not found", "no such file", "undefined", "segmentation", "killed",
    "timed out", "timeout", "time out", "denied", "unauthori", "forbidden", "did not", "broken",
    "\u2717", "\u2716", "\u00d7", "\u2718",
)
_LINE_START_CUES = ("E ", "F ", "E:")  # pytest's E/F lines, apt's "E: ..."
# Phrases that look like errors but report their absence ("Failures: 0, Errors: 0").
_BENIGN = re.compile(
    r"\b(?:0|no|zero)\s+(?:errors?|failures?|failed|failing)\b"
    r"|\b(?:errors?|failures?|failed|failing)\s*[:=]\s*0\b"
    r"|\bwithout\s+errors?\b|\berror[-_ ]?prone\b|-Werror\b|\bonFailure\b"
    r"|\bassertions?\s*[:=]?\s*\d+|\b\d+\s+assertions?\b",
    re.IGNORECASE,
)
# Separate patterns rather than one alternation: Python's regex engine tries every branch at every
# position, and a line is usually settled by the first pattern anyway. Strong cues name a failure;
# weak ones often do but also fill routine output ("skipping, cvs not found").
_STRONG = tuple(
    re.compile(p)
    for p in (
        r"\b(?:ERROR|ERR!|FAILED|FAILURE|FAIL|FATAL|PANIC|CRITICAL)\b",
        r"\b(?:[Ee]rror|[Ff]atal|[Ff]ailure|[Ff]ailed|[Ff]ails|[Pp]anic(?:ked)?)\b",
        r"(?<=[a-z])(?:Exception|Error)\b|\bTraceback\b|\bCaused by\b",
        r"\b[Aa]ssert(?:ion)?\w*|\b(?:[Ee]xpected|[Aa]ctual|[Bb]ut was)\b\s*[:<]",
        r"\bexit(?:ed)?\s+(?:with\s+)?(?:code|status|with)?\s*[:=]?\s*[1-9]|\bnon-zero\s+exit",
        r"^\s*[EF]\s{1,4}\S|^E: |^\s*[\u2717\u2716\u00d7\u2718]\s",  # pytest E/F, apt E:, test-runner crosses
        r"\bdid not (?:match|pass|succeed)\b|\bBROKEN\b|\bwarnings? (?:treated )?as errors?\b",
    )
)
_WEAK = tuple(
    re.compile(p)
    for p in (
        r"\b(?:[Cc]annot|[Cc]an't|[Cc]ould not|[Uu]nable to)\b|\bnot found\b|\b[Nn]o such file\b",
        r"\bundefined (?:reference|method|symbol|variable|local)\b|\bsegmentation fault\b|\bStack ?trace\b",
        r"\b[Kk]illed\b|\b[Tt]imed? ?out\b|\b[Dd]enied\b|\b[Uu]nauthori[sz]ed\b|\b[Ff]orbidden\b",
    )
)
# The line that reports a failed step; the output that explains it comes just before.
_EXIT_LINE = re.compile(
    r"\bexit(?:ed)?\s+(?:with\s+)?(?:code|status)?\s*[:=]?\s*[1-9]|\bnon-zero exit|"
    r"\bBUILD FAILURE\b|\bBUILD FAILED\b|\bFAILURE: Build failed\b|\bnpm ERR! code ELIFECYCLE\b",
    re.IGNORECASE,
)
# Where a CI step starts: a shell prompt echo, a GitHub Actions group, or the previous step's result.
_STEP_START = re.compile(r"^(?:\$ |##\[group\]|The command .* exited with \d+|> Task :)")
# Stack frames: after the first few, the rest rarely name the cause.
_FRAME = re.compile(r"^\s+(?:at |from /|\.\.\. \d+ more\b)")


# A test runner's success line quotes error text as test data ("test_match[Permission denied]
# PASSED"); it reports that nothing failed, unless it also counts failures.
_SUCCESS = re.compile(r"\bPASS(?:ED)?\b|[\u2713\u2714\u221a]|^\s*(?:ok|OK)\b|\[\s*OK\s*\]|\.\.\.\s*ok$|\bSUCCESS\b")
_FAIL_COUNT = re.compile(r"\b[1-9]\d*\s+(?:failed|failures?|errors?)\b|\b(?:failed|failures?|errors?)\s*[:=]\s*[1-9]", re.IGNORECASE)


def _error_scores(lines: list[str]) -> dict[int, int]:
    """Line index -> 2 (strong failure cue) or 1 (weak cue), for lines that have one."""
    joined = "\n".join(lines).lower()
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line) + 1)
    candidates: set[int] = set()
    for cue in _CUES:
        i = joined.find(cue)
        while i != -1:
            candidates.add(bisect_right(starts, i) - 1)
            i = joined.find(cue, i + 1)
    candidates.update(k for k, line in enumerate(lines) if line.lstrip()[:2] in _LINE_START_CUES)
    scores: dict[int, int] = {}
    for i in candidates:
        if lines[i].startswith("$ "):
            continue  # a command being echoed, however it handles failure, is not a failure
        if _SUCCESS.search(lines[i]) and not _FAIL_COUNT.search(lines[i]):
            continue
        line = _BENIGN.sub(" ", lines[i])
        if any(rx.search(line) for rx in _STRONG):
            scores[i] = 2
        elif any(rx.search(line) for rx in _WEAK):
            scores[i] = 1
    return scores


# ---------------------------------------------------------------- runner epilogues

EPILOGUES = Path(__file__).parent / "data" / "ci_epilogues.yaml"


@dataclass(frozen=True)
class _Epilogue:
    name: str
    start: re.Pattern[str]
    end: re.Pattern[str] | None  # None: the start line alone
    to_end: bool


@functools.cache
def _epilogues() -> tuple[tuple[_Epilogue, ...], re.Pattern[str]]:
    """The bundled rules, and one pattern that finds any rule's start line in a whole text."""
    import yaml

    rules = []
    for i, r in enumerate(yaml.safe_load(EPILOGUES.read_text(encoding="utf-8"))):
        try:
            rules.append(_Epilogue(r["name"], re.compile(r["start"]), re.compile(r["end"]) if r.get("end") else None,
                                   bool(r.get("to_end", False))))
        except (KeyError, TypeError, re.error) as e:
            raise ValueError(f"{EPILOGUES}: rule {i + 1}: {e}") from e
    return tuple(rules), re.compile("|".join(f"(?:^{r.start.pattern})" for r in rules), re.MULTILINE)


def drop_epilogues(lines: list[str]) -> list[str]:
    """`lines` (cleaned: no ANSI codes, no timestamps) without the sections a CI runner prints
    after the failing step. Lines without any rule's start come back as the same list."""
    rules, any_start = _epilogues()
    if not any_start.search("\n".join(lines)):
        return lines
    out: list[str] = []
    i = 0
    while i < len(lines):
        rule = next((r for r in rules if r.start.match(lines[i])), None)
        if rule is None:
            out.append(lines[i])
            i += 1
        elif rule.to_end:
            break
        elif rule.end is None:
            i += 1
        else:
            i += 1
            while i < len(lines) and not rule.end.match(lines[i]):
                i += 1
            i += 1  # the closing line; past the end when it never came
    return out


# ---------------------------------------------------------------- compression


@dataclass(frozen=True)
class _Unit:
    """One output line: an original line, or a run of near-repeats shown once with a count."""

    text: str
    count: int  # original lines it stands for
    score: int = 0  # 0 routine, 1 weak failure cue, 2 strong
    exit_line: bool = False
    step_start: bool = False

    @property
    def blank(self) -> bool:
        return not self.text


_CONTEXT_BEFORE = 3
_CONTEXT_AFTER_MAX = 25  # an error's explanation runs to the next blank line, up to this many lines
_CORE_AFTER = 2
_EXIT_CONTEXT_BEFORE = 12  # a failed step's explanation precedes its exit line
_FULL_BLOCKS = 3  # the best blocks get their whole context before the rest get their cores
_STEP_LOOKBACK = 300
_FRAMES_KEPT = 12
_TAIL_SHARE = 0.25  # of the budget, reserved first for the last lines of the log
_GAP_RESERVE = 18  # chars reserved per "... [N lines]" marker; longer than any real marker
_MIN_LINE_CAP = 160


def compress_log(text: str, budget_chars: int = 4000) -> CompressedLog:
    """Compress `text` to at most `budget_chars` characters, keeping whole lines in order.

    A line much longer than the budget allows (minified code, base64) is shortened with a
    visible marker; no other line is ever cut. Where lines were dropped a `... [N lines]`
    marker stands in for them.
    """
    lines = drop_epilogues(_clean_lines(text))
    units = _collapse(lines)
    line_cap = max(_MIN_LINE_CAP, budget_chars // 4)
    shown = [_cap(u.text, line_cap) for u in units]
    costs = [len(s) + 1 for s in shown]

    if sum(costs) - 1 <= budget_chars:
        chosen = list(range(len(units)))
    else:
        chosen = _select(units, costs, budget_chars)
    out = _render(units, shown, chosen)
    while len(out) > budget_chars and chosen:  # only reachable for absurdly small budgets
        chosen = chosen[:-1]
        out = _render(units, shown, chosen)
    if len(out) > budget_chars:  # not even the "... [N lines]" marker fits
        out = ""
    return CompressedLog(
        text=out,
        original_chars=len(text),
        original_lines=len(text.splitlines()),
        kept_lines=sum(units[i].count for i in chosen),
    )


def _collapse(lines: list[str]) -> list[_Unit]:
    shapes = _shapes(lines)
    scores = _error_scores(lines)

    def unit(k: int, text: str | None = None, count: int = 1) -> _Unit:
        line = lines[k]
        return _Unit(
            text if text is not None else line,
            count,
            scores.get(k, 0),
            scores.get(k, 0) == 2 and bool(_EXIT_LINE.search(line)),
            line[:1] in "$#T>" and bool(_STEP_START.match(line)),
        )

    def is_frame(k: int) -> bool:
        return lines[k][:1] in " \t" and bool(_FRAME.match(lines[k]))

    units: list[_Unit] = []
    i, n = 0, len(lines)
    while i < n:
        j = i + 1
        if is_frame(i):
            while j < n and is_frame(j):
                j += 1
            units.extend(unit(k) for k in range(i, min(j, i + _FRAMES_KEPT)))
            if j - i > _FRAMES_KEPT:
                units.append(_Unit(f"    ... [{j - i - _FRAMES_KEPT} more frames]", j - i - _FRAMES_KEPT))
            i = j
            continue
        while j < n and shapes[j] == shapes[i]:
            j += 1
        count = j - i
        if not lines[i].strip():
            units.append(_Unit("", count))  # a run of blank lines shows once
        elif count == 1 or (count == 2 and lines[i] != lines[i + 1]):
            units.extend(unit(k) for k in range(i, j))  # two near-repeats: cheaper shown than counted
        else:
            units.append(unit(i, f"{lines[i]} [x{count}]", count))
        i = j
    return units


def _cap(line: str, cap: int) -> str:
    if len(line) <= cap:
        return line
    marker = f" …[+{len(line) - cap} chars]"
    return line[: cap - len(marker)] + marker


class _Budget:
    """The selected units and the exact size of their rendering, with gap markers reserved."""

    def __init__(self, costs: list[int], budget: int):
        self.costs, self.budget = costs, budget
        self.selected = [False] * len(costs)
        self.size = _GAP_RESERVE - 1  # the whole log starts as one dropped run

    def _delta(self, i: int) -> int:
        n = len(self.selected)
        left_gap = i > 0 and not self.selected[i - 1]
        right_gap = i < n - 1 and not self.selected[i + 1]
        gaps = 1 if (left_gap and right_gap) else (-1 if not (left_gap or right_gap) else 0)
        return self.costs[i] + gaps * _GAP_RESERVE

    def add(self, i: int) -> bool:
        if self.selected[i]:
            return True
        delta = self._delta(i)
        if self.size + delta > self.budget:
            return False
        self.selected[i] = True
        self.size += delta
        return True


def _select(units: list[_Unit], costs: list[int], budget_chars: int) -> list[int]:
    n = len(units)
    budget = _Budget(costs, budget_chars)

    # 1. The tail: the last step's output and the build's final verdict.
    tail_limit = int(budget_chars * _TAIL_SHARE)
    for i in range(n - 1, -1, -1):
        if budget.size + costs[i] > tail_limit or not budget.add(i):
            break

    # 2. Error blocks, best first: the cores (error line and the next few) of the best few, then
    #    their whole context; then the same for all the others. A long context in one block never
    #    crowds out the error line of another.
    blocks = _error_blocks(units)
    for group in (blocks[:_FULL_BLOCKS], blocks[_FULL_BLOCKS:]):
        for block in group:
            _add_range(budget, block.center, min(block.hi, block.center + _CORE_AFTER), block.center)
        for block in group:
            _add_range(budget, block.center, block.hi, block.lo)

    # 3. Whatever room is left goes to more tail, then to the start of the log.
    for i in range(n - 1, -1, -1):
        if not budget.add(i):
            break
    for i in range(n):
        if not budget.add(i):
            break
    return [i for i in range(n) if budget.selected[i]]


@dataclass(frozen=True)
class _Block:
    center: int  # the error line
    lo: int
    hi: int
    priority: tuple[int, int, int]


def _error_blocks(units: list[_Unit]) -> list[_Block]:
    """One block per error line, with its context, best first.

    Best means: a failed step's exit line first, then errors inside a failed step (between a
    step's start and its non-zero exit line), then the others; strong cues before weak; among
    equals the last block, then the first, then the others from the end backwards, since CI
    failures sit near the end and the first error often caused the rest.
    """
    n = len(units)
    in_failing_step = [False] * n
    for e, u in enumerate(units):
        if u.exit_line:
            k = e - 1
            while k >= max(0, e - _STEP_LOOKBACK) and not units[k].step_start:
                in_failing_step[k] = True
                k -= 1
    errors = [i for i, u in enumerate(units) if u.score]
    if not errors:
        return []
    first, last = errors[0], errors[-1]
    blocks = []
    for i in errors:
        u = units[i]
        hi = lo = i
        if u.exit_line:  # what explains a failed step precedes its exit line; what follows is the next step
            lo = max(0, i - _EXIT_CONTEXT_BEFORE)
            tier = 0
        else:
            while lo > max(0, i - _CONTEXT_BEFORE) and not units[lo - 1].blank:
                lo -= 1
            while hi < min(n - 1, i + _CONTEXT_AFTER_MAX) and not units[hi + 1].blank:
                hi += 1
            tier = 1 if in_failing_step[i] else 2
        rank = 0 if i == last else 1 if i == first else 2 + (last - i)
        blocks.append(_Block(i, lo, hi, (tier, -u.score, rank)))
    return sorted(blocks, key=lambda b: b.priority)


def _add_range(budget: _Budget, center: int, hi: int, lo: int) -> None:
    """Add lines from the error line forwards to `hi`, then backwards to `lo`; stop at the first
    line that does not fit, so a block is never shown with holes in it."""
    for i in range(center, hi + 1):
        if not budget.add(i):
            return
    for i in range(center - 1, lo - 1, -1):
        if not budget.add(i):
            return


def _render(units: list[_Unit], shown: list[str], chosen: list[int]) -> str:
    out: list[str] = []
    prev = -1
    for i in chosen:
        if i > prev + 1:
            out.append(_gap(units, prev + 1, i))
        out.append(shown[i])
        prev = i
    if prev < len(units) - 1:
        out.append(_gap(units, prev + 1, len(units)))
    return "\n".join(out)


def _gap(units: list[_Unit], lo: int, hi: int) -> str:
    return f"... [{sum(u.count for u in units[lo:hi])} lines]"


# ---------------------------------------------------------------- names a text cites

_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.\-]*://\S+")
_EXT = (
    r"(?:java|kt|kts|scala|groovy|py|pyi|ipynb|js|mjs|cjs|jsx|ts|tsx|vue|svelte|cs|csproj|fs|vb|sln|"
    r"go|rs|rb|erb|c|h|cc|cpp|cxx|hpp|hh|m|mm|swift|php|pl|pm|lua|r|dart|ex|exs|erl|hrl|hs|clj|cljs|"
    r"ml|elm|sh|bash|zsh|ps1|bat|cmd|sql|html|htm|css|scss|sass|less|xml|xsd|xsl|json|jsonl|yml|yaml|"
    r"toml|ini|cfg|conf|properties|gradle|lock|md|rst|txt|log|csv|proto|tf|hcl|jar|war|pom|gemspec|"
    r"podspec|mod|sum|cmake|mk|dockerfile|env|pem|lockb)"
)
# Paths are found token by token: splitting on separators is one fast pass, and only tokens
# holding a slash, a backslash or a dot need the precise patterns.
_TOKEN = re.compile(r"[^\s'\"`()<>\[\]{},;|]+")
_WIN_PATH = re.compile(r"[A-Za-z]:\\(?:[\w.\-@+$~]+\\)*[\w.\-@+$~]+")
_UNIX_PATH = re.compile(
    r"(?:~|\.{1,2})?/(?:[\w.\-@+]+/)*[\w.\-@+]+"  # rooted: /a/b, ./a, ~/a
    r"|(?:[\w.\-@+]+/){2,}[\w.\-@+]+"  # relative, at least two slashes: src/main/Foo
    r"|(?:[\w.\-@+]+/)?[\w\-@+][\w.\-@+]*\." + _EXT  # a/b.py or b.py
)
_LINE_SUFFIX = re.compile(r":\d+(?::.*)?$")  # file.rb:30:in, file.py:12:5:
_HAS_LETTER = re.compile(r"[A-Za-z]")


def _blank_urls(text: str) -> str:
    # A URL's path is not a file in the build; blank it but keep offsets for ordering.
    return _URL.sub(lambda m: " " * len(m.group()), text) if "://" in text else text


def extract_paths(text: str) -> list[str]:
    """File paths and file names the text mentions, without `:line` suffixes, in first-seen order."""
    found: dict[str, None] = {}
    for m in _TOKEN.finditer(_blank_urls(text)):
        tok = m.group()
        if "/" not in tok and "\\" not in tok and "." not in tok:
            continue
        tok = _LINE_SUFFIX.sub("", tok.rstrip(".,:'\"")).rstrip(".,:")
        rx = _WIN_PATH if "\\" in tok else _UNIX_PATH
        if rx.fullmatch(tok, 0) and _HAS_LETTER.search(tok) and tok.strip("./~"):
            found.setdefault(tok, None)
    return list(found)


_ERRNO = (
    r"E(?:NOENT|ACCES|PERM|EXIST|NOTDIR|ISDIR|INVAL|MFILE|NFILE|NOSPC|CONNREFUSED|CONNRESET|CONNABORTED|"
    r"TIMEDOUT|ADDRINUSE|ADDRNOTAVAIL|AI_AGAIN|NOTFOUND|PIPE|HOSTUNREACH|NETUNREACH|NOMEM|BUSY|NOTEMPTY|"
    r"ROFS|LOOP|NAMETOOLONG|XDEV|AGAIN|BADF|CHILD|DQUOT|PROTO|NOTSUP|NOTCONN|LIFECYCLE|RESOLVE|"
    r"INTEGRITY|BADENGINE|NOTSUP|UNSUPPORTED)"
)
# Each pattern starts with a literal or a narrow character class, so the regex engine can skip
# ahead instead of trying every branch at every position; the word-boundary checks are done by
# hand after a hit, because a leading \b would disable that skipping.
_CODE_PATTERNS = tuple(
    re.compile(p)
    for p in (
        r"CVE-\d{4}-\d{4,}\b",
        r"GHSA(?:-[23456789cfghjmpqrvwx]{4}){3}\b",
        r"ERR_[A-Z0-9_]{2,}\b",
        r"SIG(?:SEGV|KILL|TERM|ABRT|BUS|ILL|FPE|PIPE|INT|HUP|QUIT|TRAP)\b",
        _ERRNO + r"\b",
        r"(?:TS|CS|BC|FS|LNK|MSB|NU|NETSDK|CA|IDE|SA|SC|RCS|KT|TSL|NG)\d{3,5}\b",
        r"[CEFW]\d{3,4}\b",
    )
)
_EXCEPTION = re.compile(r"(?:Exception|Error)\b")
_IDENT = re.compile(r"[A-Za-z_$][\w$]*")
_STATUS = re.compile(r"[45]\d\d\b")
_STATUS_BEFORE = re.compile(
    r"(?:\bHTTP(?:/\d(?:\.\d)?)?|\bstatus(?:\s*code)?|\breturned|\breceived|\bgot|\bresponded with"
    r"|\bresponse(?:\s*code)?|\bcode|\bnpm ERR! (?:code )?E)\s*[:=]?\s*$",
    re.IGNORECASE,
)
_STATUS_AFTER = re.compile(
    r"\s*[(:\-]?\s*(?:Unauthori[sz]ed|Forbidden|Not Found|Bad Request|Conflict|Too Many Requests|"
    r"Internal Server Error|Bad Gateway|Service Unavailable|Gateway Time-?out)\b",
    re.IGNORECASE,
)
_EXIT_WORD = re.compile(r"[Ee]xit|[Nn]on-zero")
_EXIT_CODE = re.compile(
    r"(?:exit(?:ed)?\s*(?:with)?\s*(?:code|status)?|non-zero exit status)\s*[:=]?\s*(\d+)\b",
    re.IGNORECASE,
)


_MAX_NAME = 200  # a qualified class name longer than this is not one; bounds the look back
_NAME_CHARS = re.compile(r"[\w.$]+")


def _class_name(dotted: str) -> str | None:
    """The longest qualified class name that `dotted` ends with, e.g. java.lang.NullPointerException;
    None for a bare "Error" or lower-case "error"."""
    parts = dotted.split(".")
    last = parts[-1]
    if not last[:1].isupper() or last in ("Error", "Exception"):
        return None
    keep = [last]
    for part in reversed(parts[:-1][-_MAX_PARTS:]):
        if not _IDENT.fullmatch(part):
            break
        keep.append(part)
    return ".".join(reversed(keep))


def _word_start(text: str, i: int) -> bool:
    return i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")


def extract_error_codes(text: str) -> list[str]:
    """Error codes in first-seen order: compiler codes (E0425, TS2345, CS0246), ERR_*, errno names,
    exception class names, `HTTP 403`, `exit code 137`, signals, CVE/GHSA ids."""
    found: list[tuple[int, str]] = []
    for rx in _CODE_PATTERNS:
        found.extend((m.start(), m.group()) for m in rx.finditer(text) if _word_start(text, m.start()))
    for m in _EXCEPTION.finditer(text):
        # The qualified name runs back from "Error"; matched on the reversed text so the match is
        # anchored where it ends.
        head = _NAME_CHARS.match(text[max(0, m.start() - _MAX_NAME) : m.start()][::-1])
        start = m.start() - (head.end() if head else 0)
        name = _class_name(text[start : m.end()])
        if name:
            found.append((m.end() - len(name), name))
    for m in _STATUS.finditer(text):
        i = m.start()
        if i > 0 and text[i - 1].isdigit():
            continue
        if _STATUS_BEFORE.search(text, max(0, i - 40), i) or _STATUS_AFTER.match(text, m.end()):
            found.append((i, "HTTP " + m.group()))
    for m in _EXIT_WORD.finditer(text):
        code = _EXIT_CODE.match(text, m.start())
        if code and _word_start(text, m.start()):
            found.append((m.start(), "exit code " + code.group(1)))
    return _ordered(found)


_WORD = re.compile(r"[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)*")
_MAX_PARTS = 12  # trailing parts kept from a dotted name or path; a cited name is never longer


def _is_named(word: str) -> bool:
    """snake_case, CamelCase or camelCase: a name someone gave a thing, not an English word."""
    if "_" in word.strip("_"):
        return True
    tail = word[1:]
    return tail != tail.lower() and word != word.upper()


def extract_identifiers(text: str) -> set[str]:
    """Everything a summary could cite by name: paths (and their trailing parts), error codes,
    CamelCase, snake_case and dotted names (and each part and trailing part of a dotted name)."""
    ids: set[str] = set(extract_error_codes(text))
    for p in extract_paths(text):
        ids.add(p)
        sep = "\\" if "\\" in p else "/"
        parts = [x for x in p.split(sep) if x not in ("", ".", "..", "~")][-_MAX_PARTS:]
        ids.update(sep.join(parts[k:]) for k in range(len(parts)))
    for word in set(_WORD.findall(_blank_urls(text))):
        if "." in word:
            parts = word.split(".")[-_MAX_PARTS:]
            ids.add(word)
            ids.update(".".join(parts[k:]) for k in range(1, len(parts)))
            ids.update(p for p in parts if _is_named(p))
        elif _is_named(word):
            ids.add(word)
    return ids


def _ordered(found: list[tuple[int, str]]) -> list[str]:
    seen: dict[str, None] = {}
    for _, item in sorted(found, key=lambda t: t[0]):
        seen.setdefault(item, None)
    return list(seen)
