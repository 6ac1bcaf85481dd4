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
