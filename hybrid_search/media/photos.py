"""Fetch a product photo's bytes from a local path or an http(s) URL, safely.

Local paths are resolved against the catalogue's folder and must stay inside it (or inside a folder of
``HYBRID_SEARCH_IMAGE_ROOTS``): a catalogue cannot make a worker read ``/etc/passwd`` or ``../../secrets``.
URLs go through :func:`hybrid_search.media.images.fetch_image_url` (http/https only, no private, loopback,
link-local or metadata addresses unless allow-listed, byte cap, timeout, checked redirects).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hybrid_search.errors import ValidationError
from hybrid_search.settings import Settings


def read_photo(ref: str, *, base_dir: Path | None, settings: Settings, roots: Sequence[Path] = ()) -> bytes:
    """The raw bytes of the photo ``ref``; :class:`ValidationError` saying why when it cannot be used."""
    from hybrid_search.media.images import fetch_image_url

    if "://" in ref:
        if not ref.lower().startswith(("http://", "https://")):
            raise ValidationError(
                f"image {ref[:200]!r}: scheme not allowed (http and https only)", field="images"
            )
        return fetch_image_url(
            ref,
            timeout=settings.image_fetch_timeout_s,
            max_bytes=settings.image_max_bytes,
            allowlist=settings.image_url_allowlist,
        )
    allowed = [r.resolve() for r in ([base_dir] if base_dir else []) + [*settings.image_roots, *roots]]
    if not allowed:
        raise ValidationError(
            f"image {ref[:200]!r} is a local path but no catalogue folder or HYBRID_SEARCH_IMAGE_ROOTS allows it",
            field="images",
        )
    candidate = Path(ref) if Path(ref).is_absolute() else allowed[0] / ref
    try:
        path = candidate.resolve(strict=True)
    except (OSError, RuntimeError):
        raise ValidationError(f"image {ref[:200]!r}: not found", field="images") from None
    if not any(path.is_relative_to(root) for root in allowed):
        raise ValidationError(f"image {ref[:200]!r}: outside the catalogue folder", field="images")
    if not path.is_file():
        raise ValidationError(f"image {ref[:200]!r}: not a file", field="images")
    size = path.stat().st_size
    if size > settings.image_max_bytes:
        raise ValidationError(
            f"image {ref[:200]!r}: too large ({size} bytes > {settings.image_max_bytes})", field="images"
        )
    with path.open("rb") as handle:
        return handle.read(settings.image_max_bytes + 1)


__all__ = ["read_photo"]
