"""synthmer: determinism, cache, label/reason/cue structure, and learnability (probe)."""

import numpy as np
import pytest

from input_pipeline import synthmer

CFG = {
    'num_frames': 8,
    'sample_rate': 16000,
    'synthmer': {
        'seed': 3,
        'num_sft': 40,
        'num_rl': 12,
        'num_eval': 6,
        'frame_size': 48,
        'audio_seconds': 2.0,
        'sft_label_noise': 0.5,
        'conflict_rate': 0.3,
    },
}
ALL_FORMS = {w for forms in synthmer.CONCEPT_FORMS.values() for w in forms}


def test_clip_shapes_and_determinism():
  s = synthmer.settings(CFG)
  a, b = synthmer.generate_clip(s, 'rl', 5), synthmer.generate_clip(s, 'rl', 5)
  assert a['frames'].shape == (8, 48, 48, 3) and a['frames'].dtype == np.uint8
  assert a['audio'].shape == (32000,) and a['audio'].dtype == np.float32
  np.testing.assert_array_equal(a['frames'], b['frames'])
  np.testing.assert_array_equal(a['audio'], b['audio'])
  assert a['reason'] == b['reason'] and a['labels'] == b['labels']
  c = synthmer.generate_clip(s, 'eval', 5)
  assert not np.array_equal(a['frames'], c['frames'])
  assert a['name'] == 'synthmer_rl_000005'
  # A clip does not depend on the split size.
  s2 = dict(s, num_rl=99)
  np.testing.assert_array_equal(synthmer.generate_clip(s2, 'rl', 5)['audio'], a['audio'])


def test_generate_split_cache_roundtrip(tmp_path):
  fresh = synthmer.generate_split(CFG, 'rl', cache_dir='')
  first = synthmer.generate_split(CFG, 'rl', cache_dir=str(tmp_path))
  files = list(tmp_path.glob('synthmer-*/rl/meta.json'))
  assert len(files) == 1
  cached = synthmer.generate_split(CFG, 'rl', cache_dir=str(tmp_path))
  assert len(fresh) == len(first) == len(cached) == 12
  for x, y in zip(fresh, cached, strict=True):
    np.testing.assert_array_equal(x['frames'], y['frames'])
    np.testing.assert_array_equal(x['audio'], y['audio'])  # audio lives on the int16 grid
    for k in ('name', 'subtitle', 'labels', 'reason', 'cues', 'probes', 'latent'):
      assert x[k] == y[k]
  # A different setting gets a different cache entry.
  other = {**CFG, 'synthmer': {**CFG['synthmer'], 'seed': 4}}
  synthmer.generate_split(other, 'rl', cache_dir=str(tmp_path))
  assert len(list(tmp_path.glob('synthmer-*/rl/meta.json'))) == 2


def test_clean_split_labels_reason_cues_probes():
  s = synthmer.settings(CFG)
  clips = [synthmer.generate_clip(s, 'rl', i) for i in range(200)]
  conflicts = [c for c in clips if c['latent']['conflict']]
  assert 0.2 < len(conflicts) / len(clips) < 0.4
  for c in clips:
    lat = c['latent']
    assert c['labels'] and set(c['labels']) <= ALL_FORMS
    assert c['reason'].endswith('emotional state is ' + ', '.join(c['labels']) + '.')
    for cue in c['cues']['visual'] + c['cues']['audio']:
      assert cue in c['reason']
    assert len(c['cues']['emotion']) == 1
    if not lat['conflict']:
      base, strong, weak = synthmer.EMOTION_CONCEPTS[lat['visual']]
      allowed = {w for k in (base, strong, weak) if k for w in synthmer.CONCEPT_FORMS[k]}
      assert set(c['labels']) <= allowed
    answers = {(p['modality'], p['answer']) for p in c['probes']}
    assert answers == {('visual', 'yes'), ('visual', 'no'), ('audio', 'yes'), ('audio', 'no')}
    yes_v = [
        p['question'] for p in c['probes'] if p['modality'] == 'visual' and p['answer'] == 'yes'
    ]
    assert yes_v == [synthmer.VISUAL_PROBES[lat['visual']]]
  # Conflicts make the gold depend on two modalities: same face, different labels.
  forced = [c for c in conflicts if c['latent']['conflict'] == 'forced_smile_nervous']
  assert forced and all(
      c['latent']['visual'] == 'happy' and c['latent']['audio'] == 'fearful' for c in forced
  )
  assert all('embarrassed' in c['labels'] for c in forced)


def test_sft_split_is_noisy():
  s = synthmer.settings(CFG)
  sft = [synthmer.generate_clip(s, 'sft', i) for i in range(150)]
  clean_suffix = sum(
      c['reason'].endswith('emotional state is ' + ', '.join(c['labels']) + '.') for c in sft
  )
  assert clean_suffix < 0.9 * len(sft)  # truncated or relabelled descriptions
  assert all(set(c['labels']) <= ALL_FORMS for c in sft)


def test_linear_probe_on_random_features():
  """The emotion signal survives a random-init frozen encoder at 32x32 / 2 s clips."""
  sklearn = pytest.importorskip('sklearn.linear_model')
  s = synthmer.settings(CFG)
  clips = [synthmer.generate_clip(s, 'eval', i) for i in range(560)]
  vis, aud = synthmer.random_encoder_features(clips)
  for feats, key in ((vis, 'visual'), (aud, 'audio')):
    y = np.array([synthmer.EMOTIONS.index(c['latent'][key]) for c in clips])
    clf = sklearn.LogisticRegression(max_iter=3000).fit(feats[:420], y[:420])
    acc = clf.score(feats[420:], y[420:])
    assert acc > 0.85, (key, acc)  # chance is 1/7


def _lexicons():
  lexicon = pytest.importorskip('mer_jax.metrics.lexicon')
  out = [('builtin', lexicon.load_lexicon('builtin'))]
  import os

  official = os.path.join(
      os.path.dirname(__file__), '..', '..', 'shared', 'reference', 'emotion_wheel'
  )
  if os.path.isdir(official):
    out.append(('official', lexicon.load_official(official)))
  return out


def test_label_forms_are_wheel_synonyms():
  """Each surface form maps like its concept's first form (level 1) in >= 3 of 5 wheels."""
  for lex_name, lex in _lexicons():
    for concept, forms in synthmer.CONCEPT_FORMS.items():
      for form in forms:
        same = sum(
            lex.map_label(form, f'wheel{w}_level1') is not None
            and lex.map_label(form, f'wheel{w}_level1')
            == lex.map_label(forms[0], f'wheel{w}_level1')
            for w in range(1, 6)
        )
        assert same >= 3, (lex_name, concept, form, same)


def test_sft_face_only_annotations():
  """sft_face_only_rate: the face's basic emotion and visual cues only, at that rate."""
  s = dict(synthmer.settings(CFG), sft_label_noise=0.0, sft_face_only_rate=0.6)
  sft = [synthmer.generate_clip(s, 'sft', i) for i in range(300)]
  face_only = [c for c in sft if 'In the audio' not in c['reason']]
  assert 0.5 < len(face_only) / len(sft) < 0.7
  for c in face_only:
    face = c['latent']['visual']
    assert c['labels'][0] in synthmer.CONCEPT_FORMS[synthmer.EMOTION_CONCEPTS[face][0]]
    assert len(c['labels']) == 1
    assert all(cue in c['reason'] for cue in c['cues']['visual'])
    assert not any(cue in c['reason'] for cue in c['cues']['audio'])
    assert c['reason'].endswith('emotional state is ' + c['labels'][0] + '.')
  # A conflict clip annotated from the face misses what the voice adds.
  assert any(
      c['latent']['conflict'] == 'forced_smile_nervous'
      and c['labels'][0] in synthmer.CONCEPT_FORMS['happy']
      for c in face_only
  )
  # The other clips keep the clean annotation (no label noise here).
  rest = [c for c in sft if 'In the audio' in c['reason']]
  assert all(
      c['reason'].endswith('emotional state is ' + ', '.join(c['labels']) + '.') for c in rest
  )
