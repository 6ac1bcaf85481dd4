import pytest

from smallfirst.hardstops import EXCERPT_MAX, HardStops
from smallfirst.policy import parse_policy
from smallfirst.reasons import FallbackReason

BUILT_IN = HardStops()

# The published failure: a package install that the registry refused.
REGISTRY_403 = """\
npm ci
npm ERR! code E403
npm ERR! 403 403 Forbidden - GET https://<registry-host>/@org%2fpkg - You must be logged in to install this package
npm ERR! A complete log of this run can be found in: /home/runner/.npm/_logs/2024-05-01T12_00_00_000Z-debug-0.log
"""


def categories(text: str, hs: HardStops = BUILT_IN) -> list[str]:
    return [m.category for m in hs.scan(text)]


def test_registry_403_forces_access_hard_stop():
    match = BUILT_IN.first(REGISTRY_403)
    assert match is not None
    assert match.category == "access"
    assert match.rule == "access.http_403"
    assert match.reason is FallbackReason.HARD_STOP_ACCESS
    assert "403" in match.excerpt
    a, b = match.span
    assert "403" in REGISTRY_403[a:b]


@pytest.mark.parametrize(
    "text",
    [
        "[WARNING] Could not transfer metadata from/to central: status code: 403, reason phrase: Forbidden (403)",
        "fatal: unable to access 'https://github.com/org/repo/': The requested URL returned error: 403",
        "Return code is: 401, ReasonPhrase: Unauthorized.",
        "< HTTP/1.1 401 Unauthorized",
        "Error response from daemon: pull access denied for acme/api, repository does not exist or may require 'docker login'",
        "denied: requested access to the resource is denied",
        "remote: Invalid username or password.\nfatal: Authentication failed for 'https://github.com/org/repo.git/'",
        "fatal: could not read Username for 'https://github.com': terminal prompts disabled",
        "HttpError: Bad credentials - https://docs.github.com/rest",
        "error: the access token has expired, please log in again",
        "Resource protected by organization SAML enforcement. You must grant your token access.",
        "The token does not have the insufficient scope; missing scopes: write:packages",
        "git@github.com: Permission denied (publickey).",
        "ERROR: permission denied for table customers",
        "An error occurred (AccessDenied) when calling the PutObject operation: Access Denied",
        "User: arn:aws:iam::123:user/ci is not authorized to perform: sts:AssumeRole",
        "Unable to locate credentials. You can configure credentials by running aws configure.",
    ],
)
def test_access_failures_are_access_hard_stops(text):
    assert "access" in categories(text)


@pytest.mark.parametrize(
    "text",
    [
        "Found CVE-2021-44228 in org.apache.logging.log4j:log4j-core:2.14.1",
        "GHSA-jfh8-c2jp-5v3q: Remote code execution in log4j",
        "This release is a security advisory fix for the parser",
        "lodash is vulnerable to prototype pollution",
        "found 7 vulnerabilities (3 moderate, 4 high)",
        "3 critical severity vulnerabilities",
        "event-stream 3.3.6 contained a malicious package payload",
        "remote code execution via crafted template",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n-----END OPENSSH PRIVATE KEY-----",
        "export GITHUB_TOKEN=ghp_" + "Q7w9E2r4T6y8U1i3O5p7A9s2D4f6G8h1J3k5",
    ],
)
def test_security_findings_and_leaked_secrets_are_security_hard_stops(text):
    assert "security" in categories(text)


def test_leaked_secret_excerpt_is_masked():
    token = "ghp_" + "Q7w9E2r4T6y8U1i3O5p7A9s2D4f6G8h1J3k5"
    match = BUILT_IN.first(f"step 2: git remote set-url origin https://x:{token}@github.com/o/r.git")
    assert match is not None and match.category == "security" and match.rule == "security.secret"
    assert token[4:16] not in match.excerpt and "REDACTED" in match.excerpt


@pytest.mark.parametrize(
    "text",
    [
        "Run terraform destroy -auto-approve",
        "psql -c 'DROP TABLE users;'",
        "DROP DATABASE analytics",
        "TRUNCATE TABLE orders",
        "DELETE FROM accounts;",
        "kubectl delete namespace payments",
        "helm uninstall api --namespace prod",
        "sudo rm -rf / --no-preserve-root",
        "git push --force origin main",
        "Deploying build 1234 to production",
        "this touches the production database directly",
        "we need to rotate the AWS credentials now",
        "migrate the customer database to the new schema",
        "then drop the production replica",
    ],
)
def test_irreversible_operations_are_production_hard_stops(text):
    assert "production" in categories(text)


@pytest.mark.parametrize(
    "text",
    [
        "Segmentation fault (core dumped)",
        "Fatal signal 11 (SIGSEGV), code 1, fault addr 0x0",
        "Kernel panic - not syncing: VFS: Unable to mount root fs",
        "gcc: internal compiler error: Killed (program cc1plus)",
        "Illegal instruction (core dumped)",
        "Bus error",
        "*** stack smashing detected ***: terminated",
        "double free or corruption (out)",
        "Fatal Python error: Segmentation fault",
        "thread 'main' panicked at 'internal error: entered unreachable code'",
        "assert failed: this should never happen",
        "# A fatal error has been detected by the Java Runtime Environment:",
    ],
)
def test_crash_classes_are_novel_hard_stops(text):
    assert "novel" in categories(text)


@pytest.mark.parametrize(
    "text",
    [
        # a 404 for a version that does not exist is a dependency problem, not access
        "npm ERR! code E404\nnpm ERR! 404 Not Found - GET https://<registry-host>/left-pad/-/left-pad-9.9.9.tgz",
        "[ERROR] Failed to execute goal on project app: Could not find artifact com.acme:lib:jar:9.9 in central (404)",
        # tokens, credentials and deletes in test names and descriptions
        "Running com.acme.lexer.TokenizerTest\nTests run: 12, Failures: 1, Errors: 0",
        "FAILED tests/test_auth.py::test_token_refresh - AssertionError",
        "[ERROR] CredentialsProviderTest.testDefaultChain:42 expected:<1> but was:<2>",
        "  ✓ should delete the user when asked (12ms)",
        "  ✓ throws when the access token is invalid (42ms)",
        "it('deletes the draft after publishing', async () => {",
        # Maven's deploy plugin, migrations of a test database, ORM DDL in test logs
        "[INFO] --- maven-deploy-plugin:2.8.2:deploy (default-deploy) @ app ---",
        "[INFO] Skipping artifact deployment",
        "Hibernate: drop table if exists users cascade",
        "DELETE FROM users WHERE id = 3;",
        "Migrating schema `test` to version 2 - add index",
        # the build's own mistakes
        "bash: ./gradlew: Permission denied",
        "npm ERR! Error: EACCES: permission denied, mkdir '/usr/local/lib/node_modules'",
        "[ERROR] Forbidden method invocation: java.lang.String#toLowerCase() [Uses default locale]",
        "com.thoughtworks.xstream.security.ForbiddenClassException: org.apache.Foo",
        "found 0 vulnerabilities",
        "found 13 vulnerabilities (2 low, 11 moderate)",
        "[INFO] Total time: 45.401 s",
        "SyntaxError: Unexpected token '<'",
        "git push origin feature/login",
        "rm -rf /tmp/build-cache",
        "Creating an optimized production build...",
        "logrotate: rotating log files",
    ],
)
def test_look_alikes_in_routine_logs_do_not_stop(text):
    assert BUILT_IN.scan(text) == []


def test_unicode_look_alikes_and_zero_width_characters_still_match():
    assert categories("ＤＲＯＰ　ＴＡＢＬＥ users") == ["production"]
    assert categories("DR\u041eP TABLE users") == ["production"]  # Cyrillic O
    assert categories("terra\u200bform destroy") == ["production"]
    match = BUILT_IN.first("ok\nSeg\u200bmentation fault")
    assert match is not None and match.category == "novel"
    assert "Seg\u200bmentation fault"[0:3] in "ok\nSeg\u200bmentation fault"[match.span[0] : match.span[1]]


def test_scan_reports_one_match_per_category_in_category_order():
    text = "Segmentation fault\nkubectl delete ns prod\nHTTP/1.1 403 Forbidden\nCVE-2024-3094 found"
    matches = BUILT_IN.scan(text)
    assert [m.category for m in matches] == ["security", "access", "production", "novel"]
    assert BUILT_IN.first(text).category == "security"


def test_excerpt_is_short_masked_and_one_line():
    key = "AKIA" + "Q7W9E2R4T6Y8U1I3"
    text = "x " * 100 + f"Error: 403 Forbidden while using key {key} to upload\n" + "y " * 100
    for m in BUILT_IN.scan(text):
        assert len(m.excerpt) <= EXCERPT_MAX
        assert "\n" not in m.excerpt
        assert key not in m.excerpt and key[4:] not in m.excerpt


def test_policy_phrases_add_rules_matched_as_whole_case_insensitive_phrases():
    hs = HardStops({"access": ["registry auth", "SSO"], "production": ["customer ledger"]})
    sso = hs.first("the SSO bridge is down again")
    assert sso is not None and sso.rule == "policy.access.1"
    assert hs.first("Fix REGISTRY   AUTH for the mirror").rule == "policy.access.0"
    assert hs.first("rebuild the Customer Ledger").category == "production"
    assert hs.scan("ssolo and ssoftware are words") == []  # whole phrase only


def test_policy_cannot_remove_built_in_rules():
    policy = parse_policy(
        """
version: 1
models: {frontier_default: {provider: anthropic, name: claude-sonnet-4-6}}
tasks: {propose_code_change: {local: false}}
hard_stops: {access: []}
"""
    )
    hs = HardStops.from_policy(policy)
    assert hs.first(REGISTRY_403).category == "access"
    assert set(BUILT_IN.rule_ids) <= set(hs.rule_ids)


def test_unknown_policy_category_is_rejected():
    with pytest.raises(ValueError):
        HardStops({"billing": ["invoice"]})


def test_empty_and_clean_inputs_have_no_hard_stop():
    assert BUILT_IN.scan("") == []
    clean = "\n".join(f"[INFO] Compiling {i} source files to /app/target/classes" for i in range(300))
    assert BUILT_IN.first(clean) is None


def test_helm_release_into_a_production_namespace_is_a_production_stop():
    m = HardStops().first("+ helm upgrade --install api ./chart --namespace production --wait")
    assert m is not None and m.rule == "production.helm_to_production"


def test_wiping_a_database_data_directory_is_a_production_stop():
    m = HardStops().first("ssh db-2 'rm -rf /var/lib/postgresql/data'")
    assert m is not None and m.category == "production"


def test_runtime_aborts_are_novel():
    for text in ("thread 'main' has overflowed its stack\nfatal runtime error: stack overflow",
                 "Process terminated by signal SIGABRT"):
        m = HardStops().first(text)
        assert m is not None and m.category == "novel", text


def test_a_test_assertion_about_a_401_is_not_an_access_stop():
    text = "AssertionError: expected status 401 to equal 200 in test 'rejects anonymous users'"
    assert HardStops().first(text) is None
    assert HardStops().first("expected 200 but the registry returned 403 Forbidden").category == "access"


def test_look_alike_letters_are_folded_but_real_cyrillic_and_greek_words_are_kept():
    from smallfirst.hardstops import normalise

    assert normalise("DR\u041eP TABLE")[0] == "drop table"  # a Cyrillic O among Latin letters
    assert normalise("\u0430\u0441\u0441\u0435\u0455\u0455 denied")[0] == "access denied"  # a word all of look-alikes
    assert normalise("Ошибка аутентификации")[0] == "ошибка аутентификации"  # real Russian stays Russian
    assert normalise("Λάθος κωδικός")[0] == "Λάθος κωδικός".casefold()


def test_translated_git_and_sudo_refusals_are_access_stops():
    for text in (
        "fatal: Authentifizierung fehlgeschlagen für 'https://github.com/acme/app.git/'",
        "fatal : Échec d'authentification pour 'https://github.com/acme/app.git/'",
        "fatal: Не удалось прочитать из внешнего репозитория.",
        "fatal: 'https://github.com/acme/app.git/' 鉴权失败",
        "sudo: требуется указать пароль",
        "ci は sudoers ファイルにありません。",
    ):
        assert categories(text) == ["access"], text
    assert categories("Получение объектов: 100% (12/12), готово.") == []


def test_a_token_split_across_two_lines_is_a_security_stop_and_never_shown():
    token = "ghp_" + "Q7w9E2r4T6y8U1i3O5p7A9s2D4f6G8h1J3k5"
    text = f"env:\n  GITHUB_TOKEN: {token[:20]}\n    {token[20:]}\n"
    match = BUILT_IN.first(text)
    assert match is not None and match.rule == "security.secret"
    assert token[4:20] not in match.excerpt and token[20:] not in match.excerpt and "REDACTED" in match.excerpt
    assert BUILT_IN.first("ghp_short\n    words") is None


def test_a_reference_to_a_secret_is_not_a_leaked_secret():
    for text in (
        'echo "//npm.pkg.github.com/:_authToken=${{ secrets.GITHUB_TOKEN }}" >> .npmrc',
        "//registry.npmjs.org/:_authToken=***",
        "DATABASE_URL=postgres://app:${DB_PASSWORD}@db:5432/app",
    ):
        assert BUILT_IN.scan(text) == [], text
    assert categories("//registry.npmjs.org/:_authToken=npm_" + "Q7w9E2r4T6y8U1i3O5p7A9s2D4f6G8h1J3k5") == ["security"]


def test_policy_phrases_skip_setup_steps_test_names_and_changelogs_but_not_failures():
    hs = HardStops({"access": ["registry auth"]})
    assert hs.scan("- name: Configure registry auth\n  run: echo $CR_PAT | docker login ghcr.io --password-stdin") == []
    assert hs.scan("  ✓ refreshes registry auth before a retry (4 ms)") == []
    assert hs.scan("- Fix registry auth for mirrors (#412)") == []
    assert hs.first("Error: registry auth expired for ghcr.io").rule == "policy.access.0"


def test_passing_tests_changelogs_and_routes_that_name_a_403_are_not_access_stops():
    for text in (
        "  ✓ returns 403 when the user is not an admin (12 ms)\n\nTests:       42 passed, 42 total",
        "tests/api/test_routes.py::test_forbidden_route PASSED                     [ 40%]",
        "- Fix 401 Unauthorized when refreshing expired tokens (#1234)",
        "  get '/forbidden', to: 'errors#forbidden'",
    ):
        assert BUILT_IN.scan(text) == [], text
    # ... while the error a failing test printed still is one
    assert categories("FAILED tests/test_upload.py::test_upload - requests.exceptions.HTTPError: 401 Client Error: Unauthorized for url") == ["access"]


def test_docs_about_rotating_keys_are_not_stops_but_a_request_to_rotate_is():
    assert BUILT_IN.scan("To rotate your API keys, open Settings > API keys and click Rotate.") == []
    assert BUILT_IN.scan("If a token is leaked, revoke it and rotate it immediately (see SECURITY.md).") == []
    assert categories("we need to rotate the AWS credentials now, the contractor still has them") == ["production"]
