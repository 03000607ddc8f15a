"""Image similarity metrics in TF ops (SSIM, MSE, PSNR) and the compact representation they compare.

SSIM follows `skimage.metrics.structural_similarity` defaults exactly (7x7 uniform window, sample
covariance, K1=0.01, K2=0.03, mean over the window-valid region and over channels), so the two agree
to float32 precision; the tests check it on real IDC patches.
"""
from __future__ import annotations

import tensorflow as tf

METRICS = ("mse", "ssim", "psnr")
REPRESENTATIONS = ("thumbnail", "spectrum", "full")
_LUMA = (0.299, 0.587, 0.114)


def thumbnail(images: tf.Tensor, size: int) -> tf.Tensor:
    """Grey-level `size` x `size` thumbnails (area averaging) of NHWC images in [0, 1]: N x size x size x 1.

    Area averaging is why thumbnails are compared rather than full images: it averages away per-pixel
    noise an attacker adds to dodge similarity, shrinks sub-block shifts, and keeps the per-user history
    small (size*size floats per query), so the per-query cost is set by `size` and the history length.
    """
    images = tf.convert_to_tensor(images, tf.float32)
    if images.shape[-1] == 3:
        images = tf.tensordot(images, tf.constant(_LUMA, tf.float32), axes=[[3], [0]])[..., None]
    elif images.shape[-1] != 1:
        images = tf.reduce_mean(images, axis=-1, keepdims=True)
    return tf.image.resize(images, (size, size), method="area")


def spectrum(thumbs: tf.Tensor, size: int) -> tf.Tensor:
    """Log-magnitude of the 2-D Fourier transform of grey thumbnails (N x T x T x 1), central `size` x `size`
    low-frequency block: N x size x size x 1.

    The magnitude does not change when the image is (circularly) shifted and barely when it is shifted a
    few pixels, and the low frequencies barely change under pixel noise: an attacker who jitters and noises
    each query still sends the same spectrum.
    """
    g = thumbs[..., 0]
    g = g - tf.reduce_mean(g, axis=[1, 2], keepdims=True)
    mag = tf.signal.fftshift(tf.abs(tf.signal.fft2d(tf.cast(g, tf.complex64))), axes=[1, 2])
    t = int(thumbs.shape[1])
    lo = t // 2 - size // 2
    return tf.math.log1p(mag[:, lo:lo + size, lo:lo + size])[..., None]


def represent(images: tf.Tensor, representation: str, thumbnail_size: int, spectrum_size: int) -> tf.Tensor:
    """The representation stored and compared per query: N x h x w x 1, or for "full" the images themselves
    (N x H x W x C, every channel: the paper's setting, SSIM on the full-size image)."""
    if representation == "full":
        return tf.convert_to_tensor(images, tf.float32)
    thumbs = thumbnail(images, thumbnail_size)
    return thumbs if representation == "thumbnail" else spectrum(thumbs, spectrum_size)


def mse(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """Mean squared error over the last three axes (H, W, C)."""
    return tf.reduce_mean(tf.math.squared_difference(a, b), axis=[-3, -2, -1])


def psnr(a: tf.Tensor, b: tf.Tensor, data_range: float = 1.0) -> tf.Tensor:
    """Peak signal-to-noise ratio in dB over the last three axes; identical images give 100 dB, not inf."""
    err = tf.maximum(mse(a, b), 1e-10 * data_range ** 2)
    return 10.0 * tf.math.log(data_range ** 2 / err) / tf.math.log(10.0)


def ssim(a: tf.Tensor, b: tf.Tensor, data_range: float = 1.0, win_size: int = 7) -> tf.Tensor:
    """Structural similarity of images a, b (shape ... x H x W x C, broadcastable), skimage's defaults."""
    a, b = tf.convert_to_tensor(a, tf.float32), tf.convert_to_tensor(b, tf.float32)
    h, w, c = (a.shape if a.shape[-3:].is_fully_defined() else b.shape)[-3:]
    shape = tf.broadcast_dynamic_shape(tf.shape(a), tf.shape(b))
    a, b = tf.broadcast_to(a, shape), tf.broadcast_to(b, shape)
    lead = shape[:-3]
    a4, b4 = tf.reshape(a, [-1, h, w, c]), tf.reshape(b, [-1, h, w, c])

    def mean(t):  # skimage's uniform_filter + crop of (win_size - 1) // 2 equals a VALID window mean
        # separable (rows, then columns): the same mean to float32 rounding, half the time of a 2-D window
        return tf.nn.avg_pool2d(tf.nn.avg_pool2d(t, [win_size, 1], 1, "VALID"), [1, win_size], 1, "VALID")

    ux, uy = mean(a4), mean(b4)
    uxx, uyy, uxy = mean(a4 * a4), mean(b4 * b4), mean(a4 * b4)
    n = float(win_size ** 2)
    cov_norm = n / (n - 1.0)
    vx, vy, vxy = cov_norm * (uxx - ux * ux), cov_norm * (uyy - uy * uy), cov_norm * (uxy - ux * uy)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return tf.reshape(tf.reduce_mean(s, axis=[1, 2, 3]), lead)


def distance(a: tf.Tensor, b: tf.Tensor, metric: str) -> tf.Tensor:
    """A distance (smaller = more alike) from a metric: MSE, 1 - SSIM, or minus PSNR (dB)."""
    if metric == "mse":
        return mse(a, b)
    if metric == "ssim":
        return 1.0 - ssim(a, b)
    if metric == "psnr":
        return -psnr(a, b)
    raise ValueError(f"unknown metric {metric!r}; choose one of {METRICS}.")
