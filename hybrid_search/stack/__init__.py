"""The local stack without Docker: OpenSearch 2.19 with k-NN (one node or three) and/or Elasticsearch 8.19, both
assembled from Maven Central, and Redis."""

from hybrid_search.stack.manager import ENGINE_CHOICES, ComponentStatus, Stack

__all__ = ["ENGINE_CHOICES", "ComponentStatus", "Stack"]
