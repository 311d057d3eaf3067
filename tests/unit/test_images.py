"""Hostile and ordinary inputs to ``hybrid_search.media.images``: every refusal with its reason.

URL tests that must be refused never open a connection (``httpx.Client.send`` is made to fail). The
fetch tests that do connect talk only to a throwaway HTTP server on 127.0.0.1, admitted by ``allowlist``.
"""

from __future__ import annotations

import io
import struct
import threading
import zipfile
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from hybrid_search.errors import ValidationError

Image = pytest.importorskip("PIL.Image", reason="Pillow ships with the 'workers' extra")
httpx = pytest.importorskip("httpx")

from hybrid_search.media import images  # noqa: E402 - after the skips
from hybrid_search.media.images import fetch_image_url, load_image, sniff_format  # noqa: E402

pytestmark = pytest.mark.unit


def _encode(image: Any, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def _jpeg(size: tuple[int, int] = (64, 48), colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    return _encode(Image.new("RGB", size, colour), "JPEG", quality=90)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature + IHDR claiming ``width x height`` RGB, with almost no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + _png_chunk(b"IEND", b"")
    )


def _reason(info: pytest.ExceptionInfo[ValidationError]) -> str:
    return info.value.message


# ----------------------------------------------------------------------------------------- load_image


def test_html_is_refused_by_name() -> None:
    with pytest.raises(ValidationError) as info:
        load_image(b"  <!DOCTYPE html><html><body>Not found</body></html>")
    assert _reason(info).startswith("unsupported format: html")
    assert info.value.field == "image"


def test_zip_is_refused_by_name() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("image.jpg", _jpeg())
    with pytest.raises(ValidationError) as info:
        load_image(buffer.getvalue())
    assert _reason(info).startswith("unsupported format: zip")


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"%PDF-1.7\n", "pdf"),
        (b"<?xml version='1.0'?><svg xmlns='http://www.w3.org/2000/svg'/>", "svg"),
        (b"BM" + b"\x00" * 60, "bmp"),
        (b"II*\x00" + b"\x00" * 60, "tiff"),
        (b"\x00\x00\x00\x18ftypheic" + b"\x00" * 20, "heif"),
        (b"\x1f\x8b\x08\x00", "gzip"),
        (b"hello world", "text"),
        (bytes(range(200, 256)), "unknown"),
    ],
)
def test_other_kinds_are_named(data: bytes, kind: str) -> None:
    assert sniff_format(data) == kind
    with pytest.raises(ValidationError, match=f"^unsupported format: {kind} "):
        load_image(data)


def test_zero_bytes_are_refused() -> None:
    with pytest.raises(ValidationError, match=r"^empty"):
        load_image(b"")


def test_truncated_jpeg_is_refused() -> None:
    data = _encode(Image.effect_noise((256, 256), 64).convert("RGB"), "JPEG", quality=95)
    with pytest.raises(ValidationError, match=r"^corrupt jpeg"):
        load_image(data[: len(data) // 2])


def test_garbage_after_a_jpeg_signature_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"^corrupt jpeg"):
        load_image(b"\xff\xd8\xff" + b"\x00" * 64)


def test_png_bomb_header_is_refused_before_decoding() -> None:
    bomb = _png_header_only(20000, 20000)
    assert len(bomb) < 200
    with pytest.raises(ValidationError, match=r"^too many pixels"):
        load_image(bomb)


def test_pixel_limit_is_checked_from_the_header() -> None:
    # 5000 x 5000 is under PIL's own limit: this is our check, on the header, before any decoding
    with pytest.raises(ValidationError, match=r"^too many pixels: 5000x5000 = 25000000 > 1000000"):
        load_image(_png_header_only(5000, 5000), max_pixels=1_000_000)


def test_byte_limit(tmp_path: Path) -> None:
    data = _jpeg()
    with pytest.raises(ValidationError, match=r"^too large"):
        load_image(data, max_bytes=len(data) - 1)
    path = tmp_path / "photo.jpg"
    path.write_bytes(data)
    with pytest.raises(ValidationError, match=r"^too large"):
        load_image(path, max_bytes=len(data) - 1)
    assert load_image(path, max_bytes=len(data)).size == (64, 48)


def test_missing_file() -> None:
    with pytest.raises(ValidationError, match=r"^not found"):
        load_image(Path("/nonexistent/photo.jpg"))


def test_exif_orientation_is_applied() -> None:
    # 40 x 20, red left half, blue right half, stored with orientation 6 ("rotate 90 degrees clockwise")
    landscape = Image.new("RGB", (40, 20), (0, 0, 255))
    landscape.paste(Image.new("RGB", (20, 20), (255, 0, 0)), (0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6
    loaded = load_image(_encode(landscape, "JPEG", quality=95, exif=exif))
    assert loaded.size == (20, 40)
    assert loaded.mode == "RGB"
    top = loaded.getpixel((10, 5))
    bottom = loaded.getpixel((10, 35))
    assert isinstance(top, tuple) and isinstance(bottom, tuple)
    assert top[0] > 200 and top[2] < 60  # the left (red) half is now on top
    assert bottom[2] > 200 and bottom[0] < 60


def test_gif_gives_its_first_frame_as_rgb() -> None:
    frames = [Image.new("RGB", (16, 16), (255, 0, 0)), Image.new("RGB", (16, 16), (0, 0, 255))]
    data = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    loaded = load_image(data)
    assert loaded.mode == "RGB"
    assert loaded.getpixel((8, 8)) == (255, 0, 0)


def test_transparent_png_is_flattened_onto_white() -> None:
    image = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    image.paste(Image.new("RGBA", (4, 4), (0, 128, 0, 255)), (3, 3))
    loaded = load_image(_encode(image, "PNG"))
    assert loaded.mode == "RGB"
    assert loaded.getpixel((0, 0)) == (255, 255, 255)
    assert loaded.getpixel((4, 4)) == (0, 128, 0)


def test_webp_and_grayscale_jpeg_load_as_rgb() -> None:
    from PIL import features

    grey = load_image(_encode(Image.new("L", (8, 6), 100), "JPEG"))
    assert (grey.mode, grey.size) == ("RGB", (8, 6))
    if not features.check("webp"):
        pytest.skip("this Pillow build has no WebP codec")
    webp = load_image(_encode(Image.new("RGB", (12, 10), (0, 200, 0)), "WEBP", lossless=True))
    assert (webp.mode, webp.size, webp.getpixel((5, 5))) == ("RGB", (12, 10), (0, 200, 0))


def test_16_bit_greyscale_png_is_scaled_not_clipped() -> None:
    ramp = Image.new("I;16", (4, 1))
    for x, value in enumerate((0, 257 * 64, 257 * 128, 65535)):
        ramp.putpixel((x, 0), value)
    loaded = load_image(_encode(ramp, "PNG"))
    assert [loaded.getpixel((x, 0)) for x in range(4)] == [
        (0, 0, 0),
        (64, 64, 64),
        (128, 128, 128),
        (255, 255, 255),
    ]


def test_a_png_named_jpeg_is_decoded_by_what_it_is(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(_encode(Image.new("RGB", (5, 5), (1, 2, 3)), "PNG"))
    assert load_image(path).getpixel((2, 2)) == (1, 2, 3)


# ----------------------------------------------------------------------------------------- URL refusals


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a refused URL must not be requested")

    monkeypatch.setattr(httpx.Client, "send", refuse)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("file:///etc/passwd", "scheme not allowed: file"),
        ("ftp://example.com/photo.jpg", "scheme not allowed: ftp"),
        ("gopher://example.com/", "scheme not allowed: gopher"),
        ("data:image/png;base64,AAAA", "scheme not allowed"),
        ("http://127.0.0.1/photo.jpg", "address not allowed: 127.0.0.1 resolves to 127.0.0.1 (loopback)"),
        (
            "http://localhost:8080/photo.jpg",
            "address not allowed: localhost resolves to 127.0.0.1 (loopback)",
        ),
        ("http://10.0.0.7/photo.jpg", "address not allowed: 10.0.0.7 resolves to 10.0.0.7 (private)"),
        ("http://192.168.1.1/", "(private)"),
        ("http://172.16.5.4/", "(private)"),
        ("http://100.64.0.1/", "(not globally routable)"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 (link-local)"),
        ("http://[::1]/photo.jpg", "resolves to ::1 (loopback)"),
        ("http://[::ffff:127.0.0.1]/", "(loopback (embedded in ::ffff:7f00:1))"),
        ("http://[::ffff:169.254.169.254]/", "(link-local (embedded in"),
        ("http://[fe80::1]/", "(link-local)"),
        ("http://[fd00::1]/", "(private)"),
        ("http://0.0.0.0/", "(unspecified)"),
        ("http://224.0.0.1/", "(multicast)"),
        ("http://2130706433/", "resolves to 127.0.0.1 (loopback)"),
        ("http://0x7f.1/", "resolves to 127.0.0.1 (loopback)"),
        ("http://user:secret@example.com/photo.jpg", "credentials in URL not allowed"),
        ("not a url", "scheme not allowed"),
    ],
)
def test_dangerous_urls_are_refused_without_a_request(no_network: None, url: str, reason: str) -> None:
    with pytest.raises(ValidationError) as info:
        fetch_image_url(url)
    assert reason in _reason(info)
    assert info.value.field == "url"


def test_allowlisted_network_admits_only_itself(no_network: None) -> None:
    with pytest.raises(ValidationError, match="address not allowed"):
        fetch_image_url("http://10.0.0.7/", allowlist=["127.0.0.0/8"])


# ----------------------------------------------------------------------------------------- fetching


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    hosts_seen: list[str]
    photo: bytes


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if "Content-Length" not in (headers or {}) and status != 204:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.server.hosts_seen.append(self.headers.get("Host", ""))
        path = self.path
        if path == "/photo.jpg":
            self._send(200, self.server.photo, {"Content-Type": "image/jpeg"})
        elif path == "/page":
            self._send(
                200, b"<!doctype html><html>" + b"x" * 100 + b"</html>", {"Content-Type": "image/jpeg"}
            )
        elif path == "/big":
            self._send(200, b"\xff\xd8\xff" + b"\x00" * 100_000)
        elif path == "/big-no-length":  # HTTP/1.0 close-delimited body: no Content-Length to check first
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"\xff\xd8\xff" + b"\x00" * 100_000)
        elif path.startswith("/hop/"):
            remaining = int(path.rsplit("/", 1)[1])
            target = "/photo.jpg" if remaining == 0 else f"/hop/{remaining - 1}"
            self._send(302, headers={"Location": target})
        elif path == "/to-metadata":
            self._send(302, headers={"Location": "http://169.254.169.254/latest/meta-data/"})
        elif path == "/to-file":
            self._send(301, headers={"Location": "file:///etc/passwd"})
        else:
            self._send(404, b"not here")


@pytest.fixture
def server() -> Iterator[_Server]:
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.hosts_seen = []
    httpd.photo = _jpeg((30, 20))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _base(server: _Server, host: str = "127.0.0.1") -> str:
    return f"http://{host}:{server.server_address[1]}"


LOOPBACK = ("127.0.0.0/8",)


def test_fetch_from_an_allowlisted_host(server: _Server) -> None:
    data = fetch_image_url(_base(server) + "/photo.jpg", allowlist=LOOPBACK)
    assert data == server.photo
    assert load_image(data).size == (30, 20)


def test_loopback_is_refused_without_the_allowlist(server: _Server) -> None:
    with pytest.raises(ValidationError, match="address not allowed"):
        fetch_image_url(_base(server) + "/photo.jpg")
    assert server.hosts_seen == []
    assert fetch_image_url(_base(server) + "/photo.jpg", allow_private=True) == server.photo


def test_connection_goes_to_the_checked_address_with_the_original_host(
    server: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "photos.invalid" cannot resolve: the fetch only works because the checked address is pinned and
    # used for the connection, while the Host header still names the original host.
    real_resolve = images._resolve

    def resolve(host: str, port: int) -> list[Any]:
        return real_resolve("127.0.0.1" if host == "photos.invalid" else host, port)

    monkeypatch.setattr(images, "_resolve", resolve)
    port = server.server_address[1]
    data = fetch_image_url(f"http://photos.invalid:{port}/photo.jpg", allowlist=LOOPBACK)
    assert data == server.photo
    assert server.hosts_seen == [f"photos.invalid:{port}"]


def test_redirects_are_followed_up_to_three(server: _Server) -> None:
    assert fetch_image_url(_base(server) + "/hop/2", allowlist=LOOPBACK) == server.photo
    with pytest.raises(ValidationError, match=r"^too many redirects"):
        fetch_image_url(_base(server) + "/hop/3", allowlist=LOOPBACK)


def test_every_redirect_hop_is_checked(server: _Server) -> None:
    with pytest.raises(ValidationError, match=r"address not allowed: 169\.254\.169\.254"):
        fetch_image_url(_base(server) + "/to-metadata", allowlist=LOOPBACK)
    with pytest.raises(ValidationError, match=r"^scheme not allowed: file"):
        fetch_image_url(_base(server) + "/to-file", allowlist=LOOPBACK)


def test_a_page_is_refused_after_its_first_bytes(server: _Server) -> None:
    with pytest.raises(ValidationError, match=r"^unsupported format: html"):
        fetch_image_url(_base(server) + "/page", allowlist=LOOPBACK)


@pytest.mark.parametrize("path", ["/big", "/big-no-length"])
def test_body_is_capped(server: _Server, path: str) -> None:
    with pytest.raises(ValidationError, match=r"^too large"):
        fetch_image_url(_base(server) + path, allowlist=LOOPBACK, max_bytes=10_000)


def test_http_errors_are_reported(server: _Server) -> None:
    with pytest.raises(ValidationError, match=r"^HTTP 404"):
        fetch_image_url(_base(server) + "/missing", allowlist=LOOPBACK)


def test_nothing_listening_is_a_fetch_failure(server: _Server) -> None:
    port = server.server_address[1]
    server.shutdown()
    server.server_close()
    with pytest.raises(ValidationError, match=r"^(fetch failed|timed out)"):
        fetch_image_url(f"http://127.0.0.1:{port}/photo.jpg", allowlist=LOOPBACK, timeout=2)
