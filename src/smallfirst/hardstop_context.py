"""Named context checks for hard-stop rules: what a regex alone cannot say.

A rule file names these (`context: [not_a_test_report]`); each takes the normalised text and the
rule's match and returns True when the match should stand. They keep precision without giving up
recall: a test that *asserts* a 403, a changelog line that *fixed* one, a doc that explains how
to rotate a key, a config line that sets a token up, a route *named* forbidden - none of those is
a system refusing access or an irreversible operation happening.

Each check looks at the match's own line (and at most a few lines around it), never at the
whole input, so one routine line elsewhere cannot hide a real failure.
"""

from __future__ import annotations

import re
from typing import Callable

Check = Callable[[str, re.Match[str]], bool]


def line_bounds(norm: str, start: int, end: int | None = None) -> tuple[int, int]:
    """Start and end offsets of the line(s) holding norm[start:end]."""
    lo = norm.rfind("\n", 0, start) + 1
    hi = norm.find("\n", start if end is None else end)
    return lo, (len(norm) if hi < 0 else hi)


# A CI log line's own prefix: a timestamp, a runner's step prefix, a log level in brackets.
_LOG_PREFIX = re.compile(
    r"(?:\s*(?:\d{4}-\d\d-\d\dt[\d:.]+z?|\d\d:\d\d:\d\d(?:[.,]\d+)?|#\d+\s+[\d.]+"
    r"|\[(?!\s*(?:pass|passed|ok|fail|failed|skip|skipped)\s*\])[\w ./:-]{1,30}\]|##\[\w+\]))*\s*"
)


def _content_start(norm: str, line_start: int) -> int:
    return _LOG_PREFIX.match(norm, line_start).end()


# ------------------------------------------------------------------ test reports

# A line that names a test rather than reports an error: a check mark, TAP's `ok 7`, Go's
# `--- PASS:`, a pytest node id with its outcome, a Gherkin step, a test call in source.
_TEST_LINE = re.compile(
    r"(?:[\u2713\u2714\u221a\u2611]"  # ✓ ✔ √ ☑: passed
    r"|(?:[\u2717\u2718\u2715\u2716\u00d7]|\d+\))\s[^\n]*\(\d+(?:\.\d+)?\s?m?s\)\s*$"  # ✗ ✘ ✕ ✖ × 1): failed, with a duration
    r"|(?:not\s+)?ok\s+\d+\b"
    r"|---\s+(?:pass|fail|skip):|===\s+(?:run|pause|cont)\b"
    r"|\[\s*(?:pass|passed|ok)\s*\]\s|pass\s+\S+\.(?:test|spec)\.\w+|ok\s+\S+\s+[\d.]+s\b|passed\s+[\w.]+\s+\[\d"
    r"|(?:given|when|then|and|but)\s[^\n]*#\s*[\w/.-]+:\d+\s*$"
    r"|(?:scenario|feature|background)(?:\s+outline)?:"
    r"|(?:it|test|describe|context|specify|scenario)\s*(?:\.\w+\s*)?\(\s*['\"`]"
    r"|(?:def|func|fun|void|public\s+void|async\s+def)\s+test\w*"
    r"|[^\n]*\s>\s[^\n]*\s(?:passed|failed|skipped)\s*$"  # Gradle: `AuthTest > rejects guests with 401 PASSED`
    r"|[^\n]*\s(?:passed|skipped)\s*(?:\[\s*\d+%\])?\s*$"
    r"|[\w:./ -]{1,80}::[a-z][\w ,'./-]{0,120}$"  # QUnit/Ember: `model:admin-user::revoke key`
    r"|[^\n]*\s[\u2713\u2714\u221a](?:\s*\(\d+(?:\.\d+)?\s?m?s\))?\s*$"  # `should handle 'denied: denied' ✓`
    r")",
    re.MULTILINE,
)
_NODE_ID_OUTCOME = re.compile(
    r"\S+\.py::\S+\s+(?:passed|failed|error|skipped|xfail|xpass)\b|(?:passed|failed|error|skipped)\s+\S+\.py::\S+"
)
_ASSERTION_BEFORE = re.compile(
    r"(?:\bexpect(?:ed|s|ing)?(?:\s+(?:http\s+)?status(?:\s*code)?)?|\bassert\w*\s*\(?\s*(?:[\w.]*status(?:_?code)?\s*(?:==|,)?)?"
    r"|\bto(?:\.|\s+)?(?:be|equal|eq|have\s+http\s+status|have_http_status|have\s+status)\(?:?|\bshould\s+(?:return|respond\s+with|be|get|receive)"
    r"|\bmust\s+(?:return|respond\s+with))\s*[(:=]?\s*(?:a\s+|an\s+|http\s+|status\s+)?$"
)
# Summaries that close a run in which nothing failed: what precedes them are test descriptions.
_CLEAN_SUMMARY = re.compile(
    r"^\s*(?:\d+\s+examples?,\s+0\s+failures"
    r"|\d+\s+passing\b(?![^\n]*failing)"
    r"|tests?:\s+\d+\s+passed,\s+\d+\s+total"
    r"|\d+\s+scenarios?\s+\(\d+\s+passed\)"
    r"|test\s+result:\s+ok\."
    r"|=+\s+\d+\s+passed\b(?![^\n]*failed)[^\n]*=+)",
    re.MULTILINE,
)
_REPORT_LINE = re.compile(r"[ \t]+[^\s][^\n]*$")  # an indented description line of a report


def not_a_test_report(norm: str, m: re.Match[str]) -> bool:
    """False when the match is a test's name, description or assertion, not a system's answer.

    `✓ returns 403 when the user is not an admin`, `test_forbidden_route PASSED`,
    `--- PASS: TestUnauthorized`, `expected status 401 to equal 200` name what a test checks.
    An error a test printed (`FAILED test_upload - HTTPError: 401 Client Error`) still counts:
    only text before the node id's ` - ` is the test's name."""
    lo, hi = line_bounds(norm, m.start(), m.end())
    start = _content_start(norm, lo)
    if _TEST_LINE.match(norm, start):
        return False
    line = norm[lo:hi]
    node = _NODE_ID_OUTCOME.search(line)
    if node is not None:
        dash = line.find(" - ", node.start())
        if dash < 0 or m.start() - lo < dash:
            return False
    if _ASSERTION_BEFORE.search(norm, max(lo, m.start() - 60), m.start()):
        return False
    # An indented description line (rspec's documentation format, mocha's spec reporter) of a
    # run whose summary, within a few lines, says nothing failed.
    if _REPORT_LINE.match(line):
        after = norm[hi : hi + 600]
        if _CLEAN_SUMMARY.search(after) and not re.search(r"\b(?:error|fatal|err!|failed)\b", line):
            return False
    return True


# ------------------------------------------------------------------ changelogs and release notes

_BULLET = r"(?:[-*+\u2022]\s+|\d+\.\s+)"
# Verbs a changelog entry starts with. Task-like imperatives (fix, update, remove, delete) are left
# out on purpose: "- fix the 401 from the registry" may be a request; "- Fixed ..." or
# "- Fixes ..." is an entry, and so is any bullet with an issue reference or under a heading.
_CHANGE_VERB = (
    r"(?:fixe[sd]|handle[sd]?|returns?|returned|adds?|added|support(?:s|ed)?|improve[sd]?|prevent(?:s|ed)?"
    r"|avoid(?:s|ed)?|resolve[sd]|corrected|allow(?:s|ed)?|shows?|reports?|retr(?:y|ies|ied)|now|no\s+longer|breaking"
    r"|document(?:s|ed)?|describe[sd]?|updated|bumped|removed|deprecate[sd]?|rename[sd]?|treat(?:s|ed)?|respect(?:s|ed)?"
    r"|raise[sd]?|throw(?:s|n)?|emit(?:s|ted)?|surface[sd]?|clarif(?:y|ies|ied)|logs?|logged|warn(?:s|ed)?|skipped|ignored"
    r"|refactor(?:s|ed)?)\b"
)
_CONVENTIONAL_COMMIT = re.compile(
    r"(?:feat|fix|chore|docs|refactor|perf|test|tests|build|ci|style|revert|security)(?:\([^)\n]{0,40}\))?!?:\s"
)
_VERSION_PREFIX = r"(?:v?\d+\.\d+(?:\.\d+)?[\w.-]*\s*[:)\-]\s*)?"
_CHANGE_ENTRY = re.compile(
    _BULLET + r"?" + _VERSION_PREFIX + r"(?:\*\*[^*\n]{1,40}:?\*\*:?\s*|[\w/. -]{1,30}:\s+)?(?:" + _CHANGE_VERB + r"|fixed:|changed:|added:)"
)
_DEPENDENCY_BUMP = re.compile(r"(?:[\w]+(?:\([^)\n]{0,20}\))?!?:\s+)?(?:bump|update|upgrade)s?\s+\S+\s+(?:from\s+\S+\s+)?to\s+v?\d")
_ISSUE_REF = re.compile(r"\(#\d+\)|\[#\d+\]|\(\[#\d+\]|\bby\s+@[\w-]+\s+in\s+https?://|/pull/\d+|/issues/\d+|\bgh-\d+\b")
_CHANGELOG_HEADING = re.compile(
    r"^\s*(?:#{1,4}\s*)?(?:\[?v?\d+\.\d+(?:\.\d+)?[\w.-]*\]?(?:\s*[-(][^\n]*)?"
    r"|changelog|changes|release\s+notes|what's\s+changed|bug\s*fixes|fixes|features|fixed|added|changed|removed|deprecated"
    r"|unreleased|improvements|enhancements|breaking\s+changes|security|performance|dependencies|documentation|other\s+changes"
    r"|notable\s+changes|miscellaneous|chores"
    r"|sourced\s+from\s+\S+\s+releases\.?|commits|merge\s+pull\s+request\s+#\d+[^\n]*|merge\s+branch\s+[^\n]*"
    r"|(?:chore\(deps\):\s+)?bumps?\s+\S+\s+from\s+\S+\s+to\s+\S+)\s*:?\s*$",
    re.MULTILINE,
)


def not_a_changelog_entry(norm: str, m: re.Match[str]) -> bool:
    """False when the match sits in a changelog or release-note entry, or a commit subject.

    `- Fix 401 Unauthorized when refreshing tokens (#1234)` reports that a bug *was* fixed, and
    so do `- Handle expired tokens`, `v9.0.0: Handle expired tokens` and `fix(auth): ...`. A
    request ("- fix the 401 from the registry") is not an entry: a task-like verb needs an issue
    reference or a changelog heading above it."""
    lo, hi = line_bounds(norm, m.start(), m.end())
    start = _content_start(norm, lo)
    line = norm[start:hi]
    if _CONVENTIONAL_COMMIT.match(line) or _DEPENDENCY_BUMP.match(line):
        return False
    entry = _CHANGE_ENTRY.match(line)
    bullet = re.match(_BULLET, line)
    # A bullet or a version that starts with a change verb is an entry; other lines need an
    # issue reference to be one ("Handle 403 from the API (#245)").
    if entry and (bullet or re.match(r"v?\d+\.\d+", line)):
        return False
    if (entry or bullet) and _ISSUE_REF.search(line):
        return False
    if bullet or entry:
        # A heading a few lines up ("## 2.4.1", "### Bug Fixes", "Release notes") makes the
        # bullets under it entries; a log line in between ends the list.
        block = norm[max(0, lo - 800) : lo]
        for heading in _CHANGELOG_HEADING.finditer(block):
            between = block[heading.end() :]
            if not re.search(r"\b(?:error|err!|fatal|failed)\b|^\s*[$>+]\s", between, re.MULTILINE):
                return False
    return True


# ------------------------------------------------------------------ credentials being set up

_PLACEHOLDER = r"(?:\$\{\{?\s*[\w.\-]+\s*\}?\}|\$[a-z_][\w]*|\*{3,}|<[\w .-]+>|%[\w]+%|\[masked\])"
_AUTH_SETUP = re.compile(
    r"\bnpm\s+config\s+set\b|\b(?:yarn|pnpm)\s+config\s+set\b|_authtoken\s*=|\bdocker\s+login\b|--password-stdin\b"
    r"|\blogin-action\b|\bpoetry\s+config\b|\bbundle\s+config\b|\bgit\s+config\b|\bnuget\s+(?:add\s+source|sources\s+add)\b"
    r"|\bpip\s+config\s+set\b|\bcargo\s+login\b|\bhelm\s+registry\s+login\b|\b(?:aws|gcloud|az)\s+\S*\s*login\b"
    r"|^\s*-?\s*(?:name|uses|with|env|username|password|token|registry-url|always-auth)\s*:"
)


def not_auth_setup(norm: str, m: re.Match[str]) -> bool:
    """False on a line that sets credentials up (`npm config set //reg/:_authToken ${NPM_TOKEN}`,
    `docker login --password-stdin`, a CI step named "Configure registry auth"): configuring a
    login is routine; only its failure is an access stop."""
    lo, hi = line_bounds(norm, m.start(), m.end())
    line = norm[_content_start(norm, lo) : hi]
    if not _AUTH_SETUP.search(line):
        return True
    failure = re.search(
        r"\b(?:error|fatal|failed|denied|unauthori[sz]ed|forbidden|invalid|expired|rejected|refused|required|missing|401|403)\b", line
    )
    return bool(failure) and not re.match(r"\s*-?\s*name\s*:", line)


_PLACEHOLDER_AT = re.compile(
    r"['\"]?(?:(?:bearer|basic|token)\s+)?(?:" + _PLACEHOLDER + r"|\[redacted[^\]]*\]|(?:x{4,}|\.{3,})(?![\w])"
    r"|your[-_]?\w*(?![\w])|changeme(?![\w]))",
    re.IGNORECASE,
)


def placeholder_at(text: str, start: int) -> bool:
    """A secret detector's hit at `start` that is only a reference to a secret: `${NPM_TOKEN}`,
    `${{ secrets.X }}`, `$TOKEN`, `***` (a CI's own masking), `<token>`, `[REDACTED]`."""
    return bool(_PLACEHOLDER_AT.match(text, start))


# ------------------------------------------------------------------ code and route mappings

_CODE_LINE = re.compile(
    r"\s*(?:(?:get|post|put|patch|delete|match)\s+['\"]/|path\(|re_path\(|url\(|route::|router\.\w+\(|app\.\w+\("
    r"|\[\w+(?:\(|\])|\w+\s*\+?=\s*\[?\s*(?:path|re_path|url)\(|(?:get|post|put|patch|delete)\s+/\S*\s+\w+#\w+"
    r"|@\w+(?:\(|$)|(?:public|private|protected|static|final)\s|class\s+\w+|def\s+\w+|func\s+\w+|function\s+\w+"
    r"|(?:export\s+)?(?:const|let|var)\s+\w+\s*(?::\s*[\w<>\[\]]+\s*)?=|[\w'\"]+\s*:\s*['\"][^'\"\n]*['\"],?\s*$|case\s+[\w.]+:|if\s*\(?[^\n]*==|elif\s|return\s+(?:err|new|\w+\()|raise\s+\w+|throw\s+new"
    r"|\{\s*path\s*:|//|/\*|<!--|\"\"\"|\'\'\'|(?:\}\s*)?catch\s*\(|except\s+[\w.]+(?:\s+as\s+\w+)?\s*:|expect\()"
)


def not_code(norm: str, m: re.Match[str]) -> bool:
    """False when the match is part of source code or a route table: an error *handler*,
    a route *named* forbidden, a status constant, a comment about what a function returns."""
    lo, hi = line_bounds(norm, m.start(), m.end())
    line = norm[_content_start(norm, lo) : hi]
    if _CODE_LINE.match(line):
        return False
    before = norm[max(lo, m.start() - 1) : m.start()]
    after = norm[m.end() : m.end() + 1]
    # A path segment or identifier: '/forbidden', errors#forbidden, views.forbidden, forbidden/,
    # a function Forbidden(), a quoted argument name='forbidden' or ("forbidden").
    if before in ("/", "#", ".") or after in ("/", "("):
        return False
    quoted = before in ("'", '"') and after == before
    return not (quoted and re.search(r"(?:[=(\[,]|\b(?:path|name|component|route|template|view|redirect|to|as|id)\s*:)\s*$",
                                     norm[max(lo, m.start() - 16) : m.start() - 1]))


# ------------------------------------------------------------------ documentation

_DOC_SENTENCE = re.compile(
    r"(?:^|[.!?:]\s)\s*(?:#+\s*)?(?:to\s+|how\s+(?:do|to|can|should|does)\b|when\s+you\b|you\s+can\b|you\s+may\b"
    r"|we\s+recommend\b|it\s+is\s+recommended\b|q:|use\s+`|the\s+`[^`\n]+`\s+(?:flag|option|command|setting|task)\b"
    r"|in\s+this\s+(?:tutorial|guide|example|section|post|article|chapter)\b|step\s+\d+\s*:)[^.!?\n]*$"
)
# "Rotating the signing key: generate a new key, ..." - a title, then the steps. (Not a log line
# such as "Deploying to production: 12 services updated".)
_TITLE = re.compile(
    r"\s*(?:#+\s*)?[a-z]+ing\b[^.:\n]{0,60}:(?:\s*$|\s+(?:generate|create|run|open|use|see|update|go|click|add|remove|delete"
    r"|revoke|set|copy|replace|follow|call|ask|make|first|then)\b)"
)
_POLICY_WORDS = re.compile(
    r"\b(?:every\s+\d+\s+(?:days?|hours?|months?)|regularly|periodically|automatic(?:ally)?|policy|interval|period|schedule[ds]?"
    r"|defaults?\s+to|once\s+a\s+(?:year|month|week)|without\s+downtime|guide|documentation|tutorial"
    r"|see\s+(?:the\s+)?(?:runbook|docs?|documentation|wiki|guide|readme|rb-\d+))\b"
)
_URGENT = re.compile(r"\b(?:now|immediately|asap|right\s+away|today|tonight|urgent(?:ly)?|leaked|exposed|compromised|contractor)\b")


# "If a token is leaked, rotate it immediately": what to do should it happen, not that it did.
_HYPOTHETICAL = re.compile(r"\W*(?:if|in\s+case|when(?:ever)?|should|once|unless)\b(?![^.\n]{0,40}\b(?:see\s+this|you\s+see))")


def _sentence(norm: str, m: re.Match[str]) -> tuple[int, int]:
    lo, hi = line_bounds(norm, m.start(), m.end())
    start = max(norm.rfind(". ", lo, m.start()), norm.rfind("? ", lo, m.start()), norm.rfind("! ", lo, m.start()), lo - 1) + 1
    ends = [i for i in (norm.find(". ", m.end(), hi), norm.find("? ", m.end(), hi)) if i >= 0]
    return start, min(ends or [hi])


def not_documentation(norm: str, m: re.Match[str]) -> bool:
    """False when the match explains how something is done (a heading, a title line, "To rotate
    your keys, open...", "How do I...", "Use `terraform destroy` to tear down the sandbox", "the
    `--prod` flag deploys to production") rather than asking for it or doing it. Anything urgent
    in the same sentence ("now", "leaked", "immediately") keeps the match."""
    lo, hi = line_bounds(norm, m.start(), m.end())
    start, end = _sentence(norm, m)
    if _HYPOTHETICAL.match(norm, start, end):
        return False
    if _URGENT.search(norm, start, end):
        return True
    line = norm[_content_start(norm, lo) : hi]
    if re.match(r"\s*#{1,6}\s", line) or _TITLE.match(line):
        return False
    if _DOC_SENTENCE.search(norm, start, m.start()) or re.match(r"\s*(?:#+\s*)?(?:to|how)\b", norm[start:end]):
        return False
    # "Rotate keys with `vault write ...`": an instruction naming the command to use.
    if re.search(r"\b(?:with|using|via|by\s+running|run)\s+`", norm[m.end() : end]):
        return False
    # "`aws s3 rm --recursive` deletes every object under a prefix": a command described.
    tick_open = norm.rfind("`", start, m.start())
    tick_close = norm.find("`", m.start(), end)
    if tick_open >= 0 and tick_close >= 0 and norm.count("`", start, m.start()) % 2 == 1:
        if re.match(r"`\s+(?:removes|deletes|drops|wipes|erases|destroys|empties|truncates|flushes|clears|is|are|will|does|can|runs|command|flag|option|task)\b", norm[tick_close:end]) \
                or re.search(r"\b(?:refuses|allows|supports|disables|enables|prevents|blocks|rejects)\s+$", norm[start:tick_open]):
            return False
    # A short label before a colon ("Credential rotation: see RB-12") names a topic.
    base = _content_start(norm, lo)
    label = re.match(r"\s*((?![a-z]+ing\b)[a-z][\w-]*(?:\s[\w-]+){0,2}):\s", norm[base:hi])
    return not (label and m.end() <= base + label.end(1) and not re.search(r"\b(?:error|fatal|failed|failure|warning)\b", label.group(1)))


def not_a_policy_statement(norm: str, m: re.Match[str]) -> bool:
    """False when the sentence states how often or how something is done ("Keys are rotated
    every 90 days", "rotation is handled automatically", "defaults to 24h") - unless it is urgent."""
    start, end = _sentence(norm, m)
    sentence = norm[start:end]
    if _HYPOTHETICAL.match(sentence):
        return False
    return bool(_URGENT.search(sentence)) or not _POLICY_WORDS.search(sentence)


_ADVICE = re.compile(
    r"^\W*(?:please\s+)?(?:never|don't|do\s+not|avoid)\b"
    r"|^\W*(?:if|in\s+case|when(?:ever)?|should|once|unless|before|to\s+prevent)\b(?![^.\n]{0,40}\b(?:see\s+this|you\s+see))"
    r"|\b(?:prevent\w*|should\s+not|must\s+not|no\s+(?:leaks?|secrets?)\s+(?:were\s+)?found|how\s+(?:should|do|can|to)"
    r"|where\s+should|we\s+use|scan(?:s|ned|ning)?\b[^.\n]{0,30}\bfor)\b"
)


def not_advice(norm: str, m: re.Match[str]) -> bool:
    """False when the sentence gives advice or describes a safeguard ("Never commit secrets",
    "a hook that prevents committing .env files", "How should we store the token?") rather than
    reporting that something happened."""
    start, end = _sentence(norm, m)
    return not _ADVICE.search(norm[start:end])


# ------------------------------------------------------------------ production targets

PROD = r"(?:(?<![a-z0-9])(?<!non-)(?<!pre-)(?<!non_)|(?<=\s-p))(?:prod|production|prd)(?![a-z])"
_PROD = re.compile(PROD)
_SCRATCH = re.compile(
    r"(?<![a-z])(?:test|tests|testing|ci|dev|development|(?<!\.)local|sandbox|preview|review|ephemeral"
    r"|tmp|temp|h2:mem|pr-\d+|pr\d+)(?![a-z])"
)

# Regex pieces rule files use as {{name}}.
FRAGMENTS = {
    "prod": PROD,
    # What may stand before an HTTP status to make it one: "HTTP/1.1 401", "status code: 403".
    "http_context": (
        r"(?:\bhttp(?:/\d(?:\.\d)?)?|\bstatus(?:\s*code)?|\bresponse(?:\s*code)?|\breturn(?:ed|ing)(?:\s*code)?|\breturn\s+code(?:\s*is)?"
        r"|\breceived(?:\s+status\s+code)?|\bgot|\bresponded\s+with|\bfailed\s+with|\berror|\bcode|\bserver\s+returned|\breason|\bfailed\s+put)"
    ),
}


def _command(norm: str, m: re.Match[str]) -> str:
    """The shell command the match is in: its line, cut at `;`, `&&`, `||` and `|` after it,
    with the commands chained before it on the same line (`cd envs/prod && terraform apply`)."""
    lo, hi = line_bounds(norm, m.start(), m.end())
    cut = re.search(r"\s(?:&&|\|\||;|\|)\s", norm[m.end() : hi])
    return norm[lo : m.end() + cut.start() if cut else hi]


def targets_production(norm: str, m: re.Match[str]) -> bool:
    """True when the command or sentence names a production target (prod var file, directory,
    namespace, context, stack, settings module, host)."""
    return bool(_PROD.search(_command(norm, m)))


def not_a_scratch_target(norm: str, m: re.Match[str]) -> bool:
    """False when the command visibly targets a test, CI, local, preview or temporary resource
    and nothing in it is production (`dropdb --if-exists app_test`, a preview stack `pr-123`).
    A `.local` host name is a network domain, not a local environment."""
    cmd = _command(norm, m)
    if _PROD.search(cmd):
        return True
    return not _SCRATCH.search(cmd.replace("_", " ").replace("-", " ").replace("/", " ").replace("pr ", "pr-"))


# ------------------------------------------------------------------ rule-specific checks


def not_an_audit_count(norm: str, m: re.Match[str]) -> bool:
    """"found 13 vulnerabilities (2 low, 11 moderate)" and "0 vulnerabilities" are routine npm
    summaries (high or critical findings are security.npm_audit); "Fixed following
    vulnerabilities" is a dependency's release note, not a finding."""
    before = norm[max(0, m.start() - 40) : m.start()]
    if re.search(r"(?:\b\d+|\bno(?: known)?)\s+(?:\w+\s+){0,2}$", before):
        return False
    return not re.search(r"\b(?:fix(?:e[sd])?|patch(?:e[sd])?|address(?:e[sd])?)\b[^\n]{0,30}$", before)


def statement_without_where(norm: str, m: re.Match[str]) -> bool:
    """The SQL statement the match starts has no WHERE (or USING/LIMIT) clause."""
    end = norm.find(";", m.end())
    stmt = norm[m.end() : m.end() + 300 if end < 0 else min(end, m.end() + 300)]
    stmt = stmt.split("\n\n", 1)[0]
    # WHERE 1=1 and WHERE true qualify nothing.
    return not re.search(r"\b(?:where(?!\s+(?:1\s*=\s*1|true)\b)|using|limit)\b", stmt)


def force_push_to_protected(norm: str, m: re.Match[str]) -> bool:
    """A force push (or a branch deletion) of main, master, a release or production branch."""
    cmd = _command(norm, m)[m.start() - line_bounds(norm, m.start())[0] :]
    forced = re.search(r"(?:^|\s)(?:--force(?:-with-lease)?|-f)\b|\s\+\S|\s--delete\b|\s:(?=\w)", cmd)
    return bool(forced) and bool(re.search(r"\b(?:main|master|prod|production|release)\b", cmd))


def not_orm_logging(norm: str, m: re.Match[str]) -> bool:
    """Hibernate, Liquibase and friends log the DDL they run against a test database."""
    lo, hi = line_bounds(norm, m.start(), m.end())
    return not re.search(r"hibernate|\bjooq\b|liquibase|flyway|sqlalchemy|\bddl\b|h2database|testcontainers|databasecleaner", norm[lo:hi])


_OTHER_CAUSE = re.compile(
    r"does\s+not\s+appear\s+to\s+be\s+a\s+git\s+repository|not\s+a\s+git\s+repository|could\s+not\s+resolve\s+host"
    r"|connection\s+(?:refused|timed\s+out|reset|closed)|name\s+or\s+service\s+not\s+known|no\s+route\s+to\s+host"
    r"|network\s+is\s+unreachable|temporary\s+failure\s+in\s+name\s+resolution|operation\s+timed\s+out"
)


def not_negated(norm: str, m: re.Match[str]) -> bool:
    """False when the action is said not to happen: "Skipping deploy to production", "do not
    deploy to prod", "dry run of the apply"."""
    return not re.search(
        r"\b(?:skip(?:ping|ped|s)?|not|no|never|don't|won't|will\s+not|without|would|dry[- ]run(?:\s+of)?)\s+(?:\w+\s+)?$",
        norm[max(0, m.start() - 30) : m.start()],
    )


def not_a_local_denial(norm: str, m: re.Match[str]) -> bool:
    """False for "Permission denied: '/path'" and "Access is denied:" - a registry's refusal is
    "denied: <reason>" on its own, not the tail of a local error."""
    before = norm[max(0, m.start() - 12) : m.start()]
    return not re.search(r"(?:[\w-]|permission[ \t]|access[ \t]|is[ \t])\Z", before)


def not_a_zero_count(norm: str, m: re.Match[str]) -> bool:
    """False when a count of zero precedes the match ("0 high severity vulnerabilities")."""
    return not re.search(r"(?:\b0|\bno)\s+(?:\w+\s+)?$", norm[max(0, m.start() - 20) : m.start()])


def not_a_missing_repository(norm: str, m: re.Match[str]) -> bool:
    """False when git's generic "could not read from remote repository" follows a cause that is
    not access: a path that is no repository, a host that does not resolve, a dropped connection."""
    return not _OTHER_CAUSE.search(norm, max(0, m.start() - 400), m.start())


# ------------------------------------------------------------------ plain-language requests and reports

_SECRET_NOUN = (
    r"(?:secrets?|tokens?|api[\s_-]?keys?|(?:access|secret|private|signing|ssh|deploy|live|prod(?:uction)?|stripe|aws|gcp|azure"
    r"|service[\s-]account(?:\s+json)?|root|admin|master|license|webhook|slack|npm|github|gitlab|pypi|db|database)\s+(?:\w+\s+){0,2}?"
    r"(?:keys?|tokens?|credentials?|passwords?|secrets?)|passwords?|credentials?|creds|\.env(?:\s+file)?|private\s+keys?|kubeconfig|pats?)\b"
)
_SECRET_BEFORE = re.compile(r"(?<![\w.])" + _SECRET_NOUN + r"[^.\n?!]{0,60}$")
_SECRET_AFTER = re.compile(
    r"\s+(?:(?:our|my|the|a|an|his|her|their|all|some|its|your|this|that)\s+)?"
    r"(?:(?!(?:in|on|at|of|for|to|from|with|by|into|when|while)\b)\w+\s+){0,3}?" + _SECRET_NOUN
)


def about_a_secret(norm: str, m: re.Match[str]) -> bool:
    """True when a secret (token, key, password, credentials, .env) is named just before the
    match in the same sentence, or right after it: "the deploy token leaked", "leaked our token"."""
    start, end = _sentence(norm, m)
    return bool(_SECRET_BEFORE.search(norm, max(start, m.start() - 120), m.start()) or _SECRET_AFTER.match(norm, m.end(), end))


_MADE_VISIBLE = re.compile(
    r"\b(?:pasted|posted|published|committed|pushed|shared|uploaded|checked\s+in|ended\s+up|showed\s+up|shows\s+up|turned\s+up"
    r"|appeared|printed|echoed|logged|dumped|displayed|tweeted|sent|forwarded|emailed|found|leak(?:ed|ing)?|exposed|visible"
    r"|(?:is|are|was|were)\s+(?:now\s+|still\s+|sitting\s+)?(?:in|on))\b"
)


def made_visible(norm: str, m: re.Match[str]) -> bool:
    """True when the sentence says something put the secret there ("pasted", "committed", "is in")."""
    start, end = _sentence(norm, m)
    return bool(_MADE_VISIBLE.search(norm, start, end))


_ASK_ACCESS = re.compile(
    r"\b(?:give|grant|add|make|assign|need|want|get|request(?:ing)?|create|set\s+up|provision|elevate|disable|turn\s+off|bypass"
    r"|skip|remove|reset|put|install)\b[^.\n?!]{0,50}$"
)
_ASK_SECRET = re.compile(
    r"\b(?:what(?:'s|\s+is|\s+are)|send|share|give|tell|forward|dm|post|paste|need|lend|get|have|grab|borrow|know)\s+"
    r"(?:(?:me|us|him|her|them|over|across)\s+)?(?:the|your|their|our|his|her)\s+(?:[\w-]+\s+){0,3}?$"
)


_PRIVILEGE_BEFORE = re.compile(
    r"\b(?:admin(?:istrator)?|owner|superuser|cluster-admin|maintainer|elevated|root|write|push|full|read|read-write|read/write"
    r"|prod(?:uction)?|sudo|org\s+owner)\s+$"
)


def after_privilege_word(norm: str, m: re.Match[str]) -> bool:
    """True when a privilege names the access: "admin access", "write permissions", "owner role"."""
    return bool(_PRIVILEGE_BEFORE.search(norm, max(0, m.start() - 30), m.start()))


def asked_for_access(norm: str, m: re.Match[str]) -> bool:
    """True when the sentence asks for the privilege named: give, grant, add, make, need ... it."""
    start, _ = _sentence(norm, m)
    return bool(_ASK_ACCESS.search(norm, max(start, m.start() - 60), m.start()))


def asked_for_secret(norm: str, m: re.Match[str]) -> bool:
    """True when the sentence asks for the credential named: "what's the root password",
    "send me the admin password", "can I get the prod database password"."""
    start, _ = _sentence(norm, m)
    return bool(_ASK_SECRET.search(norm, max(start, m.start() - 70), m.start()))


def after_credential_prompt(norm: str, m: re.Match[str]) -> bool:
    """An end of input (EOFError, "EOF when reading a line") right after a prompt for a user
    name, password or passphrase: a login that needed a human."""
    before = norm[max(0, m.start() - 1500) : m.start()]
    return bool(re.search(r"\b(?:user(?:name)?|password|passphrase|login|token)(?:\s+for\s+[^\n]{1,120}?)?\s*:\s", before)
                or re.search(r"getpass|_prompt_for_password|ask_input|credential", before))


CHECKS: dict[str, Check] = {
    f.__name__: f
    for f in (
        not_a_test_report,
        not_a_changelog_entry,
        not_auth_setup,
        not_code,
        not_documentation,
        not_a_policy_statement,
        not_advice,
        targets_production,
        not_a_scratch_target,
        not_an_audit_count,
        statement_without_where,
        force_push_to_protected,
        not_orm_logging,
        not_a_missing_repository,
        not_negated,
        not_a_local_denial,
        not_a_zero_count,
        about_a_secret,
        made_visible,
        after_privilege_word,
        asked_for_access,
        asked_for_secret,
        after_credential_prompt,
    )
}
