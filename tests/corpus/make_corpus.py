"""The bad-input corpus: hostile and broken inputs with the outcome each must have, built at test time.

Nothing binary is committed: every input is made here, deterministically (fixed seeds), in a few hundred
milliseconds. The big ones (a 10 MB title, a 17 MB JSONL line, 9 MB uploads, images claiming billions of
pixels) exist only in the test's temporary folder.

    python tests/corpus/make_corpus.py OUT_DIR      # write every input into OUT_DIR (to look at them)
    python tests/corpus/make_corpus.py --manifest   # rewrite tests/corpus/manifest.json from ENTRIES

:data:`ENTRIES` is the corpus: each :class:`Entry` has an id, a kind (what it is fed as), a description and,
per path it goes through, the expected outcome and a substring of the reason that must be given:

``quarantined``  the record lands in the dead-letter store (``hybrid-search dead-letters``, ``GET /tasks``)
                 with that reason, and the rest of its batch is indexed;
``rejected``     the request or command is refused: an HTTP 4xx JSON error (``status``) or ``hybrid-search``
                 exiting 1 with one line on stderr;
``accepted``     not an attack but an awkward input the product must take (a byte-order mark, control
                 characters inside a title): indexed, cleaned. Not counted as a bad input.

Paths: ``ingest`` (a JSONL or CSV catalogue through ``hybrid-search ingest`` and the Celery worker),
``cli`` (the whole catalogue file is refused by ``hybrid-search ingest``), ``api-products`` (``POST
/products``), ``api-image`` (``POST /search/image``), ``api-voice`` (``POST /search/voice``), ``api-search``
(``POST /search``). ``tests/integration/test_bad_inputs.py`` pushes each entry through its paths.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import random
import struct
import sys
import wave
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "manifest.json"
MIB = 1024 * 1024
# settings of the worker and server the test starts (the corpus's sizes are chosen around them)
IMAGE_MAX_BYTES = 8 * MIB
UPLOAD_MAX_BYTES = 8 * MIB
FETCH_TIMEOUT_S = 3
REDIRECTOR_HOST = (
    "127.0.0.2"  # the allow-listed first hop of the redirect tests (HYBRID_SEARCH_IMAGE_URL_ALLOWLIST)
)


@dataclass(frozen=True)
class Expect:
    path: str
    outcome: str  # quarantined | rejected | accepted
    reason: str = ""  # substring of the dead-letter reason or error message ("" for accepted)
    status: int | None = None  # HTTP status on the API paths, 1 for a refused command


@dataclass(frozen=True)
class Entry:
    id: str
    kind: str  # photo, photo-ref, url, record, csv-row, catalogue, audio, search-body, products-body
    what: str
    expect: tuple[Expect, ...]
    build: Callable[[Context], bytes] | None = None  # the bytes (a file, a JSONL line, a CSV row, a body)
    ref: str | None = None  # photo-ref: the path as the catalogue gives it; url: with {redirector}
    name: str | None = None  # catalogue: its file name
    dead_letter_id: str | None = None  # the id its dead letter carries (records; None: matched by line)
    content_type: str = "application/json"

    @property
    def bad(self) -> bool:
        return any(e.outcome != "accepted" for e in self.expect)

    def manifest(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "kind": self.kind, "what": self.what}
        if self.ref is not None:
            out["ref"] = self.ref
        out["expect"] = [{k: v for k, v in vars(e).items() if v not in (None, "")} for e in self.expect]
        return out


@dataclass
class Context:
    """What the builders share: the redirector's base URL and a few cached real images."""

    redirector: str = f"http://{REDIRECTOR_HOST}:8000"
    cache: dict[str, bytes] = field(default_factory=dict)

    def image(self, fmt: str = "JPEG", size: tuple[int, int] = (96, 72)) -> bytes:
        key = f"{fmt}{size}"
        if key not in self.cache:
            self.cache[key] = _picture(fmt, size)
        return self.cache[key]


def _picture(fmt: str, size: tuple[int, int]) -> bytes:
    """A small real photo-like image: a red jacket-ish block on a white background."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", size, (250, 250, 250))
    draw = ImageDraw.Draw(image)
    w, h = size
    draw.rectangle((w // 4, h // 6, 3 * w // 4, 5 * h // 6), fill=(190, 30, 40))
    draw.ellipse((w // 3, h // 4, 2 * w // 3, h // 2), fill=(40, 40, 60))
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def _noise(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png(width: int, height: int, extra: bytes = b"", pixels: bytes | None = None) -> bytes:
    """A PNG whose header claims ``width x height`` (RGB, 8 bits), with ``extra`` chunks before its data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = pixels if pixels is not None else zlib.compress(b"\x00" * 16)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + extra + _png_chunk(b"IDAT", data)
            + _png_chunk(b"IEND", b""))  # fmt: skip


def _jpeg_with_size(ctx: Context, width: int, height: int) -> bytes:
    """A real JPEG whose start-of-frame header is patched to claim ``width x height``."""
    data = bytearray(ctx.image())
    at = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, at + 5, height, width)
    return bytes(data)


def _gif_with_screen(width: int, height: int) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("P", (2, 2)).save(out, format="GIF")
    data = bytearray(out.getvalue())
    struct.pack_into("<HH", data, 6, width, height)  # logical screen size
    return bytes(data)


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def _wav(seconds: float, *, rate: int = 16_000, amplitude: float = 0.4, channels: int = 1) -> bytes:
    frames = int(seconds * rate)
    samples = [int(amplitude * 32767 * math.sin(2 * math.pi * 440 * n / rate)) for n in range(frames)]
    pcm = (
        struct.pack(f"<{frames}h", *samples) * channels
        if channels == 1
        else b"".join(struct.pack("<h", s) * channels for s in samples)
    )
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return out.getvalue()


def _wav_header(*, channels: int, rate: int, bits: int = 16, data_bytes: int = 0, body: bytes = b"") -> bytes:
    """A hand-made RIFF/WAVE header with any values, and ``body`` as its data."""
    block = max(channels * bits // 8, 0)
    fmt = struct.pack("<HHIIHH", 1, channels, rate, (rate * block) & 0xFFFFFFFF, block, bits)
    riff = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", data_bytes)
    return b"RIFF" + struct.pack("<I", 4 + len(riff) - 4 + len(body)) + riff + body


def _video_without_sound() -> bytes:
    """A real one-second MP4 with a video track and no audio track (PyAV's bundled FFmpeg)."""
    import av
    import numpy as np

    out = io.BytesIO()
    with av.open(out, mode="w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for n in range(10):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), n * 20, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


def _line(record: Any) -> bytes:
    return json.dumps(record, ensure_ascii=True).encode()


def _record(entry_id: str, **fields: Any) -> Callable[[Context], bytes]:
    return lambda _ctx: _line({"id": entry_id, "title": f"Record {entry_id}", **fields})


HTML = b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head><body>Not Found</body></html>\n"
ELF = b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 8 + b"\x02\x00\x3e\x00" + b"\x00" * 100
SVG = (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)">'
       b"<script>fetch('http://169.254.169.254/')</script><rect width='10' height='10'/></svg>")  # fmt: skip
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def _ingest(reason: str) -> Expect:
    return Expect("ingest", "quarantined", reason)


def _image_api(status: int, reason: str) -> Expect:
    return Expect("api-image", "rejected", reason, status)


def _voice(status: int, reason: str) -> Expect:
    return Expect("api-voice", "rejected", reason, status)


def _products(reason: str, status: int = 422) -> Expect:
    return Expect("api-products", "rejected", reason, status)


def _search(reason: str, status: int = 422) -> Expect:
    return Expect("api-search", "rejected", reason, status)


def _cli(reason: str) -> Expect:
    return Expect("cli", "rejected", reason, 1)


# ---- photos: the main photo of a product (ingest) and a query photo (POST /search/image) ------------------

PHOTOS = [
    Entry("photo-zero-byte", "photo", "a zero-byte .jpg",
          (_ingest("photo: empty: no image data"), _image_api(422, "the image file is empty")), lambda c: b""),
    Entry("photo-truncated-jpeg", "photo", "a real JPEG cut after 40% of its bytes",
          (_ingest("photo: corrupt jpeg"), _image_api(422, "corrupt jpeg")),
          lambda c: c.image(size=(320, 240))[: len(c.image(size=(320, 240))) * 2 // 5]),
    Entry("photo-truncated-png", "photo", "a real PNG cut in the middle of its pixel data",
          (_ingest("photo: corrupt png"), _image_api(422, "corrupt png")),
          lambda c: c.image("PNG", (320, 240))[: len(c.image("PNG", (320, 240))) // 2]),
    Entry("photo-jpeg-garbage", "photo", "JPEG magic bytes followed by 4 kB of random bytes",
          (_ingest("photo: corrupt jpeg"), _image_api(422, "corrupt jpeg")),
          lambda c: b"\xff\xd8\xff\xe0" + _noise(4096, 1)),
    Entry("photo-png-bad-zlib", "photo", "a PNG whose compressed pixel data is overwritten with 0xFF",
          (_ingest("photo: corrupt png"), _image_api(422, "corrupt png")),
          lambda c: _png(64, 64, pixels=zlib.compress(_noise(64 * 193, 2))[:40] + b"\xff" * 400)),
    Entry("photo-polyglot-jpeg-html", "photo", "JPEG magic bytes followed by an HTML page",
          (_ingest("photo: corrupt jpeg"), _image_api(422, "corrupt jpeg")), lambda c: b"\xff\xd8\xff" + HTML),
    Entry("photo-webp-garbage", "photo", "a RIFF/WEBP header around random bytes",
          (_ingest("photo: corrupt webp"), _image_api(422, "corrupt webp")),
          lambda c: b"RIFF" + struct.pack("<I", 1028) + b"WEBPVP8 " + _noise(1020, 3)),
    Entry("photo-html", "photo", "an HTML error page saved as .jpg",
          (_ingest("photo: unsupported format: html"), _image_api(415, "the upload is html")), lambda c: HTML),
    Entry("photo-zip", "photo", "a ZIP archive (holding a real JPEG) named .jpg",
          (_ingest("photo: unsupported format: zip"), _image_api(415, "the upload is zip")),
          lambda c: _zip({"photo.jpg": c.image()})),
    Entry("photo-svg-script", "photo", "an SVG with an onload handler and a script fetching the metadata address",
          (_ingest("photo: unsupported format: svg"), _image_api(415, "the upload is svg")), lambda c: SVG),
    Entry("photo-pdf", "photo", "a PDF named .jpg",
          (_ingest("photo: unsupported format: pdf"), _image_api(415, "the upload is pdf")), lambda c: PDF),
    Entry("photo-bmp", "photo", "a real BMP (not an accepted format)",
          (_ingest("photo: unsupported format: bmp"), _image_api(415, "the upload is bmp")),
          lambda c: c.image("BMP")),
    Entry("photo-tiff", "photo", "a real TIFF (not an accepted format)",
          (_ingest("photo: unsupported format: tiff"), _image_api(415, "the upload is tiff")),
          lambda c: c.image("TIFF")),
    Entry("photo-gzip", "photo", "a gzip-compressed JPEG named .jpg",
          (_ingest("photo: unsupported format: gzip"), _image_api(415, "the upload is gzip")),
          lambda c: gzip.compress(c.image(), mtime=0)),
    Entry("photo-elf", "photo", "an ELF executable header named .jpg",
          (_ingest("photo: unsupported format: unknown"), _image_api(415, "the upload is unknown")),
          lambda c: ELF),
    Entry("photo-text", "photo", "a plain-text file named .jpg",
          (_ingest("photo: unsupported format: text"), _image_api(415, "the upload is text")),
          lambda c: b"this is not a photo, it is a note\n"),
    Entry("photo-wav", "photo", "a WAV recording named .jpg",
          (_ingest("photo: unsupported format: riff"), _image_api(415, "the upload is riff")),
          lambda c: _wav(0.1)),
    Entry("photo-png-50000x50000", "photo", "a 120-byte PNG whose header claims 50,000 x 50,000 pixels",
          (_ingest("photo: too many pixels"), _image_api(422, "too many pixels")), lambda c: _png(50_000, 50_000)),
    Entry("photo-png-8000x6000", "photo",
          "a PNG header claiming 8,000 x 6,000 pixels: under Pillow's own bomb limit, over image_max_pixels",
          (_ingest("photo: too many pixels: 8000x6000"), _image_api(422, "too many pixels: 8000x6000")),
          lambda c: _png(8000, 6000)),
    Entry("photo-jpeg-65000x65000", "photo", "a real JPEG whose frame header is patched to 65,000 x 65,000",
          (_ingest("photo: too many pixels"), _image_api(422, "too many pixels")),
          lambda c: _jpeg_with_size(c, 65_000, 65_000)),
    Entry("photo-gif-65535-screen", "photo", "a GIF whose logical screen claims 65,535 x 65,535 pixels",
          (_ingest("photo: too many pixels"), _image_api(422, "too many pixels")),
          lambda c: _gif_with_screen(65_535, 65_535)),
    Entry("photo-png-zero-width", "photo", "a PNG header claiming 0 x 64 pixels",
          (_ingest("photo: corrupt png"), _image_api(422, "corrupt png")), lambda c: _png(0, 64)),
    Entry("photo-png-ztxt-bomb", "photo", "a 1x1 PNG with a zTXt chunk inflating to 64 MB (20 kB on disk)",
          (_ingest("photo: corrupt png"), _image_api(422, "corrupt png")),
          lambda c: _png(1, 1, _png_chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(b"\x00" * 64 * MIB, 9)),
                         zlib.compress(b"\x00\x00\x00\x00"))),
    Entry("photo-oversized", "photo", "a 9 MB file starting like a JPEG (over the 8 MB photo and upload limits)",
          (_ingest(f"too large ({9 * MIB + 4} bytes > {IMAGE_MAX_BYTES})"), _image_api(413, "larger than 8192 KiB")),
          lambda c: b"\xff\xd8\xff\xe0" + b"\x00" * (9 * MIB)),
]  # fmt: skip

# ---- local photo paths a catalogue may give (the catalogue's folder is the only one allowed) --------------

PHOTO_REFS = [
    Entry("path-traversal", "photo-ref", "a relative path climbing out of the catalogue folder",
          (_ingest("outside the catalogue folder"),), ref="../../../../../../../etc/passwd"),
    Entry("path-absolute", "photo-ref", "an absolute path to a system file",
          (_ingest("outside the catalogue folder"),), ref="/etc/passwd"),
    Entry("path-symlink-escape", "photo-ref", "a symlink inside the folder pointing to /etc/passwd",
          (_ingest("outside the catalogue folder"),), ref="links/passwd.jpg"),
    Entry("path-dev-zero", "photo-ref", "a symlink inside the folder pointing to /dev/zero (an endless file)",
          (_ingest("outside the catalogue folder"),), ref="links/zero.jpg"),
    Entry("path-fifo", "photo-ref", "a named pipe inside the folder (reading it would block for ever)",
          (_ingest("not a file"),), ref="links/pipe.jpg"),
    Entry("path-directory", "photo-ref", "a folder instead of a file",
          (_ingest("not a file"),), ref="links"),
    Entry("path-missing", "photo-ref", "a photo that does not exist",
          (_ingest("not found"),), ref="photos/no-such-photo.jpg"),
]  # fmt: skip

# ---- photo URLs: none may reach the machine itself, a private network or the cloud metadata service --------

R = "{redirector}"
URLS = [
    Entry("url-loopback", "url", "the engine on 127.0.0.1", (_ingest("(loopback)"),),
          ref="http://127.0.0.1:9200/_cat/indices"),
    Entry("url-redis", "url", "Redis on 127.0.0.1:6379", (_ingest("(loopback)"),), ref="http://127.0.0.1:6379/"),
    Entry("url-private-10", "url", "an RFC 1918 address", (_ingest("(private)"),), ref="http://10.0.0.1/photo.jpg"),
    Entry("url-private-192", "url", "a home-router address", (_ingest("(private)"),), ref="http://192.168.1.1/a.jpg"),
    Entry("url-cgnat", "url", "a carrier-grade NAT address", (_ingest("(not globally routable)"),),
          ref="http://100.64.0.1/a.jpg"),
    Entry("url-metadata", "url", "the cloud metadata service", (_ingest("(link-local)"),),
          ref="http://169.254.169.254/latest/meta-data/iam/security-credentials/"),
    Entry("url-file", "url", "a file:// URL", (_ingest("scheme not allowed"),), ref="file:///etc/passwd"),
    Entry("url-gopher", "url", "a gopher:// URL speaking to Redis", (_ingest("scheme not allowed"),),
          ref="gopher://127.0.0.1:6379/_FLUSHALL"),
    Entry("url-ftp", "url", "an ftp:// URL", (_ingest("scheme not allowed"),), ref="ftp://example.com/a.jpg"),
    Entry("url-ipv6-loopback", "url", "[::1]", (_ingest("(loopback)"),), ref="http://[::1]:9200/"),
    Entry("url-unspecified", "url", "0.0.0.0 (reaches local services on Linux)", (_ingest("(unspecified)"),),
          ref="http://0.0.0.0:9200/"),
    Entry("url-decimal-ip", "url", "127.0.0.1 written as one decimal number", (_ingest("(loopback)"),),
          ref="http://2130706433:9200/"),
    Entry("url-hex-ip", "url", "127.0.0.1 written in hexadecimal", (_ingest("(loopback)"),),
          ref="http://0x7f000001:9200/"),
    Entry("url-octal-ip", "url", "127.0.0.1 written in octal", (_ingest("(loopback)"),),
          ref="http://017700000001:9200/"),
    Entry("url-short-ip", "url", "127.0.0.1 written as 127.1", (_ingest("(loopback)"),), ref="http://127.1:9200/"),
    Entry("url-localhost", "url", "a host name resolving to loopback", (_ingest("(loopback)"),),
          ref="http://localhost:9200/"),
    Entry("url-ipv4-mapped", "url", "127.0.0.1 as an IPv4-mapped IPv6 address",
          (_ingest("loopback (embedded in ::ffff:7f00:1)"),), ref="http://[::ffff:127.0.0.1]:9200/"),
    Entry("url-ipv4-mapped-metadata", "url", "the metadata address as an IPv4-mapped IPv6 address",
          (_ingest("link-local (embedded in"),), ref="http://[::ffff:169.254.169.254]/"),
    Entry("url-ipv6-unspecified", "url", "[::]", (_ingest("(unspecified)"),), ref="http://[::]:9200/"),
    Entry("url-nat64", "url", "127.0.0.1 inside a NAT64 IPv6 address", (_ingest("loopback (embedded in 64:ff9b::7f00:1)"),),
          ref="http://[64:ff9b::7f00:1]:9200/"),
    Entry("url-ideographic-dots", "url", "127.0.0.1 written with ideographic full stops (IDNA maps them to dots)",
          (_ingest("(loopback)"),), ref="http://127\u30020\u30020\u30021:9200/"),
    Entry("url-invalid-idna", "url", "a host name IDNA refuses", (_ingest("invalid URL"),),
          ref="http://\u2460\u2461\u2466.0.0.1/"),
    Entry("url-no-host", "url", "http:/// with no host", (_ingest("no host in URL"),), ref="http:///photo.jpg"),
    Entry("url-unresolvable", "url", "a host under .invalid (never resolves, RFC 6761)",
          (_ingest("cannot resolve host"),), ref="http://no-such-host.invalid/a.jpg"),
    Entry("url-credentials", "url", "credentials in the URL", (_ingest("credentials in URL not allowed"),),
          ref="http://admin:secret@example.com/a.jpg"),
    Entry("redirect-to-metadata", "url", "an allow-listed host answering 302 to the metadata service",
          (_ingest("169.254.169.254 (link-local)"),), ref=R + "/redirect?to=http://169.254.169.254/latest/meta-data/"),
    Entry("redirect-to-private", "url", "an allow-listed host answering 302 to 10.0.0.1",
          (_ingest("10.0.0.1 (private)"),), ref=R + "/redirect?to=http://10.0.0.1/a.jpg"),
    Entry("redirect-to-loopback", "url", "an allow-listed host answering 302 to 127.0.0.1 (same machine)",
          (_ingest("127.0.0.1 (loopback)"),), ref=R + "/redirect?to=http://127.0.0.1:9200/"),
    Entry("redirect-to-localhost", "url", "an allow-listed host answering 302 to localhost",
          (_ingest("localhost resolves to"),), ref=R + "/redirect?to=http://localhost:6379/"),
    Entry("redirect-to-decimal-ip", "url", "an allow-listed host answering 302 to http://2130706433/",
          (_ingest("(loopback)"),), ref=R + "/redirect?to=http://2130706433:9200/"),
    Entry("redirect-to-file", "url", "an allow-listed host answering 302 to file:///etc/passwd",
          (_ingest("scheme not allowed: file"),), ref=R + "/redirect?to=file:///etc/passwd"),
    Entry("redirect-loop", "url", "a redirect to itself, for ever", (_ingest("too many redirects"),),
          ref=R + "/loop"),
    Entry("redirect-no-location", "url", "a 302 without a Location header",
          (_ingest("HTTP 302 without Location"),), ref=R + "/no-location"),
    Entry("url-html-as-jpeg", "url", "an HTML page served with Content-Type image/jpeg",
          (_ingest("unsupported format: html"),), ref=R + "/html.jpg"),
    Entry("url-huge-content-length", "url", "a response declaring Content-Length: 10 GB",
          (_ingest("too large: Content-Length"),), ref=R + "/huge.jpg"),
    Entry("url-endless-body", "url", "a JPEG header followed by an endless stream without Content-Length",
          (_ingest("too large: more than"),), ref=R + "/endless.jpg"),
    Entry("url-slow", "url", f"a server that answers nothing for {4 * FETCH_TIMEOUT_S} s",
          (_ingest("timed out"),), ref=R + "/slow.jpg"),
    Entry("url-404", "url", "a photo URL answering 404", (_ingest("HTTP 404"),), ref=R + "/missing.jpg"),
]  # fmt: skip

# ---- catalogue records: JSONL lines (ingest) and the same record posted to POST /products ----------------

DEEP = 100_000


def _deep(_ctx: Context) -> bytes:
    return b'{"id": "deep-nesting", "title": "Deep", "attributes": {"a": ' + b"[" * DEEP + b"]" * DEEP + b"}}"


RECORDS = [
    Entry("rec-missing-id", "record", "a record without an id",
          (_ingest("id: Field required"), _products("id: Field required")), lambda c: _line({"title": "No id"})),
    Entry("rec-empty-id", "record", "an id of three spaces",
          (_ingest("id is empty"), _products("id is empty")), lambda c: _line({"id": "   ", "title": "Blank id"})),
    Entry("rec-id-object", "record", 'an id that is an object ({"$gt": ""}, a NoSQL-injection shape)',
          (_ingest("id must be a string, got dict"), _products("id must be a string, got dict")),
          lambda c: _line({"id": {"$gt": ""}, "title": "Object id"})),
    Entry("rec-id-bool", "record", "an id that is true",
          (_ingest("id must be a string, got bool"), _products("id must be a string, got bool")),
          lambda c: _line({"id": True, "title": "Boolean id"})),
    Entry("rec-id-too-long", "record", "a 300-character id",
          (_ingest("id is 300 characters (limit 256)"), _products("id is 300 characters (limit 256)")),
          lambda c: _line({"id": "x" * 300, "title": "Long id"})),
    Entry("rec-id-nul", "record", "an id with a NUL and a bell character",
          (_ingest("id contains control characters"), _products("id contains control characters")),
          lambda c: _line({"id": "rec-id-nul\u0000\u0007", "title": "Control id"})),
    Entry("rec-id-bidi", "record", "an id with a right-to-left override (U+202E)",
          (_ingest("id contains control characters"), _products("id contains control characters")),
          lambda c: _line({"id": "rec-id-bidi\u202egpj.exe", "title": "Bidi id"})),
    Entry("rec-id-lone-surrogate", "record", "an id holding a lone UTF-16 surrogate (\\ud800)",
          (_ingest("id contains control characters"), _products("id contains control characters")),
          lambda c: b'{"id": "rec-id-lone-surrogate\\ud800", "title": "Surrogate id"}'),
    Entry("rec-duplicate-id", "record", "a second record with the id of a good one",
          (_ingest("duplicate id 'good-plain'"), _products("duplicate id 'good-plain'")),
          lambda c: _line({"id": "good-plain", "title": "Impostor of good-plain"}), dead_letter_id="good-plain"),
    Entry("rec-missing-title", "record", "a record without a title",
          (_ingest("title: Field required"), _products("title: Field required")),
          lambda c: _line({"id": "rec-missing-title"})),
    Entry("rec-title-number", "record", "a title that is a number",
          (_ingest("title must be a string, got int"), _products("title must be a string, got int")),
          lambda c: _line({"id": "rec-title-number", "title": 42})),
    Entry("rec-title-null", "record", "a title that is null",
          (_ingest("title must be a string, got NoneType"), _products("title must be a string, got NoneType")),
          lambda c: _line({"id": "rec-title-null", "title": None})),
    Entry("rec-title-controls-only", "record", "a title made only of control and zero-width characters",
          (_ingest("title is empty"), _products("title is empty")),
          lambda c: _line({"id": "rec-title-controls-only", "title": "\u0000\u0007\u200b\u202e\t"})),
    Entry("rec-title-10mb", "record", "a 10 MB title",
          (_ingest("title is 10485760 characters (limit 1000)"), _products("title is 10485760 characters")),
          lambda c: _line({"id": "rec-title-10mb", "title": "A" * (10 * MIB)})),
    Entry("rec-description-huge", "record", "a 250,000-character description",
          (_ingest("description is 250000 characters"), _products("description is 250000 characters")),
          _record("rec-description-huge", description="word " * 50_000)),
    Entry("rec-price-text", "record", 'a price of "twelve"',
          (_ingest("price must be a number, got 'twelve'"), _products("price must be a number")),
          _record("rec-price-text", price="twelve")),
    Entry("rec-price-negative", "record", "a price of -5",
          (_ingest("price must be a finite number >= 0"), _products("price must be a finite number >= 0")),
          _record("rec-price-negative", price=-5)),
    Entry("rec-price-nan", "record", "a price that is JSON NaN",
          (_ingest("price must be a finite number >= 0"), _products("price must be a finite number >= 0")),
          lambda c: b'{"id": "rec-price-nan", "title": "NaN price", "price": NaN}'),
    Entry("rec-price-infinity", "record", "a price of 1e999 (infinity once parsed)",
          (_ingest("price must be a finite number >= 0"), _products("price must be a finite number >= 0")),
          lambda c: b'{"id": "rec-price-infinity", "title": "Infinite price", "price": 1e999}'),
    Entry("rec-price-bool", "record", "a price that is true",
          (_ingest("price must be a number, got a boolean"), _products("price must be a number, got a boolean")),
          _record("rec-price-bool", price=True)),
    Entry("rec-currency", "record", 'a currency of "dollars"',
          (_ingest("currency must be a 3-letter code"), _products("currency must be a 3-letter code")),
          _record("rec-currency", currency="dollars")),
    Entry("rec-unknown-field", "record", "a field the format does not have (__proto__)",
          (_ingest("unknown field(s) ['__proto__']"), _products("unknown field(s) ['__proto__']")),
          _record("rec-unknown-field", __proto__={"admin": True})),
    Entry("rec-attributes-list", "record", "attributes that are a list",
          (_ingest("attributes must be an object"), _products("attributes must be an object")),
          _record("rec-attributes-list", attributes=["a", "b"])),
    Entry("rec-attributes-nested", "record", "an attribute whose value is a nested object",
          (_ingest("attributes.fit must be a string or a list of strings"), _products("attributes.fit must be")),
          _record("rec-attributes-nested", attributes={"fit": {"a": {"b": 1}}})),
    Entry("rec-colour-object", "record", "a colour that is an object",
          (_ingest("colour must be a string or a list of strings"), _products("colour must be a string")),
          _record("rec-colour-object", colour={"r": 255})),
    Entry("rec-too-many-images", "record", "21 photos (limit 20)",
          (_ingest("21 images (limit 20)"), _products("21 images (limit 20)")),
          _record("rec-too-many-images", images=[f"p{n}.jpg" for n in range(21)])),
    Entry("rec-category-objects", "record", "a category path list holding objects",
          (_ingest("category_path holds a dict"), _products("category_path holds a dict")),
          _record("rec-category-objects", category_path=[{"name": "Men"}])),
    Entry("rec-array", "record", "a JSON array instead of an object",
          (_ingest("a product must be an object, got list"), _products("products.1: expected a JSON object")),
          lambda c: b'["rec-array", "Array record"]'),
    Entry("rec-string", "record", "a JSON string instead of an object",
          (_ingest("a product must be an object, got str"), _products("products.1: expected a JSON object")),
          lambda c: b'"rec-string"'),
    Entry("rec-null", "record", "JSON null",
          (_ingest("a product must be an object, got NoneType"), _products("products.1: expected a JSON object")),
          lambda c: b"null"),
    Entry("rec-invalid-json", "record", "a line cut in the middle of an object",
          (_ingest("not valid JSON"), _products("the request body is not valid JSON")),
          lambda c: b'{"id": "rec-invalid-json", "title": '),
    Entry("rec-latin1", "record", "a record encoded in Latin-1 (\\xe9 for e-acute), not UTF-8",
          (_ingest("not valid UTF-8"), _products("the request body is not valid JSON: not UTF-8")),
          lambda c: b'{"id": "rec-latin1", "title": "Caf\xe9 cr\xe8me"}'),
    Entry("rec-deep-nesting", "record", f"attributes nested {DEEP:,} arrays deep",
          (_ingest("not valid JSON: nested too deeply"), _products("the request body is not valid JSON: nested too deeply")),
          _deep),
    Entry("rec-huge-integer", "record", "a price written with 5,001 digits",
          (_ingest("not valid JSON: Exceeds the limit (4300 digits)"), _products("Exceeds the limit (4300 digits)")),
          lambda c: b'{"id": "rec-huge-integer", "title": "Big number", "price": 1' + b"0" * 5000 + b"}"),
    Entry("rec-line-17mb", "record", "a 17 MB JSONL line (over the 16 MB line limit)",
          (_ingest("line is 17825"),),
          lambda c: _line({"id": "rec-line-17mb", "title": "Big", "description": "d" * (17 * MIB)})),
]  # fmt: skip

# records that are awkward but valid: indexed, cleaned
ACCEPTED_RECORDS = [
    Entry("rec-title-with-controls", "record", "a title with NUL, bell, zero-width and bidi characters inside",
          (Expect("ingest", "accepted"),),
          lambda c: _line({"id": "rec-title-with-controls", "title": "Trail\u0000 jacket\u0007 \u200bred\u202e"})),
    Entry("rec-title-with-html", "record", "a title with a script tag and entities",
          (Expect("ingest", "accepted"),),
          lambda c: _line({"id": "rec-title-with-html", "title": "<script>alert(1)</script>Rain &amp; wind shell"})),
]  # fmt: skip

# ---- CSV rows: one CSV catalogue with a header id,title,price,attributes ---------------------------------

CSV_HEADER = b"id,title,price,attributes\r\n"
CSV_GOOD = [
    b"csv-good-1,Merino wool hiking socks,12.5,",
    b'csv-good-2,Canvas tote bag,8,"{""colour"": ""Natural""}"',
]
CSV_ROWS = [
    Entry("csv-price-text", "csv-row", "a price cell holding text",
          (_ingest("price must be a number, got 'abc'"),), lambda c: b"csv-price-text,Price is text,abc,"),
    Entry("csv-missing-id", "csv-row", "an empty id cell",
          (_ingest("id: Field required"),), lambda c: b",Row without an id,10,"),
    Entry("csv-missing-title", "csv-row", "an empty title cell",
          (_ingest("title: Field required"),), lambda c: b"csv-missing-title,,10,"),
    Entry("csv-extra-columns", "csv-row", "a row with more cells than the header",
          (_ingest("more fields than the header names"),), lambda c: b"csv-extra-columns,Too many,1,,extra,more"),
    Entry("csv-latin1", "csv-row", "a row in Latin-1 inside a UTF-8 file (mixed encodings)",
          (_ingest("not valid UTF-8"),), lambda c: b"csv-latin1,Caf\xe9 cr\xe8me,3,"),
    Entry("csv-attributes-json", "csv-row", "an attributes cell that is not JSON",
          (_ingest("attributes is not a JSON object"),), lambda c: b'csv-attributes-json,Bad attributes,4,"{oops"'),
    Entry("csv-duplicate-id", "csv-row", "the id of an earlier row again",
          (_ingest("duplicate id 'csv-good-1'"),), lambda c: b"csv-good-1,Duplicate row,5,",
          dead_letter_id="csv-good-1"),
    Entry("csv-nul", "csv-row", "a NUL byte inside the id cell",
          (_ingest("id contains control characters"),), lambda c: b"csv-nul\x00,NUL in the id,6,"),
    Entry("csv-attributes-deep", "csv-row", "an attributes cell nested 100,000 arrays deep",
          (_ingest("attributes is not a JSON object: nested too deeply"),),
          lambda c: b'csv-attributes-deep,Deep attributes,4,"' + b"[" * DEEP + b"]" * DEEP + b'"'),
    Entry("csv-price-negative", "csv-row", "a negative price",
          (_ingest("price must be a finite number >= 0"),), lambda c: b"csv-price-negative,Negative,-5,"),
]  # fmt: skip

# ---- whole catalogue files given to `hybrid-search ingest` -----------------------------------------------

CATALOGUES = [
    Entry("cat-xlsx", "catalogue", "a spreadsheet (.xlsx, a ZIP)", (_cli("unknown catalogue format"),),
          lambda c: _zip({"[Content_Types].xml": b"<Types/>"}), name="products.xlsx"),
    Entry("cat-csv-without-id", "catalogue", "a CSV without id and title columns",
          (_cli("a CSV catalogue needs id and title columns"),), lambda c: b"name,price\r\nSocks,3\r\n",
          name="no-id.csv"),
    Entry("cat-random-csv", "catalogue", "8 kB of random bytes named .csv",
          (_cli("a CSV catalogue needs id and title columns"),), lambda c: _noise(8192, 4), name="random.csv"),
    Entry("cat-missing", "catalogue", "a catalogue path that does not exist", (_cli("does not exist"),),
          None, name="missing.jsonl"),
    Entry("cat-folder", "catalogue", "a folder that is not a Luma store folder",
          (_cli("is a folder without products_flat.csv"),), None, name="folder"),
    Entry("cat-zip-as-jsonl", "catalogue", "a ZIP archive named .jsonl", (_ingest("not valid"),),
          lambda c: _zip({"catalogue.jsonl": b'{"id": "zipped", "title": "Zipped"}\n' * 50}),
          name="archive.jsonl"),
    Entry("cat-utf16-jsonl", "catalogue", "a JSONL catalogue encoded in UTF-16", (_ingest("not valid"),),
          lambda c: '{"id": "utf16", "title": "Wide"}\n'.encode("utf-16"), name="wide.jsonl"),
]  # fmt: skip

ACCEPTED_CATALOGUES = [
    Entry("cat-csv-utf8-bom", "catalogue", "a CSV with a UTF-8 byte-order mark (what Excel writes)",
          (Expect("ingest", "accepted"),), lambda c: b"\xef\xbb\xbfid,title\r\nbom-csv-1,Excel export row\r\n",
          name="excel.csv"),
    Entry("cat-jsonl-utf8-bom", "catalogue", "a JSONL file starting with a UTF-8 byte-order mark",
          (Expect("ingest", "accepted"),), lambda c: b'\xef\xbb\xbf{"id": "bom-jsonl-1", "title": "Notepad export"}\n',
          name="notepad.jsonl"),
]  # fmt: skip

# ---- audio sent to POST /search/voice --------------------------------------------------------------------

AUDIO = [
    Entry("audio-zero-byte", "audio", "an empty upload", (_voice(422, "the audio file is empty"),), lambda c: b""),
    Entry("audio-png", "audio", "a PNG photo named .wav", (_voice(415, "unsupported audio"),),
          lambda c: c.image("PNG")),
    Entry("audio-html", "audio", "an HTML page named .mp3", (_voice(415, "unsupported audio"),), lambda c: HTML),
    Entry("audio-zip", "audio", "a ZIP archive named .ogg", (_voice(415, "unsupported audio"),),
          lambda c: _zip({"a.wav": _wav(0.5)})),
    Entry("audio-elf", "audio", "an executable named .wav", (_voice(415, "unsupported audio"),), lambda c: ELF),
    Entry("audio-wav-header-only", "audio", "a WAV header with no samples", (_voice(422, "too short"),),
          lambda c: _wav(0)),
    Entry("audio-wav-zero-channels", "audio", "a WAV header claiming 0 channels at 0 Hz",
          (_voice(422, "corrupt audio"),), lambda c: _wav_header(channels=0, rate=0, data_bytes=8000, body=_noise(8000, 5))),
    Entry("audio-wav-4ghz", "audio", "a WAV header claiming 4,294,967,295 samples per second",
          (_voice(422, "corrupt audio"),),
          lambda c: _wav_header(channels=1, rate=0xFFFFFFFF, data_bytes=8000, body=_noise(8000, 6))),
    Entry("audio-wav-lying-length", "audio", "a WAV header declaring 1 GB of data followed by 100 bytes",
          (_voice(422, "too short"),), lambda c: _wav_header(channels=1, rate=16000, data_bytes=2**30, body=_noise(100, 7))),
    Entry("audio-wav-garbage", "audio", "RIFF/WAVE magic followed by random bytes", (_voice(422, "corrupt audio"),),
          lambda c: b"RIFF\x00\x10\x00\x00WAVE" + _noise(4096, 8)),
    Entry("audio-silent", "audio", "one second of digital silence", (_voice(422, "no speech: the recording is silent"),),
          lambda c: _wav(1.0, amplitude=0.0)),
    Entry("audio-too-short", "audio", "a 50 ms beep", (_voice(422, "too short"),), lambda c: _wav(0.05)),
    Entry("audio-too-long", "audio", "a 20-second tone (limit 15 s)",
          (_voice(422, "too long: voice queries may last 15 seconds at most"),), lambda c: _wav(20.0)),
    Entry("audio-mp3-garbage", "audio", "an ID3 tag followed by zeros", (_voice(422, "audio"),),
          lambda c: b"ID3\x03\x00\x00\x00\x00\x00\x0a" + b"\x00" * 4096),
    Entry("audio-ogg-garbage", "audio", "OggS magic followed by random bytes", (_voice(422, "corrupt audio"),),
          lambda c: b"OggS" + _noise(4096, 9)),
    Entry("audio-webm-garbage", "audio", "the EBML (WebM) magic followed by random bytes",
          (_voice(422, "corrupt audio"),), lambda c: b"\x1a\x45\xdf\xa3" + _noise(4096, 10)),
    Entry("audio-flac-garbage", "audio", "fLaC magic followed by random bytes", (_voice(422, "corrupt audio"),),
          lambda c: b"fLaC" + _noise(4096, 11)),
    Entry("audio-m4a-garbage", "audio", "an MP4 ftyp box followed by random bytes", (_voice(422, "corrupt audio"),),
          lambda c: b"\x00\x00\x00\x18ftypM4A \x00\x00\x00\x00M4A mp42" + _noise(4096, 12)),
    Entry("audio-video-only", "audio", "a real MP4 video with no sound track",
          (_voice(422, "no audio: the mp4 file has no sound track"),), lambda c: _video_without_sound()),
    Entry("audio-oversized", "audio", "a 9 MB upload (limit 8 MB)", (_voice(413, "larger than 8192 KiB"),),
          lambda c: _wav_header(channels=1, rate=16000, data_bytes=9 * MIB, body=b"\x00" * (9 * MIB))),
]  # fmt: skip

# ---- request bodies: POST /search and POST /products -----------------------------------------------------

SEARCH_BODIES = [
    Entry("search-not-json", "search-body", "a body that is not JSON",
          (_search("the request body is not valid JSON"),), lambda c: b"{text: hoodie"),
    Entry("search-wrong-content-type", "search-body", "JSON sent as text/plain",
          (_search("takes a JSON body", 415),), lambda c: b'{"text": "hoodie"}', content_type="text/plain"),
    Entry("search-array", "search-body", "a JSON array instead of an object",
          (_search("expected a JSON object"),), lambda c: b'["hoodie"]'),
    Entry("search-text-number", "search-body", "text that is a number",
          (_search("text: Input should be a valid string"),), lambda c: b'{"text": 42}'),
    Entry("search-empty-text", "search-body", "an empty query", (_search("empty query"),), lambda c: b'{"text": ""}'),
    Entry("search-controls-only", "search-body", "a query made only of control characters",
          (_search("empty query"),), lambda c: b'{"text": "\\u0000\\u0007\\u200b"}'),
    Entry("search-text-10mb", "search-body", "a 10 MB query text",
          (_search("text: String should have at most 4000 characters"),),
          lambda c: b'{"text": "' + b"a" * (10 * MIB) + b'"}'),
    Entry("search-lone-surrogate", "search-body", "a query holding a lone UTF-16 surrogate",
          (_search("text: not valid Unicode text"),), lambda c: b'{"text": "rain \\ud800jacket"}'),
    Entry("search-unknown-field", "search-body", "a misspelt field", (_search("unknown field 'txt'"),),
          lambda c: b'{"txt": "hoodie"}'),
    Entry("search-unknown-filter", "search-body", "an unknown filter", (_search("unknown field"),),
          lambda c: b'{"text": "hoodie", "filters": {"colr": "red"}}'),
    Entry("search-nan-price", "search-body", "a NaN price filter",
          (_search("filters.price_max"),), lambda c: b'{"text": "hoodie", "filters": {"price_max": NaN}}'),
    Entry("search-size-huge", "search-body", "a page size of a million",
          (_search("size: Input should be less than or equal to 100"),), lambda c: b'{"text": "x", "size": 1000000}'),
    Entry("search-page-beyond-window", "search-body", "page 10,000",
          (_search("beyond the rank window"),), lambda c: b'{"text": "x", "page": 10000}'),
    Entry("search-bad-fusion", "search-body", "an unknown fusion method", (_search("fusion"),),
          lambda c: b'{"text": "x", "fusion": "max"}'),
    Entry("search-deep-nesting", "search-body", f"filters nested {DEEP:,} arrays deep",
          (_search("the request body is not valid JSON: nested too deeply"),),
          lambda c: b'{"text": "x", "filters": {"colour": ' + b"[" * DEEP + b"]" * DEEP + b"}}"),
    Entry("search-latin1", "search-body", "a body in Latin-1, not UTF-8",
          (_search("the request body is not valid JSON: not UTF-8"),), lambda c: b'{"text": "caf\xe9"}'),
    Entry("search-huge-integer", "search-body", "a page number with 5,001 digits",
          (_search("Exceeds the limit (4300 digits)"),), lambda c: b'{"text": "x", "page": 1' + b"0" * 5000 + b"}"),
    Entry("search-filter-controls", "search-body", "a colour filter made of a lone surrogate and a zero-width space",
          (_search("filters.colour values must be non-empty strings"),),
          lambda c: b'{"text": "x", "filters": {"colour": "\\ud800\\u200b"}}'),
    Entry("search-filter-many-values", "search-body", "a colour filter with 1,000 values",
          (_search("has 1000 values (limit 50)"),),
          lambda c: _line({"text": "x", "filters": {"colour": [f"c{n}" for n in range(1000)]}})),
]  # fmt: skip

# awkward but valid: the invisible characters are dropped and the rest is searched
ACCEPTED_SEARCH_BODIES = [
    Entry("search-text-with-controls", "search-body", "a query with NUL, zero-width and bidi characters inside",
          (Expect("api-search", "accepted", "", 200),), lambda c: b'{"text": "rain\\u0000 \\u200bjacket\\u202e"}'),
]  # fmt: skip

PRODUCTS_BODIES = [
    Entry("products-empty", "products-body", "an empty product list",
          (_products("products: List should have at least 1 item"),), lambda c: b'{"products": []}'),
    Entry("products-not-list", "products-body", "products that is a string",
          (_products("products: Input should be a valid list"),), lambda c: b'{"products": "all of them"}'),
    Entry("products-missing", "products-body", "an object without products",
          (_products("products is required"),), lambda c: b"{}"),
    Entry("products-too-many", "products-body", "1,001 products in one request (limit 1,000)",
          (_products("1001 products in one request (limit 1000)", 413),),
          lambda c: _line({"products": [{"id": f"p{n}", "title": "x"} for n in range(1001)]})),
    Entry("products-wrong-content-type", "products-body", "a form instead of JSON",
          (_products("takes a JSON body", 415),), lambda c: b"products=1",
          content_type="application/x-www-form-urlencoded"),
]  # fmt: skip

ENTRIES: list[Entry] = [*PHOTOS, *PHOTO_REFS, *URLS, *RECORDS, *ACCEPTED_RECORDS, *CSV_ROWS, *CATALOGUES,
                        *ACCEPTED_CATALOGUES, *AUDIO, *SEARCH_BODIES, *ACCEPTED_SEARCH_BODIES, *PRODUCTS_BODIES]  # fmt: skip

# the good records of the catalogue batch: each must be indexed whatever its neighbours are
GOOD_RECORDS: list[dict[str, Any]] = [
    {"id": "good-plain", "title": "Storm rain jacket", "price": 89.5, "colour": "Red",
     "category_path": "Men/Tops/Jackets"},
    {"id": "good-photo", "title": "Trail running shoe", "price": 120, "images": ["photos/good.jpg"]},
    {"id": "good-png", "title": "Wool beanie hat", "colour": ["Grey", "Black"], "images": ["photos/good.png"]},
    {"id": "good-unicode", "title": "Veste imperméable 雨衣 \u2013 légère", "brand": "Müller & Söhne"},
    {"id": "good-attributes", "title": "Yoga mat", "attributes": {"thickness": "6 mm", "eco": True}},
    {"id": "good-url-allowed", "title": "Camping lantern", "images": ["{redirector}/good.jpg"]},
    {"id": "good-redirect-allowed", "title": "Camping stove", "images": ["{redirector}/redirect?to=/good.jpg"]},
    {"id": "good-last", "title": "Insulated water bottle", "price": 25},
]  # fmt: skip


def entries(kind: str) -> list[Entry]:
    return [e for e in ENTRIES if e.kind == kind]


def manifest() -> dict[str, Any]:
    bad = [e for e in ENTRIES if e.bad]
    return {
        "about": "Bad-input corpus of hybrid-search: built by make_corpus.py at test time, pushed through "
        "the real paths by tests/integration/test_bad_inputs.py. Regenerate: python tests/corpus/make_corpus.py "
        "--manifest",
        "bad_inputs": len(bad),
        "entries": [e.manifest() for e in ENTRIES],
    }


def write_files(out: Path, ctx: Context) -> dict[str, Path]:
    """Every file of the corpus under ``out`` (photos, links, catalogues); returns entry id -> path."""
    import os

    out.mkdir(parents=True, exist_ok=True)
    (out / "photos").mkdir(exist_ok=True)
    (out / "links").mkdir(exist_ok=True)
    paths: dict[str, Path] = {}
    (out / "photos" / "good.jpg").write_bytes(ctx.image(size=(224, 224)))
    (out / "photos" / "good.png").write_bytes(ctx.image("PNG", (160, 120)))
    for entry in entries("photo"):
        assert entry.build is not None
        paths[entry.id] = out / "photos" / f"{entry.id}.jpg"
        paths[entry.id].write_bytes(entry.build(ctx))
    for name, target in (("passwd.jpg", "/etc/passwd"), ("zero.jpg", "/dev/zero")):
        link = out / "links" / name
        if not link.is_symlink():
            link.symlink_to(target)
    if not (out / "links" / "pipe.jpg").exists():
        os.mkfifo(out / "links" / "pipe.jpg")
    for entry in [*CATALOGUES, *ACCEPTED_CATALOGUES]:
        assert entry.name is not None
        paths[entry.id] = out / entry.name
        if entry.build is not None:
            paths[entry.id].write_bytes(entry.build(ctx))
        elif entry.id == "cat-folder":
            paths[entry.id].mkdir(exist_ok=True)
    for entry in entries("audio"):
        assert entry.build is not None
        paths[entry.id] = out / "audio" / f"{entry.id}.wav"
        paths[entry.id].parent.mkdir(exist_ok=True)
        paths[entry.id].write_bytes(entry.build(ctx))
    return paths


def main(argv: list[str]) -> int:
    if argv == ["--manifest"]:
        MANIFEST.write_text(json.dumps(manifest(), indent=1, ensure_ascii=False) + "\n")
        print(f"wrote {MANIFEST} ({len(ENTRIES)} entries)")
        return 0
    if len(argv) != 1:
        print(__doc__)
        return 2
    paths = write_files(Path(argv[0]), Context())
    print(f"wrote {len(paths)} files under {argv[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
