"""Hard stops: inputs a local model must never answer, whatever its confidence.

Four categories, checked on the input before any model runs:

- security:   CVE/GHSA ids, advisories, vulnerabilities, malicious packages, RCE, leaked secrets,
              high/critical `npm audit` findings.
- access:     HTTP 401/403, unauthorized/forbidden, failed authentication, bad or missing tokens and
              credentials, SSO/SAML, registry auth, git/docker credential prompts.
- production: irreversible operations: destroy, drop, truncate, unqualified delete, force-push to
              main, deploys to production, credential rotation, production data.
- novel:      crash classes a routine classifier has no business labelling: segfaults, core dumps,
              kernel panics, internal compiler errors, heap corruption, "this should never happen".

Precision matters as much as recall: these run on every input, and real CI logs are full of
maven-deploy-plugin, TokenizerTest, `delete` in test names and 404s for missing versions. Rules
use word boundaries (so `test_token_refresh` is not `token`) and context (a 403 must be a status).

"permission denied" is deliberately narrow. Most occurrences in CI logs are local filesystem
errors (`./gradlew: Permission denied`, `EACCES: permission denied, mkdir ...`), which are
routine build problems a classifier handles. It is an access stop only where a remote system or
an account refused: ssh `Permission denied (publickey)`, database `permission denied for table`,
git `Permission to org/repo denied`, the docker daemon, gRPC `PERMISSION_DENIED`.

Speed: text is NFKC-normalised and casefolded once; a set of its words decides which rules can
possibly match, and only those rules' regexes run, only near their cue words. An input with no
cue costs one normalisation and one tokenisation.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Mapping, Sequence

from smallfirst.reasons import HARD_STOP_CATEGORIES
from smallfirst.redact import SecretMatch, find_secrets, mask_secrets
from smallfirst.tasks import HardStopMatch

if TYPE_CHECKING:
    from smallfirst.policy import Policy

__all__ = ["HardStops", "normalise"]

EXCERPT_MAX = 80

# ---------------------------------------------------------------- normalisation

_INVISIBLE = frozenset("\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e")
# Letters NFKC leaves alone that look like Latin ones: enough to stop "DRОP TABLE" with a Cyrillic O.
_CONFUSABLE = {
    "а": "a", "в": "b", "е": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c", "т": "t",
    "у": "y", "х": "x", "і": "i", "ј": "j", "ѕ": "s", "ԁ": "d", "ӏ": "l", "ɡ": "g",
    "α": "a", "ε": "e", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t", "υ": "u", "χ": "x",
}
_NON_ASCII_RUN = re.compile(r"[^\x00-\x7f]+")


_SPECIAL = re.compile("[" + "".join(sorted(_INVISIBLE | set(_CONFUSABLE) | {c.upper() for c in _CONFUSABLE})) + "]")


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
    # two treat differently, such as the sharp s, never occur in a rule.)
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
            n = "".join(_CONFUSABLE.get(c, c) for c in unicodedata.normalize("NFKC", ch).casefold())
            parts.append(n)
            offsets.extend([i] * len(n))
        pos = m.end()
    parts.append(text[pos:].lower())
    offsets.extend(range(pos, len(text) + 1))
    return "".join(parts), offsets


# Word cues are found by splitting on these; '-' and '_' stay inside words, so `test_token_refresh`
# is one word and never the cue `token`.
_SEPARATORS = b"()[]{}<>:;,.!?\"'=/\\|`*#@&+~^$%\t\r\n\x0b\x0c"
_SPLIT = bytes.maketrans(_SEPARATORS, b" " * len(_SEPARATORS))


def _words(norm: str) -> set[bytes]:
    return set(norm.encode("utf-8", "surrogatepass").translate(_SPLIT).split())


# ---------------------------------------------------------------- rules


@dataclass(frozen=True)
class _Rule:
    id: str
    category: str
    pattern: re.Pattern[str]
    cues: tuple[str, ...]  # words that must occur for the rule to be possible; "x*" = a word starting with x
    accept: Callable[[str, re.Match[str]], bool] | None = None  # context check on the normalised text


def _line_of(norm: str, m: re.Match[str]) -> tuple[int, int]:
    start = norm.rfind("\n", 0, m.start()) + 1
    end = norm.find("\n", m.end())
    return start, (len(norm) if end < 0 else end)


def _not_an_audit_count(norm: str, m: re.Match[str]) -> bool:
    # "found 13 vulnerabilities (2 low, 11 moderate)" and "0 vulnerabilities" are routine npm
    # summaries (those with high or critical findings are security.npm_audit); "Fixed following
    # vulnerabilities" is a dependency's release note, not a finding.
    before = norm[max(0, m.start() - 40) : m.start()]
    if re.search(r"(?:\b\d+|\bno(?: known)?)\s+(?:\w+\s+){0,2}$", before):
        return False
    return not re.search(r"\b(?:fix(?:e[sd])?|patch(?:e[sd])?|address(?:e[sd])?)\b[^\n]{0,30}$", before)


_TEST_LINE = re.compile(r"\s*(?:[\u2713\u2714\u221a\u2717\u2716\u00d7\u2718]|ok\s+\d|not\s+ok\s+\d|(?:it|test|describe)\s*\()")


def _not_a_test_description(norm: str, m: re.Match[str]) -> bool:
    # A test runner's line for a test ("✓ throws when the access token is invalid") names what the
    # test checks; it is not the system reporting that it happened.
    start, _ = _line_of(norm, m)
    return not _TEST_LINE.match(norm, start)


def _delete_without_where(norm: str, m: re.Match[str]) -> bool:
    end = norm.find(";", m.end())
    stmt = norm[m.end() : m.end() + 300 if end < 0 else min(end, m.end() + 300)]
    stmt = stmt.split("\n\n", 1)[0]
    return not re.search(r"\b(?:where|using|limit)\b", stmt)


def _force_push_to_main(norm: str, m: re.Match[str]) -> bool:
    start, end = _line_of(norm, m)
    cmd = re.split(r"[;&|]", norm[m.start() : end], maxsplit=1)[0]
    forced = re.search(r"(?:^|\s)(?:--force(?:-with-lease)?|-f)\b|\s\+\S", cmd)
    return bool(forced) and bool(re.search(r"\b(?:main|master|prod|production|release)\b", cmd))


def _not_orm_logging(norm: str, m: re.Match[str]) -> bool:
    # Hibernate, Liquibase and friends log the DDL they run against a test database.
    start, _ = _line_of(norm, m)
    return not re.search(r"hibernate|\bjooq\b|liquibase|flyway|sqlalchemy|\bddl\b|h2database|testcontainers", norm[start : m.start()])


def _not_a_test_expectation(norm: str, m: re.Match[str]) -> bool:
    # "expected status 401 to equal 200" is a test assertion about an API's auth behaviour,
    # a routine test failure; "expected 200 but got 403" still matches at "got 403".
    start, _ = _line_of(norm, m)
    return not re.search(r"\bexpect(?:ed|s|ing)?\s*$", norm[max(start, m.start() - 24) : m.start()])


def _p(rx: str) -> re.Pattern[str]:
    return re.compile(rx)


_HTTP_CONTEXT = (
    r"(?:\bhttp(?:/\d(?:\.\d)?)?|\bstatus(?:\s*code)?|\bresponse(?:\s*code)?|\breturn(?:ed)?(?:\s*code)?(?:\s*is)?"
    r"|\breceived|\bgot|\bresponded\s+with|\bfailed\s+with|\berror|\bcode|\bserver\s+returned|\breason)"
)

_RULES: tuple[_Rule, ...] = (
    # -------------------------------------------------------------- security
    _Rule("security.cve", "security", _p(r"\bcve-\d{4}-\d{4,7}\b"), ("cve-*",)),
    _Rule("security.ghsa", "security", _p(r"\bghsa(?:-[23456789cfghjmpqrvwx]{4}){3}\b"), ("ghsa-*",)),
    _Rule("security.advisory", "security", _p(r"\bsecurity\s+advisor(?:y|ies)\b"), ("advisory", "advisories")),
    _Rule(
        "security.npm_audit",
        "security",
        _p(r"\b\d+\s+(?:high|critical)(?:\s+severity)?\s+vulnerabilit(?:y|ies)\b"
           r"|\bvulnerabilit(?:y|ies)\s*\([^)\n]*\b[1-9]\d*\s+(?:high|critical)\b"
           r"|\bseverity:\s*(?:high|critical)\b"),
        ("vulnerability", "vulnerabilities", "severity"),
    ),
    _Rule(
        "security.vulnerability",
        "security",
        _p(r"\bvulnerab(?:le|ility|ilities)\b"),
        ("vulnerable", "vulnerability", "vulnerabilities"),
        _not_an_audit_count,
    ),
    _Rule(
        "security.malicious_package",
        "security",
        _p(r"\bmalicious\s+(?:package|code|version|dependency|module|software|release)s?\b"),
        ("malicious",),
    ),
    _Rule("security.remote_code_execution", "security", _p(r"\bremote\s+code\s+execution\b"), ("execution",)),
    # -------------------------------------------------------------- access
    _Rule(
        "access.http_401",
        "access",
        _p(_HTTP_CONTEXT + r"\s*(?:is)?\s*[:=]?\s*401\b|\b401\s*[(:\-]?\s*(?:unauthori[sz]ed|authentication)\b|\be401\b"),
        ("401", "e401"),
        _not_a_test_expectation,
    ),
    _Rule(
        "access.http_403",
        "access",
        _p(_HTTP_CONTEXT + r"\s*(?:is)?\s*[:=]?\s*403\b|\b403\s*[(:\-]?\s*forbidden\b|\be403\b"),
        ("403", "e403"),
        _not_a_test_expectation,
    ),
    _Rule("access.unauthorized", "access", _p(r"\bunauthori[sz]ed\b|\bunauthenticated\b"), ("unauthorized", "unauthorised", "unauthenticated")),
    _Rule(
        "access.forbidden",
        "access",
        # Not forbiddenapis' "Forbidden method invocation", a code-style check.
        _p(r"\bforbidden\b(?!\s+(?:method|class|api|field|invocation|import|character|word|package|signature|annotation))"),
        ("forbidden",),
    ),
    _Rule(
        "access.permission_denied",
        "access",
        _p(r"\bpermission\s+denied\s*\((?:publickey|password|keyboard-interactive|gssapi)"
           r"|\bpermission\s+denied\s+for\s+(?:relation|table|database|schema|sequence|function|user|role|view)\b"
           r"|\bpermission\s+denied\s+to\s+(?:\S+\s+)?(?:user|repository|create|access|push|database)\b"
           r"|\bpermission\s+to\s+\S+\s+denied\b"
           r"|\bpermission\s+denied\s+while\s+trying\s+to\s+connect\s+to\s+the\s+docker\s+daemon"
           r"|\bpermission_denied\b"),
        ("permission", "permission_denied"),
    ),
    _Rule(
        "access.access_denied",
        "access",
        _p(r"\baccess\s+(?:is\s+)?denied\b|\baccessdenied(?:exception)?\b|\baccess_denied\b"),
        ("denied", "accessdenied", "accessdeniedexception", "access_denied"),
    ),
    _Rule(
        "access.pull_access_denied",
        "access",
        _p(r"\bpull\s+access\s+denied\b|\brequested\s+access\s+to\s+the\s+resource\s+is\s+denied\b"),
        ("denied",),
    ),
    _Rule(
        "access.authentication_failed",
        "access",
        _p(r"\bauthenticat(?:ion|e)\s+(?:has\s+)?(?:failed|failure|required|error|is\s+required|denied)\b"
           r"|\bfailed\s+to\s+authenticate\b|\bnot\s+authenticated\b|\blogin\s+failed\b"
           r"|\bauthentication\s+(?:token\s+)?(?:has\s+)?expired\b|\bneedauth\b|\beneedauth\b"),
        ("authentication", "authenticate", "authenticated", "login", "needauth", "eneedauth"),
    ),
    _Rule(
        "access.token",
        "access",
        _p(r"\b(?:invalid|expired|missing|revoked|bad|incorrect|no\s+valid)\s+"
           r"(?:(?:api|access|auth|authentication|oauth|bearer|personal\s+access|github|gitlab|npm|registry|refresh|session)\s+)?"
           r"tokens?\b(?!\s*(?:in\b|at\b|after\b|before\b|['\"`(<]))"
           r"|\btokens?\s+(?:(?:has|have|is|was)\s+)?(?:expired|invalid|revoked|missing|not\s+(?:found|provided|set|valid))\b"),
        ("token", "tokens"),
    ),
    _Rule(
        "access.bad_credentials",
        "access",
        _p(r"\bbad\s+credentials\b|\binvalid\s+(?:username\s+or\s+password|login)\b"
           r"|\b(?:no|missing|invalid|incorrect|wrong|expired|bad)\s+(?:\w+\s+)?credentials?\b"
           r"|\bcredentials?\s+(?:are\s+|were\s+|is\s+|has\s+)?(?:invalid|incorrect|expired|missing|required|not\s+found|rejected|denied)\b"
           r"|\b(?:could\s+not|unable\s+to|failed\s+to)\s+(?:find|load|locate|resolve|get|read)\s+(?:any\s+)?(?:\w+\s+)?credentials\b"
           r"|\bno\s+basic\s+auth\s+credentials\b"),
        ("credential", "credentials"),
    ),
    _Rule(
        "access.insufficient_scope",
        "access",
        _p(r"\binsufficient\s+(?:scopes?|permissions?|privileges?|access)\b|\bmissing\s+(?:required\s+)?scopes?\b"
           r"|\brequires?\s+(?:the\s+)?[`'\"]?[\w:]+[`'\"]?\s+scope\b"),
        ("insufficient", "scope", "scopes"),
    ),
    _Rule(
        "access.sso",
        "access",
        _p(r"\b(?:sso|saml)\b[^\n]{0,60}?\b(?:required|enforce\w*|authori[sz]\w*|authenticat\w*|login|log\s+in|session|expired|denied|failed|protected)"
           r"|\b(?:authori[sz]e|enable|re-?authori[sz]e)\b[^\n]{0,40}?\b(?:sso|saml)\b|\bsingle\s+sign-on\b"),
        ("sso", "saml", "sign-on"),
    ),
    _Rule(
        "access.registry_auth",
        "access",
        _p(r"\b(?:unable|failed|could\s+not)\s+to\s+(?:authenticate|log\s*in)\s+(?:with|to|against|into)\s+(?:the\s+)?(?:\S+\s+)?registry\b"
           r"|\bregistry\s+(?:auth\w*|login)\s+(?:failed|required|error)\b"),
        ("registry",),
    ),
    _Rule(
        "access.not_authorized",
        "access",
        _p(r"\bnot\s+authori[sz]ed\b|\bis\s+not\s+allowed\s+to\s+access\b"),
        ("authorized", "authorised", "allowed"),
    ),
    _Rule(
        "access.credential_prompt",
        "access",
        _p(r"\bcould\s+not\s+read\s+(?:username|password)\b|\bterminal\s+prompts\s+disabled\b"),
        ("username", "password", "prompts"),
    ),
    # -------------------------------------------------------------- production / irreversible
    _Rule(
        "production.terraform_destroy",
        "production",
        _p(r"\bterraform\s+(?:-\S+\s+){0,6}destroy\b|\bterraform\s+(?:plan|apply)\b[^\n]*\s-destroy\b"),
        ("terraform",),
    ),
    _Rule(
        "production.drop",
        "production",
        _p(r"\bdrop\s+(?:table|database|schema)\b"),
        ("drop",),
        _not_orm_logging,
    ),
    _Rule("production.truncate", "production", _p(r"\btruncate\s+table\b"), ("truncate",), _not_orm_logging),
    _Rule(
        "production.delete_without_where",
        "production",
        _p(r"\bdelete\s+from\s+[\w.\"`\[\]]+"),
        ("delete",),
        lambda norm, m: _delete_without_where(norm, m) and _not_orm_logging(norm, m),
    ),
    _Rule("production.kubectl_delete", "production", _p(r"\bkubectl\s+(?:\S+\s+){0,6}?delete\b"), ("kubectl",)),
    _Rule("production.helm_uninstall", "production", _p(r"\bhelm\s+(?:uninstall|delete|del)\b"), ("helm",)),
    _Rule(
        "production.helm_to_production",
        "production",
        _p(r"\bhelm\s+(?:upgrade|install|rollback)\b[^\n]*?(?:--namespace[=\s]+|\s-n\s+|--kube-context[=\s]+)[\w-]*prod"),
        ("helm",),
    ),
    _Rule(
        "production.rm_rf_root",
        "production",
        _p(r"\brm\s+(?:-[a-z]*r[a-z]*f[a-z]*|-[a-z]*f[a-z]*r[a-z]*|-r\s+-f|-f\s+-r|--recursive\s+--force|--force\s+--recursive)"
           r"\s+(?:--no-preserve-root\s+)?(?:/\*?|~/?|\$home/?)(?=\s|$|;|&|\|)"),
        ("rm",),
    ),
    _Rule(
        "production.rm_rf_datastore",
        "production",
        # Wiping a database's data directory is irreversible wherever it runs.
        _p(r"\brm\s+-[a-z]*(?:rf|fr)[a-z]*\s+\S*/var/lib/(?:postgresql|mysql|mongodb|redis|elasticsearch|cassandra|etcd)\b"),
        ("rm",),
    ),
    _Rule("production.force_push_main", "production", _p(r"\bgit\s+push\b"), ("push",), _force_push_to_main),
    _Rule(
        "production.deploy_to_production",
        "production",
        _p(r"\bdeploy(?:s|ed|ing|ment)?\s+(?:\S+\s+){0,3}?to\s+(?:the\s+)?prod(?:uction)?\b"
           r"|\bprod(?:uction)?\s+deploy(?:s|ment)?\b"),
        ("deploy", "deploys", "deployed", "deploying", "deployment"),
    ),
    _Rule(
        "production.production_data",
        "production",
        _p(r"\bproduction\s+(?:database|db|data|customers?|customer\s+data|cluster|bucket|server)s?\b"
           r"|\bprod\s+(?:database|db|cluster)\b|\bcustomer\s+(?:database|db|records|pii)\b"),
        ("production", "prod", "customer"),
    ),
    _Rule(
        "production.rotate_credentials",
        "production",
        _p(r"\brotat(?:e|ing|ion\s+of)\s+(?:the\s+|all\s+|our\s+|your\s+)?(?:[\w-]+\s+)?(?:credentials?|keys?|secrets?|tokens?|passwords?)\b"
           r"|\b(?:credential|key|secret|token|password)s?\s+rotation\b"),
        ("rotate", "rotating", "rotation"),
    ),
    _Rule(
        "production.migrate_production",
        "production",
        _p(r"\bmigrat(?:e|es|ed|ion|ions|ing)\b[^\n.]{0,60}?\b(?:production|prod|customer)\s+(?:database|db|data)\b"),
        ("migrate", "migrates", "migrated", "migration", "migrations", "migrating"),
    ),
    _Rule("production.drop_production", "production", _p(r"\bdrop(?:ping)?\s+(?:the\s+)?prod(?:uction)?\b"), ("drop", "dropping")),
    # -------------------------------------------------------------- novel crashes
    _Rule("novel.segfault", "novel", _p(r"\bsegmentation\s+fault\b|\bsigsegv\b|\bsegfault(?:ed)?\b"), ("segmentation", "sigsegv", "segfault", "segfaulted")),
    _Rule("novel.core_dumped", "novel", _p(r"\bcore\s+dumped\b"), ("dumped",)),
    _Rule("novel.kernel_panic", "novel", _p(r"\bkernel\s+panic\b"), ("kernel",)),
    _Rule("novel.internal_compiler_error", "novel", _p(r"\binternal\s+compiler\s+error\b"), ("compiler",)),
    _Rule("novel.illegal_instruction", "novel", _p(r"\billegal\s+instruction\b|\bsigill\b"), ("illegal", "sigill")),
    _Rule("novel.bus_error", "novel", _p(r"\bbus\s+error\b|\bsigbus\b"), ("bus", "sigbus")),
    _Rule("novel.stack_smashing", "novel", _p(r"\bstack\s+smashing\s+detected\b"), ("smashing",)),
    _Rule(
        "novel.heap_corruption",
        "novel",
        _p(r"\bdouble\s+free\s+or\s+corruption\b|\bfree\(\):\s+invalid\s+pointer\b|\bmalloc\(\):\s+\w*\s*corrupted\b"
           r"|\bheap\s+corruption\b|\bheap-buffer-overflow\b"),
        ("double", "free", "malloc", "corruption", "heap-buffer-overflow"),
    ),
    _Rule(
        "novel.runtime_abort",
        "novel",
        _p(r"\bfatal\s+runtime\s+error\b|\bsigabrt\b|\bhas\s+overflowed\s+its\s+stack\b"),
        ("runtime", "sigabrt", "overflowed"),
    ),
    _Rule("novel.fatal_python_error", "novel", _p(r"\bfatal\s+python\s+error\b"), ("python",)),
    _Rule(
        "novel.jvm_crash",
        "novel",
        _p(r"\ba\s+fatal\s+error\s+has\s+been\s+detected\s+by\s+the\s+java\s+runtime\s+environment\b"),
        ("runtime",),
    ),
    _Rule(
        "novel.unreachable",
        "novel",
        _p(r"\bthis\s+should\s+never\s+happen\b|\bunreachable\s+code\s+(?:was\s+)?reached\b|\bentered\s+unreachable\s+code\b"
           r"|\bshould\s+not\s+(?:be\s+)?reach(?:ed)?\s+here\b"),
        ("never", "unreachable", "reach", "reached"),
    ),
)

# Words and word prefixes that make a distinctive secret possible (the detector lives in redact).
_SECRET_WORDS = frozenset(
    (b"-----begin", b"-----end", b"_authtoken", b"_auth", b"_password", b"authorization", b"bearer", b"hooks")
)
_SECRET_PREFIXES = (
    "akia", "asia", "abia", "acca", "agpa", "aida", "aipa", "aroa", "anpa", "anva", "a3t",
    "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "glpat-", "xox", "sk-", "aiza",
    "sk_live_", "rk_live_", "sk_test_", "rk_test_", "whsec_", "npm_", "eyj",
)
_URL_PASSWORD = re.compile(r"://[^\s:/@]+:[^\s@/]+@")


class _Cues:
    """Which rules an input can possibly trigger, from the set of its words.

    Exact cue words are looked up with one set intersection; prefix cues (`cve-*`, `ghp_`) through
    the set of 3-byte word heads, so no rule costs anything on an input that lacks its cue."""

    def __init__(self, rules: Sequence[_Rule]):
        self.exact: dict[bytes, list[int]] = {}
        self.prefix: dict[bytes, list[int]] = {}
        for i, rule in enumerate(rules):
            for cue in rule.cues:
                table = self.prefix if cue.endswith("*") else self.exact
                table.setdefault(cue.rstrip("*").encode(), []).append(i)
        self.exact_keys = frozenset(self.exact)

    def candidates(self, words: set[bytes], heads: set[bytes]) -> dict[int, list[str]]:
        """rule index -> the cue strings present (for locating windows)."""
        out: dict[int, list[str]] = {}
        for cue in words & self.exact_keys:
            for i in self.exact[cue]:
                out.setdefault(i, []).append(cue.decode())
        for cue, idx in self.prefix.items():
            if cue[:3] in heads:
                for i in idx:
                    out.setdefault(i, []).append(cue.decode())
        return out


def _skip_test_descriptions(rule: _Rule) -> _Rule:
    if rule.category not in ("access", "production"):
        return rule
    inner = rule.accept
    return _Rule(
        rule.id, rule.category, rule.pattern, rule.cues,
        (lambda norm, m: _not_a_test_description(norm, m) and inner(norm, m)) if inner else _not_a_test_description,
    )


_RULES = tuple(_skip_test_descriptions(r) for r in _RULES)
_CUES = _Cues(_RULES)


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


class HardStops:
    """The built-in rules plus phrases from the policy. The policy can add, never remove."""

    def __init__(self, extra: Mapping[str, Sequence[str]] | None = None):
        unknown = [c for c in (extra or {}) if c not in HARD_STOP_CATEGORIES]
        if unknown:
            raise ValueError(f"unknown hard-stop categories {unknown}; use {list(HARD_STOP_CATEGORIES)}")
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
        return [r.id for r in _RULES] + ["security.secret"] + [p.id for ps in self._phrases.values() for p in ps]

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
        candidates = _CUES.candidates(words, heads)
        found: list[HardStopMatch] = []
        for category in HARD_STOP_CATEGORIES:
            best: tuple[int, int, str] | None = None  # (start, end, rule id) in normalised offsets
            for i, cues in candidates.items():
                rule = _RULES[i]
                if rule.category != category:
                    continue
                hit = _first_hit(rule, norm, cues)
                if hit is not None and (best is None or hit[0] < best[0]):
                    best = (hit[0], hit[1], rule.id)
            for phrase in self._phrases[category]:
                if phrase.first_word and phrase.first_word not in words:
                    continue
                m = phrase.pattern.search(norm)
                if m is not None and (best is None or m.start() < best[0]):
                    best = (m.start(), m.end(), phrase.id)
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


def _first_hit(rule: _Rule, norm: str, cues: list[str]) -> tuple[int, int] | None:
    for lo, hi in _windows(norm, cues):
        for m in rule.pattern.finditer(norm, lo, hi):
            if rule.accept is None or rule.accept(norm, m):
                return m.start(), m.end()
    return None


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


def _first_secret(text: str, norm: str, words: set[bytes], heads: set[bytes]) -> SecretMatch | None:
    cued = not _SECRET_WORDS.isdisjoint(words) or any(
        p[:3].encode() in heads and p in norm for p in _SECRET_PREFIXES
    )
    if not cued and not ("://" in text and _URL_PASSWORD.search(text)):
        return None
    return next(iter(find_secrets(text, distinctive_only=True)), None)


def _original_span(start: int, end: int, offsets: list[int] | None) -> tuple[int, int]:
    if offsets is None:
        return start, end
    return offsets[start], offsets[end - 1] + 1 if end > start else offsets[start]


_CONTEXT = 24
_MAX_TOKEN = 200  # a "word" longer than this may itself be a secret; never cut into one


def _excerpt(text: str, start: int, end: int, secret_kind: str | None = None) -> str:
    """The match with a little context, masked, on one line, at most EXCERPT_MAX characters.

    Context is widened to whitespace before masking, so no token is cut: a cut secret would no
    longer look like one and could slip through."""
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    line_end = len(text) if line_end < 0 else line_end
    lo = _to_space(text, max(line_start, start - _CONTEXT), line_start, -1)
    hi = _to_space(text, min(line_end, end + _CONTEXT), line_end, +1)
    if secret_kind is not None and (lo is None or hi is None):
        return f"[REDACTED:{secret_kind}]"  # the secret sits inside a token too long to delimit
    lo = start if lo is None else lo
    hi = end if hi is None else hi
    masked = " ".join(mask_secrets(text[lo:hi]).split())
    if len(masked) <= EXCERPT_MAX:
        return masked
    core = " ".join(mask_secrets(text[start:end]).split())
    at = masked.find(core) if core and secret_kind is None else -1
    begin = 0 if at < 0 else max(0, min(at - _CONTEXT // 2, len(masked) - EXCERPT_MAX))
    return masked[begin : begin + EXCERPT_MAX]


def _to_space(text: str, i: int, bound: int, step: int) -> int | None:
    """i moved outwards to the nearest whitespace, not past bound; None if none is near."""
    for _ in range(_MAX_TOKEN):
        if i == bound or text[i if step > 0 else i - 1].isspace():
            return i
        i += step
    return None
