"""Fixtures of the fault-injection suite (``pytest -m faults tests/faults``): stacks of its own, never the shared one.

- ``engine_jars``: the OpenSearch classpath, copied from the local stack's folder (or resolved by Maven once per
  session), and copied into each stack folder;
- ``text_model``: the tiny text model of the workers (see ``fault_support.tiny_text_model``);
- ``single_stack``: one OpenSearch node (HTTP 9600, transport 9700) and a Redis on a free port, for the session;
  each test that stops or kills part of it brings it back before it ends, and ``fault_stack`` makes sure it is
  up before each test.

The figures of every test are gathered in ``tests/artefacts/faults/summary.json`` and printed at the end.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fault_support import RECORDED, SUMMARY, FaultStack, seed_engine_jars, tiny_text_model

from hybrid_search.settings import load_settings
from hybrid_search.stack import Stack

SINGLE_HTTP, SINGLE_TRANSPORT = 9600, 9700


@pytest.fixture(scope="session")
def engine_jars(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stack folder holding only the resolved OpenSearch classpath (``engine/``), to seed the others."""
    root = tmp_path_factory.mktemp("fault-jars")
    SUMMARY.unlink(missing_ok=True)  # this session's figures only
    # the local stack's folder (read only) usually holds the resolved classpath already: Maven need not run again
    seed_engine_jars(load_settings().stack_dir, root)
    Stack(load_settings(stack_dir=root)).resolve_engine()  # checks the copy; resolves when there was none
    return root


class TextModel:
    """The tiny deterministic text model of every fault test (:func:`tiny_text_model`), built in a thread while
    the first engine starts; :meth:`path` waits for it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._build, name="tiny-text-model", daemon=True)
        self.thread.start()

    def _build(self) -> None:
        try:
            tiny_text_model(self.folder)
        except BaseException as exc:  # re-raised by path(), in the test that needs the model
            self.error = exc

    def path(self) -> Path:
        self.thread.join()
        if self.error is not None:
            raise self.error
        return self.folder


@pytest.fixture(scope="session")
def text_model(tmp_path_factory: pytest.TempPathFactory) -> TextModel:
    return TextModel(tmp_path_factory.mktemp("fault-text-model"))


@pytest.fixture(scope="session")
def single_stack(
    tmp_path_factory: pytest.TempPathFactory, engine_jars: Path, text_model: TextModel
) -> Iterator[FaultStack]:
    root = tmp_path_factory.mktemp("fault-single")
    seed_engine_jars(engine_jars, root)
    stack = FaultStack(root, text_model.folder, http_port=SINGLE_HTTP, transport_port=SINGLE_TRANSPORT)
    try:
        stack.up()
        text_model.path()
        yield stack
    finally:
        stack.down()


@pytest.fixture
def fault_stack(single_stack: FaultStack) -> FaultStack:
    """The session's single-node stack, up (a previous test may have failed while part of it was down)."""
    single_stack.up()
    return single_stack


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The figures the fault tests of this session recorded (none ran: nothing is printed)."""
    if not RECORDED:
        return
    terminalreporter.section("fault-injection figures")
    for test, figures in RECORDED.items():
        shown = ", ".join(f"{k}={json.dumps(v)}" for k, v in figures.items() if k != "at")
        terminalreporter.write_line(f"{test}: {shown}")
    terminalreporter.write_line(f"(written to {SUMMARY})")
