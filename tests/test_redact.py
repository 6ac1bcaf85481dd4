"""Planted secrets of every kind must not survive masking, not even in part.

The fake secrets are assembled from pieces so that secret scanners do not flag this file.
"""

import pytest

from smallfirst.redact import find_secrets, mask_secrets, preview, sha256_text

# A body long enough that any 12-character slice of it is unmistakable.
BODY = "Q7w9E2r4T6y8U1i3O5p7A9s2D4f6G8h1J3k5L7z9X2c4V6b8N1m3"

PEM_BODY_1 = "MIIEowIBAAKCAQEA" + BODY[:48]
PEM_BODY_2 = BODY[4:52] + "Zx7Yw6Vu5Ts4"

# (kind, text with the secret planted, the secret material)
PLANTED: list[tuple[str, str, str]] = [
    ("aws_access_key", "export AWS_ACCESS_KEY_ID={s}", "AKIA" + "Q7W9E2R4T6Y8U1I3"),
    ("aws_access_key", "temp creds {s} expire soon", "ASIA" + "Z9X2C4V6B8N1M3L7"),
    ("aws_secret_key", "aws_secret_access_key = {s}", BODY[:40]),
    ("aws_secret_key", "AWS_SECRET_KEY: '{s}'", BODY[2:42].replace("w", "/")),
    ("github_token", "git clone https://x-access-token@github.com {s}", "ghp_" + BODY[:36]),
    ("github_token", "GH {s}", "gho_" + BODY[1:37]),
    ("github_token", "GH {s}", "ghu_" + BODY[2:38]),
    ("github_token", "GH {s}", "ghs_" + BODY[3:39]),
    ("github_token", "GH {s}", "ghr_" + BODY[4:40]),
    ("github_token", "using {s} for the API", "github_pat_11" + BODY[:20] + "_" + BODY[20:50]),
    ("gitlab_token", "PRIVATE-TOKEN: {s}", "glpat-" + BODY[:20]),
    ("slack_token", "SLACK={s}", "xoxb-" + "1234567890-" + BODY[:24]),
    ("slack_token", "SLACK={s}", "xoxp-" + "9876543210-" + BODY[5:29]),
    ("openai_key", "OPENAI_API_KEY is {s}", "sk-" + BODY[:48]),
    ("openai_key", "key {s}", "sk-proj-" + BODY[:40]),
    ("anthropic_key", "x-api-key: {s}", "sk-ant-api03-" + BODY[:40]),
    ("google_api_key", "maps key {s}", "AIza" + BODY[:35]),
    ("stripe_key", "charging with {s}", "sk_live_" + BODY[:24]),
    ("npm_token", "publish token {s}", "npm_" + BODY[:36]),
    ("npm_auth", "//<registry-host>/:_authToken={s}", BODY[6:42]),
    ("url_password", "cloning https://deploy:{s}@git.example.com/org/repo.git", "hunter2-" + BODY[:12]),
    ("url_password", "DATABASE_URL=postgres://app:{s}@db.internal:5432/prod", BODY[10:30]),
    ("authorization", "curl -H 'Authorization: Bearer {s}' https://api", BODY[:32]),
    ("authorization", "Authorization: Basic {s}", "dXNlcjpwYXNzd29yZDEyMw" + BODY[:10] + "=="),
    ("authorization", "header was Bearer {s}", BODY[8:40]),
    (
        "jwt",
        "cookie session={s}; Path=/",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0." + BODY[:43],
    ),
    ("secret", "mysql -u root password={s} -h db", "S3cr3t" + BODY[:10]),
    ("secret", "passwd: {s}", BODY[12:30]),
    ("secret", 'config {{"client_secret": "{s}"}}', BODY[3:27]),
    ("secret", "api_key={s}&q=1", BODY[20:44]),
    ("secret", "NPM_TOKEN={s}", BODY[1:33]),
    ("secret", "DB_PASSWORD='{s}'", "correct horse " + BODY[:14]),
]

PEM_BLOCK = f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY_1}\n{PEM_BODY_2}\n-----END RSA PRIVATE KEY-----"


def _survivors(secret: str, text: str, width: int = 12) -> list[str]:
    if len(secret) < width:
        return [secret] if secret in text else []
    return [secret[i : i + width] for i in range(len(secret) - width + 1) if secret[i : i + width] in text]


@pytest.mark.parametrize(("kind", "template", "secret"), PLANTED, ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(PLANTED)])
def test_planted_secret_leaves_no_12_char_trace_in_mask_or_preview(kind, template, secret):
    text = "step 3: " + template.format(s=secret) + "\nnext line"
    masked = mask_secrets(text)
    assert _survivors(secret, masked) == []
    assert f"[REDACTED:{kind}]" in masked
    for limit in (10, 40, 80, 240):
        shown = preview(text, limit)
        assert len(shown) <= limit
        assert _survivors(secret, shown) == []


def test_multi_line_private_key_block_is_masked_whole():
    text = f"writing key\n{PEM_BLOCK}\ndone"
    masked = mask_secrets(text)
    assert masked == "writing key\n[REDACTED:private_key]\ndone"


def test_private_key_block_without_end_line_is_masked_to_the_end():
    text = f"cat id_rsa\n-----BEGIN OPENSSH PRIVATE KEY-----\n{PEM_BODY_1}\n{PEM_BODY_2}"
    masked = mask_secrets(text)
    assert masked == "cat id_rsa\n[REDACTED:private_key]"


def test_private_key_tail_without_begin_line_is_masked():
    text = f"...truncated log\n{PEM_BODY_1}\n{PEM_BODY_2}\n-----END PRIVATE KEY-----\nnext"
    masked = mask_secrets(text)
    assert _survivors(PEM_BODY_1, masked) == [] and _survivors(PEM_BODY_2, masked) == []
    assert masked.endswith("next")


def test_url_password_keeps_user_and_host_readable():
    masked = mask_secrets("remote: https://deploy:" + BODY[:16] + "@git.example.com/org/repo.git")
    assert masked == "remote: https://deploy:[REDACTED:url_password]@git.example.com/org/repo.git"


def test_assignment_keeps_the_key_name_and_masks_the_value():
    assert mask_secrets("password=" + BODY[:16]) == "password=[REDACTED:secret]"


def test_zero_width_characters_do_not_hide_a_token():
    token = "ghp_" + BODY[:36]
    hidden = token[:10] + "\u200b" + token[10:20] + "\u2060" + token[20:]
    masked = mask_secrets(f"token {hidden} end")
    assert masked == "token [REDACTED:github_token] end"


def test_references_to_secrets_are_not_secrets():
    text = (
        "token: ${{ secrets.GITHUB_TOKEN }}\npassword=$DB_PASSWORD\nNPM_TOKEN=<your token>\n"
        "Running com.acme.TokenizerTest\ntest_token_refresh PASSED\nsecret=***"
    )
    assert mask_secrets(text) == text
    assert find_secrets(text) == []


def test_generic_assignments_are_masked_but_not_distinctive():
    found = find_secrets("password=" + BODY[:16] + " and ghp_" + BODY[:36])
    assert [(s.kind, s.distinctive) for s in found] == [("secret", False), ("github_token", True)]


def test_preview_masks_before_truncating_so_a_boundary_secret_cannot_leak():
    token = "ghp_" + BODY[:36]
    text = "x" * 230 + " " + token
    shown = preview(text, 240)
    assert len(shown) <= 240
    assert "ghp_" not in shown and BODY[:8] not in shown


def test_preview_collapses_whitespace_and_respects_the_limit():
    assert preview("a\n\n  b\tc") == "a b c"
    assert len(preview("word " * 200, 50)) == 50


def test_sha256_text_is_the_hex_digest_of_utf8():
    assert sha256_text("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


# ---------------------------------------------------------------------- every shape, as data

import random  # noqa: E402

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from secret_shapes import NEGATIVES, OBFUSCATIONS, SHAPES, leaks, obfuscate, plant  # noqa: E402
from smallfirst import redact  # noqa: E402

SHAPE_IDS = [s["id"] for s in SHAPES]


def test_shape_catalogue_has_unique_ids_and_known_kinds():
    assert len(SHAPE_IDS) == len(set(SHAPE_IDS))
    kinds = {r.kind for r in redact._SHAPES} | {"secret"}
    assert {s["kind"] for s in SHAPES} <= kinds


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_each_shape_is_masked_whole_with_its_kind(shape):
    rng = random.Random(shape["id"])
    for _ in range(20):
        p = plant(shape, rng)
        masked = mask_secrets(f"step 7:\n{p.text}\nnext line")
        assert leaks(p.material, masked) == [], masked
        assert f"[REDACTED:{p.kind}]" in masked, masked


@pytest.mark.parametrize("how", OBFUSCATIONS)
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_each_shape_is_masked_through_each_obfuscation(shape, how):
    rng = random.Random(f"{shape['id']}/{how}")
    for _ in range(3):
        p = plant(shape, rng)
        text = obfuscate(p, how, rng)
        masked = mask_secrets("log line one\n" + text + "\nlast line")
        assert leaks(p.material, masked) == [], (text, masked)
        assert leaks(p.material, preview(text, 240)) == []


@pytest.mark.parametrize("line", NEGATIVES)
def test_routine_lines_that_look_like_secrets_are_left_alone(line):
    assert mask_secrets(line) == line
    assert find_secrets(line) == []


def test_every_rule_in_the_rules_file_is_exercised_by_a_shape_example():
    rng = random.Random(0)
    texts = [redact._normalise(plant(s, rng).text)[0] for s in SHAPES]
    idle = [r.rx.pattern for r in redact._SHAPES
            if not any(r.rx.search(t) and (r.check is None or any(r.check(m.group("v") if "v" in r.rx.groupindex else m.group())
                                                                for m in r.rx.finditer(t))) for t in texts)]
    assert idle == []


def test_fullwidth_token_is_masked_in_its_original_characters():
    token = "ghp_" + BODY[:36]
    wide = "".join(chr(ord(c) + 0xFEE0) for c in token)
    assert mask_secrets(f"token {wide} end") == "token [REDACTED:github_token] end"


def test_json_unicode_escapes_are_seen_through_and_masked_in_place():
    escaped = "".join(f"\\u{ord(c):04x}" for c in "ghp_") + BODY[:36]
    assert mask_secrets(f'{{"t": "{escaped}"}}') == '{"t": "[REDACTED:github_token]"}'


def test_bidi_and_zero_width_characters_are_dropped_from_the_masked_text():
    assert mask_secrets("a\u202eb\u200bc") == "abc"


def test_a_value_cut_before_its_closing_quote_is_masked_to_the_end_of_the_line():
    masked = mask_secrets('{"password": "' + BODY[:20])
    assert BODY[:8] not in masked and masked.endswith("[REDACTED:secret]")


def test_weak_names_need_a_random_value_and_digests_are_not_secrets():
    assert mask_secrets("key: build") == "key: build"
    assert mask_secrets("cache key: Linux-pip-" + "ab12" * 16) == "cache key: Linux-pip-" + "ab12" * 16
    assert mask_secrets("signing_key: " + BODY[:32]) == "signing_key: [REDACTED:secret]"
    assert mask_secrets("session: " + BODY[:32]) == "session: [REDACTED:secret]"


def test_find_secrets_spans_point_into_the_original_text():
    token = "ghp_" + BODY[:36]
    text = "\u200b\uff41 " + token[:5] + "\u200d" + token[5:] + " tail"
    (m,) = find_secrets(text)
    assert text[m.span[0]:m.span[1]].replace("\u200d", "") == token


_LOG_WORDS = ["INFO", "WARN", "ERROR", "[main]", "Downloading", "com.acme.Build", "BUILD", "FAILURE", "tests",
              "run:", "12", "failed", "src/main/App.java:42", "->", "ok", "{", "}", "=", ":", "exit", "code", "1"]
log_lines = st.lists(st.lists(st.sampled_from(_LOG_WORDS), max_size=12).map(" ".join), max_size=8).map("\n".join)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=st.sampled_from(SHAPES), how=st.sampled_from(OBFUSCATIONS), seed=st.integers(0, 2**32),
       before=log_lines, after=log_lines, limit=st.integers(20, 400))
def test_no_eight_characters_of_a_secret_survive_masking_or_the_preview(shape, how, seed, before, after, limit):
    # Secrets come from a seeded generator, not from shrinkable draws: a secret shrunk to
    # "aaaaaaaa" is no longer the shape it stands for.
    rng = random.Random(seed)
    p = plant(shape, rng)
    text = before + "\n" + obfuscate(p, how, rng) + "\n" + after
    assert leaks(p.material, mask_secrets(text)) == []
    assert leaks(p.material, preview(text, limit)) == []
