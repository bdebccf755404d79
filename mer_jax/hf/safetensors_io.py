"""Lazy safetensors reading (memory-mapped, bf16/fp16/fp32) and writing, numpy only.

We parse the format ourselves (8-byte header length, JSON header, raw little-endian
data) so bf16 maps onto `ml_dtypes.bfloat16` and slicing a tensor reads only the
requested pages: each device's shard is cut straight out of the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from typing import Mapping

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


def save_safetensors(tensors: Mapping[str, np.ndarray], path: str) -> None:
  """Writes a single safetensors file (keys sorted, 8-byte aligned header)."""
  header, offset, order = {}, 0, sorted(tensors)
  for key in order:
    arr = tensors[key]
    if arr.dtype not in _NAMES:
      raise TypeError(f"{key}: dtype {arr.dtype} not supported by safetensors")
    header[key] = {
        "dtype": _NAMES[arr.dtype],
        "shape": list(arr.shape),
        "data_offsets": [offset, offset + arr.nbytes],
    }
    offset += arr.nbytes
  header["__metadata__"] = {"format": "pt"}
  blob = json.dumps(header, separators=(",", ":")).encode()
  blob += b" " * (-len(blob) % 8)
  with open(path, "wb") as f:
    f.write(struct.pack("<Q", len(blob)))
    f.write(blob)
    for key in order:
      f.write(
          np.ascontiguousarray(tensors[key]).astype(tensors[key].dtype.newbyteorder("<")).tobytes()
      )


def shard_checkpoint(tensors: Mapping[str, np.ndarray], out_dir: str, max_shard_bytes: int) -> None:
  """Writes `model-0000k-of-0000n.safetensors` + `model.safetensors.index.json` (HF layout)."""
  shards: list[dict[str, np.ndarray]] = [{}]
  size = 0
  for key in sorted(tensors):
    if shards[-1] and size + tensors[key].nbytes > max_shard_bytes:
      shards.append({})
      size = 0
    shards[-1][key] = tensors[key]
    size += tensors[key].nbytes
  weight_map = {}
  for i, shard in enumerate(shards):
    name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
    save_safetensors(shard, os.path.join(out_dir, name))
    weight_map.update({k: name for k in shard})
  total = sum(int(v.nbytes) for v in tensors.values())
  with open(os.path.join(out_dir, INDEX_FILE), "w") as f:
    json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
