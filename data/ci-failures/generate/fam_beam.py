"""Elixir and Erlang failures: `mix test` (ExUnit), `mix compile`, `mix format --check-formatted`,
mix dependency checks, rebar3 eunit / compile / dependency resolution, run here from Debian 12's
elixir, erlang and rebar3 packages.

    python3 fam_beam.py [N] [maker-filter]

Hex is not reachable from here: dependency rows come from path dependencies whose versions do not
match, a Hex package with no Hex installed, and rebar3 packages that no repository has.
"""

from __future__ import annotations

import random
import sys

from common import Capture, Project, main_loop, noun, pascal, snake, version_of

_V: dict[str, str] = {}


def _v(tool: str) -> str:
    if tool not in _V:
        _V[tool] = version_of({"mix": "elixir --version | tail -1", "rebar3": "rebar3 --version"}[tool])
    return _V[tool]


def _env(p: Project) -> dict:
    return {"MIX_HOME": str(p.root / ".mix"), "HEX_HOME": str(p.root / ".hex"), "HOME": str(p.root), "MIX_ENV": "test"}


def _mix_exs(app: str, deps: str = "[]") -> str:
    mod = pascal(app)
    return f'defmodule {mod}.MixProject do\n  use Mix.Project\n\n  def project do\n    [app: :{app}, version: "0.{len(app) % 9}.0", elixir: "~> 1.14", start_permanent: Mix.env() == :prod, deps: deps()]\n  end\n\n  def application, do: [extra_applications: [:logger]]\n\n  defp deps, do: {deps}\nend\n'


def _funcs(rng: random.Random, mod: str) -> tuple[str, list[str], list[str]]:
    """A module with a few functions, some tests that pass and some that fail."""
    src, tests, kinds = [], [], []
    for _ in range(rng.randint(1, 3)):
        f = snake(rng, 2)
        x, y = rng.randint(2, 300), rng.randint(2, 300)
        w = noun(rng)
        kind = rng.choice(["eq", "match", "raise", "refute", "in", "map", "nomatch", "arith"])
        kinds.append(kind)
        impl, t = {
            "eq": (f"def {f}(a, b), do: a * b + 1", f"assert {mod}.{f}({x}, {y}) == {x * y}"),
            "match": (f"def {f}(id), do: {{:error, :{w}_not_found, id}}", f"assert {{:ok, %{{id: {x}}}}} = {mod}.{f}({x})"),
            "raise": (f"def {f}(v), do: String.trim(v)", f"assert_raise ArgumentError, fn -> {mod}.{f}(\"\") end"),
            "refute": (f"def {f}(xs), do: Enum.empty?(xs) or true", f"refute {mod}.{f}([{x}, {y}])"),
            "in": (f"def {f}(s), do: String.split(s, \",\")", f"assert \"{w}\" in {mod}.{f}(\"{w}, {noun(rng)}\")"),
            "map": (f"def {f}(id), do: %{{id: id, {w}: \"{w}-#{{id}}\", active: false}}", f"assert {mod}.{f}({x}) == %{{id: {x}, {w}: \"{w}-{x}\", active: true}}"),
            "nomatch": (f"def {f}(:{w}), do: {x}", f"assert {mod}.{f}(:{noun(rng)}x) == {x}"),
            "arith": (f"def {f}(m), do: Map.fetch!(m, :{w}) * 2", f"assert {mod}.{f}(%{{total: {x}}}) == {2 * x}"),
        }[kind]
        src.append(f"  {impl}")
        tests.append(f"  test \"{f.replace('_', ' ')}\" do\n    {t}\n  end\n")
        tests.append(f"  test \"{f.replace('_', ' ')} keeps its input\" do\n    assert true\n  end\n")
    return "\n".join(src), tests, kinds


def mix_test(rng: random.Random) -> Capture | None:
    app = snake(rng, 1).split("_")[0] + "_" + noun(rng)
    mod = pascal(app)
    sub = pascal(noun(rng))
    src, tests, kinds = _funcs(rng, f"{mod}.{sub}")
    files = {"mix.exs": _mix_exs(app), f"lib/{app}/{sub.lower()}.ex": f"defmodule {mod}.{sub} do\n  @moduledoc false\n{src}\nend\n", "test/test_helper.exs": "ExUnit.start()\n",
             f"test/{app}/{sub.lower()}_test.exs": f"defmodule {mod}.{sub}Test do\n  use ExUnit.Case, async: true\n\n" + "\n".join(tests) + "end\n"}
    p = Project(app).write(files)
    try:
        flags = rng.choice(["", " --trace", " --cover", " --warnings-as-errors" if False else ""])
        rc, out = p.run(f"mix test{flags}", env=_env(p), timeout=180)
        if rc == 0 or "failure" not in out:
            return None
        return Capture("beam", "elixir", "mix test", "test", "exunit_" + "+".join(sorted(set(kinds))), rng.choice(["mix test", f"mix test{flags}", "mix test --color=false"]), out, rc, _v("mix"))
    finally:
        p.close()


def mix_compile(rng: random.Random) -> Capture | None:
    app = noun(rng) + "_" + noun(rng)
    mod = pascal(app)
    f = snake(rng, 2)
    kind = rng.choice(["undefined_function", "syntax", "undefined_var", "warnings_as_errors", "missing_end", "behaviour"])
    body = {
        "undefined_function": f"  def {f}(x), do: {snake(rng, 2)}(x) + 1",
        "syntax": f"  def {f}(x) do\n    x |> Enum.map(fn v -> v * 2 )\n  end",
        "undefined_var": f"  def {f}(x) do\n    x + {noun(rng)}_count\n  end",
        "warnings_as_errors": f"  def {f}(x) do\n    unused_{noun(rng)} = x * 2\n    x\n  end",
        "missing_end": f"  def {f}(x) do\n    if x > 1 do\n      x\n  end",
        "behaviour": f"  use GenServer\n  def {f}(x), do: x\n  def handle_call(:get, _from, s), do: {{:reply, s}}",
    }[kind]
    files = {"mix.exs": _mix_exs(app), f"lib/{app}.ex": f"defmodule {mod} do\n  @moduledoc false\n{body}\nend\n"}
    p = Project(app).write(files)
    try:
        cmd = "mix compile --warnings-as-errors" if kind == "warnings_as_errors" or rng.random() < 0.3 else "mix compile"
        rc, out = p.run(cmd + " --force", env=_env(p), timeout=180)
        if rc == 0:
            return None
        return Capture("beam", "elixir", "mix compile", "build", f"mix_{kind}", cmd, out, rc, _v("mix"))
    finally:
        p.close()


def mix_format(rng: random.Random) -> Capture | None:
    app = noun(rng) + "_" + noun(rng)
    mod = pascal(app)
    fs = [f"  def {snake(rng, 2)}( a,b ) do\n      a+b\n  end\n", f"  def {snake(rng, 2)}(x), do: [ x,x ]\n", f"  def {snake(rng, 2)}(m) do\n    Map.get(m,:{noun(rng)},   nil)\n  end\n"]
    files = {"mix.exs": _mix_exs(app), ".formatter.exs": '[inputs: ["{mix,.formatter}.exs", "{config,lib,test}/**/*.{ex,exs}"]]\n', f"lib/{app}.ex": f"defmodule {mod} do\n" + "".join(rng.sample(fs, rng.randint(1, 3))) + "end\n"}
    p = Project(app).write(files)
    try:
        rc, out = p.run("mix format --check-formatted", env=_env(p), timeout=120)
        if rc == 0:
            return None
        return Capture("beam", "elixir", "mix format", "lint", "mix_format", "mix format --check-formatted", out, rc, _v("mix"))
    finally:
        p.close()


def mix_deps(rng: random.Random) -> Capture | None:
    app = noun(rng) + "_" + noun(rng)
    dep = noun(rng) + "_" + rng.choice(["client", "core", "utils", "ex"])
    kind = rng.choice(["path_version", "hex_missing", "not_fetched"])
    files = {f"../{dep}/mix.exs": _mix_exs(dep).replace(f'version: "0.{len(dep) % 9}.0"', 'version: "1.0.0"'), f"../{dep}/lib/{dep}.ex": f"defmodule {pascal(dep)} do\nend\n"}
    hexdep = rng.choice(["jason", "plug", "phoenix", "ecto", "tesla", "decimal", "telemetry", "postgrex"])
    deps = {"path_version": f'[{{:{dep}, "~> {rng.randint(2, 4)}.0", path: "../{dep}"}}]', "hex_missing": f'[{{:{hexdep}, "~> {rng.randint(1, 3)}.{rng.randint(0, 9)}"}}]', "not_fetched": f'[{{:{hexdep}, "~> 1.0"}}]'}[kind]
    files["mix.exs"] = _mix_exs(app, deps)
    files[f"lib/{app}.ex"] = f"defmodule {pascal(app)} do\nend\n"
    files["test/test_helper.exs"] = "ExUnit.start()\n"
    p = Project(app).write(files)
    try:
        cmd = {"path_version": "mix test", "hex_missing": "mix deps.get", "not_fetched": "mix compile"}[kind]
        env = _env(p)
        if kind == "not_fetched":
            (p.root / "deps" / hexdep).mkdir(parents=True)
        rc, out = p.run(cmd + " </dev/null", env=env, timeout=120)
        if rc == 0 or "**" not in out:
            return None
        return Capture("beam", "elixir", "mix deps", "dependency", f"mix_{kind}", cmd, out, rc, _v("mix"))
    finally:
        p.close()


def rebar3(rng: random.Random) -> Capture | None:
    app = noun(rng) + "_" + noun(rng)
    f = snake(rng, 2)
    x, y = rng.randint(2, 300), rng.randint(2, 300)
    kind = rng.choice(["eunit", "eunit", "compile", "compile_unbound", "deps"])
    src = f"-module({app}).\n-export([{f}/2]).\n\n{f}(A, B) -> A * B + 1.\n"
    test = f"-module({app}_tests).\n-include_lib(\"eunit/include/eunit.hrl\").\n\n{f}_test() ->\n    ?assertEqual({x * y}, {app}:{f}({x}, {y})).\n\n{f}_ok_test() ->\n    ?assert(is_integer({app}:{f}(1, 1))).\n"
    if rng.random() < 0.4:
        test += f"\n{f}_match_test() ->\n    ?assertMatch({{ok, _}}, {app}:{f}({x}, 0)).\n"
    if kind == "compile":
        src = f"-module({app}).\n-export([{f}/2]).\n\n{f}(A, B) ->\n    C = A * B\n    C + 1.\n"
    elif kind == "compile_unbound":
        src = f"-module({app}).\n-export([{f}/2, {snake(rng, 2)}/1]).\n\n{f}(A, _B) -> A + {pascal(noun(rng))}.\n"
    deps = f'{{deps, [{{{rng.choice(["jsx", "cowboy", "hackney", "lager", "jiffy", "ranch"])}, "{rng.randint(1, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}"}}]}}.\n' if kind == "deps" else "{deps, []}.\n"
    files = {"rebar.config": "{erl_opts, [debug_info]}.\n" + deps, f"src/{app}.app.src": f'{{application, {app}, [{{vsn, "0.1.0"}}, {{applications, [kernel, stdlib]}}]}}.\n', f"src/{app}.erl": src, f"test/{app}_tests.erl": test}
    p = Project(app).write(files)
    try:
        cmd = {"eunit": "rebar3 eunit", "compile": "rebar3 compile", "compile_unbound": "rebar3 compile", "deps": rng.choice(["rebar3 compile", "rebar3 eunit"])}[kind]
        rc, out = p.run(cmd, env={"HOME": str(p.root), "REBAR_COLOR": "none", "TERM": "dumb"}, timeout=180)
        if rc == 0:
            return None
        label = {"eunit": "test", "compile": "build", "compile_unbound": "build", "deps": "dependency"}[kind]
        if label == "test" and "Failed:" not in out and "failed" not in out.lower():
            return None
        return Capture("beam", "erlang", "rebar3", label, f"rebar3_{kind}", cmd, out, rc, _v("rebar3"))
    finally:
        p.close()


MAKERS = [mix_test, mix_test, mix_compile, mix_format, mix_deps, rebar3, rebar3]

if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 150
    main_loop("beam", MAKERS, n, 5202, sys.argv[2] if len(sys.argv) > 2 else None)
