"""Admin overrides (kill switch, rollout, policy reloads) shared by every replica through the store.

An admin change rewrites the one `flags` row in a transaction that also writes its admin_events
record (who, when, why: a change is recorded exactly once) and bumps the row's version; in
PostgreSQL the same transaction NOTIFYs `smallfirst_flags`. Each replica applies any version it
has not seen: at once when the notification arrives, and by polling every `poll_s` regardless,
so a replica whose LISTEN connection dropped still converges within a second. Replicas sharing
a SQLite file on one host poll it the same way.

A change made while the store is unreachable still applies at once on the replica that took it
(a kill switch must work with the database down). It is kept in order and written to the store,
with its admin event, when the store answers again, on top of whatever changed there meanwhile.
Without a store (no --audit) the overrides live in this process only.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Literal

from smallfirst.schema import open_for_writing
from smallfirst.store import CONNECT_TIMEOUT_S, dialect_of, is_postgres, psycopg_module

if TYPE_CHECKING:
    from smallfirst.policy import Policy

log = logging.getLogger("smallfirst.flags")

CHANNEL = "smallfirst_flags"
POLL_S = 0.5
Mode = Literal["live", "shadow"]


# ---------------------------------------------------------------------- overrides


@dataclass(frozen=True)
class Overrides:
    """What admin calls changed, applied on top of whatever policy file is loaded."""

    kill_switch: bool | None = None
    kill_switch_reason: str | None = None
    mode: Mode | None = None
    task_modes: dict[str, Mode | None] = field(default_factory=dict)  # None: the file's
    group_modes: dict[str, Mode | None] = field(default_factory=dict)
    local_groups: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.kill_switch is not None:
            out["kill_switch"] = self.kill_switch
            out["kill_switch_reason"] = self.kill_switch_reason
        if self.mode is not None:
            out["mode"] = self.mode
        if self.task_modes:
            out["task_modes"] = dict(self.task_modes)
        if self.group_modes:
            out["group_modes"] = dict(self.group_modes)
        if self.local_groups is not None:
            out["local_groups"] = list(self.local_groups)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Overrides":
        groups = d.get("local_groups")
        return cls(kill_switch=d.get("kill_switch"), kill_switch_reason=d.get("kill_switch_reason"),
                   mode=d.get("mode"), task_modes=dict(d.get("task_modes") or {}),
                   group_modes=dict(d.get("group_modes") or {}),
                   local_groups=tuple(groups) if groups is not None else None)

    def apply(self, policy: "Policy") -> "Policy":
        d = self.to_dict()
        if not d:
            return policy
        r = policy.rollout
        task_modes = {**r.task_modes, **{k: v for k, v in self.task_modes.items() if v is not None}}
        for k, v in self.task_modes.items():
            if v is None:
                task_modes.pop(k, None)
        group_modes = {**r.group_modes, **{k: v for k, v in self.group_modes.items() if v is not None}}
        for k, v in self.group_modes.items():
            if v is None:
                group_modes.pop(k, None)
        rollout = r.model_copy(update={
            "mode": self.mode or r.mode,
            "kill_switch": r.kill_switch if self.kill_switch is None else self.kill_switch,
            "kill_switch_reason": r.kill_switch_reason if self.kill_switch is None else self.kill_switch_reason,
            # A task the reloaded file no longer has keeps no mode.
            "task_modes": {k: v for k, v in task_modes.items() if k in policy.tasks},
            "group_modes": group_modes,
            "local_groups": list(self.local_groups) if self.local_groups is not None else r.local_groups,
        })
        # The audit's policy_version names the policy in force, overrides included.
        digest = hashlib.sha256(f"{policy.digest}:{json.dumps(d, sort_keys=True)}".encode()).hexdigest()
        return policy.model_copy(update={"rollout": rollout, "digest": digest})


Change = Callable[[Overrides], Overrides]


@dataclass(frozen=True)
class FlagState:
    version: int  # the store's; 0 before any change
    overrides: Overrides
    policy_version: str | None = None  # digest of the policy file the last reload installed
    updated_at: float | None = None
    updated_by: str | None = None
    reason: str | None = None


# ---------------------------------------------------------------------- the store's rows


def read_flags(conn: Any) -> FlagState:
    row = conn.execute("SELECT version, overrides, policy_version, updated_at, updated_by, reason"
                       " FROM flags WHERE id = 1").fetchone()
    if row is None:
        return FlagState(0, Overrides())
    return FlagState(row[0], Overrides.from_dict(json.loads(row[1])), row[2], row[3], row[4], row[5])


def insert_admin_event(conn: Any, event: dict[str, Any]) -> None:
    # What an operator typed (a reason, a policy path, a review note) is masked as every other
    # stored field: a pasted token must not live on in the audit store.
    from smallfirst.redact import mask_secrets, mask_strings

    event = {**event, "detail": mask_strings(event.get("detail")),
             "reason": mask_secrets(event["reason"]) if event.get("reason") else event.get("reason")}
    conn.execute(
        "INSERT INTO admin_events (ts, action, allowed, status, remote, detail, policy_before, policy_after,"
        " actor, reason, replica, event_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (event["ts"], event["action"], int(event["allowed"]), event["status"], event.get("remote"),
         json.dumps(event.get("detail"), ensure_ascii=False), event.get("policy_before"), event.get("policy_after"),
         event.get("actor"), event.get("reason"), event.get("replica"), event.get("event_id")),
    )


@dataclass
class _Pending:
    """One admin change: what it does, its admin event, and how to name the policy it yields."""

    change: Change
    event: dict[str, Any]
    describe: Callable[[Overrides], str | None]
    policy_version: str | None = None


def write_change(conn: Any, p: _Pending) -> FlagState:
    """Apply one change to the stored overrides, with its admin event, in one transaction."""
    d = dialect_of(conn)
    if d.postgres:
        lock = " FOR UPDATE"  # concurrent changes from two replicas apply one after the other
    else:
        conn.commit()
        conn.execute("BEGIN IMMEDIATE")
        lock = ""
    try:
        row = conn.execute(f"SELECT version, overrides, policy_version FROM flags WHERE id = 1{lock}").fetchone()
        if row is None:
            raise RuntimeError("the store has no flags row: run `smallfirst migrate`")
        if conn.execute("SELECT 1 FROM admin_events WHERE event_id = ?", (p.event["event_id"],)).fetchone():
            conn.rollback()  # an earlier try committed and only its answer was lost: applied once already
            return read_flags(conn)
        new = p.change(Overrides.from_dict(json.loads(row[1])))
        now = time.time()
        event = p.event
        event.update(status=200, policy_after=p.describe(new))
        policy_version = p.policy_version or row[2]
        conn.execute("UPDATE flags SET version = ?, overrides = ?, policy_version = ?, updated_at = ?, updated_by = ?,"
                     " reason = ? WHERE id = 1",
                     (row[0] + 1, json.dumps(new.to_dict(), sort_keys=True), policy_version, now,
                      event.get("actor"), event.get("reason")))
        insert_admin_event(conn, event)
        if d.postgres:
            conn.execute("SELECT pg_notify(?, ?)", (CHANNEL, str(row[0] + 1)))  # sent on commit
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return FlagState(row[0] + 1, new, policy_version, now, event.get("actor"), event.get("reason"))


# ---------------------------------------------------------------------- one replica's view


class SharedFlags:
    """This replica's copy of the shared overrides, kept current; `on_change(state)` runs in the
    event loop whenever what is in force changes."""

    def __init__(self, target: str | None, on_change: Callable[[FlagState], Awaitable[None]], *,
                 poll_s: float = POLL_S):
        self.target = target
        self.on_change = on_change
        self.poll_s = poll_s
        self.stored = FlagState(0, Overrides())  # the store's state as last read
        self.pending: list[_Pending] = []  # changes the store has not taken yet, oldest first
        self.reachable: bool | None = None
        self._applied: tuple[int, int] | None = None  # (store version, pending count) in force
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._lock = asyncio.Lock()  # one change or refresh at a time in this process

    @property
    def overrides(self) -> Overrides:
        o = self.stored.overrides
        for p in self.pending:
            o = p.change(o)
        return o

    def state(self) -> FlagState:
        return replace(self.stored, overrides=self.overrides)

    async def start(self) -> None:
        if self.target is None:
            return
        await self.refresh()
        self._tasks.append(asyncio.get_running_loop().create_task(self._poll(), name="smallfirst-flags-poll"))
        if is_postgres(self.target):
            self._tasks.append(asyncio.get_running_loop().create_task(self._listen(), name="smallfirst-flags-listen"))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks.clear()

    async def change(self, change: Change, event: dict[str, Any], describe: Callable[[Overrides], str | None],
                     policy_version: str | None = None) -> tuple[FlagState, bool]:
        """Apply `change` everywhere; the admin event is written with it. Returns the state in
        force here and whether the store took it (False: it is pending, applied here only)."""
        p = _Pending(change, event, describe, policy_version)
        event.setdefault("event_id", uuid.uuid4().hex)  # makes a retried write of this change a no-op
        event["recorded"] = True  # with the change, now or when the store is back: not again by the caller
        async with self._lock:
            if self.target is None:
                self.stored = replace(self.stored, version=self.stored.version + 1, overrides=change(self.stored.overrides))
                event.update(status=200, policy_after=describe(self.stored.overrides))
                event["recorded"] = False  # nowhere to keep it with the change: the caller logs it
                return self.stored, True
            self.pending.append(p)
            shared = await self._flush()
            state = self.state()
            self._applied = (state.version, len(self.pending))
            return state, shared

    async def refresh(self) -> None:
        """Write pending changes, read the store, apply what is new."""
        async with self._lock:
            await self._flush()
            try:
                stored = await asyncio.to_thread(self._read)
            except Exception as exc:
                self._unreachable(exc)
                return
            self.reachable = True
            self.stored = stored
            key = (stored.version, len(self.pending))
            if key == self._applied:
                return
            self._applied = key
        await self.on_change(self.state())

    # ------------------------------------------------------------------ internals

    def _read(self) -> FlagState:
        conn = open_for_writing(self.target)  # type: ignore[arg-type]
        try:
            state = read_flags(conn)
            conn.rollback()
            return state
        finally:
            conn.close()

    def _write(self, p: _Pending) -> FlagState:
        conn = open_for_writing(self.target)  # type: ignore[arg-type]
        try:
            return write_change(conn, p)
        finally:
            conn.close()

    async def _flush(self) -> bool:
        while self.pending:
            p = self.pending[0]
            event_before = dict(p.event)
            try:
                self.stored = await asyncio.to_thread(self._write, p)
            except Exception as exc:
                p.event.clear()
                p.event.update(event_before)
                self._unreachable(exc)
                return False
            self.pending.pop(0)
            self.reachable = True
        return True

    def _unreachable(self, exc: Exception) -> None:
        if self.reachable is not False:
            log.error("shared flags: the store %s cannot be reached (%s); %d admin change(s) waiting",
                      self.target, str(exc).strip(), len(self.pending))
        self.reachable = False

    async def _poll(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_s)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:  # never let the poll die: it is what makes replicas converge
                log.exception("shared flags: refresh failed")

    async def _listen(self) -> None:
        """Wake the poll as soon as another replica commits a change: one async connection in
        the event loop, LISTENing; the poll does the reading."""
        psycopg = psycopg_module()
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                        self.target, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self._wake.set()  # a change made while this replica was not listening
                    async for _ in conn.notifies():
                        self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("shared flags: LISTEN connection lost (%s); the poll carries on", exc)
            await asyncio.sleep(self.poll_s)
