"""Language-neutral checks run as CI steps: shellcheck, yamllint, hadolint, markdownlint (lint),
bandit and detect-secrets (security), and plain shell scripts that stop with an error of their own.
"""

from __future__ import annotations

import random
import sys

from common import PY_VENV, TOOLS, Capture, Project, main_loop, noun, snake, version_of


def shellcheck(rng: random.Random) -> Capture | None:
    files = {}
    for _ in range(rng.randint(1, 3)):
        v = noun(rng).upper()
        snippets = [
            f"for f in $(ls *.{rng.choice(['txt', 'log', 'json'])}); do\n  echo $f\ndone\n",
            f"cd {noun(rng)}\nrm -rf $BUILD_DIR/*\n",
            f"if [ $1 == \"{noun(rng)}\" ]; then\n  echo ok\nfi\n",
            f"{v}=`git rev-parse HEAD`\necho \"${v}\"\n",
            f"read {noun(rng)}\n",
            "echo \"Deploying to $ENV\" | grep -q prod && exit 1 || echo done\n",
            "local x=1\n",
            "cp $SRC $DEST\n",
            "[ -z $TOKEN ] && echo missing\n",
            f"cat {noun(rng)}.txt | grep foo\n",
            "ssh host \"echo $HOME\"\n",
            "trap \"rm -f $tmp\" EXIT\n",
            "arr=(a b c)\necho $arr\n",
            "if [[ $n -gt 1 ]] then echo x; fi\n",
        ]
        files[f"scripts/{snake(rng, 2).replace('_', '-')}.sh"] = "#!/bin/bash\nset -e\n" + "".join(rng.sample(snippets, rng.randint(2, 5)))
    fmt = rng.choice(["", "", " -f gcc", " -S warning", " -f tty"])
    p = Project(noun(rng))
    try:
        p.write(files)
        rc, out = p.run(f"shellcheck{fmt} scripts/*.sh")
    finally:
        p.close()
    if rc == 0:
        return None
    return Capture("misc", "generic", "shellcheck", "lint", "shellcheck", rng.choice([f"shellcheck{fmt} scripts/*.sh", "find . -name '*.sh' -print0 | xargs -0 shellcheck", "make lint-sh"]), out, rc, _VERS["shellcheck"])


def yamllint(rng: random.Random) -> Capture | None:
    files = {}
    for _ in range(rng.randint(1, 3)):
        name = rng.choice([".github/workflows/ci.yml", f"k8s/{noun(rng)}-deployment.yaml", "docker-compose.yml", f"config/{noun(rng)}.yaml", ".gitlab-ci.yml", f"helm/values-{noun(rng)}.yaml"])
        lines = ["---" if rng.random() < 0.5 else "", f"{noun(rng)}:", f"  name: {noun(rng)}", f"  replicas:   {rng.randint(1, 5)}", f"  image: app:{rng.randint(1, 9)}.{rng.randint(0, 9)}  ", "  env:", f"    - name: {noun(rng).upper()}", f"      value: \"{noun(rng)}\"", f"   {noun(rng)}: true", f"  {noun(rng)}: yes", "  list: [ a,b ]", f"  long: \"{'x' * rng.randint(60, 120)}\"", f"  {noun(rng)}: 1", f"  {noun(rng)}: 1"]
        rng.shuffle(lines)
        files[name] = "\n".join(lines) + ("\n" if rng.random() < 0.7 else "")
    fmt = rng.choice(["", " -f parsable", " -f standard", " --strict"])
    p = Project(noun(rng))
    try:
        p.write(files)
        rc, out = p.run(f"yamllint{fmt} .")
    finally:
        p.close()
    if rc == 0:
        return None
    return Capture("misc", "generic", "yamllint", "lint", "yamllint", f"yamllint{fmt} .", out, rc, _VERS["yamllint"])


def hadolint(rng: random.Random) -> Capture | None:
    base = rng.choice(["ubuntu", "node", "python:3.12", "debian:bookworm", "alpine", "golang:1.22"])
    lines = [f"FROM {base}", rng.choice(["MAINTAINER dev@example.com", "LABEL maintainer=dev@example.com"]), rng.choice(["RUN apt-get update", "RUN apt-get update && apt-get install -y curl git", "RUN apk add curl", "RUN pip install -r requirements.txt", "RUN npm install"]),
             rng.choice(["WORKDIR app", "WORKDIR /app"]), "COPY . .", rng.choice(["RUN cd /app && make", "RUN make"]), rng.choice(["ADD https://example.com/tool.tar.gz /tmp/", "ADD . /app", "COPY --chown=app . /app"]),
             rng.choice(["RUN sudo chmod +x /app/run.sh", "RUN chmod +x /app/run.sh"]), rng.choice(["USER root", "USER app", ""]), rng.choice(["EXPOSE 80000", "EXPOSE 8080"]), rng.choice(["CMD python app.py", "CMD [\"./run.sh\"]", "ENTRYPOINT ./run.sh"])]
    p = Project(noun(rng))
    try:
        p.write({"Dockerfile": "\n".join(x for x in lines if x) + "\n"})
        fmt = rng.choice(["", "", " --format tty", " --no-color"])
        rc, out = p.run(f"{PY_VENV}/bin/hadolint{fmt} Dockerfile")
    finally:
        p.close()
    if rc == 0:
        return None
    return Capture("misc", "docker", "hadolint", "lint", "hadolint", rng.choice(["hadolint Dockerfile", "docker run --rm -i hadolint/hadolint < Dockerfile"]), out, rc, _VERS["hadolint"])


def markdownlint(rng: random.Random) -> Capture | None:
    files = {}
    for name in rng.sample(["README.md", "CHANGELOG.md", "docs/install.md", f"docs/{noun(rng)}.md", "CONTRIBUTING.md"], rng.randint(1, 3)):
        body = [f"# {noun(rng).title()}", "", f"## {noun(rng)}", f"Some text about {noun(rng)}.  ", "* item", "- other item", "", f"### {noun(rng)}", "", "```", "make build", "```", "", f"#Heading {noun(rng)}", "", f"See http://example.com/{noun(rng)}", "", "", f"{'word ' * rng.randint(20, 40)}"]
        files[name] = "\n".join(body)
    p = Project(noun(rng))
    try:
        p.write(files)
        rc, out = p.run(f"{TOOLS}/md/node_modules/.bin/markdownlint '**/*.md' --ignore node_modules")
    finally:
        p.close()
    if rc == 0:
        return None
    return Capture("misc", "generic", "markdownlint", "lint", "markdownlint", rng.choice(["markdownlint '**/*.md' --ignore node_modules", "npx markdownlint-cli '**/*.md'"]), out, rc, _VERS["markdownlint"])


def bandit(rng: random.Random) -> Capture | None:
    fn = snake(rng, 2)
    pieces = rng.sample([
        f"import subprocess\n\ndef {fn}(cmd):\n    return subprocess.call(cmd, shell=True)\n",
        f"import pickle\n\ndef {fn}_load(blob):\n    return pickle.loads(blob)\n",
        f"import hashlib\n\ndef {fn}_digest(s):\n    return hashlib.md5(s.encode()).hexdigest()\n",
        f"import yaml\n\ndef {fn}_cfg(text):\n    return yaml.load(text)\n",
        f"PASSWORD = \"{noun(rng)}{rng.randint(100, 999)}!\"\n",
        f"import requests\n\ndef {fn}_get(url):\n    return requests.get(url, verify=False)\n",
        f"def {fn}_q(cur, name):\n    cur.execute(\"SELECT * FROM {noun(rng)} WHERE name = '%s'\" % name)\n",
        f"import tempfile\n\ndef {fn}_tmp():\n    return open(tempfile.mktemp(), 'w')\n",
        f"def {fn}_eval(expr):\n    return eval(expr)\n",
        "from flask import Flask\napp = Flask(__name__)\napp.run(host='0.0.0.0', debug=True)\n",
    ], rng.randint(1, 4))
    p = Project(noun(rng))
    try:
        p.write({f"src/{noun(rng)}/{noun(rng)}.py": "\n".join(pieces)})
        lvl = rng.choice(["", " -ll", " -lll", " -q"])
        rc, out = p.run(f"{PY_VENV}/bin/bandit -r src{lvl}")
    finally:
        p.close()
    if rc == 0:
        return None
    return Capture("misc", "python", "bandit", "security", "bandit", f"bandit -r src{lvl}", out, rc, _VERS["bandit"])


def detect_secrets(rng: random.Random) -> Capture | None:
    kind = rng.choice(["aws", "github", "slack", "private_key", "basic_auth", "stripe", "jwt"])
    # Made-up credentials in the documented shapes; none of them is live.
    secret = {
        "aws": "aws_access_key_id = AKIA" + "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16)),
        "github": "GITHUB_TOKEN = \"ghp_" + "".join(rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") for _ in range(36)) + "\"",
        "slack": "SLACK_WEBHOOK = \"https://hooks.slack.com/services/T" + "".join(rng.choice("ABCDEFGHIJ0123456789") for _ in range(8)) + "/B" + "".join(rng.choice("ABCDEFGHIJ0123456789") for _ in range(8)) + "/" + "".join(rng.choice("abcdefghijklmnopqrstuvwx") for _ in range(24)) + "\"",
        "private_key": "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA" + "".join(rng.choice("ABCDEFGHabcdefgh0123456789+/") for _ in range(60)) + "\n-----END RSA PRIVATE KEY-----",
        "basic_auth": f"DATABASE_URL = \"postgres://{noun(rng)}:{noun(rng)}{rng.randint(1000, 9999)}@db.internal:5432/{noun(rng)}\"",
        "stripe": "STRIPE_KEY = \"sk_live_" + "".join(rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") for _ in range(24)) + "\"",
        "jwt": "TOKEN = \"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c\"",
    }[kind]
    name = rng.choice(["config/settings.py", "deploy/.env.production", f"src/{noun(rng)}/client.py", "scripts/release.sh", "tests/fixtures/creds.py"])
    p = Project(noun(rng))
    try:
        p.write({name: f"# {noun(rng)} settings\nDEBUG = False\n{secret}\n"})
        rc, out = p.run(f"git init -q && git add -A && {PY_VENV}/bin/detect-secrets-hook --baseline .secrets.baseline {name} || (rc=$?; exit $rc)")
        if "No such file" in out or "baseline" in out.lower() and "Potential" not in out:
            rc, out = p.run(f"{PY_VENV}/bin/detect-secrets-hook {name}")
    finally:
        p.close()
    if rc == 0:
        return None
    return Capture("misc", "generic", "detect-secrets", "security", f"secret_{kind}", rng.choice(["pre-commit run detect-secrets --all-files", f"detect-secrets-hook --baseline .secrets.baseline {name}"]), out, rc, _VERS["detect-secrets"])


_VERS: dict[str, str] = {}
MAKERS = [shellcheck, shellcheck, yamllint, hadolint, hadolint, markdownlint, bandit, bandit, detect_secrets, detect_secrets]

if __name__ == "__main__":
    _VERS.update(shellcheck="shellcheck " + version_of("shellcheck --version | sed -n 2p"), yamllint=version_of("yamllint --version"), hadolint=version_of(f"{PY_VENV}/bin/hadolint --version"),
                 markdownlint="markdownlint-cli " + version_of(f"{TOOLS}/md/node_modules/.bin/markdownlint --version"), bandit=version_of(f"{PY_VENV}/bin/bandit --version"), **{"detect-secrets": "detect-secrets " + version_of(f"{PY_VENV}/bin/detect-secrets --version")})
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    main_loop("misc", MAKERS, n, seed=9909, only=sys.argv[2] if len(sys.argv) > 2 else None)
