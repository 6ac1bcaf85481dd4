import json
from pathlib import Path

import pytest

from smallfirst.logtext import (
    CompressedLog,
    compress_log,
    extract_error_codes,
    extract_identifiers,
    extract_paths,
)

from conftest import SHARED_DATA  # noqa: E402

LOGCHUNKS = SHARED_DATA / "logchunks-dev" / "logchunks_dev.jsonl"


def _progress_log(n: int = 500) -> str:
    lines = ["$ npm ci"]
    lines += [f"Downloading left-pad {i * 100 // n}% ({i * 1024} bytes, {i * 0.01:.2f}s)" for i in range(n)]
    lines += ["npm ERR! code E403", "npm ERR! 403 Forbidden - GET https://<registry-host>/@org%2fpkg"]
    lines += ["", 'The command "npm ci" exited with 1.', "", "Done. Your build exited with 1."]
    return "\n".join(lines)


def test_near_repeated_progress_lines_collapse_into_one_counted_line():
    c = compress_log(_progress_log(500), budget_chars=4000)
    progress = [line for line in c.text.splitlines() if line.startswith("Downloading left-pad")]
    assert len(progress) == 1
    assert progress[0].endswith("[x500]")
    assert c.original_lines == 507
    assert c.kept_lines == 506  # all but Travis's closing "Done. Your build exited with 1." (ci_epilogues.yaml)


def test_error_lines_and_the_tail_survive_a_small_budget():
    noise = [f"[INFO] Compiling module-{i} with 12 sources into target/classes-{i}" for i in range(400)]
    log = "\n".join(
        noise[:200]
        + ["[ERROR] src/main/java/com/acme/Foo.java:[42,17] cannot find symbol", "[ERROR]   symbol: class Bar"]
        + noise[200:]
        + ["[INFO] BUILD FAILURE", "[INFO] Total time: 12.3 s"]
    )
    c = compress_log(log, budget_chars=1500)
    assert len(c.text) <= 1500
    assert "[ERROR] src/main/java/com/acme/Foo.java:[42,17] cannot find symbol" in c.text
    assert "[ERROR]   symbol: class Bar" in c.text
    assert c.text.rstrip().endswith("[INFO] Total time: 12.3 s")
    assert "src/main/java/com/acme/Foo.java" in c.paths


def test_first_and_last_error_blocks_are_kept_in_original_order_with_gap_markers():
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf"]
    filler = [f"compiled {words[i % 7]}-{words[(i // 7) % 7]}-{words[(i // 49) % 7]} module" for i in range(300)]
    lines = filler[:50] + ["Error: first failure in setup"] + filler[50:250] + ["FAILED: last failure"] + filler[250:]
    c = compress_log("\n".join(lines), budget_chars=1200)
    text = c.text
    assert text.index("Error: first failure in setup") < text.index("FAILED: last failure")
    assert "... [" in text  # dropped lines are marked, not silently removed


@pytest.mark.parametrize("budget", [0, 10, 200, 500, 1000, 2000, 4000])
def test_output_never_exceeds_the_budget_and_never_cuts_a_line(budget):
    lines = [f"line {i} " + "x" * (i % 90) for i in range(2000)]
    c = compress_log("\n".join(lines), budget_chars=budget)
    assert len(c.text) <= budget
    originals = {line.rstrip() for line in lines}
    for line in c.text.splitlines():
        assert line in originals or line.startswith("... [") or "[x" in line


def test_a_log_that_fits_is_returned_whole():
    log = "building\nError: boom\ndone"
    c = compress_log(log, budget_chars=4000)
    assert c.text == log
    assert c.ratio == pytest.approx(1.0)
    assert isinstance(c, CompressedLog)


def test_compression_is_deterministic():
    log = _progress_log(300)
    assert compress_log(log, 600) == compress_log(log, 600)


def test_very_long_line_is_shortened_visibly_rather_than_eating_the_budget():
    log = "start\n" + "A" * 50_000 + "\nError: the real problem\nend"
    c = compress_log(log, budget_chars=2000)
    assert len(c.text) <= 2000
    assert "Error: the real problem" in c.text
    assert "chars]" in c.text


def test_github_actions_timestamps_do_not_defeat_repeat_collapsing():
    lines = [f"2024-05-01T12:00:{i % 60:02d}.{i:07d}Z Pulling layer {i}" for i in range(200)]
    lines.append("2024-05-01T12:01:00.0000000Z ##[error]Process completed with exit code 1.")
    c = compress_log("\n".join(lines), budget_chars=500)
    assert "[x200]" in c.text
    assert "##[error]Process completed with exit code 1." in c.text


def test_extract_paths_finds_unix_windows_and_bare_file_names_but_not_urls():
    text = (
        "error: src/main/java/Foo.java:[12,5] cannot find symbol\n"
        '  File "./a/b.py", line 12, in <module>\n'
        "C:\\x\\y.cs(10,3): error CS0246\n"
        "see https://example.com/docs/page.html for more; README.md\n"
    )
    paths = extract_paths(text)
    assert paths[:3] == ["src/main/java/Foo.java", "./a/b.py", "C:\\x\\y.cs"]
    assert "README.md" in paths
    assert not any("example.com" in p or p.endswith("page.html") for p in paths)


def test_extract_error_codes_normalises_http_status_and_exit_codes():
    text = (
        "error[E0425]: cannot find value\nsrc/a.ts(1,2): error TS2345: x\nerror CS0246: y\n"
        " ERR_PNPM_FETCH_403  npm ERR! 403 Forbidden - GET https://<registry-host>/@org%2fpkg\n"
        "Error: ENOENT: no such file\nKilled: exited with code 137\njava.lang.NullPointerException\n"
        "version 1.403.2 resolved"
    )
    codes = extract_error_codes(text)
    for code in ("E0425", "TS2345", "CS0246", "ERR_PNPM_FETCH_403", "HTTP 403", "ENOENT", "exit code 137",
                 "java.lang.NullPointerException"):
        assert code in codes
    assert codes.count("HTTP 403") == 1


def test_identifiers_cover_what_a_grounded_summary_may_cite():
    text = "at org.junit.Assert.fail(Assert.java:88) in test_token_refresh of TokenStore\n/home/ci/src/app/main.py:3"
    ids = extract_identifiers(text)
    for name in ("NullPointerException",):
        assert name not in ids  # never invented
    for name in ("org.junit.Assert.fail", "Assert.fail", "Assert.java", "test_token_refresh", "TokenStore",
                 "main.py", "app/main.py", "/home/ci/src/app/main.py"):
        assert name in ids
    assert "the" not in ids


def test_real_travis_logs_compress_within_budget():
    rows = [json.loads(line) for line in LOGCHUNKS.open(encoding="utf-8")][:40]
    for row in rows:
        c = compress_log(row["text"], 4000)
        assert len(c.text) <= 4000
        assert c.ratio >= 1.0
