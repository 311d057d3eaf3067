"""The local stack: a real OpenSearch node (or three) with the k-NN plugin, and Redis, without Docker."""

from hybrid_search.stack.manager import ComponentStatus, Stack

__all__ = ["ComponentStatus", "Stack"]
