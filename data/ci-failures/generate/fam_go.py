"""Go failures with Debian's golang-go: go build, go test, go vet, gofmt, go mod.

The Go module proxy is not reachable from this machine, so a module that needs a download fails
the way it does on a runner whose network is gone (infrastructure); a go.mod/go.sum that
disagree with the code fail without the network (dependency).
"""

from __future__ import annotations

import random
import sys

from common import Capture, Project, distinct, main_loop, noun, pascal, snake, version_of

GOENV = {"GOPATH": "/tmp/sfgen/gopath", "GOCACHE": "/tmp/sfgen/gocache", "GOFLAGS": "-mod=mod", "GOPROXY": "off", "GOTOOLCHAIN": "local", "GO111MODULE": "on"}


def _mod(rng: random.Random) -> tuple[str, str]:
    org = rng.choice(["acme", "northwind", "kestrel-io", "orbitlabs", "cobalt-dev", "harborhq"])
    name = rng.choice([noun(rng), f"{noun(rng)}-{rng.choice(['svc', 'api', 'worker', 'cli'])}"])
    return f"github.com/{org}/{name}", name


def _pkgname(rng: random.Random) -> str:
    return rng.choice([noun(rng), noun(rng) + "s", noun(rng) + "util"])


def _ok_funcs(rng: random.Random, n: int) -> tuple[str, str]:
    code, tests = [], []
    for name in distinct(rng, lambda r: pascal(snake(r, 2)), n):
        a, b = rng.randint(1, 90), rng.randint(1, 90)
        code.append(f"func {name}(a, b int) int {{\n\treturn a + b\n}}\n")
        tests.append(f"func Test{name}(t *testing.T) {{\n\tif got := {name}({a}, {b}); got != {a + b} {{\n\t\tt.Fatalf(\"{name}() = %d, want %d\", got, {a + b})\n\t}}\n}}\n")
    return "\n".join(code), "\n".join(tests)


def _go_test_fault(rng: random.Random) -> tuple[str, str, str]:
    fn = pascal(snake(rng, 2))
    x, y = rng.randint(2, 300), rng.randint(2, 300)
    w = noun(rng)
    return rng.choice([
        ("errorf", f"func {fn}(a, b int) int {{\n\treturn a*b - 1\n}}\n", f"func Test{fn}(t *testing.T) {{\n\tgot := {fn}({x}, {y})\n\twant := {x * y}\n\tif got != want {{\n\t\tt.Errorf(\"{fn}({x}, {y}) = %d; want %d\", got, want)\n\t}}\n}}\n"),
        ("table", f"func {fn}(s string) string {{\n\treturn strings.ToUpper(s)\n}}\n", f"func Test{fn}(t *testing.T) {{\n\ttests := []struct{{ name, in, want string }}{{\n\t\t{{\"empty\", \"\", \"\"}},\n\t\t{{\"{w}\", \"{w}\", \"{w.title()}\"}},\n\t\t{{\"mixed\", \"a{x}\", \"A{x}\"}},\n\t}}\n\tfor _, tt := range tests {{\n\t\tt.Run(tt.name, func(t *testing.T) {{\n\t\t\tif got := {fn}(tt.in); got != tt.want {{\n\t\t\t\tt.Errorf(\"{fn}(%q) = %q, want %q\", tt.in, got, tt.want)\n\t\t\t}}\n\t\t}})\n\t}}\n}}\n"),
        ("panic_nil_map", f"type {pascal(w)} struct {{ items map[string]int }}\n\nfunc {fn}(c *{pascal(w)}, k string) {{\n\tc.items[k]++\n}}\n", f"func Test{fn}(t *testing.T) {{\n\tc := &{pascal(w)}{{}}\n\t{fn}(c, \"{w}\")\n}}\n"),
        ("panic_index", f"func {fn}(xs []int) int {{\n\treturn xs[len(xs)]\n}}\n", f"func Test{fn}(t *testing.T) {{\n\t_ = {fn}([]int{{{x}, {y}}})\n}}\n"),
        ("panic_nil_ptr", f"type {pascal(w)} struct {{ Name string }}\n\nfunc {fn}(p *{pascal(w)}) string {{\n\treturn p.Name\n}}\n", f"func Test{fn}(t *testing.T) {{\n\tif {fn}(nil) != \"\" {{\n\t\tt.Fatal(\"want empty\")\n\t}}\n}}\n"),
        ("deepequal", f"func {fn}(n int) []int {{\n\tout := []int{{}}\n\tfor i := 1; i < n; i++ {{\n\t\tout = append(out, i)\n\t}}\n\treturn out\n}}\n", f"func Test{fn}(t *testing.T) {{\n\twant := []int{{1, 2, 3, 4}}\n\tif got := {fn}(4); !reflect.DeepEqual(got, want) {{\n\t\tt.Errorf(\"got %v, want %v\", got, want)\n\t}}\n}}\n"),
        ("fatal_err", f"func {fn}(s string) (int, error) {{\n\treturn strconv.Atoi(s)\n}}\n", f"func Test{fn}(t *testing.T) {{\n\tv, err := {fn}(\"{x}.{y}\")\n\tif err != nil {{\n\t\tt.Fatalf(\"unexpected error: %v\", err)\n\t}}\n\t_ = v\n}}\n"),
        ("timeout", f"func {fn}() {{\n\tselect {{}}\n}}\n", f"func Test{fn}(t *testing.T) {{\n\t{fn}()\n}}\n"),
        ("race_style_deadlock", f"func {fn}() int {{\n\tch := make(chan int)\n\tch <- {x}\n\treturn <-ch\n}}\n", f"func Test{fn}(t *testing.T) {{\n\tif {fn}() != {x} {{\n\t\tt.Fail()\n\t}}\n}}\n"),
        ("skip_then_fail", f"func {fn}(f float64) float64 {{\n\treturn f * 1.1\n}}\n", f"func Test{fn}(t *testing.T) {{\n\tif got := {fn}({x}.5); got != {x}.5*1.2 {{\n\t\tt.Errorf(\"{fn}: got %.3f want %.3f\", got, {x}.5*1.2)\n\t}}\n}}\n"),
    ])


def go_test(rng: random.Random) -> Capture | None:
    mod, name = _mod(rng)
    files = {"go.mod": f"module {mod}\n\ngo 1.19\n"}
    pkgs = distinct(rng, _pkgname, rng.randint(1, 4))
    faults = []
    for i, pkg in enumerate(pkgs):
        code, tests = _ok_funcs(rng, rng.randint(1, 5))
        if i < rng.choice([1, 1, 2]):
            kind, fcode, ftest = _go_test_fault(rng)
            faults.append(kind)
            code += "\n" + fcode
            tests += "\n" + ftest
        imports = [m for m in ("strings", "strconv") if m + "." in code]
        timp = [m for m in ("reflect",) if m + "." in tests]
        files[f"internal/{pkg}/{pkg}.go"] = f"package {pkg}\n\n" + "".join(f"import \"{m}\"\n" for m in imports) + "\n" + code
        files[f"internal/{pkg}/{pkg}_test.go"] = f"package {pkg}\n\nimport (\n\t\"testing\"\n" + "".join(f"\t\"{m}\"\n" for m in timp) + ")\n\n" + tests
    flags = rng.choice(["", "-v", "-race", "-count=1", "-v -count=1", "-cover", "-timeout 3s", "-failfast"])
    if "timeout" in faults and "-timeout" not in flags:
        flags += " -timeout 3s"
    if "-race" in flags:
        flags = flags.replace("-race", "-count=1")  # the race detector needs cgo toolchain bits Debian's go lacks here
    p = Project(name)
    try:
        p.write(files)
        rc, out = p.run(f"go test {flags} ./...", env=GOENV, timeout=240)
        out = out.replace("/usr/lib/go-1.19", "{GOROOT}")
    finally:
        p.close()
    if rc == 0 or "FAIL" not in out:
        return None
    return Capture("go", "go", "go test", "test", "+".join(faults), f"go test {flags} ./...".replace("  ", " "), out, rc, _VERS["go"])


def go_build(rng: random.Random) -> Capture | None:
    mod, name = _mod(rng)
    pkg = _pkgname(rng)
    fn = pascal(snake(rng, 2))
    w = noun(rng)
    x = rng.randint(1, 99)
    errs = [
        f"func {fn}(a int) string {{\n\treturn a * {x}\n}}\n",
        f"func {fn}A() int {{\n\tunused{x} := {x}\n\treturn 1\n}}\n",
        f"func {fn}B() {{\n\tfmt.Println(\"{w}\")\n}}\n",
        f"func {fn}C(s string) int {{\n\treturn len(s) + undefined{pascal(w)}\n}}\n",
        f"func {fn}D() (int, error) {{\n\treturn {x}\n}}\n",
        f"type {pascal(w)} struct{{ ID int }}\n\nfunc {fn}E(v {pascal(w)}) string {{\n\treturn v.Name\n}}\n",
        f"func {fn}F() {{\n\tx := {x}\n\tx := {x + 1}\n\t_ = x\n}}\n",
        f"func {fn}G() int {{\n\tfor i := 0; i < {x}; i++ {{\n\t\tif i > 3 {{\n\t\t\treturn i\n\t\t}}\n\t}}\n}}\n",
        f"type {pascal(w)}er interface {{ {pascal(w)}() error }}\ntype impl{x} struct{{}}\n\nvar _ {pascal(w)}er = impl{x}{{}}\n",
        f"func {fn}H(m map[string]int) {{\n\tfor k, v := range m {{\n\t\t_ = k\n\t}}\n}}\n",
        f"func {fn}I() {{\n\tvar p *int = \"{w}\"\n\t_ = p\n}}\n",
        "import \"os\"\n",
        f"func {fn}J() int {{\n\treturn {fn}K({x}, {x})\n}}\n\nfunc {fn}K(a int) int {{ return a }}\n",
        f"func {fn}L() {{\n\tif x := {x}; x > 1 {{\n\t\treturn\n\t}}\n",
    ]
    chosen = rng.sample(errs, rng.choice([1, 1, 2, 3]))
    imports = [c for c in chosen if c.startswith("import")]
    body = [c for c in chosen if not c.startswith("import")]
    files = {"go.mod": f"module {mod}\n\ngo 1.19\n", f"internal/{pkg}/{pkg}.go": f"package {pkg}\n\n" + "".join(imports) + "\n" + "\n".join(body), f"cmd/{name}/main.go": f"package main\n\nimport \"{mod}/internal/{pkg}\"\n\nfunc main() {{\n\t_ = {pkg}.Ok\n}}\n", f"internal/{pkg}/ok.go": f"package {pkg}\n\nconst Ok = {x}\n"}
    tool = rng.choice(["go build ./...", "go build ./...", "go test ./...", f"go build -o bin/{name} ./cmd/{name}", "go install ./..."])
    p = Project(name)
    try:
        p.write(files)
        rc, out = p.run(tool.replace("go install", "go build"), env=GOENV, timeout=240)
        out = out.replace("/usr/lib/go-1.19", "{GOROOT}")
    finally:
        p.close()
    if rc == 0:
        return None
    # A compile error under `go test` still is a build failure: no test ran.
    return Capture("go", "go", "go build" if "build" in tool or "install" in tool else "go test", "build", "compile_error", tool, out, rc, _VERS["go"])


def go_vet_fmt(rng: random.Random) -> Capture | None:
    mod, name = _mod(rng)
    pkg = _pkgname(rng)
    fn = pascal(snake(rng, 2))
    w = noun(rng)
    tool = rng.choice(["vet", "vet", "gofmt"])
    if tool == "vet":
        pieces = rng.sample([
            f"func {fn}A(n int) {{\n\tfmt.Printf(\"{w}: %s\\n\", n)\n}}\n",
            f"func {fn}B(err error) {{\n\tfmt.Println(\"{w} failed: %v\", err)\n}}\n",
            f"type {pascal(w)} struct {{\n\tmu sync.Mutex\n\tn int\n}}\n\nfunc (c {pascal(w)}) {fn}C() int {{\n\treturn c.n\n}}\n",
            f"func {fn}D(x int) bool {{\n\treturn x == x\n}}\n",
            f"type {pascal(w)}Tag struct {{\n\tName string `json:name`\n}}\n",
            f"func {fn}E() {{\n\tvar wg sync.WaitGroup\n\tgo func() {{\n\t\twg.Add(1)\n\t\tdefer wg.Done()\n\t}}()\n\twg.Wait()\n}}\n",
            f"func {fn}F(s []int) {{\n\tfor i, v := range s {{\n\t\tgo func() {{ fmt.Sprint(i, v) }}()\n\t}}\n\t_ = fmt.Errorf(\"%d\", \"{w}\")\n}}\n",
            f"func {fn}G() {{\n\tfmt.Sprintf(\"{w}\")\n\treturn\n\tfmt.Println(\"unreachable\")\n}}\n",
        ], rng.randint(1, 3))
        src = f"package {pkg}\n\nimport (\n\t\"fmt\"\n\t\"sync\"\n)\n\nvar _ sync.Mutex\nvar _ = fmt.Sprint\n\n" + "\n".join(pieces)
        cmd = rng.choice(["go vet ./...", "go vet ./internal/..."])
    else:
        x = rng.randint(1, 99)
        src = f"package {pkg}\n\nimport \"fmt\"\n\nfunc {fn}( a int ) int {{\n    if a>{x} {{ return a }}\n  return {x}\n}}\nfunc {fn}Print(){{ fmt.Println( \"{w}\" ) }}\n"
        cmd = rng.choice(["gofmt -l -d .", "test -z \"$(gofmt -l .)\" || (gofmt -d . && exit 1)", "gofmt -d -e ."])
    files = {"go.mod": f"module {mod}\n\ngo 1.19\n", f"internal/{pkg}/{pkg}.go": src}
    p = Project(name)
    try:
        p.write(files)
        rc, out = p.run(cmd if tool == "vet" else "out=$(gofmt -l -d .); echo \"$out\"; test -z \"$out\"", env=GOENV, timeout=120)
    finally:
        p.close()
    if rc == 0 or not out.strip():
        return None
    return Capture("go", "go", "go vet" if tool == "vet" else "gofmt", "lint", f"go_{tool}", cmd, out, rc, _VERS["go"])


def go_mod(rng: random.Random) -> Capture | None:
    mod, name = _mod(rng)
    dep = rng.choice(["github.com/stretchr/testify", "github.com/google/uuid", "github.com/spf13/cobra", "golang.org/x/sync", "github.com/sirupsen/logrus", "go.uber.org/zap", "github.com/gin-gonic/gin", "gopkg.in/yaml.v3"])
    ver = f"v{rng.randint(0, 1)}.{rng.randint(0, 12)}.{rng.randint(0, 9)}"
    kind = rng.choice(["missing_sum", "no_required_module", "tidy_drift", "proxy_off_download", "bad_version", "replace_missing_dir"])
    imp = {"github.com/stretchr/testify": "github.com/stretchr/testify/assert", "golang.org/x/sync": "golang.org/x/sync/errgroup", "gopkg.in/yaml.v3": "gopkg.in/yaml.v3"}.get(dep, dep)
    code = f"package main\n\nimport _ \"{imp}\"\n\nfunc main() {{}}\n"
    files = {"main.go": code}
    env = dict(GOENV)
    label = "dependency"
    cmd = "go build ./..."
    if kind == "missing_sum":
        files["go.mod"] = f"module {mod}\n\ngo 1.19\n\nrequire {dep} {ver}\n"
        env["GOFLAGS"] = "-mod=readonly"
    elif kind == "no_required_module":
        files["go.mod"] = f"module {mod}\n\ngo 1.19\n"
        env["GOFLAGS"] = "-mod=readonly"
    elif kind == "tidy_drift":
        files["go.mod"] = f"module {mod}\n\ngo 1.19\n"
        files["main.go"] = "package main\n\nfunc main() {}\n"
        files["go.mod"] += f"\nrequire {dep} {ver}\n"
        files["go.sum"] = ""
        cmd = "go mod tidy && git diff --exit-code go.mod go.sum"
        env["GOFLAGS"] = "-mod=mod"
    elif kind == "proxy_off_download":
        # The proxy cannot be reached: the network failed, not the declarations.
        files["go.mod"] = f"module {mod}\n\ngo 1.19\n\nrequire {dep} {ver}\n"
        env["GOPROXY"] = rng.choice(["https://proxy.golang.org,direct", "https://goproxy.io", "https://proxy.golang.org"])
        env["GOFLAGS"] = "-mod=mod"
        env["GOSUMDB"] = "off"
        env["HTTPS_PROXY"] = "http://127.0.0.1:9"
        cmd = rng.choice(["go mod download", "go build ./...", "go test ./..."])
        label = "infrastructure"
    elif kind == "bad_version":
        files["go.mod"] = f"module {mod}\n\ngo 1.19\n\nrequire {dep} v{rng.randint(3, 9)}.0.0\n"
        cmd = "go mod download"
    else:
        files["go.mod"] = f"module {mod}\n\ngo 1.19\n\nrequire {dep} {ver}\n\nreplace {dep} => ../{dep.rsplit('/', 1)[-1]}\n"
    p = Project(name)
    try:
        p.write(files)
        run_cmd = cmd
        if kind == "tidy_drift":
            run_cmd = "go mod tidy"
        rc, out = p.run(run_cmd, env=env, timeout=120)
        out = out.replace("/usr/lib/go-1.19", "{GOROOT}")
    finally:
        p.close()
    if rc == 0:
        return None
    return Capture("go", "go", "go mod" if "mod" in cmd else "go build", label, f"gomod_{kind}", cmd, out, rc, _VERS["go"])


_VERS: dict[str, str] = {}
MAKERS = [go_test, go_test, go_test, go_test, go_build, go_build, go_build, go_vet_fmt, go_vet_fmt, go_vet_fmt, go_mod, go_mod]

if __name__ == "__main__":
    _VERS["go"] = version_of("go version")
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    main_loop("go", MAKERS, n, seed=3303, only=sys.argv[2] if len(sys.argv) > 2 else None)
