"""Bad configuration gives one clear error line, never a traceback."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

pytestmark = pytest.mark.integration


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hybrid_search.cli", *args],
        capture_output=True, text=True, timeout=60, env={**os.environ, **env}, check=False,
    )  # fmt: skip


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


class _Unauthorised(http.server.BaseHTTPRequestHandler):
    """Answers every request as a secured cluster does to wrong credentials."""

    def do_GET(self) -> None:
        body = b'{"error":{"type":"security_exception","reason":"unable to authenticate user"},"status":401}'
        self.send_response(401)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def secured_port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Unauthorised)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def test_unreachable_engine() -> None:
    line = one_error_line(
        run("health", HYBRID_SEARCH_ENGINE_URL="http://127.0.0.1:1", HYBRID_SEARCH_ENGINE_MAX_RETRIES="0")
    )
    assert line == "error: cannot reach OpenSearch at http://127.0.0.1:1 (info): connection refused"


def test_bad_url() -> None:
    line = one_error_line(run("health", HYBRID_SEARCH_ENGINE_URL="127.0.0.1:9200"))
    assert "HYBRID_SEARCH_ENGINE_URL" in line and "must start with http:// or https://" in line


def test_wrong_credentials(secured_port: int) -> None:
    line = one_error_line(
        run(
            "health",
            HYBRID_SEARCH_ENGINE_URL=f"http://127.0.0.1:{secured_port}",
            HYBRID_SEARCH_ENGINE_USERNAME="admin",
            HYBRID_SEARCH_ENGINE_PASSWORD="wrong-password",
        )
    )
    assert (
        line
        == f"error: OpenSearch at http://127.0.0.1:{secured_port} rejected the credentials (info): HTTP 401"
    )
    assert "wrong-password" not in line


def test_elasticsearch_client_against_opensearch_says_so() -> None:
    pytest.importorskip("elasticsearch", reason="the elasticsearch extra is not installed")
    port = os.environ.get("HYBRID_SEARCH_STACK_HTTP_PORT", "9200")
    line = one_error_line(
        run(
            "health",
            HYBRID_SEARCH_ENGINE="elasticsearch",
            HYBRID_SEARCH_ENGINE_URL=f"http://127.0.0.1:{port}",
        )
    )
    assert "is not Elasticsearch (for OpenSearch set HYBRID_SEARCH_ENGINE=opensearch)" in line
