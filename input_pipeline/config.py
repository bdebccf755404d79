"""Default `config.data` section (every field the input pipeline reads).

`configs/*.py` may build on it; tests use it with small overrides.
"""

from __future__ import annotations

import ml_collections


def default_data_config(**overrides) -> ml_collections.ConfigDict:
  """config.data with the paper defaults; see docs/input_pipeline.md for each field."""
  data = ml_collections.ConfigDict(
      dict(
          source='synthmer',  # 'synthmer' | 'released'
          root='',
          labels_csv='',  # name,openset
          reasons_csv='',  # name,reason (optional)
          subtitles_csv='',  # name,...,english
          rl_root='',  # the RL split ('' = the training split's field)
          rl_labels_csv='',
          rl_reasons_csv='',
          rl_subtitles_csv='',
          eval_labels_csv='',
          eval_root='',  # held-out and validation media, reasons, subtitles ('' = root, ...)
          eval_reasons_csv='',
          eval_subtitles_csv='',
          val_labels_csv='',  # name,openset of the validation split
          face_or_frame='face',  # 'face' | 'frame'
          num_frames=8,
          num_audio_clips=8,
          audio_clip_seconds=2.0,
          sample_rate=16000,
          image_size=224,
          question='hybrid',  # 'hybrid' | 'description' | 'labels'
          target='hybrid',  # 'hybrid' | 'think_answer' | 'answer'
          max_length=1024,
          length_buckets=[256, 384, 512, 768, 1024],
          batch_size=3,
          eval_batch_size=8,
          shuffle_seed=0,
          worker_count=0,
          tokenizer='synthmer',  # HF tokenizer dir or 'synthmer'
          tokens_per_modality=dict(multi=1, audio=1, video=1),
          features_dir='',
          decode_workers=0,
          features_batch_size=8,
          features_shard_clips=512,
          synthmer=dict(
              seed=0,
              num_sft=2000,
              num_rl=200,
              num_eval=200,
              num_val=200,
              frame_size=48,
              audio_seconds=2.0,
              sft_label_noise=0.3,
              sft_face_only_rate=0.0,
              conflict_rate=0.3,
              cache_dir='',
          ),
      )
  )
  for key, value in overrides.items():
    if isinstance(value, dict) and key in data and isinstance(data[key], ml_collections.ConfigDict):
      data[key].update(value)
    else:
      data[key] = value
  return data
