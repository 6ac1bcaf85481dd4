"""FallbackReason: the one vocabulary for why a decision left the local path.

Values are stable and only ever added: they appear unchanged in the audit trail, CLI output,
HTTP headers, metrics labels and the dashboard.
"""

from __future__ import annotations

from enum import Enum


class FallbackReason(str, Enum):
    UNKNOWN_TASK = "unknown_task"
    POLICY_REQUIRES_FRONTIER = "policy_requires_frontier"
    INPUT_TOO_LARGE = "input_too_large"
    SCHEMA_INVALID = "schema_invalid"
    CONFIDENCE_LOW = "confidence_low"
    HARD_STOP_SECURITY = "hard_stop_security"
    HARD_STOP_ACCESS = "hard_stop_access"
    HARD_STOP_PRODUCTION = "hard_stop_production"
    HARD_STOP_NOVEL = "hard_stop_novel"
    LABEL_ESCALATES = "label_escalates"
    LOCAL_ERROR = "local_error"
    MANUAL_OVERRIDE = "manual_override"

    def __str__(self) -> str:  # so f-strings and logs print the stable value
        return self.value

    @classmethod
    def for_hard_stop(cls, category: str) -> "FallbackReason":
        return cls("hard_stop_" + category)


HARD_STOP_CATEGORIES = ("security", "access", "production", "novel")
