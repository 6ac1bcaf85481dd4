"""More checks from PyPI: behave and Robot Framework (tests), coverage's --fail-under gate (test),
codespell, typos, pydocstyle, gitlint, reuse (checks), a generated-files-not-committed check and a
CHANGELOG check (checks), Sphinx -W and mkdocs --strict (docs builds), conan (dependency).

    python3 fam_py2.py [N] [maker-filter]

The tools are installed into $SFGEN_WORK/tools/py2 (setup_tools.sh). The two repository checks
(`git diff --exit-code` after regenerating, a changelog entry required) are shell steps real
projects run; their output is git's and the script's own.
"""

from __future__ import annotations

import random
import sys

from common import TOOLS, Capture, LocalServer, Project, main_loop, noun, pascal, snake, version_of

PY2 = TOOLS / "py2"
BIN = PY2 / "bin"
_V: dict[str, str] = {}


def _v(tool: str) -> str:
    if tool not in _V:
        cmd = {"gitlint": f"{BIN}/gitlint --version", "reuse": f"{BIN}/reuse --version | head -1", "sphinx": f"{BIN}/sphinx-build --version", "conan": f"{BIN}/conan --version"}.get(tool, f"{BIN}/{tool} --version")
        _V[tool] = version_of(cmd).split(" from ")[0]
    return _V[tool]


def _run(p: Project, cmd: str, **kw) -> tuple[int, str]:
    env = {"PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin", **kw.pop("env", {})}
    rc, out = p.run(cmd, env=env, **kw)
    return rc, out.replace("/tmp/tools/py2", "{WS}/.venv")


def bdd(rng: random.Random) -> Capture | None:
    tool = rng.choice(["behave", "robot"])
    w = noun(rng)
    n, k = rng.randint(1, 9), rng.randint(1, 5)
    if tool == "behave":
        files = {f"features/{w}.feature": f"Feature: {w.capitalize()} list\n\n  Scenario: add {w}s\n    Given a {w} list with {n} items\n    When I add {k} items\n    Then the list has {n + k + rng.choice([1, -1, 3])} items\n\n  Scenario: keep an empty list\n    Given a {w} list with 0 items\n    Then the list has 0 items\n",
                 "features/steps/steps.py": f"from behave import given, then, when\n\n\n@given('a {w} list with {{n:d}} items')\ndef step_given(context, n):\n    context.items = list(range(n))\n\n\n@when('I add {{k:d}} items')\ndef step_add(context, k):\n    context.items += list(range(k))\n\n\n@then('the list has {{n:d}} items')\ndef step_then(context, n):\n    assert len(context.items) == n, f'expected {{n}} items, got {{len(context.items)}}'\n"}
        real, cmd = "behave --no-color", rng.choice(["behave", "behave --format progress", "python -m behave features/"])
        if "progress" in cmd:
            real += " --format progress"
    else:
        kw = rng.choice(["Should Be Equal As Integers    ${r}    " + str(n + k + 1), "Should Be Equal    ${name}    " + noun(rng), "Should Contain    ${items}    " + noun(rng), "Length Should Be    ${items}    " + str(n + 2)])
        files = {f"tests/{w}.robot": f"*** Variables ***\n${{name}}    {w}\n@{{items}}    {w}    {noun(rng)}\n\n*** Test Cases ***\n{pascal(snake(rng, 2))} Works\n    ${{r}}=    Evaluate    {n} + {k}\n    {kw}\n\n{pascal(snake(rng, 2))} Is Stable\n    Should Be True    ${{True}}\n"}
        real, cmd = "robot --console dotted --output NONE --log NONE --report NONE tests" if rng.random() < 0.5 else "robot --output NONE --log NONE --report NONE tests", rng.choice(["robot tests", "python -m robot --outputdir results tests/", "robot -d reports tests"])
    p = Project(noun(rng)).write(files)
    try:
        rc, out = _run(p, real, timeout=120)
        if rc == 0:
            return None
        return Capture("py2", "python", tool, "test", f"{tool}_assert", cmd, out, rc, _v("behave" if tool == "behave" else "robot"))
    finally:
        p.close()


def coverage_gate(rng: random.Random) -> Capture | None:
    mod = snake(rng, 1).split("_")[0] + "_" + noun(rng)
    fns = [snake(rng, 2) for _ in range(rng.randint(4, 8))]
    src = "\n\n".join(f"def {f}(x):\n    if x > {i}:\n        return x * {i + 2}\n    return -x\n" for i, f in enumerate(fns))
    test = f"from {mod} import {fns[0]}\n\n\ndef test_{fns[0]}():\n    assert {fns[0]}(5) == 10\n"
    p = Project(noun(rng)).write({f"{mod}.py": src, f"test_{mod}.py": test})
    try:
        under = rng.choice([80, 85, 90, 95])
        rc, out = _run(p, f"coverage run -m pytest -q -p no:cacheprovider && coverage report -m --fail-under={under}", timeout=120)
        if rc == 0 or "fail-under" not in out.lower() and "Coverage failure" not in out:
            return None
        cmd = rng.choice([f"coverage report --fail-under={under}", f"pytest --cov={mod} --cov-fail-under={under}", f"coverage run -m pytest && coverage report -m --fail-under={under}"])
        return Capture("py2", "python", "coverage", "test", "coverage_under", cmd, out, rc, _v("coverage"))
    finally:
        p.close()


_TYPOS = [("recieve", "receive"), ("teh", "the"), ("adress", "address"), ("seperate", "separate"), ("occured", "occurred"), ("dependant", "dependent"), ("existant", "existent"), ("langauge", "language"), ("succesful", "successful"), ("accross", "across"), ("begining", "beginning"), ("enviroment", "environment")]


def spelling(rng: random.Random) -> Capture | None:
    tool = rng.choice(["codespell", "typos"])
    words = rng.sample(_TYPOS, rng.randint(1, 4))
    w = noun(rng)
    files = {"README.md": f"# {w}\n\nThis {w} service will {words[0][0]} the {noun(rng)} and store it.\n" + "".join(f"\nThe {noun(rng)} {bad} is handled here.\n" for bad, _ in words[1:]),
             f"src/{w}.py": f"def {snake(rng, 2)}(x):\n    # {words[-1][0]} the value before the {noun(rng)} is written\n    return x\n"}
    p = Project(noun(rng)).write(files)
    try:
        rc, out = _run(p, "codespell README.md src" if tool == "codespell" else "typos")
        if rc == 0:
            return None
        cmd = rng.choice(["codespell", "codespell --skip='*.lock,./node_modules'", "pre-commit run codespell --all-files"]) if tool == "codespell" else rng.choice(["typos", "typos --format brief", "npx typos"])
        return Capture("py2", "generic", tool, "lint", "spelling", cmd, out, rc, _v(tool))
    finally:
        p.close()


def pydocstyle(rng: random.Random) -> Capture | None:
    cls = pascal(snake(rng, 2))
    src = f"class {cls}:\n    def {snake(rng, 2)}(self, x):\n        return x\n\n\ndef {snake(rng, 2)}(a, b):\n    '''adds things'''\n    return a + b\n"
    p = Project(noun(rng)).write({f"src/{noun(rng)}.py": src})
    try:
        rc, out = _run(p, "pydocstyle src")
        if rc == 0:
            return None
        return Capture("py2", "python", "pydocstyle", "lint", "docstrings", rng.choice(["pydocstyle src", "pydocstyle --convention=google src"]), out, rc, _v("pydocstyle"))
    finally:
        p.close()


def _git(p: Project, msg: str) -> None:
    p.run(f"git init -q -b main . && git config user.email ci@example.org && git config user.name ci && git add -A && git commit -q -m {msg!r}")


def repo_checks(rng: random.Random) -> Capture | None:
    kind = rng.choice(["gitlint", "reuse", "generated_diff", "changelog", "gitlint"])
    w = noun(rng)
    p = Project(noun(rng)).write({f"src/{w}.py": f"def {snake(rng, 2)}():\n    return {rng.randint(1, 99)}\n", "README.md": f"# {w}\n"})
    try:
        if kind == "gitlint":
            msg = rng.choice([f"WIP: {w}", f"fixed {w}.", f"Update {w}\nno blank line here", f"{w} " + "x" * rng.randint(75, 100), f"feat: {w}\n\nsee #{rng.randint(1, 999)}\t", f"Merge {w}"])
            _git(p, msg)
            rc, out = _run(p, "gitlint", timeout=60)
            cmd = rng.choice(["gitlint", "gitlint --commits origin/main..HEAD", "pre-commit run gitlint --hook-stage commit-msg"])
            tool, label = "gitlint", "lint"
        elif kind == "reuse":
            _git(p, "init")
            rc, out = _run(p, "reuse lint")
            cmd = rng.choice(["reuse lint", "pipx run reuse lint", "docker run --rm --volume $(pwd):/data fsfe/reuse lint"])
            tool, label = "reuse", "lint"
        elif kind == "generated_diff":
            gen = rng.choice(["openapi.json", "src/schema_gen.py", "docs/cli.md", "go.sum" if False else "api/types.ts", "requirements.txt"])
            p.write({gen: f"# generated\nversion = {rng.randint(1, 9)}\n"})
            _git(p, "add generated file")
            p.write({gen: f"# generated\nversion = {rng.randint(10, 19)}\nfield_{w} = true\n"})
            script = rng.choice(["git diff --exit-code", f"git diff --exit-code -- {gen}", "git diff --stat --exit-code"])
            pre = rng.choice(["echo 'Generated files are out of date. Run `make generate` and commit the result.'; ", "", "echo '::error::Please run the code generator and commit the changes'; "])
            rc, out = _run(p, f"{script} || {{ {pre}exit 1; }}")
            cmd = script
            tool, label = "git diff", "lint"
        else:
            _git(p, "init")
            p.write({f"src/{w}.py": "def x():\n    return 2\n"})
            p.run("git add -A && git commit -q -m change")
            chk = rng.choice(["CHANGELOG.md", "CHANGES.rst", "changelog.d/"])
            script = f"if git diff --name-only HEAD~1 | grep -q '^{chk}'; then echo ok; else echo \"ERROR: no entry in {chk} for this change. Add one, or label the pull request 'skip-changelog'.\"; exit 1; fi"
            rc, out = _run(p, script)
            cmd = rng.choice(["./scripts/check-changelog.sh", "bash ci/changelog.sh"])
            tool, label = "changelog", "lint"
        if rc == 0 or not out.strip():
            return None
        return Capture("py2", "generic", tool, label, f"check_{kind}", cmd, out, rc, _v("gitlint") if kind == "gitlint" else (_v("reuse") if kind == "reuse" else "git version 2.39.5"))
    finally:
        p.close()


def docs(rng: random.Random) -> Capture | None:
    tool = rng.choice(["sphinx", "mkdocs"])
    w = noun(rng)
    if tool == "sphinx":
        kind = rng.choice(["toctree", "ref", "include", "autodoc", "heading"])
        body = {"toctree": f".. toctree::\n   :maxdepth: 2\n\n   {w}\n   {noun(rng)}-guide\n", "ref": f"See :ref:`{w}-{noun(rng)}` and :doc:`{noun(rng)}`.\n", "include": f".. include:: ../{w}.rst\n",
                "autodoc": f".. automodule:: {w}_{noun(rng)}\n   :members:\n", "heading": f"{w.capitalize()}\n---\n\nText.\n"}[kind]
        files = {"docs/conf.py": f"project = '{w}'\nextensions = ['sphinx.ext.autodoc']\nhtml_theme = 'alabaster'\n", "docs/index.rst": f"{w.capitalize()}\n{'=' * len(w)}\n\n{body}"}
        real = "sphinx-build -W --keep-going -b html docs docs/_build/html" if rng.random() < 0.5 else "sphinx-build -W -b html docs docs/_build/html"
        cmd = rng.choice(["sphinx-build -W -b html docs docs/_build/html", "make -C docs html SPHINXOPTS=-W", "tox -e docs", "python -m sphinx -W -n docs build"])
    else:
        kind = rng.choice(["nav", "link", "config"])
        files = {"mkdocs.yml": f"site_name: {w}\nnav:\n  - Home: index.md\n" + (f"  - API: {noun(rng)}.md\n" if kind == "nav" else "") + ("theme:\n  name: material\n" if kind == "config" else ""), "docs/index.md": f"# {w}\n\n" + (f"See [{noun(rng)}]({noun(rng)}.md).\n" if kind == "link" else "Welcome.\n")}
        real = "mkdocs build --strict"
        cmd = rng.choice(["mkdocs build --strict", "mkdocs gh-deploy --force --strict", "python -m mkdocs build -s"])
    p = Project(noun(rng)).write(files)
    try:
        rc, out = _run(p, real, timeout=120)
        if rc == 0:
            return None
        # A theme that is not installed is a missing package (LABELS.md: a third-party module that
        # cannot be imported is `dependency`); every other docs failure is the project's own build.
        label = "dependency" if (tool, kind) == ("mkdocs", "config") else "build"
        return Capture("py2", "python", tool, label, f"{tool}_{kind}", cmd, out, rc, _v(tool))
    finally:
        p.close()


def conan(rng: random.Random) -> Capture | None:
    lib = rng.choice(["zlib/1.3.1", "openssl/3.3.2", "fmt/11.0.2", "boost/1.86.0", "spdlog/1.14.1", "gtest/1.15.0", "nlohmann_json/3.11.3", "libcurl/8.10.1"])
    p = Project(noun(rng)).write({"conanfile.txt": f"[requires]\n{lib}\n\n[generators]\nCMakeDeps\nCMakeToolchain\n"})
    try:
        home = p.root / ".conan2"
        env = {"CONAN_HOME": str(home)}
        # A remote that has no such package, as conancenter answers for a recipe it lacks.
        with LocalServer(404, '{"errors": [{"status": "404", "message": "Not found"}]}', {"Content-Type": "application/json"}) as srv:
            _run(p, f"conan profile detect --force >/dev/null 2>&1; conan remote remove conancenter >/dev/null 2>&1; conan remote add conancenter {srv.url} >/dev/null 2>&1; true", env=env)
            rc, out = _run(p, "conan install . --build=missing", env=env, timeout=120)
            out = out.replace(srv.url, "https://center2.conan.io")
        if rc == 0:
            return None
        out = out.replace(str(home).replace("/tmp/sfgen", "/tmp"), "{HOME}/.conan2").replace(str(home), "{HOME}/.conan2")
        return Capture("py2", "c", "conan", "dependency", "conan_not_found", rng.choice(["conan install . --build=missing", "conan install . --output-folder=build --build=missing -s build_type=Release"]), out, rc, _v("conan"))
    finally:
        p.close()


MAKERS = [bdd, bdd, coverage_gate, spelling, pydocstyle, repo_checks, repo_checks, docs, docs, conan]

if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 170
    main_loop("py2", MAKERS, n, 5505, sys.argv[2] if len(sys.argv) > 2 else None)
