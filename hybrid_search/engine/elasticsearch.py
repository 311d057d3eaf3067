"""Elasticsearch 8.x/9.x through the ``elasticsearch`` client (install the ``elasticsearch`` extra, pinned to the
cluster's major version: the 9.x client refuses 8.x servers).

Vector fields are ``dense_vector`` with HNSW; kNN is the top-level ``knn`` search option, which a Basic licence
allows, as is the server-side sum of ``query`` and ``knn`` scores (``native`` hybrid).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from hybrid_search.engine.base import TRANSIENT_STATUSES, SearchEngine, engine_reason, short_reason
from hybrid_search.engine.definition import HnswParams, IndexDefinition
from hybrid_search.engine.dialects import (
    elasticsearch_index_body,
    elasticsearch_search_body,
    elasticsearch_vector_mapping,
)
from hybrid_search.engine.request import SearchRequest
from hybrid_search.errors import (
    ConfigurationError,
    EngineAuthError,
    EngineError,
    EngineRequestError,
    EngineUnavailableError,
    IndexNotFoundError,
)

LONG_TIMEOUT_S = 3600  # update-by-query and reindex that wait for completion: far beyond the usual timeout


class ElasticsearchEngine(SearchEngine):
    kind = "elasticsearch"

    def __init__(
        self,
        url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        api_key: str | None = None,
        ca_certs: str | None = None,
        verify_certs: bool = True,
        timeout_s: float = 10.0,
        max_retries: int = 2,
    ) -> None:
        super().__init__(url)
        try:
            import elasticsearch
            from elasticsearch import Elasticsearch, helpers
        except ImportError:
            raise ConfigurationError(
                "HYBRID_SEARCH_ENGINE=elasticsearch needs the Elasticsearch client: "
                "pip install 'hybrid-search[elasticsearch]'"
            ) from None
        self._es = elasticsearch
        self._helpers = helpers
        kwargs: dict[str, Any] = {
            "hosts": url.split(","),  # several nodes: a request that cannot reach one is retried on the next
            "request_timeout": timeout_s,
            "max_retries": max_retries,
            "retry_on_timeout": True,
            "verify_certs": verify_certs,
        }
        if username is not None:
            kwargs["basic_auth"] = (username, password or "")
        if api_key is not None:
            kwargs["api_key"] = api_key
        if ca_certs is not None:
            kwargs["ca_certs"] = ca_certs
        self._client = Elasticsearch(**kwargs)

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        es = self._es
        try:
            yield
        except (es.ConnectionError, es.ConnectionTimeout) as exc:
            raise EngineUnavailableError(
                f"cannot reach Elasticsearch at {self.url} ({what}): {short_reason(exc)}"
            ) from None
        except es.UnsupportedProductError:
            raise EngineError(
                f"{self.url} is not Elasticsearch (for OpenSearch set HYBRID_SEARCH_ENGINE=opensearch)"
            ) from None
        except (es.AuthenticationException, es.AuthorizationException) as exc:
            raise EngineAuthError(
                f"Elasticsearch at {self.url} rejected the credentials ({what}): HTTP {exc.meta.status}"
            ) from None
        except es.NotFoundError as exc:
            raise IndexNotFoundError(f"{what}: not found ({short_reason(exc)})") from None
        except es.BadRequestError as exc:  # HTTP 400: a request we built, whatever the user sent
            kind, reason = engine_reason(exc.body if exc.body else exc.message)
            raise EngineRequestError(
                f"Elasticsearch refused a request hybrid-search built ({what}): HTTP 400 {reason}",
                kind,
                reason,
            ) from None
        except es.ApiError as exc:
            if exc.meta.status in TRANSIENT_STATUSES:  # overloaded, recovering, shards not yet assigned
                raise EngineUnavailableError(
                    f"Elasticsearch at {self.url} cannot serve it now ({what}): HTTP {exc.meta.status} "
                    f"{short_reason(exc)}"
                ) from None
            raise EngineError(
                f"Elasticsearch error ({what}): HTTP {exc.meta.status} {short_reason(exc)}"
            ) from None
        except es.SerializationError as exc:
            raise EngineError(f"Elasticsearch answered something that is not JSON ({what}): {exc}") from None

    def info(self) -> dict[str, Any]:
        with self._errors("info"):
            return dict(self._client.info())

    def _health(self, wait_for_status: str | None, timeout_s: float) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if wait_for_status:
            kwargs = {"wait_for_status": wait_for_status, "timeout": f"{int(timeout_s)}s"}
        client = self._client.options(request_timeout=timeout_s + 10) if wait_for_status else self._client
        with self._errors("cluster health"):
            try:
                return dict(client.cluster.health(**kwargs))
            except self._es.ApiError as exc:
                # a wait that runs out is HTTP 408 carrying the health body: report the status, not an error
                if exc.meta.status == 408 and isinstance(exc.body, dict) and "status" in exc.body:
                    return dict(exc.body)
                raise

    def index_body(self, definition: IndexDefinition) -> dict[str, Any]:
        return elasticsearch_index_body(definition)

    def search_body(self, request: SearchRequest) -> dict[str, Any]:
        return elasticsearch_search_body(request)

    def _create_index(self, name: str, body: dict[str, Any]) -> None:
        with self._errors(f"create index {name}"):
            self._client.indices.create(
                index=name,
                settings=body.get("settings"),
                mappings=body.get("mappings"),
                aliases=body.get("aliases"),
            )

    def _indices(self, pattern: str) -> dict[str, dict[str, Any]]:
        with self._errors(f"get indices {pattern}"):
            found = self._client.indices.get(index=pattern, allow_no_indices=True, ignore_unavailable=True)
        return {
            name: {
                "aliases": sorted(data.get("aliases", {})),
                "meta": data.get("mappings", {}).get("_meta", {}),
                "mappings": data.get("mappings", {}),
                "settings": data.get("settings", {}),
            }
            for name, data in found.items()
        }

    def _update_aliases(self, body: dict[str, Any]) -> None:
        with self._errors("update aliases"):
            self._client.indices.update_aliases(actions=body["actions"])

    def _put_mapping(self, index: str, body: dict[str, Any]) -> None:
        what = "update _meta of" if set(body) == {"_meta"} else "update the mapping of"
        with self._errors(f"{what} {index}"):
            self._client.indices.put_mapping(
                index=index, meta=body.get("_meta"), properties=body.get("properties")
            )

    def vector_mapping(
        self, name: str, dim: int, similarity: str, *, approximate: bool, hnsw: HnswParams | None = None
    ) -> dict[str, Any]:
        """``dense_vector`` for field ``name``, indexed with HNSW (float vectors: ``index_options.type: hnsw``,
        not the 8.x default int8 quantisation), whatever ``approximate`` says: Elasticsearch adds such a field
        to any index, so an attached index always gets approximate kNN; exact scoring (``KnnClause(exact=True)``)
        works on it too where the cluster has painless."""
        return elasticsearch_vector_mapping(dim, similarity, hnsw=hnsw)

    def _bulk(
        self, actions: Iterable[dict[str, Any]], refresh: bool
    ) -> Iterator[tuple[bool, dict[str, Any]]]:
        with self._errors("bulk write"):
            yield from self._helpers.streaming_bulk(
                self._client,
                actions,
                chunk_size=500,
                max_chunk_bytes=50 * 1024 * 1024,
                raise_on_error=False,
                refresh="true" if refresh else "false",
            )

    def _search(self, index: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._errors(f"search {index}"):
            return dict(self._client.search(index=index, body=body))

    def _msearch(self, index: str, bodies: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        searches: list[dict[str, Any]] = []
        for body in bodies:
            searches.extend(({"index": index}, body))
        with self._errors(f"msearch {index}"):
            return list(self._client.msearch(searches=searches)["responses"])

    def count(self, index: str, query: Mapping[str, Any] | None = None) -> int:
        with self._errors(f"count {index}"):
            if query:
                return int(self._client.count(index=index, query=dict(query))["count"])
            return int(self._client.count(index=index)["count"])

    def refresh(self, index: str) -> None:
        with self._errors(f"refresh {index}"):
            self._client.indices.refresh(index=index)

    def delete_index(self, index: str) -> None:
        with self._errors(f"delete index {index}"):
            self._client.indices.delete(index=index, ignore_unavailable=True)
        self._forget()

    def _delete_docs(self, index: str, ids: Sequence[str], refresh: bool) -> int:
        actions = [{"_op_type": "delete", "_index": index, "_id": i} for i in ids]
        deleted = 0
        with self._errors(f"delete documents from {index}"):
            for ok, _item in self._helpers.streaming_bulk(
                self._client, actions, raise_on_error=False, refresh="true" if refresh else "false"
            ):
                deleted += int(ok)
        return deleted

    def _mget(self, index: str, ids: Sequence[str], fields: Sequence[str] | None) -> list[dict[str, Any]]:
        includes = None if fields is None else list(fields)
        with self._errors(f"mget {index}"):
            return list(self._client.mget(index=index, ids=list(ids), source_includes=includes)["docs"])

    def _open_pit(self, index: str, keep_alive: str) -> str:
        with self._errors(f"open a point in time on {index}"):
            return str(self._client.open_point_in_time(index=index, keep_alive=keep_alive)["id"])

    def _close_pit(self, pit_id: str) -> None:
        try:
            with self._errors("close a point in time"):
                self._client.close_point_in_time(id=pit_id)
        except IndexNotFoundError:
            pass  # expired or closed already (HTTP 404, "succeeded": false)

    def _search_pit(self, pit_id: str, body: dict[str, Any], keep_alive: str) -> dict[str, Any]:
        """``POST /_search`` (no index: Elasticsearch refuses one with a point in time) with ``pit``.

        Measured on Elasticsearch 8.19: a keyword sort pages with ``search_after`` and gets the implicit
        ``_shard_doc`` tiebreaker appended (``sort: ["a", 0]``: pass both values back); ``_shard_doc`` alone
        works; ``_id`` is refused (fielddata on ``_id`` is disabled by default).
        """
        body = {**body, "pit": {"id": pit_id, "keep_alive": keep_alive}}
        try:
            with self._errors("search a point in time"):
                return dict(self._client.search(body=body))
        except IndexNotFoundError as exc:
            raise EngineError(f"the point in time has expired or was closed ({exc})") from None

    def _update_by_query(self, index: str, body: dict[str, Any], refresh: bool) -> dict[str, Any]:
        client = self._client.options(request_timeout=LONG_TIMEOUT_S)
        with self._errors(f"update by query {index}"):
            return dict(
                client.update_by_query(
                    index=index,
                    query=body["query"],
                    script=body["script"],
                    conflicts="proceed",
                    wait_for_completion=True,
                    refresh=refresh,
                )
            )

    def _reindex(self, body: dict[str, Any], wait: bool) -> dict[str, Any]:
        client = self._client.options(request_timeout=LONG_TIMEOUT_S) if wait else self._client
        with self._errors(f"reindex {body['source']['index']} -> {body['dest']['index']}"):
            return dict(
                client.reindex(
                    source=body["source"], dest=body["dest"], wait_for_completion=wait, refresh=True
                )
            )

    def _render_template(self, template_id: str, params: dict[str, Any]) -> dict[str, Any]:
        with self._errors(f"render search template {template_id}"):
            return dict(self._client.render_search_template(id=template_id, params=params))

    def get_document(self, index: str, doc_id: str) -> dict[str, Any] | None:
        try:
            with self._errors(f"get {index}/{doc_id}"):
                found = self._client.get(index=index, id=doc_id)
        except IndexNotFoundError as exc:
            if "index_not_found" in str(exc):
                raise
            return None
        return dict(found["_source"]) if found.get("found") else None

    def close(self) -> None:
        self._client.close()


__all__ = ["ElasticsearchEngine"]
