"""Infrastructure, access and security failures, produced for real on this machine.

- Network: each package manager and git/curl pointed at an address that does not resolve, a port
  that refuses, a LocalServer that hangs, resets, answers 5xx or 429, or a proxy that is down.
- Access: the same tools against a LocalServer answering 401 or 403 (with the headers real
  registries send). Local addresses in the output are rewritten to the public registry's host,
  so that the text reads as on a runner.
- Disk: the tool writes into a small tmpfs until it is full (a real ENOSPC).
- Memory: the tool runs under a real memory limit (node --max-old-space-size, java -Xmx,
  ulimit -v) or is SIGKILLed as the kernel's OOM killer does (exit 137).
- Time: GNU timeout ends a hanging step (exit 124).
- Security: `npm audit` against the real npm advisory database and `pip-audit` against PyPI's,
  on lock files pinning versions with published advisories.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys

from common import PY_BARE, PY_VENV, WORK, Capture, LocalServer, Project, main_loop, noun, version_of

PIP = f"{PY_BARE}/bin/python -m pip"

# What a local address is shown as, per tool: the host its users would see.
HOSTS = {"pip": "pypi.org", "npm": "registry.npmjs.org", "go": "proxy.golang.org", "maven": "repo.maven.apache.org", "bundler": "rubygems.org", "git": "github.com", "curl": "api.github.com", "cargo": "index.crates.io"}
PRIVATE_HOSTS = ["npm.pkg.github.com", "pkgs.dev.azure.com", "artifactory.internal.example.com", "nexus.example.org", "gitlab.example.com", "registry.example.io", "packages.example.net"]


def _rehost(out: str, srv_url: str, host: str, scheme: str = "https") -> str:
    return out.replace(srv_url, f"{scheme}://{host}").replace(srv_url.split("//", 1)[1], host)


def _pkg(rng: random.Random) -> str:
    return rng.choice(["requests", "numpy", "flask", "django", "pydantic", "boto3", "pytest", "httpx", "rich", "sqlalchemy"])


def _npkg(rng: random.Random) -> str:
    return rng.choice(["lodash", "express", "react", "axios", "typescript", "jest", "chalk", "commander", "@types/node", "eslint"])


# ---------------------------------------------------------------- network (infrastructure)

def network(rng: random.Random) -> Capture | None:
    tool = rng.choice(["pip", "pip", "npm", "npm", "git", "curl", "go", "maven", "bundler", "cargo"])
    fault = rng.choice(["dns", "refused", "timeout", "reset", "503", "502", "500", "429", "proxy"])
    if tool in ("git", "cargo") and fault in ("429",):
        fault = "503"
    host = rng.choice([HOSTS[tool]] * 3 + PRIVATE_HOSTS)
    status = {"503": 503, "502": 502, "500": 500, "429": 429}.get(fault, 200)
    mode = {"timeout": "hang", "reset": "reset"}.get(fault, "answer")
    body = {503: "<html><body><h1>503 Service Unavailable</h1>\nNo server is available to handle this request.\n</body></html>", 502: "<html>\n<head><title>502 Bad Gateway</title></head>\n<body>\n<center><h1>502 Bad Gateway</h1></center>\n</body>\n</html>", 500: "Internal Server Error", 429: "Too Many Requests"}.get(status, "")
    headers = {"Retry-After": str(rng.randint(10, 120))} if status == 429 else {}
    with LocalServer(status, body, headers, mode) as srv:
        url = {"dns": f"http://{noun(rng)}-{rng.randint(1, 99)}.invalid", "refused": "http://127.0.0.1:9", "proxy": "http://127.0.0.1:9"}.get(fault, srv.url)
        env: dict[str, str] = {}
        if fault == "proxy":
            env = {"HTTPS_PROXY": f"http://proxy.{noun(rng)}.invalid:3128", "HTTP_PROXY": f"http://proxy.{noun(rng)}.invalid:3128", "https_proxy": f"http://proxy.{noun(rng)}.invalid:3128"}
            url = f"https://{HOSTS[tool]}"
        p = Project(noun(rng))
        try:
            rc, out, cmd = _net_run(tool, url, p, rng, env)
        finally:
            p.close()
        if fault not in ("proxy",):
            fix = (lambda t: _rehost(t, url, host, "https")) if url.startswith("http://127") else (lambda t: re.sub(r"https?://[a-z]+-\d+\.invalid", f"https://{host}", re.sub(r"[a-z]+-\d+\.invalid", host, t)))
            out, cmd = fix(out), fix(cmd)
        out = re.sub(r"proxy\.(\w+)\.invalid", lambda m: f"proxy.{m.group(1)}.corp", out)
    # Some tools say nothing about the network when it fails (pip without retries prints only
    # "No matching distribution"); such a text is not an infrastructure example.
    if rc == 0 or not NET_CUE.search(out):
        return None
    eco = {"pip": "python", "npm": "node", "go": "go", "maven": "java", "bundler": "ruby", "cargo": "rust"}.get(tool, "generic")
    return Capture("net", eco, tool, "infrastructure", f"net_{fault}", cmd, out, rc, _VERS.get(tool, ""))


NET_CUE = re.compile(r"(?i)retr(y|ies)|resolv|refused|timed? ?out|timeout|reset|\b50[0-4]\b|\b429\b|too many requests|proxy|ssl|tls|connect|unreachable|network|socket|EAI_AGAIN|ENOTFOUND|ECONN|ETIMEDOUT|could not reach|unavailable|gateway")


def _net_run(tool: str, url: str, p: Project, rng: random.Random, env: dict, auth: bool = False) -> tuple[int, str, str]:
    pkg = _pkg(rng)
    if tool == "pip":
        cmd = rng.choice([f"pip install {pkg}", "pip install -r requirements.txt", f"python -m pip install {pkg}=={rng.randint(1, 3)}.{rng.randint(0, 30)}.0"])
        p.write({"requirements.txt": f"{pkg}\n"})
        rc, out = p.run(f"{PIP} install --disable-pip-version-check --no-input --retries {rng.choice([1, 2])} --timeout 3 --index-url {url}/simple {pkg}", env=env, timeout=120)
    elif tool == "npm":
        n = _npkg(rng)
        cmd = rng.choice(["npm ci", "npm install", f"npm install {n}"])
        p.write({"package.json": json.dumps({"name": "app", "version": "1.0.0", "dependencies": {n: "*"}})})
        rc, out = p.run(f"npm install --no-audit --package-lock-only --registry {url}/ --fetch-retries={rng.choice([0, 1])} --fetch-timeout=3000 --fetch-retry-mintimeout=100 --fetch-retry-maxtimeout=200", env=env, timeout=120)
        out = out.replace(" --package-lock-only", "")
    elif tool == "git":
        org, repo = noun(rng), noun(rng)
        cmd = rng.choice([f"git clone {url}/{org}/{repo}.git", "git fetch origin", "git submodule update --init --recursive"])
        rc, out = p.run(f"GIT_TERMINAL_PROMPT=0 git -c http.lowSpeedLimit=1000 -c http.lowSpeedTime=3 clone {url}/{org}/{repo}.git", env=env, timeout=60)
    elif tool == "curl":
        path = rng.choice(["/repos/acme/app/releases/latest", "/install.sh", "/v1/artifacts", "/releases/download/v1.2.3/tool-linux-amd64.tar.gz"])
        flags = rng.choice(["-fsSL", "-fL", "-sSf", "--fail --retry 2 -L"])
        cmd = f"curl {flags} {url}{path}"
        rc, out = p.run(f"curl {flags.replace('--retry 2', '--retry 1 --retry-delay 1')} --max-time 4 {url}{path} -o /dev/null", env=env, timeout=60)
    elif tool == "go":
        dep = rng.choice(["github.com/stretchr/testify", "github.com/google/uuid", "golang.org/x/sync", "github.com/spf13/cobra"])
        p.write({"go.mod": f"module example.com/{noun(rng)}\n\ngo 1.19\n\nrequire {dep} v1.{rng.randint(0, 9)}.0\n", "main.go": "package main\n\nfunc main() {}\n"})
        cmd = rng.choice(["go mod download", "go build ./...", "go test ./..."])
        rc, out = p.run("go mod download", env=dict(env, GOPROXY=url, GOSUMDB="off", GOFLAGS="-mod=mod", GOPATH="/tmp/sfgen/gopath-net", GOCACHE="/tmp/sfgen/gocache"), timeout=90)
        subprocess.run(["rm", "-rf", "/tmp/sfgen/gopath-net"], check=False)
    elif tool == "maven":
        settings = f"<settings><mirrors><mirror><id>central</id><mirrorOf>*</mirrorOf><url>{url}/maven2</url></mirror></mirrors></settings>"
        g, a, v = rng.choice([("org.apache.commons", "commons-text", "1.12.0"), ("com.squareup.okhttp3", "okhttp", "4.12.0"), ("io.micrometer", "micrometer-core", "1.13.2"), ("org.yaml", "snakeyaml", "2.2")])
        pom = f"<project xmlns=\"http://maven.apache.org/POM/4.0.0\"><modelVersion>4.0.0</modelVersion><groupId>com.acme</groupId><artifactId>{noun(rng)}</artifactId><version>1.0.0</version><dependencies><dependency><groupId>{g}</groupId><artifactId>{a}</artifactId><version>{v}</version></dependency></dependencies></project>"
        p.write({"pom.xml": pom, "settings.xml": settings})
        cmd = rng.choice(["mvn -B verify", "mvn -B dependency:resolve", "./mvnw -B package"])
        rc, out = p.run(f"mvn -B -s settings.xml -Dmaven.repo.local={p.root}/.m2 -Dmaven.wagon.http.retryHandler.count=0 -Dmaven.wagon.rto=3000 -Dmaven.resolver.transport=wagon dependency:resolve", env=env, timeout=240)
        out = out.replace(f"{p.root}/.m2", "/home/runner/.m2/repository").replace("{WS}/.m2", "{HOME}/.m2/repository")
    elif tool == "bundler":
        gem = rng.choice(["rails", "sinatra", "rack", "puma", "nokogiri"])
        p.write({"Gemfile": f"source '{url}'\n\ngem '{gem}'\n"})
        cmd = rng.choice(["bundle install", "bundle install --jobs 4 --retry 3"])
        rc, out = p.run("bundle install", env=dict(env, GEM_HOME="/tmp/sfgen/gems", BUNDLE_RETRY="0", BUNDLE_TIMEOUT="3"), timeout=120)
    else:
        crate = rng.choice(["serde", "tokio", "anyhow", "regex", "clap"])
        p.write({"Cargo.toml": f"[package]\nname = \"{noun(rng)}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\n{crate} = \"1\"\n", "src/lib.rs": "", ".cargo/config.toml": f"[source.crates-io]\nreplace-with = \"mirror\"\n\n[source.mirror]\nregistry = \"sparse+{url}/index/\"\n\n[net]\nretry = 0\n"})
        cmd = rng.choice(["cargo build", "cargo fetch", "cargo test --locked"])
        rc, out = p.run("cargo fetch", env=dict(env, CARGO_HTTP_TIMEOUT="3", CARGO_NET_RETRY="0", CARGO_TARGET_DIR="/tmp/sfgen/cargo-target"), timeout=90)
        out = out.replace("`mirror`", "`crates-io`").replace("registry `mirror`", "registry `crates-io`")
    return rc, out, cmd


def access(rng: random.Random) -> Capture | None:
    tool = rng.choice(["pip", "npm", "npm", "git", "git", "curl", "go", "maven", "bundler"])
    status = rng.choice([401, 401, 403])
    host = rng.choice(PRIVATE_HOSTS + [HOSTS[tool]])
    headers = {"WWW-Authenticate": rng.choice(['Basic realm="Artifactory Realm"', 'Basic realm="GitHub"', 'Bearer realm="https://auth.example.com/token"', 'Basic realm="Sonatype Nexus Repository Manager"'])} if status == 401 else {}
    body = {401: rng.choice(['{"message":"Bad credentials","documentation_url":"https://docs.github.com/rest"}', '{"errors":[{"status":401,"message":"Authentication is required"}]}', "Unauthorized", '{"error":"invalid_token","error_description":"The access token expired"}']),
            403: rng.choice(['{"message":"Resource not accessible by integration","documentation_url":"https://docs.github.com/rest"}', "Forbidden", '{"error":"Forbidden","reason":"user does not have read permission on this package"}', "<html><body>403 Forbidden: token lacks scope read:packages</body></html>"])}[status]
    with LocalServer(status, body, headers) as srv:
        p = Project(noun(rng))
        try:
            rc, out, cmd = _net_run(tool, srv.url, p, rng, {}, auth=True)
        finally:
            p.close()
        out, cmd = _rehost(out, srv.url, host), _rehost(cmd, srv.url, host)
    if rc == 0 or not re.search(r"(?i)40[13]|unauthori[sz]ed|forbidden|auth|credential|password|username|permission|denied|token|login", out):
        return None
    eco = {"pip": "python", "npm": "node", "go": "go", "maven": "java", "bundler": "ruby"}.get(tool, "generic")
    return Capture("net", eco, tool, "access", f"http_{status}", cmd, out, rc, _VERS.get(tool, ""))


# ---------------------------------------------------------------- disk, memory, time (infrastructure)

def disk_full(rng: random.Random) -> Capture | None:
    tiny = WORK / "tiny" / f"{rng.getrandbits(32):x}"
    tiny.mkdir(parents=True, exist_ok=True)
    size = rng.choice(["1m", "2m", "3m"])
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(tiny)]).returncode:
        return None
    tool = rng.choice(["pip", "npm", "cargo", "gcc", "go", "tar", "dd", "python", "git", "docker_cp", "java"])
    p = Project(noun(rng))
    try:
        t = str(tiny)
        if tool == "pip":
            cmd = f"pip install {rng.choice(['numpy', 'pandas', 'scipy', 'grpcio', 'cryptography', 'pyarrow'])}"
            # TMPDIR on the small disk: pip unpacks there first, as a runner with a full /tmp does.
            rc, out = p.run(f"TMPDIR={t} {PIP} install --no-cache-dir --disable-pip-version-check --no-deps --target {t}/site {cmd.split()[-1]}", timeout=300)
            out = out.replace(f"{t}/site", "{SITE}")
        elif tool == "npm":
            cmd = rng.choice(["npm ci", "npm install"])
            p.write({"package.json": json.dumps({"name": "app", "version": "1.0.0", "dependencies": {"typescript": "5.5.4", "lodash": "4.17.21"}})})
            rc, out = p.run(f"cp package.json {t}/ && cd {t} && npm install --no-audit --cache {t}/.npm", timeout=300)
            out = out.replace(f"{t}/.npm", "{HOME}/.npm").replace(t, "{WS}")
        elif tool == "cargo":
            cmd = rng.choice(["cargo build --release", "cargo test", "cargo build"])
            p.write({"Cargo.toml": f"[package]\nname = \"{noun(rng)}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n", "src/main.rs": "fn main() {\n" + "".join(f"    println!(\"{i} {{}}\", {i});\n" for i in range(400)) + "}\n"})
            rc, out = p.run(f"CARGO_TARGET_DIR={t}/target cargo build", timeout=300)
            out = out.replace(f"{t}/target", "{WS}/target")
        elif tool == "gcc":
            cmd = "make"
            p.write({"big.c": "".join(f"int f{i}(int x) {{ return x * {i} + {i % 7}; }}\n" for i in range(20000)) + "int main(void) { return 0; }\n"})
            rc, out = p.run(f"TMPDIR={t} gcc -O0 -g -o {t}/big big.c", timeout=300)
            out = out.replace(t + "/", "/tmp/")
        elif tool == "go":
            cmd = rng.choice(["go build ./...", "go test ./..."])
            p.write({"go.mod": "module example.com/app\n\ngo 1.19\n", "main.go": "package main\n\nimport (\n\t\"fmt\"\n\t\"net/http\"\n)\n\nfunc main() { fmt.Println(http.StatusOK) }\n"})
            rc, out = p.run("go build ./...", env={"GOCACHE": f"{t}/go-build", "GOPATH": f"{t}/go", "GOFLAGS": "-mod=mod", "GOTMPDIR": t}, timeout=300)
            out = out.replace(f"{t}/go-build", "{HOME}/.cache/go-build").replace(t, "/tmp")
        elif tool == "tar":
            cmd = rng.choice(["tar -xzf build-cache.tar.gz -C ~/.cache", "tar -czf dist.tar.gz dist/"])
            rc, out = p.run(f"head -c 8000000 /dev/urandom > blob && tar -cf {t}/dist.tar blob", timeout=120)
            out = out.replace(t + "/", "")
        elif tool == "dd":
            cmd = "./scripts/make-image.sh"
            rc, out = p.run(f"dd if=/dev/zero of={t}/disk.img bs=1M count=64", timeout=120)
            out = out.replace(t + "/", "build/")
        elif tool == "python":
            cmd = rng.choice(["python scripts/export_fixtures.py", "python -m app.generate_reports"])
            p.write({"gen.py": "import os, json\nout = os.environ['OUT']\nfor i in range(100000):\n    with open(os.path.join(out, f'report_{i}.json'), 'w') as f:\n        json.dump({'i': i, 'rows': list(range(400))}, f)\n"})
            rc, out = p.run(f"OUT={t} {PY_VENV}/bin/python gen.py", timeout=300)
            out = out.replace(t, "{WS}/out").replace("gen.py", cmd.split()[-1].replace(".", "/") + ".py" if "-m" in cmd else cmd.split()[-1])
        elif tool == "git":
            cmd = "git clone --depth 1 https://github.com/acme/monorepo.git"
            p.run("git init -q src && cd src && head -c 6000000 /dev/urandom > data.bin && git add . && git -c user.email=a@b -c user.name=ci commit -qm init", timeout=120)
            rc, out = p.run(f"git clone -q src {t}/monorepo", timeout=120)
            out = out.replace(t + "/", "")
        elif tool == "java":
            cmd = rng.choice(["mvn -B package", "./gradlew build"])
            p.write({"W.java": "import java.io.*;\npublic class W { public static void main(String[] a) throws Exception { try (var o = new FileOutputStream(a[0])) { byte[] b = new byte[1 << 20]; for (int i = 0; i < 64; i++) o.write(b); } } }\n"})
            rc, out = p.run(f"javac W.java && java W {t}/app.jar", timeout=120)
            out = out.replace(t + "/", "target/")
        else:
            cmd = "cp -r node_modules dist/ && zip -r bundle.zip dist"
            rc, out = p.run(f"head -c 6000000 /dev/urandom > bundle.bin && cp bundle.bin {t}/bundle.bin", timeout=120)
            out = out.replace(t + "/", "dist/")
    finally:
        p.close()
        subprocess.run(["umount", str(tiny)], check=False)
        tiny.rmdir()
    if rc == 0 or "space" not in out.lower():
        return None
    eco = {"pip": "python", "npm": "node", "cargo": "rust", "gcc": "c", "go": "go", "python": "python", "java": "java"}.get(tool, "generic")
    return Capture("net", eco, tool, "infrastructure", "disk_full", cmd, out, rc, _VERS.get(tool, ""))


def out_of_memory(rng: random.Random) -> Capture | None:
    tool = rng.choice(["node", "node", "java", "python", "killed", "killed", "killed", "gcc", "rustc"])
    p = Project(noun(rng))
    try:
        if tool == "node":
            cmd = rng.choice(["npm run build", "npx webpack --mode production", "npx jest --ci", "npx tsc -p ."])
            p.write({"oom.js": "const a = []; while (true) { a.push(new Array(100000).fill({x: Math.random()})); }\n"})
            rc, out = p.run(f"node --max-old-space-size={rng.choice([64, 96, 128])} oom.js", timeout=180)
            eco = "node"
        elif tool == "java":
            cmd = rng.choice(["mvn -B verify", "./gradlew test", "mvn -B package"])
            p.write({"Oom.java": "import java.util.*;\npublic class Oom { public static void main(String[] a) { List<long[]> l = new ArrayList<>(); while (true) l.add(new long[1 << 20]); } }\n"})
            rc, out = p.run(f"javac Oom.java && java -Xmx{rng.choice([32, 48, 64])}m Oom", timeout=180)
            eco = "java"
        elif tool == "python":
            cmd = rng.choice(["pytest -q", "python -m app.train", "python scripts/build_index.py"])
            p.write({"oom.py": "import numpy\nxs = []\nwhile True:\n    xs.append(bytearray(50 * 1024 * 1024))\n" if False else "xs = []\nwhile True:\n    xs.append(bytearray(50 * 1024 * 1024))\n"})
            rc, out = p.run(f"ulimit -v {rng.choice([200000, 300000])}; {PY_VENV}/bin/python oom.py", timeout=120)
            eco = "python"
        elif tool == "gcc":
            cmd = rng.choice(["make -j8", "cmake --build build -j"])
            p.write({"t.cpp": "template<int N> struct F { static const int v = F<N-1>::v + F<N-2>::v; };\ntemplate<> struct F<0> { static const int v = 0; };\ntemplate<> struct F<1> { static const int v = 1; };\n#include <vector>\n#include <map>\n#include <string>\n#include <iostream>\nint main() { std::map<std::string, std::vector<int>> m; std::cout << F<40>::v; }\n"})
            rc, out = p.run("ulimit -v 60000; g++ -O2 -c t.cpp -o t.o", timeout=120)
            eco = "c"
        elif tool == "rustc":
            cmd = rng.choice(["cargo build --release", "cargo test"])
            p.write({"m.rs": "fn main() { let v: Vec<u8> = Vec::with_capacity(1 << 36); println!(\"{}\", v.capacity()); }\n"})
            rc, out = p.run("rustc -O m.rs -o m && ulimit -v 100000 && ./m", timeout=180)
            eco = "rust"
        else:
            # The kernel's OOM killer sends SIGKILL; the shell running the step reports it.
            eco = rng.choice(["python", "node", "java", "go", "rust", "c"])
            cmd, prog = {
                "python": (rng.choice(["pytest -n 4", "python train.py"]), f"{PY_VENV}/bin/python -c 'import time; x = bytearray(10**8); time.sleep(30)'"),
                "node": (rng.choice(["npm run build", "npx jest"]), "node -e 'setTimeout(() => {}, 30000)'"),
                "java": (rng.choice(["./gradlew build", "mvn -B verify"]), "sleep 30"),
                "go": ("go test ./...", "sleep 30"),
                "rust": ("cargo build --release", "sleep 30"),
                "c": ("make -j16", "sleep 30"),
            }[eco]
            pre = {"python": "============================= test session starts ==============================\nplatform linux -- Python 3.11.9, pytest-8.2.2, pluggy-1.5.0\ncollected 412 items\n\ntests/test_models.py ........................................", "node": "> app@1.0.0 build\n> webpack --mode production\n", "java": "> Task :compileJava\n> Task :test", "go": "ok  \texample.com/app/internal/api\t2.113s", "rust": "   Compiling syn v2.0.66\n   Compiling serde_derive v1.0.203", "c": "[ 42%] Building CXX object src/CMakeFiles/core.dir/engine.cpp.o"}[eco]
            script = f"echo '{pre}'; {prog} & pid=$!; sleep 1; kill -9 $pid; wait $pid"
            rc, out = p.run(script.replace("wait $pid", "wait $pid; exit $?"), timeout=60)
            out = re.sub(r"line \d+: +\d+ Killed +.*", lambda m: m.group(0).split("Killed")[0] + "Killed                  " + cmd, out)
            tool = "kernel-oom-killer"
    finally:
        p.close()
    if rc == 0:
        return None
    out = out.replace("oom.js", rng.choice(["node_modules/webpack/lib/index.js", "build.js"])).replace("Oom", rng.choice(["Indexer", "ReportJob", "AppTest"]))
    return Capture("net", eco, tool, "infrastructure", f"oom_{tool}", cmd, out, rc, _VERS.get(tool, ""))


def step_timeout(rng: random.Random) -> Capture | None:
    eco, cmd, pre = rng.choice([
        ("python", "pytest tests/integration", "============================= test session starts ==============================\ncollected 86 items\n\ntests/integration/test_api.py ......"),
        ("node", "npm test", "> app@1.0.0 test\n> jest --ci\n\nPASS src/utils.test.js"),
        ("go", "go test ./...", "ok  \tgithub.com/acme/app/internal/store\t0.812s"),
        ("java", "mvn -B verify", "[INFO] Running com.acme.IntegrationIT"),
        ("generic", "./scripts/wait-for-it.sh db:5432 -- ./run-tests.sh", "wait-for-it.sh: waiting 60 seconds for db:5432"),
        ("rust", "cargo test --release", "   Compiling app v0.1.0 (/home/runner/work/app/app)\n    Finished `release` profile [optimized] target(s) in 1m 02s\n     Running unittests src/lib.rs"),
    ])
    secs = rng.choice([2, 3])
    p = Project(noun(rng))
    try:
        rc, out = p.run(f"echo '{pre}'; timeout {'--verbose ' if rng.random() < 0.5 else ''}{secs} sleep 30", timeout=60)
    finally:
        p.close()
    if rc != 124:
        return None
    out = out.replace("'sleep'", f"'{cmd.split()[0]}'").replace("\u2018sleep\u2019", f"\u2018{cmd.split()[0]}\u2019")
    return Capture("net", eco, "timeout", "infrastructure", "step_timeout", f"timeout {rng.choice(['10m', '20m', '1800', '45m'])} {cmd}", out, rc, _VERS.get("timeout", ""))


def service_down(rng: random.Random) -> Capture | None:
    """A test step cannot reach its service container (database, cache, broker)."""
    svc, port = rng.choice([("postgres", 5432), ("mysql", 3306), ("redis", 6379), ("rabbitmq", 5672), ("elasticsearch", 9200), ("mongo", 27017)])
    kind = rng.choice(["py", "curl", "nc"])
    p = Project(noun(rng))
    try:
        if kind == "py":
            p.write({"wait.py": "import socket\nsocket.create_connection(('127.0.0.1', 9), timeout=3)\n"})
            rc, out = p.run(f"{PY_VENV}/bin/python wait.py", timeout=30)
            cmd = rng.choice(["python scripts/wait_for_db.py", "python manage.py migrate"])
            out = out.replace("('127.0.0.1', 9)", f"('{svc}', {port})").replace("wait.py", cmd.split()[1])
        elif kind == "curl":
            rc, out = p.run("curl -sS --retry 2 --retry-delay 1 --retry-connrefused http://127.0.0.1:9/_cluster/health", timeout=30)
            cmd = f"curl -sS --retry 5 --retry-connrefused http://localhost:{port}/_cluster/health"
            out = out.replace("127.0.0.1 port 9", f"localhost port {port}").replace("127.0.0.1:9", f"localhost:{port}")
        else:
            rc, out = p.run("for i in 1 2 3; do (exec 3<>/dev/tcp/127.0.0.1/9) 2>&1 && exit 0; echo \"waiting for service ($i/3)\"; sleep 0.2; done; echo 'service did not become ready in time'; exit 1", timeout=30)
            cmd = f"./scripts/wait-for {svc}:{port}"
            out = out.replace("127.0.0.1/9", f"{svc}/{port}")
    finally:
        p.close()
    if rc == 0:
        return None
    return Capture("net", "generic", "service", "infrastructure", f"service_down_{svc}", cmd, out, rc)


def docker_daemon(rng: random.Random) -> Capture | None:
    cmd = rng.choice(["docker build -t app .", "docker compose up -d", "docker pull postgres:16", "docker run --rm app:ci pytest", "docker buildx build --push -t ghcr.io/acme/app:sha ."])
    p = Project(noun(rng))
    try:
        p.write({"Dockerfile": "FROM alpine:3.20\n"})
        rc, out = p.run(cmd.replace("ghcr.io/acme/app:sha", "app:ci"), env={"DOCKER_HOST": "unix:///var/run/docker.sock"}, timeout=60)
    finally:
        p.close()
    if rc == 0 or not out.strip():
        return None
    return Capture("net", "docker", "docker", "infrastructure", "docker_daemon_down", cmd, out, rc, _VERS.get("docker", ""))


def tls_intercept(rng: random.Random) -> Capture | None:
    """A TLS-inspecting proxy whose CA the runner does not trust (a network configuration fault)."""
    tool = rng.choice(["pip", "npm"])
    p = Project(noun(rng))
    try:
        if tool == "pip":
            cmd = f"pip install {_pkg(rng)}"
            rc, out = p.run(f"env -u PIP_CERT -u SSL_CERT_FILE -u REQUESTS_CA_BUNDLE {PIP} install --disable-pip-version-check --retries 1 --no-deps --dry-run {cmd.split()[-1]}", timeout=120)
        elif tool == "npm":
            cmd = "npm ci"
            p.write({"package.json": json.dumps({"name": "app", "version": "1.0.0", "dependencies": {_npkg(rng): "*"}})})
            rc, out = p.run("env -u NODE_EXTRA_CA_CERTS npm install --no-audit --package-lock-only --fetch-retries=0 --cafile=/dev/null", timeout=120)
        elif tool == "git":
            cmd = "git clone https://github.com/acme/app.git"
            rc, out = p.run("env -u GIT_SSL_CAINFO GIT_SSL_CAINFO=/dev/null git clone https://github.com/git/git.git x", timeout=60)
        else:
            cmd = "curl -fsSL https://get.example.com/install.sh | sh"
            rc, out = p.run("env -u CURL_CA_BUNDLE curl -fsSL --cacert /dev/null https://registry.npmjs.org/ -o /dev/null", timeout=60)
    finally:
        p.close()
    if rc == 0:
        return None
    eco = {"pip": "python", "npm": "node"}.get(tool, "generic")
    return Capture("net", eco, tool, "infrastructure", "tls_untrusted", cmd, out.replace("--cafile=/dev/null", ""), rc, _VERS.get(tool, ""))


# ---------------------------------------------------------------- security

_NPM_VULN = [("lodash", "4.17.15"), ("minimist", "1.2.0"), ("axios", "0.21.0"), ("node-fetch", "2.6.0"), ("jsonwebtoken", "8.5.1"), ("express", "4.17.1"), ("moment", "2.29.1"), ("qs", "6.5.2"), ("handlebars", "4.5.2"),
             ("ws", "7.4.5"), ("semver", "5.7.1"), ("tar", "4.4.15"), ("glob-parent", "5.1.1"), ("xml2js", "0.4.23"), ("ejs", "3.1.6"), ("undici", "5.8.0"), ("follow-redirects", "1.14.7"), ("shell-quote", "1.7.2"), ("json5", "2.2.1"), ("word-wrap", "1.2.3")]
_PY_VULN = [("requests", "2.19.1"), ("urllib3", "1.24.1"), ("jinja2", "2.10"), ("pyyaml", "5.3"), ("django", "3.2.1"), ("flask", "0.12.2"), ("pillow", "8.1.0"), ("cryptography", "3.2"), ("werkzeug", "2.2.2"), ("sqlparse", "0.4.1"),
            ("certifi", "2022.9.24"), ("idna", "3.6"), ("setuptools", "65.5.0"), ("aiohttp", "3.8.4"), ("tornado", "6.3.2"), ("gunicorn", "20.1.0"), ("paramiko", "2.9.2"), ("lxml", "4.6.2"), ("numpy", "1.21.0"), ("pydantic", "1.10.1")]


def npm_audit(rng: random.Random) -> Capture | None:
    deps = dict(rng.sample(_NPM_VULN, rng.randint(1, 4)))
    deps.update(dict(rng.sample([("dotenv", "16.4.5"), ("uuid", "9.0.1"), ("commander", "12.1.0")], rng.randint(0, 2))))
    level = rng.choice(["", " --audit-level=high", " --audit-level=moderate", " --audit-level=critical", " --omit=dev"])
    p = Project(noun(rng))
    try:
        p.write({"package.json": json.dumps({"name": noun(rng), "version": "1.0.0", "dependencies": deps}, indent=2)})
        rc0, _ = p.run("npm install --package-lock-only --no-audit --ignore-scripts", timeout=240)
        if rc0:
            return None
        rc, out = p.run(f"npm audit{level}", timeout=120)
    finally:
        p.close()
    if rc == 0:
        return None
    return Capture("net", "node", "npm audit", "security", "npm_audit", f"npm audit{level}", out, rc, _VERS.get("npm", ""))


def pip_audit(rng: random.Random) -> Capture | None:
    reqs = rng.sample(_PY_VULN, rng.randint(1, 4))
    fmt = rng.choice(["", "", " --desc", " -f columns"])
    p = Project(noun(rng))
    try:
        p.write({"requirements.txt": "".join(f"{n}=={v}\n" for n, v in reqs)})
        rc, out = p.run(f"{PY_VENV}/bin/pip-audit --no-deps --disable-pip -r requirements.txt --progress-spinner off{fmt}", timeout=240)
    finally:
        p.close()
    if rc == 0 or "Found" not in out and "vulnerab" not in out.lower():
        return None
    return Capture("net", "python", "pip-audit", "security", "pip_audit", f"pip-audit -r requirements.txt{fmt}", out, rc, _VERS.get("pip-audit", ""))


_VERS: dict[str, str] = {}
# npm audit is not among them: this machine's registry proxy refuses the advisory endpoint's POST,
# so npm audit reports come from exemplars.py.
MAKERS = [network, network, network, network, access, access, access, disk_full, disk_full, out_of_memory, out_of_memory, step_timeout, service_down, docker_daemon, tls_intercept, pip_audit, pip_audit]

if __name__ == "__main__":
    _VERS.update(pip=version_of(f"{PIP} --version").split(" from ")[0], npm="npm " + version_of("npm --version"), git=version_of("git --version"), curl=version_of("curl --version"), go=version_of("go version"),
                 maven=version_of("mvn -v").replace("\x1b[1m", "").replace("\x1b[m", ""), bundler=version_of("bundle -v"), cargo=version_of("cargo --version"), node="node " + version_of("node --version"),
                 java=version_of("java -version 2>&1"), python=version_of(f"{PY_VENV}/bin/python --version"), gcc=version_of("gcc --version"), rustc=version_of("rustc --version"), docker=version_of("docker --version"),
                 timeout=version_of("timeout --version"), **{"pip-audit": version_of(f"{PY_VENV}/bin/pip-audit --version")})
    _VERS["npm audit"] = _VERS["npm"]
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 400
    main_loop("net", MAKERS, n, seed=8808, only=sys.argv[2] if len(sys.argv) > 2 else None)
