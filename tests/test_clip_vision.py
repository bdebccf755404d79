"""CLIP vision tower + projection parity with transformers `CLIPVisionModelWithProjection`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mer_jax.hf import config_from_hf_dir
from mer_jax.hf import load_hf_params
from mer_jax.models.clip_vision import CLIPVisionConfig
from mer_jax.models.clip_vision import CLIPVisionModelWithProjection
from tests import hf_fixtures as fx

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
  out, hf = fx.make_clip_vision(str(tmp_path_factory.mktemp("clip")))
  pixels = np.random.RandomState(0).randn(2, 3, 32, 32).astype(np.float32)
  with torch.no_grad():
    ref = hf(pixel_values=torch.tensor(pixels))
  return out, pixels, ref


@pytest.mark.parametrize("scan", [False, True], ids=["loop", "scan"])
def test_image_features_match_transformers(ckpt, scan):
  hf_dir, pixels, ref = ckpt
  config = config_from_hf_dir(hf_dir, scan_layers=scan)
  params = load_hf_params(hf_dir, config=config)
  out = jax.jit(CLIPVisionModelWithProjection(config).apply)(params, jnp.asarray(pixels))
  assert out["image_embeds"].shape == (2, 16)
  assert fx.rel_max_diff(out["image_embeds"], ref.image_embeds.numpy()) <= 1e-4
  assert fx.rel_max_diff(out["last_hidden_state"], ref.last_hidden_state.numpy()) <= 1e-4
  feats = CLIPVisionModelWithProjection(config).apply(
      params, jnp.asarray(pixels), method=CLIPVisionModelWithProjection.get_image_features
  )
  np.testing.assert_allclose(np.asarray(feats), np.asarray(out["image_embeds"]), atol=1e-6)


def test_full_clip_config_json_is_accepted():
  """openai/clip-vit-large-patch14 ships a CLIPModel config with a nested vision_config."""
  full = {
      "model_type": "clip",
      "projection_dim": 768,
      "vision_config": {"hidden_size": 1024, "patch_size": 14, "num_hidden_layers": 24},
  }
  c = CLIPVisionConfig.from_hf_dict(full)
  assert (c.hidden_size, c.patch_size, c.projection_dim, c.num_positions) == (1024, 14, 768, 257)


def test_full_clip_model_checkpoint_loads(tmp_path):
  """The released openai/clip-vit-large-patch14 is a full CLIPModel: the text tower is ignored."""
  import transformers

  torch.manual_seed(0)
  config = transformers.CLIPConfig(
      vision_config=dict(fx.TINY_CLIP_VISION),
      text_config=dict(
          hidden_size=32,
          intermediate_size=64,
          num_hidden_layers=1,
          num_attention_heads=4,
          vocab_size=64,
          max_position_embeddings=16,
      ),
      projection_dim=16,
  )
  hf = transformers.CLIPModel(config).eval()
  hf.save_pretrained(str(tmp_path))
  pixels = np.random.RandomState(1).randn(2, 3, 32, 32).astype(np.float32)
  with torch.no_grad():
    ref = hf.get_image_features(pixel_values=torch.tensor(pixels))
  ref = getattr(ref, "pooler_output", ref).numpy()
  ours_cfg = config_from_hf_dir(str(tmp_path))
  assert isinstance(ours_cfg, CLIPVisionConfig) and ours_cfg.projection_dim == 16
  out = CLIPVisionModelWithProjection(ours_cfg).apply(
      load_hf_params(str(tmp_path), config=ours_cfg), jnp.asarray(pixels)
  )
  assert fx.rel_max_diff(out["image_embeds"], ref) <= 1e-4
