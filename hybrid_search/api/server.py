"""Running the API: ``serve`` (uvicorn on the settings' host and port) and what ``hybrid-search run`` needs
around it: the catalogue to show, and the sample data when no catalogue is given. (The worker it starts when
none runs comes from :mod:`hybrid_search.ingest.workers`.)
"""

from __future__ import annotations

import os
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

from hybrid_search.errors import ConfigurationError
from hybrid_search.settings import Settings

CATALOG_ENV = "HYBRID_SEARCH_CATALOG"
SAMPLE_DATA_URL = "https://github.com/magento/magento2-sample-data/archive/refs/heads/2.4-develop.zip"
SAMPLE_DATA_ENV = "HYBRID_SEARCH_SAMPLE_DATA_URL"


def serve(
    settings: Settings, *, host: str | None = None, port: int | None = None, log_level: str = "info"
) -> None:
    """Serve the API and the page with uvicorn (blocks until stopped)."""
    import uvicorn

    from hybrid_search.api import create_app

    uvicorn.run(
        create_app(settings),
        host=host or settings.api_host,
        port=port or settings.api_port,
        log_level=log_level,
        limit_concurrency=64,
        timeout_graceful_shutdown=10,
    )


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hybrid-search"


def download_sample_data(
    target: Path | None = None,
    *,
    url: str | None = None,
    echo: Callable[[str], None] = print,
    timeout_s: float = 30.0,
) -> Path:
    """The public Luma sample data (magento2-sample-data), downloaded once into the cache and converted.

    Returns the folder with ``products_flat.csv`` and the photos. Offline, or when the download fails, a
    :class:`ConfigurationError` says what to do instead (``--catalog DIR``).
    """
    import httpx

    from hybrid_search.api.sample_data import convert_sample_data

    url = url or os.environ.get(SAMPLE_DATA_ENV) or SAMPLE_DATA_URL
    folder = (target or cache_dir() / "luma").expanduser()
    if (folder / "products_flat.csv").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / "sample-data.zip"
    if not archive.is_file():
        partial = archive.with_suffix(".part")
        echo(f"downloading the Luma sample data from {url} into {folder} ...")
        try:
            with httpx.stream("GET", url, follow_redirects=True, timeout=timeout_s) as response:
                response.raise_for_status()
                with partial.open("wb") as out:
                    for chunk in response.iter_bytes(1 << 20):
                        out.write(chunk)
        except (httpx.HTTPError, OSError) as exc:
            partial.unlink(missing_ok=True)
            raise ConfigurationError(
                f"cannot download the Luma sample data from {url} ({type(exc).__name__}: {exc}); this machine "
                f"may be offline. Give a catalogue instead: hybrid-search run --catalog DIR (or set {CATALOG_ENV})"
            ) from None
        partial.replace(archive)
    source = folder / "source"
    if not source.is_dir():
        try:
            with zipfile.ZipFile(archive) as zipped:
                zipped.extractall(source)
        except zipfile.BadZipFile:
            archive.unlink(missing_ok=True)
            raise ConfigurationError(f"the download from {url} is not a zip archive; run again") from None
        for path in source.rglob("*"):
            if not path.resolve().is_relative_to(source.resolve()):
                shutil.rmtree(source)
                raise ConfigurationError("the sample-data archive has paths outside its folder; refused")
    roots = [p for p in source.iterdir() if p.is_dir()]
    convert_sample_data(roots[0] if len(roots) == 1 else source, folder)
    return folder


def resolve_catalogue(catalog: str | None, *, echo: Callable[[str], None] = print) -> Path:
    """The catalogue to ingest: ``--catalog``, else ``$HYBRID_SEARCH_CATALOG``, else the downloaded sample data."""
    chosen = catalog or os.environ.get(CATALOG_ENV)
    if chosen:
        path = Path(chosen).expanduser()
        if not path.exists():
            raise ConfigurationError(f"catalogue not found: {path}")
        return path.resolve()
    return download_sample_data(echo=echo)


__all__ = [
    "CATALOG_ENV",
    "SAMPLE_DATA_URL",
    "cache_dir",
    "download_sample_data",
    "resolve_catalogue",
    "serve",
]
