"""More JavaScript tools: ava, tap, jasmine, cucumber-js (tests); stylelint, jshint, standard,
tslint, commitlint, htmlhint, markdown-link-check (checks); esbuild, rollup, sass, less (builds);
yarn and pnpm resolution against the real npm registry (dependency).

    python3 fam_js2.py [N] [maker-filter]

The tools are installed from the npm registry into $SFGEN_WORK/tools/js2 (setup_tools.sh) and
linked into each throw-away project. Link checks run against a LocalServer answering 404 and
against names that do not resolve, rewritten to public-looking hosts.
"""

from __future__ import annotations

import json
import os
import random
import sys

from common import TOOLS, Capture, LocalServer, Project, camel, main_loop, noun, pascal, snake

JS2 = TOOLS / "js2"
BIN = JS2 / "node_modules" / ".bin"
_V: dict[str, str] = {}


def _v(pkg: str) -> str:
    if pkg not in _V:
        try:
            _V[pkg] = f"{pkg} " + json.loads((JS2 / "node_modules" / pkg / "package.json").read_text())["version"]
        except OSError:
            _V[pkg] = pkg
    return _V[pkg]


def _project(rng: random.Random, files: dict[str, str], pkg_extra: dict | None = None, link: bool = True) -> Project:
    name = rng.choice([noun(rng), f"{noun(rng)}-{rng.choice(['web', 'api', 'ui', 'sdk', 'cli', 'service'])}"])
    p = Project(name)
    pkg = {"name": name, "version": f"{rng.randint(0, 4)}.{rng.randint(0, 30)}.{rng.randint(0, 9)}", "private": True, **(pkg_extra or {})}
    p.write({"package.json": json.dumps(pkg, indent=2) + "\n", **files})
    if link:
        os.symlink(JS2 / "node_modules", p.root / "node_modules")
    return p


def _run(p: Project, cmd: str, **kw) -> tuple[int, str]:
    env = {"PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin", **kw.pop("env", {})}
    rc, out = p.run(cmd, env=env, **kw)
    return rc, out.replace("/tmp/tools/js2/node_modules", "{WS}/node_modules")


def _fn_cases(rng: random.Random) -> list[tuple[str, str, str, str]]:
    """(function name, implementation, a failing check's actual expression, expected literal)."""
    out = []
    for _ in range(rng.randint(1, 3)):
        fn = camel(snake(rng, 2))
        x, y = rng.randint(2, 300), rng.randint(2, 300)
        w = noun(rng)
        out.append(rng.choice([
            (fn, f"function {fn}(a, b) {{ return a * b + 1; }}", f"{fn}({x}, {y})", str(x * y)),
            (fn, f"function {fn}(id) {{ return {{ id, {w}: '{w}-' + id, active: false }}; }}", f"{fn}({x})", f"{{ id: {x}, {w}: '{w}-{x}', active: true }}"),
            (fn, f"function {fn}(xs) {{ return xs.filter((v) => v > {x % 50}); }}", f"{fn}([{x % 50}, {y}])", f"[{x % 50}, {y}]"),
            (fn, f"function {fn}(s) {{ return s.split(',').map((p) => p.trim()); }}", f"{fn}('{w}, {noun(rng)}').length", "3"),
            (fn, f"function {fn}(o) {{ return o.{w}.length; }}", f"{fn}({{}})", "0"),
        ]))
    return out


def test_runner(rng: random.Random) -> Capture | None:
    runner = rng.choice(["ava", "tap", "jasmine", "cucumber"])
    cases = _fn_cases(rng)
    mod = snake(rng, 1).split("_")[0] + noun(rng).capitalize()
    impl = "\n".join(c[1] for c in cases) + "\nmodule.exports = { " + ", ".join(c[0] for c in cases) + " };\n"
    files = {f"src/{mod}.js": impl}
    imp = f"const {{ {', '.join(c[0] for c in cases)} }} = require('../src/{mod}');\n"
    if runner == "ava":
        files[f"test/{mod}.test.js"] = "const test = require('ava');\n" + imp + "".join(f"\ntest('{c[0]} {rng.choice(['works', 'returns the total', 'maps fields'])}', (t) => {{\n  t.deepEqual({c[2]}, {c[3]});\n}});\n\ntest('{c[0]} is a function', (t) => {{\n  t.is(typeof {c[0]}, 'function');\n}});\n" for c in cases)
        cmd, real = rng.choice(["npx ava", "ava --verbose", "npx ava --timeout=30s"]), "ava"
    elif runner == "tap":
        files[f"test/{mod}.js"] = "const t = require('tap');\n" + imp + "".join(f"\nt.test('{c[0]}', async (t) => {{\n  t.same({c[2]}, {c[3]});\n  t.ok(typeof {c[0]} === 'function');\n}});\n" for c in cases)
        cmd, real = rng.choice(["tap", "npx tap test/*.js", "tap --reporter=tap"]), f"tap --disable-coverage test/{mod}.js"
    elif runner == "jasmine":
        files["spec/support/jasmine.json"] = '{"spec_dir": "spec", "spec_files": ["**/*[sS]pec.js"], "random": true}\n'
        files[f"spec/{mod}.spec.js"] = imp.replace("../src", "../src") + f"\ndescribe('{mod}', () => {{\n" + "".join(f"  it('{c[0]} {rng.choice(['works', 'returns the total', 'maps fields'])}', () => {{\n    expect({c[2]}).toEqual({c[3]});\n  }});\n" for c in cases) + "});\n"
        cmd, real = rng.choice(["jasmine", "npx jasmine", "jasmine --config=spec/support/jasmine.json"]), "jasmine"
    else:
        n, k = rng.randint(1, 9), rng.randint(1, 5)
        w = noun(rng)
        files[f"features/{w}.feature"] = f"Feature: {w.capitalize()}s\n\n  Scenario: add a {w}\n    Given a {w} list with {n} items\n    When I add {k} items\n    Then the list has {n + k + rng.choice([1, -1, 2])} items\n\n  Scenario: empty {w} list\n    Given a {w} list with 0 items\n    Then the list has 0 items\n"
        files["features/step_definitions/steps.js"] = "const { Given, When, Then } = require('@cucumber/cucumber');\nconst assert = require('assert');\nlet n = 0;\n" + f"Given('a {w} list with {{int}} items', (k) => {{ n = k; }});\nWhen('I add {{int}} items', (k) => {{ n += k; }});\nThen('the list has {{int}} items', (k) => {{ assert.strictEqual(n, k); }});\n"
        cmd, real = rng.choice(["cucumber-js", "npx cucumber-js --format progress", "cucumber-js --fail-fast"]), "cucumber-js"
    p = _project(rng, files)
    try:
        rc, out = _run(p, real, timeout=120)
        if rc == 0 or not out.strip():
            return None
        pkg = {"ava": "ava", "tap": "tap", "jasmine": "jasmine", "cucumber": "@cucumber/cucumber"}[runner]
        return Capture("js2", "node", runner if runner != "cucumber" else "cucumber-js", "test", f"{runner}_assert", cmd, out, rc, _v(pkg))
    finally:
        p.close()


def linter(rng: random.Random) -> Capture | None:
    tool = rng.choice(["stylelint", "jshint", "standard", "tslint", "htmlhint", "stylelint"])
    w = noun(rng)
    if tool == "stylelint":
        rules = [f".{w} {{ color: #FFF; colr: red }}", f".{w}-x{{margin:0px}}", f"#{w} {{ COLOR: red; }}", f".{w} {{ background: url(x.png) }}\n.{w} {{ color: red }}", "a { color: #ff00zz; }", f".{w} {{ font-family: Arial }}", f".{w}::selection {{ margin: 0 0 0 0; }}", f"@import url('{w}.css');\n.{w} {{ }}"]
        files = {".stylelintrc.json": '{"extends": "stylelint-config-standard"}\n', f"src/styles/{w}.css": "\n".join(rng.sample(rules, rng.randint(1, 4))) + "\n"}
        cmd, real = rng.choice(["npx stylelint '**/*.css'", "stylelint 'src/**/*.{css,scss}'", "npm run lint:css"]), "stylelint 'src/**/*.css'"
    elif tool in ("jshint", "standard"):
        bad = [f"var {w} = 1", f"function {camel(snake(rng, 2))}(x) {{ return x == null }}", f"{camel(snake(rng, 2))}++", f"if ({w}) {{ console.log('{w}') }};", f"var {w}2 = {{ a: 1, a: 2 }}", f"const {w}3 = \"{w}\"", f"eval('{w}')"]
        files = {f"lib/{w}.js": "\n".join(rng.sample(bad, rng.randint(2, 5))) + "\n"}
        if tool == "jshint":
            files[".jshintrc"] = json.dumps({"esversion": 6, "undef": True, "unused": True, "eqeqeq": rng.random() < 0.5, "node": True}) + "\n"
            cmd, real = rng.choice(["jshint lib", "npx jshint .", "jshint --reporter=unix lib"]), "jshint lib"
        else:
            cmd, real = rng.choice(["standard", "npx standard", "standard --verbose"]), "standard lib/"
    elif tool == "tslint":
        bad = [f"var {w} = 1", f"function {camel(snake(rng, 2))}(x) {{ return x == null }}", f"let {w}2: any = 'x'", f"console.log(\"{w}\")", f"export class {pascal(snake(rng, 2))} {{ public x = 1 }}"]
        files = {"tslint.json": '{"extends": "tslint:recommended"}\n', f"src/{w}.ts": "\n".join(rng.sample(bad, rng.randint(2, 4))) + "\n"}
        cmd, real = rng.choice(["tslint -p .", "npx tslint -c tslint.json 'src/**/*.ts'", "tslint --project tsconfig.json"]), "tslint -c tslint.json 'src/**/*.ts'"
    else:
        html = rng.choice([f'<html><body><div id="{w}"><div id="{w}"><img src="{w}.png"></body></html>', f'<!DOCTYPE html>\n<html>\n<head><title>{w}</title></head>\n<body>\n<A HREF="/{w}">{w}</A>\n<img src="x.png">\n</body>\n</html>', f'<!DOCTYPE html><html><head></head><body><p class="{w}" class="x">{w}</p><span style="color:red">x</span></body></html>'])
        files = {f"public/{w}.html": html + "\n"}
        cmd, real = rng.choice(["htmlhint 'public/**/*.html'", "npx htmlhint public", "htmlhint --format unix public"]), "htmlhint public"
    p = _project(rng, files)
    try:
        rc, out = _run(p, real, timeout=120)
        if rc == 0 or not out.strip():
            return None
        return Capture("js2", "node" if tool != "htmlhint" else "generic", tool, "lint", tool, cmd, out, rc, _v(tool))
    finally:
        p.close()


def commitlint(rng: random.Random) -> Capture | None:
    msg = rng.choice([f"Fixed the {noun(rng)} thing.", f"update {noun(rng)}", "WIP", f"feat: Add {noun(rng)} support.", f"Merge branch 'main' into {noun(rng)}", f"fix({noun(rng)}): {noun(rng)}" + "x" * rng.randint(90, 120), f"Feature/{noun(rng)}", f"chore {noun(rng)}"])
    p = _project(rng, {"commitlint.config.js": "module.exports = { extends: ['@commitlint/config-conventional'] };\n"})
    try:
        rc, out = _run(p, "commitlint", input=msg + "\n", timeout=60)
        if rc == 0:
            return None
        cmd = rng.choice(["npx commitlint --from=origin/main --to=HEAD", "npx commitlint --from HEAD~1 --to HEAD --verbose", "commitlint --edit"])
        return Capture("js2", "generic", "commitlint", "lint", "commit_message", cmd, out, rc, _v("@commitlint/cli"))
    finally:
        p.close()


def link_check(rng: random.Random) -> Capture | None:
    with LocalServer(404, "not found") as srv:
        host = rng.choice(["docs.example.com", "example.org", "www.example.net", f"{noun(rng)}.readthedocs.io", "github.com"])
        links = [f"- [{noun(rng)}]({srv.url}/{noun(rng)}/{noun(rng)}.html)" for _ in range(rng.randint(1, 3))]
        if rng.random() < 0.5:
            links.append(f"- [{noun(rng)}](https://{noun(rng)}-{noun(rng)}.invalid/{noun(rng)})")
        links.append(f"- [local](./docs/{noun(rng)}.md)")
        rng.shuffle(links)
        p = _project(rng, {"README.md": f"# {noun(rng)}\n\nSee:\n\n" + "\n".join(links) + "\n"})
        try:
            rc, out = _run(p, "markdown-link-check --retry README.md", timeout=120)
            if rc == 0 or "✖" not in out:
                return None
            out = out.replace(srv.url, f"https://{host}").replace(srv.url.split("//")[1], host)
            cmd = rng.choice(["npx markdown-link-check README.md", "find . -name '*.md' -not -path './node_modules/*' | xargs -n1 markdown-link-check", "markdown-link-check -c .mlc.json README.md"])
            return Capture("js2", "generic", "markdown-link-check", "lint", "broken_links", cmd, out, rc, _v("markdown-link-check"))
        finally:
            p.close()


def bundler(rng: random.Random) -> Capture | None:
    tool = rng.choice(["esbuild", "rollup", "sass", "less"])
    w = noun(rng)
    fn = camel(snake(rng, 2))
    kind = rng.choice(["syntax", "missing_import"]) if tool in ("esbuild", "rollup") else rng.choice(["undefined_var", "syntax"])
    if tool in ("esbuild", "rollup"):
        src = {"syntax": f"import {{ {fn} }} from './{w}.js';\nexport const total = {fn}(1) + ;\n", "missing_import": f"import {{ {fn} }} from './{noun(rng)}-{w}.js';\nexport const total = {fn}(1);\n"}[kind]
        files = {"src/index.js": src, f"src/{w}.js": f"export function {fn}(x) {{ return x * 2; }}\n"}
        real = "esbuild src/index.js --bundle --outfile=dist/out.js" if tool == "esbuild" else "rollup src/index.js --file dist/bundle.js --format es"
        cmd = rng.choice([real, f"npx {real}", "node build.mjs" if tool == "esbuild" else "rollup -c"])
    elif tool == "sass":
        src = {"undefined_var": f"$primary: #333;\n.{w} {{\n  color: $secondary-{w};\n}}\n", "syntax": f".{w} {{\n  color: red\n  margin: 0;\n  &:hover {{ color: blue; }}}}\n}}}}\n"}[kind]
        files = {f"src/styles/{w}.scss": src}
        real = f"sass src/styles/{w}.scss dist/{w}.css"
        cmd = rng.choice([real, "sass src/styles:dist/css --no-source-map", "npx sass --style=compressed src/styles/main.scss dist/main.css"])
    else:
        src = {"undefined_var": f".{w} {{ color: @{w}-color; }}\n", "syntax": f".{w} {{ color: red;\n  .x {{ margin: 0 }}\n"}[kind]
        files = {f"src/styles/{w}.less": src}
        real = f"lessc src/styles/{w}.less dist/{w}.css"
        cmd = rng.choice([real, "lessc --strict-math=on src/styles/main.less dist/main.css"])
    p = _project(rng, files)
    try:
        rc, out = _run(p, real, timeout=120)
        if rc == 0:
            return None
        pkg = {"esbuild": "esbuild", "rollup": "rollup", "sass": "sass", "less": "less"}[tool]
        return Capture("js2", "node", tool, "build", f"{tool}_{kind}", cmd, out, rc, _v(pkg))
    finally:
        p.close()


def yarn_pnpm(rng: random.Random) -> Capture | None:
    tool = rng.choice(["yarn", "pnpm"])
    kind = rng.choice(["no_version", "no_package", "engines", "frozen"])
    dep = rng.choice([("lodash", "4.17.21"), ("express", "4.19.2"), ("react", "18.3.1"), ("axios", "1.7.7"), ("chalk", "4.1.2"), ("commander", "12.1.0"), ("uuid", "9.0.1"), ("dotenv", "16.4.5")])
    deps = {dep[0]: dep[1]}
    files: dict[str, str] = {}
    extra: dict = {}
    if kind == "no_version":
        deps[dep[0]] = f"^{rng.randint(30, 99)}.{rng.randint(0, 9)}.0"
    elif kind == "no_package":
        deps[f"@{noun(rng)}/{noun(rng)}-{rng.choice(['utils', 'client', 'core'])}"] = "^1.2.0"
    elif kind == "engines":
        extra["engines"] = {"node": f">={rng.randint(22, 24)}"}
        extra["engineStrict"] = True
    p = _project(rng, files, {"dependencies": deps, **extra}, link=False)
    try:
        env = {"npm_config_registry": "https://registry.npmjs.org/", "YARN_REGISTRY": "https://registry.npmjs.org/", "HOME": str(p.root / ".home")}
        if tool == "yarn":
            if kind == "frozen":
                p.write({"yarn.lock": "# THIS IS AN AUTOGENERATED FILE. DO NOT EDIT THIS FILE DIRECTLY.\n# yarn lockfile v1\n\n\n" + f'{dep[0]}@^1.0.0:\n  version "1.0.0"\n  resolved "https://registry.yarnpkg.com/{dep[0]}/-/{dep[0]}-1.0.0.tgz"\n'})
            cmd = rng.choice(["yarn install --frozen-lockfile", "yarn install --frozen-lockfile --non-interactive", "yarn --frozen-lockfile"]) if kind == "frozen" or rng.random() < 0.5 else "yarn install"
            rc, out = _run(p, f"yarn {' '.join(cmd.split()[1:]) or 'install'} --registry https://registry.npmjs.org --ignore-scripts --no-progress" + (" --engine-strict" if kind == "engines" else ""), env=env, timeout=180)
            out = out.replace("registry.npmjs.org", "registry.yarnpkg.com")
        else:
            if kind == "frozen":
                p.write({"pnpm-lock.yaml": f"lockfileVersion: '9.0'\n\nsettings:\n  autoInstallPeers: true\n  excludeLinksFromLockfile: false\n\nimporters:\n\n  .:\n    dependencies:\n      {dep[0]}:\n        specifier: ^1.0.0\n        version: 1.0.0\n"})
            cmd = rng.choice(["pnpm install --frozen-lockfile", "pnpm i --frozen-lockfile", "pnpm install"]) if kind != "frozen" else "pnpm install --frozen-lockfile"
            rc, out = _run(p, "pnpm install --registry https://registry.npmjs.org/ --ignore-scripts --reporter=append-only" + (" --frozen-lockfile" if kind == "frozen" else "") + (" --engine-strict" if kind == "engines" else ""), env=env, timeout=180)
        if rc == 0 or not out.strip():
            return None
        return Capture("js2", "node", tool, "dependency", f"{tool}_{kind}", cmd, out, rc, _v(tool))
    finally:
        p.close()


MAKERS = [test_runner, test_runner, linter, linter, commitlint, link_check, bundler, yarn_pnpm, test_runner, bundler]

if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    main_loop("js2", MAKERS, n, 5404, sys.argv[2] if len(sys.argv) > 2 else None)
