"""JavaScript / TypeScript failures: jest, mocha, vitest, tsc, webpack, vite, eslint, prettier, npm.

Two pinned tool sets are installed from the npm registry ($SFGEN_WORK/tools/node: current majors;
tools/node5: TypeScript 5, ESLint 8, Jest 29, which most projects still ran in 2024) and linked
into each throw-away project as its node_modules. npm resolution failures run against the real
registry with --package-lock-only, which fails exactly as `npm install` does, without the download.
"""

from __future__ import annotations

import json
import os
import random
import sys

from common import NODE_TOOLS, TOOLS, Capture, Project, camel, distinct, main_loop, noun, pascal, snake, version_of

NODE5 = TOOLS / "node5"


def _project(rng: random.Random, files: dict[str, str], old: bool) -> Project:
    name = rng.choice([noun(rng), f"{noun(rng)}-{rng.choice(['web', 'api', 'ui', 'sdk', 'cli', 'service'])}"])
    p = Project(name)
    pkg = {"name": name, "version": f"{rng.randint(0, 4)}.{rng.randint(0, 30)}.{rng.randint(0, 9)}", "private": True, "scripts": {"test": "jest", "build": "tsc", "lint": "eslint ."}}
    files = {"package.json": json.dumps(pkg, indent=2) + "\n", **files}
    p.write(files)
    os.symlink((NODE5 if old else NODE_TOOLS) / "node_modules", p.root / "node_modules")
    return p


def _fn_pair(rng: random.Random, ts: bool) -> tuple[str, str, str, str]:
    """(function name, implementation with a bug, failing test expression, fault kind)."""
    fn = camel(snake(rng, 2))
    x, y = rng.randint(2, 400), rng.randint(2, 400)
    w = noun(rng)
    t = (lambda s: s) if ts else (lambda s: "")
    kinds = [
        ("toBe", f"export function {fn}(a{t(': number')}, b{t(': number')}){t(': number')} {{\n  return a * b + 1;\n}}\n", f"expect({fn}({x}, {y})).toBe({x * y});"),
        ("toEqual", f"export function {fn}(id{t(': number')}) {{\n  return {{ id, {w}: '{w}-' + id, active: false }};\n}}\n", f"expect({fn}({x})).toEqual({{ id: {x}, {w}: '{w}-{x}', active: true }});"),
        ("toStrictEqual_arr", f"export function {fn}(xs{t(': number[]')}) {{\n  return xs.filter((v) => v > {x % 50});\n}}\n", f"expect({fn}([{x % 50}, {x % 50 + 1}, {y}])).toStrictEqual([{x % 50}, {x % 50 + 1}, {y}]);"),
        ("toThrow", f"export function {fn}(v{t(': string')}) {{\n  return v.trim();\n}}\n", f"expect(() => {fn}('')).toThrow('{w} must not be empty');"),
        ("typeerror", f"export function {fn}(o{t(': any')}) {{\n  return o.{w}.length;\n}}\n", f"expect({fn}({{}})).toBe(0);"),
        ("toContain", f"export function {fn}(s{t(': string')}) {{\n  return s.split(',').map((p) => p.trim());\n}}\n", f"expect({fn}('{w}, {noun(rng)}')).toContain('{w.upper() if hasattr(w, 'upper') else w}');"),
        ("toBeCloseTo", f"export function {fn}(a{t(': number')}) {{\n  return Math.round(a * 1.{y:03d} * 100) / 100;\n}}\n", f"expect({fn}({x}.{y % 100:02d})).toBeCloseTo({x * 1.0 + 0.5:.3f}, 5);"),
        ("toHaveBeenCalledWith", f"export function {fn}(cb{t(': (n: number) => void')}) {{\n  cb({x - 1});\n}}\n", f"const cb = jest.fn();\n  {fn}(cb);\n  expect(cb).toHaveBeenCalledWith({x});"),
        ("async_reject", f"export async function {fn}(id{t(': number')}) {{\n  throw new Error('{w} ' + id + ' not found');\n}}\n", f"await expect({fn}({x})).resolves.toMatchObject({{ id: {x} }});"),
        ("timeout", f"export function {fn}(){t(': Promise<number>')} {{\n  return new Promise(() => {{}});\n}}\n", f"await {fn}();"),
        ("toBeNull", f"export function {fn}(m{t(': Map<string, number>')}, k{t(': string')}) {{\n  return m.get(k) ?? 0;\n}}\n", f"expect({fn}(new Map(), '{w}')).toBeNull();"),
        ("toMatchSnapshot_inline", f"export function {fn}(n{t(': number')}) {{\n  return `<li class=\"{w}\">${{n}}</li>`;\n}}\n", f"expect({fn}({x})).toMatchInlineSnapshot(`\"<li class=\\\\\"{w} active\\\\\">{x}</li>\"`);"),
        ("toHaveLength", f"export function {fn}(xs{t(': string[]')}) {{\n  return [...new Set(xs)];\n}}\n", f"expect({fn}(['{w}', '{w}', 'x{y}'])).toHaveLength(3);"),
        ("toBeGreaterThan", f"export function {fn}(xs{t(': number[]')}) {{\n  return Math.min(...xs);\n}}\n", f"expect({fn}([{x}, {y}, {x + y}])).toBeGreaterThan({max(x, y)});"),
    ]
    kind, impl, expect = rng.choice(kinds)
    return fn, impl, expect, kind


def jest_failure(rng: random.Random) -> Capture | None:
    ts = rng.random() < 0.4
    old = rng.random() < 0.5
    ext = "ts" if ts else "js"
    files: dict[str, str] = {}
    faults = []
    mods = distinct(rng, lambda r: camel(snake(r, 2)), rng.randint(1, 4))
    for i, mod in enumerate(mods):
        tests = []
        impl = ""
        for j in range(rng.randint(1, 5)):
            fn = camel(snake(rng, 2)) + str(j)
            a = rng.randint(1, 99)
            impl += f"export function {fn}(a{': number' if ts else ''}) {{\n  return a + 1;\n}}\n"
            tests.append(f"  it('{rng.choice(['returns', 'computes', 'handles', 'keeps'])} {noun(rng)} {j}', () => {{\n    expect({fn}({a})).toBe({a + 1});\n  }});")
        names = [line.split("(")[0].split()[-1] for line in impl.splitlines() if line.startswith("export function")]
        if i < rng.choice([1, 1, 2]):
            fn, fimpl, fexpect, kind = _fn_pair(rng, ts)
            faults.append(kind)
            impl += fimpl
            names.append(fn)
            asy = "async " if "await" in fexpect else ""
            tests.append(f"  it('{rng.choice(['should', 'must'])} {rng.choice(VERBS_TEST)} {noun(rng)}', {asy}() => {{\n    {fexpect}\n  }}{', ' + str(rng.choice([500, 1000, 2000])) if kind == 'timeout' else ''});")
        imp = f"import {{ {', '.join(names)} }} from '../src/{mod}';\n" if ts else f"const {{ {', '.join(names)} }} = require('../src/{mod}');\n"
        files[f"src/{mod}.{ext}"] = impl if ts else impl.replace("export function", "function").replace("export async function", "async function") + f"\nmodule.exports = {{ {', '.join(names)} }};\n"
        files[f"__tests__/{mod}.test.{ext}"] = imp + f"\ndescribe('{mod}', () => {{\n" + "\n\n".join(tests) + "\n});\n"
    if not faults:
        return None
    if ts:
        files["jest.config.js"] = "module.exports = { preset: 'ts-jest', testEnvironment: 'node' };\n"
        files["tsconfig.json"] = json.dumps({"compilerOptions": {"strict": False, "esModuleInterop": True, "target": "es2020", "module": "commonjs", "types": ["jest"]}}) + "\n"
    flags = rng.choice(["", "", "--ci", "--ci --coverage=false", "--verbose", "--runInBand", "--ci --reporters=default"])
    p = _project(rng, files, old)
    try:
        rc, out = p.run(f"node_modules/.bin/jest {flags}", timeout=180)
    finally:
        p.close()
    if rc == 0 or "Tests:" not in out:
        return None
    cmd = rng.choice([f"npx jest {flags}".strip(), f"npm test -- {flags}".strip(" -"), f"yarn jest {flags}".strip(), f"jest {flags}".strip()])
    return Capture("node", "node", "jest", "test", "+".join(faults), cmd, out, rc, _VERS["jest5" if old else "jest"])


VERBS_TEST = ["return", "parse", "render", "compute", "reject", "accept", "sort", "format", "merge", "validate"]


def mocha_failure(rng: random.Random) -> Capture | None:
    fn = camel(snake(rng, 2))
    x, y = rng.randint(2, 300), rng.randint(2, 300)
    w = noun(rng)
    kind, impl, asrt = rng.choice([
        ("equal", f"function {fn}(a, b) {{ return a - b; }}", f"assert.equal({fn}({x}, {y}), {x + y});"),
        ("deepEqual", f"function {fn}(k) {{ return {{ key: k, {w}: [] }}; }}", f"assert.deepEqual({fn}('{w}'), {{ key: '{w}', {w}: [{x}] }});"),
        ("chai_expect", f"function {fn}(s) {{ return s.length; }}", f"expect({fn}('{w}')).to.equal({len(w) + 1});"),
        ("chai_include", f"function {fn}(xs) {{ return xs.slice(1); }}", f"expect({fn}([{x}, {y}])).to.include({x});"),
        ("throws", f"function {fn}(v) {{ return Number(v); }}", f"assert.throws(() => {fn}('{w}'), /invalid {w}/);"),
        ("typeerror", f"function {fn}(o) {{ return o.items.map(String); }}", f"assert.ok({fn}({{}}));"),
        ("timeout", f"function {fn}(cb) {{ setTimeout(() => {{}}, 10); }}", f"await new Promise((r) => {fn}(r));"),
    ])
    oks = "\n".join(f"  it('{rng.choice(VERBS_TEST)}s {noun(rng)}', () => {{ assert.ok({i} >= 0); }});" for i in range(rng.randint(1, 8)))
    asy = "async " if "await" in asrt else ""
    test = f"const assert = require('assert');\nconst {{ expect }} = require('chai');\nconst {{ {fn} }} = require('../lib/{w}');\n\ndescribe('{pascal(w)}', function () {{\n{oks}\n  it('{rng.choice(VERBS_TEST)}s {noun(rng)} {x}', {asy}function () {{\n    {asrt}\n  }});\n}});\n"
    p = _project(rng, {f"lib/{w}.js": impl + f"\nmodule.exports = {{ {fn} }};\n", f"test/{w}.test.js": test}, False)
    try:
        rc, out = p.run(f"node_modules/.bin/mocha --timeout {rng.choice([500, 1000, 2000])} 'test/**/*.test.js'", timeout=120)
    finally:
        p.close()
    if rc == 0:
        return None
    return Capture("node", "node", "mocha", "test", f"mocha_{kind}", rng.choice(["npx mocha", "mocha 'test/**/*.test.js'", "npm test"]), out, rc, _VERS["mocha"])


def vitest_failure(rng: random.Random) -> Capture | None:
    fn, impl, expect, kind = _fn_pair(rng, True)
    if kind in ("toHaveBeenCalledWith",):
        expect = expect.replace("jest.fn", "vi.fn")
    w = noun(rng)
    oks = "\n".join(f"  it('{rng.choice(VERBS_TEST)}s {noun(rng)}', () => {{\n    expect({i} + 1).toBe({i + 1});\n  }});" for i in range(rng.randint(1, 6)))
    asy = "async " if "await" in expect else ""
    test = f"import {{ describe, it, expect, vi }} from 'vitest';\nimport {{ {fn} }} from '../src/{w}';\n\ndescribe('{w}', () => {{\n{oks}\n  it('{rng.choice(VERBS_TEST)}s {noun(rng)}', {asy}() => {{\n    {expect}\n  }}{', 500' if kind == 'timeout' else ''});\n}});\n"
    p = _project(rng, {f"src/{w}.ts": impl, f"test/{w}.test.ts": test, "vitest.config.ts": "import { defineConfig } from 'vitest/config';\nexport default defineConfig({ test: { testTimeout: 1000 } });\n"}, False)
    try:
        rc, out = p.run("node_modules/.bin/vitest run", timeout=180)
    finally:
        p.close()
    if rc == 0 or "Test Files" not in out:
        return None
    return Capture("node", "node", "vitest", "test", f"vitest_{kind}", rng.choice(["npx vitest run", "vitest run", "pnpm vitest run --reporter=default"]), out, rc, _VERS["vitest"])


def _ts_errors(rng: random.Random) -> tuple[str, str]:
    """A TypeScript module with one to three compile errors of different kinds."""
    iface = pascal(snake(rng, 2))
    f1, f2 = distinct(rng, lambda r: camel(snake(r, 2)), 2)
    w = noun(rng)
    x = rng.randint(1, 99)
    pieces = [
        f"export function {f1}(a: number): string {{\n  return a * {x};\n}}\n",
        f"interface {iface} {{ id: number; {w}: string }}\nexport const item: {iface} = {{ id: {x}, {w}: {x} }};\n",
        f"export function {f2}(xs: string[]) {{\n  return xs.map((s) => s.toFixed(2));\n}}\n",
        f"import {{ {camel(snake(rng, 2))} }} from './{noun(rng)}';\n",
        f"export const {w}Count: number = undefinedVariable{x};\n",
        f"function {f1}X(a: string, b: number) {{ return a + b; }}\nexport const r = {f1}X({x}, '{w}');\n",
        f"interface {iface}Opts {{ {w}: boolean }}\nexport function make{iface}(o: {iface}Opts) {{ return o; }}\nmake{iface}({{ {w}: true, extra{x}: 1 }});\n",
        f"export class {iface}Store {{\n  private items: Map<string, number> = new Map();\n  get(k: string): number {{\n    return this.items.get(k);\n  }}\n}}\n",
        f"export function {f2}Y(v: unknown) {{\n  return v.{w};\n}}\n",
        f"export const {w}s = [1, 2, 3];\n{w}s.push('{x}');\n",
        f"export async function load{iface}(): Promise<{iface}Missing> {{\n  return {{}};\n}}\n",
        f"type {iface}Kind = 'a' | 'b';\nexport const k: {iface}Kind = 'c{x}';\n",
        f"export function {f1}Z(n: number) {{\n  if (n > {x}) {{\n    return n;\n  }}\n",
    ]
    chosen = rng.sample(pieces, rng.choice([1, 1, 2, 3]))
    return f"src/{w}.ts", "\n".join(chosen)


def tsc_failure(rng: random.Random) -> Capture | None:
    files: dict[str, str] = {}
    for _ in range(rng.randint(1, 3)):
        path, code = _ts_errors(rng)
        files[path] = code
    files[f"src/{noun(rng)}Util.ts"] = f"export const ok = {rng.randint(1, 9)};\n"
    files["tsconfig.json"] = json.dumps({"compilerOptions": {"strict": True, "target": "ES2022", "module": "commonjs", "outDir": "dist", "rootDir": "src", "noEmit": rng.random() < 0.5}, "include": ["src"]}, indent=2) + "\n"
    old = rng.random() < 0.6
    pretty = rng.choice(["", " --pretty false", " --pretty false"])
    p = _project(rng, files, old)
    try:
        rc, out = p.run(f"node_modules/.bin/tsc -p tsconfig.json{pretty}", timeout=180)
    finally:
        p.close()
    if rc == 0:
        return None
    cmd = rng.choice(["npx tsc -p tsconfig.json", "tsc --noEmit", "npm run build", "yarn tsc", "npx tsc"])
    return Capture("node", "node", "tsc", "build", "tsc_errors", cmd, out, rc, _VERS["tsc5" if old else "tsc"])


def bundler_failure(rng: random.Random) -> Capture | None:
    w = noun(rng)
    kind = rng.choice(["missing_module", "syntax", "missing_export", "missing_pkg_import"])
    main = {
        "missing_module": f"import {{ {camel(snake(rng, 2))} }} from './{rng.choice(['utils', 'lib', 'components'])}/{w}';\nconsole.log({rng.randint(1, 9)});\n",
        "syntax": f"const {w} = {{ a: 1, b: 2 ;\nexport default {w};\n",
        "missing_export": f"import {{ {camel(snake(rng, 2))} }} from './{w}.js';\nconsole.log({camel(snake(rng, 2)) if False else '1'});\n",
        "missing_pkg_import": f"import {{ {camel(snake(rng, 2))} }} from '{rng.choice(['lodash-es', 'date-fns', 'axios', 'zod', 'react-router-dom', '@tanstack/react-query'])}';\nconsole.log(1);\n",
    }[kind]
    files = {"src/index.js": main, f"src/{w}.js": f"export const {w}Value = {rng.randint(1, 99)};\n", "index.html": "<!doctype html><html><body><script type=\"module\" src=\"/src/index.js\"></script></body></html>\n"}
    tool = rng.choice(["webpack", "vite"])
    if tool == "webpack":
        files["webpack.config.js"] = "module.exports = { mode: 'production', entry: './src/index.js' };\n"
        cmd_run, cmd = "node_modules/.bin/webpack --no-color", rng.choice(["npx webpack", "webpack --mode production", "npm run build"])
    else:
        cmd_run, cmd = "node_modules/.bin/vite build", rng.choice(["npx vite build", "vite build", "npm run build"])
    files["package.json"] = json.dumps({"name": w, "version": "1.0.0", "private": True, **({"type": "module"} if tool == "vite" else {})}) + "\n"
    p = _project(rng, files, False)
    try:
        rc, out = p.run(cmd_run, timeout=180)
    finally:
        p.close()
    if rc == 0:
        return None
    # An import of a package that is not installed is a missing dependency, not a code error.
    label = "dependency" if kind == "missing_pkg_import" else "build"
    return Capture("node", "node", tool, label, f"{tool}_{kind}", cmd, out, rc, _VERS[tool])


def eslint_failure(rng: random.Random) -> Capture | None:
    old = rng.random() < 0.4
    files: dict[str, str] = {}
    for _ in range(rng.randint(1, 3)):
        w = noun(rng)
        fn = camel(snake(rng, 2))
        snippets = [
            f"var {w} = {rng.randint(1, 99)};\n",
            f"function {fn}(a, b) {{\n  const unused{rng.randint(1, 9)} = a;\n  return b;\n}}\n",
            f"if ({w}Flag == null) {{ console.log('x'); }}\n",
            f"const {w}List = [];\nfor (var i = 0; i < 10; i++) {{ {w}List.push(i) }}\n",
            f"export function {fn}X(x) {{\n  debugger;\n  return x;\n}}\n",
            "try { JSON.parse('{}'); } catch (e) {}\n",
            f"const {w}Obj = {{ a: 1, a: 2 }};\n",
            f"switch ({rng.randint(1, 3)}) {{\n  case 1:\n    {fn}Y();\n  case 2:\n    break;\n}}\n",
            f"const re{rng.randint(1, 9)} = /[a-z]+  /;\nlet {w}Let = 1;\n{w}Let = undefinedThing;\n",
            f"async function {fn}Z() {{\n  return await Promise.resolve(1);\n}}\nwhile (true) {{}}\n",
            f"const {w}Str = 'a' + \"b\";\nlet  {w}Unused;\n",
        ]
        files[f"src/{w}.js"] = "".join(rng.sample(snippets, rng.randint(2, 5)))
    if old:
        files[".eslintrc.json"] = json.dumps({"root": True, "extends": "eslint:recommended", "env": {"node": True, "es2022": True}, "parserOptions": {"sourceType": "module"}, "rules": {"no-var": "error", "eqeqeq": "error", "prefer-const": "error"}}) + "\n"
    else:
        files["eslint.config.js"] = "const js = require('@eslint/js');\nmodule.exports = [js.configs.recommended, { languageOptions: { sourceType: 'module', globals: { console: 'readonly' } }, rules: { 'no-var': 'error', eqeqeq: 'error', 'prefer-const': 'error' } }];\n"
    fmt = rng.choice(["", "", " --format unix", " --max-warnings 0"])
    p = _project(rng, files, old)
    try:
        rc, out = p.run(f"node_modules/.bin/eslint{fmt} src", timeout=120)
    finally:
        p.close()
    if rc == 0 or "rror" not in out and "problem" not in out:
        return None
    return Capture("node", "node", "eslint", "lint", "eslint_rules", rng.choice([f"npx eslint{fmt} .", "npm run lint", f"eslint{fmt} src", "yarn lint"]), out, rc, _VERS["eslint5" if old else "eslint"])


def prettier_failure(rng: random.Random) -> Capture | None:
    files = {}
    for _ in range(rng.randint(1, 6)):
        w = noun(rng)
        ext, code = rng.choice([
            ("js", f"const {w} = {{a:1,b:2}}\n"), ("ts", f"export function {camel(snake(rng, 2))}( x:number ){{return x}}\n"), ("json", f"{{\"{w}\":1,\"b\":[1,2,3]}}\n"),
            ("css", f".{w}{{color:red;margin:0 auto}}\n"), ("md", f"# {w}\n* item\n* item\n"), ("jsx", f"export const {pascal(w)} = () => <div className='{w}'><span>{{1}}</span></div>\n"),
            ("yaml", f"{w}:   1\nlist: [ a,b ]\n"), ("js", f"export default function ({w}) {{\n    return {w}.map(x=>x*2)\n}}\n"),
        ])
        files[f"src/{rng.choice(['components', 'lib', 'utils', 'pages', 'hooks'])}/{w}.{ext}"] = code
    files["src/ok.js"] = "export const ok = 1;\n"
    cmd = rng.choice(["prettier --check .", "prettier --check 'src/**/*.{js,ts,jsx,json,css,md}'", "prettier -c src"])
    p = _project(rng, files, False)
    try:
        rc, out = p.run("node_modules/.bin/" + cmd.replace("'", "\""), timeout=120)
    finally:
        p.close()
    if rc == 0:
        return None
    return Capture("node", "node", "prettier", "lint", "prettier_check", rng.choice(["npx " + cmd, "npm run format:check", cmd]), out, rc, _VERS["prettier"])


# ---------------------------------------------------------------- dependency (real registry)

_ERESOLVE = [
    {"react": "17.0.2", "react-dom": "18.3.1"},
    {"react": "16.14.0", "@testing-library/react": "14.3.1"},
    {"eslint": "9.5.0", "eslint-config-airbnb": "19.0.4"},
    {"typescript": "5.5.3", "@typescript-eslint/parser": "5.62.0", "@typescript-eslint/eslint-plugin": "5.62.0"},
    {"webpack": "4.47.0", "webpack-cli": "5.1.4"},
    {"vue": "2.7.16", "@vue/test-utils": "2.4.6"},
    {"@angular/core": "16.2.12", "@angular/common": "17.3.0"},
    {"jest": "29.7.0", "ts-jest": "27.1.5"},
    {"react": "18.3.1", "react-test-renderer": "17.0.2"},
    {"eslint": "8.57.0", "eslint-plugin-react-hooks": "5.1.0-rc-1", "eslint-config-next": "13.0.0"},
    {"next": "14.2.5", "react": "17.0.2"},
    {"@storybook/react": "7.6.20", "react": "15.7.0"},
    {"graphql": "14.7.0", "@apollo/server": "4.10.4"},
    {"mongoose": "8.5.1", "@nestjs/mongoose": "9.2.2", "@nestjs/core": "10.3.10"},
]
_BAD = [("lodash", "9.9.9"), ("expresss", "4.19.2"), ("react-domm", "18.3.1"), ("left-pad-ng", "1.0.0"), ("typescript", "8.5.0"), ("axios", "2.99.0"), ("@types/nodee", "20.0.0"), ("jest", "99.0.0"), ("@acme-internal/ui-kit", "1.4.2"), ("webpack", "6.0.0-beta.99")]


def npm_dependency(rng: random.Random) -> Capture | None:
    kind = rng.choice(["eresolve", "eresolve", "notarget", "e404", "ci_out_of_sync", "ci_no_lock", "engines"])
    name = noun(rng)
    deps: dict[str, str] = {}
    files: dict[str, str] = {}
    extra = rng.sample([("dotenv", "16.4.5"), ("uuid", "9.0.1"), ("chalk", "4.1.2"), ("commander", "12.1.0"), ("ms", "2.1.3")], rng.randint(0, 2))
    deps.update(dict(extra))
    if kind == "eresolve":
        deps.update(rng.choice(_ERESOLVE))
        cmd_run, cmd = "npm install --package-lock-only --no-audit", rng.choice(["npm install", "npm i", "npm install --no-audit"])
    elif kind in ("notarget", "e404"):
        bad = rng.choice(_BAD)
        deps[bad[0]] = bad[1]
        cmd_run, cmd = "npm install --package-lock-only --no-audit", rng.choice(["npm install", "npm ci", "npm i --no-fund"])
    elif kind == "ci_out_of_sync":
        deps["ms"] = "2.1.3"
        files["package-lock.json"] = json.dumps({"name": name, "version": "1.0.0", "lockfileVersion": 3, "requires": True, "packages": {"": {"name": name, "version": "1.0.0", "dependencies": {"ms": "2.1.2"}}, "node_modules/ms": {"version": "2.1.2", "resolved": "https://registry.npmjs.org/ms/-/ms-2.1.2.tgz", "integrity": "sha512-sGkPx+VjMtmA6MX27oA4FBFELFCZZ4S4XqeGOXCv68tT+jb3vk/RyaKWP0PTKyWtmLSM0b+adUTEvbs1PEaH2w=="}}}, indent=2) + "\n"
        deps[rng.choice(["dotenv", "uuid", "chalk"])] = rng.choice(["16.4.5", "9.0.1", "4.1.2"])
        cmd_run, cmd = "npm ci --dry-run --no-audit", "npm ci"
    elif kind == "ci_no_lock":
        cmd_run, cmd = "npm ci --no-audit", "npm ci"
    else:
        deps["ms"] = "2.1.3"
        files[".npmrc"] = "engine-strict=true\n"
        cmd_run, cmd = "npm install --package-lock-only --no-audit", "npm install"
    pkg = {"name": name, "version": "1.0.0", "private": True, "dependencies": deps}
    if kind == "engines":
        pkg["engines"] = {"node": rng.choice([">=22.0.0", "^18.0.0", ">=24", "16.x"])}
    p = Project(name)
    try:
        p.write({"package.json": json.dumps(pkg, indent=2) + "\n", **files})
        rc, out = p.run(cmd_run, timeout=240)
    finally:
        p.close()
    if rc == 0:
        return None
    # npm names its debug log under the home directory; keep the shape, not this machine's path.
    return Capture("node", "node", "npm", "dependency", f"npm_{kind}", cmd, out.replace("--package-lock-only ", "").replace(" --dry-run", ""), rc, _VERS["npm"])


def jest_missing_package(rng: random.Random) -> Capture | None:
    """A test suite requires a package that is not installed: dependency."""
    pkg = rng.choice(["axios", "lodash", "dayjs", "uuid", "supertest", "nock", "msw", "@faker-js/faker", "express", "react", "zod", "jsonwebtoken", "pg", "redis", "ioredis"])
    w = noun(rng)
    files = {f"src/{w}.js": f"const x = require('{pkg}');\nmodule.exports = {{ {w}: () => x }};\n", f"__tests__/{w}.test.js": f"const {{ {w} }} = require('../src/{w}');\n\ntest('{w} loads', () => {{\n  expect({w}()).toBeDefined();\n}});\n",
             f"__tests__/{noun(rng)}.test.js": "test('adds', () => {\n  expect(1 + 1).toBe(2);\n});\n"}
    p = _project(rng, files, rng.random() < 0.5)
    try:
        rc, out = p.run("node_modules/.bin/jest --ci", timeout=180)
    finally:
        p.close()
    if rc == 0 or "Cannot find module" not in out:
        return None
    return Capture("node", "node", "jest", "dependency", "jest_missing_package", rng.choice(["npx jest --ci", "npm test", "yarn test"]), out, rc, _VERS["jest"])


_VERS: dict[str, str] = {}


def _versions() -> dict[str, str]:
    def pkgv(root, name):
        return json.load(open(f"{root}/node_modules/{name}/package.json"))["version"]

    return {
        "jest": f"jest {pkgv(NODE_TOOLS, 'jest')}", "jest5": f"jest {pkgv(NODE5, 'jest')}", "mocha": f"mocha {pkgv(NODE_TOOLS, 'mocha')}", "vitest": f"vitest {pkgv(NODE_TOOLS, 'vitest')}",
        "tsc": f"typescript {pkgv(NODE_TOOLS, 'typescript')}", "tsc5": f"typescript {pkgv(NODE5, 'typescript')}", "webpack": f"webpack {pkgv(NODE_TOOLS, 'webpack')}", "vite": f"vite {pkgv(NODE_TOOLS, 'vite')}",
        "eslint": f"eslint {pkgv(NODE_TOOLS, 'eslint')}", "eslint5": f"eslint {pkgv(NODE5, 'eslint')}", "prettier": f"prettier {pkgv(NODE_TOOLS, 'prettier')}", "npm": "npm " + version_of("npm --version"),
    }


MAKERS = [jest_failure, jest_failure, jest_failure, mocha_failure, vitest_failure, tsc_failure, tsc_failure, tsc_failure, bundler_failure, bundler_failure,
          eslint_failure, eslint_failure, prettier_failure, npm_dependency, npm_dependency, npm_dependency, jest_missing_package]

if __name__ == "__main__":
    _VERS.update(_versions())
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 350
    main_loop("node", MAKERS, n, seed=2202, only=sys.argv[2] if len(sys.argv) > 2 else None)
