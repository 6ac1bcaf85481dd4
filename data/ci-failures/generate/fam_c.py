"""C and C++ failures: gcc, g++, clang, make, cmake, the linker, ctest and GoogleTest, cppcheck,
clang-format and clang-tidy, all from Debian packages.
"""

from __future__ import annotations

import random
import sys

from common import Capture, Project, main_loop, noun, pascal, snake, version_of


def _name(rng: random.Random) -> str:
    return rng.choice([noun(rng), f"lib{noun(rng)}", f"{noun(rng)}-{rng.choice(['core', 'engine', 'daemon', 'tool'])}"])


def _c_errors(rng: random.Random, cpp: bool) -> str:
    f = snake(rng, 2)
    s = pascal(snake(rng, 2))
    w = noun(rng)
    x = rng.randint(1, 99)
    if cpp:
        pieces = [
            f"#include <string>\nint {f}(const std::string& s) {{\n    return s.size() + undefined_{w};\n}}\n",
            f"#include <vector>\nstd::vector<int> {f}_a() {{\n    std::vector<int> v = {{{x}, {x + 1}}};\n    return v.front;\n}}\n",
            f"#include <memory>\nstruct {s} {{ int id; }};\nint {f}_b() {{\n    std::unique_ptr<{s}> p = std::make_unique<{s}>();\n    auto q = p;\n    return q->id;\n}}\n",
            f"#include <map>\n#include <string>\nvoid {f}_c(std::map<std::string, int>& m) {{\n    m.insert(\"{w}\", {x});\n}}\n",
            f"class {s}Base {{\npublic:\n    virtual int {f}_d() = 0;\n}};\nint {f}_e() {{\n    {s}Base b;\n    return 0;\n}}\n",
            f"#include <string>\nstd::string {f}_f(int n) {{\n    return n;\n}}\n",
            f"template <typename T> T {f}_g(T a, T b) {{ return a + b; }}\nint {f}_h() {{ return {f}_g({x}, {x}.5); }}\n",
            f"#include \"{w}/{noun(rng)}.hpp\"\n",
            f"namespace {w} {{\nint {f}_i() {{ return {x} }}\n}}\n",
            f"#include <iostream>\nvoid {f}_j() {{\n    std::cout << {s}::count << std::endl;\n}}\n",
            f"int {f}_k(int a) {{\n    int unused_{w} = a;\n    return a;\n}}\n",
            f"#include <string>\nconst char* {f}_l() {{\n    std::string s = \"{w}\";\n    return s;\n}}\n",
        ]
    else:
        pieces = [
            f"int {f}(int a) {{\n    return a + undefined_{w};\n}}\n",
            f"#include <stdio.h>\nvoid {f}_a(void) {{\n    printf(\"%s\\n\", {x});\n}}\n",
            f"int {f}_b(void) {{\n    return {noun(rng)}_helper({x});\n}}\n",
            f"struct {w} {{ int id; }};\nint {f}_c(struct {w} *p) {{\n    return p->name;\n}}\n",
            f"int {f}_d(int a) {{\n    int r = a * {x}\n    return r;\n}}\n",
            f"#include \"{noun(rng)}_config.h\"\n",
            f"int {f}_e(int a) {{\n    int unused_{w};\n    return a;\n}}\n",
            f"char *{f}_f(void) {{\n    char buf[{x}];\n    return buf;\n}}\n",
            f"int {f}_g(unsigned n) {{\n    int i;\n    for (i = 0; i < n; i++) {{}}\n    return i;\n}}\n",
            f"void {f}_h(const char *s) {{\n    char *p = s;\n    (void)p;\n}}\n",
            f"int {f}_i(int x) {{\n    if (x > {x}) {{\n        return 1;\n    }}\n}}\n",
            f"typedef struct {{ int a; }} {s};\n{s} {f}_j(void) {{\n    {s} v = {{ .b = {x} }};\n    return v;\n}}\n",
        ]
    return "\n".join(rng.sample(pieces, rng.choice([1, 1, 2, 3])))


def compile_error(rng: random.Random) -> Capture | None:
    name = _name(rng)
    cpp = rng.random() < 0.5
    cc = rng.choice(["g++", "clang++"] if cpp else ["gcc", "gcc", "clang", "cc"])
    ext = "cpp" if cpp else "c"
    mod = noun(rng)
    werror = rng.random() < 0.35
    std = rng.choice(["-std=c++17", "-std=c++20"] if cpp else ["-std=c11", "-std=c99", "-std=gnu11"])
    flags = f"{std} -Wall -Wextra{' -Werror' if werror else ''} -O2 -Iinclude"
    files = {f"src/{mod}.{ext}": _c_errors(rng, cpp), f"src/main.{ext}": "int main(void) { return 0; }\n" if not cpp else "int main() { return 0; }\n"}
    driver = rng.choice(["make", "cmake", "direct"])
    if driver == "make":
        files["Makefile"] = f"CC = {cc}\nCFLAGS = {flags}\nSRC = $(wildcard src/*.{ext})\nOBJ = $(SRC:.{ext}=.o)\n\nall: {name}\n\n{name}: $(OBJ)\n\t$(CC) -o $@ $^\n\n%.o: %.{ext}\n\t$(CC) $(CFLAGS) -c $< -o $@\n"
        run_cmd, cmd = "make", rng.choice(["make", "make -j4", "make all"])
    elif driver == "cmake":
        lang = "CXX" if cpp else "C"
        files["CMakeLists.txt"] = f"cmake_minimum_required(VERSION 3.16)\nproject({name.replace('-', '_')} {lang})\nset(CMAKE_{lang}_FLAGS \"${{CMAKE_{lang}_FLAGS}} -Wall -Wextra{' -Werror' if werror else ''}\")\nadd_executable({name.replace('-', '_')} src/main.{ext} src/{mod}.{ext})\n"
        comp = {"g++": "g++", "clang++": "clang++", "gcc": "gcc", "clang": "clang", "cc": "cc"}[cc]
        run_cmd = f"cmake -S . -B build -D{'CMAKE_CXX_COMPILER' if cpp else 'CMAKE_C_COMPILER'}={comp} > /dev/null && cmake --build build"
        cmd = rng.choice(["cmake --build build", "cmake --build build --parallel", "cmake --build build -- -j4"])
    else:
        run_cmd = cmd = f"{cc} {flags} -c src/{mod}.{ext} -o build/{mod}.o"
        files["build/.keep"] = ""
    p = Project(name)
    try:
        p.write(files)
        rc, out = p.run(run_cmd, timeout=180)
    finally:
        p.close()
    if rc == 0:
        return None
    return Capture("c", "c", cc if driver == "direct" else driver, "build", f"{'werror' if werror else 'compile'}_{driver}", cmd, out, rc, _VERS[cc])


def link_error(rng: random.Random) -> Capture | None:
    name = _name(rng)
    cpp = rng.random() < 0.4
    ext = "cpp" if cpp else "c"
    f = snake(rng, 2)
    kind = rng.choice(["undefined", "multiple", "missing_lib", "undefined_vtable"])
    files = {}
    if kind == "undefined":
        files[f"src/main.{ext}"] = f"int {f}(int);\nint {snake(rng, 2)}_count(void);\nint main(void) {{ return {f}({rng.randint(1, 9)}); }}\n".replace("(void)", "()" if cpp else "(void)")
    elif kind == "multiple":
        files[f"src/a.{ext}"] = f"int {f}_total = {rng.randint(1, 9)};\nint {f}(int x) {{ return x; }}\n"
        files[f"src/b.{ext}"] = f"int {f}_total = 0;\nint {f}(int x) {{ return x + 1; }}\n"
        files[f"src/main.{ext}"] = f"int {f}(int);\nint main() {{ return {f}(1); }}\n"
    elif kind == "missing_lib":
        files[f"src/main.{ext}"] = ("#include <math.h>\n#include <pthread.h>\n" if not cpp else "#include <cmath>\n#include <pthread.h>\n") + f"static void *{f}(void *a) {{ return a; }}\nint main(int argc, char **argv) {{ pthread_t t; pthread_create(&t, 0, {f}, 0); return (int)sqrt((double)argc) + (int)pow(argc, 2.5); }}\n"
        files[f"src/{noun(rng)}.{ext}"] = f"int {noun(rng)}_{f}(void);\n"
    else:
        cpp, ext = True, "cpp"
        s = pascal(snake(rng, 2))
        files = {f"src/{s.lower()}.hpp": f"class {s} {{\npublic:\n    virtual ~{s}();\n    virtual int run();\n}};\n", "src/main.cpp": f"#include \"{s.lower()}.hpp\"\nint main() {{ {s} s; return s.run(); }}\n"}
    cc = rng.choice(["g++", "clang++"] if cpp else ["gcc", "cc", "clang"])
    srcs = " ".join(sorted(k for k in files if k.endswith("." + ext)))
    if rng.random() < 0.5:
        files["Makefile"] = f"CC = {cc}\nLDLIBS = {'-lm' if kind == 'missing_lib' and rng.random() < 0.5 else ''}\n{name}: {srcs}\n\t$(CC) -O2 -o $@ $^ $(LDLIBS)\n"
        run_cmd, cmd = "make", "make"
    else:
        run_cmd = cmd = f"{cc} -O2 -o {name} {srcs}"
    p = Project(name)
    try:
        p.write(files)
        rc, out = p.run(run_cmd, timeout=120)
    finally:
        p.close()
    if rc == 0:
        return None
    return Capture("c", "c", "ld", "build", f"link_{kind}", cmd, out, rc, _VERS["ld"])


def c_test(rng: random.Random) -> Capture | None:
    name = _name(rng).replace("-", "_")
    fw = rng.choice(["gtest", "gtest", "ctest_assert", "ctest_assert"])
    f = snake(rng, 2)
    x, y = rng.randint(2, 200), rng.randint(2, 200)
    if fw == "gtest":
        suite = pascal(snake(rng, 2)) + "Test"
        oks = "\n".join(f"TEST({suite}, {pascal(snake(rng, 2))}) {{\n    EXPECT_EQ({i} + 1, {i + 1});\n}}\n" for i in range(rng.randint(1, 6)))
        fault = rng.choice([
            f"TEST({suite}, {pascal(f)}) {{\n    EXPECT_EQ({f}({x}, {y}), {x * y});\n}}\n",
            f"TEST({suite}, {pascal(f)}Near) {{\n    EXPECT_NEAR({f}({x}, 2) / 3.0, {x * 2 / 3 + 1:.2f}, 0.01);\n}}\n",
            f"TEST({suite}, {pascal(f)}True) {{\n    ASSERT_TRUE({f}({x}, {y}) < 0) << \"{noun(rng)} must be negative\";\n}}\n",
            f"TEST({suite}, {pascal(f)}Str) {{\n    EXPECT_STREQ(\"{noun(rng)}\", \"{noun(rng)}x\");\n}}\n",
            f"TEST({suite}, {pascal(f)}Throws) {{\n    EXPECT_THROW({f}({x}, 0), std::invalid_argument);\n}}\n",
        ])
        src = f"#include <gtest/gtest.h>\n#include <stdexcept>\n\nint {f}(int a, int b) {{ return a * b - 1; }}\n\n{oks}\n{fault}"
        files = {"tests/test_main.cpp": src, "CMakeLists.txt": f"cmake_minimum_required(VERSION 3.16)\nproject({name} CXX)\nfind_package(GTest REQUIRED)\nenable_testing()\nadd_executable({name}_tests tests/test_main.cpp)\ntarget_link_libraries({name}_tests GTest::gtest_main)\ninclude(GoogleTest)\ngtest_discover_tests({name}_tests)\n"}
    else:
        tests = []
        for i in range(rng.randint(2, 6)):
            t = snake(rng, 2)
            tests.append(t)
        bad = rng.randrange(len(tests))
        srcs = {}
        for i, t in enumerate(tests):
            cond = f"{x} + {y} == {x + y + (1 if i == bad else 0)}"
            kind = rng.choice(["assert", "segv", "exit"]) if i == bad else "assert"
            body = {"assert": f"assert({cond});", "segv": f"int *p = 0; if ({x} > 1) *p = {y};", "exit": f"if (!({cond})) {{ fprintf(stderr, \"FAIL: {t}: expected %d got %d\\n\", {x + y + 1}, {x + y}); return 1; }}"}[kind]
            srcs[f"tests/test_{t}.c"] = f"#include <assert.h>\n#include <stdio.h>\nint main(void) {{\n    {body}\n    return 0;\n}}\n"
        lines = "\n".join(f"add_executable(test_{t} tests/test_{t}.c)\nadd_test(NAME {t} COMMAND test_{t})" for t in tests)
        files = {**srcs, "CMakeLists.txt": f"cmake_minimum_required(VERSION 3.16)\nproject({name} C)\nenable_testing()\n{lines}\n"}
    p = Project(name)
    try:
        p.write(files)
        rc0, out0 = p.run("cmake -S . -B build > /dev/null && cmake --build build > /dev/null", timeout=300)
        if rc0:
            return None
        flags = rng.choice(["--output-on-failure", "--output-on-failure", "", "-V", "--test-dir build --output-on-failure"])
        rc, out = p.run(f"cd build && ctest {flags.replace('--test-dir build ', '')}", timeout=180)
    finally:
        p.close()
    if rc == 0:
        return None
    return Capture("c", "c", "ctest", "test", f"ctest_{fw}", rng.choice([f"ctest {flags}".strip(), f"cd build && ctest {flags}".strip(), "make test", "cmake --build build --target test"]), out, rc, _VERS["ctest"])


def cmake_config(rng: random.Random) -> Capture | None:
    name = _name(rng).replace("-", "_")
    kind = rng.choice(["find_package", "find_package", "pkg_config", "syntax", "missing_subdir", "min_version", "missing_source"])
    lines = f"cmake_minimum_required(VERSION 3.16)\nproject({name} C CXX)\n"
    label = "build"
    if kind == "find_package":
        pkg = rng.choice(["OpenSSL", "Boost", "Protobuf", "CURL", "ZLIB", "Qt5", "fmt", "spdlog", "nlohmann_json", "GTest", "Eigen3", "PostgreSQL", "LibXml2", "absl"])
        lines += f"find_package({pkg} {rng.choice(['', '1.2', '3.0'])} REQUIRED)\n"
        label = "dependency"
    elif kind == "pkg_config":
        lines += f"find_package(PkgConfig REQUIRED)\npkg_check_modules({noun(rng).upper()} REQUIRED {rng.choice(['libsystemd', 'gtk+-3.0', 'libusb-1.0', 'glib-2.0', 'libsodium', 'jansson'])})\n"
        label = "dependency"
    elif kind == "syntax":
        lines += f"add_executable({name} src/main.c\n"
    elif kind == "missing_subdir":
        lines += f"add_subdirectory({rng.choice(['third_party', 'external', 'libs'])}/{noun(rng)})\n"
    elif kind == "min_version":
        lines = f"cmake_minimum_required(VERSION 3.{rng.randint(28, 31)})\nproject({name} C)\n"
    else:
        lines += f"add_library({name} STATIC src/{noun(rng)}.c src/{noun(rng)}.c)\n"
    p = Project(name)
    try:
        p.write({"CMakeLists.txt": lines, "src/main.c": "int main(void) { return 0; }\n"})
        rc, out = p.run("cmake -S . -B build", timeout=180)
    finally:
        p.close()
    if rc == 0:
        return None
    return Capture("c", "c", "cmake", label, f"cmake_{kind}", rng.choice(["cmake -S . -B build", "cmake -B build -DCMAKE_BUILD_TYPE=Release", "mkdir build && cd build && cmake .."]), out, rc, _VERS["cmake"])


def c_lint(rng: random.Random) -> Capture | None:
    name = _name(rng)
    tool = rng.choice(["cppcheck", "clang-format", "clang-tidy"])
    cpp = tool != "cppcheck" or rng.random() < 0.4
    ext = "cpp" if cpp else "c"
    f = snake(rng, 2)
    w = noun(rng)
    x = rng.randint(2, 60)
    files = {}
    if tool == "cppcheck":
        files[f"src/{w}.{ext}"] = rng.choice([
            f"#include <stdlib.h>\nint {f}(int n) {{\n    int buf[{x}];\n    buf[{x}] = n;\n    return buf[0];\n}}\n",
            f"#include <stdlib.h>\nint {f}(void) {{\n    char *p = malloc({x});\n    if (!p) return 1;\n    return 0;\n}}\n",
            f"int {f}(int *p) {{\n    int v = *p;\n    if (p == 0) return 0;\n    return v;\n}}\n",
            f"#include <stdio.h>\nvoid {f}(void) {{\n    FILE *fp = fopen(\"{w}.txt\", \"r\");\n    char b[10];\n    fgets(b, 10, fp);\n}}\n",
            f"int {f}(void) {{\n    int a;\n    return a + {x};\n}}\n",
        ]) + "\n" + rng.choice(["", f"int {f}_z(int x) {{\n    return x / 0;\n}}\n"])
        cmd = rng.choice(["cppcheck --error-exitcode=1 --enable=warning src", "cppcheck --enable=all --error-exitcode=2 --inline-suppr src/", "cppcheck --quiet --error-exitcode=1 src"])
        run_cmd = cmd + " 2>&1"
    elif tool == "clang-format":
        files[f"src/{w}.{ext}"] = f"#include <vector>\nint {f}( int a,int b ){{ if(a>b){{return a;}} else {{ return b; }} }}\nstd::vector<int> {f}_v(){{ return {{ {x},{x + 1} }}; }}\n"
        files[".clang-format"] = f"BasedOnStyle: {rng.choice(['LLVM', 'Google', 'Mozilla', 'Chromium'])}\n"
        cmd = rng.choice(["clang-format --dry-run --Werror src/*.cpp", "find src -name '*.cpp' | xargs clang-format --dry-run -Werror"])
        run_cmd = "clang-format --dry-run --Werror src/*.cpp"
    else:
        files[f"src/{w}.cpp"] = rng.choice([
            f"#include <string>\n#include <vector>\nint {f}(std::vector<std::string> v) {{\n    int n = 0;\n    for (int i = 0; i < v.size(); i++) n += v[i].size();\n    return n;\n}}\n",
            f"#include <cstring>\nint {f}(const char *s) {{\n    char b[{x}];\n    strcpy(b, s);\n    return (int)strlen(b);\n}}\n",
            f"struct {pascal(w)} {{ int *p = NULL; }};\nint {f}({pascal(w)} a) {{ return a.p == NULL; }}\n",
        ])
        checks = rng.choice(["bugprone-*,modernize-*,performance-*", "clang-analyzer-*,bugprone-*", "modernize-use-nullptr,performance-unnecessary-value-param,readability-*"])
        cmd = f"clang-tidy src/*.cpp --checks='{checks}' --warnings-as-errors='*' -- -std=c++17"
        run_cmd = cmd
    p = Project(name)
    try:
        p.write(files)
        rc, out = p.run(run_cmd, timeout=180)
    finally:
        p.close()
    if rc == 0:
        return None
    return Capture("c", "c", tool, "lint", f"c_{tool}", cmd, out, rc, _VERS[tool])


def missing_system_header(rng: random.Random) -> Capture | None:
    """A third-party library's headers or pkg-config file are not installed: like a missing
    third-party module, a dependency failure (the fix is installing the -dev package)."""
    name = _name(rng)
    lib, header, pc = rng.choice([("openssl", "openssl/ssl.h", "openssl"), ("zlib", "zlib.h", "zlib"), ("curl", "curl/curl.h", "libcurl"), ("sqlite", "sqlite3.h", "sqlite3"), ("yaml", "yaml.h", "yaml-0.1"), ("pq", "libpq-fe.h", "libpq"), ("ssh", "libssh2.h", "libssh2"), ("uv", "uv.h", "libuv"), ("sodium", "sodium.h", "libsodium"), ("xml2", "libxml/parser.h", "libxml-2.0"), ("boost", "boost/asio.hpp", "boost"), ("fmt", "fmt/core.h", "fmt"), ("gtk", "gtk/gtk.h", "gtk+-3.0")])
    cpp = header.endswith(".hpp") or lib == "fmt"
    ext = "cpp" if cpp else "c"
    kind = rng.choice(["header", "header", "pkgconfig", "link"])
    if kind == "link" and lib not in ("ssh", "uv", "sodium", "yaml", "pq"):
        kind = "header"
    f = snake(rng, 2)
    files = {f"src/{f}.{ext}": f"#include <stdio.h>\n#include <{header}>\n\nint {f}(void) {{ return 0; }}\n"}
    cc = "g++" if cpp else rng.choice(["gcc", "cc"])
    if kind == "header":
        run_cmd = cmd = f"{cc} -O2 -c src/{f}.{ext} -o {f}.o"
        if rng.random() < 0.5:
            files["Makefile"] = f"CFLAGS = -O2 -Wall\nall: {f}.o\n{f}.o: src/{f}.{ext}\n\t{cc} $(CFLAGS) -c $< -o $@\n"
            run_cmd = cmd = "make"
    elif kind == "pkgconfig":
        pcname = pc + "-missing" if pc in ("zlib", "sqlite3", "libcurl", "openssl") else pc
        run_cmd = f"{cc} $(pkg-config --cflags --libs {pcname}) -c src/{f}.{ext}"
        cmd = f"{cc} $(pkg-config --cflags --libs {pc}) -c src/{f}.{ext}"
    else:
        files = {f"src/{f}.{ext}": f"int {lib}_init_{f}(void);\nint main(void) {{ return {lib}_init_{f}(); }}\n"}
        run_cmd = cmd = f"{cc} -o {name} src/{f}.{ext} -l{lib if lib != 'ssh' else 'ssh2'}"
    p = Project(name)
    try:
        p.write(files)
        rc, out = p.run(run_cmd, timeout=120)
    finally:
        p.close()
    if rc == 0:
        return None
    out = out.replace(f"{pc}-missing", pc)
    return Capture("c", "c", cc if kind != "pkgconfig" else "pkg-config", "dependency", f"missing_{kind}", cmd, out, rc, _VERS.get(cc, ""))


_VERS: dict[str, str] = {}
MAKERS = [missing_system_header, missing_system_header, compile_error, compile_error, compile_error, compile_error, link_error, link_error, c_test, c_test, c_test, cmake_config, cmake_config, c_lint, c_lint, c_lint]

if __name__ == "__main__":
    for t in ("gcc", "g++", "clang", "clang++", "cc", "cmake", "ctest", "cppcheck", "clang-format", "clang-tidy"):
        _VERS[t] = version_of(f"{t} --version")
    _VERS["ld"] = version_of("ld --version")
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 280
    main_loop("c", MAKERS, n, seed=5505, only=sys.argv[2] if len(sys.argv) > 2 else None)
