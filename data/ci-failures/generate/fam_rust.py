"""Rust failures: cargo build / test / clippy / fmt on std-only crates, and cargo's resolver.

crates.io is not reachable here: a crate that needs the registry fails as a runner without
network does (infrastructure). Resolution failures that need no network (path dependencies with
the wrong version or feature, a stale Cargo.lock under --locked) are dependency failures.
"""

from __future__ import annotations

import random
import sys

from common import Capture, Project, distinct, main_loop, noun, pascal, snake, version_of

CARGO_ENV = {"CARGO_TARGET_DIR": "/tmp/sfgen/cargo-target", "CARGO_HOME": "/root/.cargo", "RUSTUP_HOME": "/root/.rustup"}


def _crate(rng: random.Random) -> str:
    return rng.choice([noun(rng), f"{noun(rng)}-{rng.choice(['core', 'rs', 'cli', 'server', 'types', 'utils'])}", f"{noun(rng)}_{noun(rng)}"])


def _toml(name: str, rng: random.Random, extra: str = "") -> str:
    return f"[package]\nname = \"{name}\"\nversion = \"{rng.randint(0, 2)}.{rng.randint(0, 30)}.{rng.randint(0, 9)}\"\nedition = \"{rng.choice(['2021', '2021', '2018'])}\"\n\n[dependencies]\n{extra}"


def _build_errors(rng: random.Random) -> str:
    f = snake(rng, 2)
    s = pascal(snake(rng, 2))
    w = noun(rng)
    x = rng.randint(1, 99)
    pieces = [
        f"pub fn {f}(a: u32) -> String {{\n    a * {x}\n}}\n",
        f"pub fn {f}_a() -> i32 {{\n    let v = vec![{x}, {x + 1}];\n    let w = v;\n    v.len() as i32\n}}\n",
        f"pub fn {f}_b() {{\n    let mut s = String::from(\"{w}\");\n    let r = &s;\n    s.push('x');\n    println!(\"{{}}\", r);\n}}\n",
        f"pub fn {f}_c() -> usize {{\n    undefined_{w}.len()\n}}\n",
        f"pub struct {s} {{ pub id: u64 }}\n\npub fn {f}_d(v: &{s}) -> &str {{\n    &v.name\n}}\n",
        f"pub fn {f}_e(x: Option<u32>) -> u32 {{\n    match x {{\n        Some(v) => v,\n    }}\n}}\n",
        "use std::collections::HashMapp;\n",
        f"pub fn {f}_f(a: i64, b: i64) -> i64 {{ a + b }}\npub fn {f}_g() -> i64 {{ {f}_f({x}) }}\n",
        f"pub fn {f}_h<T>(v: Vec<T>) -> T {{\n    let mut m = v[0];\n    for x in v {{ if x > m {{ m = x; }} }}\n    m\n}}\n",
        f"pub fn {f}_i() -> Result<u32, String> {{\n    let n: u32 = \"{x}\".parse()?;\n    Ok(n)\n}}\n",
        f"pub fn {f}_j(s: &str) -> &str {{\n    let owned = s.to_uppercase();\n    &owned\n}}\n",
        f"pub trait {s}Ext {{ fn {f}(&self) -> u8; }}\npub struct {s}Impl;\nimpl {s}Ext for {s}Impl {{}}\n",
        f"pub fn {f}_k() {{\n    let x: i32 = \"{w}\";\n}}\n",
        f"pub fn {f}_l(v: &Vec<u8>) -> u8 {{\n    v.iter().summ()\n}}\n",
    ]
    return "\n".join(rng.sample(pieces, rng.choice([1, 1, 2, 3])))


def cargo_build(rng: random.Random) -> Capture | None:
    name = _crate(rng)
    deny = rng.random() < 0.2
    src = _build_errors(rng)
    if deny:
        src = "#![deny(warnings)]\n\n" + f"pub fn {snake(rng, 2)}() -> u32 {{\n    let unused_{noun(rng)} = {rng.randint(1, 9)};\n    1\n}}\n"
    files = {"Cargo.toml": _toml(name, rng), "src/lib.rs": f"pub mod {noun(rng)};\n" if False else src}
    if rng.random() < 0.3:
        files["src/main.rs"] = f"fn main() {{\n    println!(\"{noun(rng)}\");\n}}\n"
    cmd = rng.choice(["cargo build", "cargo build --locked", "cargo build --release", "cargo check --all-targets", "cargo test --no-run", "cargo build --workspace --all-features"])
    p = Project(name)
    try:
        p.write(files)
        rc, out = p.run(cmd.replace("--locked", ""), env=CARGO_ENV, timeout=240)
    finally:
        p.close()
    if rc == 0:
        return None
    return Capture("rust", "rust", "cargo", "build", "deny_warnings" if deny else "compile_error", cmd, out, rc, _VERS["cargo"])


def _test_fault(rng: random.Random) -> tuple[str, str, str]:
    f = snake(rng, 2)
    x, y = rng.randint(2, 200), rng.randint(2, 200)
    w = noun(rng)
    return rng.choice([
        ("assert_eq", f"pub fn {f}(a: u32, b: u32) -> u32 {{ a * b + 1 }}\n", f"    #[test]\n    fn {f}_multiplies() {{\n        assert_eq!({f}({x}, {y}), {x * y});\n    }}\n"),
        ("assert_eq_str", f"pub fn {f}(s: &str) -> String {{ s.to_lowercase() }}\n", f"    #[test]\n    fn {f}_keeps_case() {{\n        assert_eq!({f}(\"{w.title()}\"), \"{w.title()}\");\n    }}\n"),
        ("assert_msg", f"pub fn {f}(v: &[i32]) -> bool {{ v.windows(2).all(|w| w[0] < w[1]) }}\n", f"    #[test]\n    fn {f}_sorted() {{\n        let v = vec![{x}, {y}, {x}];\n        assert!({f}(&v), \"expected {{:?}} to be sorted\", v);\n    }}\n"),
        ("unwrap_none", f"pub fn {f}(k: &str) -> Option<u32> {{ if k == \"{w}\" {{ Some({x}) }} else {{ None }} }}\n", f"    #[test]\n    fn {f}_finds() {{\n        assert_eq!({f}(\"{noun(rng)}x\").unwrap(), {x});\n    }}\n"),
        ("unwrap_err", f"pub fn {f}(s: &str) -> Result<u32, std::num::ParseIntError> {{ s.parse() }}\n", f"    #[test]\n    fn {f}_parses() {{\n        assert_eq!({f}(\"{x}.{y}\").unwrap(), {x});\n    }}\n"),
        ("should_panic", f"pub fn {f}(d: u32) -> u32 {{ if d == 0 {{ 0 }} else {{ 100 / d }} }}\n", f"    #[test]\n    #[should_panic(expected = \"division by zero\")]\n    fn {f}_panics() {{\n        {f}(0);\n    }}\n"),
        ("overflow", f"pub fn {f}(a: u8, b: u8) -> u8 {{ a + b }}\n", f"    #[test]\n    fn {f}_adds() {{\n        assert_eq!({f}({200 + x % 50}, {100 + y % 50}), 0);\n    }}\n"),
        ("index_oob", f"pub fn {f}(v: &[u32]) -> u32 {{ v[v.len()] }}\n", f"    #[test]\n    fn {f}_last() {{\n        assert_eq!({f}(&[{x}, {y}]), {y});\n    }}\n"),
        ("assert_ne", f"pub fn {f}(n: u64) -> u64 {{ n % {x} }}\n", f"    #[test]\n    fn {f}_nonzero() {{\n        assert_ne!({f}({x * 3}), 0);\n    }}\n"),
        ("float", f"pub fn {f}(a: f64) -> f64 {{ a * 0.1 }}\n", f"    #[test]\n    fn {f}_tenth() {{\n        assert_eq!({f}({x}.0 * 3.0), {x * 3}.0 / 10.0 + 0.5);\n    }}\n"),
    ])


def cargo_test(rng: random.Random) -> Capture | None:
    name = _crate(rng)
    code, tests, faults = [], [], []
    for fn in distinct(rng, lambda r: snake(r, 2), rng.randint(1, 6)):
        a = rng.randint(1, 50)
        code.append(f"pub fn {fn}(x: i64) -> i64 {{ x + {a} }}\n")
        tests.append(f"    #[test]\n    fn {fn}_works() {{\n        assert_eq!({fn}(1), {1 + a});\n    }}\n")
    for _ in range(rng.choice([1, 1, 2])):
        kind, c, t = _test_fault(rng)
        faults.append(kind)
        code.append(c)
        tests.append(t)
    files = {"Cargo.toml": _toml(name, rng), "src/lib.rs": "\n".join(code) + "\n#[cfg(test)]\nmod tests {\n    use super::*;\n\n" + "\n".join(tests) + "}\n"}
    flags = rng.choice(["", "--all", "--workspace", "--locked", "-- --nocapture", "--release", "--all-features"])
    p = Project(name)
    try:
        p.write(files)
        rc, out = p.run(f"cargo test {flags.replace('--locked', '')}", env=CARGO_ENV, timeout=300)
    finally:
        p.close()
    if rc == 0 or "test result: FAILED" not in out:
        return None
    return Capture("rust", "rust", "cargo test", "test", "+".join(faults), f"cargo test {flags}".strip(), out, rc, _VERS["cargo"])


def cargo_lint(rng: random.Random) -> Capture | None:
    name = _crate(rng)
    tool = rng.choice(["clippy", "clippy", "fmt"])
    f = snake(rng, 2)
    w = noun(rng)
    x = rng.randint(1, 99)
    if tool == "clippy":
        pieces = rng.sample([
            f"pub fn {f}_a(v: &Vec<u32>) -> usize {{\n    v.len()\n}}\n",
            f"pub fn {f}_b(s: String) -> bool {{\n    if s.len() == 0 {{ return true; }} else {{ return false; }}\n}}\n",
            f"pub fn {f}_c(x: Option<u32>) -> u32 {{\n    match x {{\n        Some(v) => v,\n        None => 0,\n    }}\n}}\n",
            f"pub fn {f}_d(v: &[u32]) -> u32 {{\n    let mut t = 0;\n    for i in 0..v.len() {{\n        t += v[i];\n    }}\n    t\n}}\n",
            f"pub fn {f}_e(a: f64) -> bool {{\n    a == {x}.5\n}}\n",
            f"pub fn {f}_f() -> String {{\n    let s = format!(\"{w}\");\n    return s;\n}}\n",
            f"pub fn {f}_g(a: &str) -> String {{\n    a.to_string().clone()\n}}\n",
            f"pub fn {f}_h(x: u32) -> bool {{\n    if x > {x} {{ true }} else {{ false }}\n}}\n",
            f"pub fn {f}_i(v: Vec<u32>) -> Vec<u32> {{\n    v.iter().map(|x| x.clone()).collect()\n}}\n",
            f"pub fn {f}_j(m: &std::collections::HashMap<String, u32>) -> bool {{\n    m.get(\"{w}\").is_some() == true\n}}\n",
            f"pub fn {f}_k() {{\n    let _x = 3.14159;\n    let y = Box::new(Vec::<u8>::new());\n    drop(y);\n}}\n",
        ], rng.randint(1, 4))
        files = {"Cargo.toml": _toml(name, rng), "src/lib.rs": "\n".join(pieces)}
        cmd = rng.choice(["cargo clippy -- -D warnings", "cargo clippy --all-targets --all-features -- -D warnings", "cargo clippy --workspace -- -D clippy::all"])
    else:
        files = {"Cargo.toml": _toml(name, rng), "src/lib.rs": f"pub fn {f}( a:u32,b :u32)->u32{{a+b}}\npub struct {pascal(w)}{{ pub id:u64,pub name : String }}\nimpl {pascal(w)} {{ pub fn new(id:u64)->Self{{ Self{{id,name:String::new()}} }} }}\n", "src/main.rs": f"fn main() {{ let v = vec![{x},{x + 1}]; println!(\"{{:?}}\",v); }}\n" if rng.random() < 0.5 else "fn main() {}\n"}
        cmd = rng.choice(["cargo fmt --check", "cargo fmt --all -- --check", "cargo fmt -- --check"])
    p = Project(name)
    try:
        p.write(files)
        rc, out = p.run(cmd, env=CARGO_ENV, timeout=240)
    finally:
        p.close()
    if rc == 0:
        return None
    return Capture("rust", "rust", "clippy" if tool == "clippy" else "rustfmt", "lint", f"cargo_{tool}", cmd, out, rc, _VERS["clippy" if tool == "clippy" else "rustfmt"])


def cargo_dependency(rng: random.Random) -> Capture | None:
    name = _crate(rng)
    dep = _crate(rng).replace("-", "_") + "_lib"
    kind = rng.choice(["path_version", "path_feature", "locked_stale", "offline_missing", "registry_unreachable", "bad_manifest_dep"])
    files = {f"crates/{dep}/Cargo.toml": f"[package]\nname = \"{dep}\"\nversion = \"1.{rng.randint(0, 9)}.0\"\nedition = \"2021\"\n", f"crates/{dep}/src/lib.rs": "pub fn f() {}\n", "src/lib.rs": f"pub fn {snake(rng, 2)}() {{}}\n"}
    label = "dependency"
    cmd = rng.choice(["cargo build", "cargo test", "cargo check"])
    if kind == "path_version":
        files["Cargo.toml"] = _toml(name, rng, f"{dep} = {{ path = \"crates/{dep}\", version = \"^{rng.randint(2, 5)}.0\" }}\n")
    elif kind == "path_feature":
        files["Cargo.toml"] = _toml(name, rng, f"{dep} = {{ path = \"crates/{dep}\", features = [\"{rng.choice(['serde', 'async', 'tls', 'derive', 'full'])}\"] }}\n")
    elif kind == "locked_stale":
        files["Cargo.toml"] = _toml(name, rng, f"{dep} = {{ path = \"crates/{dep}\" }}\n")
        files["Cargo.lock"] = f"# This file is automatically @generated by Cargo.\n# It is not intended for manual editing.\nversion = 3\n\n[[package]]\nname = \"{name}\"\nversion = \"0.1.0\"\n"
        cmd = rng.choice(["cargo build --locked", "cargo test --locked", "cargo build --frozen"])
    elif kind == "offline_missing":
        crate = rng.choice(["serde", "tokio", "anyhow", "regex", "clap", "rand", "thiserror", "itertools", "serde_json", "reqwest"])
        files["Cargo.toml"] = _toml(name, rng, f"{crate} = \"{rng.randint(0, 1)}.{rng.randint(0, 40)}\"\n")
        cmd = rng.choice(["cargo build --offline", "cargo build --frozen", "cargo test --offline"])
    elif kind == "registry_unreachable":
        crate = rng.choice(["serde", "tokio", "anyhow", "regex", "clap", "rand", "thiserror", "itertools", "serde_json", "reqwest", "tracing", "chrono"])
        files["Cargo.toml"] = _toml(name, rng, f"{crate} = \"{rng.randint(0, 1)}.{rng.randint(0, 40)}\"\n")
        label = "infrastructure"
    else:
        files["Cargo.toml"] = _toml(name, rng, f"{dep} = {{ path = \"crates/{dep}-missing\" }}\n")
    p = Project(name)
    try:
        p.write(files)
        rc, out = p.run(cmd, env=CARGO_ENV, timeout=120)
    finally:
        p.close()
    if rc == 0:
        return None
    return Capture("rust", "rust", "cargo", label, f"cargo_{kind}", cmd, out, rc, _VERS["cargo"])


_VERS: dict[str, str] = {}
MAKERS = [cargo_build, cargo_build, cargo_build, cargo_test, cargo_test, cargo_test, cargo_lint, cargo_lint, cargo_lint, cargo_dependency, cargo_dependency]

if __name__ == "__main__":
    _VERS.update(cargo=version_of("cargo --version"), clippy=version_of("cargo clippy --version"), rustfmt=version_of("rustfmt --version"))
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 280
    main_loop("rust", MAKERS, n, seed=4404, only=sys.argv[2] if len(sys.argv) > 2 else None)
