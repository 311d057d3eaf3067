"""OpenSearch 2.x/3.x with the k-NN plugin, through ``opensearch-py``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from opensearchpy import OpenSearch, helpers
from opensearchpy import exceptions as os_exc

from hybrid_search.engine.base import TRANSIENT_STATUSES, SearchEngine, engine_reason, short_reason
from hybrid_search.engine.definition import HnswParams, IndexDefinition
from hybrid_search.engine.dialects import (
    opensearch_index_body,
    opensearch_search_body,
    opensearch_vector_mapping,
)
from hybrid_search.engine.request import SearchRequest
from hybrid_search.errors import (
    EngineAuthError,
    EngineError,
    EngineRequestError,
    EngineUnavailableError,
    IndexNotFoundError,
)

LONG_TIMEOUT_S = 3600  # update-by-query and reindex that wait for completion: far beyond the usual timeout


class OpenSearchEngine(SearchEngine):
    kind = "opensearch"

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
        kwargs: dict[str, Any] = {
            "hosts": url.split(","),  # several nodes: a request that cannot reach one is retried on the next
            "timeout": timeout_s,
            "max_retries": max_retries,
            "retry_on_timeout": True,
            "verify_certs": verify_certs,
            "ssl_show_warn": verify_certs,
        }
        if username is not None:
            kwargs["http_auth"] = (username, password or "")
        if api_key is not None:
            kwargs["headers"] = {"Authorization": f"ApiKey {api_key}"}
        if ca_certs is not None:
            kwargs["ca_certs"] = ca_certs
        self._client = OpenSearch(**kwargs)

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Translate client exceptions into hybrid-search's error tree, with one readable line each."""
        try:
            yield
        except (os_exc.ConnectionError, os_exc.ConnectionTimeout) as exc:
            raise EngineUnavailableError(
                f"cannot reach OpenSearch at {self.url} ({what}): {short_reason(exc)}"
            ) from None
        except (os_exc.AuthenticationException, os_exc.AuthorizationException) as exc:
            raise EngineAuthError(
                f"OpenSearch at {self.url} rejected the credentials ({what}): HTTP {exc.status_code}"
            ) from None
        except os_exc.NotFoundError as exc:
            raise IndexNotFoundError(f"{what}: not found ({short_reason(exc)})") from None
        except os_exc.RequestError as exc:  # HTTP 400: a request we built, whatever the user sent
            kind, reason = engine_reason(exc.info if exc.info else exc.error)
            raise EngineRequestError(
                f"OpenSearch refused a request hybrid-search built ({what}): HTTP 400 {reason}", kind, reason
            ) from None
        except os_exc.TransportError as exc:
            if exc.status_code in TRANSIENT_STATUSES:  # overloaded, recovering, shards not yet assigned
                raise EngineUnavailableError(
                    f"OpenSearch at {self.url} cannot serve it now ({what}): HTTP {exc.status_code} "
                    f"{short_reason(exc)}"
                ) from None
            raise EngineError(
                f"OpenSearch error ({what}): HTTP {exc.status_code} {short_reason(exc)}"
            ) from None
        except os_exc.SerializationError as exc:
            raise EngineError(f"OpenSearch answered something that is not JSON ({what}): {exc}") from None

    def info(self) -> dict[str, Any]:
        with self._errors("info"):
            data: dict[str, Any] = self._client.info()
        if "version" not in data:
            raise EngineError(f"{self.url} does not look like an OpenSearch node: {str(data)[:200]}")
        return data

    def _health(self, wait_for_status: str | None, timeout_s: float) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if wait_for_status:
            # request_timeout first: opensearch-py otherwise takes the API's `timeout` as the HTTP timeout
            params = {
                "wait_for_status": wait_for_status,
                "timeout": f"{int(timeout_s)}s",
                "request_timeout": timeout_s + 10,
            }
        with self._errors("cluster health"):
            try:
                return dict(self._client.cluster.health(params=params))
            except os_exc.TransportError as exc:
                # a wait that runs out is HTTP 408 carrying the health body: report the status, not an error
                if exc.status_code == 408 and isinstance(exc.info, dict) and "status" in exc.info:
                    return dict(exc.info)
                raise

    def index_body(self, definition: IndexDefinition) -> dict[str, Any]:
        return opensearch_index_body(definition)

    def search_body(self, request: SearchRequest) -> dict[str, Any]:
        return opensearch_search_body(request)

    def _create_index(self, name: str, body: dict[str, Any]) -> None:
        with self._errors(f"create index {name}"):
            self._client.indices.create(index=name, body=body)

    def _indices(self, pattern: str) -> dict[str, dict[str, Any]]:
        with self._errors(f"get indices {pattern}"):
            found = self._client.indices.get(
                index=pattern, params={"allow_no_indices": "true", "ignore_unavailable": "true"}
            )
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
            self._client.indices.update_aliases(body=body)

    def _put_mapping(self, index: str, body: dict[str, Any]) -> None:
        what = "update _meta of" if set(body) == {"_meta"} else "update the mapping of"
        with self._errors(f"{what} {index}"):
            self._client.indices.put_mapping(index=index, body=body)

    def _knn_setting(self, index_settings: Mapping[str, Any]) -> bool:
        return str(index_settings.get("knn", "false")).lower() == "true"

    def vector_mapping(
        self, name: str, dim: int, similarity: str, *, approximate: bool, hnsw: HnswParams | None = None
    ) -> dict[str, Any]:
        """``knn_vector`` for field ``name``: approximate, the Lucene HNSW method (needs ``index.knn: true``;
        FAISS/NMSLIB need native libraries this node lacks); exact, ``{"type": "knn_vector", "dimension": dim}``
        alone.

        Measured on OpenSearch 2.19.1 + k-NN, index without ``index.knn``: ``PUT _mapping`` of a knn_vector
        with a ``method`` is refused ("Cannot set modelId or method parameters when index.knn setting is
        false"); without one it is accepted (a top-level ``space_type`` too, but older 2.x releases lack it, so
        the similarity travels with each query instead: ``KnnClause.similarity``). Such a field cannot serve
        the ``knn`` query ("Field 'hs_x' is not built for ANN search"), only exact scoring (``KnnClause(exact=
        True)``: script_score with the ``knn_score`` script).

        Beware (measured, k-NN bug opensearch-project/k-NN#2540, fixed after 2.19): once such a field exists on
        an index without ``index.knn``, every later ``PUT _mapping`` of that index (a ``_meta`` update, a field
        the shop adds) fails its shard, which recovers in about a second (HTTP 503 meanwhile). Add the field
        and its ``_meta`` records in one request: ``add_fields(index, {name: mapping}, meta={...})``.
        """
        return opensearch_vector_mapping(dim, similarity, approximate=approximate, hnsw=hnsw)

    def _bulk(
        self, actions: Iterable[dict[str, Any]], refresh: bool
    ) -> Iterator[tuple[bool, dict[str, Any]]]:
        with self._errors("bulk write"):
            yield from helpers.streaming_bulk(
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
        lines: list[dict[str, Any]] = []
        for body in bodies:
            lines.extend(({"index": index}, body))
        with self._errors(f"msearch {index}"):
            return list(self._client.msearch(body=lines)["responses"])

    def count(self, index: str, query: Mapping[str, Any] | None = None) -> int:
        with self._errors(f"count {index}"):
            body = {"query": dict(query)} if query else None
            return int(self._client.count(index=index, body=body)["count"])

    def refresh(self, index: str) -> None:
        with self._errors(f"refresh {index}"):
            self._client.indices.refresh(index=index)

    def delete_index(self, index: str) -> None:
        with self._errors(f"delete index {index}"):
            self._client.indices.delete(index=index, params={"ignore_unavailable": "true"})
        self._forget()

    def _delete_docs(self, index: str, ids: Sequence[str], refresh: bool) -> int:
        actions = [{"_op_type": "delete", "_index": index, "_id": i} for i in ids]
        deleted = 0
        with self._errors(f"delete documents from {index}"):
            for ok, _item in helpers.streaming_bulk(
                self._client, actions, raise_on_error=False, refresh="true" if refresh else "false"
            ):
                deleted += int(ok)
        return deleted

    def _mget(self, index: str, ids: Sequence[str], fields: Sequence[str] | None) -> list[dict[str, Any]]:
        params = {} if fields is None else {"_source_includes": ",".join(fields)}
        with self._errors(f"mget {index}"):
            return list(self._client.mget(index=index, body={"ids": list(ids)}, params=params)["docs"])

    def _open_pit(self, index: str, keep_alive: str) -> str:
        with self._errors(f"open a point in time on {index}"):
            response = self._client.create_pit(index=index, params={"keep_alive": keep_alive})
        return str(response["pit_id"])

    def _close_pit(self, pit_id: str) -> None:
        try:
            with self._errors("close a point in time"):
                self._client.delete_pit(body={"pit_id": [pit_id]})
        except IndexNotFoundError:
            pass  # expired or closed already

    def _search_pit(self, pit_id: str, body: dict[str, Any], keep_alive: str) -> dict[str, Any]:
        """``POST /_search`` (no index: the point in time names it) with ``pit: {id, keep_alive}``.

        Measured on OpenSearch 2.19.1: a keyword sort pages with ``search_after`` and adds no tiebreaker
        (``sort: ["a"]``); ``_id`` and ``_doc`` sorts are accepted; ``_shard_doc`` is refused ("No mapping found
        for [_shard_doc]"); documents written after the point in time opened are not seen.
        """
        body = {**body, "pit": {"id": pit_id, "keep_alive": keep_alive}}
        try:
            with self._errors("search a point in time"):
                return dict(self._client.search(body=body))
        except IndexNotFoundError as exc:
            raise EngineError(f"the point in time has expired or was closed ({exc})") from None

    def _update_by_query(self, index: str, body: dict[str, Any], refresh: bool) -> dict[str, Any]:
        params = {
            "conflicts": "proceed",
            "wait_for_completion": "true",
            "refresh": "true" if refresh else "false",
            "request_timeout": LONG_TIMEOUT_S,
        }
        with self._errors(f"update by query {index}"):
            return dict(self._client.update_by_query(index=index, body=body, params=params))

    def _reindex(self, body: dict[str, Any], wait: bool) -> dict[str, Any]:
        params: dict[str, Any] = {"wait_for_completion": "true" if wait else "false", "refresh": "true"}
        if wait:
            params["request_timeout"] = LONG_TIMEOUT_S
        with self._errors(f"reindex {body['source']['index']} -> {body['dest']['index']}"):
            return dict(self._client.reindex(body=body, params=params))

    def _render_template(self, template_id: str, params: dict[str, Any]) -> dict[str, Any]:
        with self._errors(f"render search template {template_id}"):
            return dict(self._client.render_search_template(body={"id": template_id, "params": params}))

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


__all__ = ["OpenSearchEngine"]
