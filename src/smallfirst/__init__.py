"""smallfirst: answer each agent step with the cheapest model that is sufficient."""

from smallfirst.policy import Policy, PolicyError, load_policy
from smallfirst.reasons import FallbackReason
from smallfirst.tasks import Task

__all__ = ["FallbackReason", "Policy", "PolicyError", "Task", "load_policy"]
__version__ = "0.1.0"
