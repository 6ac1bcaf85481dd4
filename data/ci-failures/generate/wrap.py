"""Put a captured failure body into the CI context it would have in a real log.

Real failure logs are mostly *not* the failure: checkout, toolchain setup, cache restore,
dependency install noise and steps that passed come first; the failing command often runs
through a runner (an npm/yarn/pnpm script, make, just, rake, tox, nox, a shell script, Maven's
exec or Gradle's Exec task) that prints its own failure lines; the CI system's closing lines
(cache upload, post-job cleanup, artifact upload, exit status) come last.

Every one of those wrapper elements is drawn independently of the label: the CI system, the step
and job names, the runner and its script/target name, the preamble, the tail, timestamps. A
runner prints the same failure lines whether a test, a linter, an install or a compiler failed
under it. So no label can be told from the wrapper alone; `check.py` verifies that on the
assembled rows (a classifier trained on the wrapper-only text is at chance).

`wrap` returns the text and which of its lines came from the failure body, so that the check can
remove them.
"""

from __future__ import annotations

import random
import re
from datetime import datetime, timedelta

# ---------------------------------------------------------------- per-ecosystem noise

PKGS = {
    "python": "requests urllib3 idna certifi charset-normalizer click jinja2 markupsafe flask werkzeug itsdangerous pydantic pydantic-core typing-extensions annotated-types sqlalchemy greenlet alembic pytest pluggy iniconfig packaging coverage pytest-cov attrs six python-dateutil pytz numpy pandas tzdata pyyaml tomli httpx httpcore anyio sniffio h11 boto3 botocore s3transfer jmespath redis celery kombu vine billiard rich pygments markdown-it-py mdurl".split(),
    "node": "react react-dom lodash axios express typescript jest @babel/core @babel/preset-env eslint prettier webpack vite rollup esbuild chalk commander yargs dotenv uuid zod date-fns moment rxjs tslib ts-node @types/node @types/jest supertest nock sinon mocha chai".split(),
    "go": "github.com/stretchr/testify github.com/spf13/cobra github.com/spf13/viper github.com/gin-gonic/gin github.com/google/uuid golang.org/x/sync golang.org/x/net golang.org/x/sys github.com/sirupsen/logrus go.uber.org/zap github.com/prometheus/client_golang google.golang.org/grpc google.golang.org/protobuf github.com/jackc/pgx/v5 github.com/redis/go-redis/v9 gopkg.in/yaml.v3 github.com/pkg/errors github.com/gorilla/mux".split(),
    "rust": "serde serde_json serde_derive tokio tokio-macros mio bytes futures futures-core futures-util anyhow thiserror clap clap_derive regex regex-syntax aho-corasick memchr log env_logger tracing tracing-core once_cell proc-macro2 quote syn unicode-ident libc cfg-if itoa ryu rand rand_core getrandom hashbrown indexmap".split(),
    "java": "org/springframework/spring-core org/apache/commons/commons-lang3 com/google/guava/guava org/slf4j/slf4j-api ch/qos/logback/logback-classic com/fasterxml/jackson/core/jackson-databind org/junit/jupiter/junit-jupiter-api org/mockito/mockito-core org/assertj/assertj-core org/apache/httpcomponents/httpclient io/netty/netty-handler org/projectlombok/lombok".split(),
    "ruby": "rake rack rails actionpack activesupport activerecord nokogiri rspec rspec-core rspec-expectations rspec-mocks rubocop rubocop-ast parser json minitest puma sidekiq redis faraday thor i18n concurrent-ruby tzinfo zeitwerk bundler".split(),
    "c": "build-essential cmake ninja-build pkg-config libssl-dev zlib1g-dev libcurl4-openssl-dev libboost-all-dev libgtest-dev libyaml-dev libsqlite3-dev libpq-dev".split(),
    "dotnet": "Microsoft.NET.Test.Sdk xunit xunit.runner.visualstudio coverlet.collector Newtonsoft.Json Serilog Microsoft.Extensions.Logging Moq FluentAssertions Dapper AutoMapper Polly Microsoft.EntityFrameworkCore".split(),
}
PKGS.update({
    "php": "symfony/console symfony/http-foundation symfony/yaml guzzlehttp/guzzle monolog/monolog doctrine/orm doctrine/dbal laravel/framework nesbot/carbon vlucas/phpdotenv ramsey/uuid phpunit/phpunit psr/log psr/container league/flysystem twig/twig".split(),
    "haskell": "aeson text bytestring containers mtl transformers vector unordered-containers hashable lens servant servant-server warp http-client optparse-applicative hspec QuickCheck async stm".split(),
    "elixir": "jason plug plug_cowboy phoenix phoenix_html ecto ecto_sql postgrex telemetry decimal tesla mint finch castore credo ex_doc dialyxir mox".split(),
    "erlang": "cowboy cowlib ranch jsx jiffy hackney lager gun meck proper recon".split(),
    "perl": "Moo Moose Try::Tiny JSON::PP LWP::UserAgent DBI DBD::Pg Test::More Test::Deep Plack Mojolicious Path::Tiny YAML::XS".split(),
    "scala": "org.typelevel:cats-core org.scalatest:scalatest com.typesafe.akka:akka-actor io.circe:circe-core io.circe:circe-generic org.http4s:http4s-dsl com.lihaoyi:os-lib org.scala-lang:scala-library".split(),
    "lua": "luasocket lpeg penlight busted luafilesystem lua-cjson inspect argparse".split(),
})
PKGS["shell"] = PKGS["c"]
PKGS["docker"] = PKGS["c"]
PKGS["ci"] = PKGS["python"]


def _ver(rng: random.Random) -> str:
    return f"{rng.randint(0, 9)}.{rng.randint(0, 40)}.{rng.randint(0, 20)}"


def install_noise(eco: str, rng: random.Random) -> tuple[str, list[str]]:
    """A dependency-install step that succeeded: (command, output lines)."""
    names = rng.sample(PKGS.get(eco, PKGS["python"]), min(len(PKGS.get(eco, PKGS["python"])), rng.randint(4, 16)))
    out: list[str] = []
    if eco == "python":
        cmd = rng.choice(["pip install -r requirements.txt", "python -m pip install -e .[test]", "pip install -r requirements-dev.txt", "poetry install --no-interaction", "uv sync --frozen"])
        if cmd.startswith("uv"):
            out = [f"Resolved {rng.randint(20, 140)} packages in {rng.randint(2, 900)}ms", f"Prepared {len(names)} packages in {rng.randint(1, 4)}.{rng.randint(10, 99)}s", f"Installed {len(names)} packages in {rng.randint(5, 300)}ms"] + [f" + {n}=={_ver(rng)}" for n in names]
        else:
            for n in names:
                v = _ver(rng)
                out += [f"Collecting {n}=={v}", f"  Downloading {n.replace('-', '_')}-{v}-py3-none-any.whl ({rng.randint(8, 900)} kB)"]
            out += ["Installing collected packages: " + ", ".join(names), "Successfully installed " + " ".join(f"{n}-{_ver(rng)}" for n in names)]
    elif eco == "node":
        cmd = rng.choice(["npm ci", "npm install", "yarn install --frozen-lockfile", "pnpm install --frozen-lockfile"])
        if cmd.startswith("npm"):
            out = [f"npm warn deprecated {rng.choice(['inflight@1.0.6', 'glob@7.2.3', 'rimraf@3.0.2', 'abab@2.0.6', 'domexception@4.0.0'])}: This module is not supported, and leaks memory.",
                   "", f"added {rng.randint(200, 1500)} packages, and audited {rng.randint(200, 1500)} packages in {rng.randint(3, 60)}s", "",
                   f"{rng.randint(30, 200)} packages are looking for funding", "  run `npm fund` for details", "", "found 0 vulnerabilities"]
        elif cmd.startswith("yarn"):
            out = ["yarn install v1.22.22", "[1/4] Resolving packages...", "[2/4] Fetching packages...", "[3/4] Linking dependencies...", "[4/4] Building fresh packages...", f"Done in {rng.randint(3, 90)}.{rng.randint(10, 99)}s."]
        else:
            out = ["Lockfile is up to date, resolution step is skipped", f"Progress: resolved {rng.randint(200, 1500)}, reused {rng.randint(200, 1500)}, downloaded 0, added {rng.randint(200, 1500)}, done", "", "dependencies:"] + [f"+ {n} {_ver(rng)}" for n in names[:6]] + ["", f"Done in {rng.randint(2, 40)}.{rng.randint(1, 9)}s"]
    elif eco == "go":
        cmd = rng.choice(["go mod download", "go mod download -x", "go build ./..."])
        out = [f"go: downloading {n} v{_ver(rng)}" for n in names]
    elif eco == "rust":
        cmd = rng.choice(["cargo fetch", "cargo build --locked", "cargo build --release"])
        out = ["    Updating crates.io index", f"  Downloaded {len(names)} crates ({rng.randint(1, 20)}.{rng.randint(0, 9)} MB) in {rng.randint(1, 9)}.{rng.randint(10, 99)}s"] + [f"  Downloaded {n} v{_ver(rng)}" for n in names]
        if cmd != "cargo fetch":
            out += [f"   Compiling {n} v{_ver(rng)}" for n in names] + [f"    Finished `{'release' if 'release' in cmd else 'dev'}` profile [{'optimized' if 'release' in cmd else 'unoptimized + debuginfo'}] target(s) in {rng.randint(10, 200)}.{rng.randint(10, 99)}s"]
    elif eco == "java":
        cmd = rng.choice(["mvn -B dependency:go-offline", "./mvnw -B -ntp dependency:resolve", "./gradlew dependencies --no-daemon"])
        for n in names:
            v = _ver(rng)
            art = n.rsplit("/", 1)[-1]
            out += [f"[INFO] Downloading from central: https://repo.maven.apache.org/maven2/{n}/{v}/{art}-{v}.pom", f"[INFO] Downloaded from central: https://repo.maven.apache.org/maven2/{n}/{v}/{art}-{v}.pom ({rng.randint(1, 40)} kB at {rng.randint(50, 900)} kB/s)"]
        out += ["[INFO] ------------------------------------------------------------------------", "[INFO] BUILD SUCCESS", "[INFO] ------------------------------------------------------------------------"]
    elif eco == "ruby":
        cmd = rng.choice(["bundle install --jobs 4 --retry 3", "bundle install", "bundle config set --local deployment true && bundle install"])
        out = ["Fetching gem metadata from https://rubygems.org/.........", "Resolving dependencies..."] + [f"{rng.choice(['Fetching', 'Installing', 'Using'])} {n} {_ver(rng)}" for n in names] + [f"Bundle complete! {rng.randint(5, 40)} Gemfile dependencies, {rng.randint(20, 160)} gems now installed.", "Use `bundle info [gemname]` to see where a bundled gem is installed."]
    elif eco == "dotnet":
        cmd = rng.choice(["dotnet restore", "dotnet restore --locked-mode"])
        out = ["  Determining projects to restore..."] + [f"  Restored /home/runner/work/app/app/src/{rng.choice(['Api', 'Core', 'Domain', 'Web', 'Tests'])}/{rng.choice(['Api', 'Core', 'Domain', 'Web', 'Tests'])}.csproj (in {rng.randint(100, 4000)} ms)." for _ in range(rng.randint(1, 5))]
    elif eco == "php":
        cmd = rng.choice(["composer install --no-interaction --prefer-dist", "composer install --no-progress --no-interaction", "composer install"])
        vs = {n: f"v{_ver(rng)}" for n in names}
        out = ["Installing dependencies from lock file (including require-dev)", "Verifying lock file contents can be installed on current platform.", f"Package operations: {len(names)} installs, 0 updates, 0 removals"]
        out += [f"  - Downloading {n} ({vs[n]})" for n in names] + [f"  - Installing {n} ({vs[n]}): Extracting archive" for n in names]
        out += ["Generating optimized autoload files", f"{rng.randint(2, 40)} packages you are using are looking for funding.", "Use the `composer fund` command to find out more!"]
    elif eco == "haskell":
        cmd = rng.choice(["cabal build --only-dependencies", "cabal update && cabal build --only-dependencies --enable-tests", "cabal v2-build --dependencies-only all"])
        vs = {n: f"{n}-{_ver(rng)}" for n in names}
        out = (["Downloading the latest package list from hackage.haskell.org"] if "update" in cmd else []) + ["Resolving dependencies...", f"Build profile: -w ghc-{rng.choice(['9.2.8', '9.4.8', '9.6.6'])} -O1", "In order, the following will be built (use -v for more details):"]
        out += [f" - {vs[n]} (lib) (requires download & build)" for n in names]
        for n in names:
            out += [f"Downloading  {vs[n]}", f"Downloaded   {vs[n]}", f"Starting     {vs[n]} (lib)", f"Building     {vs[n]} (lib)", f"Installing   {vs[n]} (lib)", f"Completed    {vs[n]} (lib)"]
    elif eco == "elixir":
        cmd = rng.choice(["mix deps.get", "mix deps.get --only test", "mix do deps.get, deps.compile"])
        out = ["Resolving Hex dependencies...", f"Resolution completed in 0.{rng.randint(10, 900):03d}s", "New:"] + [f"  {n} {_ver(rng)}" for n in names] + [f"* Getting {n} (Hex package)" for n in names]
    elif eco == "erlang":
        cmd = rng.choice(["rebar3 get-deps", "rebar3 as test get-deps"])
        out = ["===> Verifying dependencies..."] + [f"===> Fetching {n} v{_ver(rng)}" for n in names]
    elif eco == "perl":
        cmd = rng.choice(["cpanm --installdeps --notest .", "cpanm -n --installdeps .", "carton install"])
        out = ["--> Working on .", "Configuring {WS} ... OK", "==> Found dependencies: " + ", ".join(names)]
        for n in names:
            dist = n.replace("::", "-") + f"-{_ver(rng)}"
            author = rng.choice(["HAARG", "ETHER", "TIMB", "OALDERS", "SRI", "MIYAGAWA", "LEONT", "TINITA"])
            out += [f"--> Working on {n}", f"Fetching http://www.cpan.org/authors/id/{author[0]}/{author[:2]}/{author}/{dist}.tar.gz ... OK", f"Configuring {dist} ... OK", f"Building {dist} ... OK", f"Successfully installed {dist}"]
        out.append(f"{len(names)} distributions installed")
    elif eco == "scala":
        cmd = rng.choice(["sbt update", "sbt -batch update", "sbt +update"])
        out = [f"[info] welcome to sbt 1.{rng.randint(8, 10)}.{rng.randint(0, 9)} (Eclipse Adoptium Java 17.0.{rng.randint(8, 12)})", "[info] loading settings for project root from build.sbt ...", "[info] set current project to app (in build file:{WS}/)", "[info] Updating"]
        out += [f"https://repo1.maven.org/maven2/{n.split(':')[0].replace('.', '/')}/{n.split(':')[1]}_2.13/{v}/{n.split(':')[1]}_2.13-{v}.pom" for n in names for v in [_ver(rng)]]
        out += ["[info] Resolved  dependencies", "[info] Fetching artifacts of", "[info] Fetched artifacts of", f"[success] Total time: {rng.randint(5, 90)} s, completed"]
    elif eco == "lua":
        cmd = rng.choice(["luarocks install --only-deps app-dev-1.rockspec", "luarocks make --local"])
        out = []
        for n in names:
            v = f"{_ver(rng)}-1"
            out += [f"Installing https://luarocks.org/{n}-{v}.src.rock", f"{n} {v} is now installed in /usr/local (license: MIT)", ""]
    else:
        cmd = "sudo apt-get install -y " + " ".join(names[:6])
        out = ["Reading package lists...", "Building dependency tree...", "Reading state information..."] + [f"Setting up {n} ({_ver(rng)}-1) ..." for n in names[:6]] + ["Processing triggers for libc-bin (2.35-0ubuntu3.8) ..."]
    return cmd, out


PASSING_STEPS = {
    "python": [("ruff check .", ["All checks passed!"]), ("mypy src", ["Success: no issues found in 23 source files"]), ("black --check .", ["All done! ✨ 🍰 ✨", "41 files would be left unchanged."]), ("python -m build", ["* Creating isolated environment: venv+pip...", "Successfully built pkg-1.4.0.tar.gz and pkg-1.4.0-py3-none-any.whl"]), ("pytest tests/unit -q", ["........................................................ [100%]", "56 passed in 3.21s"])],
    "node": [("npm run lint", ["", "> app@1.0.0 lint", "> eslint .", ""]), ("npm run build", ["", "> app@1.0.0 build", "> tsc -p tsconfig.json", ""]), ("npx prettier --check .", ["Checking formatting...", "All matched files use Prettier code style!"]), ("npm test", ["Test Suites: 14 passed, 14 total", "Tests:       131 passed, 131 total", "Snapshots:   2 passed, 2 total", "Time:        8.214 s"])],
    "go": [("go vet ./...", []), ("go build ./...", []), ("gofmt -l .", []), ("go test ./...", ["ok  \tgithub.com/acme/app/internal/store\t0.412s", "ok  \tgithub.com/acme/app/internal/api\t1.031s", "?   \tgithub.com/acme/app/cmd/app\t[no test files]"])],
    "rust": [("cargo fmt --check", []), ("cargo build --locked", ["    Finished `dev` profile [unoptimized + debuginfo] target(s) in 41.22s"]), ("cargo clippy -- -D warnings", ["    Checking app v0.3.1 (/home/runner/work/app/app)", "    Finished `dev` profile [unoptimized + debuginfo] target(s) in 12.80s"])],
    "java": [("mvn -B -q spotless:check", []), ("mvn -B compile", ["[INFO] BUILD SUCCESS", "[INFO] Total time:  21.412 s"]), ("./gradlew assemble", ["BUILD SUCCESSFUL in 34s", "7 actionable tasks: 7 executed"])],
    "ruby": [("bundle exec rubocop", ["Inspecting 87 files", ".......................................................................................", "", "87 files inspected, no offenses detected"]), ("bundle exec rake db:schema:load", []), ("bundle exec rspec spec/models", ["Finished in 2.41 seconds (files took 1.2 seconds to load)", "88 examples, 0 failures"])],
    "c": [("cmake -S . -B build -DCMAKE_BUILD_TYPE=Release", ["-- The C compiler identification is GNU 12.2.0", "-- The CXX compiler identification is GNU 12.2.0", "-- Detecting C compiler ABI info", "-- Detecting C compiler ABI info - done", "-- Configuring done", "-- Generating done", "-- Build files have been written to: /home/runner/work/app/app/build"]), ("./configure", ["checking for gcc... gcc", "checking whether the C compiler works... yes", "checking for C compiler default output file name... a.out", "configure: creating ./config.status", "config.status: creating Makefile"])],
    "dotnet": [("dotnet format --verify-no-changes", []), ("dotnet build --no-restore -c Release", ["  App.Core -> /home/runner/work/app/app/src/App.Core/bin/Release/net8.0/App.Core.dll", "", "Build succeeded.", "    0 Warning(s)", "    0 Error(s)", "", "Time Elapsed 00:00:14.22"])],
    "shell": [("shellcheck scripts/*.sh", []), ("yamllint .", [])],
}
PASSING_STEPS.update({
    "php": [("vendor/bin/phpcs", ["............ 12 / 12 (100%)", "", "Time: 180ms; Memory: 10MB"]), ("vendor/bin/phpstan analyse --no-progress", ["", " [OK] No errors", ""]), ("php -l src/Kernel.php", ["No syntax errors detected in src/Kernel.php"])],
    "haskell": [("hlint src", ["No hints"]), ("cabal build", ["Up to date"]), ("cabal check", ["No errors or warnings could be found in the package."])],
    "elixir": [("mix format --check-formatted", []), ("mix compile --warnings-as-errors", ["Compiling 12 files (.ex)", "Generated app app"]), ("mix credo --strict", ["Checking 34 source files ...", "", "Analysis took 0.4 seconds (0.02s to load, 0.4s running 52 checks on 34 files)", "210 mods/funs, found no issues."])],
    "erlang": [("rebar3 compile", ["===> Verifying dependencies...", "===> Analyzing applications...", "===> Compiling app"]), ("rebar3 xref", ["===> Verifying dependencies...", "===> Analyzing applications...", "===> Compiling app", "===> Running cross reference analysis..."])],
    "perl": [("perl -Ilib -c lib/App.pm", ["lib/App.pm syntax OK"]), ("perlcritic lib", ["lib/App.pm source OK"])],
    "scala": [("sbt scalafmtCheckAll", ["[info] welcome to sbt 1.9.7 (Eclipse Adoptium Java 17.0.9)", "[success] Total time: 3 s"]), ("sbt compile", ["[info] compiling 14 Scala sources to {WS}/target/scala-2.13/classes ...", "[success] Total time: 41 s"])],
    "lua": [("luacheck src", ["Checking src/app.lua                              OK", "", "Total: 0 warnings / 0 errors in 1 file"])],
})
PASSING_STEPS["docker"] = PASSING_STEPS["shell"]
PASSING_STEPS["ci"] = PASSING_STEPS["python"]

SETUP = {
    "python": ("actions/setup-python@v5", lambda r: ["Installed versions", f"  Successfully set up CPython ({r.choice(['3.10.14', '3.11.9', '3.12.4', '3.12.7', '3.13.0'])})"]),
    "node": ("actions/setup-node@v4", lambda r: [f"Found in cache @ /opt/hostedtoolcache/node/{r.choice(['18.20.4', '20.15.1', '20.18.0', '22.11.0'])}/x64", "Environment details", f"  node: v{r.choice(['18.20.4', '20.15.1', '22.11.0'])}", f"  npm: {r.choice(['10.7.0', '10.8.2', '10.9.0'])}", "  yarn: 1.22.22"]),
    "go": ("actions/setup-go@v5", lambda r: [f"Setup go version spec {r.choice(['1.21', '1.22', '1.23'])}", "Found in cache @ /opt/hostedtoolcache/go/1.22.5/x64", "Added go to the path", f"Successfully set up Go version {r.choice(['1.21.12', '1.22.5', '1.23.2'])}", "go version go1.22.5 linux/amd64"]),
    "rust": ("dtolnay/rust-toolchain@stable", lambda r: ["info: syncing channel updates for 'stable-x86_64-unknown-linux-gnu'", f"info: latest update on 2024-0{r.randint(1, 9)}-1{r.randint(0, 9)}, rust version 1.{r.randint(75, 83)}.0", "info: default toolchain set to 'stable-x86_64-unknown-linux-gnu'"]),
    "java": ("actions/setup-java@v4", lambda r: ["Trying to resolve the latest version from remote", f"Resolved latest version as {r.choice(['17.0.12+7', '21.0.4+7', '11.0.24+8'])}", "Java configuration:", f"  Distribution: {r.choice(['temurin', 'zulu', 'corretto'])}", "Creating settings.xml with server-id: github"]),
    "ruby": ("ruby/setup-ruby@v1", lambda r: [f"Using ruby-{r.choice(['3.1.6', '3.2.5', '3.3.4'])}", "Downloading Ruby", "Extracting  Ruby", "Took   2.11 seconds", "Using Bundler 2.5.16 from Gemfile.lock BUNDLED WITH 2.5.16"]),
    "c": ("lukka/get-cmake@latest", lambda r: [f"cmake version {r.choice(['3.28.3', '3.29.6', '3.30.2'])}", "ninja version 1.12.1"]),
    "dotnet": ("actions/setup-dotnet@v4", lambda r: [f"dotnet-install: .NET Core SDK with version '{r.choice(['8.0.303', '8.0.401', '6.0.425'])}' is already installed."]),
}
SETUP.update({
    "php": ("shivammathur/setup-php@v2", lambda r: ["==> Setup PHP", f"✓ PHP Installed PHP {r.choice(['8.1.29', '8.2.24', '8.3.12'])}", "==> Setup Tools", f"✓ composer Added composer {r.choice(['2.7.9', '2.8.1'])}"]),
    "haskell": ("haskell-actions/setup@v2", lambda r: ["Preparing to setup a Haskell environment", f"Found GHC {r.choice(['9.2.8', '9.4.8', '9.6.6'])} in cache", f"Found Cabal {r.choice(['3.8.1.0', '3.10.3.0'])} in cache"]),
    "elixir": ("erlef/setup-beam@v1", lambda r: [f"Installing Erlang/OTP {r.choice(['25.3.2', '26.2.5', '27.1'])} - built on ubuntu-22.04", f"Installing Elixir {r.choice(['1.15.8', '1.16.3', '1.17.3'])}", "Installed Elixir version"]),
    "perl": ("shogo82148/actions-setup-perl@v1", lambda r: [f"install perl {r.choice(['5.36.3', '5.38.2', '5.40.0'])}", "Installing cpanm"]),
    "lua": ("leafo/gh-actions-lua@v10", lambda r: [f"Building Lua {r.choice(['5.1.5', '5.3.6', '5.4.6'])}", "lua -v"]),
})
SETUP["erlang"] = ("erlef/setup-beam@v1", lambda r: [f"Installing Erlang/OTP {r.choice(['25.3.2', '26.2.5', '27.1'])} - built on ubuntu-22.04", f"Installing rebar3 {r.choice(['3.22.1', '3.23.0'])}"])
SETUP["scala"] = SETUP["java"]
for _k in ("shell", "docker", "ci"):
    SETUP[_k] = SETUP["python"]

IMAGES = {"python": ["python:3.12-slim", "python:3.11", "python:3.10-bullseye"], "node": ["node:20", "node:22-alpine", "node:18-bullseye"], "go": ["golang:1.22", "golang:1.23-alpine"], "rust": ["rust:1.80", "rust:latest"], "java": ["maven:3.9-eclipse-temurin-17", "gradle:8.8-jdk21", "eclipse-temurin:21"], "ruby": ["ruby:3.3", "ruby:3.2-slim"], "c": ["gcc:13", "ubuntu:22.04", "debian:bookworm"], "dotnet": ["mcr.microsoft.com/dotnet/sdk:8.0"], "shell": ["alpine:3.20", "ubuntu:24.04"], "docker": ["docker:26", "docker:24-dind"], "ci": ["ubuntu:22.04"],
          "php": ["php:8.2-cli", "php:8.3-cli-alpine", "composer:2"], "haskell": ["haskell:9.4", "haskell:9.6-slim"], "elixir": ["elixir:1.16", "elixir:1.15-alpine"], "erlang": ["erlang:26", "erlang:25-alpine"],
          "perl": ["perl:5.38", "perl:5.36-slim"], "scala": ["sbtscala/scala-sbt:eclipse-temurin-17.0.8_7_1.9.7_2.13.12", "eclipse-temurin:17"], "lua": ["nickblah/lua:5.4", "alpine:3.20"]}


# ---------------------------------------------------------------- helpers

# Marks a line of the failure body while the wrapper is built; removed before the text is returned.
MARK = "\x02"


class Clock:
    def __init__(self, rng: random.Random):
        self.t = datetime(2016, 1, 1) + timedelta(seconds=rng.randint(0, 9 * 365 * 86400))
        self.rng = rng

    def tick(self, lo: float = 0.0, hi: float = 0.4) -> datetime:
        self.t += timedelta(seconds=self.rng.uniform(lo, hi))
        return self.t


def _hex(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def workspace(ci: str, org: str, repo: str, rng: random.Random) -> tuple[str, str]:
    """(checkout directory, home directory) as each CI system lays them out."""
    return {
        "gha": (f"/home/runner/work/{repo}/{repo}", "/home/runner"),
        "gitlab": (f"/builds/{org}/{repo}", "/root"),
        "jenkins": (f"/var/lib/jenkins/workspace/{repo}_{rng.choice(['main', 'PR-' + str(rng.randint(10, 999)), 'develop'])}", "/var/lib/jenkins"),
        "circleci": ("/home/circleci/project", "/home/circleci"),
        "travis": (f"/home/travis/build/{org}/{repo}", "/home/travis"),
        "azure": ("/home/vsts/work/1/s", "/home/vsts"),
        "buildkite": (f"/var/lib/buildkite-agent/builds/{rng.choice(['agent-1', 'ci-2', 'linux-3'])}/{org}/{repo}", "/var/lib/buildkite-agent"),
        "drone": ("/drone/src", "/root"),
        "appveyor": (f"/home/appveyor/projects/{repo}", "/home/appveyor"),
        "teamcity": (f"/opt/buildagent/work/{_hex(rng, 16)}", "/opt/buildagent"),
        "docker": (rng.choice(["/app", "/src", "/usr/src/app", "/workspace"]), "/root"),
        "plain": (rng.choice([f"/home/{rng.choice(['dev', 'alex', 'sam', 'build'])}/src/{repo}", f"/work/{repo}", f"/builds/{repo}"]), "/home/dev"),
    }[ci]


def site_dir(ci: str, ws: str, rng: random.Random) -> str:
    pyv = rng.choice(["2.7", "3.6", "3.8", "3.10", "3.11", "3.12"])
    if ci == "gha":
        return rng.choice([f"/opt/hostedtoolcache/Python/{pyv}.{rng.randint(1, 14)}/x64/lib/python{pyv}/site-packages", f"{ws}/.venv/lib/python{pyv}/site-packages"])
    if ci == "travis":
        return f"/home/travis/virtualenv/python{pyv}.{rng.randint(1, 14)}/lib/python{pyv}/site-packages"
    if ci in ("docker", "gitlab", "drone"):
        return f"/usr/local/lib/python{pyv}/site-packages"
    return f"{ws}/.venv/lib/python{pyv}/site-packages"


def fill(body: str, ws: str, home: str, site: str) -> str:
    goroot = "/opt/hostedtoolcache/go/1.22.5/x64" if ws.startswith("/home/runner") else "/usr/local/go"
    return body.replace("{SITE}", site).replace("{WS}", ws).replace("{HOME}", home).replace("{GOROOT}", goroot)


def _renumber(line: str, rng: random.Random) -> str:
    """Fresh counts and timings in a passing step's output, so that no two rows share it verbatim."""
    seen: dict[str, str] = {}  # one number keeps one value within the line ("131 passed, 131 total")

    def sub(m: re.Match) -> str:
        s = m.group(0)
        if len(s) >= 5 or int(s) == 0:  # years, ids, and the zero of "0 Error(s)" stay
            return s
        return seen.setdefault(s, str(max(1, int(int(s) * rng.uniform(0.3, 3)))))

    return re.sub(r"(?<![\w.:])\d+(?![\w:])", sub, line)


PY_VERSIONS = ["2.7.18", "3.6.15", "3.8.18", "3.9.19", "3.10.14", "3.11.9", "3.12.4", "3.12.7", "3.13.0"]


def vary_versions(cap: dict, rng: random.Random) -> str:
    """The tool ran under one interpreter here; CI runs many. Only the Python version varies."""
    body = cap["body"]
    if cap["ecosystem"] == "python" and cap["origin"] == "generated":
        v = rng.choice(PY_VERSIONS)
        body = body.replace("3.11.7", v).replace("python3.11", "python" + v.rsplit(".", 1)[0]).replace("Python 3.11", "Python " + v.rsplit(".", 1)[0])
    return body


# ---------------------------------------------------------------- noise that is not the failure

# Output of steps that passed but printed warnings, retries or deprecations: real logs are full of
# error-looking lines that are not the failure.
WARN_NOISE = {
    "python": [["DEPRECATION: Building 'pyyaml' using the legacy setup.py bdist_wheel mechanism, which will be removed in a future version."],
               ["WARNING: Retrying (Retry(total=4, connect=None, read=None, redirect=None, status=None)) after connection broken by 'ReadTimeoutError(\"HTTPSConnectionPool(host='pypi.org', port=443): Read timed out. (read timeout=15)\")': /simple/{pkg}/"],
               ["WARNING: You are using pip version 21.3.1; however, version 24.0 is available.", "You should consider upgrading via the '/usr/bin/python -m pip install --upgrade pip' command."],
               ["  DeprecationWarning: pkg_resources is deprecated as an API"],
               ["WARNING: Running pip as the 'root' user can result in broken permissions and conflicting behaviour with the system package manager."]],
    "node": [["npm WARN deprecated request@2.88.2: request has been deprecated, see https://github.com/request/request/issues/3142"],
             ["npm WARN optional SKIPPING OPTIONAL DEPENDENCY: fsevents@2.3.3 (node_modules/fsevents):", "npm WARN notsup SKIPPING OPTIONAL DEPENDENCY: Unsupported platform for fsevents@2.3.3: wanted {\"os\":\"darwin\",\"arch\":\"any\"} (current: {\"os\":\"linux\",\"arch\":\"x64\"})"],
             ["npm WARN ERESOLVE overriding peer dependency"],
             ["warning \" > {pkg}@{ver}\" has unmet peer dependency \"react@^16.8.0\"."],
             ["npm WARN retry will retry, error on last attempt: Error: socket hang up"],
             ["(node:{pid}) [DEP0040] DeprecationWarning: The `punycode` module is deprecated. Please use a userland alternative instead.", "(Use `node --trace-deprecation ...` to show where the warning was created)"]],
    "go": [["go: downloading {pkg} v{ver}", "go: warning: \"all\" matched no packages"]],
    "rust": [["warning: unused import: `std::collections::HashMap`", " --> src/lib.rs:3:5", "  |", "3 | use std::collections::HashMap;", "  |     ^^^^^^^^^^^^^^^^^^^^^^^^^", "  |", "  = note: `#[warn(unused_imports)]` on by default"],
             ["warning: `{pkg}` (lib) generated 1 warning"]],
    "java": [["[WARNING] Some problems were encountered while building the effective model for {pkg}:jar:{ver}", "[WARNING] 'build.plugins.plugin.version' for org.apache.maven.plugins:maven-compiler-plugin is missing."],
             ["[WARNING] The requested profile \"ci\" could not be activated because it does not exist."],
             ["Deprecated Gradle features were used in this build, making it incompatible with Gradle 9.0."]],
    "ruby": [["Your Gemfile lists the gem {pkg} (>= 0) more than once.", "You should probably keep only one of them."],
             ["warning: parser/current is loading parser/ruby31, which recognizes3.1.4-compliant syntax, but you are running 3.1.2."],
             ["Post-install message from {pkg}:", "Thank you for installing!"]],
    "c": [["CMake Warning (dev) at CMakeLists.txt:3 (project):", "  Policy CMP0048 is not set: project() command manages VERSION variables."],
          ["warning: unused variable 'tmp' [-Wunused-variable]"]],
    "dotnet": [["warning NU1603: {pkg} 1.0.0 depends on Newtonsoft.Json (>= 12.0.0) but Newtonsoft.Json 12.0.0 was not found. An approximate best match of Newtonsoft.Json 12.0.1 was resolved."]],
}
GENERIC_NOISE = [["W: http://archive.ubuntu.com/ubuntu/dists/jammy/InRelease: Key is stored in legacy trusted.gpg keyring (/etc/apt/trusted.gpg), see the DEPRECATION section in apt-key(8) for details."],
                 ["debconf: unable to initialize frontend: Dialog", "debconf: (TERM is not set, so the dialog frontend is not usable.)", "debconf: falling back to frontend: Readline"],
                 ["warning: redirecting to https://github.com/{pkg}.git/"],
                 ["Warning: Permanently added 'github.com' (ED25519) to the list of known hosts."]]


def noise_lines(eco: str, rng: random.Random) -> list[str]:
    pool = WARN_NOISE.get(eco, []) + GENERIC_NOISE
    pkg = rng.choice(PKGS.get(eco, PKGS["python"])).rsplit("/", 1)[-1]
    return [s.replace("{pkg}", pkg).replace("{ver}", _ver(rng)).replace("{pid}", str(rng.randint(1000, 40000))) for s in rng.choice(pool)]


def preamble_steps(eco: str, rng: random.Random, size: str) -> list[tuple[str, list[str]]]:
    """Steps before the failing one, as (command, output lines); more of them for long rows."""
    steps: list[tuple[str, list[str]]] = []
    if size == "long" or rng.random() < 0.6:
        cmd, out = install_noise(eco, rng)
        if rng.random() < 0.35:
            k = rng.randint(0, len(out))
            out = out[:k] + noise_lines(eco, rng) + out[k:]
        steps.append((cmd, out))
    passing = PASSING_STEPS.get(eco, PASSING_STEPS["shell"])
    k = {"short": 0, "medium": rng.randint(0, 1), "long": rng.randint(1, 3)}[size]
    for cmd, out in rng.sample(passing, min(k, len(passing))):
        out = [_renumber(line, rng) for line in out]
        if rng.random() < 0.2:
            out = noise_lines(eco, rng) + out
        steps.append((cmd, out))
    return steps


# ---------------------------------------------------------------- runners

# Script, target, task and session names, drawn the same way whatever failed under them: in real
# projects `make check` or `npm test` runs linters, type checks and builds as often as tests.
TARGETS = ["test", "lint", "build", "check", "ci", "verify", "all", "validate", "qa", "default", "test:ci",
           "e2e", "docs", "release", "install", "setup", "audit", "typecheck", "format", "coverage",
           "precommit", "integration", "dist", "compile", "bootstrap", "unit", "style", "deploy"]
SCRIPTS = ["./scripts/ci.sh", "bash scripts/test.sh", "./build.sh", "./ci/run.sh", "bash -e ci/check.sh", "./scripts/build.sh",
           "./run-tests.sh", "sh ./tools/ci.sh", "./script/cibuild", "bash .ci/run", "./ci.sh", "./scripts/verify.sh"]


def _target(rng: random.Random) -> str:
    return rng.choice(TARGETS)


def _pkgname(repo: str, rng: random.Random) -> str:
    return f"{repo}@{rng.randint(0, 4)}.{rng.randint(0, 30)}.{rng.randint(0, 9)}"


def _npm_log(rng: random.Random, home: str = "{HOME}") -> str:
    t = datetime(2016, 1, 1) + timedelta(seconds=rng.randint(0, 9 * 365 * 86400))
    return f"{home}/.npm/_logs/{t:%Y-%m-%dT%H_%M_%S}_{rng.randint(0, 999):03d}Z-debug{'-0' if rng.random() < 0.5 else ''}.log"


def run_npm(cmd, body, code, rng, repo, tail):
    """npm run <script>, in the styles of npm 3-6 (Travis era), npm 7-9 and npm 10+."""
    script = _target(rng)
    pkg = _pkgname(repo, rng)
    era = rng.choice(["npm6", "npm6", "npm8", "npm10"])
    inv = "npm test" if script == "test" and rng.random() < 0.6 else f"npm run {script}"
    head = ["", f"> {pkg} {script}{' {WS}' if era == 'npm6' else ''}", f"> {cmd}", ""]
    if not tail:
        return inv, head + body, []
    if era == "npm6":
        if script == "test" and rng.random() < 0.4:
            post = ["npm ERR! Test failed.  See above for more details."]
        else:
            post = ["npm ERR! code ELIFECYCLE", f"npm ERR! errno {code}", f"npm ERR! {pkg} {script}: `{cmd}`", f"npm ERR! Exit status {code}", "npm ERR! ", f"npm ERR! Failed at the {pkg} {script} script.",
                    "npm ERR! This is probably not a problem with npm. There is likely additional logging output above.", "", "npm ERR! A complete log of this run can be found in:", f"npm ERR!     {_npm_log(rng)}"]
    else:
        p = "npm ERR!" if era == "npm8" else "npm error"
        post = [f"{p} code {code}" if era == "npm10" or rng.random() < 0.5 else f"{p} Lifecycle script `{script}` failed with error: ", f"{p} path {{WS}}", f"{p} command failed", f"{p} command sh -c {cmd}"]
        post += (["", f"{p} A complete log of this run can be found in:", f"{p}     {_npm_log(rng)}"] if era == "npm8" else [f"{p} A complete log of this run can be found in: {_npm_log(rng)}"])
    return inv, head + body, post


def run_yarn(cmd, body, code, rng, repo, tail):
    script = _target(rng)
    inv = f"yarn {script}" if rng.random() < 0.5 else f"yarn run {script}"
    head = [f"yarn run v1.{rng.choice([10, 12, 15, 17, 19, 21, 22])}.{rng.randint(0, 22)}", f"$ {cmd}"]
    post = [f"error Command failed with exit code {code}.", "info Visit https://yarnpkg.com/en/docs/cli/run for documentation about this command."] if tail else []
    return inv, head + body, post


def run_pnpm(cmd, body, code, rng, repo, tail):
    script = _target(rng)
    pkg = _pkgname(repo, rng)
    inv = "pnpm test" if script == "test" else f"pnpm run {script}"
    head = ["", f"> {pkg} {script} {{WS}}", f"> {cmd}", ""]
    post = [f" ELIFECYCLE  {'Test failed. See above for more details.' if script == 'test' else f'Command failed with exit code {code}.'}"] if tail else []
    return inv, head + body, post


def run_make(cmd, body, code, rng, repo, tail):
    target = _target(rng).replace(":", "-")
    line = rng.randint(5, 140)
    head, post = [cmd], []
    nested = rng.random() < 0.2
    if nested:
        sub = rng.choice(["src", "tests", "frontend", "backend", "lib", "tools"])
        head = [f"make -C {sub} {target}", f"make[1]: Entering directory '{{WS}}/{sub}'", cmd]
    if tail:
        old = rng.random() < 0.35
        post = [f"make{'[1]' if nested else ''}: *** [{target}] Error {code}" if old else f"make{'[1]' if nested else ''}: *** [Makefile:{line}: {target}] Error {code}"]
        if nested:
            post += [f"make[1]: Leaving directory '{{WS}}/{sub}'", f"make: *** [{target}] Error 2" if old else f"make: *** [Makefile:{rng.randint(5, 60)}: {target}] Error 2"]
    return f"make {target}", head + body, post


def run_just(cmd, body, code, rng, repo, tail):
    target = _target(rng).replace(":", "-")
    post = [f"error: Recipe `{target}` failed on line {rng.randint(3, 80)} with exit code {code}"] if tail else []
    return f"just {target}", [cmd] + body, post


def run_script(cmd, body, code, rng, repo, tail):
    inv = rng.choice(SCRIPTS)
    head = []
    if rng.random() < 0.6:  # set -x traces
        head += rng.sample(["+ cd {WS}", "+ set -euo pipefail", "+ export CI=true", f"+ echo '--- {_target(rng)}'", "+ source ./scripts/env.sh", "+ mkdir -p build/reports"], rng.randint(1, 3))
        head.append(f"+ {cmd}")
    else:
        head += [f"==> {rng.choice(['Running', 'Step:', 'Starting'])} {_target(rng)}"]
    post = []
    if tail and rng.random() < 0.3:
        post = [f"{inv.split()[-1]}: line {rng.randint(5, 90)}: {_target(rng)} failed with exit code {code}" if rng.random() < 0.5 else f"Error: {_target(rng)} step failed (exit {code})"]
    return inv, head + body, post


def run_rake(cmd, body, code, rng, repo, tail):
    task = _target(rng).replace(":", "_")
    post = []
    if tail:
        post = ["rake aborted!", f"Command failed with status ({code}): [{cmd[:60]}{'...' if len(cmd) > 60 else ''}]", f"{{WS}}/Rakefile:{rng.randint(4, 60)}:in `block in <top (required)>'",
                f"{{HOME}}/.rvm/gems/ruby-2.{rng.randint(3, 7)}.{rng.randint(0, 8)}/gems/rake-{rng.choice(['10.5.0', '12.3.3', '13.0.6'])}/exe/rake:27:in `<top (required)>'" if rng.random() < 0.5 else "/usr/local/bundle/gems/rake-13.0.6/exe/rake:27:in `<top (required)>'",
                f"Tasks: TOP => {'default => ' if rng.random() < 0.4 else ''}{task}", "(See full trace by running task with --trace)"]
    return rng.choice([f"bundle exec rake {task}", "bundle exec rake", f"rake {task}"]), [cmd] + body, post


def run_tox(cmd, body, code, rng, repo, tail):
    env = rng.choice(["py27", "py36", "py38", "py39", "py310", "py311", "py312", "lint", "flake8", "docs", "type", "tests", "pep8", "cover"])
    secs = rng.uniform(0.5, 90)
    tool = cmd.split()[0]
    if rng.random() < 0.5:  # tox 3
        head = [f"{env} installed: {', '.join(f'{p}=={_ver(rng)}' for p in rng.sample(PKGS['python'], 5))}", f"{env} run-test-pre: PYTHONHASHSEED='{rng.randint(1, 4294967295)}'", f"{env} run-test: commands[0] | {cmd}"]
        post = [f"ERROR: InvocationError for command {{WS}}/.tox/{env}/bin/{tool} {cmd[len(tool) + 1:]} (exited with code {code})", "_" * 35 + " summary " + "_" * 36, f"ERROR:   {env}: commands failed"] if tail else []
    else:  # tox 4
        head = [f"{env}: install_deps> python -I -m pip install -r requirements-dev.txt", f"{env}: commands[0]> {cmd}"]
        post = [f"{env}: exit {code} ({secs:.2f} seconds) {{WS}}> {cmd} pid={rng.randint(1000, 40000)}", f"  {env}: FAIL code {code} ({secs + 3:.2f}=setup[3.00]+cmd[{secs:.2f}] seconds)", f"  evaluation failed :( ({secs + 3.1:.2f} seconds)"] if tail else []
    return rng.choice(["tox", f"tox -e {env}", "python -m tox"]), head + body, post


def run_nox(cmd, body, code, rng, repo, tail):
    s = rng.choice(["tests", "lint", "docs", "typing", "unit", "build", "check"]) + rng.choice(["", "-3.11", "-3.12", "-3.9"])
    head = [f"nox > Running session {s}", f"nox > Creating virtual environment (virtualenv) using python{s.rsplit('-', 1)[-1] if '-' in s else '3'} in .nox/{s.replace('.', '-')}", "nox > python -m pip install -e '.[dev]'", f"nox > {cmd}"]
    post = [f"nox > Command {cmd} failed with exit code {code}", f"nox > Session {s} failed."] if tail else []
    return rng.choice([f"nox -s {s.split('-')[0]}", "nox", f"nox --session {s}"]), head + body, post


def run_ninja(cmd, body, code, rng, repo, tail):
    target = _target(rng).replace(":", "_")
    head = [f"[0/{rng.randint(1, 3)}] cd {{WS}}/build && {cmd}"]
    post = [f"FAILED: CMakeFiles/{target}.util ", f"cd {{WS}}/build && {cmd}", "ninja: build stopped: subcommand failed."] if tail else []
    return f"cmake --build build --target {target}", head + body, post


def _maven_close(rng: random.Random, goal_line: str) -> list[str]:
    return ["[INFO] ------------------------------------------------------------------------", "[INFO] BUILD FAILURE", "[INFO] ------------------------------------------------------------------------",
            f"[INFO] Total time:  {rng.uniform(2, 300):.3f} s", f"[INFO] Finished at: {datetime(2016, 1, 1) + timedelta(seconds=rng.randint(0, 9 * 365 * 86400)):%Y-%m-%dT%H:%M:%S}Z", "[INFO] ------------------------------------------------------------------------",
            goal_line, "[ERROR] ", "[ERROR] To see the full stack trace of the errors, re-run Maven with the -e switch.", "[ERROR] Re-run Maven using the -X switch to enable full debug logging.", "[ERROR] ",
            "[ERROR] For more information about the errors and possible solutions, please read the following articles:", "[ERROR] [Help 1] http://cwiki.apache.org/confluence/display/MAVEN/MojoExecutionException"]


def run_mvn(cmd, body, code, rng, repo, tail):
    """A command run from Maven: exec-maven-plugin, or frontend-maven-plugin for npm/yarn."""
    exe_id = _target(rng).replace(":", "-")
    art = repo
    if cmd.split()[0] in ("npm", "yarn", "npx", "pnpm") and rng.random() < 0.6:
        v = rng.choice(["1.6", "1.9.1", "1.12.1", "1.15.0"])
        head = [f"[INFO] --- frontend-maven-plugin:{v}:{cmd.split()[0] if cmd.split()[0] != 'npx' else 'npx'} ({exe_id}) @ {art} ---", f"[INFO] Running '{cmd}' in {{WS}}"]
        body = [(MARK + "[INFO] " + s[1:]) if s.startswith(MARK) else "[INFO] " + s for s in body]
        goal = f"[ERROR] Failed to execute goal com.github.eirslett:frontend-maven-plugin:{v}:{cmd.split()[0]} ({exe_id}) on project {art}: Failed to run task: '{cmd}' failed. org.apache.commons.exec.ExecuteException: Process exited with an error: {code} (Exit value: {code}) -> [Help 1]"
        post = _maven_close(rng, goal) if tail else []
        return rng.choice(["mvn -B verify", "mvn -B install", "./mvnw -B package", "mvn clean install"]), head + body, post
    v = rng.choice(["1.6.0", "3.0.0", "3.1.0", "3.1.1"])
    head = [f"[INFO] --- exec-maven-plugin:{v}:exec ({exe_id}) @ {art} ---"]
    post = []
    if tail:
        post = ["[ERROR] Command execution failed.", f"org.apache.commons.exec.ExecuteException: Process exited with an error: {code} (Exit value: {code})",
                "    at org.apache.commons.exec.DefaultExecutor.executeInternal (DefaultExecutor.java:404)", "    at org.apache.commons.exec.DefaultExecutor.execute (DefaultExecutor.java:166)", f"    at org.codehaus.mojo.exec.ExecMojo.executeCommandLine (ExecMojo.java:{rng.choice([804, 982, 1000])})"]
        post += _maven_close(rng, f"[ERROR] Failed to execute goal org.codehaus.mojo:exec-maven-plugin:{v}:exec ({exe_id}) on project {art}: Command execution failed.: Process exited with an error: {code} (Exit value: {code}) -> [Help 1]")
    return rng.choice(["mvn -B verify", "mvn -B install", "./mvnw -B verify", f"mvn exec:exec@{exe_id}"]), head + body, post


def run_gradle(cmd, body, code, rng, repo, tail):
    """A command run from a Gradle Exec task (or the node-gradle plugin's npm tasks)."""
    t = _target(rng).replace(":", "_")
    task = rng.choice([f":{t}", f":app:{t}", f":{t}Exec", f":npm_run_{t}", f":web:{t}"])
    head = [f"> Task {task}"]
    post = []
    if tail:
        exe = cmd.split()[0]
        post = [f"> Task {task} FAILED", "", "FAILURE: Build failed with an exception.", "", "* What went wrong:", f"Execution failed for task '{task}'.",
                f"> Process 'command '{exe if '/' in exe else rng.choice([exe, '/usr/bin/' + exe, '{WS}/.gradle/nodejs/bin/' + exe])}'' finished with non-zero exit value {code}", "",
                "* Try:", "> Run with --stacktrace option to get the stack trace.", "> Run with --info or --debug option to get more log output.", "> Run with --scan to get full insights.", "",
                "* Get more help at https://help.gradle.org", "", f"BUILD FAILED in {rng.randint(3, 300)}s", f"{rng.randint(2, 30)} actionable tasks: {rng.randint(1, 20)} executed, {rng.randint(0, 10)} up-to-date"]
    return rng.choice([f"./gradlew {task.split(':')[-1]}", "./gradlew build --no-daemon", f"gradle {task}", "./gradlew check"]), head + body, post


def run_composer(cmd, body, code, rng, repo, tail):
    """composer run-script: it echoes the command and names the script's event when it fails."""
    script = _target(rng)
    inv = "composer test" if script == "test" and rng.random() < 0.6 else f"composer run-script {script}"
    post = [f"Script {cmd} handling the {script} event returned with error code {code}"] if tail else []
    return inv, [f"> {cmd}"] + body, post


RUNNERS = {"npm": run_npm, "yarn": run_yarn, "pnpm": run_pnpm, "make": run_make, "just": run_just, "script": run_script, "rake": run_rake,
           "tox": run_tox, "nox": run_nox, "ninja": run_ninja, "mvn": run_mvn, "gradle": run_gradle, "composer": run_composer}
# Which runners each ecosystem uses, by weight. Never by label.
_ANY = {"make": 8, "script": 8, "just": 2, "mvn": 1, "gradle": 1}
RUNNER_WEIGHTS = {
    "node": {"npm": 14, "yarn": 7, "pnpm": 3, "make": 3, "script": 4, "mvn": 1, "gradle": 1},
    "python": {"tox": 6, "nox": 3, "make": 6, "script": 5, "just": 1},
    "ruby": {"rake": 12, "make": 2, "script": 4},
    "c": {"make": 10, "ninja": 4, "script": 4},
    "java": {"make": 2, "script": 5, "gradle": 2, "mvn": 2},
    "php": {"composer": 8, "make": 3, "script": 5},
    "haskell": {"make": 4, "script": 6, "just": 1},
    "elixir": {"make": 4, "script": 6},
    "erlang": {"make": 6, "script": 5},
    "perl": {"make": 6, "script": 5},
}
# How often the failing step runs through a runner; the same for every label.
P_RUNNER = 0.5


def pick_runner(eco: str, rng: random.Random) -> str | None:
    if rng.random() >= P_RUNNER:
        return None
    w = RUNNER_WEIGHTS.get(eco, _ANY)
    return rng.choices(list(w), weights=list(w.values()))[0]


# ---------------------------------------------------------------- the CI systems
#
# Each takes the step list [(command, lines)], the failing step (command, lines), the runner's
# closing lines and the exit code, and lays them out. Body lines carry MARK and are passed through.


class Job:
    def __init__(self, cap: dict, rng: random.Random, size: str, org: str, repo: str, eco: str):
        self.cap, self.rng, self.size, self.org, self.repo, self.eco = cap, rng, size, org, repo, eco
        self.code = cap.get("exit_code") or 1
        extra = cap.get("extra") or {}
        self.killed = bool(extra.get("ci_kill"))  # the CI system ended the job: no exit line, no runner tail
        self.cut = bool(extra.get("cut"))  # the log ends mid-step: nothing after the body


ALWAYS_STEPS = [
    ["##[group]Run actions/upload-artifact@v4", "with:", "  name: test-results", "  path: reports/", "##[endgroup]", "Warning: No files were found with the provided path: reports/. No artifacts will be uploaded."],
    ["##[group]Run actions/upload-artifact@v4", "with:", "  name: logs", "##[endgroup]", "With the provided path, there will be 3 files uploaded", "Artifact name is valid!", "Root directory input is valid!", "Beginning upload of artifact content to blob storage", "Uploaded bytes 48213", "Finished uploading artifact content to blob storage!", "Artifact logs successfully finalized."],
    ["##[group]Run mikepenz/action-junit-report@v4", "##[endgroup]", "Preparing 1 report as configured.", "Retrieved 0 reports to process.", "No test results found!"],
    ["##[group]Run docker compose logs", "docker compose logs", "##[endgroup]", "db-1  | LOG:  database system is ready to accept connections", "db-1  | LOG:  checkpoint starting: time"],
    ["##[group]Run codecov/codecov-action@v4", "##[endgroup]", "==> linux OS detected", "info - 2024-05-10 10:12:01,392 -- ci service found: github-actions", "warning - 2024-05-10 10:12:01,410 -- No coverage reports found. Please make sure you're generating reports successfully."],
]
POST_GHA = [
    ["Post job cleanup.", "[command]/usr/bin/git version", "git version 2.45.2", "Temporarily overriding HOME='/home/runner/work/_temp/1d2c' before making global git config changes", "[command]/usr/bin/git config --local --name-only --get-regexp core\\.sshCommand", "Cleaning up orphan processes"],
    ["Post job cleanup.", "Cache hit occurred on the primary key Linux-deps-3f9a1c, not saving cache."],
    ["Post job cleanup.", "/usr/bin/tar --posix -cf cache.tzst --exclude cache.tzst -P -C /home/runner/work/app/app --files-from manifest.txt --use-compress-program zstdmt", "Cache Size: ~42 MB (44040192 B)", "Cache saved successfully", "Cache saved with key: Linux-build-3f9a1c"],
    ["Cleaning up orphan processes"],
]


def _stamp(clock: Clock, rng: random.Random, kind: str) -> str:
    t = clock.tick()
    if kind == "iso7":
        return f"{t:%Y-%m-%dT%H:%M:%S}.{t.microsecond:06d}{rng.randint(0, 9)}Z "
    if kind == "jenkins":
        return f"[{t:%Y-%m-%dT%H:%M:%S}.{t.microsecond // 1000:03d}Z] "
    if kind == "hms":
        return f"[{t:%H:%M:%S}] "
    if kind == "gitlab":
        return f"{t:%Y-%m-%dT%H:%M:%S}.{t.microsecond:06d}Z 00O "
    return ""


def _emitter(lines: list[str], clock: Clock, rng: random.Random, kind: str):
    def emit(*ss: str) -> None:
        for s in ss:
            lines.append(_stamp(clock, rng, kind) + s)
    return emit


def gha(job: Job, steps, fail_cmd, fail_lines, post):
    rng, size, org, repo, eco = job.rng, job.size, job.org, job.repo, job.eco
    lines: list[str] = []
    emit = _emitter(lines, Clock(rng), rng, "iso7" if rng.random() < 0.55 else "")
    if size == "long":
        emit("Current runner version: '2.3" + str(rng.randint(10, 21)) + ".0'", "Operating System", "  Ubuntu", f"  {rng.choice(['22.04.4', '24.04.1', '20.04.6'])}", "  LTS", "Runner Image", f"  Image: ubuntu-{rng.choice(['20.04', '22.04', '24.04'])}",
             f"  Version: 2024{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}.1.0", "GITHUB_TOKEN Permissions", "  Contents: read", "  Metadata: read", "Secret source: Actions", "Prepare workflow directory", "Prepare all required actions", "Getting action download info",
             f"Download action repository 'actions/checkout@v4' (SHA:{_hex(rng, 40)})", "Complete job name: " + rng.choice(["build", "test", "ci", f"test ({rng.choice(['ubuntu-latest', '3.12', '20.x', 'stable'])})", "lint", "check", "verify", "main", f"{_target(rng)} ({rng.choice(['ubuntu-latest', 'macos-latest'])})"]))
    if size != "short":
        emit("##[group]Run actions/checkout@v4", "with:", f"  repository: {org}/{repo}", "##[endgroup]")
        if size == "long":
            ws = workspace("gha", org, repo, rng)[0]
            emit(f"Syncing repository: {org}/{repo}", "##[group]Getting Git version info", f"Working directory is '{ws}'", "[command]/usr/bin/git version", "git version 2.45.2", "##[endgroup]", f"[command]/usr/bin/git init {ws}",
                 f"[command]/usr/bin/git -c protocol.version=2 fetch --no-tags --prune --no-recurse-submodules --depth=1 origin +{_hex(rng, 40)}:refs/remotes/origin/main", "[command]/usr/bin/git checkout --progress --force -B main refs/remotes/origin/main", f"'{_hex(rng, 40)}'")
        if eco in SETUP:
            action, out = SETUP[eco]
            emit(f"##[group]Run {action}", "##[endgroup]", *out(rng))
    for cmd, out in steps:
        emit(f"##[group]Run {cmd}", cmd, "shell: /usr/bin/bash -e {0}", "##[endgroup]", *out)
    emit(f"##[group]Run {fail_cmd}", fail_cmd, "shell: /usr/bin/bash -e {0}")
    if rng.random() < 0.4:
        emit("env:", *("  " + k for k in rng.sample(["pythonLocation: /opt/hostedtoolcache/Python/3.12.4/x64", "CI: true", "NODE_ENV: test", "RUST_BACKTRACE: 1", "GOFLAGS: -mod=readonly", "DATABASE_URL: postgres://postgres:postgres@localhost:5432/test", "CARGO_TERM_COLOR: always", "MAVEN_OPTS: -Xmx2g"], 2)))
    emit("##[endgroup]", *fail_lines, *post)
    if job.cut or job.killed:
        return lines
    emit(f"##[error]Process completed with exit code {job.code}.")
    if size != "short" and rng.random() < 0.35:
        emit(*rng.choice(ALWAYS_STEPS))
    if size != "short" and rng.random() < 0.55:
        emit(*rng.choice(POST_GHA))
    return lines


def gitlab(job: Job, steps, fail_cmd, fail_lines, post):
    rng, size, org, repo, eco = job.rng, job.size, job.org, job.repo, job.eco
    img = rng.choice(IMAGES.get(eco, ["ubuntu:22.04"]))
    lines: list[str] = []
    emit = _emitter(lines, Clock(rng), rng, "gitlab" if rng.random() < 0.2 else "")
    if size != "short":
        emit(f"Running with gitlab-runner 1{rng.randint(0, 7)}.{rng.randint(0, 11)}.{rng.randint(0, 3)} ({_hex(rng, 8)})", f"  on {rng.choice(['blue', 'green', 'shared', 'docker-auto-scale', 'k8s'])}-{rng.randint(1, 9)}.saas-linux-small-amd64.runners-manager.gitlab.com/default {_hex(rng, 8)}",
             "Preparing the \"docker+machine\" executor", f"Using Docker executor with image {img} ...", f"Pulling docker image {img} ...", f"Using docker image sha256:{_hex(rng, 64)} for {img} with digest {img.split(':')[0]}@sha256:{_hex(rng, 64)} ...",
             "Preparing environment", f"Running on runner-{_hex(rng, 8)}-project-{rng.randint(1000000, 59999999)}-concurrent-0 via runner-{_hex(rng, 8)}-s-l-s-amd64-{rng.randint(1700000000, 1730000000)}-{_hex(rng, 8)}...",
             "Getting source from Git repository", "Fetching changes with git depth set to 20...", f"Initialized empty Git repository in /builds/{org}/{repo}/.git/", "Created fresh repository.", f"Checking out {_hex(rng, 8)} as detached HEAD (ref is {rng.choice(['main', 'master', 'develop', 'feature/' + repo])})...", "Skipping Git submodules setup")
        if rng.random() < 0.5:
            emit("Restoring cache", f"Checking cache for {rng.choice(['default', 'deps', eco])}-{rng.randint(1, 20)}-protected...", "Downloading cache from https://storage.googleapis.com/gitlab-com-runners-cache/project/1234/default-protected  ETag=\"" + _hex(rng, 32) + "\"", "Successfully extracted cache")
        emit("Executing \"step_script\" stage of the job script", f"Using docker image sha256:{_hex(rng, 64)} for {img} ...")
    for cmd, out in steps:
        emit(f"$ {cmd}", *out)
    emit(f"$ {fail_cmd}", *fail_lines, *post)
    if job.cut or job.killed:
        return lines
    if size != "short" and rng.random() < 0.3:
        emit("Running after_script", "Running after script...", "$ docker compose logs --tail=20 || true", "time=\"2024-05-10T10:12:01Z\" level=warning msg=\"project has no services running\"")
    if size != "short" and rng.random() < 0.35:
        emit("Saving cache for failed job", f"Creating cache {rng.choice(['default', 'deps', eco])}-{rng.randint(1, 20)}-protected...", f"{rng.choice(['node_modules/', '.cache/pip', 'vendor/', '.m2/repository'])}: found {rng.randint(100, 90000)} matching artifact files and directories", "Uploading cache.zip to https://storage.googleapis.com/gitlab-com-runners-cache/project/1234/default-protected", "Created cache")
    if size != "short" and rng.random() < 0.35:
        emit("Uploading artifacts for failed job", "Uploading artifacts...", "WARNING: report.xml: no matching files. Ensure that the artifact path is relative to the working directory", "ERROR: No files to upload")
    emit("Cleaning up project directory and file based variables", f"ERROR: Job failed: exit code {job.code}")
    return lines


def jenkins(job: Job, steps, fail_cmd, fail_lines, post):
    rng, size, org, repo = job.rng, job.size, job.org, job.repo
    ws, _ = workspace("jenkins", org, repo, rng)
    lines: list[str] = []
    emit = _emitter(lines, Clock(rng), rng, rng.choice(["", "", "jenkins", "hms"]))
    stage = rng.choice(["Build", "Test", "Verify", "CI", "Check", "Unit Tests", "Lint", "Install", "Package", "Quality", "Deploy", "Tests"])
    if size != "short":
        emit(rng.choice(["Started by GitHub push by " + rng.choice(["dependabot[bot]", "jdoe", "mchen", "renovate[bot]"]), "Started by user admin", "Branch indexing", "Started by an SCM change"]), f"Obtained Jenkinsfile from git https://github.com/{org}/{repo}.git", "[Pipeline] Start of Pipeline", "[Pipeline] node",
             f"Running on {rng.choice(['agent-1', 'linux-build-04', 'docker-agent', 'built-in node'])} in {ws}", "[Pipeline] {", "[Pipeline] stage", "[Pipeline] { (Declarative: Checkout SCM)", "[Pipeline] checkout", "The recommended git tool is: NONE", "Cloning the remote Git repository",
             f" > git fetch --no-tags --force --progress -- https://github.com/{org}/{repo}.git +refs/heads/*:refs/remotes/origin/* # timeout=10", f"Checking out Revision {_hex(rng, 40)} (main)", "[Pipeline] }", "[Pipeline] // stage")
    for cmd, out in steps:
        emit("[Pipeline] stage", f"[Pipeline] {{ ({rng.choice(['Setup', 'Install', 'Prepare', 'Dependencies'])})", "[Pipeline] sh", f"+ {cmd}", *out, "[Pipeline] }", "[Pipeline] // stage")
    emit("[Pipeline] stage", f"[Pipeline] {{ ({stage})", "[Pipeline] sh", f"+ {fail_cmd}", *fail_lines, *post)
    if job.cut:
        return lines
    emit("[Pipeline] }", "[Pipeline] // stage")
    if size != "short" and not job.killed:
        emit("[Pipeline] stage", "[Pipeline] { (Declarative: Post Actions)", *(["[Pipeline] junit", "Recording test results", "None of the test reports contained any result", "[Checks API] No suitable checks publisher found."] if rng.random() < 0.3 else ["[Pipeline] archiveArtifacts", "Archiving artifacts", "[Pipeline] cleanWs", "[WS-CLEANUP] Deleting project workspace...", "[WS-CLEANUP] done"]), "[Pipeline] }", "[Pipeline] // stage", "[Pipeline] }", "[Pipeline] // node", "[Pipeline] End of Pipeline")
    if not job.killed:
        emit(f"ERROR: script returned exit code {job.code}", "Finished: FAILURE")
    return lines


def circleci(job: Job, steps, fail_cmd, fail_lines, post):
    rng = job.rng
    lines: list[str] = []
    for cmd, out in steps:
        lines += ["#!/bin/bash -eo pipefail", cmd] + out + [""]
    lines += ["#!/bin/bash -eo pipefail", fail_cmd] + fail_lines + post
    if job.cut or job.killed:
        return lines
    lines += ["", f"Exited with code exit status {job.code}"]
    if rng.random() < 0.4:
        lines.append("CircleCI received exit code " + str(job.code))
    if job.size != "short" and rng.random() < 0.3:
        lines += ["", "Uploading test results", "Archiving the following test results", f"  * {rng.choice(['test-results', 'reports/junit', 'build/test-results'])}", "", "Found no test results, skipping"]
    return lines


def _travis_time(rng: random.Random, clock: Clock) -> tuple[str, str]:
    tid = _hex(rng, 8)
    t0 = int(clock.t.timestamp() * 1e9)
    t1 = int(clock.tick(0.2, 40).timestamp() * 1e9)
    return f"travis_time:start:{tid}", f"travis_time:end:{tid}:start={t0},finish={t1},duration={t1 - t0}"


def travis(job: Job, steps, fail_cmd, fail_lines, post):
    rng, size, org, repo, eco = job.rng, job.size, job.org, job.repo, job.eco
    clock = Clock(rng)
    ansi = rng.random() < 0.3
    k = "\r\x1b[0K" if ansi else ""
    lines: list[str] = []
    lang = {"node": "node_js", "c": rng.choice(["c", "cpp"]), "dotnet": "csharp", "shell": "generic", "docker": "minimal", "ci": "generic", "generic": "generic"}.get(eco, eco)
    if size != "short":
        lines += [f"travis_fold:start:worker_info{k}", "Worker information", f"hostname: {_hex(rng, 8)}-{_hex(rng, 4)}-{_hex(rng, 4)}@{rng.randint(1000, 20000)}.wjb-{rng.randint(1, 3)}", "version: v6.2.8 https://github.com/travis-ci/worker/tree/" + _hex(rng, 40),
                  "instance: travis-job-" + _hex(rng, 8) + f" travis-ci-{rng.choice(['sardine', 'garnet', 'onion'])}-{rng.choice(['trusty', 'xenial', 'bionic'])}-{rng.randint(1500000000, 1600000000)}-{_hex(rng, 7)} (via amqp)", f"startup: {rng.uniform(4, 30):.6f}s", f"travis_fold:end:worker_info{k}"]
        if size == "long":
            lines += [f"travis_fold:start:system_info{k}", "Build system information", f"Build language: {lang}", "Build group: stable", f"Build dist: {rng.choice(['trusty', 'xenial', 'bionic', 'focal'])}", f"Build id: {rng.randint(100000000, 700000000)}", f"Job id: {rng.randint(100000000, 700000000)}", f"Runtime kernel version: 4.{rng.randint(4, 15)}.0-{rng.randint(100, 1100)}-gcp", f"travis-build version: {_hex(rng, 9)}", f"travis_fold:end:system_info{k}"]
        a, b = _travis_time(rng, clock)
        lines += [f"travis_fold:start:git.checkout{k}", f"{a}{k}$ git clone --depth=50 --branch={rng.choice(['master', 'develop', 'main'])} https://github.com/{org}/{repo}.git {org}/{repo}", f"Cloning into '{org}/{repo}'...", f"{b}{k}", f"travis_fold:end:git.checkout{k}", f"$ cd {org}/{repo}", f"$ git checkout -qf {_hex(rng, 40)}"]
        if rng.random() < 0.4:
            a, b = _travis_time(rng, clock)
            lines += [f"travis_fold:start:cache.1{k}", "Setting up build cache", "$ export CASHER_DIR=${TRAVIS_HOME}/.casher", f"{a}{k}$ Installing caching utilities", f"{b}{k}", "attempting to download cache archive", f"fetching {rng.choice(['master', 'PR.' + str(rng.randint(10, 999))])}/cache-linux-{rng.choice(['trusty', 'xenial'])}-{_hex(rng, 64)}--{lang}.tgz", "found cache", f"travis_fold:end:cache.1{k}"]
    for i, (cmd, out) in enumerate(steps):
        a, b = _travis_time(rng, clock)
        retry = rng.random() < 0.1
        fold = f"install.{i + 1}" if i < 2 else f"before_script.{i}"
        lines += [f"travis_fold:start:{fold}{k}", f"{a}{k}$ {'travis_retry ' if retry else ''}{cmd}"] + out
        if retry:
            lines += ["", f"The command \"{cmd}\" failed. Retrying, 2 of 3.", ""] + out[-3:]
        lines += [f"{b}{k}", f"travis_fold:end:{fold}{k}"]
    a, b = _travis_time(rng, clock)
    lines += [f"{a}{k}$ {fail_cmd}"] + fail_lines + post
    if job.cut or job.killed:
        return lines
    lines += ["", f"{b}{k}", f"The command \"{fail_cmd}\" exited with {job.code}."]
    if size != "short" and rng.random() < 0.5:
        lines += [f"travis_fold:start:cache.2{k}", "store build cache", f"$ {rng.choice(['bundle clean', 'rm -rf node_modules/.cache', 'rm -f $HOME/.cache/pip/log/debug.log', 'true'])}", f"{a}{k}", "change detected (content changed, file is created, or file is deleted):",
                  f"{{HOME}}/{rng.choice(['.cache/pip', '.npm', '.m2/repository', 'vendor/bundle', '.cargo/registry'])}/{_hex(rng, 2)}/{_hex(rng, 12)}", "", "changes detected, packing new archive", "uploading archive", f"travis_fold:end:cache.2{k}"]
    lines += ["", "Done. Your build exited with 1."]
    return lines


def azure(job: Job, steps, fail_cmd, fail_lines, post):
    rng = job.rng
    lines: list[str] = []
    emit = _emitter(lines, Clock(rng), rng, "iso7" if rng.random() < 0.4 else "")
    task_head = ["=" * 78, "Task         : Command line", "Description  : Run a command line script using Bash on Linux and macOS and cmd.exe on Windows", "Version      : 2.212.0", "Author       : Microsoft Corporation", "Help         : https://docs.microsoft.com/azure/devops/pipelines/tasks/utility/command-line", "=" * 78, "Generating script.", "Script contents:"]
    for cmd, out in steps:
        name = rng.choice(["Install dependencies", "Setup", "Restore", "Prepare"])
        emit(f"Starting: {name}", *task_head, cmd, "========================== Starting Command Output ===========================", f"/usr/bin/bash --noprofile --norc /home/vsts/work/_temp/{_hex(rng, 8)}-{_hex(rng, 4)}.sh", *out, f"Finishing: {name}")
    name = rng.choice(["Run tests", "Build", "Lint", "Script", "CmdLine", "Install and test", "Verify", "Check", "CI"])
    emit(f"Starting: {name}", *task_head, fail_cmd, "========================== Starting Command Output ===========================", f"/usr/bin/bash --noprofile --norc /home/vsts/work/_temp/{_hex(rng, 8)}-{_hex(rng, 4)}-{_hex(rng, 4)}.sh", *fail_lines, *post)
    if job.cut or job.killed:
        return lines
    emit(f"##[error]Bash exited with code '{job.code}'.", f"Finishing: {name}")
    if job.size != "short" and rng.random() < 0.4:
        emit("Starting: Checkout " + f"{job.org}/{job.repo}@main to s", "=" * 78, "Task         : Get sources", "=" * 78, "Cleaning any cached credential from repository: " + f"{job.org}/{job.repo} (GitHub)", "Finishing: Checkout " + f"{job.org}/{job.repo}@main to s", "Cleaning up task key", "Start cleaning up orphan processes.", "Finishing: Job")
    return lines


def buildkite(job: Job, steps, fail_cmd, fail_lines, post):
    rng = job.rng
    lines: list[str] = []
    emit = _emitter(lines, Clock(rng), rng, rng.choice(["", "hms"]))
    if job.size != "short":
        emit("~~~ Preparing working directory", f"$ cd {workspace('buildkite', job.org, job.repo, rng)[0]}", f"$ git clone -v -- git@github.com:{job.org}/{job.repo}.git .", f"$ git checkout -f {_hex(rng, 40)}", "~~~ Running global environment hook", "$ /etc/buildkite-agent/hooks/environment")
    for cmd, out in steps:
        emit(f"--- {rng.choice([':package: Install', ':hammer: Setup', 'Dependencies'])}", f"$ {cmd}", *out)
    emit(f"--- {rng.choice([':test_tube: ', ':mag: ', ':building_construction: ', ''])}{_target(rng)}", "~~~ Running commands", f"$ {fail_cmd}", *fail_lines, *post)
    if job.cut or job.killed:
        return lines
    emit(f"🚨 Error: The command exited with status {job.code}", f"user command error: exit status {job.code}")
    return lines


def drone(job: Job, steps, fail_cmd, fail_lines, post):
    lines: list[str] = []
    for cmd, out in steps:
        lines += [f"+ {cmd}"] + out
    lines += [f"+ {fail_cmd}"] + fail_lines + post
    if not (job.cut or job.killed) and job.rng.random() < 0.6:
        lines.append(f"exit code {job.code}" if job.rng.random() < 0.5 else f"time=\"{Clock(job.rng).t:%Y-%m-%dT%H:%M:%SZ}\" level=error msg=\"step failed\" error=\"exit status {job.code}\"")
    return lines


def appveyor(job: Job, steps, fail_cmd, fail_lines, post):
    rng = job.rng
    lines = []
    if job.size != "short":
        lines += ["Build started", f"git clone -q --branch=master https://github.com/{job.org}/{job.repo}.git /home/appveyor/projects/{job.repo}", f"git checkout -qf {_hex(rng, 40)}", "Restoring build cache", "Cache 'node_modules' - Restored" if rng.random() < 0.5 else "Cache '/home/appveyor/.cache/pip' - Not restored"]
    for cmd, out in steps:
        lines += [cmd] + out
    lines += [fail_cmd] + fail_lines + post
    if not (job.cut or job.killed):
        lines.append(f"Command exited with code {job.code}")
    return lines


def teamcity(job: Job, steps, fail_cmd, fail_lines, post):
    rng = job.rng
    lines: list[str] = []
    clock = Clock(rng)
    n = len(steps) + 1
    for i, (cmd, out) in enumerate(steps, 1):
        t = clock.tick(0.1, 5)
        lines += [f"[{t:%H:%M:%S}]W: Step {i}/{n}: {rng.choice(['Install', 'Setup', 'Restore'])} (Command Line)", f"[{t:%H:%M:%S}]i: [Step {i}/{n}] Starting: {cmd}"] + [f"[{t:%H:%M:%S}] : [Step {i}/{n}] {s}" for s in out]
    t = clock.tick(0.1, 5)
    tag = f"[Step {n}/{n}]"
    name = rng.choice(["Build", "Test", "Check", "CI", "Verify"])
    lines += [f"[{t:%H:%M:%S}]W: Step {n}/{n}: {name} (Command Line)", f"[{t:%H:%M:%S}]i: {tag} Starting: {fail_cmd}"] + [f"[{t:%H:%M:%S}]W: {tag} " + s for s in fail_lines + post]
    if not (job.cut or job.killed):
        lines += [f"[{t:%H:%M:%S}]W: {tag} Process exited with code {job.code}", f"[{t:%H:%M:%S}]E: {tag} Process exited with code {job.code} (Step: {name} (Command Line))", f"[{t:%H:%M:%S}]E: {tag} Step {name} (Command Line) failed"]
    return lines


def plain(job: Job, steps, fail_cmd, fail_lines, post):
    rng = job.rng
    prompt = rng.choice(["$ ", "+ ", "> ", "", ""])
    lines: list[str] = []
    for cmd, out in steps[-1:] if rng.random() < 0.3 else []:
        lines += [prompt + cmd] + out
    if prompt or rng.random() < 0.5:
        lines.append(prompt + fail_cmd)
    return lines + fail_lines + post


def docker_build(job: Job, steps, fail_cmd, fail_lines, post):
    """BuildKit's plain progress output (docker build --progress=plain), or the legacy builder's."""
    rng, eco, code = job.rng, job.eco, job.code
    base = rng.choice(IMAGES.get(eco, ["ubuntu:22.04"]))
    cmd = fail_cmd
    ntotal = rng.randint(5, 10)
    step = rng.randint(3, ntotal - 1)
    out = fail_lines + post
    if rng.random() < 0.75:
        n0 = rng.randint(1, 4)
        lines = ["#0 building with \"default\" instance using docker driver", "", "#1 [internal] load build definition from Dockerfile", f"#1 transferring dockerfile: {rng.randint(300, 2400)}B done", "#1 DONE 0.0s", "",
                 f"#2 [internal] load metadata for docker.io/library/{base}", f"#2 DONE {rng.uniform(0.3, 2.5):.1f}s", "", "#3 [internal] load .dockerignore", "#3 transferring context: 2B done", "#3 DONE 0.0s", "",
                 f"#4 [1/{ntotal}] FROM docker.io/library/{base}@sha256:{_hex(rng, 64)}", f"#4 DONE {rng.uniform(0.1, 9):.1f}s", ""]
        for i in range(2, step):
            lines += [f"#{n0 + 3 + i} [{i}/{ntotal}] {rng.choice(['WORKDIR /app', 'COPY requirements.txt .', 'COPY package*.json ./', 'RUN apt-get update && apt-get install -y --no-install-recommends git', 'COPY go.mod go.sum ./', 'COPY . .', 'ENV PATH=/app/bin:$PATH'])}", f"#{n0 + 3 + i} CACHED" if rng.random() < 0.6 else f"#{n0 + 3 + i} DONE {rng.uniform(0.1, 30):.1f}s", ""]
        k = n0 + 3 + step
        lines.append(f"#{k} [{step}/{ntotal}] RUN {cmd}")
        t = rng.uniform(0.1, 2.0)
        stamped = []
        for s in out:
            t += rng.uniform(0.0, 0.15)
            stamped.append((f"{t:.3f} ", s))
        lines += [(MARK if s.startswith(MARK) else "") + f"#{k} {p}{s.lstrip(MARK)}" for p, s in stamped]
        if job.cut or job.killed:
            return lines
        lines.append(f"#{k} ERROR: process \"/bin/sh -c {cmd}\" did not complete successfully: exit code: {code}")
        ln = step + rng.randint(3, 15)
        lines += ["------", f" > [{step}/{ntotal}] RUN {cmd}:"] + [(MARK if s.startswith(MARK) else "") + p + s.lstrip(MARK) for p, s in stamped[-10:]] + ["------", f"Dockerfile:{ln}", "--------------------"]
        lines += [f"  {ln - 1:>3} |     {rng.choice(['COPY . .', 'WORKDIR /app'])}", f"  {ln:>3} | >>> RUN {cmd}", f"  {ln + 1:>3} |     ", "--------------------", f"ERROR: failed to solve: process \"/bin/sh -c {cmd}\" did not complete successfully: exit code: {code}"]
        return lines
    lines = [f"Sending build context to Docker daemon  {rng.uniform(0.1, 90):.2f}MB", f"Step 1/{ntotal} : FROM {base}", f" ---> {_hex(rng, 12)}"]
    for i in range(2, step):
        lines += [f"Step {i}/{ntotal} : {rng.choice(['WORKDIR /app', 'COPY . .', 'COPY requirements.txt .', 'COPY package*.json ./'])}", " ---> Using cache", f" ---> {_hex(rng, 12)}"]
    lines += [f"Step {step}/{ntotal} : RUN {cmd}", f" ---> Running in {_hex(rng, 12)}"] + out
    if not (job.cut or job.killed):
        lines.append(f"The command '/bin/sh -c {cmd}' returned a non-zero code: {code}")
    return lines


CI = {"gha": gha, "gitlab": gitlab, "jenkins": jenkins, "circleci": circleci, "travis": travis, "azure": azure, "buildkite": buildkite, "drone": drone,
      "appveyor": appveyor, "teamcity": teamcity, "plain": plain, "docker": docker_build}
# How often each CI system is drawn: roughly how often their logs are pasted into issues. The
# same weights for every label.
CI_WEIGHTS = {"gha": 30, "gitlab": 11, "jenkins": 9, "circleci": 5, "travis": 12, "azure": 5, "buildkite": 3, "drone": 2, "appveyor": 2, "teamcity": 2, "plain": 12, "docker": 7}

_ERRORISH = re.compile(r"error|fail|fatal|denied|refused|panic|exception|traceback|E\d{3,4}|\bE\s|assert|cannot|could not|not found|unable|killed|timed? ?out|violation|vulnerab|warning:|✖|✗|×|●|FAIL|--- FAIL|\[ERROR\]", re.I)
_LEADS = ["", "", "", "CI fails on `{cmd}`:\n", "Running `{cmd}` in CI gives:\n", "Build broke after merging main:\n", "Getting this on the pipeline since yesterday:\n", "{cmd} fails with\n", "Log excerpt:\n",
          "Travis output:\n", "The job log ends with:\n", "Same error on the CI server:\n", "```\n"]


def excerpt(lines: list[str], rng: random.Random, cmd: str) -> list[str]:
    """What a person pastes into an issue: a few lines around an error line of the failure, which
    may run into the runner's and CI system's closing lines, or the log's last lines."""
    nonblank = [s for s in lines if s.strip(MARK).strip()]
    if not nonblank:
        return lines
    hits = [i for i, s in enumerate(nonblank) if s.startswith(MARK) and _ERRORISH.search(s)]
    n = rng.randint(1, 10)
    if hits and rng.random() < 0.7:
        start = max(0, rng.choice(hits[:3] + hits[-2:]) - rng.randint(0, 3))
        chunk = nonblank[start : start + n]
    else:
        chunk = nonblank[-n:]
    lead = rng.choice(_LEADS).replace("{cmd}", cmd)
    return ([lead.rstrip("\n")] if lead else []) + chunk + (["```"] if lead == "```\n" else [])


def _unmark(lines: list[str]) -> tuple[str, list[list[int]]]:
    """The text, and the [start, end) line ranges that came from the failure body."""
    out, spans = [], []
    for i, line in enumerate("\n".join(lines).split("\n")):
        if MARK in line:
            if spans and spans[-1][1] == i:
                spans[-1][1] = i + 1
            else:
                spans.append([i, i + 1])
            line = line.replace(MARK, "")
        out.append(line)
    return "\n".join(out), spans


# Checks that belong to no language (ci, generic, docker) get the setup and noise of one of these.
NOISE_ECOS = ["python", "node", "go", "rust", "java", "ruby", "c", "dotnet"]
# Every ecosystem with a setup, install noise and passing steps of its own.
OWN_NOISE = set(NOISE_ECOS) | {"php", "haskell", "elixir", "erlang", "perl", "scala", "lua"}
# Commands that ran when a failure has none of its own (a cancelled job, a runner that lost its
# machine): assemble.py fills this with the commands of all captures, so that they are drawn from
# the same distribution whatever the label.
COMMAND_POOL: dict[str, list[str]] = {}
_FALLBACK_COMMANDS = ["make test", "npm test", "pytest", "go test ./...", "cargo test", "mvn -B verify", "bundle exec rspec", "./gradlew build"]


def step_command(cap: dict, eco: str, rng: random.Random) -> str:
    if (cap.get("extra") or {}).get("borrow_command"):
        pool = COMMAND_POOL.get(eco) or [c for cs in COMMAND_POOL.values() for c in cs] or _FALLBACK_COMMANDS
        return rng.choice(pool)
    return cap["command"]


class Wrapped(tuple):
    """(text, wrapper) with the failure body's line ranges and the failing tool command."""

    def __new__(cls, text: str, wrapper: str, body_lines: list[list[int]], command: str):
        self = super().__new__(cls, (text, wrapper))
        self.text, self.wrapper, self.body_lines, self.command = text, wrapper, body_lines, command
        return self


def wrap(cap: dict, rng: random.Random, org: str, repo: str, size: str, ci: str | None = None, runner: str | None = "draw") -> Wrapped:
    """One capture in a CI log. `ci` and `runner` are drawn (independently of the label) unless given."""
    extra = cap.get("extra") or {}
    # Checks that belong to no language (ci, generic, docker) run in some language's project: its
    # setup, install noise and runners are drawn from any of them.
    eco = cap["ecosystem"] if cap["ecosystem"] in OWN_NOISE else rng.choice(NOISE_ECOS)
    body = vary_versions(cap, rng)
    blines = body.split("\n") if body else []
    if size == "medium" and len(blines) > 120:
        blines = blines[-rng.randint(60, 120):]
    marked = [MARK + s for s in blines]
    cmd = step_command(cap, eco, rng)
    if runner == "draw":
        runner = extra.get("runner") or pick_runner(eco, rng)
    tail = not (extra.get("ci_kill") or extra.get("cut"))
    if runner:
        step_cmd, fail_lines, post = RUNNERS[runner](cmd, marked, cap.get("exit_code") or 1, rng, repo, tail)
    else:
        step_cmd, fail_lines, post = cmd, marked, []
    if ci is None:
        ci = extra.get("ci") or rng.choices(list(CI_WEIGHTS), weights=list(CI_WEIGHTS.values()))[0]
    if size == "short":
        lines = excerpt(fail_lines + post, rng, step_cmd)
        name = "excerpt"
        ci = "plain"
    else:
        if ci == "docker" and extra.get("no_docker"):
            ci = "gha"
        job = Job(cap, rng, size, org, repo, eco)
        steps = preamble_steps(eco, rng, size)
        lines = CI[ci](job, steps, step_cmd, fail_lines, post)
        name = ci
    ws, home = workspace(ci, org, repo, rng)
    text, spans = _unmark(lines)
    text = fill(text, ws, home, site_dir(ci, ws, rng))
    return Wrapped(text, name + (f"+{runner}" if runner else ""), spans, cmd)
