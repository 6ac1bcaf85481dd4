"""Haskell failures: `cabal build` (GHC errors), `cabal test` with hspec, the cabal solver, hlint,
and cabal failing to reach Hackage, run here from Debian 12's ghc, cabal-install, hlint and
libghc-hspec-dev.

    python3 fam_haskell.py [N] [maker-filter]

Hackage is not reachable from here. cabal runs with a configuration that names no package
repository, so it resolves against the packages GHC has installed (base, containers, text,
hspec, ...): its solver fails for real on version bounds and unknown packages. Without that
configuration it tries Hackage and fails as an unreachable mirror does (infrastructure).
"""

from __future__ import annotations

import random
import sys

from common import Capture, Project, main_loop, noun, pascal, snake, version_of

_V: dict[str, str] = {}


def _v(tool: str) -> str:
    if tool not in _V:
        _V[tool] = version_of({"cabal": "cabal --version | head -1", "ghc": "ghc --version", "hlint": "hlint --version"}[tool])
    return _V[tool]


def _camel(s: str) -> str:
    a, *rest = s.split("_")
    return a + "".join(w.capitalize() for w in rest)


def _cabal(name: str, mods: list[str], deps: str = "base >=4 && <5, containers", test: bool = False) -> str:
    s = f"cabal-version: 2.4\nname: {name}\nversion: 0.{len(name) % 7}.0.0\nbuild-type: Simple\n\nlibrary\n  exposed-modules: {', '.join(mods)}\n  build-depends: {deps}\n  hs-source-dirs: src\n  default-language: Haskell2010\n  ghc-options: -Wall\n"
    if test:
        s += f"\ntest-suite spec\n  type: exitcode-stdio-1.0\n  main-is: Spec.hs\n  hs-source-dirs: test\n  build-depends: base, hspec, {name}\n  default-language: Haskell2010\n"
    return s


def _env(p: Project) -> dict:
    return {"HOME": str(p.root / ".home")}


def _cfg(p: Project) -> str:
    cfg = p.root / ".cabal-offline.config"
    cfg.write_text(f"jobs: 1\nremote-repo-cache: {p.root / '.home/packages'}\n")
    return f"--config-file={cfg}"


def _tidy(out: str) -> str:
    """Drop what only the offline configuration prints; the home directory reads as a runner's."""
    for s in ("Config file path source is default config file.\n", "Warning: No remote package servers have been specified. Usually you would have\none specified in the config file.\n"):
        out = out.replace(s, "")
    return out.replace("{WS}/.home", "{HOME}")


def cabal_build(rng: random.Random) -> Capture | None:
    name = f"{noun(rng)}-{noun(rng)}"
    mod = pascal(noun(rng))
    f = _camel(snake(rng, 2))
    kind = rng.choice(["type_mismatch", "not_in_scope", "missing_instance", "parse", "arity", "ambiguous", "werror"])
    src = {
        "type_mismatch": f"module {mod} ({f}) where\n\n{f} :: Int -> Int\n{f} x = x + \"{noun(rng)}\"\n",
        "not_in_scope": f"module {mod} ({f}) where\n\n{f} :: [Int] -> Int\n{f} xs = sum xs + {_camel(snake(rng, 2))} xs\n",
        "missing_instance": f"module {mod} ({f}, {pascal(noun(rng))}(..)) where\n\ndata {pascal(noun(rng))} = {pascal(noun(rng))} Int\n\n{f} :: Int -> String\n{f} x = show ({pascal(noun(rng))} x)\n",
        "parse": f"module {mod} ({f}) where\n\n{f} :: Int -> Int\n{f} x =\n  let y = x * 2\n  in if y > 3 then y\n",
        "arity": f"module {mod} ({f}) where\n\nimport qualified Data.Map as Map\n\n{f} :: Map.Map String Int -> Int\n{f} m = Map.findWithDefault m \"{noun(rng)}\"\n",
        "ambiguous": f"module {mod} ({f}) where\n\n{f} :: String -> String\n{f} s = show (read s)\n",
        "werror": f"{{-# OPTIONS_GHC -Werror #-}}\nmodule {mod} ({f}) where\n\nimport Data.List (sort)\n\n{f} :: Int -> Int\n{f} x = x\n",
    }[kind]
    if kind == "missing_instance":
        ty = src.split("data ")[1].split(" ")[0]
        src = src.replace(src.split("show (")[1].split(" ")[0], ty, 1)
    p = Project(name).write({f"{name}.cabal": _cabal(name, [mod]), f"src/{mod}.hs": src})
    try:
        rc, out = p.run(f"cabal {_cfg(p)} build", env=_env(p), timeout=240)
        if rc == 0 or "rror" not in out:
            return None
        out = _tidy(out)
        return Capture("haskell", "haskell", "cabal build", "build", f"ghc_{kind}", rng.choice(["cabal build", "cabal build all", "cabal v2-build --enable-tests"]), out, rc, _v("cabal") + "; " + _v("ghc"))
    finally:
        p.close()


def cabal_test(rng: random.Random) -> Capture | None:
    name = f"{noun(rng)}-{noun(rng)}"
    mod = pascal(noun(rng))
    specs, impls, kinds = [], [], []
    for _ in range(rng.randint(1, 3)):
        f = _camel(snake(rng, 2))
        x, y = rng.randint(2, 300), rng.randint(2, 300)
        kind = rng.choice(["shouldBe", "list", "maybe", "throw", "satisfy", "string"])
        kinds.append(kind)
        impl, spec = {
            "shouldBe": (f"{f} :: Int -> Int -> Int\n{f} a b = a * b + 1", f"{f} {x} {y} `shouldBe` {x * y}"),
            "list": (f"{f} :: [Int] -> [Int]\n{f} = filter (> {x % 50})", f"{f} [{x % 50}, {y}] `shouldBe` [{x % 50}, {y}]"),
            "maybe": (f"{f} :: String -> Maybe Int\n{f} _ = Nothing", f"{f} \"{noun(rng)}\" `shouldBe` Just {x}"),
            "throw": (f"{f} :: [Int] -> Int\n{f} = head", f"evaluate ({f} []) `shouldThrow` anyErrorCall"),
            "satisfy": (f"{f} :: Int -> Int\n{f} = negate", f"{f} {x} `shouldSatisfy` (> 0)"),
            "string": (f"{f} :: String -> String\n{f} s = s ++ \"-{noun(rng)}\"", f"{f} \"{noun(rng)}\" `shouldBe` \"{noun(rng)}\""),
        }[kind]
        impls.append(impl)
        specs.append(f"  describe \"{f}\" $ do\n    it \"{rng.choice(['works', 'handles the usual case', 'returns the expected value', 'keeps order'])}\" $ do\n      {spec}\n    it \"is total\" $ do\n      True `shouldBe` True\n")
    exports = ", ".join(i.split(" ::")[0] for i in impls)
    files = {f"{name}.cabal": _cabal(name, [mod], test=True), f"src/{mod}.hs": f"module {mod} ({exports}) where\n\n" + "\n\n".join(impls) + "\n",
             "test/Spec.hs": f"import Test.Hspec\nimport Control.Exception (evaluate)\nimport {mod}\n\nmain :: IO ()\nmain = hspec $ do\n" + "".join(specs)}
    p = Project(name).write(files)
    try:
        rc, out = p.run(f"cabal {_cfg(p)} test", env=_env(p), timeout=300)
        if rc == 0 or "failure" not in out:
            return None
        out = _tidy(out)
        return Capture("haskell", "haskell", "cabal test", "test", "hspec_" + "+".join(sorted(set(kinds))), rng.choice(["cabal test", "cabal test --test-show-details=direct", "cabal v2-test"]), out, rc, _v("cabal") + "; " + _v("ghc"))
    finally:
        p.close()


def cabal_solver(rng: random.Random) -> Capture | None:
    name = f"{noun(rng)}-{noun(rng)}"
    mod = pascal(noun(rng))
    kind = rng.choice(["unknown", "bounds", "base"])
    deps = {"unknown": f"base >=4 && <5, {rng.choice(['aeson >=2.0', 'lens', 'servant-server', 'http-client', 'yaml', 'optparse-applicative >=0.17', 'mtl', 'vector'])}",
            "bounds": f"base >=4 && <5, {rng.choice(['containers >=0.7', 'text >=2.0', 'bytestring >=0.12', 'hspec >=2.11'])}",
            "base": f"base >=4.{rng.randint(17, 19)} && <5"}[kind]
    p = Project(name).write({f"{name}.cabal": _cabal(name, [mod], deps=deps), f"src/{mod}.hs": f"module {mod} where\n"})
    try:
        rc, out = p.run(f"cabal {_cfg(p)} build", env=_env(p), timeout=120)
        if rc == 0 or "Could not resolve" not in out:
            return None
        out = _tidy(out)
        return Capture("haskell", "haskell", "cabal", "dependency", f"cabal_{kind}", rng.choice(["cabal build", "cabal build --only-dependencies", "cabal v2-build all"]), out, rc, _v("cabal"))
    finally:
        p.close()


def cabal_offline(rng: random.Random) -> Capture | None:
    name = f"{noun(rng)}-{noun(rng)}"
    p = Project(name).write({f"{name}.cabal": _cabal(name, ["Lib"]), "src/Lib.hs": "module Lib where\n"})
    try:
        cmd = rng.choice(["cabal update", "cabal build"])
        rc, out = p.run(cmd, env=_env(p), timeout=120)
        if rc == 0:
            return None
        out = _tidy(out)
        return Capture("haskell", "haskell", "cabal", "infrastructure", "hackage_unreachable", cmd, out, rc, _v("cabal"))
    finally:
        p.close()


def hlint_failure(rng: random.Random) -> Capture | None:
    mod = pascal(noun(rng))
    fs = [f"{_camel(snake(rng, 2))} x = if x then True else False", f"{_camel(snake(rng, 2))} xs = map (\\x -> x) xs", f"{_camel(snake(rng, 2))} = concat (map show [1, 2 :: Int])",
          f"{_camel(snake(rng, 2))} m = case m of\n  Just v -> v\n  Nothing -> 0", f"{_camel(snake(rng, 2))} xs = length xs == 0", f"{_camel(snake(rng, 2))} x = not (x == 1)", f"{_camel(snake(rng, 2))} f xs = mapM_ f xs >> return ()",
          f"{_camel(snake(rng, 2))} = (\\a b -> a + b)"]
    p = Project(noun(rng)).write({f"src/{mod}.hs": f"module {mod} where\n\n" + "\n\n".join(rng.sample(fs, rng.randint(1, 4))) + "\n"})
    try:
        rc, out = p.run("hlint src")
        if rc == 0:
            return None
        return Capture("haskell", "haskell", "hlint", "lint", "hlint", rng.choice(["hlint src", "hlint .", "hlint src test --no-exit-code=false"]), out, rc, _v("hlint"))
    finally:
        p.close()


MAKERS = [cabal_build, cabal_build, cabal_test, cabal_test, cabal_solver, hlint_failure, cabal_build, cabal_test, cabal_offline]

if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 140
    main_loop("haskell", MAKERS, n, 5303, sys.argv[2] if len(sys.argv) > 2 else None)
