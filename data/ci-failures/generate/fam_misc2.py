"""Tools of smaller ecosystems that Debian 12 packages: Catch2 and Boost.Test (C++ tests), bats
(shell tests), Perl's prove / `perl -c`, kotlinc, scalac, Lua, and the docs/site builders Hugo and
Jekyll, and Meson's configure step.

    python3 fam_misc2.py [N] [maker-filter]
"""

from __future__ import annotations

import random
import sys

from common import WORK, Capture, Project, camel, main_loop, noun, pascal, snake, version_of

_V: dict[str, str] = {}


def _v(tool: str) -> str:
    if tool not in _V:
        _V[tool] = version_of({"g++": "g++ --version", "bats": "bats --version", "prove": "prove --version", "perl": "perl -e 'print qq(perl $^V)'", "kotlinc": "kotlinc -version 2>&1 | tail -1",
                               "scalac": "scalac -version 2>&1", "hugo": "hugo version", "jekyll": "jekyll --version", "meson": "echo meson $(meson --version)", "lua": "lua5.4 -v"}[tool])
    return _V[tool]


_CATCH_MAIN = WORK / "cache" / "catch_main.o"


def _catch_main() -> None:
    if not _CATCH_MAIN.exists():
        _CATCH_MAIN.parent.mkdir(parents=True, exist_ok=True)
        src = _CATCH_MAIN.with_suffix(".cpp")
        src.write_text("#define CATCH_CONFIG_MAIN\n#include <catch2/catch.hpp>\n")
        p = Project("catch")
        try:
            p.run(f"g++ -O0 -c {src} -o {_CATCH_MAIN}", timeout=300)
        finally:
            p.close()


def cpp_tests(rng: random.Random) -> Capture | None:
    fw = rng.choice(["catch2", "boost"])
    fns, checks = [], []
    for _ in range(rng.randint(1, 3)):
        f = snake(rng, 2)
        x, y = rng.randint(2, 300), rng.randint(2, 300)
        kind = rng.choice(["eq", "vec", "throw", "str"])
        if kind == "eq":
            fns.append(f"int {f}(int a, int b) {{ return a * b + 1; }}")
            checks.append((f, f"{f}({x}, {y}) == {x * y}", f"{f}({x}, {y})", str(x * y)))
        elif kind == "vec":
            fns.append(f"std::vector<int> {f}(std::vector<int> v) {{ v.pop_back(); return v; }}")
            checks.append((f, f"{f}({{{x}, {y}}}).size() == 2u", f"{f}({{{x}, {y}}}).size()", "2u"))
        elif kind == "throw":
            fns.append(f"int {f}(const std::string& s) {{ return static_cast<int>(s.size()); }}")
            checks.append((f, None, f"{f}(\"\")", "std::invalid_argument"))
        else:
            w = noun(rng)
            fns.append(f"std::string {f}(const std::string& s) {{ return s + \"-{w}\"; }}")
            checks.append((f, f"{f}(\"{noun(rng)}\") == \"{noun(rng)}\"", f"{f}(\"{noun(rng)}\")", f"std::string(\"{noun(rng)}\")"))
    head = "#include <stdexcept>\n#include <string>\n#include <vector>\n\n" + "\n".join(fns) + "\n\n"
    suite = pascal(noun(rng))
    if fw == "catch2":
        _catch_main()
        body = "#include <catch2/catch.hpp>\n" + head
        for f, expr, _, exp in checks:
            tag = rng.choice(["[unit]", "[core]", f"[{noun(rng)}]"])
            body += f'TEST_CASE("{f.replace("_", " ")}", "{tag}") {{\n' + (f"    REQUIRE_THROWS_AS({_}, {exp});\n" if expr is None else f"    {rng.choice(['REQUIRE', 'CHECK'])}({expr});\n") + "}\n\n"
        build = f"g++ -std=c++17 -O0 tests/test_{suite.lower()}.cpp {_CATCH_MAIN} -o build/tests"
        tool, ver = "catch2", "Catch v2.13.10"
    else:
        body = f"#define BOOST_TEST_MODULE {suite}\n#define BOOST_TEST_DYN_LINK\n#include <boost/test/unit_test.hpp>\n" + head
        for f, expr, act, exp in checks:
            body += f"BOOST_AUTO_TEST_CASE({f}_test) {{\n" + (f"    BOOST_CHECK_THROW({act}, {exp});\n" if expr is None else f"    BOOST_CHECK_EQUAL({act}, {exp});\n") + "}\n\n"
        build = f"g++ -std=c++17 tests/test_{suite.lower()}.cpp -lboost_unit_test_framework -o build/tests"
        tool, ver = "boost.test", "Boost 1.74"
    p = Project(noun(rng)).write({f"tests/test_{suite.lower()}.cpp": body})
    try:
        rc, out = p.run(f"mkdir -p build && {build}", timeout=300)
        if rc != 0:
            return None
        args = " --color_output=no" if fw == "boost" else rng.choice(["", " --reporter compact", " -s"]) if rng.random() < 0.3 else ""
        rc, out = p.run(f"./build/tests{args}", timeout=60)
        if rc == 0:
            return None
        # ctest would frame the output in its own lines; make runs the binary and prints it as is.
        cmd = rng.choice(["./build/tests", "make check", f"./build/tests{args}"])
        return Capture("misc2", "c", tool, "test", f"{fw}_fail", cmd, out.replace(str(_CATCH_MAIN), "build/catch_main.o"), rc, _v("g++") + "; " + ver)
    finally:
        p.close()


def bats_tests(rng: random.Random) -> Capture | None:
    w = noun(rng)
    cases = []
    for what in rng.sample(['prints usage', 'exits cleanly', 'writes the report', 'handles empty input', 'accepts --verbose', 'rejects bad flags'], rng.randint(2, 4)):
        kind = rng.choice(["status", "output", "line", "file", "pass"])
        name = f"{w} {what}"
        cases.append({
            "status": f'@test "{name}" {{\n  run bash -c "exit {rng.randint(1, 3)}"\n  [ "$status" -eq 0 ]\n}}\n',
            "output": f'@test "{name}" {{\n  run echo "{noun(rng)}"\n  [ "$output" = "{noun(rng)}" ]\n}}\n',
            "line": f'@test "{name}" {{\n  run printf "a\\\\nb\\\\n"\n  [ "${{lines[1]}}" = "{noun(rng)}" ]\n}}\n',
            "file": f'@test "{name}" {{\n  [ -f "build/{w}.tar.gz" ]\n}}\n',
            "pass": f'@test "{name}" {{\n  true\n}}\n',
        }[kind])
    p = Project(noun(rng)).write({f"test/{w}.bats": "#!/usr/bin/env bats\n\n" + "\n".join(cases)})
    try:
        fmt = rng.choice(["", " --tap", ""])
        rc, out = p.run(f"bats{fmt} test", timeout=60)
        if rc == 0:
            return None
        return Capture("misc2", "generic", "bats", "test", "bats_fail", rng.choice([f"bats{fmt} test", "bats -r tests/", "make test"]), out, rc, _v("bats"))
    finally:
        p.close()


def perl(rng: random.Random) -> Capture | None:
    kind = rng.choice(["prove", "prove", "syntax"])
    mod = pascal(noun(rng))
    f = snake(rng, 2)
    x, y = rng.randint(2, 300), rng.randint(2, 300)
    lib = f"package {mod};\nuse strict;\nuse warnings;\n\nsub {f} {{\n    my ($a, $b) = @_;\n    return $a * $b + 1;\n}}\n\n1;\n"
    if kind == "syntax":
        lib = lib.replace("return $a * $b + 1;", rng.choice(["return $a * $b + ;", "my $x = {;\n    return $x;", "return $a * $undeclared_{0};".format(noun(rng))]))
    tests = f"use strict;\nuse warnings;\nuse Test::More tests => 3;\nuse lib 'lib';\nuse {mod};\n\nis({mod}::{f}({x}, {y}), {x * y}, '{f} multiplies');\nok(defined {mod}::{f}(1, 1), 'defined');\nis_deeply([sort {{ $a <=> $b }} ({y}, {x})], [{x}, {y}], 'sorted');\n"
    p = Project(noun(rng)).write({f"lib/{mod}.pm": lib, f"t/{noun(rng)}.t": tests})
    try:
        if kind == "syntax":
            rc, out = p.run(f"perl -Ilib -c lib/{mod}.pm")
            cmd, tool, label = rng.choice([f"perl -Ilib -c lib/{mod}.pm", "find lib -name '*.pm' | xargs -n1 perl -Ilib -c"]), "perl", "build"
        else:
            v = rng.choice(["", " -v"])
            rc, out = p.run(f"prove -l{v} t/", timeout=60)
            cmd, tool, label = rng.choice([f"prove -l{v} t/", "prove -lr t", "make test"]), "prove", "test"
        if rc == 0:
            return None
        return Capture("misc2", "perl", tool, label, f"perl_{kind}", cmd, out, rc, _v("prove" if tool == "prove" else "perl"))
    finally:
        p.close()


def jvm_compile(rng: random.Random) -> Capture | None:
    lang = rng.choice(["kotlin", "scala"])
    cls = pascal(snake(rng, 2))
    f = camel(snake(rng, 2))
    kind = rng.choice(["type", "unresolved", "syntax", "args"])
    if lang == "kotlin":
        body = {"type": f"fun {f}(a: Int, b: Int): Int = a + \"{noun(rng)}\"", "unresolved": f"fun {f}(xs: List<Int>): Int = xs.sum() + {camel(snake(rng, 2))}(xs)", "syntax": f"fun {f}(a: Int): Int {{\n    val x = a *\n}}", "args": f"fun {f}(a: Int, b: Int): Int = a + b\nfun use{cls}(): Int = {f}(1)"}[kind]
        path = f"src/{cls}.kt"
        src, cmd, real, tool = f"package com.{noun(rng)}.{noun(rng)}\n\nclass {cls}\n\n{body}\n", rng.choice(["kotlinc src -d build", f"kotlinc {path} -d build/classes"]), f"kotlinc {path} -d build", "kotlinc"
    else:
        body = {"type": f"  def {f}(a: Int, b: Int): Int = a + \"{noun(rng)}\"", "unresolved": f"  def {f}(xs: List[Int]): Int = xs.sum + {camel(snake(rng, 2))}(xs)", "syntax": f"  def {f}(a: Int): Int = {{\n    val x = a *\n  }}", "args": f"  def {f}(a: Int, b: Int): Int = a + b\n  def use{cls}: Int = {f}(1)"}[kind]
        src, cmd, real, tool = f"package com.{noun(rng)}\n\nobject {cls} {{\n{body}\n}}\n", rng.choice(["scalac -d build src/*.scala", f"scalac -d target/classes src/{cls}.scala"]), f"mkdir -p build && scalac -d build src/{cls}.scala", "scalac"
        path = f"src/{cls}.scala"
    p = Project(noun(rng)).write({path: src})
    try:
        rc, out = p.run(real, timeout=240)
        if rc == 0 or "error" not in out:
            return None
        return Capture("misc2", "java" if lang == "kotlin" else "scala", tool, "build", f"{lang}_{kind}", cmd, out, rc, _v(tool))
    finally:
        p.close()


def site_builds(rng: random.Random) -> Capture | None:
    tool = rng.choice(["hugo", "jekyll", "meson", "lua"])
    w = noun(rng)
    if tool == "hugo":
        kind = rng.choice(["shortcode", "template_func", "front_matter"])
        files = {"hugo.toml": f'baseURL = "https://{w}.example.org/"\ntitle = "{w}"\n', "layouts/_default/single.html": "{{ define \"main\" }}{{ .Title }}{{ .Content }}{{ end }}\n", "layouts/_default/baseof.html": "<html><body>{{ block \"main\" . }}{{ end }}</body></html>\n",
                 f"content/{w}.md": f"---\ntitle: \"{w}\"\n---\nText.\n"}
        if kind == "shortcode":
            files[f"content/{w}.md"] += f"{{{{< {noun(rng)} >}}}}\n"
        elif kind == "template_func":
            files["layouts/_default/single.html"] = f"{{{{ define \"main\" }}}}{{{{ .Title | {noun(rng)}ify }}}}{{{{ end }}}}\n"
        else:
            files[f"content/{w}.md"] = f"---\ntitle: \"{w}\ndate: 2024-13-45\n---\nText.\n"
        real, cmd = "hugo --minify", rng.choice(["hugo --minify", "hugo --gc --minify --baseURL \"$BASE_URL\"", "hugo"])
        label, eco = "build", "generic"
    elif tool == "jekyll":
        kind = rng.choice(["liquid", "layout", "yaml"])
        files = {"_config.yml": f"title: {w}\n", "_layouts/default.html": "<html>{{ content }}</html>\n", "index.html": "---\nlayout: default\n---\n{{ site.title }}\n"}
        if kind == "liquid":
            files[f"{w}.html"] = "---\nlayout: default\n---\n{% if page.title %}\n{{ page.title }}\n"
        elif kind == "layout":
            files[f"{w}.md"] = f"---\nlayout: default\n---\n{{% include {noun(rng)}.html %}}\n"
        else:
            files["_config.yml"] = f"title: {w}\nexclude: [vendor\n"
        real, cmd = "jekyll build", rng.choice(["bundle exec jekyll build", "jekyll build"])
        label, eco = "build", "ruby"
    elif tool == "meson":
        kind = rng.choice(["dependency", "syntax"])
        files = {"meson.build": f"project('{w}', 'c', version: '0.{rng.randint(1, 9)}.0')\n" + (f"dep = dependency('{rng.choice(['libcurl', 'openssl', 'gtk+-3.0', 'libpq', 'zlib-ng', 'libsodium'])}')\nexecutable('{w}', 'main.c', dependencies: dep)\n" if kind == "dependency" else f"executable('{w}', 'main.c',\n  dependencies: [dep\n"), "main.c": "int main(void) { return 0; }\n"}
        real, cmd = "meson setup build", rng.choice(["meson setup build", "meson setup --buildtype=release build", "meson setup builddir && ninja -C builddir"])
        label, eco = ("dependency" if kind == "dependency" else "build"), "c"
    else:
        kind = rng.choice(["syntax", "runtime"])
        f = snake(rng, 2)
        files = {f"src/{w}.lua": f"local M = {{}}\n\nfunction M.{f}(t)\n  return t.{noun(rng)} + 1\nend\n\nreturn M\n" if kind == "runtime" else f"local M = {{}}\n\nfunction M.{f}(t)\n  local x = = t\n  return x\nend\n\nreturn M\n"}
        if kind == "runtime":
            files["spec/run.lua"] = f"package.path = 'src/?.lua;' .. package.path\nlocal m = require('{w}')\nassert(m.{f}({{}}) == 1, '{f} should return 1')\n"
            real, cmd, label = "lua5.4 spec/run.lua", rng.choice(["lua spec/run.lua", "lua5.4 spec/run.lua"]), "test"
        else:
            real, cmd, label = f"luac5.4 -p src/{w}.lua", rng.choice([f"luac -p src/{w}.lua", "find src -name '*.lua' -exec luac -p {} +"]), "build"
        eco = "lua"
    p = Project(noun(rng)).write(files)
    try:
        rc, out = p.run(real, timeout=180)
        if rc == 0 or not out.strip():
            return None
        return Capture("misc2", eco, tool, label, f"{tool}_{kind}", cmd, out, rc, _v(tool))
    finally:
        p.close()


MAKERS = [cpp_tests, bats_tests, perl, jvm_compile, site_builds, cpp_tests, perl, site_builds]

if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 170
    main_loop("misc2", MAKERS, n, 5606, sys.argv[2] if len(sys.argv) > 2 else None)
