"""hybrid-search: multimodal hybrid (BM25 + kNN) product search over Elasticsearch or OpenSearch."""

from hybrid_search.errors import HybridSearchError
from hybrid_search.settings import Settings, get_settings, load_settings

__version__ = "0.1.0"

__all__ = ["HybridSearchError", "Settings", "__version__", "get_settings", "load_settings"]
