"""The README demo command, ``hybrid-search run``, as a person runs it (a subprocess), against the real stack.

``--no-stack``: the local stack is already up (the suite needs it); ``run`` itself finds no worker on its
private queue, starts one, ingests a 20-product slice of Luma with a progress bar, serves the page and prints
the URL; on SIGTERM it stops the server and the worker it started.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from api_support import free_port, luma_folder

from hybrid_search.catalog import Product, open_catalogue
from hybrid_search.engine import create_engine
from hybrid_search.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.models]


def test_run_ingests_through_a_worker_and_serves_the_page(settings: Settings, tmp_path: Path) -> None:
    luma = luma_folder()
    catalogue = tmp_path / "luma-slice.jsonl"
    products = [p for p in open_catalogue(luma).records() if isinstance(p, Product)][:20]
    catalogue.write_text("".join(json.dumps(p.to_input(luma)) + "\n" for p in products))
    alias = f"test-run-{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = {
        **os.environ,
        "HYBRID_SEARCH_INDEX_ALIAS": alias,
        "HYBRID_SEARCH_INGEST_QUEUE": alias,
        "HYBRID_SEARCH_IMAGE_ROOTS": json.dumps([str(luma)]),
        "HYBRID_SEARCH_CATALOG": str(catalogue),
        "HYBRID_SEARCH_STACK_DIR": str(tmp_path / "stack"),  # the worker's log goes here
        "COLUMNS": "120",
    }
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        run = subprocess.Popen([sys.executable, "-m", "hybrid_search.cli", "run", "--no-stack", "--port", str(port)],
                               env=env, stdout=stdout, stderr=stderr, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 400
        url = f"http://127.0.0.1:{port}/"
        while url not in out.read_text():
            assert run.poll() is None, (
                f"run exited {run.returncode}:\n{out.read_text()}\n{err.read_text()[-3000:]}"
            )
            assert time.monotonic() < deadline, err.read_text()[-3000:]
            time.sleep(0.5)
        log = err.read_text()
        assert "starting a worker" in log
        assert "ingesting" in log and "20/20" in log
        assert "20 products indexed, 0 dead-lettered" in log
        while True:
            try:
                health = httpx.get(url + "health", timeout=30)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.5)
        assert health.status_code == 200, health.text
        assert f"{alias}: 20 products" in health.json()["components"]["engine"]["detail"]
        page = httpx.get(url, timeout=30)
        assert page.status_code == 200 and 'id="q"' in page.text
        hits = httpx.post(url + "search", json={"text": products[0].title, "size": 1}, timeout=60).json()[
            "hits"
        ]
        assert hits[0]["id"] == products[0].id
        assert httpx.get(url + f"products/{products[0].id}/image", timeout=30).status_code == 200
    finally:
        run.send_signal(signal.SIGTERM)
        try:
            run.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
        with create_engine(settings) as engine:
            for name in engine.versions(alias).values():
                engine.delete_index(name)
    worker_log = tmp_path / "stack" / "logs" / "run-worker.log"
    assert worker_log.is_file()
    deadline = time.monotonic() + 30
    while (
        "Warm shutdown" not in worker_log.read_text()
        and "worker: Cold shutdown" not in worker_log.read_text()
    ):
        assert time.monotonic() < deadline, "the worker that run started is still running"
        time.sleep(0.5)


def test_run_without_a_catalogue_offline_says_what_to_do(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "HYBRID_SEARCH_CATALOG"}
    env.update({"XDG_CACHE_HOME": str(tmp_path), "HYBRID_SEARCH_SAMPLE_DATA_URL": f"http://127.0.0.1:{port}/s.zip",
                "COLUMNS": "200"})  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "hybrid_search.cli", "run", "--no-stack"], env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "downloading the Luma sample data" in done.stderr
    assert "may be offline" in done.stderr and "--catalog DIR" in done.stderr
    assert done.stdout == ""
