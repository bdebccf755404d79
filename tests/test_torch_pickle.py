"""The torch-free .pth reader: real torch.save files, malicious pickles, truncated files."""

import io
import os
import pickle
import zipfile

import ml_dtypes
import numpy as np
import pytest

from mer_jax.hf import affectgpt_release
from mer_jax.hf import torch_pickle


def _torch():
  return pytest.importorskip("torch")


def _released_like(torch):
  """An object shaped like the official runner's save: model, optimizer, config, scaler, epoch."""
  g = torch.Generator().manual_seed(0)
  lin = torch.nn.Linear(5, 3)
  model = {
      "affectgpt_proj.weight": torch.randn(3, 5, generator=g),
      "affectgpt_proj.bias": torch.randn(3, generator=g),
      "half": torch.randn(4, 6, generator=g).half(),
      "bf16": torch.randn(2, 3, generator=g).bfloat16(),
      "transposed": torch.randn(4, 6, generator=g).t(),  # non-contiguous view
      "offset_view": torch.arange(20, dtype=torch.float32)[7:13],  # storage offset
      "long": torch.tensor([3, -1], dtype=torch.int64),
      "flags": torch.tensor([True, False]),
      "empty": torch.zeros(0, 3),
  }
  opt = torch.optim.AdamW(lin.parameters(), lr=1e-5)
  lin(torch.ones(2, 5)).sum().backward()
  opt.step()
  state = torch.nn.Module().state_dict()  # an OrderedDict with _metadata, as torch saves
  state.update(model)
  return {
      "model": state,
      "optimizer": opt.state_dict(),
      "config": {"model": {"arch": "affectgpt", "lora_r": 16}, "run": {"betas": (0.9, 0.999)}},
      "scaler": {"scale": 65536.0, "growth_interval": 2000},
      "epoch": 7,
  }, model


def test_reads_a_real_torch_save_file(tmp_path):
  torch = _torch()
  obj, model = _released_like(torch)
  path = tmp_path / "checkpoint_000007_loss_0.532.pth"
  torch.save(obj, path)
  got = torch_pickle.load(str(path))
  assert got["epoch"] == 7 and got["scaler"]["scale"] == 65536.0
  assert got["config"]["run"]["betas"] == (0.9, 0.999)
  for key, value in model.items():
    arr = got["model"][key].numpy()
    want = value.float().numpy() if value.dtype == torch.bfloat16 else value.numpy()
    assert arr.shape == tuple(value.shape), key
    np.testing.assert_array_equal(np.asarray(arr, want.dtype), want, err_msg=key)
  assert got["model"]["bf16"].numpy().dtype == ml_dtypes.bfloat16
  assert got["model"]["half"].numpy().dtype == np.float16
  moments = got["optimizer"]["state"][0]
  np.testing.assert_array_equal(
      moments["exp_avg"].numpy(), obj["optimizer"]["state"][0]["exp_avg"].numpy()
  )
  ckpt = affectgpt_release.read(str(path))
  assert ckpt.epoch == 7 and set(ckpt.tensors) == set(model)


def _write_archive(path, pkl: bytes, extra=()):
  with zipfile.ZipFile(path, "w") as zf:
    zf.writestr("archive/data.pkl", pkl)
    for name, data in extra:
      zf.writestr(name, data)


class _Evil:

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (os.system, (f"touch {self.marker}",))


def test_refuses_code_in_the_pickle(tmp_path):
  marker = tmp_path / "pwned"
  path = tmp_path / "evil.pth"
  _write_archive(path, pickle.dumps({"model": {"w": _Evil(marker)}}, protocol=2))
  with pytest.raises(torch_pickle.TorchFileError, match="refusing to load .*system"):
    torch_pickle.load(str(path))
  assert not marker.exists()
  # Also through a storage-looking global that is not a storage class.
  path2 = tmp_path / "evil2.pth"
  _write_archive(path2, b"\x80\x02ctorch\nload\nq\x00.")
  with pytest.raises(torch_pickle.TorchFileError, match="refusing to load torch.load"):
    torch_pickle.load(str(path2))


def test_truncated_and_foreign_files_get_one_line_errors(tmp_path):
  torch = _torch()
  obj, _ = _released_like(torch)
  good = tmp_path / "good.pth"
  torch.save(obj, good)
  data = good.read_bytes()
  cut = tmp_path / "cut.pth"
  cut.write_bytes(data[: len(data) // 2])
  with pytest.raises(torch_pickle.TorchFileError, match="cut.pth") as e:
    torch_pickle.load(str(cut))
  assert "\n" not in str(e.value)
  # An archive whose storage record is short (a truncated download repacked).
  buf = io.BytesIO(data)
  with zipfile.ZipFile(buf) as zf:
    records = {n: zf.read(n) for n in zf.namelist()}
  storage = next(n for n in records if "/data/" in n and len(records[n]) > 8)
  records[storage] = records[storage][:4]
  short = tmp_path / "short.pth"
  with zipfile.ZipFile(short, "w") as zf:
    for n, d in records.items():
      zf.writestr(n, d)
  loaded = torch_pickle.load(str(short))
  with pytest.raises(torch_pickle.TorchFileError, match="truncated"):
    for v in loaded["model"].values():
      v.numpy()
  text = tmp_path / "notes.pth"
  text.write_text("hello")
  with pytest.raises(torch_pickle.TorchFileError, match="not a torch.save"):
    torch_pickle.load(str(text))
  legacy = tmp_path / "legacy.pth"
  torch.save({"model": {}}, legacy, _use_new_zipfile_serialization=False)
  with pytest.raises(torch_pickle.TorchFileError, match="legacy"):
    torch_pickle.load(str(legacy))
  not_ckpt = tmp_path / "list.pth"
  torch.save([torch.ones(2)], not_ckpt)
  with pytest.raises(torch_pickle.TorchFileError, match="not an AffectGPT checkpoint"):
    affectgpt_release.read(str(not_ckpt))
  with pytest.raises(torch_pickle.TorchFileError, match="no such file"):
    torch_pickle.load(str(tmp_path / "absent.pth"))
