"""File I/O that works the same on local paths and on gs:// (etils.epath), no JAX.

Run outputs (mer_jax/run_io.py) and encoder features (input_pipeline/features.py) go
through these helpers, so a workdir or features directory can be a bucket without a
mount. GCS objects cannot be appended to, and "rename" is a copy; the helpers hide that:

- `write_text` / `write_json`: written under a temporary name of their own
  (`temp_sibling`), then moved over the target (atomic on a local disk; on GCS the object
  appears whole or not at all): concurrent writers of the same file (several runs sharing
  a features cache) never see half a file or each other's temporary files.
- `AppendFile`: line appends (metrics.jsonl, log.txt). Appended to the file locally; on
  GCS the text is kept in memory and the object rewritten at most every `flush_every_s`
  seconds and on `close()`.
- `local_copy` / `local_dir` / `write_dir`: for libraries that read or write local files
  only (ArrayRecord, tokenizers): a local copy of a remote file or directory, or a
  directory written locally and uploaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from typing import Any, Callable
import uuid

from etils import epath


def is_remote(path: Any) -> bool:
  """True for URLs (gs://, s3://, ...), False for local paths."""
  return '://' in os.fspath(path)


def absolute(path: Any) -> str:
  """`os.path.abspath` for local paths; URLs unchanged (abspath would mangle `gs://`)."""
  path = os.fspath(path).rstrip('/')
  return path if is_remote(path) else os.path.abspath(path)


def cache_root() -> str:
  """`$MER_JAX_CACHE` (default ~/.cache/mer_jax): local copies of remote files live below."""
  return os.environ.get('MER_JAX_CACHE', os.path.join(os.path.expanduser('~'), '.cache', 'mer_jax'))


def temp_sibling(path: Any) -> str:
  """A hidden name next to `path` that no other writer uses, for write-then-rename.

  Unique across processes, hosts and containers sharing a disk (a process id alone is
  not: two containers may run the same pid): pid + 64 random bits.
  """
  head, name = os.path.split(os.fspath(path))
  return os.path.join(head, f'.{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:16]}')


def write_text(path: Any, text: str) -> None:
  write_bytes(path, text.encode('utf-8'))


def write_bytes(path: Any, data: bytes) -> None:
  """`data` as file `path`: written under `temp_sibling(path)` then renamed over it, so a
  reader sees the old or the new file whole; concurrent writers never share a temp file."""
  path = epath.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = epath.Path(temp_sibling(path))
  tmp.write_bytes(data)
  tmp.replace(path)


def write_json(path: Any, obj: Any, indent: int | None = None) -> None:
  write_text(path, json.dumps(obj, sort_keys=True, indent=indent) + '\n')


def read_json(path: Any, default: Any = None) -> Any:
  path = epath.Path(path)
  if not path.exists():
    return default
  return json.loads(path.read_text())


class AppendFile:
  """A text file that grows by appends (module docstring); remote ones are rewritten."""

  def __init__(self, path: Any, flush_every_s: float = 30.0):
    self.path = epath.Path(path)
    self.remote = is_remote(path)
    self._flush_every_s = flush_every_s
    self._text: list[str] | None = None  # remote: the whole content
    self._dirty = False
    self._flushed_at = 0.0
    if self.remote:
      self._text = [self.path.read_text()] if self.path.exists() else []
    else:
      self.path.parent.mkdir(parents=True, exist_ok=True)

  def write(self, text: str) -> None:
    if not self.remote:
      with open(self.path, 'a', encoding='utf-8') as f:
        f.write(text)
      return
    self._text.append(text)
    self._dirty = True
    self.flush(force=False)

  def read(self) -> str:
    if self.remote:
      return ''.join(self._text)
    return self.path.read_text() if self.path.exists() else ''

  def rewrite(self, text: str) -> None:
    """Replaces the whole content."""
    if self.remote:
      self._text, self._dirty = [text], True
      self.flush()
    else:
      write_text(self.path, text)

  def flush(self, force: bool = True) -> None:
    if not (self.remote and self._dirty):
      return
    if not force and time.time() - self._flushed_at < self._flush_every_s:
      return
    self.path.parent.mkdir(parents=True, exist_ok=True)
    self.path.write_text(''.join(self._text))
    self._dirty, self._flushed_at = False, time.time()

  def close(self) -> None:
    self.flush()


def local_copy(path: Any) -> str:
  """A local path holding the content of file `path`: itself, or a cached copy of a URL.

  Remote files are copied once under `<cache_root>/remote/` (again when their size
  changes); each host makes its own copy.
  """
  if not is_remote(path):
    return os.fspath(path)
  path = epath.Path(path)
  digest = hashlib.sha256(str(path.parent).encode()).hexdigest()[:16]
  local = os.path.join(cache_root(), 'remote', digest, path.name)
  size = path.stat().length
  if not (os.path.exists(local) and os.path.getsize(local) == size):
    os.makedirs(os.path.dirname(local), exist_ok=True)
    tmp = temp_sibling(local)
    with path.open('rb') as src, open(tmp, 'wb') as dst:
      shutil.copyfileobj(src, dst)
    os.replace(tmp, local)
  return local


def local_dir(path: Any) -> str:
  """A local directory with the files of directory `path` (itself, or a cached copy)."""
  if not is_remote(path):
    return os.fspath(path)
  files = [p for p in epath.Path(path).iterdir() if not p.is_dir()]
  copies = [local_copy(p) for p in files]
  return os.path.dirname(copies[0]) if copies else tempfile.mkdtemp()


def upload(local: str, path: Any) -> None:
  """Copies local file `local` to `path` (a URL or a local path)."""
  path = epath.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  if is_remote(path):
    with open(local, 'rb') as src, path.open('wb') as dst:
      shutil.copyfileobj(src, dst)
  else:
    shutil.copyfile(local, os.fspath(path))


def write_files(path: Any, save: Callable[[str], None]) -> None:
  """`save(local_dir)` writes files; each is then copied into directory `path` (local or URL)."""
  tmp = tempfile.mkdtemp(prefix='.write_files-')
  try:
    save(tmp)
    for name in sorted(os.listdir(tmp)):
      upload(os.path.join(tmp, name), epath.Path(path) / name)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


def write_dir(path: Any, save: Callable[[str], None]) -> None:
  """`save(local_dir)` writes a directory; it appears at `path` whole (first writer wins)."""
  if is_remote(path):
    write_files(path, save)
    return
  target = epath.Path(path)
  target.parent.mkdir(parents=True, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix='.write_dir-', dir=target.parent)
  try:
    save(tmp)
    if not target.exists():
      os.replace(tmp, os.fspath(target))
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
