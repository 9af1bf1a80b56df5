"""Checkpoints: atomic writes, loading without executing pickled code, clear errors.

Why each piece:

* **Atomic.** A checkpoint is written to a temporary file in the same directory, flushed and
  fsynced, then ``os.replace``d over the target: a crash or a full disk mid-write leaves the
  previous ``last.pt`` intact instead of a truncated one (rename is atomic within a
  filesystem, which is why the temporary file is not in ``/tmp``).
* **Safe to load.** ``torch.load(weights_only=True)`` only rebuilds tensors and plain
  containers, so opening a checkpoint from someone else cannot run code. Everything saved is
  therefore reduced to tensors, dicts, lists, str, int, float, bool and None: NumPy arrays
  are stored as tagged tensors (``uint64`` bit-cast to ``int64``) and restored on load.
* **Recognisable.** A format tag and version tell a foreign file (any other ``torch.save``
  output) from ours, and a digest of the payload catches bit flips that the zip container
  does not (tensor bytes are stored uncompressed and unchecked). Every failure is a
  :class:`CheckpointError` naming the file and what is wrong.

Layout of the saved dict: ``{"format": FORMAT, "version": VERSION, "digest": hex,
"payload": {...}}``; the payload is whatever the caller passes (the trainer stores the
config, the runtime state and its own counters, see ``experiments/trainer.py``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import secrets
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT = "impala-hybrid-checkpoint"
VERSION = 1
_NUMPY_TAG = "__numpy__"


class CheckpointError(Exception):
    """A checkpoint that is missing, corrupt, foreign or does not fit the run."""


# --- plain-data conversion ------------------------------------------------------------------


def to_plain(obj: Any) -> Any:
    """``obj`` with NumPy arrays/scalars replaced by what ``weights_only`` loading accepts.

    Tuples become lists (the safe unpickler accepts both, but lists keep the format simple);
    anything that is not a tensor, container or plain scalar is a programming error here, so
    it raises instead of being pickled as an object.
    """
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, np.ndarray):
        arr = np.ascontiguousarray(obj)
        dtype = arr.dtype.str
        if arr.dtype == np.uint64:  # torch has no full uint64 support: keep the bits
            arr = arr.view(np.int64)
        return {_NUMPY_TAG: torch.from_numpy(arr.copy()), "dtype": dtype}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        out: dict[Any, Any] = {}
        for k, v in obj.items():
            if not isinstance(k, str | int):
                raise TypeError(f"checkpoint dict keys must be str or int, got {k!r}")
            out[k] = to_plain(v)
        return out
    if isinstance(obj, list | tuple):
        return [to_plain(v) for v in obj]
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} in a checkpoint (plain data only)")


def from_plain(obj: Any) -> Any:
    """Inverse of :func:`to_plain` for NumPy arrays (lists stay lists)."""
    if isinstance(obj, dict):
        if _NUMPY_TAG in obj and set(obj) == {_NUMPY_TAG, "dtype"}:
            dtype = np.dtype(obj["dtype"])
            arr = obj[_NUMPY_TAG].numpy()
            return arr.view(dtype).copy() if dtype == np.uint64 else arr.astype(dtype, copy=True)
        return {k: from_plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [from_plain(v) for v in obj]
    return obj


def digest(obj: Any) -> str:
    """SHA-256 over a plain structure (keys, scalars, tensor dtypes, shapes and bytes)."""
    h = hashlib.sha256()

    def feed(x: Any) -> None:
        if isinstance(x, torch.Tensor):
            t = x.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            if t.numel():
                h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(x, dict):
            h.update(f"D{len(x)}".encode())
            for k in sorted(x, key=repr):
                h.update(repr(k).encode())
                feed(x[k])
        elif isinstance(x, list | tuple):
            h.update(f"L{len(x)}".encode())
            for v in x:
                feed(v)
        else:
            h.update(f"S{type(x).__name__}:{x!r}".encode())

    feed(obj)
    return h.hexdigest()


# --- save / load ------------------------------------------------------------------------------


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` atomically to ``path`` (temporary file, fsync, rename).

    If anything fails before the rename, the temporary file is removed and ``path`` keeps
    its previous content (or stays absent).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    plain = to_plain(payload)
    data = {"format": FORMAT, "version": VERSION, "digest": digest(plain), "payload": plain}
    # Not tempfile.mkstemp: its files are mode 0600; this one gets the umask's permissions.
    tmp_name = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        with open(tmp_name, "xb") as f:
            torch.save(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(directory: Path) -> None:
    """Persist the rename itself (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The payload saved by :func:`save_checkpoint`, NumPy arrays restored.

    Raises :class:`CheckpointError` if the file is missing, unreadable (truncated, not a
    PyTorch file), holds anything but tensors and plain data (refused, never executed), lacks
    our format tag (a foreign checkpoint), has an unknown version, or fails its digest.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"checkpoint {path} is not an impala-hybrid checkpoint: it holds objects other "
            f"than tensors and plain data, which are never unpickled ({_first_line(e)})"
        ) from None
    except Exception as e:  # torch raises RuntimeError, EOFError, KeyError, ... on bad bytes
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated (cannot be read as a PyTorch file: "
            f"{type(e).__name__}: {_first_line(e)})"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        keys = sorted(map(str, data))[:5] if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(
            f"checkpoint {path} is not an impala-hybrid checkpoint (no format tag "
            f"{FORMAT!r}; found {keys})"
        )
    version = data.get("version")
    if version != VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {version!r}; this version of impala-hybrid "
            f"reads version {VERSION}"
        )
    payload = data.get("payload")
    if not isinstance(payload, dict) or data.get("digest") != digest(payload):
        raise CheckpointError(f"checkpoint {path} is corrupt: its content fails the digest check")
    return dict(from_plain(payload))


def _first_line(e: BaseException, limit: int = 200) -> str:
    """The first line of an error, cut at a sentence (or word) end if longer than ``limit``:
    torch's messages run on for 300+ characters, and a cut in mid-sentence read as if the
    message itself were broken ("...your checkpoint file is)")."""
    text = str(e).strip()
    if not text:
        return "no details"
    line = text.splitlines()[0]
    if len(line) <= limit:
        return line
    end = line.rfind(". ", 0, limit)
    return line[: end + 1] if end > 0 else line[:limit].rsplit(" ", 1)[0] + " ..."
