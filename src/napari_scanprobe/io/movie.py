"""Movies as dask arrays, one frame per chunk, converted from the file's raw frames on demand.

One frame per chunk up to :data:`MAX_CHUNKS` frames; a longer movie gets consecutive frames
grouped so it has at most that many chunks (the graph, one task per chunk, stays ~2 MB: a
million one-pixel frames would otherwise cost 1.5 s and 350 MB to open). napari never notices:
it reads a frame straight from the source (below), and processing splits the frames again.

A format module subclasses :class:`FrameSource` with a ``frames(start, stop)`` method that reads
and converts frames ``start:stop`` of one channel, and makes each channel's array with
:func:`lazy_movie`. Where the raw frames come from is the source's business, decided with
:func:`is_small`:

* a movie whose channels together take more than :data:`EAGER_BYTES` as float32 stays on disk:
  each ``frames`` call opens the file, reads the requested frames' bytes and closes it, so a
  10,000-frame movie shows its first frame at once and never loads whole, and no file handle
  stays open between reads;
* a smaller movie's raw bytes (or, for a compressed ``.h5-jpk``, the file's bytes) are read
  when the file is opened, in one read, and the source holds them: showing or processing a frame
  converts just that frame from memory and never touches the disk again (and int16 levels take
  half the memory of float32 frames).

Either way the source keeps only its path, numbers and (small movies) the raw levels it holds;
it pickles WITHOUT them (a copy elsewhere -- a dask worker in another process -- reads the file,
as for a large movie), so a pickled graph stays small although it has one task per frame. The
dask array is a thin :class:`dask.array.Array` subclass that knows its source:
``np.asarray(movie)`` -- every frame -- is one ``source.frames(0, t)`` call (one read or one
vectorised conversion into a new array) instead of a dask compute of one task per frame, whose
fixed cost (~0.6 ms) is most of the time to read a small movie; likewise a frame or a block of
frames cut out by integers and slices (``np.asarray(movie[3])``, as napari shows a frame) is read
straight from the source. Every other operation is plain dask and gives plain dask arrays.
"""

from __future__ import annotations

import functools

import numpy as np

#: Movies whose channels take at most this many bytes as float32, all channels together, are
#: read into memory when the file is opened (see the module docstring).
EAGER_BYTES = 64 * 2**20

#: The most chunks (dask tasks) a movie's array has: beyond it, frames are grouped per chunk.
MAX_CHUNKS = 10_000


class FrameSource:
    """Array-like ``(t, y, x)`` float32 view of one channel's frames; subclasses read them.

    ``held``: the channel's raw data read when the file was opened (a small movie), or None;
    subclasses convert frames from it when it is there, else read the file.
    """

    dtype = np.dtype(np.float32)
    ndim = 3
    held: bytes | np.ndarray | None = None

    def __init__(self, path: str, shape: tuple[int, int, int]):
        self.path = path
        self.shape = tuple(int(n) for n in shape)

    def frames(self, start: int, stop: int) -> np.ndarray:
        """Frames ``start:stop`` (``0 <= start <= stop <= t``) as a NEW float32 ``(n, y, x)`` array
        (never a view of data the source holds: callers may modify it)."""
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
        data = self.frames(0, self.shape[0])  # a new array: no copy needed for another dtype
        return data if dtype is None else data.astype(dtype, copy=False)

    def __getstate__(self) -> dict:
        """Pickled without the held data (see the module docstring)."""
        state = dict(self.__dict__)
        state.pop("held", None)
        return state


def _read_chunk(source: FrameSource, k: int, step: int) -> np.ndarray:
    """Chunk ``k`` of a movie of ``step`` frames per chunk."""
    start = k * step
    return source.frames(start, min(start + step, source.shape[0]))


def _plain_key(key) -> bool:
    """Whether ``key`` indexes a movie with integers and slices only, at most one per axis."""
    key = key if isinstance(key, tuple) else (key,)
    return len(key) <= 3 and all(
        isinstance(k, (int, np.integer, slice)) and not isinstance(k, bool) for k in key
    )


@functools.cache
def _movie_class() -> type:
    """The dask array class of movies (made on first use: dask is imported only when needed)."""
    import dask.array as da

    class Movie(da.Array):
        """A movie's dask array that knows its :class:`FrameSource` (``frame_source``).

        ``np.asarray(movie)`` is ``frame_source.frames(0, t)`` (a new array, as dask gives) as
        long as the array is the source's (``movie[...] = value`` changes a dask array in place:
        then dask computes it). A slice of it by integers and slices (``movie[3]``,
        ``movie[10:20, :64]``: what napari asks for to show a frame) is again a ``Movie`` that
        reads just those frames from the source, with no dask compute (whose first call in a
        process imports ``dask.distributed``, ~0.2 s). Everything else is dask's and gives plain
        dask arrays. Pickles and copies as a plain dask array.
        """

        source_key = None  # the index into frame_source this array is (None: all of it)

        def __array__(self, dtype=None, copy=None):
            if self.name != self.source_name:
                return super().__array__(dtype=dtype, copy=copy)
            if self.source_key is None:
                return self.frame_source.__array__(dtype)
            data = np.asarray(self.frame_source[self.source_key])
            return data if dtype is None else data.astype(dtype, copy=False)

        def __getitem__(self, key):
            view = super().__getitem__(key)
            if self.name != self.source_name or self.source_key is not None or not _plain_key(key):
                return view
            return _movie(view.dask, view.name, view.chunks, view._meta, self.frame_source, key)

    return Movie


def _movie(graph, name: str, chunks, meta: np.ndarray, source: FrameSource, key=None):
    """A :class:`Movie` (dask's ``graph``, ``name``, ``chunks``, ``meta``) that is ``source[key]``
    (``key`` None: all of it)."""
    movie = _movie_class()(graph, name, chunks=chunks, meta=meta)
    movie.frame_source, movie.source_name, movie.source_key = source, name, key
    return movie


def lazy_movie(source: FrameSource, name: str):
    """``source`` as a float32 ``(t, y, x)`` dask array, one frame per chunk (at most
    :data:`MAX_CHUNKS` chunks); ``name`` must identify the file + channel (path, size and
    modification time: dask keys are cached).

    The graph is written out directly (one task per chunk): ``da.from_array`` costs
    milliseconds per channel in chunk normalisation.
    """
    n, ny, nx = source.shape
    step = -(-n // MAX_CHUNKS)  # frames per chunk
    count = -(-n // step)  # chunks
    graph = {(name, k, 0, 0): (_read_chunk, source, k, step) for k in range(count)}
    frames = (step,) * (count - 1) + (n - (count - 1) * step,)
    return _movie(graph, name, (frames, (ny,), (nx,)), np.empty((0, 0, 0), np.float32), source)


def is_small(nbytes: int) -> bool:
    """Whether a movie of ``nbytes`` (float32, all channels; a compressed file: its size) is
    read into memory when opened."""
    return nbytes <= EAGER_BYTES
