"""Lazy safetensors reading (memory-mapped, bf16/fp16/fp32) and writing, numpy only.

We parse the format ourselves (8-byte header length, JSON header, raw little-endian
data) so bf16 maps onto `ml_dtypes.bfloat16` and slicing a tensor reads only the
requested pages: each device's shard is cut straight out of the file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import struct
from typing import Any, Callable, Mapping, Sequence

from etils import epath
import ml_dtypes
import numpy as np

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"

_DTYPES = {
    "F64": np.dtype(np.float64),
    "F32": np.dtype(np.float32),
    "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "I64": np.dtype(np.int64),
    "I32": np.dtype(np.int32),
    "I16": np.dtype(np.int16),
    "I8": np.dtype(np.int8),
    "U8": np.dtype(np.uint8),
    "BOOL": np.dtype(np.bool_),
}
_NAMES = {v: k for k, v in _DTYPES.items()}


def _read_header(path: str) -> tuple[dict, int]:
  with open(path, "rb") as f:
    (n,) = struct.unpack("<Q", f.read(8))
    header = json.loads(f.read(n))
  header.pop("__metadata__", None)
  return header, 8 + n


class SafetensorsCheckpoint:
  """All tensors of a HF checkpoint directory (single file or sharded index), lazily.

  `ckpt[key]` is a read-only `np.memmap` view; `ckpt.shape(key)` needs no data access.
  """

  def __init__(self, hf_dir: str):
    index = os.path.join(hf_dir, INDEX_FILE)
    if os.path.exists(index):
      with open(index) as f:
        files = sorted(set(json.load(f)["weight_map"].values()))
    elif os.path.exists(os.path.join(hf_dir, SINGLE_FILE)):
      files = [SINGLE_FILE]
    else:
      raise FileNotFoundError(f"no {SINGLE_FILE} or {INDEX_FILE} in {hf_dir}")
    self._entries: dict[str, tuple[str, int, dict]] = {}
    for name in files:
      path = os.path.join(hf_dir, name)
      header, data_start = _read_header(path)
      for key, info in header.items():
        self._entries[key] = (path, data_start, info)
    self._cache: dict[str, np.ndarray] = {}

  def keys(self) -> list[str]:
    return list(self._entries)

  def __contains__(self, key: str) -> bool:
    return key in self._entries

  def shape(self, key: str) -> tuple[int, ...]:
    return tuple(self._entries[key][2]["shape"])

  def __getitem__(self, key: str) -> np.ndarray:
    if key not in self._cache:
      path, data_start, info = self._entries[key]
      dtype = _DTYPES[info["dtype"]]
      shape = tuple(info["shape"])
      begin, _ = info["data_offsets"]
      if int(np.prod(shape)) == 0:
        arr = np.zeros(shape, dtype)
      else:
        arr = np.memmap(path, dtype=dtype, mode="r", offset=data_start + begin, shape=shape)
      self._cache[key] = arr
    return self._cache[key]


def checkpoint_fingerprint(hf_dir: str) -> str:
  """Content hash of the weights of a HF checkpoint directory, wherever it lives.

  Covers every tensor's name, dtype and shape and three 256-byte samples of its data
  (start, middle, end), reading a few KB per tensor (well under a second for 7B): moved
  or copied weights keep their fingerprint, re-trained or fine-tuned ones do not.
  """
  ckpt = SafetensorsCheckpoint(hf_dir)
  h = hashlib.sha256()
  for key in sorted(ckpt.keys()):
    flat = ckpt[key].reshape(-1)
    n = max(1, 256 // max(flat.dtype.itemsize, 1))
    mid = max(0, flat.size // 2 - n // 2)
    h.update(f"{key}|{flat.dtype}|{ckpt.shape(key)}|".encode())
    for part in (flat[:n], flat[mid : mid + n], flat[-n:]):
      h.update(np.ascontiguousarray(part).tobytes())
  return h.hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class LazyTensor:
  """A tensor to write, known by shape and dtype; `fetch()` makes its value (e.g. gathers it)."""

  key: str
  shape: tuple[int, ...]
  dtype: np.dtype
  fetch: Callable[[], np.ndarray]

  @property
  def nbytes(self) -> int:
    return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


def _lazy(tensors: Mapping[str, np.ndarray]) -> list[LazyTensor]:
  return [LazyTensor(k, tuple(v.shape), v.dtype, lambda v=v: v) for k, v in tensors.items()]


def write_safetensors(tensors: Sequence[LazyTensor], path: Any, write: bool = True) -> None:
  """One safetensors file (keys sorted, 8-byte aligned header), local or gs:// (epath).

  The header comes from the shapes; each value is fetched and written in turn, so at most
  one tensor is in host memory. `write=False` fetches without writing (the processes that
  take part in gathering but do not write).
  """
  order = sorted(tensors, key=lambda t: t.key)
  header, offset = {}, 0
  for t in order:
    if np.dtype(t.dtype) not in _NAMES:
      raise TypeError(f"{t.key}: dtype {t.dtype} not supported by safetensors")
    header[t.key] = {
        "dtype": _NAMES[np.dtype(t.dtype)],
        "shape": list(t.shape),
        "data_offsets": [offset, offset + t.nbytes],
    }
    offset += t.nbytes
  if not write:
    for t in order:
      t.fetch()
    return
  header["__metadata__"] = {"format": "pt"}
  blob = json.dumps(header, separators=(",", ":")).encode()
  blob += b" " * (-len(blob) % 8)
  with epath.Path(path).open("wb") as f:
    f.write(struct.pack("<Q", len(blob)))
    f.write(blob)
    for t in order:
      value = np.asarray(t.fetch())
      if value.shape != tuple(t.shape) or value.dtype != np.dtype(t.dtype):
        raise ValueError(f"{t.key}: fetched {value.dtype}{value.shape}, planned {t.dtype}{t.shape}")
      f.write(np.ascontiguousarray(value).astype(value.dtype.newbyteorder("<")).tobytes())


def save_safetensors(tensors: Mapping[str, np.ndarray], path: Any) -> None:
  """Writes a single safetensors file from in-memory arrays."""
  write_safetensors(_lazy(tensors), path)


def shard_name(index: int, count: int) -> str:
  """transformers' shard file names: `model-00001-of-00003.safetensors`."""
  return f"model-{index + 1:05d}-of-{count:05d}.safetensors"


def plan_shards(tensors: Sequence[LazyTensor], max_shard_bytes: int) -> list[list[LazyTensor]]:
  """Keys in sorted order, cut before a tensor that would take a shard past the limit
  (a tensor larger than the limit gets a shard of its own), as transformers splits."""
  shards: list[list[LazyTensor]] = [[]]
  size = 0
  for t in sorted(tensors, key=lambda t: t.key):
    if shards[-1] and size + t.nbytes > max_shard_bytes:
      shards.append([])
      size = 0
    shards[-1].append(t)
    size += t.nbytes
  return shards


def write_checkpoint(
    tensors: Sequence[LazyTensor], out_dir: Any, max_shard_bytes: int | None, write: bool = True
) -> list[str]:
  """The weights of a HF checkpoint directory, local or gs://; returns the files written.

  One shard fits: `model.safetensors`. Several: `model-0000k-of-0000n.safetensors` and
  `model.safetensors.index.json` ({metadata: {total_size}, weight_map}), the layout
  transformers writes and reads. Shards are fetched and written one after the other, each
  tensor in turn (host memory: one tensor). `write=False`: fetch only (see
  `write_safetensors`).
  """
  shards = plan_shards(tensors, max_shard_bytes) if max_shard_bytes else [list(tensors)]
  names = (
      [SINGLE_FILE]
      if len(shards) == 1
      else [shard_name(i, len(shards)) for i in range(len(shards))]
  )
  out = epath.Path(out_dir)
  if write:
    out.mkdir(parents=True, exist_ok=True)
  for name, shard in zip(names, shards, strict=True):
    write_safetensors(shard, out / name, write=write)
  if write and len(shards) > 1:
    weight_map = {t.key: name for name, shard in zip(names, shards, strict=True) for t in shard}
    index = {"metadata": {"total_size": sum(t.nbytes for t in tensors)}, "weight_map": weight_map}
    (out / INDEX_FILE).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
  return names + ([INDEX_FILE] if len(shards) > 1 else [])


def shard_checkpoint(tensors: Mapping[str, np.ndarray], out_dir: str, max_shard_bytes: int) -> None:
  """`write_checkpoint` of in-memory arrays."""
  write_checkpoint(_lazy(tensors), out_dir, max_shard_bytes)
