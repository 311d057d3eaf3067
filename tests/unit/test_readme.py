"""The README documents every setting (the table cannot drift from the code)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hybrid_search.settings import ENV_PREFIX, Settings

pytestmark = pytest.mark.unit


def test_settings_table_lists_every_setting() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    missing = [name for name in Settings.model_fields if f"`{ENV_PREFIX}{name.upper()}`" not in readme]
    assert missing == [], f"README settings table lacks {missing}"
