"""Feature-level fusion: one vector for a text embedding and an image embedding together.

    fused = sqrt(w) * t  ⊕  sqrt(1 - w) * i          (⊕ = concatenation, w = ``text_weight`` in [0, 1])

with ``t`` and ``i`` each L2-normalised first. Then ``|fused|^2 = w + (1 - w) = 1`` and the inner product of
two fused vectors built with the same ``w`` is exactly

    <fused_a, fused_b> = w * cos(t_a, t_b) + (1 - w) * cos(i_a, i_b)

so an engine's ``dot_product`` kNN over fused vectors ranks by that weighted sum of cosines. ``w`` is fixed
at indexing time for documents; a query may be fused with another weight ``w_q``, which gives
``sqrt(w * w_q) * cos_t + sqrt((1 - w)(1 - w_q)) * cos_i``.

Missing image (``image_vec=None``): the image half is zeros and the result is re-normalised, i.e. the
vector is ``t ⊕ 0``. It stays unit length (``dot_product`` indices require that), and its inner product
with a full fused vector of weight ``w`` is ``sqrt(w) * cos(t, t')``: such a document scores as if its
image similarity were ``cos_t * sqrt(w) / (1 + sqrt(w))`` - ranked by text alone, on a comparable scale.
With ``w = 0`` and no image there is nothing left to encode, which is a :class:`ValidationError`.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from hybrid_search.errors import ValidationError


def _unit(vector: ArrayLike, field: str) -> NDArray[np.float32]:
    array = np.asarray(vector, dtype=np.float64)
    if array.ndim not in (1, 2) or array.shape[-1] == 0:
        raise ValidationError(f"{field} must be a non-empty vector or 2-d batch, not {array.shape}", field)
    if not np.all(np.isfinite(array)):
        raise ValidationError(f"{field} holds NaN or infinite values", field)
    norms = np.linalg.norm(array, axis=-1, keepdims=True)
    if np.any(norms == 0):
        raise ValidationError(f"{field} has zero length and cannot be normalised", field)
    out: NDArray[np.float32] = (array / norms).astype(np.float32)
    return out


def fuse_vectors(
    text_vec: ArrayLike,
    image_vec: ArrayLike | None,
    text_weight: float,
    *,
    image_dim: int | None = None,
) -> NDArray[np.float32]:
    """``sqrt(w) * t ⊕ sqrt(1 - w) * i`` with ``t``, ``i`` L2-normalised; unit length (see module docstring).

    ``text_vec`` and ``image_vec`` are ``(d,)`` vectors or ``(n, d)`` batches of the same ``n``.
    ``image_vec=None`` means "no image": then ``image_dim`` must give the image half's length.
    Returns float32 of length ``d_text + d_image``.
    """
    if isinstance(text_weight, bool) or not isinstance(text_weight, (int, float)):
        raise ValidationError(f"text_weight must be a number in [0, 1], got {text_weight!r}", "text_weight")
    weight = float(text_weight)
    if not (0.0 <= weight <= 1.0) or math.isnan(weight):
        raise ValidationError(f"text_weight must be in [0, 1], got {text_weight!r}", "text_weight")
    text = _unit(text_vec, "text_vec")
    text_part = math.sqrt(weight) * text.astype(np.float64)
    if image_vec is None:
        if image_dim is None or image_dim < 1:
            raise ValidationError("image_dim (a positive int) is needed when image_vec is None", "image_dim")
        if weight == 0.0:
            raise ValidationError("text_weight 0 with no image vector leaves nothing to encode", "image_vec")
        image_part = np.zeros((*text.shape[:-1], image_dim), dtype=np.float64)
        fused = np.concatenate([text_part, image_part], axis=-1)
        fused /= np.linalg.norm(fused, axis=-1, keepdims=True)
        return fused.astype(np.float32)
    image = _unit(image_vec, "image_vec")
    if image.shape[:-1] != text.shape[:-1]:
        raise ValidationError(
            f"text_vec and image_vec batch shapes differ: {text.shape} vs {image.shape}", "image_vec"
        )
    if image_dim is not None and image.shape[-1] != image_dim:
        raise ValidationError(f"image_vec has {image.shape[-1]} dims, expected {image_dim}", "image_vec")
    image_part = math.sqrt(1.0 - weight) * image.astype(np.float64)
    return np.concatenate([text_part, image_part], axis=-1).astype(np.float32)
