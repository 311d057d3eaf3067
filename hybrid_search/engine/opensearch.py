"""OpenSearch 2.x/3.x with the k-NN plugin, through ``opensearch-py``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from opensearchpy import OpenSearch, helpers
from opensearchpy import exceptions as os_exc

from hybrid_search.engine.base import TRANSIENT_STATUSES, SearchEngine, engine_reason, short_reason
from hybrid_search.engine.definition import IndexDefinition
from hybrid_search.engine.dialects import opensearch_index_body, opensearch_search_body
from hybrid_search.engine.request import SearchRequest
from hybrid_search.errors import (
    EngineAuthError,
    EngineError,
    EngineRequestError,
    EngineUnavailableError,
    IndexNotFoundError,
)


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
            }
            for name, data in found.items()
        }

    def _update_aliases(self, body: dict[str, Any]) -> None:
        with self._errors("update aliases"):
            self._client.indices.update_aliases(body=body)

    def _put_meta(self, index: str, meta: dict[str, Any]) -> None:
        with self._errors(f"update _meta of {index}"):
            self._client.indices.put_mapping(index=index, body={"_meta": meta})

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

    def _mget(self, index: str, ids: Sequence[str], fields: Sequence[str]) -> list[dict[str, Any]]:
        with self._errors(f"mget {index}"):
            return list(
                self._client.mget(
                    index=index, body={"ids": list(ids)}, params={"_source_includes": ",".join(fields)}
                )["docs"]
            )

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
