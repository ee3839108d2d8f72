"""Movies as dask arrays: frames read on demand, or held in memory when the movie is small.

A format module subclasses :class:`FrameSource` with a ``frames(start, stop)`` method that reads
and converts frames ``start:stop`` of one channel, decides with :func:`is_small` and makes each
channel's array with :func:`movie_array` (or with :func:`lazy_movie` / :func:`in_memory_movie`
when it reads the frames itself, from a file it already holds open):

* a movie whose channels together take more than :data:`EAGER_BYTES` as float32 stays on disk:
  :func:`lazy_movie` makes a float32 ``(t, y, x)`` dask array with one frame per chunk (napari
  slices frame by frame, and larger chunks would read more than the frame shown). The source
  keeps only its path and numbers, so the graph pickles and no file handle stays open between
  reads; a 10,000-frame movie shows its first frame at once and never loads whole;
* a smaller movie is read whole when the file is opened (one read, one vectorised conversion)
  and wrapped by :func:`in_memory_movie` as a one-chunk dask array: computing it costs dask's
  fixed overhead once instead of once per frame (open, seek, read, close every frame), and
  scrubbing through it in napari never touches the disk again.

Either way ``Channel.data`` of a movie is a dask array, so code downstream (napari, the lazy
frame-by-frame processing in ``process``) sees one type.
"""

from __future__ import annotations

import numpy as np

#: Movies whose channels take at most this many bytes as float32, all channels together, are
#: read into memory when the file is opened (see the module docstring).
EAGER_BYTES = 64 * 2**20


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


def in_memory_movie(frames: np.ndarray, name: str):
    """A float32 ``(t, y, x)`` numpy array as a one-chunk dask array (``name`` as for :func:`lazy_movie`)."""
    import dask.array as da

    frames = np.asarray(frames, dtype=np.float32)
    chunks = tuple((n,) for n in frames.shape)
    meta = np.empty((0, 0, 0), np.float32)
    return da.Array({(name, 0, 0, 0): frames}, name, chunks=chunks, dtype=np.float32, meta=meta)


def is_small(nbytes: int) -> bool:
    """Whether a movie of ``nbytes`` (float32, all channels) is read into memory when opened."""
    return nbytes <= EAGER_BYTES


def movie_array(source: FrameSource, name: str, eager: bool):
    """The channel's dask array: read whole now (``eager``) or frame by frame on demand."""
    if eager:
        return in_memory_movie(source.frames(0, source.shape[0]), f"{name}-mem")
    return lazy_movie(source, name)
