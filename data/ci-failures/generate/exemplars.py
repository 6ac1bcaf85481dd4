"""Exemplars for what cannot run here, written from each tool's documented message format.

.NET (dotnet build / test / restore / format, NuGet's NUxxxx codes), Docker and BuildKit errors
that are not a failing RUN step, CI-runner messages (GitHub Actions, GitLab, Jenkins, CircleCI,
Travis, Azure Pipelines), security scanners (npm audit, pip-audit, cargo audit, govulncheck,
bundler-audit, trivy, grype, gitleaks, OWASP dependency-check, NuGet audit, CodeQL), linters
whose binaries are not installable here (golangci-lint, checkstyle, spotless, ktlint, PMD),
access refusals from hosted services, and `unknown` logs (cancelled, cut off, or silent).

Every row made here has origin "exemplar". Advisory identifiers are real, public advisories
(GHSA / CVE / RUSTSEC / GO ids) for the versions named; names, paths and numbers are drawn at
random like the generated rows'.
"""

from __future__ import annotations

import random
import sys

from common import Capture, Sink, camel, noun, pascal, snake

# ---------------------------------------------------------------- helpers


def _cs_ns(rng: random.Random) -> tuple[str, str]:
    root = rng.choice(["Acme", "Northwind", "Contoso", "Fabrikam", "Kestrel", "Orbit"])
    proj = f"{root}.{rng.choice(['Api', 'Core', 'Domain', 'Web', 'Infrastructure', 'Worker', 'Services'])}"
    return root, proj


def _ws(rng: random.Random) -> str:
    return "{WS}"


def _cap(eco: str, tool: str, label: str, fault: str, command: str, body: str, code: int = 1) -> Capture:
    return Capture("exemplars", eco, tool, label, fault, command, body, code, origin="exemplar")


# ---------------------------------------------------------------- .NET

_CS_ERRORS = [
    ("CS0246", "The type or namespace name '{T}' could not be found (are you missing a using directive or an assembly reference?)"),
    ("CS0103", "The name '{v}' does not exist in the current context"),
    ("CS1002", "; expected"),
    ("CS0029", "Cannot implicitly convert type 'string' to 'int'"),
    ("CS1061", "'{T}' does not contain a definition for '{M}' and no accessible extension method '{M}' accepting a first argument of type '{T}' could be found (are you missing a using directive or an assembly reference?)"),
    ("CS0161", "'{T}.{M}()': not all code paths return a value"),
    ("CS0120", "An object reference is required for the non-static field, method, or property '{T}.{M}'"),
    ("CS7036", "There is no argument given that corresponds to the required parameter '{v}' of '{T}.{T}(string, int)'"),
    ("CS0535", "'{T}' does not implement interface member 'I{T}.{M}(CancellationToken)'"),
    ("CS1503", "Argument 1: cannot convert from 'int' to 'string'"),
    ("CS0266", "Cannot implicitly convert type 'long' to 'int'. An explicit conversion exists (are you missing a cast?)"),
    ("CS0117", "'{T}' does not contain a definition for '{M}'"),
    ("CS4032", "The 'await' operator can only be used within an async method. Consider marking this method with the 'async' modifier and changing its return type to 'Task<{T}>'."),
    ("CS0234", "The type or namespace name '{M}' does not exist in the namespace '{NS}' (are you missing an assembly reference?)"),
    ("CS1513", "} expected"),
    ("CS0101", "The namespace '{NS}' already contains a definition for '{T}'"),
]
_CS_WARN_AS_ERR = [
    ("CS8618", "Non-nullable property '{M}' must contain a non-null value when exiting constructor. Consider adding the 'required' modifier or declaring the property as nullable."),
    ("CS8602", "Dereference of a possibly null reference."),
    ("CS8604", "Possible null reference argument for parameter '{v}' in '{T}.{M}(string {v})'."),
    ("CS0168", "The variable '{v}' is declared but never used"),
    ("CS1998", "This async method lacks 'await' operators and will run synchronously. Consider using the 'await' operator to await non-blocking API calls, or 'await Task.Run(...)' to do CPU-bound work on a background thread."),
    ("CS0618", "'{T}.{M}()' is obsolete: 'Use {M}Async instead'"),
    ("CA2016", "Forward the 'cancellationToken' parameter to the '{M}' method or pass in 'CancellationToken.None' explicitly to indicate intentionally not propagating the token"),
]


def _fill(s: str, rng: random.Random, ns: str) -> str:
    return s.replace("{T}", pascal(snake(rng, 2))).replace("{M}", pascal(snake(rng, 2))).replace("{v}", camel(snake(rng, 2))).replace("{NS}", ns)


def _maven_tail(kind: str = "MojoFailureException") -> list[str]:
    """Maven's closing lines, the same whichever goal failed: a Maven lint or security failure
    ends like a compile failure, and only the goal line tells them apart."""
    return ["[ERROR] ", "[ERROR] To see the full stack trace of the errors, re-run Maven with the -e switch.", "[ERROR] Re-run Maven using the -X switch to enable full debug logging.", "[ERROR] ",
            "[ERROR] For more information about the errors and possible solutions, please read the following articles:", f"[ERROR] [Help 1] http://cwiki.apache.org/confluence/display/MAVEN/{kind}"]


def _gradle_tail(rng: random.Random) -> list[str]:
    return ["", "* Try:", "> Run with --stacktrace option to get the stack trace.", "> Run with --info or --debug option to get more log output.", "> Run with --scan to get full insights.", "> Get more help at https://help.gradle.org.", "", f"BUILD FAILED in {rng.randint(3, 200)}s", f"{rng.randint(2, 30)} actionable tasks: {rng.randint(1, 20)} executed, {rng.randint(0, 10)} up-to-date"]


def _msbuild_tail(rng: random.Random, n_err: int, n_warn: int) -> list[str]:
    return ["", "Build FAILED.", "", *([] if rng.random() < 0.5 else []), f"    {n_warn} Warning(s)", f"    {n_err} Error(s)", "", f"Time Elapsed 00:00:{rng.randint(3, 59):02d}.{rng.randint(10, 99)}"]


def dotnet_build(rng: random.Random) -> Capture:
    root, proj = _cs_ns(rng)
    werror = rng.random() < 0.3
    pool = _CS_WARN_AS_ERR if werror else _CS_ERRORS
    errs = []
    for _ in range(rng.randint(1, 4)):
        code, msg = rng.choice(pool)
        folder = rng.choice(["Services", "Controllers", "Models", "Handlers", "Repositories", ""])
        file = f"{_ws(rng)}/src/{proj}/{folder + '/' if folder else ''}{pascal(snake(rng, 2))}.cs"
        errs.append(f"{file}({rng.randint(5, 300)},{rng.randint(5, 60)}): {'error' if not werror else 'error'} {code}: {_fill(msg, rng, proj)} [{_ws(rng)}/src/{proj}/{proj}.csproj]")
    pre = ["MSBuild version 17.9.8+b34f75857 for .NET" if rng.random() < 0.5 else "MSBuild version 17.11.4+37eb419ad for .NET", "  Determining projects to restore...", "  All projects are up-to-date for restore."]
    pre += [f"  {root}.Domain -> {_ws(rng)}/src/{root}.Domain/bin/{rng.choice(['Debug', 'Release'])}/net8.0/{root}.Domain.dll"] if rng.random() < 0.6 else []
    body = pre + errs + _msbuild_tail(rng, len(errs), rng.randint(0, 12))
    body[len(pre) + len(errs) + 3: len(pre) + len(errs) + 3] = errs if rng.random() < 0.5 else []
    return _cap("dotnet", "dotnet build", "build", "dotnet_" + ("warnaserror" if werror else "cs_error"), rng.choice(["dotnet build --no-restore", "dotnet build -c Release", "dotnet build --configuration Release /warnaserror", "dotnet publish -c Release -o out"]), "\n".join(body))


def dotnet_test(rng: random.Random) -> Capture:
    root, proj = _cs_ns(rng)
    fw = rng.choice(["xunit", "nunit", "mstest"])
    tests_proj = f"{root}.{rng.choice(['Tests', 'UnitTests', 'IntegrationTests', 'Api.Tests'])}"
    lines = ["  Determining projects to restore...", "  All projects are up-to-date for restore.", f"  {tests_proj} -> {_ws(rng)}/tests/{tests_proj}/bin/Debug/net8.0/{tests_proj}.dll", f"Test run for {_ws(rng)}/tests/{tests_proj}/bin/Debug/net8.0/{tests_proj}.dll (.NETCoreApp,Version=v8.0)", "Microsoft (R) Test Execution Command Line Tool Version 17.9.0 (x64)", "Copyright (c) Microsoft Corporation.  All rights reserved.", "", "Starting test execution, please wait...", "A total of 1 test files matched the specified pattern."]
    nf = rng.randint(1, 3)
    for _ in range(nf):
        cls = pascal(snake(rng, 2)) + "Tests"
        m = pascal(snake(rng, 2)) + rng.choice(["_ReturnsTotal", "_ThrowsWhenEmpty", "_MapsFields", "ShouldSucceed", "_WhenCalled_ReturnsOk"])
        x, y = rng.randint(1, 500), rng.randint(1, 500)
        err = {
            "xunit": rng.choice([["Assert.Equal() Failure: Values differ", f"Expected: {x}", f"Actual:   {y}"], ["Assert.True() Failure", "Expected: True", "Actual:   False"], ["Assert.Throws() Failure: No exception was thrown", "Expected: typeof(System.ArgumentNullException)"], ["System.NullReferenceException : Object reference not set to an instance of an object."], ["Assert.Equal() Failure: Strings differ", "           ↓ (pos 0)", f"Expected: \"{noun(rng)}\"", f"Actual:   \"{noun(rng)}\"", "           ↑ (pos 0)"]]),
            "nunit": rng.choice([[f"  Expected: {x}", f"  But was:  {y}"], ["  Expected: True", "  But was:  False"], ["  Expected: <System.InvalidOperationException>", "  But was:  null"]]),
            "mstest": rng.choice([[f"Assert.AreEqual failed. Expected:<{x}>. Actual:<{y}>."], ["Assert.IsTrue failed. "], [f"Test method {root}.Tests.{cls}.{m} threw exception: ", "System.InvalidOperationException: Sequence contains no elements"]]),
        }[fw]
        lines += [f"  Failed {root}.Tests.{cls}.{m} [{rng.randint(1, 900)} ms]", "  Error Message:"] + ["   " + e for e in err] + ["  Stack Trace:", f"     at {root}.Tests.{cls}.{m}() in {_ws(rng)}/tests/{tests_proj}/{cls}.cs:line {rng.randint(10, 200)}", "--- End of stack trace from previous location ---" if rng.random() < 0.3 else "   at System.RuntimeMethodHandle.InvokeMethod(Object target, Void** arguments, Signature sig, Boolean isConstructor)", ""]
    total = rng.randint(nf + 5, 400)
    lines += ["", f"Failed!  - Failed:     {nf}, Passed:   {total - nf}, Skipped:     {rng.randint(0, 3)}, Total:   {total}, Duration: {rng.randint(1, 59)} s - {tests_proj}.dll (net8.0)"]
    return _cap("dotnet", "dotnet test", "test", f"dotnet_test_{fw}", rng.choice(["dotnet test --no-build", "dotnet test -c Release --logger trx", "dotnet test --no-restore --verbosity normal"]), "\n".join(lines))


def dotnet_restore(rng: random.Random) -> Capture:
    root, proj = _cs_ns(rng)
    csproj = f"{_ws(rng)}/src/{proj}/{proj}.csproj"
    pkg = rng.choice(["Newtonsoft.Json", "Serilog.AspNetCore", "Microsoft.EntityFrameworkCore.SqlServer", "AutoMapper", "Polly", "Dapper", "FluentValidation", "MediatR", "Swashbuckle.AspNetCore", "Acme.Internal.Common"])
    v = f"{rng.randint(1, 13)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}"
    kind = rng.choice(["NU1101", "NU1102", "NU1605", "NU1202", "NU1004", "NU1107", "NU1301_dns", "NU1301_401", "NU1301_503", "NU1903"])
    label = "dependency"
    if kind == "NU1101":
        msg = [f"{csproj} : error NU1101: Unable to find package {pkg}. No packages exist with this id in source(s): nuget.org"]
    elif kind == "NU1102":
        msg = [f"{csproj} : error NU1102: Unable to find package {pkg} with version (>= {v})", f"{csproj} : error NU1102:   - Found {rng.randint(20, 300)} version(s) in nuget.org [ Nearest version: {rng.randint(1, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 9)} ]"]
    elif kind == "NU1605":
        msg = [f"{csproj} : error NU1605: Warning As Error: Detected package downgrade: {pkg} from {v} to {rng.randint(1, 9)}.0.0. Reference the package directly from the project to select a different version. ", f"{csproj} : error NU1605:  {proj} -> {root}.Core -> {pkg} (>= {v}) ", f"{csproj} : error NU1605:  {proj} -> {pkg} (>= {rng.randint(1, 9)}.0.0)"]
    elif kind == "NU1202":
        msg = [f"{csproj} : error NU1202: Package {pkg} {v} is not compatible with net6.0 (.NETCoreApp,Version=v6.0). Package {pkg} {v} supports: net8.0 (.NETCoreApp,Version=v8.0)"]
    elif kind == "NU1004":
        msg = [f"{csproj} : error NU1004: The package references have changed for {proj}. Lock file's package references: {pkg}:[{rng.randint(1, 9)}.0.0, ), project's package references: {pkg}:[{v}, ). The packages lock file is inconsistent with the project dependencies so restore can't be run in locked mode. Disable the RestoreLockedMode MSBuild property or pass an explicit `--force-evaluate` option to run restore to update the lock file."]
    elif kind == "NU1107":
        msg = [f"{csproj} : error NU1107: Version conflict detected for {pkg}. Install/reference {pkg} {v} directly to project {proj} to resolve this issue. ", f"{csproj} : error NU1107:  {proj} -> {root}.Data -> {pkg} (>= {v}) ", f"{csproj} : error NU1107:  {proj} -> {root}.Legacy -> {pkg} (= {rng.randint(1, 9)}.0.1)."]
    elif kind == "NU1903":
        adv = rng.choice(_NUGET_ADV)
        msg = [f"{csproj} : error NU1903: Warning As Error: Package '{adv[0]}' {adv[1]} has a known high severity vulnerability, https://github.com/advisories/{adv[2]}"]
        label = "security"
    else:
        feed = rng.choice(["https://api.nuget.org/v3/index.json", f"https://pkgs.dev.azure.com/{noun(rng)}/_packaging/{noun(rng)}-feed/nuget/v3/index.json", f"https://nuget.pkg.github.com/{noun(rng)}/index.json"])
        why = {"NU1301_dns": [f"  Name or service not known ({feed.split('/')[2]}:443)", "  Name or service not known"], "NU1301_401": ["  Response status code does not indicate success: 401 (Unauthorized)."], "NU1301_503": ["  Response status code does not indicate success: 503 (Service Unavailable)."]}[kind]
        msg = [f"{csproj} : error NU1301: Unable to load the service index for source {feed}."] + [f"{csproj} : error NU1301: {w.strip()}" for w in why]
        label = {"NU1301_401": "access", "NU1301_503": "infrastructure", "NU1301_dns": "infrastructure"}[kind]
    lines = ["  Determining projects to restore..."] + msg + [f"  Failed to restore {csproj} (in {rng.randint(200, 9000)} ms)."]
    if rng.random() < 0.5:
        lines += _msbuild_tail(rng, len(msg), 0)
    return _cap("dotnet", "nuget", label, kind, rng.choice(["dotnet restore", "dotnet restore --locked-mode", "dotnet build", "nuget restore App.sln"]), "\n".join(lines))


_NUGET_ADV = [("System.Text.Json", "8.0.0", "GHSA-8g4q-xg66-9fp4"), ("Newtonsoft.Json", "12.0.3", "GHSA-5crp-9r3c-p9vr"), ("System.Data.SqlClient", "4.8.5", "GHSA-98g6-xh36-x2p7"), ("Azure.Identity", "1.10.0", "GHSA-m5vv-6r4h-3vj9"), ("Microsoft.Data.SqlClient", "5.1.1", "GHSA-98g6-xh36-x2p7"), ("System.Formats.Asn1", "8.0.0", "GHSA-447r-wph3-92pm")]


def dotnet_format(rng: random.Random) -> Capture:
    root, proj = _cs_ns(rng)
    lines = []
    for _ in range(rng.randint(1, 6)):
        f = f"{_ws(rng)}/src/{proj}/{rng.choice(['Services', 'Controllers', 'Models'])}/{pascal(snake(rng, 2))}.cs"
        code, msg = rng.choice([("WHITESPACE", f"Fix whitespace formatting. Replace {rng.randint(1, 40)} characters with '\\n\\s\\s\\s\\s\\s\\s\\s\\s'."), ("WHITESPACE", "Fix whitespace formatting. Insert '\\s'."), ("IDE0005", "Using directive is unnecessary."), ("IDE0055", "Fix formatting"), ("IDE0161", "Convert to file-scoped namespace"), ("IDE0090", "'new' expression can be simplified"), ("IDE1006", "Naming rule violation: Missing prefix: '_'")])
        lines.append(f"{f}({rng.randint(1, 300)},{rng.randint(1, 60)}): error {code}: {msg} [{_ws(rng)}/src/{proj}/{proj}.csproj]")
    return _cap("dotnet", "dotnet format", "lint", "dotnet_format", rng.choice(["dotnet format --verify-no-changes", "dotnet format whitespace --verify-no-changes", "dotnet format style --verify-no-changes --severity warn"]), "\n".join(lines), 2)


def dotnet_infra(rng: random.Random) -> Capture:
    root, proj = _cs_ns(rng)
    kind = rng.choice(["disk", "msbuild_node", "oom", "server_gc"])
    if kind == "disk":
        body = [f"  {proj} -> {_ws(rng)}/src/{proj}/bin/Release/net8.0/{proj}.dll", f"/usr/share/dotnet/sdk/8.0.{rng.randint(100, 404)}/Microsoft.Common.CurrentVersion.targets(4879,5): error MSB3021: Unable to copy file \"obj/Release/net8.0/{proj}.dll\" to \"bin/Release/net8.0/{proj}.dll\". No space left on device : '{_ws(rng)}/src/{proj}/bin/Release/net8.0/{proj}.dll' [{_ws(rng)}/src/{proj}/{proj}.csproj]"]
    elif kind == "msbuild_node":
        body = ["MSBUILD : error MSB4166: Child node \"3\" exited prematurely. Shutting down. Diagnostic information may be found in files in \"/tmp/MSBuildTempvsts/\" and will be named MSBuild_*.failure.txt. This location can be changed by setting the MSBUILDDEBUGPATH environment variable to a different directory."]
    elif kind == "oom":
        body = [f"  {proj} -> {_ws(rng)}/src/{proj}/bin/Debug/net8.0/{proj}.dll", "Out of memory.", "  Process terminated. Out of memory.", "   at System.GC.AllocateNewArray(IntPtr, Int32, GC_ALLOC_FLAGS)"]
    else:
        body = ["error : The build server has been shut down unexpectedly.", "The process cannot access the file '/home/runner/.dotnet/toolResolverCache' because it is being used by another process."]
    return _cap("dotnet", "dotnet build", "infrastructure", f"dotnet_{kind}", "dotnet build -c Release", "\n".join(body))


# ---------------------------------------------------------------- Docker / BuildKit (not a RUN step)

def docker_exemplar(rng: random.Random) -> Capture:
    img = rng.choice(["node:20-alpine", "python:3.12-slim", "golang:1.22", "eclipse-temurin:21-jre", "nginx:1.27", "ruby:3.3", "mcr.microsoft.com/dotnet/sdk:8.0"])
    repo = f"ghcr.io/{noun(rng)}/{noun(rng)}"
    kind = rng.choice(["copy_missing", "parse_error", "pull_denied", "push_denied", "unauthorized", "rate_limit", "manifest_unknown", "tls_timeout", "no_space", "compose_unhealthy", "exec_format", "copy_from_stage"])
    path = rng.choice(["requirements.txt", "package-lock.json", "go.sum", "dist/app.jar", "Gemfile.lock", "target/release/app", "src/"])
    d = {
        "copy_missing": ("build", ["#7 [4/8] COPY " + path + " ./", f"#7 ERROR: failed to calculate checksum of ref {rng.getrandbits(64):016x}::{rng.getrandbits(64):016x}: \"/{path.rstrip('/')}\": not found", "------", f" > [4/8] COPY {path} ./:", "------", f"ERROR: failed to solve: failed to compute cache key: failed to calculate checksum of ref {rng.getrandbits(64):016x}::{rng.getrandbits(64):016x}: \"/{path.rstrip('/')}\": not found"]),
        "copy_from_stage": ("build", [f"#14 [stage-1 3/4] COPY --from=build /app/{path} /app/", f"#14 ERROR: failed to calculate checksum of ref {rng.getrandbits(64):016x}: \"/app/{path}\": not found", f"ERROR: failed to solve: failed to compute cache key: failed to calculate checksum of ref {rng.getrandbits(64):016x}: \"/app/{path}\": not found"]),
        "parse_error": ("build", [f"ERROR: failed to solve: dockerfile parse error on line {rng.randint(3, 40)}: unknown instruction: {rng.choice(['RUNN', 'COPPY', 'FORM', 'ENTRYPIONT', 'WORKDIRR'])}"]),
        "pull_denied": ("access", [f"#2 [internal] load metadata for {repo}-base:latest", "#2 ERROR: pull access denied, repository does not exist or may require authorization: server message: insufficient_scope: authorization failed", f"ERROR: failed to solve: {repo}-base:latest: failed to resolve source metadata for {repo}-base:latest: pull access denied, repository does not exist or may require authorization: server message: insufficient_scope: authorization failed"]),
        "push_denied": ("access", [f"The push refers to repository [{repo}]", f"{rng.getrandbits(48):012x}: Preparing", f"{rng.getrandbits(48):012x}: Preparing", "denied: requested access to the resource is denied"]),
        "unauthorized": ("access", [f"Error response from daemon: Get \"https://{repo.split('/')[0]}/v2/\": unauthorized: authentication required"] if rng.random() < 0.5 else [f"ERROR: failed to solve: failed to push {repo}:{rng.getrandbits(28):07x}: unexpected status from POST request to https://{repo.split('/')[0]}/v2/{'/'.join(repo.split('/')[1:])}/blobs/uploads/: 401 Unauthorized"]),
        "rate_limit": ("infrastructure", [f"#3 [internal] load metadata for docker.io/library/{img}", "#3 ERROR: failed to copy: httpReadSeeker: failed open: unexpected status code https://registry-1.docker.io/v2/library/" + img.split(':')[0] + "/manifests/sha256:" + f"{rng.getrandbits(128):032x}" + ": 429 Too Many Requests - Server message: toomanyrequests: You have reached your pull rate limit. You may increase the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limit"]),
        "manifest_unknown": ("dependency", [f"ERROR: failed to solve: {img.split(':')[0]}:{rng.choice(['99', '3.99-slim', '1.99', '25-alpine3.99'])}: failed to resolve source metadata for docker.io/library/{img.split(':')[0]}:{rng.choice(['99', '3.99-slim'])}: docker.io/library/{img.split(':')[0]}:{rng.choice(['99', '3.99-slim'])}: not found"] if rng.random() < 0.5 else [f"Error response from daemon: manifest for {img.split(':')[0]}:{rng.choice(['99', '3.99-slim', 'lts-alpine3.99'])} not found: manifest unknown: manifest unknown"]),
        "tls_timeout": ("infrastructure", [f"ERROR: failed to solve: {img}: failed to resolve source metadata for docker.io/library/{img}: failed to do request: Head \"https://registry-1.docker.io/v2/library/{img.split(':')[0]}/manifests/{img.split(':')[-1]}\": net/http: TLS handshake timeout"]),
        "no_space": ("infrastructure", ["#9 [5/7] RUN npm ci", f"#9 ERROR: failed to register layer: write /app/node_modules/.cache/{noun(rng)}: no space left on device", "ERROR: failed to solve: failed to register layer: write /usr/lib/x86_64-linux-gnu/libLLVM-15.so.1: no space left on device"]),
        "compose_unhealthy": ("infrastructure", [f" Container {noun(rng)}-db-1  Starting", f" Container {noun(rng)}-db-1  Started", f" Container {noun(rng)}-db-1  Waiting", f" Container {noun(rng)}-db-1  Error", f"dependency failed to start: container {noun(rng)}-db-1 is unhealthy"]),
        "exec_format": ("build", ["#8 [3/6] RUN ./scripts/build.sh", "#8 0.231 exec ./scripts/build.sh: exec format error", "#8 ERROR: process \"/bin/sh -c ./scripts/build.sh\" did not complete successfully: exit code: 1", "ERROR: failed to solve: process \"/bin/sh -c ./scripts/build.sh\" did not complete successfully: exit code: 1"]),
    }[kind]
    label, body = d
    pre = ["#0 building with \"default\" instance using docker driver", "", "#1 [internal] load build definition from Dockerfile", f"#1 transferring dockerfile: {rng.randint(300, 3000)}B done", "#1 DONE 0.0s"] if kind not in ("push_denied", "unauthorized", "compose_unhealthy") and rng.random() < 0.7 else []
    cmd = {"push_denied": f"docker push {repo}:latest", "unauthorized": f"docker login {repo.split('/')[0]} && docker push {repo}", "compose_unhealthy": "docker compose up -d --wait"}.get(kind, rng.choice(["docker build -t app .", f"docker buildx build --platform linux/amd64 -t {repo}:ci .", "docker compose build"]))
    return _cap("docker", "docker", label, f"docker_{kind}", cmd, "\n".join(pre + body))


# ---------------------------------------------------------------- CI runner messages

def _started_output(rng: random.Random) -> list[str]:
    """The first lines of a step that was still running when the job died: not its failure."""
    from wrap import PASSING_STEPS

    eco = rng.choice(["python", "node", "go", "rust", "java", "ruby", "c", "dotnet"])
    out = rng.choice(PASSING_STEPS[eco])[1] if rng.random() < 0.6 else []
    return out[: rng.randint(0, len(out))]


def runner_exemplar(rng: random.Random) -> Capture:
    """The CI system or the machine ended the job: no tool failed. The command that was running is
    borrowed from the captures (of any label), and the message is the CI system's own."""
    n = rng.randint(2, 40)
    mins = rng.choice([10, 20, 30, 50, 60, 120, 360])
    kinds = {
        # kind: (CI system or None for any, the CI ended the job, message lines)
        "gha_timeout": ("gha", True, [f"##[error]The job running on runner GitHub Actions {n} has exceeded the maximum execution time of {mins} minutes."]),
        "gha_lost": ("gha", True, [f"##[error]The hosted runner: GitHub Actions {n} lost communication with the server. Anything in your workflow that terminates the runner process, starves it for CPU/Memory, or blocks its network access can cause this error."]),
        "gha_shutdown": ("gha", True, ["##[error]The runner has received a shutdown signal. This can happen when the runner service is stopped, or a manually started runner is canceled.", "##[error]Process completed with exit code 143."]),
        "gha_disk": ("gha", True, [f"System.IO.IOException: No space left on device : '/home/runner/runners/2.3{rng.randint(10, 21)}.0/_diag/Worker_{rng.randint(20240101, 20241231)}-{rng.randint(100000, 235959)}-utc.log'", "   at System.IO.RandomAccess.WriteAtOffset(SafeFileHandle handle, ReadOnlySpan`1 buffer, Int64 fileOffset)", "   at System.IO.Strategies.BufferedFileStreamStrategy.FlushWrite()", "##[error]No space left on device"]),
        "gitlab_timeout": ("gitlab", True, [f"ERROR: Job failed: execution took longer than {rng.choice(['1h0m0s', '2h0m0s', '30m0s'])} seconds"]),
        "gitlab_system": ("gitlab", True, [f"ERROR: Job failed (system failure): {rng.choice(['Error response from daemon: no such container', 'prepare environment: waiting for pod running: timed out waiting for pod to start', 'Error: unable to connect to docker daemon', 'failed to pull image: context deadline exceeded'])}"]),
        "jenkins_offline": ("jenkins", True, ["FATAL: command execution failed", "java.nio.channels.ClosedChannelException", "\tat org.jenkinsci.remoting.protocol.impl.ChannelApplicationLayer.onReadClosed(ChannelApplicationLayer.java:209)", f"Caused: hudson.remoting.ChannelClosedException: Channel \"hudson.remoting.Channel@{rng.getrandbits(28):x}:agent-{n}\": Remote call on agent-{n} failed. The channel is closing down or has closed down", f"Agent agent-{n} was deleted; cancelling node body", "Finished: FAILURE"]),
        "jenkins_timeout": ("jenkins", True, ["Cancelling nested steps due to timeout", "Sending interrupt signal to process", "script returned exit code 143", "Timeout has been exceeded", "Finished: ABORTED"]),
        "circle_noout": ("circleci", True, ["", "Too long with no output (exceeded 10m0s): context deadline exceeded"]),
        "travis_time": ("travis", True, ["", "", "The job exceeded the maximum time limit for jobs, and has been terminated."]),
        "travis_time_old": ("travis", True, ["", f"I'm sorry but your test run exceeded {rng.choice([50, 120])}.0 minutes.", "", "One possible solution is to split up your test run."]),
        "travis_noout": ("travis", True, ["", "", "No output has been received in the last 10m0s, this potentially indicates a stalled build or something wrong with the build itself.", "Check the details on how to adjust your build configuration on: https://docs.travis-ci.com/user/common-build-problems/#build-times-out-because-no-output-was-received", "", "The build has been terminated", ""]),
        "travis_clone": ("travis", True, [f"fatal: unable to access 'https://github.com/{noun(rng)}/{noun(rng)}.git/': {rng.choice(['Could not resolve host: github.com', 'GnuTLS recv error (-54): Error in the pull function.', 'Failed to connect to github.com port 443: Connection timed out'])}", "", f"The command \"eval git clone --depth=50 --branch=master https://github.com/{noun(rng)}/{noun(rng)}.git\" failed. Retrying, 2 of 3.", "", "The command \"eval git clone --depth=50 --branch=master\" failed 3 times.", "", "", "Done. Your build exited with 1."]),
        "azure_timeout": ("azure", True, [f"##[error]The job running on agent Hosted Agent ran longer than the maximum time of {rng.choice([60, 360])} minutes. For more information, see https://go.microsoft.com/fwlink/?linkid=2077134"]),
        "azure_lost": ("azure", True, [f"##[error]We stopped hearing from agent Azure Pipelines {n}. Verify the agent machine is running and has a healthy network connection. Anything that terminates an agent process, starves it for CPU, or blocks its network access can cause this error. For more information, see: https://go.microsoft.com/fwlink/?linkid=846610"]),
        "buildkite_lost": ("buildkite", True, ["Received cancellation signal, interrupting", "🚨 Error: The command exited with status -1 (agent lost)", "user command error: agent lost"]),
        "gha_cache_503": ("gha", False, ["Warning: Failed to restore: Cache service responded with 503", f"##[error]Failed to save: Unable to reserve cache with key {noun(rng)}-{rng.getrandbits(64):016x}, another job may be creating this cache. More details: Cache service responded with 503"]),
        "gha_artifact_fail": ("gha", False, [f"With the provided path, there will be {rng.randint(1, 40)} files uploaded", "Artifact name is valid!", "##[error]Failed to CreateArtifact: Unable to make request: ECONNRESET", "If you are experiencing this issue, please check the status of GitHub Actions at https://www.githubstatus.com/"]),
        "apt_hash": (None, False, [f"Get:{n} http://azure.archive.ubuntu.com/ubuntu jammy-updates/main amd64 Packages [{rng.randint(1000, 2000)} kB]", f"Err:{n + 1} http://azure.archive.ubuntu.com/ubuntu jammy-updates/main amd64 Packages", "  Hash Sum mismatch", "  Hashes of expected file:", f"   - SHA256:{rng.getrandbits(128):032x}{rng.getrandbits(128):032x}", "Fetched 25.3 MB in 4s (6,412 kB/s)", "Reading package lists...", "E: Failed to fetch http://azure.archive.ubuntu.com/ubuntu/dists/jammy-updates/main/binary-amd64/by-hash/SHA256/" + f"{rng.getrandbits(128):032x}  Hash Sum mismatch", "E: Some index files failed to download. They have been ignored, or old ones used instead."]),
        "apt_unreachable": (None, False, [f"Ign:{n} http://deb.debian.org/debian bookworm InRelease", f"Err:{n} http://deb.debian.org/debian bookworm InRelease", "  Temporary failure resolving 'deb.debian.org'", "Reading package lists...", "W: Failed to fetch http://deb.debian.org/debian/dists/bookworm/InRelease  Temporary failure resolving 'deb.debian.org'", "W: Some index files failed to download. They have been ignored, or old ones used instead.", f"E: Unable to locate package {rng.choice(['libpq-dev', 'build-essential', 'libssl-dev', 'git'])}"]),
        "apt_mirror_404": (None, False, [f"Err:{n} http://archive.ubuntu.com/ubuntu {rng.choice(['trusty', 'xenial', 'bionic'])}-updates/main amd64 {rng.choice(['libssl-dev', 'libpq5', 'curl'])} amd64 {rng.randint(1, 9)}.{rng.randint(0, 9)}-{rng.randint(1, 9)}ubuntu{rng.randint(1, 9)}", "  404  Not Found [IP: 91.189.88.152 80]", "E: Failed to fetch http://archive.ubuntu.com/ubuntu/pool/main/o/openssl/libssl-dev_1.1.1-1ubuntu2.1_amd64.deb  404  Not Found [IP: 91.189.88.152 80]", "E: Unable to fetch some archives, maybe run apt-get update or try with --fix-missing?"]),
        "gha_rate_limit": (None, False, [f"Error: API rate limit exceeded for installation ID {rng.randint(10000000, 59999999)}. If you reach out to GitHub Support for help, please include the request ID {rng.getrandbits(16):04X}:{rng.getrandbits(24):06X}:{rng.getrandbits(28):07X}:{rng.getrandbits(28):07X}:{rng.getrandbits(32):08X}."]),
        "docker_rate_limit": (None, False, [f"Unable to find image '{rng.choice(['postgres:12', 'redis:6', 'node:14', 'python:3.8'])}' locally", "docker: Error response from daemon: toomanyrequests: You have reached your pull rate limit. You may increase the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limit.", "See 'docker run --help'."]),
    }
    kind = rng.choice(sorted(kinds))
    ci, killed, msgs = kinds[kind]
    body = _started_output(rng) + msgs if killed else msgs
    cmd = "sudo apt-get update && sudo apt-get install -y libpq-dev" if kind.startswith("apt") else ""
    cap = _cap("ci", kind.split("_")[0], "infrastructure", kind, cmd, "\n".join(body), 1)
    cap.extra = {"no_docker": True, "ci_kill": killed, "borrow_command": not cmd}
    if ci:
        cap.extra["ci"] = ci
    return cap


def access_exemplar(rng: random.Random) -> Capture:
    org, repo = noun(rng), f"{noun(rng)}-{rng.choice(['api', 'service', 'web', 'infra'])}"
    kind = rng.choice(["publickey", "push_403", "integration", "bad_creds", "token_input", "aws_creds", "aws_assume", "gcloud", "npm_publish", "ghcr_denied", "pypi_upload", "codecov", "terraform", "kubectl", "sso", "gh_cli", "expired_token"])
    b = {
        "publickey": ("git", ["Cloning into '" + repo + "'...", "git@github.com: Permission denied (publickey).", "fatal: Could not read from remote repository.", "", "Please make sure you have the correct access rights", "and the repository exists."]),
        "push_403": ("git", [f"remote: Permission to {org}/{repo}.git denied to github-actions[bot].", f"fatal: unable to access 'https://github.com/{org}/{repo}/': The requested URL returned error: 403"]),
        "integration": ("github-script", ["RequestError [HttpError]: Resource not accessible by integration", "    at /home/runner/work/_actions/actions/github-script/v7/dist/index.js:9537:21", "    at process.processTicksAndRejections (node:internal/process/task_queues:95:5)", "    at async eval (eval at callAsyncFunction (/home/runner/work/_actions/actions/github-script/v7/dist/index.js:35424:16), <anonymous>:3:1) {", "  status: 403,", "  response: {", f"    url: 'https://api.github.com/repos/{org}/{repo}/issues/{rng.randint(1, 999)}/comments',", "    status: 403,", "##[error]Unhandled error: HttpError: Resource not accessible by integration"]),
        "bad_creds": ("gh", [f"HTTP 401: Bad credentials (https://api.github.com/repos/{org}/{repo}/releases)", "Try authenticating with:  gh auth login"]),
        "token_input": ("actions", ["##[error]Input required and not supplied: token"]),
        "aws_creds": ("aws", ["##[error]Credentials could not be loaded, please check your action inputs: Could not load credentials from any providers"]),
        "aws_assume": ("aws", ["##[error]Could not assume role with OIDC: Not authorized to perform sts:AssumeRoleWithWebIdentity"] if rng.random() < 0.5 else [f"An error occurred (AccessDenied) when calling the PutObject operation: User: arn:aws:sts::{rng.randint(100000000000, 999999999999)}:assumed-role/{org}-ci/GitHubActions is not authorized to perform: s3:PutObject on resource: \"arn:aws:s3:::{org}-artifacts/{repo}/build.zip\" because no identity-based policy allows the s3:PutObject action"]),
        "gcloud": ("gcloud", [f"ERROR: (gcloud.run.deploy) PERMISSION_DENIED: Permission 'run.services.get' denied on resource 'namespaces/{org}-prod/services/{repo}' (or resource may not exist). This command is authenticated as ci@{org}-prod.iam.gserviceaccount.com which is the active account specified by the [core/account] property."]),
        "npm_publish": ("npm", ["npm notice Publishing to https://registry.npmjs.org/ with tag latest and default access", "npm error code E403", f"npm error 403 403 Forbidden - PUT https://registry.npmjs.org/@{org}%2f{repo} - You do not have permission to publish \"@{org}/{repo}\". Are you logged in as the correct user?", "npm error A complete log of this run can be found in: /home/runner/.npm/_logs/2024-06-11T09_12_44_120Z-debug-0.log"]),
        "ghcr_denied": ("docker", [f"Error response from daemon: Head \"https://ghcr.io/v2/{org}/{repo}/manifests/latest\": denied: denied"]),
        "pypi_upload": ("twine", ["Uploading distributions to https://upload.pypi.org/legacy/", f"Uploading {repo.replace('-', '_')}-{rng.randint(0, 3)}.{rng.randint(0, 9)}.0-py3-none-any.whl", "100% ━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━ 23.1/23.1 kB • 00:00 • ?", "WARNING  Error during upload. Retry with the --verbose option for more details.", "ERROR    HTTPError: 403 Forbidden from https://upload.pypi.org/legacy/", "         Invalid or non-existent authentication information. See https://pypi.org/help/#invalid-auth for more information."]),
        "codecov": ("codecov", ["[2024-05-02T10:11:12.123Z] ['error'] There was an error running the uploader: Error uploading to https://codecov.io: Error: There was an error fetching the storage URL during POST: 401 - {\"message\":\"Token required because branch is protected\"}"]),
        "terraform": ("terraform", ["╷", "│ Error: error configuring Terraform AWS Provider: failed to get shared config profile, default", "│", "│ Error: Retrieving AWS account details: validating provider credentials: retrieving caller identity from STS: operation error STS: GetCallerIdentity, https response error StatusCode: 403, RequestID: " + f"{rng.getrandbits(128):032x}" + ", api error InvalidClientTokenId: The security token included in the request is invalid.", "╵"]),
        "kubectl": ("kubectl", ["error: You must be logged in to the server (Unauthorized)"] if rng.random() < 0.5 else [f"Error from server (Forbidden): deployments.apps \"{repo}\" is forbidden: User \"system:serviceaccount:ci:deployer\" cannot patch resource \"deployments\" in API group \"apps\" in the namespace \"{org}\""]),
        "sso": ("git", [f"remote: The '{org}' organization has enabled or enforced SAML SSO.", "remote: To access this repository, you must use the HTTPS remote with a personal access token or SSH with an SSH key and passphrase", "remote: that has been authorized for this organization. Visit https://docs.github.com/articles/authenticating-to-a-github-organization-with-saml-single-sign-on/ for more information.", f"fatal: unable to access 'https://github.com/{org}/{repo}.git/': The requested URL returned error: 403"]),
        "gh_cli": ("gh", ["To get started with GitHub CLI, please run:  gh auth login", "Alternatively, populate the GH_TOKEN environment variable with a GitHub API authentication token."]),
        "expired_token": ("npm", ["npm error code E401", f"npm error 401 Unauthorized - GET https://npm.pkg.github.com/@{org}%2f{repo} - authentication token not provided" if rng.random() < 0.5 else "npm error Unable to authenticate, your authentication token seems to be invalid."]),
    }[kind]
    tool, lines = b
    cmd = {"publickey": f"git clone git@github.com:{org}/{repo}.git", "push_403": "git push origin HEAD:main", "npm_publish": "npm publish --access public", "pypi_upload": "twine upload dist/*", "ghcr_denied": f"docker pull ghcr.io/{org}/{repo}:latest", "kubectl": f"kubectl -n {org} set image deployment/{repo} app=ghcr.io/{org}/{repo}:sha", "terraform": "terraform plan -input=false", "gcloud": f"gcloud run deploy {repo} --image gcr.io/{org}/{repo}", "sso": f"git clone https://github.com/{org}/{repo}.git"}.get(kind, "npm ci" if kind == "expired_token" else "")
    eco = {"npm_publish": "node", "expired_token": "node", "pypi_upload": "python", "ghcr_denied": "docker"}.get(kind, "ci")
    cap = _cap(eco, tool, "access", f"access_{kind}", cmd, "\n".join(lines))
    # A refusal printed by a step that runs some other command borrows that command from the
    # captures, of any label; a GitHub Actions annotation only appears in GitHub Actions.
    cap.extra = {"borrow_command": not cmd}
    if any(line.startswith("##[error]") for line in lines) or kind == "integration":
        cap.extra["ci"] = "gha"
    return cap


# ---------------------------------------------------------------- security scanners

_NPM_ADV = [("lodash", "<=4.17.20", "high", "Command Injection in lodash", "GHSA-35jh-r3h4-6jhm"), ("lodash", "<4.17.19", "high", "Prototype Pollution in lodash", "GHSA-p6mc-m468-83gw"), ("minimist", "<0.2.4", "critical", "Prototype Pollution in minimist", "GHSA-xvch-5gv4-984h"),
            ("axios", "0.8.1 - 1.5.1", "moderate", "Axios Cross-Site Request Forgery Vulnerability", "GHSA-wf5p-g6vw-rhxx"), ("node-fetch", "<2.6.7", "high", "node-fetch forwards secure headers to untrusted sites", "GHSA-r683-j2x4-v87g"), ("semver", "<5.7.2", "high", "semver vulnerable to Regular Expression Denial of Service", "GHSA-c2qf-rxjj-qqgw"),
            ("word-wrap", "<1.2.4", "moderate", "word-wrap vulnerable to Regular Expression Denial of Service", "GHSA-j8xg-fqg3-53r7"), ("json5", "<1.0.2", "high", "Prototype Pollution in JSON5 via Parse Method", "GHSA-9c47-m6qq-7p4h"), ("tough-cookie", "<4.1.3", "moderate", "tough-cookie Prototype Pollution vulnerability", "GHSA-72xf-g2v4-qvf3"),
            ("follow-redirects", "<=1.15.5", "moderate", "follow-redirects' Proxy-Authorization header kept across hosts", "GHSA-cxjh-pqwp-8mfp"), ("express", "<4.19.2", "moderate", "Express.js Open Redirect in malformed URLs", "GHSA-rv95-896h-c2vc"), ("ws", "8.0.0 - 8.17.0", "high", "ws affected by a DoS when handling a request with many HTTP headers", "GHSA-3h5v-q93c-6h6q"),
            ("braces", "<3.0.3", "high", "Uncontrolled resource consumption in braces", "GHSA-grv7-fg5c-xmjg"), ("micromatch", "<4.0.8", "moderate", "Regular Expression Denial of Service (ReDoS) in micromatch", "GHSA-952p-6rrq-rcjv"), ("ip", "*", "high", "ip SSRF improper categorization in isPublic", "GHSA-2p57-rm9w-gvfp"),
            ("tar", "<6.2.1", "moderate", "Denial of service while parsing a tar file due to lack of folders count validation", "GHSA-f5x3-32g6-xq36"), ("postcss", "<8.4.31", "moderate", "PostCSS line return parsing error", "GHSA-7fh5-64p2-3v2j"), ("ejs", "<3.1.10", "moderate", "ejs lacks certain pollution protection", "GHSA-ghr5-ch3p-vcr6"),
            ("cross-spawn", "<7.0.5", "high", "Regular Expression Denial of Service (ReDoS) in cross-spawn", "GHSA-3xgq-45jj-v275"), ("path-to-regexp", "<0.1.10", "high", "path-to-regexp outputs backtracking regular expressions", "GHSA-9wv6-86v2-598j")]
_PY_ADV = [("requests", "2.31.0", "GHSA-9wx4-h78v-vm56", "2.32.0"), ("requests", "2.28.2", "GHSA-j8r2-6x86-q33q", "2.31.0"), ("urllib3", "1.26.17", "GHSA-34jh-p97f-mpxf", "1.26.19,2.2.2"), ("jinja2", "3.1.2", "GHSA-h5c8-rqwp-cp95", "3.1.3"), ("jinja2", "3.1.3", "GHSA-h75v-3vvj-5mfj", "3.1.4"),
           ("pyyaml", "5.3.1", "GHSA-8q59-q68h-6hv4", "5.4"), ("werkzeug", "2.3.7", "GHSA-hrfv-mqp8-q5rw", "2.3.8,3.0.1"), ("werkzeug", "3.0.2", "GHSA-2g68-c3qc-8985", "3.0.3"), ("cryptography", "41.0.7", "GHSA-3ww4-gg4f-jr7f", "42.0.0"), ("cryptography", "42.0.3", "GHSA-6vqw-3v5j-54x4", "42.0.4"),
           ("pillow", "10.1.0", "GHSA-3f63-hfp8-52jq", "10.2.0"), ("setuptools", "65.5.0", "GHSA-r9hx-vwmv-q579", "65.5.1"), ("setuptools", "69.5.1", "GHSA-cx63-2mw6-8hw5", "70.0.0"), ("certifi", "2023.5.7", "GHSA-xqr8-7jwr-rhp7", "2023.7.22"), ("idna", "3.6", "GHSA-jjg7-2v4v-x38h", "3.7"),
           ("aiohttp", "3.9.1", "GHSA-5h86-8mv2-jq9f", "3.9.2"), ("gunicorn", "21.2.0", "GHSA-w3h3-4rj7-4ph4", "22.0.0"), ("paramiko", "3.3.1", "GHSA-45x7-px36-x8w8", "3.4.0"), ("django", "4.2.2", "GHSA-jh3w-4vvf-mjgr", "4.2.3"), ("sqlparse", "0.4.3", "GHSA-rrm6-wvj7-cwh2", "0.4.4")]
_RUST_ADV = [("time", "0.1.45", "RUSTSEC-2020-0071", "Potential segfault in the time crate", ">=0.2.23"), ("rsa", "0.9.6", "RUSTSEC-2023-0071", "Marvin Attack: potential key recovery through timing sidechannels", "No fixed upgrade is available!"),
             ("h2", "0.3.24", "RUSTSEC-2024-0332", "Degradation of service in h2 servers with CONTINUATION Flood", ">=0.3.26"), ("chrono", "0.4.19", "RUSTSEC-2020-0159", "Potential segfault in `localtime_r` invocations", ">=0.4.20"), ("tokio", "1.8.0", "RUSTSEC-2021-0124", "Data race when sending and receiving after closing a `oneshot` channel", ">=1.8.4, <1.9.0 OR >=1.13.1"),
             ("tungstenite", "0.18.0", "RUSTSEC-2023-0065", "Tungstenite allows remote attackers to cause a denial of service", ">=0.20.1"), ("h2", "0.3.16", "RUSTSEC-2023-0034", "Resource exhaustion vulnerability in h2 may lead to Denial of Service (DoS)", ">=0.3.17"), ("openssl", "0.10.55", "RUSTSEC-2023-0072", "`openssl` `X509StoreRef::objects` is unsound", ">=0.10.60")]
_GO_ADV = [("GO-2024-2687", "HTTP/2 CONTINUATION flood in net/http", "golang.org/x/net", "v0.17.0", "v0.23.0"), ("GO-2023-2102", "HTTP/2 rapid reset can cause excessive work in net/http", "golang.org/x/net", "v0.15.0", "v0.17.0"),
           ("GO-2024-2611", "Infinite loop in JSON unmarshaling in google.golang.org/protobuf", "google.golang.org/protobuf", "v1.31.0", "v1.33.0"), ("GO-2023-2153", "Denial of service from HTTP/2 Rapid Reset in google.golang.org/grpc", "google.golang.org/grpc", "v1.56.2", "v1.56.3"),
           ("GO-2024-2887", "Unexpected behavior from Is methods for IPv4-mapped IPv6 addresses in net/netip", "stdlib", "go1.22.3", "go1.22.4"), ("GO-2024-2963", "Denial of service due to improper 100-continue handling in net/http", "stdlib", "go1.22.4", "go1.22.5")]
_OS_CVE = [("openssl", "3.0.13-1~deb12u1", "CVE-2024-5535", "LOW", "3.0.14-1~deb12u1", "openssl: SSL_select_next_proto buffer overread"), ("libc6", "2.36-9+deb12u3", "CVE-2023-4911", "HIGH", "2.36-9+deb12u4", "glibc: buffer overflow in ld.so leading to privilege escalation"),
           ("zlib1g", "1:1.2.13.dfsg-1", "CVE-2023-45853", "CRITICAL", "", "zlib: integer overflow and resultant heap-based buffer overflow in zipOpenNewFileInZip4_6"), ("curl", "7.88.1-10+deb12u4", "CVE-2023-38545", "HIGH", "7.88.1-10+deb12u5", "curl: heap based buffer overflow in the SOCKS5 proxy handshake"),
           ("libexpat1", "2.5.0-1", "CVE-2024-45491", "CRITICAL", "2.5.0-1+deb12u1", "libexpat: Integer Overflow or Wraparound"), ("liblzma5", "5.6.0-0.2", "CVE-2024-3094", "CRITICAL", "5.6.1+really5.4.5-1", "xz: malicious code in distributed source"),
           ("libssl3", "3.0.11-1~deb12u2", "CVE-2023-5678", "MEDIUM", "3.0.13-1~deb12u1", "openssl: Generating excessively long X9.42 DH keys or checking excessively long X9.42 DH keys or parameters may be very slow"), ("busybox", "1.36.1-r15", "CVE-2023-42366", "MEDIUM", "1.36.1-r16", "busybox: A heap-buffer-overflow")]
WONT_FIX = "(won't fix)"
CHECKSTYLE_MSGS = ['MissingJavadocMethod: Missing a Javadoc comment.', 'UnusedImports: Unused import - java.util.List.', 'AvoidStarImport: Using the .* form of import should be avoided - java.util.*.', 'WhitespaceAround: \'{\' is not preceded with whitespace.', 'LineLength: Line is longer than 100 characters (found 123).', 'NeedBraces: \'if\' construct must use \'{}\'s.', 'MemberName: Member name \'m_count\' must match pattern \'^[a-z][a-zA-Z0-9]*$\'.', 'FinalParameters: Parameter id should be final.', 'MagicNumber: \'42\' is a magic number.']
_JAVA_ADV = [("org.apache.logging.log4j:log4j-core", "2.14.1", "CVE-2021-44228", 10.0), ("com.fasterxml.jackson.core:jackson-databind", "2.13.1", "CVE-2020-36518", 7.5), ("org.yaml:snakeyaml", "1.33", "CVE-2022-1471", 9.8), ("org.apache.commons:commons-text", "1.9", "CVE-2022-42889", 9.8), ("io.netty:netty-codec-http2", "4.1.94.Final", "CVE-2023-44487", 7.5), ("org.springframework:spring-web", "5.3.20", "CVE-2016-1000027", 9.8)]
_RUBY_ADV = [("rack", "2.2.3", "CVE-2022-30123", "GHSA-wq4h-7r42-5hrr", "Critical", "Possible shell escape sequence injection vulnerability in Rack", "'~> 2.0.9.1', '~> 2.1.4.1', '>= 2.2.3.1'"), ("nokogiri", "1.13.3", "CVE-2022-24836", "GHSA-crjr-9rc5-ghw8", "High", "Inefficient Regular Expression Complexity in Nokogiri", "'>= 1.13.4'"),
             ("actionpack", "7.0.4", "CVE-2023-22795", "GHSA-8xww-x3g3-6jcv", "High", "ReDoS based DoS vulnerability in Action Dispatch", "'~> 6.1.7, >= 6.1.7.1', '>= 7.0.4.1'"), ("puma", "6.4.1", "CVE-2024-21647", "GHSA-c2f4-cvqm-65w2", "Medium", "Puma HTTP Request/Response Smuggling vulnerability", "'~> 5.6.8', '>= 6.4.2'")]


def security_exemplar(rng: random.Random) -> Capture:
    kind = rng.choice(["npm_audit", "npm_audit", "yarn_audit", "pip_audit", "cargo_audit", "govulncheck", "bundler_audit", "trivy", "trivy", "grype", "gitleaks", "trufflehog", "owasp", "nuget_vuln", "codeql", "snyk", "osv"])
    if kind in ("npm_audit", "yarn_audit", "snyk"):
        advs = rng.sample(_NPM_ADV, rng.randint(1, 4))
        if kind == "npm_audit":
            lines = ["# npm audit report", ""]
            for name, rngv, sev, title, ghsa in advs:
                lines += [f"{name}  {rngv}", f"Severity: {sev}", f"{title} - https://github.com/advisories/{ghsa}", rng.choice(["fix available via `npm audit fix`", "fix available via `npm audit fix --force`", "No fix available"]), f"node_modules/{name}"]
                if rng.random() < 0.4:
                    dep = rng.choice(["webpack-dev-server", "jest-config", "eslint", "@babel/core", "react-scripts"])
                    lines += [f"  {dep}  *", f"  Depends on vulnerable versions of {name}", f"  node_modules/{dep}"]
                lines.append("")
            sevs = [a[2] for a in advs]
            parts = [f"{sevs.count(s)} {s}" for s in ("low", "moderate", "high", "critical") if sevs.count(s)]
            lines += [f"{len(advs)} {'vulnerability' if len(advs) == 1 else 'vulnerabilities'} ({', '.join(parts)})", "", "To address all issues, run:", "  npm audit fix"]
            cmd = rng.choice(["npm audit --audit-level=high", "npm audit --omit=dev", "npm audit"])
        elif kind == "yarn_audit":
            lines = []
            for name, rngv, sev, title, ghsa in advs:
                lines += ["┌───────────────┬──────────────────────────────────────────────────────────────┐", f"│ {sev:<13} │ {title[:60]:<60} │", "├───────────────┼──────────────────────────────────────────────────────────────┤", f"│ Package       │ {name:<60} │", f"│ Patched in    │ {'>' + rngv.lstrip('<=') :<60} │", f"│ More info     │ https://www.npmjs.com/advisories/{rng.randint(1000000, 1100000):<27} │", "└───────────────┴──────────────────────────────────────────────────────────────┘"]
            lines += [f"{len(advs)} vulnerabilities found - Packages audited: {rng.randint(300, 2000)}", f"Severity: {', '.join(sorted({a[2].title() for a in advs}))}", f"Done in {rng.randint(1, 9)}.{rng.randint(10, 99)}s."]
            cmd = "yarn audit --level high"
        else:
            lines = ["Testing /home/runner/work/app/app...", ""]
            for name, rngv, sev, title, ghsa in advs:
                lines += [f"✗ {sev.title()} severity vulnerability found in {name}", f"  Description: {title}", f"  Info: https://security.snyk.io/vuln/SNYK-JS-{name.upper().replace('-', '')}-{rng.randint(1000000, 7999999)}", f"  Introduced through: app@1.0.0 > {name}@{rngv.lstrip('<=>*')}", f"  From: app@1.0.0 > {name}@{rngv.lstrip('<=>*')}", ""]
            lines += [f"Tested {rng.randint(100, 900)} dependencies for known issues, found {len(advs)} issues, {len(advs)} vulnerable paths."]
            cmd = "snyk test --severity-threshold=high"
        return _cap("node", kind.split("_")[0] + (" audit" if "audit" in kind else ""), "security", kind, cmd, "\n".join(lines))
    if kind == "pip_audit":
        advs = rng.sample(_PY_ADV, rng.randint(1, 4))
        w = max(len(a[0]) for a in advs)
        lines = [f"Found {len(advs)} known {'vulnerability' if len(advs) == 1 else 'vulnerabilities'} in {len({a[0] for a in advs})} {'package' if len({a[0] for a in advs}) == 1 else 'packages'}", f"{'Name':<{w}} Version ID                  Fix Versions", f"{'-' * w} ------- ------------------- ------------"] + [f"{n:<{w}} {v:<7} {i:<19} {f}" for n, v, i, f in advs]
        return _cap("python", "pip-audit", "security", kind, rng.choice(["pip-audit -r requirements.txt", "pip-audit --strict", "pipx run pip-audit"]), "\n".join(lines))
    if kind == "cargo_audit":
        advs = rng.sample(_RUST_ADV, rng.randint(1, 3))
        lines = ["    Fetching advisory database from `https://github.com/RustSec/advisory-db.git`", f"      Loaded {rng.randint(550, 700)} security advisories (from /home/runner/.cargo/advisory-db)", "    Updating crates.io index", f"    Scanning Cargo.lock for vulnerabilities ({rng.randint(80, 400)} crate dependencies)"]
        for c, v, i, t, s in advs:
            lines += [f"Crate:     {c}", f"Version:   {v}", f"Title:     {t}", f"Date:      20{rng.randint(20, 24)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}", f"ID:        {i}", f"URL:       https://rustsec.org/advisories/{i}", f"Solution:  {'Upgrade to ' + s if s[0] in '>' else s}", "Dependency tree:", f"{c} {v}", f"└── {noun(rng)}-{rng.choice(['server', 'core', 'client'])} 0.{rng.randint(1, 9)}.0", ""]
        lines.append(f"error: {len(advs)} {'vulnerability' if len(advs) == 1 else 'vulnerabilities'} found!")
        return _cap("rust", "cargo audit", "security", kind, "cargo audit", "\n".join(lines))
    if kind == "govulncheck":
        advs = rng.sample(_GO_ADV, rng.randint(1, 3))
        lines = ["Scanning your code and 312 packages across 41 dependent modules for known vulnerabilities...", ""]
        for k, (i, t, mod, found, fixed) in enumerate(advs, 1):
            lines += [f"Vulnerability #{k}: {i}", f"    {t}", f"  More info: https://pkg.go.dev/vuln/{i}", f"  {'Standard library' if mod == 'stdlib' else 'Module: ' + mod}", f"    Found in: {mod if mod != 'stdlib' else 'net/http'}@{found}", f"    Fixed in: {mod if mod != 'stdlib' else 'net/http'}@{fixed}", "    Example traces found:", f"      #1: internal/{noun(rng)}/{noun(rng)}.go:{rng.randint(10, 300)}:{rng.randint(2, 30)}: {noun(rng)}.{pascal(snake(rng, 2))} calls http.ListenAndServe", ""]
        lines.append(f"Your code is affected by {len(advs)} {'vulnerability' if len(advs) == 1 else 'vulnerabilities'} from {len({a[2] for a in advs})} {'module' if len({a[2] for a in advs}) == 1 else 'modules'}.")
        lines.append("This scan found no other vulnerabilities in packages you import or modules you require.")
        return _cap("go", "govulncheck", "security", kind, "govulncheck ./...", "\n".join(lines), 3)
    if kind == "bundler_audit":
        advs = rng.sample(_RUBY_ADV, rng.randint(1, 3))
        lines = ["Updating ruby-advisory-db ...", "From https://github.com/rubysec/ruby-advisory-db", " * branch            master     -> FETCH_HEAD", "Already up to date.", "ruby-advisory-db:", f"  advisories:\t{rng.randint(900, 1100)} advisories", ""]
        for n, v, cve, ghsa, crit, t, sol in advs:
            lines += [f"Name: {n}", f"Version: {v}", f"CVE: {cve}", f"GHSA: {ghsa}", f"Criticality: {crit}", f"URL: https://github.com/advisories/{ghsa}", f"Title: {t}", f"Solution: upgrade to {sol}", ""]
        lines.append("Vulnerabilities found!")
        return _cap("ruby", "bundler-audit", "security", kind, "bundle exec bundle-audit check --update", "\n".join(lines))
    if kind in ("trivy", "grype"):
        cves = rng.sample(_OS_CVE, rng.randint(1, 4))
        img = f"ghcr.io/{noun(rng)}/{noun(rng)}:{rng.getrandbits(28):07x}"
        if kind == "trivy":
            counts = {s: sum(1 for c in cves if c[3] == s) for s in ("UNKNOWN", "LOW", "MEDIUM", "HIGH", "CRITICAL")}
            lines = [f"{img} (debian 12.5)", "=" * 40, f"Total: {len(cves)} ({', '.join(f'{k}: {v}' for k, v in counts.items())})", "", "┌──────────────┬────────────────┬──────────┬──────────┬───────────────────┬──────────────────┬──────────────────────────────────────────────────────────┐", "│   Library    │ Vulnerability  │ Severity │  Status  │ Installed Version │  Fixed Version   │                          Title                           │", "├──────────────┼────────────────┼──────────┼──────────┼───────────────────┼──────────────────┼──────────────────────────────────────────────────────────┤"]
            for p, v, c, s, f, t in cves:
                lines += [f"│ {p:<12} │ {c:<14} │ {s:<8} │ {'fixed' if f else 'affected':<8} │ {v:<17} │ {f:<16} │ {t[:56]:<56} │", f"│              │                │          │          │                   │                  │ https://avd.aquasec.com/nvd/{c.lower():<28} │"]
            lines.append("└──────────────┴────────────────┴──────────┴──────────┴───────────────────┴──────────────────┴──────────────────────────────────────────────────────────┘")
            cmd = rng.choice([f"trivy image --exit-code 1 --severity HIGH,CRITICAL {img}", "trivy fs --exit-code 1 --scanners vuln ."])
        else:
            lines = [" ✔ Vulnerability DB                [no update available]", f" ✔ Loaded image                     {img}", f" ✔ Cataloged contents               {rng.getrandbits(64):016x}", f"   ├── ✔ Packages                        [{rng.randint(80, 400)} packages]", f" ✔ Scanned for vulnerabilities     [{len(cves)} vulnerability matches]", "NAME          INSTALLED            FIXED-IN             TYPE  VULNERABILITY   SEVERITY"]
            lines += [f"{p:<13} {v:<20} {f or WONT_FIX:<20} deb   {c:<15} {s.title()}" for p, v, c, s, f, t in cves]
            lines.append("[0000] ERROR discovered vulnerabilities at or above the severity threshold")
            cmd = f"grype {img} --fail-on high"
        return _cap("docker", kind, "security", kind, cmd, "\n".join(lines))
    if kind in ("gitleaks", "trufflehog"):
        rule = rng.choice([("aws-access-token", "AWS"), ("github-pat", "Github"), ("generic-api-key", "Generic"), ("slack-webhook-url", "Slack"), ("private-key", "PrivateKey"), ("stripe-access-token", "Stripe")])
        f = rng.choice(["config/settings.py", ".env.production", f"src/{noun(rng)}/client.ts", "deploy/values.yaml", "scripts/deploy.sh"])
        if kind == "gitleaks":
            lines = ["", "    ○", "    │╲", "    │ ○", "    ○ ░", "    ░    gitleaks", "", f"Finding:     {rng.choice(['aws_access_key_id', 'token', 'SLACK_WEBHOOK', 'api_key'])} = REDACTED", "Secret:      REDACTED", f"RuleID:      {rule[0]}", f"Entropy:     {rng.uniform(3, 5):.6f}", f"File:        {f}", f"Line:        {rng.randint(1, 200)}", f"Commit:      {rng.getrandbits(160):040x}", f"Author:      {noun(rng)}", f"Email:       {noun(rng)}@example.com", f"Date:        2024-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}T10:{rng.randint(10, 59)}:00Z", f"Fingerprint: {rng.getrandbits(160):040x}:{f}:{rule[0]}:{rng.randint(1, 200)}", "", f"{rng.randint(1, 11)}:{rng.randint(10, 59)}AM INF {rng.randint(1, 300)} commits scanned.", f"{rng.randint(1, 11)}:{rng.randint(10, 59)}AM INF scan completed in {rng.randint(100, 900)}ms", f"{rng.randint(1, 11)}:{rng.randint(10, 59)}AM WRN leaks found: {rng.randint(1, 4)}"]
            cmd = rng.choice(["gitleaks detect --source . -v", "gitleaks git -v --redact"])
        else:
            lines = ["🐷🔑🐷  TruffleHog. Unearth your secrets. 🐷🔑🐷", "", "✅ Found verified result 🐷🔑", f"Detector Type: {rule[1]}", "Decoder Type: PLAIN", "Raw result: REDACTED", f"Commit: {rng.getrandbits(160):040x}", f"Email: {noun(rng)} <{noun(rng)}@example.com>", f"File: {f}", f"Line: {rng.randint(1, 200)}", "Repository: https://github.com/acme/app.git", f"Timestamp: 2024-0{rng.randint(1, 9)}-1{rng.randint(0, 9)} 10:{rng.randint(10, 59)}:00 +0000", ""]
            cmd = "trufflehog git file://. --only-verified --fail"
        return _cap("ci", kind, "security", kind, cmd, "\n".join(lines))
    if kind == "owasp":
        advs = rng.sample(_JAVA_ADV, rng.randint(1, 3))
        lines = ["[INFO] Checking for updates", "[INFO] Skipping the NVD API Update as it was completed within the last 240 minutes", "[INFO] Analysis Started", f"[INFO] Finished Archive Analyzer ({rng.randint(1, 9)} seconds)", "[INFO] Analysis Complete (12 seconds)", "[WARNING] ", "", "One or more dependencies were identified with known vulnerabilities in " + noun(rng) + ":", ""]
        lines += [f"{a.split(':')[1]}-{v}.jar (pkg:maven/{a.replace(':', '/')}@{v}, cpe:2.3:a:apache:{a.split(':')[1]}:{v}:*:*:*:*:*:*:*) : {c}" for a, v, c, s in advs]
        lines += ["", "See the dependency-check report for more details.", "", "[INFO] BUILD FAILURE", f"[ERROR] Failed to execute goal org.owasp:dependency-check-maven:9.2.0:check (default) on project {noun(rng)}: ", "[ERROR] ", "[ERROR] One or more dependencies were identified with vulnerabilities that have a CVSS score greater than or equal to '7.0': ", "[ERROR] "] + [f"[ERROR] {a.split(':')[1]}-{v}.jar: {c}({s})" for a, v, c, s in advs] + ["[ERROR] -> [Help 1]"] + _maven_tail()
        return _cap("java", "dependency-check", "security", kind, "mvn -B org.owasp:dependency-check-maven:check -DfailBuildOnCVSS=7", "\n".join(lines))
    if kind == "nuget_vuln":
        advs = rng.sample(_NUGET_ADV, rng.randint(1, 3))
        lines = ["", "The following sources were used:", "   https://api.nuget.org/v3/index.json", "", f"Project `{pascal(snake(rng, 2))}` has the following vulnerable packages", "   [net8.0]: ", "   Top-level Package              Requested   Resolved   Severity   Advisory URL                                     "]
        lines += [f"   > {p:<28} {v:<11} {v:<10} High       https://github.com/advisories/{g}" for p, v, g in advs]
        return _cap("dotnet", "dotnet list package", "security", kind, "dotnet list package --vulnerable --include-transitive 2>&1 | tee vuln.txt; ! grep -q -i 'has the following vulnerable packages' vuln.txt", "\n".join(lines))
    if kind == "codeql":
        n = rng.randint(1, 6)
        lines = [f"Code scanning results / CodeQL: {n} new alert{'s' if n > 1 else ''} including {rng.randint(1, n)} high severity security vulnerabilit{'ies' if n > 1 else 'y'}", ""] + [f"{rng.choice(['Uncontrolled data used in path expression', 'Database query built from user-controlled sources', 'Reflected cross-site scripting', 'Incomplete URL substring sanitization', 'Use of a broken or weak cryptographic algorithm', 'Server-side request forgery', 'Clear-text logging of sensitive information'])} — src/{noun(rng)}/{noun(rng)}.{rng.choice(['py', 'ts', 'java', 'go'])}:{rng.randint(5, 400)}" for _ in range(n)]
        return _cap("ci", "codeql", "security", kind, "github/codeql-action/analyze@v3", "\n".join(lines))
    advs = rng.sample(_PY_ADV, rng.randint(1, 3))
    lines = ["Scanning dir .", f"Scanned {_ws(rng)}/requirements.txt file and found {rng.randint(10, 60)} packages", "╭─────────────────────────────────────┬──────┬───────────┬──────────────┬──────────────┬─────────────────┬───────────────────────────────╮", "│ OSV URL                             │ CVSS │ ECOSYSTEM │ PACKAGE      │ VERSION      │ FIXED VERSION   │ SOURCE                        │", "├─────────────────────────────────────┼──────┼───────────┼──────────────┼──────────────┼─────────────────┼───────────────────────────────┤"]
    lines += [f"│ https://osv.dev/{i:<20} │ {rng.uniform(4, 9.8):.1f}  │ PyPI      │ {n:<12} │ {v:<12} │ {f.split(',')[0]:<15} │ requirements.txt              │" for n, v, i, f in advs]
    lines.append("╰─────────────────────────────────────┴──────┴───────────┴──────────────┴──────────────┴─────────────────┴───────────────────────────────╯")
    return _cap("python", "osv-scanner", "security", kind, "osv-scanner -r .", "\n".join(lines))


# ---------------------------------------------------------------- linters not installable here

def lint_exemplar(rng: random.Random) -> Capture:
    kind = rng.choice(["golangci", "golangci", "golangci", "checkstyle", "spotless", "ktlint", "pmd", "staticcheck", "pyright", "stylelint"])
    if kind in ("golangci", "staticcheck"):
        pk = noun(rng)
        issues = rng.sample([
            ("errcheck", "Error return value of `{x}.Close` is not checked"), ("errcheck", "Error return value of `w.Write` is not checked"), ("ineffassign", "ineffectual assignment to err"), ("staticcheck", "SA1019: ioutil.ReadAll has been deprecated since Go 1.19: As of Go 1.16, this function simply calls io.ReadAll."),
            ("staticcheck", "SA4006: this value of `{x}` is never used"), ("unused", "func `{f}` is unused"), ("gosimple", "S1002: should omit comparison to bool constant, can be simplified to `ok`"), ("govet", "printf: fmt.Sprintf format %d has arg {x} of wrong type string"),
            ("revive", "exported: exported function {F} should have comment or be unexported"), ("gocritic", "ifElseChain: rewrite if-else to switch statement"), ("misspell", "`recieve` is a misspelling of `receive`"), ("gofmt", "File is not `gofmt`-ed with `-s`"),
            ("bodyclose", "response body must be closed"), ("gosec", "G404: Use of weak random number generator (math/rand instead of crypto/rand)"), ("goimports", "File is not `goimports`-ed with -local github.com/acme"), ("dupl", "lines 12-40 are duplicate of `internal/x/y.go:50-78`")], rng.randint(1, 5))
        lines = []
        for linter, msg in issues:
            if kind == "staticcheck" and linter not in ("staticcheck", "gosimple", "unused"):
                continue
            f = snake(rng, 2)
            msg = msg.replace("{x}", camel(f)).replace("{f}", camel(snake(rng, 2))).replace("{F}", pascal(snake(rng, 2)))
            loc = f"internal/{pk}/{noun(rng)}.go:{rng.randint(5, 400)}:{rng.randint(2, 40)}"
            if kind == "golangci":
                lines += [f"{loc}: {msg} ({linter})", f"\t{camel(f)}.{rng.choice(['Close()', 'Write(b)', 'Do(ctx)'])}", "\t^"]
            else:
                lines.append(f"{loc}: {msg.split(': ', 1)[-1] if ':' in msg[:7] else msg} ({msg.split(':')[0] if msg[:2] in ('SA', 'S1', 'U1') else 'U1000'})")
        if not lines:
            lines = [f"internal/{pk}/{noun(rng)}.go:{rng.randint(5, 400)}:{rng.randint(2, 40)}: func `{camel(snake(rng, 2))}` is unused (U1000)"]
        if kind == "golangci":
            lines.append(rng.choice(["", f"{len(issues)} issues:"]))
            lines += [rng.choice(["level=error msg=\"Timeout exceeded: try increasing it by passing --timeout option\"" if False else "", "##[error]issues found"])]
        cmd = "golangci-lint run --timeout 5m" if kind == "golangci" else "staticcheck ./..."
        return _cap("go", "golangci-lint" if kind == "golangci" else "staticcheck", "lint", kind, cmd, "\n".join(x for x in lines if x is not None), 1)
    if kind == "checkstyle":
        pkg = f"com/{noun(rng)}/{noun(rng)}"
        viol = [f"[ERROR] src/main/java/{pkg}/{pascal(snake(rng, 2))}.java:[{rng.randint(3, 300)},{rng.randint(1, 80)}] ({rng.choice(['javadoc', 'imports', 'whitespace', 'naming', 'sizes', 'blocks'])}) {rng.choice(CHECKSTYLE_MSGS)}" for _ in range(rng.randint(1, 8))]
        lines = ["[INFO] --- maven-checkstyle-plugin:3.3.1:check (validate) @ " + noun(rng) + " ---", "[INFO] There are %d errors reported by Checkstyle 10.12.5 with checkstyle.xml ruleset." % len(viol)] + viol + ["[INFO] ------------------------------------------------------------------------", "[INFO] BUILD FAILURE", "[INFO] ------------------------------------------------------------------------", f"[ERROR] Failed to execute goal org.apache.maven.plugins:maven-checkstyle-plugin:3.3.1:check (validate) on project {noun(rng)}: You have {len(viol)} Checkstyle violation{'s' if len(viol) > 1 else ''}. -> [Help 1]"] + (_maven_tail() if rng.random() < 0.85 else [])
        return _cap("java", "checkstyle", "lint", kind, rng.choice(["mvn -B checkstyle:check", "mvn -B verify"]), "\n".join(lines))
    if kind == "spotless":
        files = [f"src/main/java/com/{noun(rng)}/{pascal(snake(rng, 2))}.java" for _ in range(rng.randint(1, 4))]
        gradle = rng.random() < 0.5
        lines = ["> Task :spotlessJavaCheck FAILED"] if gradle else []
        lines += ["The following files had format violations:"] + sum([[f"    {f}", "        @@ -" + str(rng.randint(1, 90)) + ",7 +" + str(rng.randint(1, 90)) + ",7 @@", f"        -\tpublic\u00a0{pascal(snake(rng, 2))}(){{", f"        +\tpublic {pascal(snake(rng, 2))}() {{"] for f in files], [])
        lines += ["    Run './gradlew :spotlessApply' to fix these violations." if gradle else "  Run 'mvn spotless:apply' to fix these violations."]
        if gradle:
            lines += ["", "FAILURE: Build failed with an exception.", "", "* What went wrong:", "Execution failed for task ':spotlessJavaCheck'.", "> The following files had format violations:"] + [f"      {f}" for f in files] + _gradle_tail(rng)
        else:
            lines += [f"[ERROR] Failed to execute goal com.diffplug.spotless:spotless-maven-plugin:2.43.0:check (default) on project {noun(rng)}: The following files had format violations:"] + [f"[ERROR]     {f}" for f in files] + ["[ERROR] Run 'mvn spotless:apply' to fix these violations.", "[ERROR] -> [Help 1]"] + _maven_tail()
        return _cap("java", "spotless", "lint", kind, "./gradlew spotlessCheck" if gradle else "mvn -B spotless:check", "\n".join(lines))
    if kind == "ktlint":
        lines = [f"src/main/kotlin/com/{noun(rng)}/{pascal(snake(rng, 2))}.kt:{rng.randint(1, 200)}:{rng.randint(1, 80)}: {m}" for m in rng.sample(["Unexpected blank line(s) before \"}\" (standard:no-blank-line-before-rbrace)", "Missing newline before \")\" (standard:parameter-list-wrapping)", "Wildcard import (standard:no-wildcard-imports)", "Exceeded max line length (120) (standard:max-line-length)", "Unnecessary semicolon (standard:no-semi)", "Trailing space(s) (standard:no-trailing-spaces)", "Property name should use the screaming snake case notation when the value can not be changed (standard:property-naming)"], rng.randint(1, 5))]
        lines += ["", "> Task :ktlintMainSourceSetCheck FAILED", "", "FAILURE: Build failed with an exception.", "", "* What went wrong:", "Execution failed for task ':ktlintMainSourceSetCheck'.", "> A failure occurred while executing org.jlleitschuh.gradle.ktlint.worker.ConsoleReportWorkAction", "   > KtLint found code style violations. Please see the following reports:", "     - {WS}/build/reports/ktlint/ktlintMainSourceSetCheck/ktlintMainSourceSetCheck.txt"] + _gradle_tail(rng)
        return _cap("java", "ktlint", "lint", kind, "./gradlew ktlintCheck", "\n".join(lines))
    if kind == "pmd":
        lines = [f"[INFO] PMD Failure: com.{noun(rng)}.{pascal(snake(rng, 2))}:{rng.randint(5, 300)} Rule:{r} Priority:{rng.randint(1, 3)} {m}." for r, m in rng.sample([("UnusedLocalVariable", "Avoid unused local variables such as 'tmp'"), ("EmptyCatchBlock", "Avoid empty catch blocks"), ("UnusedPrivateMethod", "Avoid unused private methods such as 'helper()'"), ("SystemPrintln", "Usage of System.out/err"), ("AvoidReassigningParameters", "Avoid reassigning parameters such as 'id'")], rng.randint(1, 4))]
        lines += ["[INFO] BUILD FAILURE", f"[ERROR] Failed to execute goal org.apache.maven.plugins:maven-pmd-plugin:3.21.2:check (default) on project {noun(rng)}: You have {len(lines)} PMD violation{'s' if len(lines) > 1 else ''}. For more details see: {{WS}}/target/pmd.xml -> [Help 1]"] + _maven_tail()
        return _cap("java", "pmd", "lint", kind, "mvn -B pmd:check", "\n".join(lines))
    if kind == "pyright":
        lines = [f"{{WS}}/src/{noun(rng)}/{noun(rng)}.py", *[f"  {{WS}}/src/{noun(rng)}/{noun(rng)}.py:{rng.randint(3, 300)}:{rng.randint(5, 40)} - error: {m}" for m in rng.sample(['Argument of type "str | None" cannot be assigned to parameter "name" of type "str" in function "load"\n    Type "str | None" is not assignable to type "str"\n      "None" is not assignable to "str" (reportArgumentType)', 'Cannot access attribute "items" for class "object"\n    Attribute "items" is unknown (reportAttributeAccessIssue)', 'Import "yaml" could not be resolved from source (reportMissingModuleSource)', '"result" is possibly unbound (reportPossiblyUnbound)', 'Type "int" is not assignable to return type "str"\n    "int" is not assignable to "str" (reportReturnType)'], rng.randint(1, 4))]]
        lines.append(f"{len(lines) - 1} errors, 0 warnings, 0 informations ")
        return _cap("python", "pyright", "lint", kind, "pyright", "\n".join(lines))
    lines = [f"src/styles/{noun(rng)}.{rng.choice(['css', 'scss'])}", *[f"  {rng.randint(1, 200)}:{rng.randint(1, 40)}  ✖  {m}" for m in rng.sample(["Unexpected duplicate selector \".header\", first used at line 12   no-duplicate-selectors", "Expected \"#FFF\" to be \"#fff\"                                      color-hex-case", "Unexpected unknown property \"colr\"                                property-no-unknown", "Expected a leading zero                                           number-leading-zero", "Unexpected empty block                                            block-no-empty"], rng.randint(1, 4))], "", f"✖ {rng.randint(1, 9)} problems ({rng.randint(1, 9)} errors, 0 warnings)"]
    return _cap("node", "stylelint", "lint", kind, "npx stylelint '**/*.{css,scss}'", "\n".join(lines), 2)


# ---------------------------------------------------------------- unknown

def unknown_exemplar(rng: random.Random) -> Capture:
    """Logs that do not say what failed: cancelled, cut off, a bare exit status, a crash with no
    context. The command is borrowed from the captures of any label; a runner, if one is drawn,
    prints its usual failure lines around nothing."""
    from wrap import PASSING_STEPS, install_noise
    eco = rng.choice(["python", "node", "go", "rust", "java", "ruby", "c", "dotnet"])
    kind = rng.choice(["canceled", "canceled", "silent_exit", "silent_exit", "cut_off", "cut_off", "segv_no_context", "skipped_dependency", "bare_exit", "bare_exit", "preamble_only", "exit_2_script"])
    extra: dict = {"borrow_command": True}
    if kind == "canceled":
        ci, body = rng.choice([("gha", ["##[error]The operation was canceled."]), ("gha", ["Error: The operation was canceled.", "Cleaning up orphan processes"]),
                               ("gha", [f"Canceling since a higher priority waiting request for '{noun(rng)}-refs/heads/main' exists", "##[error]The operation was canceled."]),
                               ("gitlab", ["ERROR: Job failed: canceled"]), ("gitlab", ["WARNING: step_script could not run to completion because the timeout was exceeded. For more control over job and script timeouts see: https://docs.gitlab.com/ee/ci/runners/configure_runners.html#set-script-and-after_script-timeouts", "ERROR: Job failed: canceled"]),
                               ("jenkins", ["Aborted by " + rng.choice(["admin", noun(rng), "timer"]), "Finished: ABORTED"]), ("azure", ["##[error]The operation was canceled.", "Finishing: Job"]),
                               ("circleci", ["Received 'killed' signal", "", "Canceled"]), ("buildkite", ["Received cancellation signal, interrupting", "user command error: context canceled"])])
        body = _started_output(rng) + body
        extra.update(ci=ci, ci_kill=True)
    elif kind == "silent_exit":
        cmd, out = rng.choice(PASSING_STEPS[eco])
        body = out[: rng.randint(0, len(out))]
    elif kind == "cut_off":
        cmd, out = install_noise(eco, rng)
        body = out[: rng.randint(1, max(1, len(out)))]
        extra["cut"] = True
    elif kind == "segv_no_context":
        body = _started_output(rng) + [rng.choice(["Segmentation fault (core dumped)", "Bus error (core dumped)", "Illegal instruction (core dumped)", "Aborted (core dumped)"])]
    elif kind == "skipped_dependency":
        body = [f"The job was not started because its dependency \"{rng.choice(['build', 'setup', 'lint'])}\" failed."] if rng.random() < 0.5 else [f"##[error]The job was canceled because \"{noun(rng)}_{rng.choice(['3_11', 'ubuntu-latest', '20_x'])}\" failed."]
        extra.update(ci="gha", ci_kill=True)
    elif kind in ("bare_exit", "preamble_only"):
        body = []
        if kind == "preamble_only":
            extra["cut"] = True
    else:
        body = [f"==> {rng.choice(['Running checks', 'Preparing release', 'Verifying artifacts'])}", f"{rng.randint(1, 40)} files processed", "done"]
    cap = _cap(eco, "ci", "unknown", f"unknown_{kind}", "", "\n".join(body) if body else "", rng.choice([1, 1, 1, 2, 130, 143]))
    cap.extra = extra
    return cap


MAKERS = {dotnet_build: 150, dotnet_test: 110, dotnet_restore: 130, dotnet_format: 60, dotnet_infra: 25, docker_exemplar: 130, runner_exemplar: 150, access_exemplar: 130, security_exemplar: 220, lint_exemplar: 170, unknown_exemplar: 170}


def main() -> None:
    rng = random.Random(int(sys.argv[1]) if len(sys.argv) > 1 else 1212)
    sink = Sink("exemplars")
    for maker, n in MAKERS.items():
        for _ in range(n):
            sink.add(maker(random.Random(rng.getrandbits(64))))
    sink.close()


if __name__ == "__main__":
    main()
