"""Default file locations shared by the commands."""

from __future__ import annotations

import os

DEFAULT_AUDIT = "smallfirst-audit.db"


def default_audit() -> str:
    """The audit SQLite file a command uses when none is named: $SMALLFIRST_AUDIT, else ./smallfirst-audit.db."""
    return os.environ.get("SMALLFIRST_AUDIT", DEFAULT_AUDIT)
