"""Reads `torch.save` files (zip + pickle) into numpy without torch and without running code.

A `.pth` file written by `torch.save` (torch >= 1.6) is a zip archive holding
`<archive>/data.pkl` (the pickled object) and `<archive>/data/<key>` (one raw little- or
big-endian buffer per storage). The pickle refers to storages through persistent ids
`('storage', <torch.XStorage>, key, location, numel)` and rebuilds tensors with
`torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`.

`load` unpickles with an allowlist (`_ALLOWED`): only the tensor-rebuild functions, the
storage classes, `collections.OrderedDict` and plain Python values can appear; any other
global (e.g. `os.system` in a malicious file) raises `TorchFileError` before anything is
called. Tensors come back as `LazyTensor`s whose bytes are read from the archive only when
`numpy()` is called, so reading the model part of a checkpoint does not materialize its
optimizer moments.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import os
import pickle
from typing import Any
import zipfile

import ml_dtypes
import numpy as np

_STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class TorchFileError(ValueError):
  """The file is not a readable torch.save archive (the message says why, in one line)."""


@dataclasses.dataclass(frozen=True)
class _StorageType:
  name: str

  @property
  def dtype(self) -> np.dtype:
    return np.dtype(_STORAGE_DTYPES[self.name])


@dataclasses.dataclass(frozen=True)
class _StorageRef:
  key: str
  dtype: np.dtype
  numel: int


class LazyTensor:
  """A tensor of the archive: `shape`, `dtype`, and `numpy()` (reads its bytes once)."""

  def __init__(self, archive: "_Archive", storage: _StorageRef, offset: int, shape, stride):
    self._archive, self._storage = archive, storage
    self._offset, self.shape, self._stride = int(offset), tuple(shape), tuple(stride)
    self.dtype = storage.dtype

  def numpy(self) -> np.ndarray:
    flat = self._archive.storage(self._storage)
    itemsize = flat.dtype.itemsize
    if len(self.shape) != len(self._stride):
      raise TorchFileError(f"{self._archive.path}: tensor shape and stride disagree (corrupt file)")
    needed = (
        self._offset + 1 + sum((n - 1) * s for n, s in zip(self.shape, self._stride, strict=True))
    )
    if self.shape and min(self.shape) == 0:
      return np.zeros(self.shape, flat.dtype)
    if needed > flat.size:
      raise TorchFileError(
          f"{self._archive.path}: tensor of shape {self.shape} runs past its storage "
          f"({flat.size} elements): the file is corrupt"
      )
    view = np.lib.stride_tricks.as_strided(
        flat[self._offset :], self.shape, [s * itemsize for s in self._stride], writeable=False
    )
    return np.array(view)

  def __repr__(self) -> str:
    return f"LazyTensor(shape={self.shape}, dtype={self.dtype})"


class _Archive:
  """The zip archive and a cache of the storages read so far."""

  def __init__(self, path: str, zf: zipfile.ZipFile, prefix: str, byteorder: str):
    self.path, self._zf, self._prefix, self._byteorder = path, zf, prefix, byteorder
    self._cache: dict[str, np.ndarray] = {}

  def storage(self, ref: _StorageRef) -> np.ndarray:
    if ref.key not in self._cache:
      name = f"{self._prefix}data/{ref.key}"
      try:
        raw = self._zf.read(name)
      except KeyError:
        raise TorchFileError(f"{self.path}: storage {name} is missing (truncated file?)") from None
      except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise TorchFileError(f"{self.path}: cannot read storage {name}: {e}") from None
      dtype = ref.dtype.newbyteorder("<" if self._byteorder == "little" else ">")
      if len(raw) < ref.numel * dtype.itemsize:
        raise TorchFileError(
            f"{self.path}: storage {name} has {len(raw)} bytes, expected "
            f"{ref.numel * dtype.itemsize} (truncated file?)"
        )
      arr = np.frombuffer(raw, dtype, count=ref.numel)
      self._cache[ref.key] = arr.astype(ref.dtype, copy=False)
    return self._cache[ref.key]


def _rebuild_tensor(archive: _Archive):
  def rebuild(storage, offset, size, stride, requires_grad=False, backward_hooks=None, *rest):
    del requires_grad, backward_hooks, rest
    if not isinstance(storage, _StorageRef):
      raise TorchFileError(f"{archive.path}: tensor without a storage")
    return LazyTensor(archive, storage, offset, size, stride)

  return rebuild


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *rest):
  del requires_grad, backward_hooks, rest
  return data


# (module, name) -> what the unpickler may build. Everything else is refused.
_ALLOWED_CALLABLES = {
    ("collections", "OrderedDict"): lambda archive: collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): lambda archive: _rebuild_parameter,
    ("builtins", "set"): lambda archive: set,
    ("builtins", "frozenset"): lambda archive: frozenset,
}


class _Unpickler(pickle.Unpickler):

  def __init__(self, data: bytes, archive: _Archive):
    super().__init__(io.BytesIO(data))
    self._archive = archive

  def find_class(self, module: str, name: str):
    if module == "torch" and name in _STORAGE_DTYPES:
      return _StorageType(name)
    make = _ALLOWED_CALLABLES.get((module, name))
    if make is None:
      raise TorchFileError(
          f"{self._archive.path}: refusing to load {module}.{name} (only tensors, "
          "dicts, lists and plain values are read from checkpoints)"
      )
    return make(self._archive)

  def persistent_load(self, pid):
    if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
      raise TorchFileError(f"{self._archive.path}: unexpected persistent id {pid!r}")
    _, storage_type, key, _, numel = pid
    if not isinstance(storage_type, _StorageType):
      raise TorchFileError(f"{self._archive.path}: unsupported storage type {storage_type!r}")
    return _StorageRef(str(key), storage_type.dtype, int(numel))


def load(path: str) -> Any:
  """The object `torch.save` wrote to `path`, with tensors as `LazyTensor`s.

  Raises TorchFileError (one line) for a missing, truncated, legacy-format or
  non-torch file and for any pickled global outside the allowlist.
  """
  if not os.path.isfile(path):
    raise TorchFileError(f"{path}: no such file")
  try:
    zf = zipfile.ZipFile(path)
  except (zipfile.BadZipFile, OSError) as e:
    with open(path, "rb") as f:
      head = f.read(2)
    legacy = head == b"\x80\x02"  # torch < 1.6 wrote a bare pickle stream
    hint = (
        "a legacy (pre-1.6) torch file; re-save it with a current torch"
        if legacy
        else f"not a torch.save zip archive, or truncated ({e})"
    )
    raise TorchFileError(f"{path}: {hint}") from None
  pkl = [n for n in zf.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
  if len(pkl) != 1:
    raise TorchFileError(f"{path}: not a torch.save archive (no data.pkl)")
  prefix = pkl[0][: -len("data.pkl")]
  byteorder = "little"
  if f"{prefix}byteorder" in zf.namelist():
    byteorder = zf.read(f"{prefix}byteorder").decode().strip()
  archive = _Archive(path, zf, prefix, byteorder)
  try:
    return _Unpickler(zf.read(pkl[0]), archive).load()
  except TorchFileError:
    raise
  except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, ValueError, TypeError) as e:
    raise TorchFileError(f"{path}: corrupt pickle in {pkl[0]}: {e}") from None
