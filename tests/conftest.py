"""Test setup: 8 fake CPU devices, a persistent compile cache, the shared reference data."""

import importlib.util
import os
import pathlib

# Must happen before JAX initializes its backends (anything importing jax below).
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import jax  # noqa: E402
import pytest  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
_CACHE = os.environ.get(
    "MER_JAX_TEST_COMPILATION_CACHE",
    os.path.join(os.path.expanduser("~"), ".cache", "mer_jax", "test_jax_cache"),
)
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
# Make sure the main-process tests and any subprocess they start share the cache.
os.environ.setdefault("MER_JAX_COMPILATION_CACHE", _CACHE)


def _find_reference() -> pathlib.Path | None:
  """`../shared/reference` next to the checkout (CI and dev machines), or MER_JAX_REFERENCE."""
  env = os.environ.get("MER_JAX_REFERENCE")
  candidates = [pathlib.Path(env)] if env else []
  candidates.append(REPO_ROOT.parent / "shared" / "reference")
  return next((c for c in candidates if c.is_dir()), None)


def pytest_addoption(parser):
  parser.addoption(
      "--cpu-durations",
      type=int,
      default=0,
      metavar="N",
      help="list the N tests that used the most CPU-seconds (setup, call and teardown; this "
      "process and the subprocesses it waited for). On a shared machine the wall times of "
      "--durations mostly measure the load.",
  )


_CPU_SECONDS: dict[str, float] = {}


def _cpu_seconds() -> float:
  t = os.times()
  return t.user + t.system + t.children_user + t.children_system


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
  start = _cpu_seconds()
  yield
  _CPU_SECONDS[item.nodeid] = _cpu_seconds() - start


def pytest_terminal_summary(terminalreporter, config):
  n = config.getoption("--cpu-durations")
  if n and _CPU_SECONDS:
    terminalreporter.write_sep(
        "=", f"most CPU-seconds ({min(n, len(_CPU_SECONDS))} of {len(_CPU_SECONDS)} tests)"
    )
    for nodeid, seconds in sorted(_CPU_SECONDS.items(), key=lambda kv: -kv[1])[:n]:
      terminalreporter.write_line(f"{seconds:8.1f}s cpu  {nodeid}")
    total = sum(_CPU_SECONDS.values())
    terminalreporter.write_line(f"{total:8.1f}s cpu  all {len(_CPU_SECONDS)} tests")


@pytest.fixture(scope="session")
def repo_root() -> pathlib.Path:
  return REPO_ROOT


@pytest.fixture(scope="session")
def reference_dir() -> pathlib.Path:
  """The official lexicon and OV-MERD files; tests skip with a reason where absent."""
  ref = _find_reference()
  if ref is None:
    pytest.skip(
        "../shared/reference (official emotion-wheel files, OV-MERD labels) is not present "
        "next to this checkout; set MER_JAX_REFERENCE to its path to run this test"
    )
  return ref


@pytest.fixture(scope="session")
def recipe():
  """`recipe(name, preset)`: the ConfigDict of `configs/<name>.py:<preset>`, loaded as main.py does."""

  def load(name: str, preset: str | None = None):
    spec = importlib.util.spec_from_file_location(
        f"recipe_{name}", REPO_ROOT / "configs" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(preset)

  return load


@pytest.fixture(scope="session")
def run_context():
  """`with run_context(config, workdir, roles) as ctx`: the RunContext a job builds (policy,
  tokenizer, samples of `roles`) with its run writer, which is closed on exit."""
  import contextlib

  from mer_jax import run_io
  from mer_jax.train import context as context_lib

  @contextlib.contextmanager
  def build(config, workdir, roles=("sft", "eval")):
    writer = run_io.RunWriter(str(workdir), tensorboard=False)
    try:
      yield context_lib.build_context(config, str(workdir), writer, roles=roles)
    finally:
      writer.close()

  return build


@pytest.fixture
def fake_gcs(tmp_path):
  """`gs://BUCKET/...` served from a local directory (returned), as epath and fsspec see it.

  Like GCS, its objects cannot be appended to; what is written through anything but
  epath/fsspec (plain `open`, `os.makedirs`) does not land there.
  """
  import fsspec
  from fsspec.implementations.dirfs import DirFileSystem
  from fsspec.implementations.local import LocalFileSystem

  root = tmp_path / "fake_gcs"
  root.mkdir()

  class FakeGCS(DirFileSystem):
    protocol = ("gs", "gcs")

    def __init__(self, *args, **kwargs):
      del args, kwargs  # gcsfs options such as finalize_on_close
      super().__init__(path=str(root), fs=LocalFileSystem())

    @classmethod
    def _strip_protocol(cls, path):
      path = str(path)
      for prefix in ("gs://", "gcs://"):
        if path.startswith(prefix):
          path = path[len(prefix) :]
      return path.rstrip("/")

    def open(self, path, mode="rb", *args, **kwargs):
      if "a" in mode:
        raise NotImplementedError(f"gs://{path}: GCS objects cannot be appended to")
      return super().open(path, mode, *args, **kwargs)

  for name in FakeGCS.protocol:
    fsspec.register_implementation(name, FakeGCS, clobber=True)
  from etils.epath import backend

  backend.fsspec_backend._get_filesystem.cache_clear()  # a new root for every test
  yield root
