"""Lazy movies: an array-like of frames read on demand, wrapped as a dask array.

A format module subclasses :class:`FrameSource` with a ``frames(start, stop)`` method that reads
and converts frames ``start:stop`` of one channel; :func:`lazy_movie` turns it into a float32
``(t, y, x)`` dask array with one frame per chunk (napari slices frame by frame, and larger
chunks would read more than the frame shown). A source keeps only its path and numbers, so the
dask graph pickles and no file handle stays open between reads.
"""

from __future__ import annotations

import numpy as np


class FrameSource:
    """Array-like ``(t, y, x)`` float32 view of one channel's frames; subclasses read them."""

    dtype = np.dtype(np.float32)
    ndim = 3

    def __init__(self, path: str, shape: tuple[int, int, int]):
        self.path = path
        self.shape = tuple(int(n) for n in shape)

    def frames(self, start: int, stop: int) -> np.ndarray:
        """Frames ``start:stop`` (``0 <= start <= stop <= t``) as a float32 ``(n, y, x)`` array."""
        raise NotImplementedError

    def __getitem__(self, key):
        if not isinstance(key, tuple):
            key = (key,)
        key = key + (slice(None),) * (3 - len(key))
        tkey, rest = key[0], key[1:]
        n = self.shape[0]
        if isinstance(tkey, (int, np.integer)):
            t = int(tkey) + (n if tkey < 0 else 0)
            if not 0 <= t < n:
                raise IndexError(f"frame {tkey} out of range for {n} frames")
            return self.frames(t, t + 1)[0][rest]
        if isinstance(tkey, slice) and tkey.step in (None, 1):
            start, stop, _ = tkey.indices(n)
            return self.frames(start, max(start, stop))[(slice(None),) + rest]
        index = np.arange(n)[tkey]
        if index.size == 0:
            return np.empty((0, *self.shape[1:]), np.float32)[(slice(None),) + rest]
        lo, hi = int(index.min()), int(index.max()) + 1
        return self.frames(lo, hi)[index - lo][(slice(None),) + rest]

    def __array__(self, dtype=None, copy=None):
        data = self.frames(0, self.shape[0])
        return data if dtype is None else data.astype(dtype)


def _read_frame(source: FrameSource, t: int) -> np.ndarray:
    return source.frames(t, t + 1)


def lazy_movie(source: FrameSource, name: str):
    """``source`` as a dask array, one frame per chunk; ``name`` must identify the file + channel.

    The graph is written out directly (one task per frame): ``da.from_array`` costs milliseconds
    per channel in chunk normalisation, which is most of the time to open a small movie.
    """
    import dask.array as da

    n, ny, nx = source.shape
    graph = {(name, t, 0, 0): (_read_frame, source, t) for t in range(n)}
    return da.Array(graph, name, chunks=((1,) * n, (ny,), (nx,)), dtype=np.float32, meta=np.empty((0, 0, 0), np.float32))
