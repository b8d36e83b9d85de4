"""Whisper's log-Mel features computed the same way whatever the BLAS thread count.

faster-whisper projects the power spectrum onto the Mel filters with a float32 matrix
product (``mel_filters @ magnitudes``), which numpy hands to OpenBLAS. OpenBLAS splits that
product across its threads, and how many it uses comes from the environment
(``OPENBLAS_NUM_THREADS``, ``OMP_NUM_THREADS``, the core count): each split sums in another
order, so the features differ in their last bits. Whisper tiny.en is sensitive enough that
those bits change the words. Measured on the card-payment clip of notebook 07: 52 words with
OpenBLAS on 2 threads, and with ``OMP_NUM_THREADS=1`` a digit read as "9" repeated 90 times
(136 words). A Dask worker, a container limited to one CPU or a job runner that sets
``OMP_NUM_THREADS=1`` was enough to get other words for the same audio.

:func:`fix_features` replaces the model's feature extractor with one that does that single
step in float64 with :func:`numpy.einsum` (``optimize=False``: numpy's own loop, never
BLAS, so its summation order is fixed) and rounds to float32 once. Everything else (the
STFT with numpy's pocketfft, the log and clipping) is faster-whisper's own code path.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["fix_features", "log_mel"]


def log_mel(
    extractor: Any, waveform: np.ndarray[Any, Any], padding: int = 160, chunk_length: Any = None
) -> np.ndarray[Any, Any]:
    """faster-whisper's ``FeatureExtractor.__call__`` with a BLAS-free Mel projection."""
    if chunk_length is not None:
        extractor.n_samples = chunk_length * extractor.sampling_rate
        extractor.nb_max_frames = extractor.n_samples // extractor.hop_length
    if waveform.dtype is not np.float32:
        waveform = waveform.astype(np.float32)
    if padding:
        waveform = np.pad(waveform, (0, padding))
    window = np.hanning(extractor.n_fft + 1)[:-1].astype("float32")
    stft = extractor.stft(
        waveform, extractor.n_fft, extractor.hop_length, window=window, return_complex=True
    ).astype("complex64")
    magnitudes = np.abs(stft[..., :-1]) ** 2
    filters = extractor.mel_filters.astype(np.float64)
    mel_spec = np.einsum(
        "mf,...ft->...mt", filters, magnitudes.astype(np.float64), optimize=False
    ).astype(np.float32)
    log_spec = np.log10(np.clip(mel_spec, a_min=1e-10, a_max=None))
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return (log_spec + 4.0) / 4.0  # type: ignore[no-any-return]


def fix_features(model: Any) -> None:
    """Make ``model`` (a faster-whisper ``WhisperModel``) compute :func:`log_mel`."""
    from faster_whisper.feature_extractor import FeatureExtractor

    class FixedOrderFeatures(FeatureExtractor):  # type: ignore[misc]
        def __call__(
            self, waveform: np.ndarray[Any, Any], padding: int = 160, chunk_length: Any = None
        ) -> np.ndarray[Any, Any]:
            return log_mel(self, waveform, padding, chunk_length)

    old = model.feature_extractor
    new = FixedOrderFeatures.__new__(FixedOrderFeatures)
    new.__dict__.update(old.__dict__)
    model.feature_extractor = new
