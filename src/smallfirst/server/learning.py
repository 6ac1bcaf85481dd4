"""The service's side of learning from escalations: `learn: {every: N}` runs and their metrics.

The learn writer (smallfirst.learn_store) tells the schedule which tasks it stored labelled
examples for; the schedule starts `smallfirst learn` in a child process when a task has enough new
ones; a run that changes the policy file (a new candidate, a promotion) is loaded for the next
request, on the service's event loop, keeping the admin overrides.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from smallfirst.learn import LearnSchedule
from smallfirst.learn_store import LearnCollector, LearnLog
from smallfirst.policy import PolicyError, load_policy

if TYPE_CHECKING:
    from smallfirst.server.app import Service

log = logging.getLogger("smallfirst.server")


def attach_learning(service: "Service", learn: LearnLog) -> LearnSchedule:
    def learned(task: str, result: dict[str, Any] | None, returncode: int) -> None:
        if result and result.get("outcome") in ("promoted", "candidate") and service.loop is not None:
            service.loop.call_soon_threadsafe(reload_policy_file)

    def reload_policy_file() -> None:
        try:
            # The admin overrides in force (shared by the replicas) stay on top of the new file.
            service.install(load_policy(service.policy_path), service.flags.overrides)
        except PolicyError as exc:  # the old policy keeps serving
            log.error("policy not reloaded after a learn run: %s", exc)

    schedule = LearnSchedule(learn.target or "", service.policy_path, service.audit_path,
                             lambda: service.router.policy, on_done=learned)
    learn.on_written = lambda tasks: schedule.check(tasks, learn.store)
    service.metrics.registry.register(LearnCollector(
        learn, runs=lambda: [(t, o, n) for (t, o), n in schedule.outcomes.items()], running=schedule.running))
    return schedule
