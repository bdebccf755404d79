"""The features pass: manifest, stale media, deleted media, resume, fingerprint, gs://.

A released-layout dataset (real mp4/wav files) is encoded by the tiny test encoders; the
reference for a clip's features is a fresh encoding in an empty features directory.
"""

import os
import shutil

import numpy as np
import pytest
from released_data import write_mp4
from released_data import write_released_dataset

from input_pipeline import features as features_io
from mer_jax.train import features as features_lib

pytest.importorskip("av")
sf = pytest.importorskip("soundfile")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  return write_released_dataset(tmp_path_factory.mktemp("released"), num_good=4)


def _config(recipe, root, features_dir, **data):
  config = recipe("sft", "test")
  d = config.data
  d.source, d.root, d.face_or_frame = "released", str(root), "frame"
  d.labels_csv = d.eval_labels_csv = "labels.csv"
  d.subtitles_csv, d.reasons_csv = "subtitle_chieng.csv", "reasons.csv"
  d.features_dir, d.features_shard_clips = str(features_dir), 2
  d.update(data)
  return config


@pytest.fixture
def encoded(monkeypatch):
  """Names of the clips each features pass encodes (a list per pass)."""
  calls = []
  real = features_lib.encode_clips

  def spy(config, clips, out_dir):
    calls.append(sorted(c.name for c in clips))
    return real(config, clips, out_dir)

  monkeypatch.setattr(features_lib, "encode_clips", spy)
  return calls


def _features(config, names):
  out_dir, _, _ = features_lib.prepare(config, ("sft",))
  store = features_io.open_store(out_dir)
  return {n: store[n] for n in names}


def test_manifest_covers_every_clip_and_reports_skips(recipe, dataset, tmp_path, encoded):
  config = _config(recipe, dataset["root"], tmp_path / "f")
  out_dir, samples, summary = features_lib.prepare(config, ("sft", "eval"))
  assert [s["name"] for s in samples["sft"]] == dataset["good"]
  assert "frames" not in samples["sft"][0] and samples["sft"][0]["labels"] == ["happy", "excited"]
  reasons = {s["name"]: s["reason"] for s in summary["skipped"] if s["split"] == "sft"}
  assert reasons[dataset["noaudio"]].startswith("missing audio")
  assert reasons[dataset["corrupt"]].startswith("cannot decode video")
  manifest = features_io.load_manifest(out_dir)
  assert sorted(manifest.clips) == dataset["good"] and len(manifest.skipped) == 2
  assert len(manifest.shards) == 3  # 6 clips, 2 per shard
  assert encoded == [sorted(dataset["good"] + [dataset["corrupt"], dataset["noaudio"]])]
  # A rerun (any mode of the same data config) encodes nothing.
  features_lib.prepare(config, ("sft", "eval"))
  assert len(encoded) == 1


def test_replaced_media_is_encoded_again(recipe, dataset, tmp_path, encoded):
  """Issue 16 item 1: new media under the same name never reuses the old features."""
  root = tmp_path / "data"
  shutil.copytree(dataset["root"], root)
  config = _config(recipe, root, tmp_path / "f")
  names = dataset["good"]
  before = _features(config, names)
  victim = names[1]
  sf.write(root / "audio" / f"{victim}.wav", 0.3 * np.sign(np.sin(np.arange(40000) * 0.3)), 16000)
  write_mp4(root / "video" / f"{victim}.mp4", 15, seed=99)
  # Same content, new mtime: recognised by its content hash, not encoded again.
  os.utime(root / "audio" / f"{names[2]}.wav", ns=(1, 1))
  after = _features(config, names)
  assert encoded[-1] == [victim]
  assert np.abs(after[victim]["audio_feats"] - before[victim]["audio_feats"]).max() > 1e-3
  assert np.abs(after[victim]["vision_feats"] - before[victim]["vision_feats"]).max() > 1e-3
  fresh = _features(_config(recipe, root, tmp_path / "fresh"), names)
  for name in names:
    for key in features_io.FEATURE_KEYS:
      np.testing.assert_allclose(after[name][key], fresh[name][key], atol=1e-6)


def test_runs_with_the_media_deleted(recipe, dataset, tmp_path, encoded):
  root = tmp_path / "data"
  shutil.copytree(dataset["root"], root)
  config = _config(recipe, root, tmp_path / "f")
  before = _features(config, dataset["good"])
  shutil.rmtree(root / "video")
  shutil.rmtree(root / "audio")
  _, samples, summary = features_lib.prepare(config, ("sft",))
  assert len(encoded) == 1
  assert [s["name"] for s in samples["sft"]] == dataset["good"] and len(summary["skipped"]) == 2
  after = _features(config, dataset["good"])
  for name in dataset["good"]:
    np.testing.assert_array_equal(after[name]["vision_feats"], before[name]["vision_feats"])


def test_a_stopped_pass_keeps_its_finished_shards(recipe, dataset, tmp_path, encoded, monkeypatch):
  config = _config(recipe, dataset["root"], tmp_path / "f")
  closed = []
  real_close = features_io.ShardWriter.close

  def close_then_crash(self):
    if len(closed) == 2:
      raise KeyboardInterrupt("stopped during the third shard")
    real_close(self)
    closed.append(self.shard_id)

  monkeypatch.setattr(features_io.ShardWriter, "close", close_then_crash)
  with pytest.raises(KeyboardInterrupt):
    features_lib.prepare(config, ("sft",))
  monkeypatch.setattr(features_io.ShardWriter, "close", real_close)
  out_dir, samples, _ = features_lib.prepare(config, ("sft",))
  first, second = encoded
  assert len(first) == 6 and len(second) == 2 and set(second) < set(first)
  assert len(samples["sft"]) == len(dataset["good"])
  assert len(features_io.load_manifest(out_dir).shards) == 3


def test_fingerprint_covers_preprocessing_settings_generically(recipe, tmp_path):
  config = _config(recipe, tmp_path, tmp_path / "f")
  key = features_lib.features_dir(config)
  settings = features_io.preprocessing_settings(config)
  assert settings["image_size"] == 32 and settings["face_or_frame"] == "frame"
  assert not {"root", "labels_csv", "batch_size", "features_dir", "synthmer"} & set(settings)
  same = [
      _config(recipe, tmp_path / "moved", tmp_path / "f"),  # the dataset elsewhere
      _config(recipe, tmp_path, tmp_path / "f", batch_size=8, max_length=128),
  ]
  assert all(features_lib.features_dir(c) == key for c in same)
  other = [
      _config(recipe, tmp_path, tmp_path / "f", image_size=16),
      _config(recipe, tmp_path, tmp_path / "f", face_or_frame="face"),
      # A setting this code has never heard of (e.g. a new official resize) counts too.
      _config(recipe, tmp_path, tmp_path / "f", frame_resize="official"),
  ]
  config.model.frozen_dtype = "bfloat16"
  other.append(config)
  assert len({features_lib.features_dir(c) for c in other} | {key}) == len(other) + 1


def test_features_dir_on_gcs(recipe, dataset, tmp_path, fake_gcs, encoded):
  config = _config(recipe, dataset["root"], "gs://bucket/features")
  out_dir, samples, _ = features_lib.prepare(config, ("sft",))
  assert out_dir.startswith("gs://bucket/features/")
  stored = fake_gcs / "bucket" / "features" / out_dir.rsplit("/", 1)[1]
  assert (stored / "manifest.json").exists()
  assert len(list((stored / "shards").glob("*.array_record"))) == 3
  local = _features(_config(recipe, dataset["root"], tmp_path / "f"), dataset["good"])
  store = features_io.open_store(out_dir)
  for name in dataset["good"]:
    np.testing.assert_allclose(store[name]["audio_feats"], local[name]["audio_feats"], atol=1e-6)
  assert len(samples["sft"]) == len(dataset["good"])


_SAME_PID_DRIVER = """
import os, runpy, sys, time
os.getpid = lambda: 4242  # containers sharing a disk may run the same pid
barrier, index = sys.argv[1], sys.argv[2]
open(f"{barrier}.{index}", "w").close()
while not all(os.path.exists(f"{barrier}.{i}") for i in "01"):
  time.sleep(0.02)
sys.argv = ["mer_jax.main", *sys.argv[3:]]
runpy.run_module("mer_jax.main", run_name="__main__")
"""


def test_concurrent_passes_share_a_features_cache(repo_root, recipe, tmp_path):
  """Two runs (as two test processes, or two jobs) fill one cache at once, same pid even.

  Both generate the same synthmer splits and encode the same shards into the default
  features directory at the same time; both must succeed, leave no temporary files and
  give the features of a pass that ran alone.
  """
  import subprocess
  import sys

  cache = tmp_path / "cache"
  env = dict(os.environ, MER_JAX_CACHE=str(cache), PYTHONPATH=str(repo_root))
  env.pop("XLA_FLAGS", None)  # one CPU device each
  flags = ["--config=configs/sft.py:test", "--config.mode=features"]
  flags.append("--config.data.features_shard_clips=4")  # 11 shards for 44 clips
  runs = [
      subprocess.Popen(
          [sys.executable, "-c", _SAME_PID_DRIVER, str(tmp_path / "ready"), str(i)]
          + flags
          + [f"--workdir={tmp_path / f'run{i}'}"],
          cwd=repo_root,
          env=env,
          stdout=subprocess.DEVNULL,
          stderr=subprocess.PIPE,
          text=True,
      )
      for i in range(2)
  ]
  for run in runs:
    _, err = run.communicate(timeout=600)
    assert run.returncode == 0, err[-3000:]
  (out_dir,) = [d for d in (cache / "features").iterdir() if d.is_dir()]
  leftovers = [p.name for p in cache.rglob("*") if ".tmp" in p.name or p.name.startswith(".")]
  assert not leftovers
  manifest = features_io.load_manifest(out_dir)
  assert len(manifest.clips) == 44 and not manifest.skipped  # sft 24, rl 8, eval 8, val 4
  config = recipe("sft", "test")
  config.data.features_dir = str(tmp_path / "alone")
  alone_dir, _, _ = features_lib.prepare(config, features_lib.data_roles(config))
  alone, shared = features_io.open_store(alone_dir), features_io.open_store(out_dir)
  for name in manifest.clips:
    for key in ("vision_feats", "audio_feats"):
      np.testing.assert_allclose(shared[name][key], alone[name][key], atol=1e-5, err_msg=name)


def test_store_opened_before_another_process_added_clips_sees_them(recipe, tmp_path):
  """A process that read a features directory, then finds clips another process encoded
  into it since (a second job on a shared cache), reads those clips too."""
  config = recipe("sft", "test")
  config.data.features_dir = str(tmp_path / "features")
  out_dir, samples, _ = features_lib.prepare(config, ("eval",))
  features_io.open_store(out_dir)[samples["eval"][0]["name"]]  # this process's open store
  stale = dict(features_io._STORES)
  features_lib.prepare(config, ("sft",))  # as another process would write them
  features_io._STORES.update(stale)  # ... without touching this process's store
  _, samples, _ = features_lib.prepare(config, ("sft", "eval"))  # nothing left to encode
  name = samples["sft"][0]["name"]
  assert features_io.open_store(out_dir)[name]["audio_feats"].shape[0] > 0
