"""Java failures with Debian's Maven 3.8 and OpenJDK 17, offline against the local Maven cache.

Maven runs with -o against the plugins already in ~/.m2; a repository that answers 404 for a
missing artifact is a LocalServer standing in as the mirror, and its address is rewritten to
Maven Central's in the output. Gradle is not installable here: `gradle_*` captures put the real
javac / JUnit failure text into Gradle's documented console layout (see README, biases).
"""

from __future__ import annotations

import random
import re
import sys
from pathlib import Path

from common import Capture, LocalServer, Project, distinct, main_loop, noun, pascal, snake, version_of

PLUGINS = """
    <plugin><artifactId>maven-compiler-plugin</artifactId><version>3.13.0</version>{compiler_cfg}</plugin>
    <plugin><artifactId>maven-surefire-plugin</artifactId><version>3.2.5</version></plugin>
    <plugin><artifactId>maven-resources-plugin</artifactId><version>3.3.1</version></plugin>
    <plugin><artifactId>maven-jar-plugin</artifactId><version>3.4.1</version></plugin>
    <plugin><artifactId>maven-install-plugin</artifactId><version>3.1.2</version></plugin>
    <plugin><artifactId>maven-clean-plugin</artifactId><version>3.3.2</version></plugin>{extra_plugins}"""


def _pom(group: str, art: str, rng: random.Random, deps: str = "", compiler_cfg: str = "", extra_plugins: str = "", junit: str = "5") -> str:
    jdep = "<dependency><groupId>org.junit.jupiter</groupId><artifactId>junit-jupiter</artifactId><version>5.10.2</version><scope>test</scope></dependency>" if junit == "5" else "<dependency><groupId>junit</groupId><artifactId>junit</artifactId><version>4.13.2</version><scope>test</scope></dependency>"
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>{group}</groupId>
  <artifactId>{art}</artifactId>
  <version>{rng.randint(0, 3)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}-SNAPSHOT</version>
  <name>{art}</name>
  <properties>
    <maven.compiler.release>17</maven.compiler.release>
    <project.build.sourceEncoding>UTF-8</project.build.sourceEncoding>
  </properties>
  <dependencies>
    {jdep}
    {deps}
  </dependencies>
  <build><plugins>{PLUGINS.format(compiler_cfg=compiler_cfg, extra_plugins=extra_plugins)}
  </plugins></build>
</project>
"""


def _ids(rng: random.Random) -> tuple[str, str, str]:
    org = rng.choice(["com.acme", "io.northwind", "org.kestrel", "com.cobalt", "dev.orbit", "net.harbor"])
    art = rng.choice([noun(rng), f"{noun(rng)}-{rng.choice(['service', 'core', 'api', 'client', 'common'])}"])
    pkg = f"{org}.{art.replace('-', '')}"
    return org, art, pkg


def _mvn(p: Project, goals: str, timeout: float = 300) -> tuple[int, str]:
    rc, out = p.run(f"mvn -o -B -ntp {goals}", timeout=timeout)
    # The -o flag is how this machine runs Maven without the network; CI logs do not carry it.
    return rc, out.replace(" in offline mode", "")


def _java_errors(rng: random.Random, pkg: str, cls: str) -> str:
    f = re.sub(r"_(\w)", lambda m: m.group(1).upper(), snake(rng, 2))
    w = noun(rng)
    x = rng.randint(1, 99)
    other = pascal(snake(rng, 2))
    pieces = [
        f"    public int {f}(String s) {{\n        return s;\n    }}\n",
        f"    public String {f}A() {{\n        return {w}Repository.find({x});\n    }}\n",
        f"    public int {f}B(int a) {{\n        if (a > {x}) {{\n            return a;\n        }}\n    }}\n",
        f"    public void {f}C() {{\n        Thread.sleep({x});\n    }}\n",
        f"    public int {f}D() {{\n        int v = {x}\n        return v;\n    }}\n",
        f"    public java.util.List<String> {f}E() {{\n        java.util.List<String> l = new java.util.ArrayList<>();\n        l.add({x});\n        return l;\n    }}\n",
        f"    public {other} {f}F() {{\n        return new {other}();\n    }}\n",
        f"    public int {f}G() {{\n        int r;\n        return r + {x};\n    }}\n",
        f"    public void {f}H() {{\n        return;\n        System.out.println(\"{w}\");\n    }}\n",
        f"    public long {f}I(java.util.Map<String, Long> m) {{\n        return m.getOrDefault(\"{w}\");\n    }}\n",
        f"    public void {f}J() {{\n        final int c = 0;\n        c = {x};\n    }}\n",
        f"    public String {f}K(Object o) {{\n        return o.{w}Name();\n    }}\n",
    ]
    body = "\n".join(rng.sample(pieces, rng.choice([1, 1, 2, 3])))
    imp = rng.choice(["", "", f"import {pkg}.{noun(rng)}.{pascal(snake(rng, 2))};\n", "import org.apache.commons.lang3.StringUtils;\n"])
    return f"package {pkg};\n\n{imp}\npublic class {cls} {{\n\n{body}}}\n"


def maven_compile(rng: random.Random) -> Capture | None:
    org, art, pkg = _ids(rng)
    cls = pascal(snake(rng, 2))
    werror = rng.random() < 0.2
    path = "src/main/java/" + pkg.replace(".", "/")
    conf = pascal(noun(rng)) + "Config"
    files = {f"{path}/{conf}.java": f"package {pkg};\n\npublic class {conf} {{ }}\n"}
    if werror:
        files[f"{path}/{cls}.java"] = f"package {pkg};\n\nimport java.util.*;\n\npublic class {cls} {{\n    @SuppressWarnings(\"rawtypes\")\n    public List {noun(rng)}s() {{\n        List l = new ArrayList();\n        l.add(new Integer({rng.randint(1, 99)}));\n        return l;\n    }}\n    @Deprecated\n    public void old() {{ }}\n    public void use() {{ old(); new Date({rng.randint(100, 120)}, 1, 1); }}\n}}\n"
        cfg = "<configuration><compilerArgs><arg>-Xlint:all</arg><arg>-Werror</arg></compilerArgs><failOnWarning>true</failOnWarning></configuration>"
    else:
        files[f"{path}/{cls}.java"] = _java_errors(rng, pkg, cls)
        cfg = ""
    files["pom.xml"] = _pom(org, art, rng, compiler_cfg=cfg)
    goal = rng.choice(["compile", "package", "verify", "test", "install"])
    p = Project(art)
    try:
        p.write(files)
        rc, out = _mvn(p, goal)
    finally:
        p.close()
    if rc == 0 or "COMPILATION" not in out and "ERROR" not in out:
        return None
    flags = rng.choice(["-B", "-B -ntp", "--batch-mode", "-B -e", "-B -U"])
    return Capture("java", "java", "maven", "build", "werror" if werror else "javac_error", f"{rng.choice(['mvn', './mvnw'])} {flags} {goal}", out, rc, _VERS["mvn"])


def _junit_fault(rng: random.Random, cls: str) -> tuple[str, str, str]:
    f = re.sub(r"_(\w)", lambda m: m.group(1).upper(), snake(rng, 2))
    x, y = rng.randint(2, 300), rng.randint(2, 300)
    w = noun(rng)
    return rng.choice([
        ("assertEquals", f"    public static int {f}(int a, int b) {{ return a * b - 1; }}\n", f"    @Test\n    void {f}Multiplies() {{\n        assertEquals({x * y}, {cls}.{f}({x}, {y}));\n    }}\n"),
        ("assertEquals_str", f"    public static String {f}(String s) {{ return s.trim(); }}\n", f"    @Test\n    void {f}Upper() {{\n        assertEquals(\"{w.upper()}\", {cls}.{f}(\" {w} \"), \"{w} should be upper-cased\");\n    }}\n"),
        ("assertTrue", f"    public static boolean {f}(int n) {{ return n % 2 == 0; }}\n", f"    @Test\n    void {f}Odd() {{\n        assertTrue({cls}.{f}({2 * x + 1}));\n    }}\n"),
        ("assertThrows", f"    public static int {f}(String s) {{ return s == null ? 0 : s.length(); }}\n", f"    @Test\n    void {f}RejectsNull() {{\n        assertThrows(IllegalArgumentException.class, () -> {cls}.{f}(null));\n    }}\n"),
        ("npe", f"    public static int {f}(java.util.Map<String, Integer> m) {{ return m.get(\"{w}\"); }}\n", f"    @Test\n    void {f}Missing() {{\n        assertEquals(0, {cls}.{f}(new java.util.HashMap<>()));\n    }}\n"),
        ("iterable", f"    public static java.util.List<Integer> {f}(int n) {{ java.util.List<Integer> l = new java.util.ArrayList<>(); for (int i = 1; i < n; i++) l.add(i); return l; }}\n", f"    @Test\n    void {f}Range() {{\n        assertIterableEquals(java.util.List.of(1, 2, 3), {cls}.{f}(3));\n    }}\n"),
        ("timeout", f"    public static void {f}() {{ while (true) {{ Thread.onSpinWait(); }} }}\n", f"    @Test\n    void {f}Finishes() {{\n        assertTimeoutPreemptively(java.time.Duration.ofMillis({rng.choice([200, 500, 1000])}), () -> {cls}.{f}());\n    }}\n"),
        ("arith", f"    public static int {f}(int a, int b) {{ return a / b; }}\n", f"    @Test\n    void {f}Divides() {{\n        assertEquals({x}, {cls}.{f}({x}, 0));\n    }}\n"),
        ("assertNotNull", f"    public static Object {f}(String k) {{ return null; }}\n", f"    @Test\n    void {f}Finds() {{\n        assertNotNull({cls}.{f}(\"{w}\"), \"{w} not found\");\n    }}\n"),
        ("double", f"    public static double {f}(double a) {{ return a * 1.07; }}\n", f"    @Test\n    void {f}Rate() {{\n        assertEquals({x}.0 * 1.08, {cls}.{f}({x}.0), 0.001);\n    }}\n"),
    ])


def maven_test(rng: random.Random) -> Capture | None:
    org, art, pkg = _ids(rng)
    main_p = "src/main/java/" + pkg.replace(".", "/")
    test_p = "src/test/java/" + pkg.replace(".", "/")
    files = {}
    faults = []
    for i, cls in enumerate(distinct(rng, lambda r: pascal(snake(r, 2)), rng.randint(1, 3))):
        code, tests = [], []
        for j in range(rng.randint(1, 5)):
            m = f"m{noun(rng).capitalize()}{j}"
            a = rng.randint(1, 50)
            code.append(f"    public static int {m}(int x) {{ return x + {a}; }}\n")
            tests.append(f"    @Test\n    void {m}Adds() {{\n        assertEquals({a + 1}, {cls}.{m}(1));\n    }}\n")
        if i < rng.choice([1, 1, 2]):
            kind, c, t = _junit_fault(rng, cls)
            faults.append(kind)
            code.append(c)
            tests.append(t)
        files[f"{main_p}/{cls}.java"] = f"package {pkg};\n\npublic class {cls} {{\n" + "\n".join(code) + "}\n"
        files[f"{test_p}/{cls}Test.java"] = f"package {pkg};\n\nimport org.junit.jupiter.api.Test;\nimport static org.junit.jupiter.api.Assertions.*;\n\nclass {cls}Test {{\n" + "\n".join(tests) + "}\n"
    files["pom.xml"] = _pom(org, art, rng)
    goal = rng.choice(["test", "verify", "package", "install"])
    p = Project(art)
    try:
        p.write(files)
        rc, out = _mvn(p, goal)
        reports = _surefire_reports(p.root)
    finally:
        p.close()
    if rc == 0 or "Tests run:" not in out:
        return None
    return Capture("java", "java", "maven", "test", "+".join(faults), f"{rng.choice(['mvn', './mvnw'])} {rng.choice(['-B', '-B -ntp', '--batch-mode'])} {goal}", out, rc, _VERS["mvn"], extra={"reports": reports})


def _surefire_reports(root: Path) -> list[dict]:
    """Failed test cases from the surefire XML: what a Gradle console would name."""
    out = []
    for x in (root / "target" / "surefire-reports").glob("TEST-*.xml"):
        t = x.read_text(errors="replace")
        for m in re.finditer(r'<testcase name="([^"]+)" classname="([^"]+)"[^>]*>\s*<(failure|error)(?: message="([^"]*)")? type="([^"]+)"', t):
            out.append({"name": m.group(1), "class": m.group(2), "kind": m.group(3), "message": (m.group(4) or "").replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"'), "type": m.group(5)})
    return out


def maven_enforcer(rng: random.Random) -> Capture | None:
    org, art, pkg = _ids(rng)
    lib = rng.choice([("com.google.guava", "guava", "32.1.3-jre", "[33.0.0-jre,)"), ("org.apache.commons", "commons-lang3", "3.12.0", "[3.14.0,)"), ("com.google.guava", "guava", "31.1-jre", "[32.0.0-jre,)")])
    rule = rng.choice(["banned", "banned_range"])
    if rule == "banned":
        rules = f"<bannedDependencies><excludes><exclude>{lib[0]}:{lib[1]}</exclude></excludes></bannedDependencies>"
    elif rule == "banned_range":
        rules = f"<bannedDependencies><excludes><exclude>{lib[0]}:{lib[1]}</exclude></excludes><includes><include>{lib[0]}:{lib[1]}:{lib[3]}</include></includes></bannedDependencies>"
    else:
        rules = "<requireReleaseDeps><message>No Snapshots Allowed!</message><failWhenParentIsSnapshot>false</failWhenParentIsSnapshot></requireReleaseDeps>"
    enforcer = f"""
    <plugin><groupId>org.apache.maven.plugins</groupId><artifactId>maven-enforcer-plugin</artifactId><version>3.4.1</version>
      <executions><execution><id>enforce</id><goals><goal>enforce</goal></goals><configuration><rules>{rules}</rules></configuration></execution></executions></plugin>"""
    dep = f"<dependency><groupId>{lib[0]}</groupId><artifactId>{lib[1]}</artifactId><version>{lib[2]}</version></dependency>"
    files = {"pom.xml": _pom(org, art, rng, deps=dep, extra_plugins=enforcer), f"src/main/java/{pkg.replace('.', '/')}/App.java": f"package {pkg};\npublic class App {{ }}\n"}
    if rule == "require_release":
        files["pom.xml"] = files["pom.xml"]  # the project itself is a SNAPSHOT; the rule only fails with snapshot deps
    p = Project(art)
    try:
        p.write(files)
        rc, out = _mvn(p, rng.choice(["validate", "verify", "install"]))
    finally:
        p.close()
    if rc == 0:
        return None
    return Capture("java", "java", "maven", "dependency", f"enforcer_{rule}", f"mvn -B {rng.choice(['verify', 'install', 'validate'])}", out, rc, _VERS["mvn"])


def maven_missing_artifact(rng: random.Random) -> Capture | None:
    """An artifact that the repository does not have (404): a dependency declaration problem."""
    org, art, pkg = _ids(rng)
    g, a = rng.choice([("com.acme.internal", "acme-commons"), ("io.northwind", "nw-client"), ("org.example", "utils"), ("com.fasterxml.jackson.core", "jackson-databind"), ("org.springframework", "spring-core"), ("io.netty", "netty-handler"), ("org.slf4j", "slf4j-api")])
    v = f"{rng.randint(1, 9)}.{rng.randint(0, 30)}.{rng.randint(0, 9)}{rng.choice(['', '', '-RC1', '.Final', '-SNAPSHOT'])}"
    dep = f"<dependency><groupId>{g}</groupId><artifactId>{a}</artifactId><version>{v}</version></dependency>"
    with LocalServer(404, "Not Found") as srv:
        settings = f"<settings><mirrors><mirror><id>central</id><mirrorOf>*</mirrorOf><url>{srv.url}/maven2</url></mirror></mirrors></settings>"
        p = Project(art)
        try:
            p.write({"pom.xml": _pom(org, art, rng, deps=dep), "settings.xml": settings, f"src/main/java/{pkg.replace('.', '/')}/App.java": f"package {pkg};\npublic class App {{ }}\n"})
            rc, out = p.run("mvn -B -s settings.xml -Dmaven.repo.local=/root/.m2/repository compile", timeout=300)
        finally:
            p.close()
        out = out.replace(f"{srv.url}/maven2", "https://repo.maven.apache.org/maven2").replace(f"127.0.0.1:{srv.port}", "repo.maven.apache.org")
    if rc == 0:
        return None
    return Capture("java", "java", "maven", "dependency", "artifact_not_found", f"mvn -B {rng.choice(['compile', 'verify', 'package'])}", out, rc, _VERS["mvn"])


# ---------------------------------------------------------------- Gradle layout around real javac / JUnit text

def _gradle_task_failure(task: str, what: str, rng: random.Random, extra_hint: str = "") -> list[str]:
    return ["", "FAILURE: Build failed with an exception.", "", "* What went wrong:", f"Execution failed for task '{task}'.", f"> {what}", "", "* Try:", extra_hint or "> Check your code and dependencies to fix the compilation error(s)", "> Run with --scan to get full insights.", "", f"BUILD FAILED in {rng.randint(2, 90)}s", f"{rng.randint(2, 9)} actionable tasks: {rng.randint(1, 5)} executed, {rng.randint(0, 4)} up-to-date"]


def gradle_compile(rng: random.Random) -> Capture | None:
    org, art, pkg = _ids(rng)
    cls = pascal(snake(rng, 2))
    mod = rng.choice(["", ":app", ":core", ":lib", f":{noun(rng)}"])
    path = f"src/main/java/{pkg.replace('.', '/')}"
    p = Project(art)
    try:
        p.write({f"{path}/{cls}.java": _java_errors(rng, pkg, cls)})
        rc, out = p.run("javac -d build/classes $(find src -name '*.java')", timeout=120)
    finally:
        p.close()
    if rc == 0:
        return None
    prefix = "{WS}/" + (mod.strip(":") + "/" if mod else "")
    out = re.sub(r"^src/", prefix + "src/", out, flags=re.M)
    lines = ["> Task " + mod + ":compileJava FAILED"] + out.split("\n")
    lines += _gradle_task_failure(f"{mod}:compileJava", "Compilation failed; see the compiler error output for details.", rng)
    if rng.random() < 0.5:
        lines = [f"> Task {mod}:processResources NO-SOURCE", f"> Task {mod}:compileJava"] + lines[1:]
        lines.insert(2 + len(out.split("\n")), f"> Task {mod}:compileJava FAILED")
    return Capture("java", "java", "gradle", "build", "gradle_javac_error", rng.choice(["./gradlew build", "./gradlew assemble --no-daemon", "gradle build", f"./gradlew {mod}:compileJava"]), "\n".join(lines), 1, _VERS["javac"])


def gradle_test(rng: random.Random) -> Capture | None:
    cap = maven_test(rng)
    if cap is None or not cap.extra.get("reports"):
        return None
    mod = rng.choice(["", ":app", ":core", f":{noun(rng)}"])
    lines = [f"> Task {mod}:compileJava", f"> Task {mod}:processResources NO-SOURCE", f"> Task {mod}:classes", f"> Task {mod}:compileTestJava", f"> Task {mod}:testClasses", f"> Task {mod}:test", ""]
    n_total = int(re.findall(r"Tests run: (\d+)", cap.body)[-1]) if re.findall(r"Tests run: (\d+)", cap.body) else 5
    for r in cap.extra["reports"]:
        short = r["class"].rsplit(".", 1)[-1]
        lines += [f"{short} > {r['name']} FAILED", f"    {r['type']} at {short}.java:{rng.randint(8, 60)}"]
        if rng.random() < 0.4 and r["message"]:
            lines[-1] = f"    {r['type']}: {r['message']}"
            lines.append(f"        at app//{r['class']}.{r['name'].rstrip('()')}({short}.java:{rng.randint(8, 60)})")
        lines.append("")
    nf = len(cap.extra["reports"])
    lines += [f"{n_total} tests completed, {nf} failed", "", f"> Task {mod}:test FAILED"]
    report = "file://{WS}/" + (mod.strip(":") + "/" if mod else "") + "build/reports/tests/test/index.html"
    lines += _gradle_task_failure(f"{mod}:test", f"There were failing tests. See the report at: {report}", rng, "> Run with --stacktrace option to get the stack trace.")
    return Capture("java", "java", "gradle", "test", "gradle_" + cap.fault, rng.choice(["./gradlew test", "./gradlew check --no-daemon", "./gradlew build", "gradle test"]), "\n".join(lines), 1, "gradle layout; " + cap.tool_version)


def javac_plain(rng: random.Random) -> Capture | None:
    """javac called directly (a Makefile, an Ant target, a build script)."""
    org, art, pkg = _ids(rng)
    files = {}
    for _ in range(rng.randint(1, 2)):
        cls = pascal(snake(rng, 2))
        files[f"src/{pkg.replace('.', '/')}/{cls}.java"] = _java_errors(rng, pkg, cls)
    werror = rng.random() < 0.25
    flags = rng.choice(["-d out", "-d build/classes -encoding UTF-8", "--release 17 -d out"]) + (" -Xlint:all -Werror" if werror else "")
    p = Project(art)
    try:
        p.write(files)
        rc, out = p.run(f"javac {flags} $(find src -name '*.java')", timeout=120)
    finally:
        p.close()
    if rc == 0:
        return None
    cmd = rng.choice([f"javac {flags} $(find src -name '*.java')", "make", "ant compile", "./build.sh"])
    return Capture("java", "java", "javac", "build", "javac_plain", cmd, out, rc, _VERS["javac"])


_VERS: dict[str, str] = {}
# Maven runs take most of a minute on a shared machine; javac-only makers fill the build cell.
MAKERS = [maven_compile, maven_test, maven_test, maven_enforcer, maven_missing_artifact, gradle_compile, gradle_compile, gradle_compile, javac_plain, javac_plain, gradle_test]

if __name__ == "__main__":
    _VERS.update(mvn=version_of("mvn -v").replace("\x1b[1m", "").replace("\x1b[m", ""), javac=version_of("javac -version"))
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    main_loop("java", MAKERS, n, seed=6606, only=sys.argv[2] if len(sys.argv) > 2 else None)
