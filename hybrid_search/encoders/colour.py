"""Colour encoders: an HSV histogram of the product photo, background dropped (numpy + PIL, no torch).

Catalogue photos sit on white; a plain colour histogram of the product itself finds the same item in
another view far better than CNN features, while CNN features find the same kind of product (measured on the
Luma photos by ``benchmarks/photos.py``). Blend them at query time rather than pick one.

Two encoders, by name (``get_encoder``):

``colour``             ``colour-hsv-8x8x8``: 8 hue x 8 saturation x 8 value bins, cosine of the histograms (512-d).
``colour-hellinger``   ``colour-hsv-16x8x8-sqrt``: 16 hue bins, and the square root of the histogram (1024-d), so
                       the inner product of two vectors is the Bhattacharyya coefficient sum_b sqrt(p_b q_b)
                       (Hellinger kernel). The square root keeps a few dominant bins (the garment's own colour,
                       a model's skin) from swamping the rest, which finds the same item more often on its own
                       (``benchmarks/photos.py``). The default colour encoder.

Algorithm (``version`` names it; change the constants and the version changes):

1. the image is reduced to at most 128 px on its long side (box filter) - a histogram needs no more;
2. pixels with every RGB channel >= ``white_threshold`` (default 240) are dropped as background;
   if that drops every pixel (a white product on white), all pixels are kept;
3. each remaining pixel is binned by PIL's HSV (0..255 per channel) into ``H x S x V`` bins,
   index ``(h * S + s) * V + v``;
4. the counts are L1-normalised (a distribution, independent of image size), raised to ``power`` (1 or 0.5),
   then L2-normalised so the inner product of two vectors is their cosine similarity.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from hybrid_search.encoders.base import DEFAULT_IMAGE_BATCH_SIZE, BatchedEncoder, l2_normalize
from hybrid_search.errors import ConfigurationError, ValidationError

if TYPE_CHECKING:
    from PIL import Image

COLOUR_NAME = "colour-hsv-8x8x8"
BINS = 8
HELLINGER_BINS = (16, 8, 8)
_MAX_SIDE = 128


def colour_histogram(
    image: Image.Image,
    *,
    white_threshold: int = 240,
    bins: tuple[int, int, int] = (BINS, BINS, BINS),
    power: float = 1.0,
) -> NDArray[np.float32]:
    """The HSV histogram of ``image`` (``bins`` = hue, saturation, value counts), near-white pixels dropped.

    L1-normalised, each bin raised to ``power``, then L2-normalised. Defaults: 8x8x8, power 1 (512-d).
    """
    from PIL import Image as PILImage

    rgb = image if image.mode == "RGB" else image.convert("RGB")
    if max(rgb.size) > _MAX_SIDE:
        rgb = rgb.copy()
        rgb.thumbnail((_MAX_SIDE, _MAX_SIDE), PILImage.Resampling.BOX)
    rgb_pixels = np.asarray(rgb, dtype=np.uint8).reshape(-1, 3)
    hsv_pixels = np.asarray(rgb.convert("HSV"), dtype=np.uint8).reshape(-1, 3)
    keep = ~np.all(rgb_pixels >= white_threshold, axis=1)
    if keep.any():
        hsv_pixels = hsv_pixels[keep]
    hue, sat, val = bins
    quantised = hsv_pixels.astype(np.int64) * np.array(bins, dtype=np.int64) // 256
    index = (quantised[:, 0] * sat + quantised[:, 1]) * val + quantised[:, 2]
    counts = np.bincount(index, minlength=hue * sat * val).astype(np.float64)
    total = counts.sum()
    if total > 0:
        counts /= total
    if power != 1.0:
        counts = counts**power
    return l2_normalize(counts.astype(np.float32))


class ColourHistogramEncoder(BatchedEncoder["Image.Image"]):
    """Encoder wrapper around :func:`colour_histogram`: 8x8x8 cosine (512-d) unless told otherwise.

    ``hellinger=True``: 16x8x8 bins and the square root of the histogram (1024-d, module docstring).
    """

    modality = "image"

    def __init__(
        self,
        *,
        batch_size: int = DEFAULT_IMAGE_BATCH_SIZE,
        white_threshold: int = 240,
        hellinger: bool = False,
    ) -> None:
        super().__init__(batch_size=batch_size)
        if not 0 < white_threshold <= 256:
            raise ConfigurationError(f"white_threshold must be in 1..256, got {white_threshold}")
        self.white_threshold = white_threshold
        self.hellinger = hellinger
        self.bins = HELLINGER_BINS if hellinger else (BINS, BINS, BINS)
        self.power = 0.5 if hellinger else 1.0

    @property
    def name(self) -> str:
        if self.hellinger:
            return "colour-hsv-{}x{}x{}-sqrt".format(*self.bins)
        return COLOUR_NAME

    @property
    def version(self) -> str:
        return f"v1-w{self.white_threshold}-max{_MAX_SIDE}"

    @property
    def dim(self) -> int:
        return int(np.prod(self.bins))

    def _check_item(self, item: object, index: int) -> Image.Image:
        from PIL import Image as PILImage

        if not isinstance(item, PILImage.Image):
            raise ValidationError(
                f"image item {index} is a {type(item).__name__}, not a PIL image (use hybrid_search.media.images)",
                "items",
            )
        return item

    def _embed_batch(self, items: list[Image.Image]) -> NDArray[Any]:
        return np.stack(
            [
                colour_histogram(item, white_threshold=self.white_threshold, bins=self.bins, power=self.power)
                for item in items
            ]
        )
