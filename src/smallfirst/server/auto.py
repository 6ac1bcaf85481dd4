"""`smallfirst/auto`: which of the policy's tasks a request asks for, from its instructions.

Zero-shot: the instructions (system prompt and the first line of the user's turn) are embedded
with the bundled all-MiniLM-L6-v2 and compared with each task's name and description. A request
whose best task is not clearly best is left unclassified, and the router sends it to the
frontier with reason unknown_task: guessing a task would put a local model on work nobody
declared it fit for.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from smallfirst.policy import TaskSpec

# From a handful of hand-written requests on the bundled policy's descriptions: requests that
# plainly ask for a task scored 0.43-0.81 with a lead of 0.17 or more; chat, poems and bare logs
# scored at most 0.23 with leads under 0.08. Both bars sit between the two groups.
MIN_SIMILARITY = 0.35
MIN_MARGIN = 0.10

Embed = Callable[[Sequence[str]], np.ndarray]  # texts -> (n, d) unit vectors


@dataclass(frozen=True)
class AutoChoice:
    task_type: str | None  # None: unclear, the request is an unknown task
    similarity: float
    margin: float  # lead of the best task over the second


def task_document(spec: TaskSpec) -> str:
    """What a task is compared as: its name in words, then its description."""
    words = spec.name.replace("_", " ")
    return f"{words}: {spec.description}" if spec.description else words


def minilm_embed(texts: Sequence[str]) -> np.ndarray:
    """The bundled encoder, reading the first 256 tokens of each text."""
    from smallfirst.backends.embedding import Window, embed_texts, shared_encoder

    vectors, _ = embed_texts(shared_encoder(), list(texts), Window("first", 1))
    return vectors


class TaskClassifier:
    def __init__(self, embed: Embed | None = None, *, min_similarity: float = MIN_SIMILARITY,
                 min_margin: float = MIN_MARGIN):
        self._embed = embed or minilm_embed
        self.min_similarity = min_similarity
        self.min_margin = min_margin
        self._lock = threading.Lock()
        self._tasks: tuple[tuple[str, str], ...] = ()
        self._matrix: np.ndarray | None = None

    def load(self) -> None:
        """Load the encoder now (the server does it in the background at start)."""
        self._embed(["warm up"])

    def classify(self, instructions: str, tasks: Mapping[str, TaskSpec]) -> AutoChoice:
        if not instructions.strip() or not tasks:
            return AutoChoice(None, 0.0, 0.0)
        names, matrix = self._task_vectors(tasks)
        sims = matrix @ self._embed([instructions])[0]
        order = np.argsort(-sims)
        best = float(sims[order[0]])
        margin = best - float(sims[order[1]]) if len(order) > 1 else best
        clear = best >= self.min_similarity and margin >= self.min_margin
        return AutoChoice(names[int(order[0])] if clear else None, best, margin)

    def _task_vectors(self, tasks: Mapping[str, TaskSpec]) -> tuple[list[str], np.ndarray]:
        # Re-embedded only when the policy's tasks change (a reload).
        key = tuple((name, task_document(spec)) for name, spec in tasks.items())
        with self._lock:
            if key == self._tasks and self._matrix is not None:
                return [n for n, _ in key], self._matrix
        matrix = self._embed([doc for _, doc in key])
        with self._lock:
            self._tasks, self._matrix = key, matrix
        return [n for n, _ in key], matrix
