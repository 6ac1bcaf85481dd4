"""PHP failures: PHPUnit, `php -l`, PHP_CodeSniffer, Composer, run here from Debian 12's packages.

    python3 fam_php.py [N] [maker-filter]

Composer resolves against repositories declared in the throw-away composer.json (packagist
disabled), so its solver fails for real on version conflicts, platform requirements and stale
lock files without reaching packagist; an unreachable packagist is captured as it fails here.
"""

from __future__ import annotations

import json
import random
import sys

from common import Capture, Project, main_loop, noun, pascal, snake, version_of

_V = {}


def _v(tool: str) -> str:
    if tool not in _V:
        _V[tool] = version_of({"phpunit": "phpunit --version", "php": "php --version", "phpcs": "phpcs --version", "composer": "composer --version 2>/dev/null"}[tool])
    return _V[tool]


def _ns(rng: random.Random) -> tuple[str, str]:
    return pascal(noun(rng)), pascal(snake(rng, 2))


def _class(ns: str, cls: str, method: str, body: str) -> str:
    return f"<?php\n\ndeclare(strict_types=1);\n\nnamespace App\\{ns};\n\nfinal class {cls}\n{{\n    public function {method}(array $items): {body}\n}}\n"


def phpunit_failure(rng: random.Random) -> Capture | None:
    ns, cls = _ns(rng)
    files = {}
    tests = []
    kinds = []
    for i in range(rng.randint(1, 3)):
        m = snake(rng, 2)
        mc = m.split("_")[0] + "".join(w.capitalize() for w in m.split("_")[1:])
        x, y = rng.randint(2, 300), rng.randint(2, 300)
        kind = rng.choice(["equals", "same_array", "true", "count", "exception", "type_error", "null", "string_contains"])
        kinds.append(kind)
        impl, assertion = {
            "equals": ("int\n    {\n        return array_sum($items) + 1;\n    }", f"$this->assertEquals({x + y}, (new {cls}())->{mc}([{x}, {y}]));"),
            "same_array": (f"array\n    {{\n        return array_values(array_filter($items, fn($v) => $v > {x % 7}));\n    }}", f"$this->assertSame([{x % 7}, {y}], (new {cls}())->{mc}([{x % 7}, {y}]));"),
            "true": (f"bool\n    {{\n        return count($items) > {x};\n    }}", f"$this->assertTrue((new {cls}())->{mc}([1, 2]));"),
            "count": ("array\n    {\n        return array_unique($items);\n    }", f"$this->assertCount(3, (new {cls}())->{mc}(['{noun(rng)}', '{noun(rng)}', '{noun(rng)}', 'x']));"),
            "exception": ("int\n    {\n        return count($items);\n    }", f"$this->expectException(\\InvalidArgumentException::class);\n        (new {cls}())->{mc}([]);"),
            "type_error": (f"int\n    {{\n        return $items['{noun(rng)}'] * 2;\n    }}", f"$this->assertSame(4, (new {cls}())->{mc}(['x' => 2]));"),
            "null": (f"?string\n    {{\n        return $items[0] ?? '{noun(rng)}';\n    }}", f"$this->assertNull((new {cls}())->{mc}([]));"),
            "string_contains": ("string\n    {\n        return implode(',', $items);\n    }", f"$this->assertStringContainsString('{noun(rng)};', (new {cls}())->{mc}(['{noun(rng)}']));"),
        }[kind]
        files[f"src/{ns}/{cls}{i}.php"] = _class(ns, f"{cls}{i}", mc, impl)
        tests.append((f"{cls}{i}", mc, assertion.replace(f"new {cls}()", f"new {cls}{i}()")))
    test = f"<?php\n\ndeclare(strict_types=1);\n\nnamespace App\\Tests\\{ns};\n\nuse PHPUnit\\Framework\\TestCase;\n" + "".join(f"use App\\{ns}\\{c};\n" for c, _, _ in tests)
    test += f"\nfinal class {cls}Test extends TestCase\n{{\n"
    for c, m, a in tests:
        test += f"    public function test{m[0].upper() + m[1:]}(): void\n    {{\n        {a}\n    }}\n\n    public function test{m[0].upper() + m[1:]}Passes(): void\n    {{\n        $this->assertTrue(true);\n    }}\n\n"
    test += "}\n"
    files[f"tests/{ns}/{cls}Test.php"] = test
    files["bootstrap.php"] = "<?php\nspl_autoload_register(function ($c) {\n    $p = __DIR__ . '/src/' . str_replace('\\\\', '/', substr($c, 4)) . '.php';\n    if (is_file($p)) { require $p; }\n});\n"
    files["phpunit.xml"] = '<?xml version="1.0"?>\n<phpunit bootstrap="bootstrap.php" colors="false">\n  <testsuites><testsuite name="unit"><directory>tests</directory></testsuite></testsuites>\n</phpunit>\n'
    p = Project(noun(rng)).write(files)
    try:
        cmd = rng.choice(["vendor/bin/phpunit", "./vendor/bin/phpunit --colors=never", "php vendor/bin/phpunit -c phpunit.xml", "vendor/bin/phpunit --testdox" if rng.random() < 0.3 else "composer test"])
        rc, out = p.run("phpunit" + (" --testdox" if "testdox" in cmd else ""), timeout=120)
        if rc == 0 or ("FAILURES!" not in out and "ERRORS!" not in out and "✘" not in out):
            return None
        return Capture("php", "php", "phpunit", "test", "phpunit_" + "+".join(sorted(set(kinds))), cmd, out, rc, _v("phpunit"))
    finally:
        p.close()


def php_lint(rng: random.Random) -> Capture | None:
    ns, cls = _ns(rng)
    m = snake(rng, 2)
    kind = rng.choice(["missing_semicolon", "unclosed_brace", "bad_token", "fatal_redeclare", "abstract_instantiation", "return_type"])
    src = {
        "missing_semicolon": f"<?php\nnamespace App\\{ns};\nclass {cls}\n{{\n    public function {m}($a)\n    {{\n        $x = $a * 2\n        return $x;\n    }}\n}}\n",
        "unclosed_brace": f"<?php\nnamespace App\\{ns};\nclass {cls}\n{{\n    public function {m}($a)\n    {{\n        if ($a) {{\n            return 1;\n    }}\n}}\n",
        "bad_token": f"<?php\nnamespace App\\{ns};\nclass {cls}\n{{\n    public function {m}(array $a): int\n    {{\n        return count($a) +;\n    }}\n}}\n",
        "fatal_redeclare": f"<?php\nnamespace App\\{ns};\nclass {cls}\n{{\n    public function {m}() {{ return 1; }}\n    public function {m}() {{ return 2; }}\n}}\n",
        "abstract_instantiation": f"<?php\nnamespace App\\{ns};\ninterface I{cls} {{ public function {m}(): int; }}\nclass {cls} implements I{cls}\n{{\n}}\n",
        "return_type": f"<?php\nnamespace App\\{ns};\nclass {cls}\n{{\n    public function __construct(): int {{ }}\n}}\n",
    }[kind]
    p = Project(noun(rng)).write({f"src/{ns}/{cls}.php": src, f"src/{ns}/Ok.php": "<?php\nnamespace App;\nclass Ok {}\n"})
    try:
        if kind == "abstract_instantiation":
            cmd = f"php src/{ns}/{cls}.php"
        else:
            cmd = rng.choice([f"php -l src/{ns}/{cls}.php", "find src -name '*.php' -print0 | xargs -0 -n1 php -l"])
        rc, out = p.run(cmd)
        if rc == 0 or ("error" not in out.lower()):
            return None
        return Capture("php", "php", "php", "build", f"php_{kind}", cmd, out, rc, _v("php"))
    finally:
        p.close()


def phpcs_failure(rng: random.Random) -> Capture | None:
    ns, cls = _ns(rng)
    m = snake(rng, 2)
    src = f"<?php\nnamespace App\\{ns};\n\nclass {cls}\n{{\n    public function {m}($a,$b)\n    {{\n        if($a==$b){{ return true; }}\n        $very_long_variable_name_for_{m} = array('{noun(rng)}' => {rng.randint(1, 99)}, '{noun(rng)}' => {rng.randint(1, 99)}, '{noun(rng)}' => {rng.randint(1, 99)}, '{noun(rng)}' => 1);\n        return false ;\n    }}\n}}\n"
    std = rng.choice(["PSR12", "PSR2", "PEAR", "Squiz"])
    p = Project(noun(rng)).write({f"src/{ns}/{cls}.php": src})
    try:
        rep = rng.choice(["", " --report=full", " --report=summary"])
        # --basepath: paths relative to the checkout, as CI configurations usually ask for; without
        # it the summary report abbreviates the absolute path of this machine's throw-away directory.
        rc, out = p.run(f"phpcs --standard={std}{rep} --basepath=. --no-colors src")
        if rc == 0:
            return None
        cmd = rng.choice([f"vendor/bin/phpcs --standard={std}{rep} --basepath=. src", f"./vendor/bin/phpcs{rep}", "composer cs-check", f"phpcs --standard={std} --basepath=. src"])
        return Capture("php", "php", "phpcs", "lint", f"phpcs_{std}", cmd, out, rc, _v("phpcs"))
    finally:
        p.close()


def _pkg_repo(name: str, versions: list[str], require: dict | None = None) -> dict:
    return {"type": "package", "package": [{"name": name, "version": v, "dist": {"url": f"https://example.org/{name}-{v}.zip", "type": "zip"}, **({"require": require} if require else {})} for v in versions]}


def composer_failure(rng: random.Random) -> Capture | None:
    org = rng.choice(["acme", "monolog", "guzzlehttp", "symfony", "laravel", "doctrine", "league", "nesbot", "vlucas", "ramsey"])
    a = f"{org}/{noun(rng)}"
    b = f"{rng.choice(['symfony', 'psr', 'league', 'guzzlehttp'])}/{noun(rng)}"
    kind = rng.choice(["no_match", "conflict", "php_platform", "ext_missing", "lock_stale", "packagist_down", "minimum_stability"])
    repos: list[dict] = [{"packagist.org": False}]
    req: dict = {}
    lock = None
    if kind == "no_match":
        repos.append(_pkg_repo(a, ["1.0.0", "1.2.3"]))
        req[a] = f"^{rng.randint(2, 5)}.0"
    elif kind == "conflict":
        repos += [_pkg_repo(a, ["2.1.0"], {b: "^1.0"}), _pkg_repo(b, ["1.4.0", "2.0.0"])]
        req[a], req[b] = "^2.0", "^2.0"
    elif kind == "php_platform":
        repos.append(_pkg_repo(a, ["3.0.0"], {"php": ">=8.3"}))
        req[a] = "^3.0"
    elif kind == "ext_missing":
        ext = rng.choice(["ext-intl", "ext-gd", "ext-redis", "ext-sodium", "ext-imagick", "ext-bcmath"])
        req[ext] = "*"
    elif kind == "minimum_stability":
        repos.append(_pkg_repo(a, ["2.0.0-beta.1"]))
        req[a] = "^2.0"
    elif kind == "lock_stale":
        repos.append(_pkg_repo(a, ["1.0.0"]))
        req[a] = "^1.0"
        req[b] = "^1.0"
        lock = {"_readme": ["This file locks the dependencies of your project to a known state"], "content-hash": "%032x" % rng.getrandbits(128), "packages": [], "packages-dev": [], "aliases": [], "minimum-stability": "stable", "stability-flags": [], "prefer-stable": False, "prefer-lowest": False, "platform": [], "platform-dev": [], "plugin-api-version": "2.3.0"}
    else:
        repos = []
        req[a] = "^1.0"
    comp = {"name": f"{org}/{noun(rng)}-app", "type": "project", "require": req, "repositories": repos} if repos else {"name": f"{org}/{noun(rng)}-app", "require": req}
    files = {"composer.json": json.dumps(comp, indent=4) + "\n"}
    if lock:
        files["composer.lock"] = json.dumps(lock, indent=4) + "\n"
    p = Project(noun(rng)).write(files)
    try:
        cmd = rng.choice(["composer install --no-interaction --prefer-dist", "composer install --no-progress --no-interaction", "composer update --no-interaction"]) if kind != "lock_stale" else "composer install --no-interaction"
        env = {"COMPOSER_HOME": str(p.root / ".composer"), "COMPOSER_NO_INTERACTION": "1"}
        rc, out = p.run(cmd + " --no-ansi", env=env, timeout=120 if kind != "packagist_down" else 150)
        if rc == 0 or not out.strip():
            return None
        label = "infrastructure" if kind == "packagist_down" else "dependency"
        if label == "infrastructure" and "resolve host" not in out and "curl error" not in out and "network" not in out.lower():
            return None
        return Capture("php", "php", "composer", label, f"composer_{kind}", cmd, out, rc, _v("composer"))
    finally:
        p.close()


MAKERS = [phpunit_failure, phpunit_failure, php_lint, phpcs_failure, composer_failure, composer_failure]

if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 150
    main_loop("php", MAKERS, n, 5101, sys.argv[2] if len(sys.argv) > 2 else None)
