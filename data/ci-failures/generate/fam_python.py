"""Python failures: pytest and unittest runs, pip/uv resolution and installs, packaging, linters.

Each maker writes a small package with randomly named modules, injects one kind of fault, runs
the real tool from the pinned tool venv ($SFGEN_WORK/tools/py) and keeps what it printed.
"""

from __future__ import annotations

import random
import sys

from common import PY_BARE, PY_VENV, Capture, Project, distinct, main_loop, noun, pascal, snake, version_of

PY = f"{PY_VENV}/bin/python"
PIP = f"{PY_BARE}/bin/python -m pip"  # installs go to an empty venv, as on a fresh runner


def _pkg(rng: random.Random) -> str:
    return rng.choice([noun(rng), f"{noun(rng)}_{rng.choice(['core', 'lib', 'utils', 'svc', 'kit'])}", f"{noun(rng)}{noun(rng)}"])


def _passing_tests(rng: random.Random, mod: str, n: int) -> tuple[str, str]:
    """Module code and tests that pass, to surround the failing one."""
    funcs, tests = [], []
    for name in distinct(rng, lambda r: snake(r, 2), n):
        a, b = rng.randint(1, 50), rng.randint(1, 50)
        kind = rng.randrange(4)
        if kind == 0:
            funcs.append(f"def {name}(a, b):\n    return a + b\n")
            tests.append(f"def test_{name}():\n    assert {mod}.{name}({a}, {b}) == {a + b}\n")
        elif kind == 1:
            funcs.append(f"def {name}(items):\n    return sorted(items, reverse=True)\n")
            tests.append(f"def test_{name}_orders_descending():\n    assert {mod}.{name}([{a}, {b}, 0]) == {sorted([a, b, 0], reverse=True)}\n")
        elif kind == 2:
            funcs.append(f"def {name}(text):\n    return text.strip().lower()\n")
            w = noun(rng)
            tests.append(f"def test_{name}_strips():\n    assert {mod}.{name}('  {w.upper()} ') == '{w}'\n")
        else:
            funcs.append(f"def {name}(d, key):\n    return d.get(key, {a})\n")
            tests.append(f"def test_{name}_default():\n    assert {mod}.{name}({{}}, 'k') == {a}\n")
    return "\n\n".join(funcs), "\n\n".join(tests)


# Faults for a pytest run: (code of the function under test, the failing test body), both
# parametrised by fresh names and numbers.
def _fault(rng: random.Random, mod: str) -> tuple[str, str, str]:
    fn = snake(rng, 2)
    cls = pascal(snake(rng, 2))
    x, y = rng.randint(2, 500), rng.randint(2, 500)
    word = noun(rng)
    kinds = [
        ("assert_eq_int", f"def {fn}(qty, unit):\n    return qty * unit - 1\n", f"def test_{fn}_total():\n    assert {mod}.{fn}({x}, {y}) == {x * y}\n"),
        ("assert_eq_str", f"def {fn}(name):\n    return 'Hello, ' + name.title() + '.'\n", f"def test_{fn}_greets():\n    assert {mod}.{fn}('{word} {noun(rng)}') == 'Hello, {word.title()}!'\n"),
        ("assert_dict", f"def {fn}(k, v):\n    return {{'id': k, '{word}': v, 'status': 'pending'}}\n", f"def test_{fn}_shape():\n    assert {mod}.{fn}({x}, {y}) == {{'id': {x}, '{word}': {y}, 'status': 'active'}}\n"),
        ("assert_list", f"def {fn}(xs):\n    return [v for v in xs if v % 2]\n", f"def test_{fn}_evens():\n    assert {mod}.{fn}(list(range({x % 12 + 3}))) == [v for v in range({x % 12 + 3}) if v % 2 == 0]\n"),
        ("approx", f"def {fn}(amount, rate):\n    return round(amount * rate, 1)\n", f"import pytest\n\ndef test_{fn}_rate():\n    assert {mod}.{fn}({x}.37, 0.{y:03d}) == pytest.approx({x}.37 * 0.{y:03d}, rel=1e-6)\n"),
        ("raises_missing", f"def {fn}(value):\n    if value < 0:\n        return 0\n    return value\n", f"import pytest\n\ndef test_{fn}_rejects_negative():\n    with pytest.raises(ValueError):\n        {mod}.{fn}(-{x})\n"),
        ("keyerror", f"def {fn}(cfg):\n    return cfg['{word}_url'].rstrip('/')\n", f"def test_{fn}_defaults():\n    assert {mod}.{fn}({{'{word}': 'x'}}) == 'x'\n"),
        ("typeerror", f"def {fn}(items, sep):\n    return sep.join(items)\n", f"def test_{fn}_joins():\n    assert {mod}.{fn}([{x}, {y}], ',') == '{x},{y}'\n"),
        ("attributeerror", f"class {cls}:\n    def __init__(self, n):\n        self.n = n\n\ndef {fn}(n):\n    return {cls}(n)\n", f"def test_{fn}_total():\n    assert {mod}.{fn}({x}).total == {x}\n"),
        ("zerodivision", f"def {fn}(values):\n    return sum(values) / len(values)\n", f"def test_{fn}_empty():\n    assert {mod}.{fn}([]) == 0\n"),
        ("none_attr", f"import re\n\ndef {fn}(s):\n    return re.match(r'(\\d+)-(\\w+)', s).group(2)\n", f"def test_{fn}_parses():\n    assert {mod}.{fn}('{word}-{x}') == '{word}'\n"),
        ("fixture_error", f"def {fn}(path):\n    return open(path).read()\n", f"import pytest\n\n@pytest.fixture\ndef {word}_file(tmp_path):\n    return open(tmp_path / 'missing' / '{word}.json')\n\ndef test_{fn}_reads({word}_file):\n    assert {word}_file\n"),
        ("parametrize", f"def {fn}(n):\n    return n * n if n < {x % 7 + 3} else n * 2\n", f"import pytest\n\n@pytest.mark.parametrize('n', {list(range(1, x % 7 + 6))})\ndef test_{fn}_square(n):\n    assert {mod}.{fn}(n) == n ** 2\n"),
        ("set_compare", f"def {fn}(tags):\n    return {{t.lower() for t in tags}}\n", f"def test_{fn}_tags():\n    assert {mod}.{fn}(['{word.upper()}', 'B{x}']) == {{'{word}', 'b{x}', 'c{y}'}}\n"),
        ("long_str", f"def {fn}(rows):\n    return '\\n'.join(f'{{k}}={{v}}' for k, v in rows)\n", f"def test_{fn}_render():\n    rows = [('{word}', {x}), ('{noun(rng)}', {y}), ('limit', {x + y})]\n    assert {mod}.{fn}(rows) == '{word}={x}\\n{noun(rng)}={y}\\nlimit={x + y + 1}'\n"),
        ("timeout", f"import time\n\ndef {fn}(n):\n    while True:\n        time.sleep(0.05)\n", f"import pytest\n\n@pytest.mark.timeout({rng.choice([1, 2])})\ndef test_{fn}_returns():\n    assert {mod}.{fn}({x}) is not None\n"),
        ("recursion", f"def {fn}(n):\n    return {fn}(n - 1) + 1\n", f"def test_{fn}_depth():\n    assert {mod}.{fn}({x}) == {x}\n"),
        ("warning_error", f"import warnings\n\ndef {fn}(v):\n    warnings.warn('{fn} is deprecated, use {fn}_v2', DeprecationWarning)\n    return v\n", f"import pytest\n\n@pytest.mark.filterwarnings('error')\ndef test_{fn}():\n    assert {mod}.{fn}({x}) == {x}\n"),
        ("mock_called", f"def {fn}(client, items):\n    for i in items[1:]:\n        client.send(i)\n", f"from unittest import mock\n\ndef test_{fn}_sends_all():\n    c = mock.Mock()\n    {mod}.{fn}(c, [{x}, {y}])\n    c.send.assert_called_with({x})\n"),
        ("float_cmp", f"def {fn}(a, b):\n    return a / b\n", f"def test_{fn}_ratio():\n    assert {mod}.{fn}({x}, {y}) == {round(x / y, 2)}\n"),
    ]
    return rng.choice(kinds)


def pytest_failure(rng: random.Random) -> Capture | None:
    pkg = _pkg(rng)
    mods = distinct(rng, lambda r: rng.choice([noun(r), snake(r, 2)]), rng.randint(1, 4))
    files = {f"src/{pkg}/__init__.py": "", "pyproject.toml": "[tool.pytest.ini_options]\npythonpath = ['src']\n"}
    nfail = rng.choice([1, 1, 1, 2, 2, 3])
    faults = []
    for i, mod in enumerate(mods):
        code, tests = _passing_tests(rng, mod, rng.randint(1, 8))
        head = f"from {pkg} import {mod}\n\n"
        if i < nfail:
            kind, fcode, ftest = _fault(rng, mod)
            faults.append(kind)
            code += "\n\n" + fcode
            tests += "\n\n" + ftest
        files[f"src/{pkg}/{mod}.py"] = code + "\n"
        files[f"tests/test_{mod}.py"] = head + tests + "\n"
    for j in range(nfail - len(mods)):
        mod = mods[0]
        kind, fcode, ftest = _fault(rng, mod)
        faults.append(kind)
        files[f"src/{pkg}/{mod}.py"] += "\n\n" + fcode
        files[f"tests/test_{mod}_extra{j}.py"] = f"from {pkg} import {mod}\n\n" + ftest
    flags = rng.choice(["", "-q", "-v", "-ra", "-q --tb=short", "--tb=short", "-v --tb=line", "-x", "-q --tb=native", "--maxfail=1 -q", "-rA --tb=short", "-p no:cacheprovider"])
    cmd = f"pytest {flags}".strip()
    if rng.random() < 0.25:
        cmd = "python -m " + cmd
    p = Project(pkg.replace("_", "-"))
    try:
        p.write(files)
        rc, out = p.run(f"{PY} -m pytest {flags}", timeout=90)
    finally:
        p.close()
    if rc not in (1, 2):
        return None
    return Capture("python", "python", "pytest", "test", "+".join(faults), cmd, out, rc, _VERS.get("pytest", ""))


def pytest_collection_error_own_module(rng: random.Random) -> Capture | None:
    """One test module cannot import the project's own code while the others run: test."""
    pkg = _pkg(rng)
    mod, other = distinct(rng, lambda r: noun(r), 2)
    code, tests = _passing_tests(rng, mod, rng.randint(3, 9))
    bad = rng.choice([
        (f"from {pkg}.{other} import {snake(rng, 2)}\n", "ImportError"),
        (f"from {pkg} import {mod}\nfrom {pkg}.{mod} import {pascal(snake(rng, 2))}\n", "ImportError"),
        (f"from {pkg} import {mod}\n\ndef test_x(:\n    pass\n", "SyntaxError"),
        (f"import {pkg}.{other}_helpers as h\n", "ModuleNotFound"),
    ])
    files = {
        f"src/{pkg}/__init__.py": "",
        f"src/{pkg}/{mod}.py": code,
        f"tests/test_{mod}.py": f"from {pkg} import {mod}\n\n" + tests,
        f"tests/test_{other}.py": bad[0] + "\n\ndef test_placeholder():\n    assert True\n",
        "pyproject.toml": "[tool.pytest.ini_options]\npythonpath = ['src']\n",
    }
    flags = rng.choice(["", "-q", "-v", "-ra"])
    p = Project(pkg)
    try:
        p.write(files)
        rc, out = p.run(f"{PY} -m pytest {flags}")
    finally:
        p.close()
    if rc == 0:
        return None
    return Capture("python", "python", "pytest", "test", f"collection_{bad[1]}", f"pytest {flags}".strip(), out, rc, _VERS.get("pytest", ""))


def unittest_failure(rng: random.Random) -> Capture | None:
    pkg = _pkg(rng)
    mod = noun(rng)
    cls = pascal(snake(rng, 2))
    fn = snake(rng, 2)
    x, y = rng.randint(2, 99), rng.randint(2, 99)
    kind = rng.choice(["equal", "true", "raises", "error", "dict", "count"])
    body = {
        "equal": (f"def {fn}(a, b):\n    return a - b\n", f"self.assertEqual({mod}.{fn}({x}, {y}), {x + y})"),
        "true": (f"def {fn}(s):\n    return s.isdigit()\n", f"self.assertTrue({mod}.{fn}('{x}.{y}'))"),
        "raises": (f"def {fn}(v):\n    return int(v or 0)\n", f"with self.assertRaises(ValueError):\n            {mod}.{fn}(None)"),
        "error": (f"def {fn}(d):\n    return d['{noun(rng)}']\n", f"self.assertIsNotNone({mod}.{fn}({{}}))"),
        "dict": (f"def {fn}():\n    return {{'a': {x}, 'b': {y}}}\n", f"self.assertDictEqual({mod}.{fn}(), {{'a': {x}, 'b': {y + 1}}})"),
        "count": (f"def {fn}(xs):\n    return list(set(xs))\n", f"self.assertCountEqual({mod}.{fn}([{x}, {x}, {y}]), [{x}, {x}, {y}])"),
    }[kind]
    ok_tests = "\n".join(f"    def test_{snake(rng, 2)}(self):\n        self.assertEqual({i} + 1, {i + 1})\n" for i in range(rng.randint(2, 9)))
    files = {
        f"{pkg}/__init__.py": "",
        f"{pkg}/{mod}.py": body[0],
        "tests/__init__.py": "",
        f"tests/test_{mod}.py": f"import unittest\n\nfrom {pkg} import {mod}\n\n\nclass {cls}Test(unittest.TestCase):\n{ok_tests}\n    def test_{fn}(self):\n        {body[1]}\n\n\nif __name__ == '__main__':\n    unittest.main()\n",
    }
    verbose = rng.choice(["", " -v"])
    p = Project(pkg)
    try:
        p.write(files)
        rc, out = p.run(f"{PY} -m unittest discover -s tests -t .{verbose}")
    finally:
        p.close()
    if rc == 0:
        return None
    return Capture("python", "python", "unittest", "test", f"unittest_{kind}", f"python -m unittest discover -s tests{verbose}", out, rc, _VERS["python"])


# ---------------------------------------------------------------- dependency

# Real requirement sets that cannot be satisfied or cannot be found on PyPI.
_CONFLICTS = [
    ["requests==2.31.0", "urllib3<1.21"],
    ["flask==3.0.0", "werkzeug<2.0"],
    ["pandas==2.2.2", "numpy<1.20"],
    ["django==5.0.6", "asgiref<3.0"],
    ["sqlalchemy==2.0.30", "typing-extensions<4.0"],
    ["jinja2==3.1.4", "markupsafe<2.0"],
    ["pydantic==2.7.1", "pydantic-core==2.0.0"],
    ["celery==5.4.0", "kombu<5.0"],
    ["fastapi==0.111.0", "starlette<0.30"],
    ["boto3==1.34.100", "botocore<1.30"],
    ["black==24.4.2", "click<8.0"],
    ["httpx==0.27.0", "httpcore<0.15"],
    ["aiohttp==3.9.5", "yarl<1.0"],
    ["scikit-learn==1.5.0", "scipy<1.3"],
    ["matplotlib==3.9.0", "pyparsing<2.0"],
    ["pytest==8.2.0", "pluggy<1.0"],
    ["requests==2.32.3", "idna<2.5"],
    ["tox==4.15.0", "virtualenv<20.0"],
]
_MISSING = [
    "requets==2.31.0", "pandsa>=2.0", "djangorestframework-jwt-ext==1.0", "flask-sqlalchemy==9.9.9", "numpy==1.99.0",
    "torchvison==0.18.0", "python-dateutils==2.9", "beautifulsoup==4.12", "opencv==4.9.0", "scikitlearn==1.4",
    "pyyaml==7.0", "requests==3.0.0", "pytest==99.0", "sklearn-utils==0.0.1", "boto4==1.0", "pillow==12.99.1",
    "uvicorn[standard]==0.0.9", "Jinja==3.1", "typing_extensions==9.0.0", "rich==0.0.0",
]


def pip_conflict(rng: random.Random) -> Capture | None:
    reqs = list(rng.choice(_CONFLICTS))
    extra = rng.sample(["six==1.16.0", "attrs==23.2.0", "certifi", "packaging>=23", "python-dotenv==1.0.1", "tomli==2.0.1", "colorama"], rng.randint(0, 3))
    reqs = extra + reqs
    rng.shuffle(reqs)
    via = rng.choice(["file", "args", "uv"])
    p = Project(_pkg(rng))
    try:
        if via == "file":
            p.write({"requirements.txt": "\n".join(reqs) + "\n"})
            disp = "pip install -r requirements.txt"
            rc, out = p.run(f"{PIP} install --disable-pip-version-check --dry-run -r requirements.txt", timeout=240)
        elif via == "args":
            disp = "pip install " + " ".join(f'"{r}"' if "<" in r or ">" in r else r for r in reqs)
            rc, out = p.run(f"{PIP} install --disable-pip-version-check --dry-run " + " ".join(f"'{r}'" for r in reqs), timeout=240)
        else:
            p.write({"requirements.txt": "\n".join(reqs) + "\n"})
            disp = "uv pip install -r requirements.txt"
            rc, out = p.run(f"{PY_VENV}/bin/uv pip install --dry-run --python {PY_BARE}/bin/python -r requirements.txt", timeout=240)
    finally:
        p.close()
    out = out.replace("Would install", "Installing")
    if rc == 0:
        return None
    return Capture("python", "python", "uv" if via == "uv" else "pip", "dependency", "resolution_conflict", disp, out, rc, _VERS["uv" if via == "uv" else "pip"])


def pip_missing(rng: random.Random) -> Capture | None:
    reqs = rng.sample(["requests==2.31.0", "six==1.16.0", "attrs==23.2.0", "click==8.1.7"], rng.randint(0, 2)) + [rng.choice(_MISSING)]
    uv = rng.random() < 0.25
    p = Project(_pkg(rng))
    try:
        p.write({"requirements.txt": "\n".join(reqs) + "\n"})
        if uv:
            rc, out = p.run(f"{PY_VENV}/bin/uv pip install --dry-run --python {PY_BARE}/bin/python -r requirements.txt", timeout=240)
        else:
            rc, out = p.run(f"{PIP} install --disable-pip-version-check --dry-run -r requirements.txt", timeout=240)
    finally:
        p.close()
    if rc == 0:
        return None
    tool = "uv" if uv else "pip"
    return Capture("python", "python", tool, "dependency", "no_matching_distribution", f"{'uv ' if uv else ''}pip install -r requirements.txt", out, rc, _VERS[tool])


def python_requires(rng: random.Random) -> Capture | None:
    pkg = rng.choice(["numpy==2.3.0", "django==6.0", "pandas==3.0.0", "scipy==1.16.0", "ruff==0.0.1; python_version<'3'"])
    p = Project(_pkg(rng))
    try:
        p.write({"requirements.txt": pkg + "\n"})
        rc, out = p.run(f"{PIP} install --disable-pip-version-check --dry-run -r requirements.txt", timeout=240)
    finally:
        p.close()
    if rc == 0:
        return None
    return Capture("python", "python", "pip", "dependency", "python_requires", "pip install -r requirements.txt", out, rc, _VERS["pip"])


def hash_mismatch(rng: random.Random) -> Capture | None:
    name, ver = rng.choice([("six", "1.16.0"), ("idna", "3.7"), ("certifi", "2024.2.2"), ("attrs", "23.2.0"), ("packaging", "24.0"), ("tomli", "2.0.1")])
    bogus = "".join(rng.choice("0123456789abcdef") for _ in range(64))
    p = Project(_pkg(rng))
    try:
        p.write({"requirements.lock": f"{name}=={ver} \\\n    --hash=sha256:{bogus}\n"})
        rc, out = p.run(f"{PIP} install --disable-pip-version-check --no-deps --require-hashes -r requirements.lock --target {p.root}/t", timeout=240)
    finally:
        p.close()
    if rc == 0:
        return None
    return Capture("python", "python", "pip", "dependency", "hash_mismatch", "pip install --require-hashes -r requirements.lock", out, rc, _VERS["pip"])


def third_party_import(rng: random.Random) -> Capture | None:
    """A test run whose imports need a third-party package the environment lacks: dependency."""
    pkg = _pkg(rng)
    mod = noun(rng)
    missing = rng.choice(["requests", "yaml", "numpy", "pandas", "boto3", "httpx", "pydantic", "sqlalchemy", "redis", "jwt", "dateutil", "toml", "attr", "orjson", "freezegun", "responses", "hypothesis", "pytest_mock", "factory", "faker"])
    where = rng.choice(["src", "conftest", "test"])
    imp = rng.choice([f"import {missing}\n", f"from {missing} import {rng.choice(['Session', 'load', 'client', 'types', 'utils'])}\n"])
    files = {f"src/{pkg}/__init__.py": "", f"src/{pkg}/{mod}.py": (imp if where == "src" else "") + f"\n\ndef {snake(rng, 2)}():\n    return 1\n",
             f"tests/test_{mod}.py": (imp if where == "test" else "") + f"from {pkg} import {mod}\n\n\ndef test_{snake(rng, 2)}():\n    assert True\n",
             "pyproject.toml": "[tool.pytest.ini_options]\npythonpath = ['src']\n"}
    if where == "conftest":
        files["tests/conftest.py"] = imp
    cmd = rng.choice(["pytest", "pytest -q", "python -m pytest tests/"])
    p = Project(pkg)
    try:
        p.write(files)
        rc, out = p.run(f"{PY} -m pytest " + cmd.split("pytest", 1)[1])
    finally:
        p.close()
    if rc == 0:
        return None
    return Capture("python", "python", "pytest", "dependency", f"third_party_import_{where}", cmd, out, rc, _VERS["pytest"])


def pip_check(rng: random.Random) -> Capture | None:
    """Installed set is inconsistent: pip check names the broken requirement."""
    a, b = rng.choice([("requests==2.31.0", "urllib3==1.20"), ("flask==3.0.3", "werkzeug==2.2.3"), ("jinja2==3.1.4", "markupsafe==1.1.1"), ("black==24.4.2", "click==7.1.2")])
    p = Project(_pkg(rng))
    try:
        rc0, _ = p.run(f"{PY} -m venv v && v/bin/pip install -q --disable-pip-version-check {a} && v/bin/pip install -q --disable-pip-version-check --no-deps {b}", timeout=300)
        if rc0:
            return None
        rc, out = p.run("v/bin/pip check")
    finally:
        p.close()
    if rc == 0:
        return None
    return Capture("python", "python", "pip", "dependency", "pip_check", "pip check", out, rc, _VERS["pip"])


# ---------------------------------------------------------------- build

def compileall_syntax(rng: random.Random) -> Capture | None:
    pkg = _pkg(rng)
    fn = snake(rng, 2)
    bad = rng.choice([
        f"def {fn}(a, b)\n    return a + b\n",
        f"def {fn}(items):\n    return [x for x in items if x >]\n",
        f"def {fn}(x):\n  if x:\n        return 1\n    return 2\n",
        f"def {fn}(d):\n    return {{'a': 1, 'b': 2\n",
        f"def {fn}(s):\n    print f'{{s}}'\n",
        f"class {pascal(fn)}:\n    def run(self):\n    pass\n",
        f"def {fn}(x):\n    match x:\n        case 1 => 'one'\n",
        f"async def {fn}():\n    await = 3\n",
    ])
    files = {f"src/{pkg}/__init__.py": "", f"src/{pkg}/{noun(rng)}.py": "X = 1\n", f"src/{pkg}/{fn.split('_')[1]}.py": "import os\n\n\n" + bad}
    cmd = rng.choice(["python -m compileall -q src", "python -m compileall src"])
    p = Project(pkg)
    try:
        p.write(files)
        rc, out = p.run(f"{PY} -m " + cmd.split("-m ", 1)[1])
    finally:
        p.close()
    if rc == 0:
        return None
    return Capture("python", "python", "compileall", "build", "syntax_error", cmd, out, rc, _VERS["python"])


def packaging_error(rng: random.Random) -> Capture | None:
    """`pip install .` / `python -m build` of the project itself fails in its build backend."""
    pkg = _pkg(rng)
    ver = f"{rng.randint(0, 3)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}"
    kind = rng.choice(["bad_name", "bad_version", "missing_pkg_dir", "bad_toml", "setup_py_error", "bad_license", "c_ext"])
    files = {f"src/{pkg}/__init__.py": f"__version__ = '{ver}'\n"}
    build_sys = "[build-system]\nrequires = ['setuptools>=61']\nbuild-backend = 'setuptools.build_meta'\n\n"
    if kind == "bad_name":
        files["pyproject.toml"] = build_sys + f"[project]\nname = '{pkg} {noun(rng)}'\nversion = '{ver}'\n"
    elif kind == "bad_version":
        files["pyproject.toml"] = build_sys + f"[project]\nname = '{pkg}'\nversion = '{ver}-{noun(rng)}.final!'\n"
    elif kind == "missing_pkg_dir":
        files["pyproject.toml"] = build_sys + f"[project]\nname = '{pkg}'\nversion = '{ver}'\n\n[tool.setuptools]\npackages = ['{pkg}', '{pkg}.{noun(rng)}']\npackage-dir = {{'' = 'src'}}\n"
    elif kind == "bad_toml":
        files["pyproject.toml"] = build_sys + f"[project]\nname = '{pkg}'\nversion = '{ver}'\ndependencies = [\n  'requests>=2',\n  'click>=8'\n\n[tool.{noun(rng)}]\nx = 1\n"
    elif kind == "setup_py_error":
        files["setup.py"] = f"from setuptools import setup\nimport {pkg}_version\n\nsetup(name='{pkg}', version={pkg}_version.VERSION)\n"
        files["pyproject.toml"] = build_sys
    elif kind == "bad_license":
        files["pyproject.toml"] = build_sys + f"[project]\nname = '{pkg}'\nversion = '{ver}'\nlicense = {{file = 'LICENSE-{noun(rng).upper()}'}}\n"
    else:
        files["pyproject.toml"] = build_sys + f"[project]\nname = '{pkg}'\nversion = '{ver}'\n"
        fn = snake(rng, 2)
        files["setup.py"] = f"from setuptools import setup, Extension\nsetup(ext_modules=[Extension('{pkg}._{fn}', ['src/{pkg}/_{fn}.c'])])\n"
        files[f"src/{pkg}/_{fn}.c"] = rng.choice([
            f"#include <Python.h>\nstatic PyObject* {fn}(PyObject* self, PyObject* args) {{\n    int n = PyLong_AsLong(args)\n    return PyLong_FromLong(n * 2);\n}}\n",
            f"#include <Python.h>\n#include \"{noun(rng)}_impl.h\"\n",
            f"#include <Python.h>\nstatic PyObject* {fn}(PyObject* self, PyObject* args) {{\n    return PyLong_FromLong({noun(rng)}_count);\n}}\n",
        ])
    cmd = rng.choice(["pip install .", "pip install -e .", "python -m pip install --no-build-isolation .", "pip wheel . -w dist"])
    p = Project(pkg)
    try:
        p.write(files)
        rc, out = p.run(f"{PIP} install --disable-pip-version-check --target {p.root}/_t .", timeout=240)
    finally:
        p.close()
    if rc == 0:
        return None
    out = out.replace(" --target {WS}/_t", "")
    return Capture("python", "python", "pip", "build", f"packaging_{kind}", cmd, out, rc, _VERS["pip"])


# ---------------------------------------------------------------- lint

def _lintable(rng: random.Random) -> dict[str, str]:
    """A module with a random handful of style and type faults."""
    fn, fn2 = distinct(rng, lambda r: snake(r, 2), 2)
    cls = pascal(snake(rng, 2))
    var = noun(rng)
    snippets = [
        "import os\nimport sys\nimport json\n",
        "from typing import List, Dict, Optional\n",
        f"def {fn}({var}, items=[]):\n    items.append({var})\n    return items\n",
        f"def {fn2}(x):\n    try:\n        return int(x)\n    except:\n        return None\n",
        f"class {cls}(object):\n    def __init__(self, {var}):\n        self.{var} = {var}\n    def get(self, key: str) -> int:\n        return self.{var}.get(key, 'none')\n",
        f"def {snake(rng, 2)}(a,b):\n    l = a+b\n    if l == None:\n        return\n    return l\n",
        f"def {snake(rng, 2)}({var}: Dict[str, int]) -> List[str]:\n    result = [k for k in {var} if {var}[k] > {rng.randint(1, 99)}]\n    return result.sort()\n",
        f"{var.upper()}_LIMIT = {rng.randint(10, 999)}  # a very long comment that keeps going well past the line length limit configured for this project\n",
        f"def {snake(rng, 2)}(path):\n    f = open(path)\n    data = f.read()\n    unused = {rng.randint(1, 9)}\n    return eval(data)\n",
        f"def {snake(rng, 2)}(n: int) -> str:\n    return n * {rng.randint(2, 9)}\n",
        f"def {snake(rng, 2)}(values):\n    for i in range(len(values)):\n        print(values[i])\n",
        f"lambda_{var} = lambda x: x*{rng.randint(2, 9)}\n",
        f"def {snake(rng, 2)}(value: Optional[str]) -> int:\n    return len(value)\n",
        "x = {'a':1,'b' : 2 , 'c':3}\ny=[1,2,3 ]\n",
        f"def {snake(rng, 2)}():\n    global {var}\n    {var} = 1\n    return '%s' % {var}\n",
        f"if True :\n    {var}_flag=1\n",
    ]
    body = "".join(s + "\n\n" for s in rng.sample(snippets, rng.randint(3, 8)))
    return {f"{noun(rng)}_{rng.choice(['utils', 'service', 'models', 'views', 'api', 'cli'])}.py": body}


def lint_run(rng: random.Random) -> Capture | None:
    pkg = _pkg(rng)
    files: dict[str, str] = {}
    for _ in range(rng.randint(1, 3)):
        files.update({f"src/{pkg}/{k}": v for k, v in _lintable(rng).items()})
    files[f"src/{pkg}/__init__.py"] = ""
    tool = rng.choice(["ruff", "ruff", "flake8", "pylint", "black", "isort", "mypy", "mypy", "ruff-format"])
    cmds = {
        "ruff": (rng.choice(["ruff check .", "ruff check src", "ruff check --output-format=full .", "ruff check --select E,F,W,B,UP,SIM,I ."]), None),
        "ruff-format": ("ruff format --check --diff .", None),
        "flake8": (rng.choice(["flake8", "flake8 src", "flake8 --max-line-length 100 src"]), None),
        "pylint": (f"pylint src/{pkg}", None),
        "black": (rng.choice(["black --check .", "black --check --diff src"]), None),
        "isort": (rng.choice(["isort --check-only --diff .", "isort --check-only src"]), None),
        "mypy": (rng.choice(["mypy src", f"mypy --strict src/{pkg}", "mypy ."]), None),
    }
    cmd = cmds[tool][0]
    p = Project(pkg)
    try:
        p.write(files)
        rc, out = p.run(f"{PY_VENV}/bin/{cmd}", timeout=180)
    finally:
        p.close()
    if rc == 0:
        return None
    name = "ruff" if tool == "ruff-format" else tool
    return Capture("python", "python", name, "lint", f"lint_{tool}", cmd, out.replace("{WS}/.venv/bin/", ""), rc, _VERS.get(name, ""))


def _versions() -> dict[str, str]:
    b = f"{PY_VENV}/bin"
    return {
        "python": version_of(f"{PY} --version"),
        "pip": version_of(f"{PIP} --version").split(" from ")[0],
        "uv": version_of(f"{b}/uv --version"),
        "pytest": version_of(f"{PY} -m pytest --version"),
        "ruff": version_of(f"{b}/ruff --version"),
        "flake8": version_of(f"{b}/flake8 --version"),
        "pylint": version_of(f"{b}/pylint --version"),
        "black": version_of(f"{b}/black --version"),
        "isort": "isort " + version_of(f"{b}/python -c 'import isort; print(isort.__version__)'"),
        "mypy": version_of(f"{b}/mypy --version"),
    }


_VERS: dict[str, str] = {}

MAKERS = [
    pytest_failure, pytest_failure, pytest_failure, pytest_failure, pytest_failure, unittest_failure, unittest_failure,
    pytest_collection_error_own_module,
    pip_conflict, pip_missing, python_requires, hash_mismatch, third_party_import, third_party_import, pip_check,
    compileall_syntax, compileall_syntax, packaging_error, packaging_error, packaging_error,
    lint_run, lint_run, lint_run, lint_run, lint_run, lint_run,
]

if __name__ == "__main__":
    _VERS.update(_versions())
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 400
    main_loop("python", MAKERS, n, seed=1101, only=sys.argv[2] if len(sys.argv) > 2 else None)
