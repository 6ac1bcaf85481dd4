"""router-policy.yaml -> a typed, validated Policy.

This is the only module that knows the policy schema. Every error names the file, the line and
the field, because an operator fixing a policy at 3 a.m. should not have to guess.
"""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from smallfirst.reasons import HARD_STOP_CATEGORIES

DEFAULT_POLICY_PATH = Path(str(files("smallfirst") / "data" / "policy.yaml"))


class PolicyError(Exception):
    """A policy that cannot be used. Its attributes name the first problem; `errors` holds every
    problem found in the file (a YAML syntax error stops the reading at the first). `str()` reads
    `file:line: field: message`, one line per problem."""

    def __init__(self, file: str, line: int | None, field: str, message: str,
                 more: "list[PolicyError] | None" = None):
        self.file, self.line, self.field, self.message = file, line, field, message
        self.errors: list[PolicyError] = [self, *(more or [])]
        super().__init__("\n".join(e.location for e in self.errors))

    @property
    def location(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"

    @classmethod
    def of(cls, errors: "list[PolicyError]") -> "PolicyError":
        """One error carrying all of `errors`, in file order."""
        unique = list({e.location: e for e in errors}.values())
        unique.sort(key=lambda e: (e.line is None, e.line or 0))
        first = unique[0]
        return cls(first.file, first.line, first.field, first.message, unique[1:])


class _Strict(BaseModel):
    # Unknown keys are errors: a typo such as `min_confidense` must not silently fall back to a
    # default threshold.
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSpec(_Strict):
    provider: Literal["llamacpp", "embedding", "openai_compat", "anthropic"]
    name: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    path: str | None = None  # a model file other than the bundled one (GGUF or safetensors dir)
    sha256: str | None = None  # pin for `path`; the bundled models carry their own pins
    timeout_s: float = Field(30.0, gt=0)
    retries: int = Field(2, ge=0, le=10)
    max_tokens: int = Field(512, gt=0)
    n_ctx: int = Field(2048, ge=256)
    threads: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _server_needs_url(self) -> "ModelSpec":
        if self.provider == "openai_compat" and not self.base_url:
            raise ValueError("provider openai_compat needs base_url (e.g. http://127.0.0.1:11434/v1)")
        if self.provider in ("openai_compat", "anthropic") and not self.name:
            raise ValueError(f"provider {self.provider} needs name (the model id to request)")
        return self

    @property
    def display_name(self) -> str:
        if self.name:
            return self.name
        return {"llamacpp": "gemma-3-270m-q4_k_m", "embedding": "all-MiniLM-L6-v2"}.get(self.provider, self.provider)


class PriceSpec(_Strict):
    input: float | None = Field(None, ge=0)  # USD per million input tokens
    output: float | None = Field(None, ge=0)  # USD per million output tokens
    usd_per_hour: float | None = Field(None, ge=0)  # local machine time


class LearnSpec(_Strict):
    """Learning from escalations (smallfirst.learn): the frontier's label for an escalated input
    is kept as a training example, and `smallfirst learn` trains a candidate head from them."""

    # Keep the input text (masked like the audit preview) beside its embedding, so a later
    # encoder can re-embed it. Off: only the embedding, label and hashes are kept.
    keep_inputs: bool = False
    retention_days: float = Field(90.0, gt=0)  # applies to everything kept, text or not
    every: int | None = Field(None, ge=1)  # the service runs learn after this many new learned examples
    promote: Literal["candidate", "gate"] = "candidate"  # candidate: shadow it first; gate: promote if it passes
    min_examples: int = Field(20, ge=1)  # fewer kept examples than this: no run, "too little data"
    # The 95% Clopper-Pearson upper bound on false accepts among accepted cases that a candidate
    # must meet; its own threshold for the kind of input it learned is chosen by it. 0.05 matches
    # the release gate's 95% accuracy bar: at 0.10 candidates chose thresholds that ran at 91-93%
    # on the held-back slice and failed the gate (bench/learning_curve.py).
    max_false_accept: float = Field(0.05, gt=0, lt=1)


class TaskSpec(_Strict):
    name: str = ""  # filled from the mapping key
    description: str = ""
    local: bool = True
    model: str | None = None
    frontier: str = "frontier_default"
    labels: list[str] = Field(default_factory=list)
    # For the zero-shot embedding classifier: what each label means, in words.
    label_descriptions: dict[str, str] = Field(default_factory=dict)
    min_confidence: float = Field(0.7, ge=0.0, le=1.0)
    escalate_labels: list[str] = Field(default_factory=list)
    max_input_chars: int = Field(12000, gt=0)
    max_output_chars: int = Field(4000, gt=0)
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    head: str | None = None  # trained classifier head (JSON artifact), relative to the policy file
    # Model rotation (smallfirst compare / promote / rollback): a candidate local model that runs
    # beside `model` in shadow mode, its own head, and the model a promote replaced.
    candidate: str | None = None
    candidate_head: str | None = None
    previous_model: str | None = None
    previous_head: str | None = None
    # `smallfirst calibrate` output, relative to the policy file: its calibrator maps the local
    # model's raw score to confidence and its threshold replaces min_confidence.
    calibration: str | None = None
    grounding: bool | None = None  # default: on for tasks without labels or schema (summaries)
    instructions: str | None = None
    timeout_s: float | None = Field(None, gt=0)  # local call timeout; default: the model's
    compress_input: bool | None = None  # default: on for log-like tasks (name contains "log")
    tool_use: Literal["frontier", "local"] | None = None  # a request carrying tools; default: the policy's
    learn: LearnSpec | None = None  # learning from escalations; labelled tasks only

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("labels", "escalate_labels")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("labels must be unique")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "TaskSpec":
        unknown = [lbl for lbl in self.escalate_labels if lbl not in self.labels]
        if unknown:
            raise ValueError(f"escalate_labels {unknown} are not in labels {self.labels}")
        stray = [lbl for lbl in self.label_descriptions if lbl not in self.labels]
        if stray:
            raise ValueError(f"label_descriptions has labels not in labels: {stray}")
        if self.local and not self.model:
            raise ValueError("a task with local: true needs model (a key under models)")
        if self.learn is not None and not self.labels:
            raise ValueError("learn needs labels: a kept example is the frontier's answer parsed as one of them")
        if self.schema_ is not None:
            from jsonschema import Draft202012Validator
            from jsonschema.exceptions import SchemaError

            try:
                Draft202012Validator.check_schema(self.schema_)
            except SchemaError as exc:
                raise ValueError(f"schema is not a valid JSON Schema: {exc.message}") from None
        return self

    @property
    def schema(self) -> dict[str, Any] | None:
        return self.schema_

    @property
    def kind(self) -> Literal["classify", "json", "text"]:
        if self.labels:
            return "classify"
        if self.schema_ is not None:
            return "json"
        return "text"

    @property
    def grounding_on(self) -> bool:
        return self.grounding if self.grounding is not None else self.kind == "text"

    @property
    def compress_on(self) -> bool:
        return self.compress_input if self.compress_input is not None else "log" in self.name


class Rollout(_Strict):
    mode: Literal["live", "shadow"] = "live"
    kill_switch: bool = False
    kill_switch_reason: str | None = None
    # Groups allowed on the local path; '*' means everyone. Others go to the frontier with
    # manual_override, which is how a staged rollout widens group by group.
    local_groups: list[str] = Field(default_factory=lambda: ["*"])
    # Per-task and per-group modes, e.g. one task in shadow while its local model is being proven.
    task_modes: dict[str, Literal["live", "shadow"]] = Field(default_factory=dict)
    group_modes: dict[str, Literal["live", "shadow"]] = Field(default_factory=dict)

    def group_enabled(self, group: str) -> bool:
        return "*" in self.local_groups or group in self.local_groups

    def mode_for(self, task_type: str | None, group: str) -> Literal["live", "shadow"]:
        """The most specific setting wins: the task's, then the group's, then `mode`. A task's
        mode says whether its local model is trusted at all, so it outranks who is asking."""
        if task_type is not None and task_type in self.task_modes:
            return self.task_modes[task_type]
        return self.group_modes.get(group, self.mode)


class GateConfig(_Strict):
    refusal_markers: list[str] = Field(default_factory=list)  # added to the built-in markers


class TelemetrySpec(_Strict):
    """OpenTelemetry export (smallfirst.telemetry). Without otlp_endpoint, the standard
    OTEL_EXPORTER_OTLP_ENDPOINT environment variable decides; with neither, telemetry is off."""

    otlp_endpoint: str | None = None  # e.g. http://collector:4318 (http/protobuf) or collector:4317 (grpc)
    protocol: Literal["http/protobuf", "grpc"] | None = None  # default: OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf
    service_name: str | None = None  # default: OTEL_SERVICE_NAME, else "smallfirst"


class Policy(_Strict):
    version: Literal[1]
    models: dict[str, ModelSpec]
    prices: dict[str, PriceSpec] = Field(default_factory=dict)
    tasks: dict[str, TaskSpec]
    hard_stops: dict[str, list[str]] = Field(default_factory=dict)
    rollout: Rollout = Field(default_factory=Rollout)
    gate: GateConfig = Field(default_factory=GateConfig)
    # A request that carries tool definitions: "frontier" sends it there (policy_requires_frontier),
    # because no bundled model can call tools; "local" routes it as its task says.
    tool_use: Literal["frontier", "local"] = "frontier"
    # sha256 (hex) of a caller's API key -> user group. Hashes, so the policy file holds no keys.
    api_key_groups: dict[str, str] = Field(default_factory=dict)
    telemetry: TelemetrySpec = Field(default_factory=TelemetrySpec)

    # Not part of the file: where it came from, for relative paths and the audit's policy_version.
    source: str = Field("<memory>", exclude=True)
    digest: str = Field("", exclude=True)

    @field_validator("hard_stops")
    @classmethod
    def _known_categories(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        bad = [k for k in v if k not in HARD_STOP_CATEGORIES]
        if bad:
            raise ValueError(f"unknown hard-stop categories {bad}; use {list(HARD_STOP_CATEGORIES)}")
        return v

    @field_validator("api_key_groups")
    @classmethod
    def _key_hashes(cls, v: dict[str, str]) -> dict[str, str]:
        for digest, group in v.items():
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                # The value is not quoted back: it may be the raw key this check exists to refuse,
                # and the message goes to logs, the admin API's answer and admin_events.
                raise ValueError(
                    f"a key of {len(digest)} characters is not a sha256 hex digest (64 lowercase hex characters); "
                    "store the hash of a key, not the key: printf %s \"$KEY\" | sha256sum"
                )
            if not group.strip():
                raise ValueError(f"key hash {digest[:12]}... maps to an empty group")
        return v

    def group_for_api_key(self, key: str) -> str | None:
        if not self.api_key_groups or not key:
            return None
        import hashlib

        return self.api_key_groups.get(hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest())

    @model_validator(mode="before")
    @classmethod
    def _name_tasks(cls, data: Any) -> Any:
        tasks = data.get("tasks") if isinstance(data, dict) else None
        if isinstance(tasks, dict):
            data = {**data, "tasks": {k: ({**v, "name": k} if isinstance(v, dict) else v) for k, v in tasks.items()}}
        return data

    @property
    def version_tag(self) -> str:
        """What the audit records as policy_version: the schema version and a content hash."""
        return f"v{self.version}:{self.digest[:12]}"

    def base_dir(self) -> Path:
        return Path(self.source).parent if self.source != "<memory>" else Path.cwd()

    def resolve_path(self, p: str) -> Path:
        path = Path(p)
        return path if path.is_absolute() else self.base_dir() / path

    def frontier_spec(self, task: TaskSpec | None) -> tuple[str, ModelSpec] | None:
        key = task.frontier if task else "frontier_default"
        spec = self.models.get(key)
        return (key, spec) if spec else None


# ---------------------------------------------------------------- loading with line numbers


def load_policy(path: str | Path | None = None) -> Policy:
    """Read and validate a policy file; the bundled default when `path` is None."""
    p = Path(path) if path else DEFAULT_POLICY_PATH
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(str(p), None, "", f"cannot read policy: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise PolicyError(str(p), None, "", f"policy is not UTF-8 text: {exc.reason}") from None
    return parse_policy(text, source=str(p))


def parse_policy(text: str, source: str = "<memory>") -> Policy:
    """Validate a policy's text. Every problem is collected before anything is raised, so one
    `smallfirst policy check` lists them all."""
    import hashlib

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise PolicyError(source, mark.line + 1 if mark else None, "", f"YAML syntax: {exc.problem}") from None
    if root is None or not isinstance(root, yaml.MappingNode):
        raise PolicyError(source, 1, "", "a policy is a YAML mapping with version, models and tasks")
    errors = _duplicate_keys(root, source, ())
    data = yaml.safe_load(text)
    policy = None
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        errors += [_validation_error(root, source, err) for err in exc.errors()]
    errors += _reference_errors(data, root, source)
    if errors:
        raise PolicyError.of(errors)
    assert policy is not None
    return policy.model_copy(update={"source": source, "digest": hashlib.sha256(text.encode()).hexdigest()})


def _validation_error(root: yaml.Node, source: str, err: Any) -> PolicyError:
    loc = tuple(str(x) for x in err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = f"unknown key {loc[-1]!r}"
    if err["type"] == "missing":
        msg = "required field is missing"
    line, loc = _line_of(root, loc, msg)
    return PolicyError(source, line, ".".join(loc), msg)


def _reference_errors(data: Any, root: yaml.Node, source: str) -> list[PolicyError]:
    """Names and files the policy points at that do not exist. Read from the raw mapping, so
    they are found even when other fields fail validation."""
    errors: list[PolicyError] = []

    def error(loc: tuple[str, ...], message: str) -> None:
        line, real = _line_of(root, loc, "")
        errors.append(PolicyError(source, line, ".".join(real), message))

    if not isinstance(data, dict):
        return errors
    models = data.get("models") if isinstance(data.get("models"), dict) else {}
    tasks = data.get("tasks") if isinstance(data.get("tasks"), dict) else {}
    base = Path(source).parent if source != "<memory>" else Path.cwd()
    for key, task in tasks.items():
        if not isinstance(task, dict):
            continue
        for name in ("model", "frontier", "candidate", "previous_model"):
            ref = task.get(name)
            if isinstance(ref, str) and ref not in models and not (name == "frontier" and ref == "frontier_default"):
                error(("tasks", str(key), name), f"{ref!r} is not defined under models")
        for name in ("head", "candidate_head"):
            ref = task.get(name)
            if isinstance(ref, str):
                head = _resolve(base, ref)
                problem = f"trained head {str(head)!r} does not exist" if not head.is_file() else _head_problem(head)
                if problem:
                    error(("tasks", str(key), name), problem)
        if isinstance(task.get("calibration"), str):
            from smallfirst.calibration import load_calibration

            try:
                load_calibration(_resolve(base, task["calibration"]))
            except ValueError as exc:
                error(("tasks", str(key), "calibration"), str(exc))
    rollout = data.get("rollout")
    task_modes = rollout.get("task_modes") if isinstance(rollout, dict) else None
    for key in task_modes if isinstance(task_modes, dict) else ():
        if key not in tasks:
            error(("rollout", "task_modes", str(key)), f"{key!r} is not a task under tasks")
    return errors


def _head_problem(path: Path) -> str | None:
    """Why a trained head cannot be used (corrupt, truncated, edited after it was written), or
    None. Checked when a policy loads, so a bad head is refused before it could serve: an admin
    reload keeps the old policy, a promotion is not written."""
    from smallfirst.heads import HeadError, load_head

    try:
        load_head(path)
    except HeadError as exc:
        return str(exc)
    return None


def _resolve(base: Path, p: str) -> Path:
    path = Path(p)
    return path if path.is_absolute() else base / path


def _duplicate_keys(node: yaml.Node, source: str, loc: tuple[str, ...]) -> list[PolicyError]:
    errors: list[PolicyError] = []
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for k, v in node.value:
            key = str(k.value)
            if key in seen:
                errors.append(PolicyError(source, k.start_mark.line + 1, ".".join((*loc, key)), "duplicate key"))
            seen.add(key)
            errors += _duplicate_keys(v, source, (*loc, key))
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            errors += _duplicate_keys(v, source, (*loc, str(i)))
    return errors


def _line_of(root: yaml.Node, loc: tuple[str, ...], msg: str) -> tuple[int, tuple[str, ...]]:
    """The 1-based line of the deepest YAML node on `loc`, and the loc trimmed to real keys.

    Pydantic inserts union/discriminator tags into locations; those are skipped. A model-level
    error ("tasks.x: escalate_labels ...") is reported at the line of the key it names when the
    message starts with a field name of that mapping.
    """
    node, line, real = root, root.start_mark.line + 1, []
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if str(k.value) == part), None)
            if match is None:
                if part == loc[-1] and not part.startswith(("function-", "union[")):
                    real.append(part)  # a missing key: name it, at its parent's line
                continue
            node, line = match[1], match[0].start_mark.line + 1
            real.append(part)
        elif isinstance(node, yaml.SequenceNode) and part.isdigit() and int(part) < len(node.value):
            node = node.value[int(part)]
            line = node.start_mark.line + 1
            real.append(part)
    if isinstance(node, yaml.MappingNode) and msg:
        # "escalate_labels [...] are not in labels" -> point at escalate_labels
        first = msg.split(" ", 1)[0].rstrip(":")
        dotted = first.split(".")
        for k, _ in node.value:
            if str(k.value) == dotted[-1] or (len(dotted) == 1 and str(k.value) == first):
                return k.start_mark.line + 1, (*real, str(k.value))
        for k, _ in node.value:
            if str(k.value) in msg.split():
                return k.start_mark.line + 1, (*real, str(k.value))
    return line, tuple(real)


def policy_json_schema() -> str:
    return json.dumps(Policy.model_json_schema(by_alias=True), indent=2)
