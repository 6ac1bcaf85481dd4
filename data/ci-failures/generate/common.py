"""What every capture script shares: run a real tool in a throw-away project, keep what it printed.

A *capture* is one failing run of a real tool: the exact text it printed (stdout and stderr
interleaved, as a CI log shows them), its exit code, the tool and its version, and the label the
failure gets under ../LABELS.md. Paths are made neutral at capture time ({WS} for the project
checkout, {HOME} for the user's home) so that assemble.py can place the same output in a GitHub
Actions, GitLab or Jenkins workspace.

Work files live under $SFGEN_WORK (default /tmp/sfgen): tool installs, throw-away projects, and
captures/<family>.jsonl, which assemble.py reads.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

WORK = Path(os.environ.get("SFGEN_WORK", "/tmp/sfgen"))
TOOLS = WORK / "tools"
CAPTURES = WORK / "captures"
HERE = Path(__file__).resolve().parent

PY_VENV = TOOLS / "py"
PY_BARE = TOOLS / "pybare"  # an empty venv: pip output as on a fresh CI runner
CA = "/etc/ssl/certs/ca-certificates.crt"
NODE_TOOLS = TOOLS / "node"

# Longer output is cut to its last lines, as a CI log tail is; the assembler cuts again to fit.
MAX_BODY_LINES = 260
MAX_BODY_CHARS = 16000


@dataclass
class Capture:
    family: str  # the script that made it
    ecosystem: str
    tool: str
    label: str
    fault: str  # what was injected, for the README and for balancing
    command: str  # as a CI step would show it
    body: str
    exit_code: int
    tool_version: str = ""
    origin: str = "generated"
    extra: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        return hashlib.sha1(f"{self.family}|{self.tool}|{self.body}".encode()).hexdigest()[:16]


class Sink:
    """Appends captures of one family to captures/<family>.jsonl, replacing an earlier run's file."""

    def __init__(self, family: str, resume: bool = False):
        CAPTURES.mkdir(parents=True, exist_ok=True)
        self.path = CAPTURES / f"{family}.jsonl"
        self.tmp = self.path.with_suffix(".partial")
        self.n = 0
        self.seen: set[str] = set()
        if resume:
            # Continue an interrupted run: keep its complete lines, then append.
            src = self.tmp if self.tmp.exists() else self.path
            kept = []
            if src.exists():
                for line in src.read_text(encoding="utf-8").splitlines():
                    try:
                        cap = Capture(**json.loads(line))
                    except (json.JSONDecodeError, TypeError):
                        continue
                    kept.append(line)
                    self.seen.add(cap.key)
            self.tmp.write_text("".join(x + "\n" for x in kept), encoding="utf-8")
            self.n = len(kept)
        self.f = self.tmp.open("a" if resume else "w", encoding="utf-8")

    def add(self, cap: Capture) -> bool:
        if not cap.body.strip() and cap.label != "unknown":
            print(f"  ! empty output for {cap.tool} {cap.fault}", file=sys.stderr)
            return False
        if cap.key in self.seen:
            return False
        self.seen.add(cap.key)
        self.f.write(json.dumps(asdict(cap), ensure_ascii=False) + "\n")
        self.f.flush()
        self.n += 1
        return True

    def close(self) -> None:
        self.f.close()
        self.tmp.replace(self.path)
        print(f"{self.path}: {self.n} captures")


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def clean(text: str, ws: Path | None) -> str:
    """Neutral paths, no ANSI, no progress-bar carriage returns, tail-trimmed."""
    text = _ANSI.sub("", text)
    text = "\n".join(line.rsplit("\r", 1)[-1] if "\r" in line.rstrip("\r") else line.rstrip("\r") for line in text.split("\n"))
    repl = []
    if ws is not None:
        repl += [(str(ws.resolve()), "{WS}"), (str(ws), "{WS}")]
    repl += [
        (str(NODE_TOOLS / "node_modules"), "{WS}/node_modules"),
        (str(PY_BARE / "lib/python3.11/site-packages"), "{SITE}"),
        (str(PY_BARE), "{WS}/.venv"),
        (str(PY_VENV / "lib/python3.11/site-packages"), "{SITE}"),
        (str(PY_VENV / "bin"), "{WS}/.venv/bin"),
        (str(PY_VENV), "{WS}/.venv"),
        ("../../../tools/py/lib/python3.11/site-packages", ".venv/lib/python3.11/site-packages"),
        ("../../../tools/node/node_modules", "node_modules"),
        (str(WORK), "/tmp"),
        ("/root/.pyenv/versions/3.11.7", "/usr/local"),
        ("/root", "{HOME}"),
    ]
    for old, new in repl:
        text = text.replace(old, new)
    lines = text.strip("\n").split("\n")
    if len(lines) > MAX_BODY_LINES:
        lines = lines[-MAX_BODY_LINES:]
    text = "\n".join(lines)
    if len(text) > MAX_BODY_CHARS:
        text = text[-MAX_BODY_CHARS:]
        text = text[text.find("\n") + 1 :]
    return text


def tool_env(extra: dict | None = None) -> dict:
    env = {
        "PATH": f"{PY_VENV}/bin:{NODE_TOOLS}/node_modules/.bin:/root/.cargo/bin:/usr/local/bin:/usr/bin:/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "NO_COLOR": "1",
        "FORCE_COLOR": "0",
        "CI": "true",
        "PYTHONDONTWRITEBYTECODE": "1",
        "npm_config_update_notifier": "false",
        "npm_config_fund": "false",
        "CARGO_TERM_COLOR": "never",
        # This machine reaches the registries through a TLS-inspecting proxy; tools need its CA.
        "PIP_CONFIG_FILE": "/dev/null",
        "PIP_CERT": CA,
        "SSL_CERT_FILE": CA,
        "REQUESTS_CA_BUNDLE": CA,
        "NODE_EXTRA_CA_CERTS": CA,
        "GIT_SSL_CAINFO": CA,
        "CURL_CA_BUNDLE": CA,
    }
    if extra:
        env.update(extra)
    return env


def run(cmd: str, cwd: Path, *, env: dict | None = None, timeout: float = 120, input: str | None = None) -> tuple[int, str]:
    """Run `cmd` through bash as a CI step does; stdout and stderr interleaved."""
    try:
        p = subprocess.run(
            ["nice", "-n", "10", "bash", "-c", cmd],
            cwd=cwd,
            env=tool_env(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            input=input,
            text=True,
            errors="replace",
        )
        return p.returncode, p.stdout
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return 124, out


def version_of(cmd: str) -> str:
    rc, out = run(cmd, Path("/"), timeout=60)
    return out.strip().splitlines()[0] if out.strip() else ""


class Project:
    """A throw-away project directory; files written from a {relative path: text} dict."""

    def __init__(self, name: str):
        base = WORK / "ws" / hashlib.sha1(os.urandom(8)).hexdigest()[:10]
        self.root = base / name
        self.root.mkdir(parents=True)
        self.base = base

    def write(self, files: dict[str, str]) -> "Project":
        for rel, text in files.items():
            p = self.root / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text, encoding="utf-8")
        return self

    def run(self, cmd: str, **kw) -> tuple[int, str]:
        rc, out = run(cmd, self.root, **kw)
        return rc, clean(out, self.root)

    def close(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)


# ---------------------------------------------------------------- names

# Identifiers are drawn from plain domain words so that no two projects share names and none
# carries a marker of the label.
NOUNS = """account address alert archive asset audit balance basket batch bill booking bucket budget
buffer cache calendar cart catalog channel chart checkout claim client cluster comment config contact
contract coupon course credit currency customer dashboard dataset deadline delivery device discount
document domain draft employee event export feature feed file filter form gateway grade graph group
guest handler header history image import incident index inventory invoice item job journal key
label ledger lesson license limit listing loan location log manifest market match media member
message metric module monitor node note notice offer order owner package page parcel partner
payload payment period permission photo pipeline plan player policy pool post price product profile
project quota queue quote rate receipt record region release report request reservation resource
result review route rule sample schedule schema score search seat segment sensor session setting
shipment signal sku slot snapshot source stock store stream subscription summary supplier survey
table tag task team template tenant ticket timer token topic track trade transfer trip unit upload
user vendor version visit voucher wallet warehouse webhook widget window worker workflow zone""".split()
VERBS = """add apply build calc check clean collect compute convert count create decode encode ensure
fetch filter find format group handle load lookup make merge normalize parse prepare process read
render resolve round save scale score select send serialize sort split store sum to_dict transform
update validate verify""".split()
ADJ = """active archived base cached daily default draft empty expired fast final global hourly
internal latest legacy local main max min monthly nested open pending primary public raw remote
safe shared simple small stale total valid weekly""".split()
ORGS = """acme brightline cobalt datawise evergreen fieldwork foundry greenleaf harbor ironclad
juniper kestrel lattice meridian northwind orbit pinecone quarry redwood saltmarsh tidewater
umbra vantage willow yardstick zephyr""".split()


def snake(rng: random.Random, parts: int = 2) -> str:
    words = [rng.choice(VERBS)] + [rng.choice(NOUNS) for _ in range(parts - 1)]
    return "_".join(words)


def noun(rng: random.Random) -> str:
    return rng.choice(NOUNS)


def camel(s: str) -> str:
    head, *rest = s.split("_")
    return head + "".join(w.capitalize() for w in rest)


def pascal(s: str) -> str:
    return "".join(w.capitalize() for w in s.split("_"))


def repo_name(rng: random.Random) -> tuple[str, str]:
    org = rng.choice(ORGS)
    name = rng.choice([f"{noun(rng)}-{rng.choice(['service', 'api', 'core', 'lib', 'tools', 'app', 'sdk', 'cli', 'worker', 'web'])}", f"{rng.choice(ADJ)}-{noun(rng)}", noun(rng) + "s", f"{org}-{noun(rng)}"])
    return org, name


def distinct(rng: random.Random, make, n: int) -> list[str]:
    out: list[str] = []
    while len(out) < n:
        x = make(rng)
        if x not in out:
            out.append(x)
    return out


def main_loop(family: str, makers: list, n: int, seed: int, only: str | None = None) -> None:
    """Call each maker round-robin until n captures are kept. A maker takes (rng) and returns
    a Capture or None (the injected fault did not fail the way it must)."""
    resume = os.environ.get("SFGEN_RESUME") == "1"
    sink = Sink(family, resume=resume)
    # A resumed run draws other projects than the run it continues.
    rng = random.Random(seed + sink.n * 7919 if resume else seed)
    tries = 0
    misses: dict[str, int] = {}
    try:
        while sink.n < n and tries < n * 3 + sink.n:
            maker = makers[tries % len(makers)]
            tries += 1
            if only and only not in maker.__name__:
                continue
            try:
                cap = maker(random.Random(rng.getrandbits(64)))
            except Exception as exc:  # a broken maker must not stop the others; it is reported
                print(f"  ! {maker.__name__}: {type(exc).__name__}: {exc}", file=sys.stderr)
                cap = None
            if cap is None or not sink.add(cap):
                misses[maker.__name__] = misses.get(maker.__name__, 0) + 1
    finally:
        sink.close()
    if misses:
        print(f"  misses: {misses}", file=sys.stderr)


# ---------------------------------------------------------------- a local registry stand-in

class LocalServer:
    """An HTTP server on 127.0.0.1 answering every request with one status, as a registry, proxy
    or API does when it refuses, is missing a package, is overloaded or rate-limits. `mode`
    "hang" accepts and never answers (a read timeout); "reset" closes the connection at once."""

    def __init__(self, status: int = 404, body: str = "", headers: dict | None = None, mode: str = "answer"):
        import http.server
        import socketserver
        import threading

        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self):
                if outer.mode == "hang":
                    import time
                    time.sleep(30)
                    return
                if outer.mode == "reset":
                    self.connection.close()
                    return
                data = outer.body.encode()
                self.send_response(outer.status)
                for k, v in (outer.headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_HEAD = _answer

            def log_message(self, *a):
                pass

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self.status, self.body, self.headers, self.mode = status, body, headers, mode
        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "LocalServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
