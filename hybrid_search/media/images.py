"""Safe image input: bytes or a file -> checked RGB ``PIL.Image``, and a guarded URL fetcher.

:func:`load_image`
    1. size cap on the raw bytes (``max_bytes``), read no further than the cap;
    2. format sniffed from magic bytes: JPEG, PNG, WebP and GIF are accepted (GIF and animated WebP: the
       first frame); anything else - HTML, ZIP, PDF, SVG, BMP, TIFF, HEIC... - is refused, naming what it is;
       PIL is then only allowed the sniffed decoder (``Image.open(..., formats=[...])``);
    3. decompression-bomb guard: ``Image.open`` reads only the header, and ``width * height`` is checked
       against ``max_pixels`` *before* any pixel is decoded. PIL's own global ``Image.MAX_IMAGE_PIXELS``
       check is left as it is (never mutated); when it fires first its error is reported the same way;
    4. decoding; truncated or corrupt data is refused (PIL's global ``ImageFile.LOAD_TRUNCATED_IMAGES``
       is not touched: with its default ``False``, a truncated file raises);
    5. EXIF orientation applied (``ImageOps.exif_transpose``), transparency flattened onto white (catalogue
       backgrounds), 16-bit greyscale scaled to 8 bits, converted to RGB.

:func:`fetch_image_url` downloads image bytes from an untrusted URL without becoming an SSRF proxy:
    * ``http``/``https`` only, no credentials in the URL;
    * the host is resolved once and *every* address it resolves to must be public: loopback, private
      (RFC 1918, ULA), link-local (incl. the cloud metadata address 169.254.169.254), CGNAT, multicast,
      reserved, unspecified and documentation ranges are refused, for IPv4 and IPv6, including IPv4-mapped
      (``::ffff:127.0.0.1``), NAT64 (``64:ff9b::/96``), 6to4 and Teredo addresses of such IPv4 addresses.
      Numeric tricks (``http://2130706433/``, ``0x7f.1``) resolve to the address they denote and are caught;
    * ``allow_private=True`` turns the address check off; ``allowlist`` admits named hosts (exact,
      case-insensitive) or networks (``"10.1.0.0/16"``) without turning it off for others;
    * the connection goes to the checked address (DNS pinning): the URL's host is replaced by the IP while
      the ``Host`` header and the TLS SNI / certificate hostname stay the original name (httpcore's
      ``sni_hostname`` extension), so a DNS answer that changes between check and connect (rebinding)
      cannot redirect the request;
    * redirects are followed by hand, at most ``max_redirects`` (3), and each hop is checked as above;
    * the body is streamed with a byte cap (``Content-Length`` is checked first when sent), an overall
      deadline, and the first bytes are sniffed so that a large HTML page is refused early;
    * environment proxies are ignored (``trust_env=False``): through a proxy the address check would mean
      nothing.

    Residual risk: the address check trusts the resolver of this host; a service on a *public* address
    that trusts requests by source IP is not protected (nothing here can know that).

Every refusal is a :class:`hybrid_search.errors.ValidationError` whose message starts with the reason.
"""

from __future__ import annotations

import io
import ipaddress
import os
import socket
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from hybrid_search.errors import ConfigurationError, ValidationError

if TYPE_CHECKING:
    import httpx
    from PIL import Image

DEFAULT_MAX_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_TIMEOUT = 10.0
MAX_REDIRECTS = 3

ACCEPTED_FORMATS = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "gif": "GIF"}
_REDIRECT_STATUSES = (301, 302, 303, 307, 308)
_SNIFF_BYTES = 32

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


# --------------------------------------------------------------------------------------------- sniffing


def sniff_format(data: bytes) -> str:
    """What ``data`` is, from its first bytes: ``jpeg``, ``png``, ``webp``, ``gif`` (accepted) or other.

    Other kinds named: ``empty``, ``html``, ``xml``, ``svg``, ``zip``, ``gzip``, ``pdf``, ``bmp``, ``tiff``,
    ``ico``, ``heif``, ``avif``, ``jpeg2000``, ``psd``, ``riff``, ``text`` and ``unknown``.
    """
    if not data:
        return "empty"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:4] == b"RIFF":
        return "riff"
    if data.startswith((b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")):
        return "zip"
    if data.startswith(b"\x1f\x8b"):
        return "gzip"
    if data.startswith(b"%PDF"):
        return "pdf"
    if data.startswith(b"BM"):
        return "bmp"
    if data.startswith((b"II*\x00", b"MM\x00*")):
        return "tiff"
    if data.startswith(b"\x00\x00\x01\x00"):
        return "ico"
    if data.startswith(b"8BPS"):
        return "psd"
    if data.startswith(b"\x00\x00\x00\x0cjP  ") or data.startswith(b"\xff\x4f\xff\x51"):
        return "jpeg2000"
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in (b"avif", b"avis"):
            return "avif"
        if brand in (b"heic", b"heix", b"hevc", b"hevx", b"mif1", b"msf1"):
            return "heif"
        return "video"
    head = data[:512].lstrip(b"\xef\xbb\xbf \t\r\n\x0c").lower()
    if head.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<script", b"<!--")):
        return "html"
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in data[:4096].lower()):
        return "svg"
    if head.startswith(b"<?xml"):
        return "xml"
    if head.startswith(b"<"):
        return "html"
    if all(32 <= byte < 127 or byte in (9, 10, 13) for byte in data[:512]):
        return "text"
    return "unknown"


def _refuse_format(kind: str, field: str) -> ValidationError:
    if kind == "empty":
        return ValidationError("empty: no image data", field)
    return ValidationError(f"unsupported format: {kind} (expected JPEG, PNG, WebP or GIF)", field)


# --------------------------------------------------------------------------------------------- loading


def _read_source(source: bytes | bytearray | memoryview | str | os.PathLike[str], max_bytes: int) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if len(data) > max_bytes:
            raise ValidationError(f"too large: {len(data)} bytes > {max_bytes}", "image")
        return data
    if not isinstance(source, (str, os.PathLike)):
        raise ValidationError(f"image source must be bytes or a path, got {type(source).__name__}", "image")
    path = Path(source)
    try:
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except FileNotFoundError as exc:
        raise ValidationError(f"not found: {path}", "image") from exc
    except OSError as exc:
        raise ValidationError(f"unreadable: {path}: {exc.strerror or exc}", "image") from exc
    if len(data) > max_bytes:
        raise ValidationError(f"too large: more than {max_bytes} bytes", "image")
    return data


def load_image(
    source: bytes | bytearray | memoryview | str | os.PathLike[str],
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Image.Image:
    """Decode ``source`` (raw bytes or a file path) into a checked, upright RGB image (see module docstring).

    Raises :class:`ValidationError` (``field="image"``) whose message starts with the reason:
    ``empty``, ``too large``, ``unsupported format: <kind>``, ``too many pixels``, ``corrupt``, ``not found``.
    """
    from PIL import Image as PILImage
    from PIL import ImageOps, UnidentifiedImageError

    if max_bytes < 1 or max_pixels < 1:
        raise ConfigurationError("max_bytes and max_pixels must be positive")
    data = _read_source(source, max_bytes)
    kind = sniff_format(data)
    if kind not in ACCEPTED_FORMATS:
        raise _refuse_format(kind, "image")
    try:
        image = PILImage.open(io.BytesIO(data), formats=[ACCEPTED_FORMATS[kind]])
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as exc:
        raise ValidationError(f"too many pixels: {exc}", "image") from exc
    except UnidentifiedImageError as exc:  # its message names a BytesIO object's address
        raise ValidationError(
            f"corrupt {kind}: no readable {kind} image after its signature", "image"
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ValidationError(f"corrupt {kind}: {exc}", "image") from exc
    with image:
        width, height = image.size
        if width < 1 or height < 1:
            raise ValidationError(f"corrupt {kind}: size {width}x{height}", "image")
        if width * height > max_pixels:
            raise ValidationError(
                f"too many pixels: {width}x{height} = {width * height} > {max_pixels}", "image"
            )
        try:
            image.seek(0)
            image.load()
            upright = ImageOps.exif_transpose(image)
        except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as exc:
            raise ValidationError(f"too many pixels: {exc}", "image") from exc
        except (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError) as exc:
            raise ValidationError(f"corrupt {kind}: {exc}", "image") from exc
        return _to_rgb(upright)


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB, with any transparency composited onto white and 16-bit greyscale scaled (not clipped) to 8 bits."""
    from PIL import Image as PILImage

    if image.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N"):  # 16-bit greyscale PNG
        return image.convert("I").point(lambda value: value * (1 / 257)).convert("L").convert("RGB")

    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        background = PILImage.new("RGBA", rgba.size, (255, 255, 255, 255))
        return PILImage.alpha_composite(background, rgba).convert("RGB")
    if image.mode == "RGB":
        return image.copy() if image.readonly else image
    return image.convert("RGB")


# --------------------------------------------------------------------------------------------- URLs


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in ipaddress.IPv6Network("64:ff9b::/96") or address in ipaddress.IPv6Network("64:ff9b:1::/48"):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def address_refusal(address: IPAddress) -> str | None:
    """Why ``address`` must not be fetched from (``"loopback"``, ``"private"``...), or ``None`` if public."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            return "scoped IPv6"
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            reason = address_refusal(embedded)
            if reason is not None:
                return f"{reason} (embedded in {address})"
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
    )
    for reason, flagged in checks:
        if flagged:
            return reason
    if not address.is_global:
        return "not globally routable"
    return None


def _parse_allowlist(allowlist: Iterable[str | IPNetwork]) -> tuple[set[str], list[IPNetwork]]:
    hosts: set[str] = set()
    networks: list[IPNetwork] = []
    for entry in allowlist:
        if isinstance(entry, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
            networks.append(entry)
            continue
        text = str(entry).strip()
        try:
            networks.append(ipaddress.ip_network(text.strip("[]"), strict=False))
        except ValueError:
            hosts.add(text.lower().rstrip("."))
    return hosts, networks


def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError) as exc:
        raise ValidationError(f"cannot resolve host {host!r}: {exc}", "url") from exc
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        raw = str(sockaddr[0]).split("%", 1)[0]
        address = ipaddress.ip_address(raw)
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise ValidationError(f"cannot resolve host {host!r}", "url")
    return addresses


def _check_url(
    url: httpx.URL, *, allow_private: bool, hosts: set[str], networks: list[IPNetwork]
) -> tuple[IPAddress, str]:
    """Check scheme, credentials and every resolved address; return the address to connect to and the host."""
    if url.scheme not in ("http", "https"):
        raise ValidationError(f"scheme not allowed: {url.scheme or 'none'} (http and https only)", "url")
    if url.userinfo:
        raise ValidationError("credentials in URL not allowed", "url")
    raw_host = url.raw_host.decode("ascii")
    if not raw_host:
        raise ValidationError("no host in URL", "url")
    host = raw_host.strip("[]").lower().rstrip(".")
    port = url.port or (443 if url.scheme == "https" else 80)
    addresses = _resolve(host, port)
    if allow_private or host in hosts:
        return addresses[0], host
    for address in addresses:
        if any(address in network for network in networks if network.version == address.version):
            continue
        reason = address_refusal(address)
        if reason is not None:
            raise ValidationError(f"address not allowed: {host} resolves to {address} ({reason})", "url")
    return addresses[0], host


def _pinned_request(client: httpx.Client, url: httpx.URL, address: IPAddress, host: str) -> httpx.Request:
    """A GET to ``address`` with the original ``Host`` header and TLS server name (DNS pinning)."""
    ip_host = str(address)
    pinned = url.copy_with(host=ip_host)
    default_port = 443 if url.scheme == "https" else 80
    host_header = url.raw_host.decode("ascii")
    if url.port is not None and url.port != default_port:
        host_header = f"{host_header}:{url.port}"
    headers = {"Host": host_header, "Accept": "image/*", "Accept-Encoding": "identity"}
    extensions = {"sni_hostname": host} if url.scheme == "https" else {}
    return client.build_request("GET", pinned, headers=headers, extensions=extensions)


def fetch_image_url(
    url: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    max_bytes: int = DEFAULT_MAX_BYTES,
    allow_private: bool = False,
    allowlist: Iterable[str | IPNetwork] = (),
    max_redirects: int = MAX_REDIRECTS,
) -> bytes:
    """Download the image at ``url`` (guarded: see the module docstring) and return its raw bytes.

    Pass the bytes to :func:`load_image`. ``timeout`` bounds each network operation and the whole fetch.
    Raises :class:`ValidationError` (``field="url"``) whose message starts with the reason:
    ``scheme not allowed``, ``address not allowed``, ``cannot resolve host``, ``too many redirects``,
    ``too large``, ``unsupported format: <kind>``, ``HTTP <status>``, ``timed out``, ``fetch failed``.
    """
    import httpx

    if timeout <= 0 or max_bytes < 1 or max_redirects < 0:
        raise ConfigurationError("timeout, max_bytes and max_redirects must be positive")
    try:
        current = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise ValidationError(f"invalid URL: {exc}", "url") from exc
    hosts, networks = _parse_allowlist(allowlist)
    deadline = time.monotonic() + timeout
    try:
        with httpx.Client(
            timeout=httpx.Timeout(timeout), follow_redirects=False, trust_env=False, verify=True
        ) as client:
            for _hop in range(max_redirects + 1):
                address, host = _check_url(
                    current, allow_private=allow_private, hosts=hosts, networks=networks
                )
                request = _pinned_request(client, current, address, host)
                response = client.send(request, stream=True)
                try:
                    if response.status_code in _REDIRECT_STATUSES:
                        location = response.headers.get("location")
                        if not location:
                            raise ValidationError(f"HTTP {response.status_code} without Location", "url")
                        current = current.join(location)
                        continue
                    if response.status_code != 200:
                        raise ValidationError(f"HTTP {response.status_code} from {host}", "url")
                    return _read_capped(response, max_bytes=max_bytes, deadline=deadline)
                finally:
                    response.close()
            raise ValidationError(f"too many redirects: more than {max_redirects}", "url")
    except httpx.TimeoutException as exc:
        raise ValidationError(f"timed out: {exc}", "url") from exc
    except httpx.HTTPError as exc:
        raise ValidationError(f"fetch failed: {type(exc).__name__}: {exc}", "url") from exc


def _read_capped(response: httpx.Response, *, max_bytes: int, deadline: float) -> bytes:
    declared = response.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > max_bytes:
        raise ValidationError(f"too large: Content-Length {declared} > {max_bytes}", "url")
    body = bytearray()
    sniffed = False
    for chunk in response.iter_bytes():
        body.extend(chunk)
        if len(body) > max_bytes:
            raise ValidationError(f"too large: more than {max_bytes} bytes", "url")
        if not sniffed and len(body) >= _SNIFF_BYTES:
            sniffed = True
            kind = sniff_format(bytes(body))
            if kind not in ACCEPTED_FORMATS:
                raise _refuse_format(kind, "url")
        if time.monotonic() > deadline:
            raise ValidationError("timed out: download exceeded the overall deadline", "url")
    data = bytes(body)
    kind = sniff_format(data)
    if kind not in ACCEPTED_FORMATS:
        raise _refuse_format(kind, "url")
    return data
