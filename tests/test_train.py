import json
import random
from pathlib import Path

import numpy as np
import pytest

from smallfirst.backends.embedding import EmbeddingBackend, shared_encoder
from smallfirst.backends.minilm import MINILM_SHA256
from smallfirst.policy import load_policy, parse_policy
from smallfirst.heads import examples_path
from smallfirst.train import HEAD_FORMAT, DataError, HeadError, load_head, load_label_map, read_examples, train_head

LABEL_MAP = Path(__file__).parents[1] / "src" / "smallfirst" / "data" / "label_maps" / "bump.json"

POLICY = """
version: 1
models:
  clf: {{provider: embedding}}
tasks:
  triage:
    model: clf
    labels: [build, test, dependency, unknown]
    escalate_labels: [unknown]
    min_confidence: 0.6
{head}
"""


def _policy(head: Path | None = None):
    return parse_policy(POLICY.format(head=f"    head: {json.dumps(str(head))}" if head else ""))


def _synthetic_rows(per_label: int = 12, seed: int = 0) -> list[dict]:
    """Short Maven-style failure messages: clearly separable, varied in their details."""
    rng = random.Random(seed)
    classes = ["OrderService", "PaymentGateway", "UserRepository", "CacheLoader", "ReportWriter", "TokenParser"]
    methods = ["parse", "load", "render", "commit", "resolve", "encode"]
    artifacts = ["jackson-databind", "guava", "commons-io", "netty-handler", "slf4j-api", "okhttp"]
    templates = {
        "build": "[ERROR] COMPILATION ERROR\n[ERROR] /src/main/java/com/acme/{c}.java:[{n},{m}] cannot find symbol\n"
        "[ERROR]   symbol:   method {f}(java.lang.String)\n[ERROR]   location: class com.acme.{c}",
        "test": "[ERROR] Tests run: {n}, Failures: {m}, Errors: 0, Skipped: 0\n"
        "[ERROR] {c}Test.test{F}:{n} expected:<{m}> but was:<{n}>\n[ERROR] There are test failures.",
        "dependency": "[WARNING] Rule 0: org.apache.maven.plugins.enforcer.DependencyConvergence failed with message:\n"
        "Dependency convergence error for com.example:{a}:{m}.{n} paths to dependency are:\n"
        "[ERROR] Failed to execute goal maven-enforcer-plugin:enforce: Some Enforcer rules have failed.",
    }
    rows = []
    for label, template in templates.items():
        for i in range(per_label):
            c, f, a = rng.choice(classes), rng.choice(methods), rng.choice(artifacts)
            text = template.format(c=c, f=f, F=f.capitalize(), a=a, n=rng.randint(2, 99), m=rng.randint(1, 9))
            rows.append({"id": f"{label}-{i}", "text": text, "label": label.upper()})
    return rows


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


UPPER = {"BUILD": "build", "TEST": "test", "DEPENDENCY": "dependency"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("head")
    data = _write_jsonl(tmp / "train.jsonl", _synthetic_rows())
    out = tmp / "heads" / "triage.json"
    report = train_head(
        _policy().tasks["triage"], data, out, label_map=UPPER, folds=3, seed=0, command="pytest", exclude_ids={"build-0"}
    )
    return report, out


@pytest.mark.slow
def test_trained_head_round_trips_and_classifies_new_text(trained):
    report, out = trained
    head = load_head(out)
    assert head.labels == ("build", "test", "dependency")  # `unknown` had no examples
    assert head.embedding_sha256 == shared_encoder().sha256  # the int8 graph: what the head was trained on
    saved = json.loads(out.read_text())
    assert saved["format"] == HEAD_FORMAT == "smallfirst-head/2"
    # The training embeddings sit beside the head, pinned by hash: the novelty index and learn's base data.
    assert saved["examples"]["file"] == examples_path(out).name and saved["examples"]["n"] == 35
    assert head.examples is not None and head.examples.x.shape == (35, 384) and head.novelty.method == "knn"
    assert saved["provenance"]["n"] == 35 and saved["provenance"]["excluded"] == 1  # build-0 held out
    assert saved["provenance"]["command"] == "pytest"
    assert saved["provenance"]["label_map"] == UPPER
    assert saved["cv"]["accuracy"] == pytest.approx(report.accuracy, abs=1e-4)

    policy = _policy(out)
    backend = EmbeddingBackend(policy.models["clf"], policy)
    task = policy.tasks["triage"]
    result = backend.complete_sync(
        "[ERROR] COMPILATION ERROR\n[ERROR] /src/main/java/com/acme/Invoice.java:[12,8] cannot find symbol", task
    )
    assert result.label == "build"
    assert set(result.scores) == set(task.labels)
    assert result.scores["unknown"] == 0.0  # a label the head never saw is never predicted
    assert sum(result.scores.values()) == pytest.approx(1.0)
    assert 0.0 <= result.confidence <= 1.0
    assert result.confidence_raw == pytest.approx(result.scores["build"])
    assert result.extra["mode"] == "trained" and "similarity" in result.extra
    assert result.model_sha256 == shared_encoder().sha256


@pytest.mark.slow
def test_train_report_numbers_add_up(trained):
    report, _ = trained
    assert report.n == 35
    assert report.accuracy > 0.9  # the synthetic classes are far apart
    assert sum(c.n for c in report.per_label.values()) == report.n
    assert sum(c.accepted for c in report.per_label.values()) == report.accepted
    assert report.false_accepts == len(report.false_accept_ids) <= report.accepted
    assert report.accept_rate == pytest.approx(report.accepted / report.n)
    assert "false accepts" in report.summary()


@pytest.mark.slow
def test_a_two_label_head_loads_and_classifies(tmp_path):
    rows = [r for r in _synthetic_rows(per_label=8, seed=1) if r["label"] != "DEPENDENCY"]
    data = _write_jsonl(tmp_path / "two.jsonl", rows)
    out = tmp_path / "two.json"
    train_head(_policy().tasks["triage"], data, out, label_map=UPPER, folds=3, command="pytest")
    head = load_head(out)
    assert head.labels == ("build", "test") and head.coef.shape == (2, 384)
    policy = _policy(out)
    result = EmbeddingBackend(policy.models["clf"], policy).complete_sync(
        "[ERROR] Tests run: 5, Failures: 2\n[ERROR] CartTest.testTotal:12 expected:<3> but was:<4>", policy.tasks["triage"]
    )
    assert result.label == "test"
    assert result.scores["dependency"] == result.scores["unknown"] == 0.0


def test_two_label_weights_give_the_fitted_models_probabilities():
    from sklearn.linear_model import LogisticRegression

    from smallfirst.calibration import Calibrator
    from smallfirst.heads import Head, Novelty, Window
    from smallfirst.train import _softmax_weights

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 384))
    y = (x[:, 0] + 0.3 * rng.normal(size=60) > 0).astype(int)
    model = LogisticRegression(C=10).fit(x, y)
    coef, intercept = _softmax_weights(model)
    novelty = Novelty("knn", 1, 0.0, 1.0, np.zeros((2, 384), np.float32))
    head = Head("t", ("a", "b"), coef, intercept, Calibrator(), novelty, Window("last"), MINILM_SHA256)
    assert np.allclose(head.probabilities(x), model.predict_proba(x), atol=1e-9)


def _edited_head(trained, tmp_path: Path, *, rehash: bool = True, **changes) -> Path:
    """A copy of the trained head with `changes`; rehashed, it is a head written that way by a
    writer, not edited after the fact."""
    from smallfirst.heads import _content_sha256

    _, out = trained
    doc = json.loads(out.read_text())
    doc.update(changes)
    if rehash:
        doc["content_sha256"] = _content_sha256(doc)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    (tmp_path / doc["examples"]["file"]).write_bytes(examples_path(out).read_bytes())
    return bad


@pytest.mark.slow
def test_head_trained_on_another_embedding_model_is_refused(trained, tmp_path):
    bad = _edited_head(trained, tmp_path, embedding_sha256="0" * 64)
    with pytest.raises(HeadError, match="retrain the head") as err:
        load_head(bad, embedding_sha256=shared_encoder().sha256)
    assert str(bad) in str(err.value) and "0" * 64 in str(err.value) and shared_encoder().sha256 in str(err.value)


@pytest.mark.slow
def test_head_of_an_unknown_format_is_refused(trained, tmp_path):
    bad = _edited_head(trained, tmp_path, format="smallfirst-head/99")
    with pytest.raises(HeadError, match=r"format is 'smallfirst-head/99', expected 'smallfirst-head/2'"):
        load_head(bad)


@pytest.mark.slow
def test_a_head_edited_after_it_was_written_is_refused_by_its_content_hash(trained, tmp_path):
    _, out = trained
    doc = json.loads(out.read_text())
    bad = _edited_head(trained, tmp_path, rehash=False, intercept=[x + 1.0 for x in doc["intercept"]])
    with pytest.raises(HeadError, match="content hash mismatch") as err:
        load_head(bad)
    assert str(bad) in str(err.value)


@pytest.mark.slow
def test_a_head_whose_training_embeddings_changed_or_vanished_is_refused(trained, tmp_path):
    bad = _edited_head(trained, tmp_path)
    npz = tmp_path / json.loads(bad.read_text())["examples"]["file"]
    npz.write_bytes(npz.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(HeadError, match="examples file .* has sha256"):
        load_head(bad)
    npz.unlink()
    with pytest.raises(HeadError, match="cannot read its examples file"):
        load_head(bad)


@pytest.mark.slow
def test_a_truncated_head_is_refused_with_its_file_name(trained, tmp_path):
    _, out = trained
    bad = tmp_path / "cut.json"
    bad.write_bytes(out.read_bytes()[:500])
    with pytest.raises(HeadError, match="not a JSON head artifact") as err:
        load_head(bad)
    assert str(bad) in str(err.value)


def test_a_format_1_head_still_loads_with_centroid_novelty(tmp_path):
    from smallfirst.heads import HEAD_FORMAT_V1

    k, rng = 2, np.random.default_rng(0)
    c = rng.normal(size=(k, 384))
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    doc = {"format": HEAD_FORMAT_V1, "task": "t", "labels": ["a", "b"], "embedding_sha256": MINILM_SHA256,
           "window": {"strategy": "last", "tokens": 256}, "coef": rng.normal(size=(k, 384)).tolist(),
           "intercept": [0.0, 0.0], "calibrator": {"kind": "identity"},
           "novelty": {"method": "max cosine to class centroid", "percentile": 1.0, "threshold": 0.5,
                       "centroids": c.tolist()}}
    p = tmp_path / "old.json"
    p.write_text(json.dumps(doc))
    head = load_head(p)
    assert head.format == HEAD_FORMAT_V1 and head.examples is None and head.novelty.method == "centroid"
    assert head.similarity(c[:1])[0] == pytest.approx(1.0, abs=1e-6)


@pytest.mark.slow
def test_head_with_misshapen_weights_is_refused(trained, tmp_path):
    bad = _edited_head(trained, tmp_path, coef=[[0.0] * 384] * 2)
    with pytest.raises(HeadError, match="coef has shape"):
        load_head(bad)


def test_malformed_training_line_names_file_and_line(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"id": "a", "text": "x", "label": "build"}\n{"id": "b", "text": \n', encoding="utf-8")
    with pytest.raises(DataError, match=rf"{data}:2: malformed JSON"):
        read_examples(data, ["build", "test"])


def test_label_outside_the_task_names_file_line_and_mapping(tmp_path):
    data = _write_jsonl(tmp_path / "d.jsonl", [{"id": "a", "text": "x", "label": "TEST"}, {"id": "b", "text": "y", "label": "FLAKY"}])
    with pytest.raises(DataError, match=rf"{data}:2: label 'FLAKY' \(mapped to 'flaky'\) is not one of"):
        read_examples(data, ["build", "test"], {"TEST": "test", "FLAKY": "flaky"})


def test_duplicate_example_ids_are_refused(tmp_path):
    data = _write_jsonl(tmp_path / "d.jsonl", [{"id": "a", "text": "x", "label": "test"}] * 2)
    with pytest.raises(DataError, match="duplicate id 'a'"):
        read_examples(data, ["test"])


def test_bump_label_map_covers_every_bump_category():
    mapping = load_label_map(LABEL_MAP)
    assert "_comment" not in mapping
    assert mapping == {
        "COMPILATION_FAILURE": "build",
        "WERROR_FAILURE": "build",
        "TEST_FAILURE": "test",
        "ENFORCER_FAILURE": "dependency",
        "DEPENDENCY_LOCK_FAILURE": "dependency",
        "DEPENDENCY_RESOLUTION_FAILURE": "dependency",
    }


@pytest.mark.slow
def test_bundled_head_flags_text_unlike_ci_logs_as_novel():
    policy = load_policy()
    task = policy.tasks["classify_issue"]
    backend = EmbeddingBackend(policy.models[task.model], policy)
    poem = "Shall I compare thee to a summer's day?\nThou art more lovely and more temperate:\nRough winds do shake the darling buds of May"
    noise = "".join(chr(c) for c in np.random.default_rng(0).integers(0x3040, 0x9FFF, 300))
    for text in (poem, noise):
        out = backend.complete_sync(text, task)
        assert out.novel, (text[:40], out.extra)
        assert out.extra["similarity"] < out.extra["novelty_threshold"]


# A whole Maven failure tail as CI prints it (invented project), like the logs the head learnt from.
MAVEN_COMPILE_FAILURE = """\
[INFO] Scanning for projects...
[INFO] ------------------------------------------------------------------------
[INFO] Reactor Build Order:
[INFO]
[INFO] shop-parent                                                        [pom]
[INFO] shop-money                                                         [jar]
[INFO] shop-core                                                          [jar]
[INFO]
[INFO] --- maven-compiler-plugin:3.8.1:compile (default-compile) @ shop-core ---
[INFO] Changes detected - recompiling the module!
[INFO] Compiling 42 source files to /shop/shop-core/target/classes
[INFO] -------------------------------------------------------------
[ERROR] COMPILATION ERROR :
[INFO] -------------------------------------------------------------
[ERROR] /shop/shop-core/src/main/java/com/acme/shop/Cart.java:[41,23] cannot find symbol
  symbol:   method getAmount()
  location: variable price of type com.acme.money.Price
[ERROR] /shop/shop-core/src/main/java/com/acme/shop/Invoice.java:[17,8] cannot find symbol
  symbol:   class MonetaryAmount
  location: package com.acme.money
[INFO] 2 errors
[INFO] -------------------------------------------------------------
[INFO] ------------------------------------------------------------------------
[INFO] Reactor Summary for shop-parent 1.4.0-SNAPSHOT:
[INFO]
[INFO] shop-parent ........................................ SUCCESS [  0.412 s]
[INFO] shop-money ......................................... SUCCESS [  2.108 s]
[INFO] shop-core .......................................... FAILURE [  1.377 s]
[INFO] ------------------------------------------------------------------------
[INFO] BUILD FAILURE
[INFO] ------------------------------------------------------------------------
[INFO] Total time:  4.310 s
[INFO] Finished at: 2024-03-01T12:00:01Z
[INFO] ------------------------------------------------------------------------
[ERROR] Failed to execute goal org.apache.maven.plugins:maven-compiler-plugin:3.8.1:compile (default-compile) on project shop-core: Compilation failure: Compilation failure:
[ERROR] /shop/shop-core/src/main/java/com/acme/shop/Cart.java:[41,23] cannot find symbol
[ERROR]   symbol:   method getAmount()
[ERROR]   location: variable price of type com.acme.money.Price
[ERROR] /shop/shop-core/src/main/java/com/acme/shop/Invoice.java:[17,8] cannot find symbol
[ERROR]   symbol:   class MonetaryAmount
[ERROR]   location: package com.acme.money
[ERROR] -> [Help 1]
[ERROR]
[ERROR] To see the full stack trace of the errors, re-run Maven with the -e switch.
[ERROR] Re-run Maven using the -X switch to enable full debug logging.
[ERROR]
[ERROR] For more information about the errors and possible solutions, please read the following articles:
[ERROR] [Help 1] http://cwiki.apache.org/confluence/display/MAVEN/MojoFailureException
[ERROR]
[ERROR] After correcting the problems, you can resume the build with the command
[ERROR]   mvn <args> -rf :shop-core
"""


@pytest.mark.slow
def test_bundled_head_keeps_a_maven_compile_failure_local():
    policy = load_policy()
    task = policy.tasks["classify_issue"]
    backend = EmbeddingBackend(policy.models[task.model], policy)
    out = backend.complete_sync(MAVEN_COMPILE_FAILURE, task)
    assert not out.novel, out.extra
    assert out.label == "build"
    assert out.confidence >= task.min_confidence
    assert set(out.scores) == set(task.labels) and sum(out.scores.values()) == pytest.approx(1.0)
    assert out.scores["security"] < 0.01


OTHER_ECOSYSTEMS = Path(__file__).parent / "data" / "ci_failures_other_ecosystems.jsonl"


@pytest.mark.slow
def test_bundled_policy_keeps_routine_failures_of_other_ecosystems_local_with_their_label(tmp_path):
    """Issue 8's first complaint: a pytest failure, a gcc -Werror error, a pip resolver conflict and
    a JUnit assertion all escalated as hard_stop_novel. Written here by hand, not drawn from the
    training data: each must now be answered locally with its label."""
    from smallfirst.audit import AuditLog
    from smallfirst.router import Router
    from smallfirst.tasks import Task

    policy = load_policy()
    audit = AuditLog.open(tmp_path / "a.db")
    router = Router(policy, audit=audit)
    try:
        for line in OTHER_ECOSYSTEMS.read_text(encoding="utf-8").splitlines():
            case = json.loads(line)
            r = router.route(Task(input=case["text"], task_type="classify_issue", task_id=case["id"]))
            assert (r.route, r.label, r.reason) == ("local", case["label"], None), (case["id"], r.reason, r.label)
    finally:
        router.close()
        audit.close()


@pytest.mark.slow
def test_a_head_records_which_training_texts_the_hard_stops_stop(tmp_path):
    """learn's release gate scores the head's own training data as the router would: a text the
    hard stops stop escalates, whatever the model says of it."""
    rows = _synthetic_rows(per_label=6)
    rows[0]["text"] += "\nremote: Invalid username or password.\nfatal: Authentication failed for 'https://github.com/acme/shop.git/'"
    out = tmp_path / "h.json"
    train_head(_policy().tasks["triage"], _write_jsonl(tmp_path / "t.jsonl", rows), out, label_map=UPPER, folds=3,
               command="pytest")
    stops = load_head(out).examples.hard_stops()
    assert stops[0] == "access" and stops[1:] == [None] * (len(rows) - 1)
