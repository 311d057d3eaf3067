"""The documentation cannot drift: every setting is documented, the README stays short, every link resolves."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hybrid_search.settings import ENV_PREFIX, Settings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SETTINGS_PAGE = ROOT / "docs" / "settings.md"
README_MAX_LINES = 200

# [text](target) outside code; images too. Inline code and fenced blocks are removed before matching.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def documents() -> list[Path]:
    return [README, ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]


def prose(text: str) -> str:
    """The text without fenced code blocks and inline code, where a bracket is not a link."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lowercased, punctuation dropped (``-`` and ``_`` kept), spaces to ``-``."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {anchor(title) for title in HEADING.findall(FENCE.sub("", path.read_text()))}


def relative_links(path: Path) -> list[str]:
    return [t for t in LINK.findall(prose(path.read_text())) if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def test_settings_page_lists_every_setting() -> None:
    page = SETTINGS_PAGE.read_text()
    missing = [name for name in Settings.model_fields if f"`{ENV_PREFIX}{name.upper()}`" not in page]
    assert missing == [], f"{SETTINGS_PAGE.relative_to(ROOT)} lacks {missing}"


def test_readme_is_short() -> None:
    lines = len(README.read_text().splitlines())
    assert lines < README_MAX_LINES, (
        f"README.md has {lines} lines; move detail into docs/ (limit {README_MAX_LINES})"
    )


def test_readme_links_every_docs_page() -> None:
    linked = {(README.parent / target.split("#")[0]).resolve() for target in relative_links(README)}
    unlinked = [p.name for p in sorted((ROOT / "docs").glob("*.md")) if p.resolve() not in linked]
    assert unlinked == [], f"README.md does not link {unlinked}"


def broken_links(document: Path) -> list[str]:
    """Each relative link of ``document`` whose file, or whose heading in a Markdown file, does not exist."""
    broken = []
    for target in relative_links(document):
        file_part, _, fragment = target.partition("#")
        destination = (document.parent / file_part).resolve() if file_part else document
        if not destination.exists():
            broken.append(f"{target} (no such file)")
        elif fragment and destination.suffix == ".md" and fragment not in anchors(destination):
            broken.append(f"{target} (no such heading)")
    return broken


@pytest.mark.parametrize("document", documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_at_files_that_exist(document: Path) -> None:
    assert broken_links(document) == [], f"{document.relative_to(ROOT)} has broken links"


@pytest.mark.parametrize(
    ("heading", "expected"),
    [
        ("Query latency (`benchmarks/query.py`)", "query-latency-benchmarksquerypy"),
        ("Home Depot, cross-validated (`python benchmarks/finetune_cv.py`)",
         "home-depot-cross-validated-python-benchmarksfinetune_cvpy"),
        ("The demo: run and serve", "the-demo-run-and-serve"),
    ],
)  # fmt: skip
def test_anchor_follows_github(heading: str, expected: str) -> None:
    assert anchor(heading) == expected


def test_broken_links_are_found(tmp_path: Path) -> None:
    (tmp_path / "there.md").write_text("# Here it is\n```\n# not a heading\n```\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Top\n[ok](there.md) [ok](there.md#here-it-is) [ok](#top) [web](https://example.com)\n"
        "[gone](missing.md) [no heading](there.md#not-a-heading) [no heading here](#bottom)\n"
        "`[code](missing.md)`\n```\n[fenced](missing.md)\n```\n"
    )
    assert broken_links(page) == [
        "missing.md (no such file)",
        "there.md#not-a-heading (no such heading)",
        "#bottom (no such heading)",
    ]
