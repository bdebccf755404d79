"""synthmer: the built-in, seeded demo dataset (see docs/synthmer.md).

Every clip has a latent emotional state: one emotion per modality (visual, audio,
text) plus an intensity. Usually the three agree; with probability `conflict_rate` the
clip follows one of CONFLICTS, whose gold label set depends on more than one modality
(a smiling face with a trembling voice is 'nervous, embarrassed', not 'happy').

- frames: a face drawn with PIL whose mouth curvature, brows, eyes and skin tint encode
  the visual emotion (tints move the mean pixel statistics, so a tiny random-init
  encoder at 32x32 still separates the classes);
- audio: a voice-like harmonic signal whose pitch range, contour, loudness, tempo,
  tremolo and harshness encode the audio emotion;
- subtitle: a template sentence whose words hint the text emotion (neutral sentences
  carry no hint);
- labels: open-vocabulary words drawn from synonym / word-form lists, so the
  emotion-wheel metric is needed to score them;
- reason: an English description naming visual, audio and text cues and the inferred
  emotion (the `<think>` target); `cues` holds the same phrases per set (OPPO's cue
  sets) and `probes` yes/no questions on visual / audio evidence (MEP-Bench style).

Splits: 'sft' (large, coarse: face-only annotations, noisy / incomplete labels,
truncated reasons), 'rl' (small, clean), 'eval' (held out, clean: the reported numbers),
'val' (validation, clean, disjoint from 'eval': where settings are chosen). Every clip is
generated from its own `np.random.default_rng([seed, split, index])`, so a clip does
not depend on the split size and reruns are identical. Generated splits are cached (npy + json) keyed by a hash
of the generator settings.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from typing import Any, Mapping

import numpy as np
from PIL import Image
from PIL import ImageDraw

from input_pipeline import files

GENERATOR_VERSION = 3
SPLITS = ('sft', 'rl', 'eval', 'val')
EMOTIONS = ('happy', 'sad', 'angry', 'fearful', 'surprised', 'disgusted', 'neutral')

# Concept -> surface forms: synonyms and word forms that the emotion wheels map to the
# same level-1 word (checked against the builtin and official lexicons in the tests).
CONCEPT_FORMS = {
    'happy': ('happy', 'happiness', 'joyful', 'joy', 'cheerful', 'delighted'),
    'excited': ('excited', 'excitement'),
    'sad': ('sad', 'sadness', 'sorrowful', 'sorrow', 'unhappy'),
    'depressed': ('depressed', 'miserable'),
    'angry': ('angry', 'anger', 'irritated', 'annoyed', 'mad'),
    'furious': ('furious', 'enraged'),
    'fearful': ('fearful', 'scared', 'frightened', 'afraid'),
    'nervous': ('nervous', 'nervousness', 'anxious', 'anxiety', 'worried', 'apprehensive'),
    'terrified': ('terrified',),
    'surprised': ('surprised', 'surprise', 'startled'),
    'shocked': ('shocked',),
    'disgusted': ('disgusted', 'disgust', 'disgusting', 'revolted'),
    'calm': ('calm', 'calmness', 'peaceful', 'tranquil'),
    'embarrassed': ('embarrassed',),
    'helpless': ('helpless',),
    'frustrated': ('frustrated',),
    'disappointed': ('disappointed',),
}
# Emotion -> (base concept, concept added at high intensity, concept at low intensity).
EMOTION_CONCEPTS = {
    'happy': ('happy', 'excited', None),
    'sad': ('sad', 'depressed', None),
    'angry': ('angry', 'furious', None),
    'fearful': ('fearful', 'terrified', 'nervous'),
    'surprised': ('surprised', 'shocked', None),
    'disgusted': ('disgusted', None, None),
    'neutral': ('calm', None, None),
}

# (visual, audio, text) -> gold concepts and the inference that needs both modalities.
CONFLICTS = (
    dict(
        name='forced_smile_nervous',
        visual='happy',
        audio='fearful',
        text='neutral',
        concepts=('nervous', 'embarrassed'),
        inference='although {he} is smiling, the trembling voice reveals nervousness, so the smile looks forced and embarrassed',
    ),
    dict(
        name='smile_through_sadness',
        visual='happy',
        audio='sad',
        text='sad',
        concepts=('helpless', 'sad'),
        inference='the smile does not match the weak voice and the sad words, so {he} is forcing a smile out of helplessness',
    ),
    dict(
        name='suppressed_anger',
        visual='neutral',
        audio='angry',
        text='angry',
        concepts=('angry', 'frustrated'),
        inference='{his} face stays controlled, but the harsh voice and the words show anger {he} is holding back',
    ),
    dict(
        name='pleasant_surprise',
        visual='surprised',
        audio='happy',
        text='happy',
        concepts=('surprised', 'excited'),
        inference='the astonished face together with the lively voice shows a pleasant, excited surprise',
    ),
    dict(
        name='frightened_shock',
        visual='surprised',
        audio='fearful',
        text='fearful',
        concepts=('shocked', 'fearful'),
        inference='the astonished face together with the trembling voice shows shock mixed with fear',
    ),
    dict(
        name='quiet_disappointment',
        visual='neutral',
        audio='sad',
        text='neutral',
        concepts=('disappointed', 'sad'),
        inference='the calm face hides it, but the low, weak voice reveals disappointment',
    ),
)

VISUAL_CUES = {
    'happy': (
        'the corners of {his} mouth turn up into a smile',
        '{his} eyes narrow slightly as {he} smiles',
        '{his} face looks bright and relaxed',
    ),
    'sad': (
        'the corners of {his} mouth droop',
        '{his} eyebrows slant upward in the middle',
        '{his} eyes look heavy and downcast',
    ),
    'angry': (
        '{his} brows are furrowed and pulled down',
        '{his} lips are pressed tightly together',
        '{his} face is flushed red and {he} glares',
    ),
    'fearful': (
        '{his} eyes are wide open',
        '{his} eyebrows are raised and drawn together',
        '{his} face looks pale',
    ),
    'surprised': (
        '{his} mouth falls open into an o shape',
        '{his} eyebrows shoot up high',
        '{his} eyes are wide with astonishment',
    ),
    'disgusted': (
        '{his} upper lip curls to one side',
        '{his} nose wrinkles',
        '{his} brows are lowered and {his} face has a sickly tint',
    ),
    'neutral': (
        '{his} expression is calm',
        '{his} mouth is relaxed in a straight line',
        '{his} eyes look steady',
    ),
}
AUDIO_CUES = {
    'happy': ('{his} voice is high-pitched and lively', '{he} speaks quickly with a rising tone'),
    'sad': ('{his} voice is low and weak', '{he} speaks slowly and the tone keeps falling'),
    'angry': ('{his} voice is loud and harsh', '{he} speaks fast and forcefully'),
    'fearful': ('{his} voice trembles', '{his} voice is high and shaky'),
    'surprised': ('{his} pitch rises sharply', '{he} exclaims in a sudden burst'),
    'disgusted': ('{his} voice is nasal and drawn-out', '{he} speaks in a low, dismissive tone'),
    'neutral': ('{his} tone is flat and steady', '{he} speaks at a moderate volume'),
}
TEXT_CUES = {
    'happy': 'which expresses joy and gratitude',
    'sad': 'which expresses loss and sorrow',
    'angry': 'which sounds accusing and hostile',
    'fearful': 'which expresses worry and fear',
    'surprised': 'which expresses disbelief at something unexpected',
    'disgusted': 'which expresses revulsion',
    'neutral': 'which is an ordinary statement without emotional words',
}
EMOTION_NOUN = {
    'happy': 'happiness',
    'sad': 'sadness',
    'angry': 'anger',
    'fearful': 'fear',
    'surprised': 'surprise',
    'disgusted': 'disgust',
    'neutral': 'calmness',
}
VISUAL_PROBES = {
    'happy': 'Does the person smile in the video?',
    'sad': "Do the corners of the person's mouth droop in the video?",
    'angry': "Are the person's brows furrowed and pulled down in the video?",
    'fearful': "Are the person's eyebrows raised and drawn together in the video?",
    'surprised': "Does the person's mouth fall open in the video?",
    'disgusted': 'Does the person curl the upper lip in the video?',
    'neutral': "Is the person's face relaxed and expressionless in the video?",
}
AUDIO_PROBES = {
    'happy': 'Is the voice high-pitched and lively?',
    'sad': 'Is the voice low and weak?',
    'angry': 'Is the voice loud and harsh?',
    'fearful': 'Does the voice tremble?',
    'surprised': 'Does the pitch rise sharply?',
    'disgusted': 'Is the voice nasal and drawn-out?',
    'neutral': 'Is the voice flat and steady?',
}

_FILL = {
    'thing': (
        'the prize',
        'the tickets',
        'the contract',
        'the cake',
        'the car',
        'the keys',
        'the report',
    ),
    'person': ('Mom', 'my brother', 'Lily', 'Tom', 'the doctor', 'your father', 'the teacher'),
    'place': ('station', 'office', 'hospital', 'market', 'school', 'restaurant', 'park'),
    'room': ('kitchen', 'room', 'office', 'car', 'house'),
}
SUBTITLES = {
    'happy': (
        "I can't believe we actually got {thing}!",
        'This is the best day I have had in years.',
        'Thank you so much, I love it!',
        'We did it, {person} is going to be so proud!',
    ),
    'sad': (
        'I guess {person} is never coming back.',
        'Nothing I do seems to matter anymore.',
        'I miss the way things used to be.',
        'We lost {thing}, and it was all I had.',
    ),
    'angry': (
        'How many times do I have to tell you to leave my {room}?',
        'You lied to me again!',
        'Get out of my {room} right now!',
        'Who gave you the right to take {thing}?',
    ),
    'fearful': (
        'Did you hear that noise outside the {room}?',
        'What if {person} finds out what I did?',
        'I really do not want to go in there alone.',
        'Please, do not leave me here by myself.',
    ),
    'surprised': (
        "Wait, you're telling me {person} is here?",
        'No way, when did this happen?',
        "Oh! I didn't expect to see you at the {place}.",
        'You bought {thing} for me? Really?',
    ),
    'disgusted': (
        'Ugh, what is that smell in the {room}?',
        'I cannot believe you would eat that.',
        'That is absolutely revolting.',
        'Get that thing away from me, it is filthy.',
    ),
    'neutral': (
        'I will be at the {place} around five.',
        'Please pass me {thing}.',
        'We should check the schedule for tomorrow.',
        '{person} said the meeting moved to Monday.',
    ),
}

# Visual rendering parameters per emotion: mouth curvature (+ smile), mouth openness,
# brow tilt (+ inner ends up), brow height, eye openness, skin tint (RGB multipliers).
_FACE = {
    'happy': dict(curve=1.0, open=0.1, tilt=0.0, brow=0.0, eye=0.55, tint=(1.25, 1.1, 0.55)),
    'sad': dict(curve=-0.9, open=0.0, tilt=0.8, brow=0.0, eye=0.45, tint=(0.45, 0.55, 1.05)),
    'angry': dict(curve=-0.15, open=0.0, tilt=-1.0, brow=-0.4, eye=0.5, tint=(1.35, 0.45, 0.4)),
    'fearful': dict(curve=-0.3, open=0.35, tilt=0.7, brow=0.5, eye=1.25, tint=(1.2, 1.2, 1.25)),
    'surprised': dict(curve=0.0, open=1.0, tilt=0.0, brow=1.0, eye=1.3, tint=(0.6, 1.15, 1.25)),
    'disgusted': dict(curve=-0.5, open=0.15, tilt=-0.4, brow=-0.3, eye=0.6, tint=(0.7, 1.2, 0.45)),
    'neutral': dict(curve=0.0, open=0.0, tilt=0.0, brow=0.0, eye=0.85, tint=(0.85, 0.85, 0.85)),
}
# Audio parameters per emotion: f0 (Hz), glide over each syllable (fraction), global glide
# over the clip, vibrato depth/rate, amplitude, syllables per second, harmonic rolloff.
_VOICE = {
    'happy': dict(f0=320.0, glide=0.25, sweep=0.0, vib=0.0, amp=0.55, tempo=5.5, roll=1.2),
    'sad': dict(f0=95.0, glide=-0.2, sweep=-0.15, vib=0.0, amp=0.12, tempo=1.8, roll=2.0),
    'angry': dict(f0=190.0, glide=0.0, sweep=0.0, vib=0.0, amp=0.85, tempo=6.5, roll=0.5),
    'fearful': dict(f0=400.0, glide=0.0, sweep=0.0, vib=0.08, amp=0.3, tempo=4.0, roll=1.5),
    'surprised': dict(f0=220.0, glide=0.5, sweep=0.8, vib=0.0, amp=0.5, tempo=2.5, roll=1.2),
    'disgusted': dict(f0=130.0, glide=-0.05, sweep=0.0, vib=0.0, amp=0.35, tempo=1.5, roll=0.8),
    'neutral': dict(f0=160.0, glide=0.0, sweep=0.0, vib=0.0, amp=0.3, tempo=3.5, roll=1.5),
}
_N_HARMONICS = 6


def _get(cfg: Any, key: str, default=None):
  if cfg is None:
    return default
  if isinstance(cfg, Mapping):
    return cfg.get(key, default)
  return cfg.get(key, default) if hasattr(cfg, 'get') else getattr(cfg, key, default)


def _data_config(cfg: Any):
  """Accept the whole config or config.data."""
  return cfg.data if _get(cfg, 'data') is not None and _get(cfg, 'synthmer') is None else cfg


def settings(cfg: Any) -> dict:
  """Every generator setting that changes the output (the cache key)."""
  data = _data_config(cfg)
  syn = _get(data, 'synthmer') or {}
  return dict(
      version=GENERATOR_VERSION,
      seed=int(_get(syn, 'seed', 0)),
      num_sft=int(_get(syn, 'num_sft', 2000)),
      num_rl=int(_get(syn, 'num_rl', 200)),
      num_eval=int(_get(syn, 'num_eval', 200)),
      num_val=int(_get(syn, 'num_val', 200)),
      frame_size=int(_get(syn, 'frame_size', 48)),
      audio_seconds=float(_get(syn, 'audio_seconds', 2.0)),
      sft_label_noise=float(_get(syn, 'sft_label_noise', 0.3)),
      sft_face_only_rate=float(_get(syn, 'sft_face_only_rate', 0.0)),
      conflict_rate=float(_get(syn, 'conflict_rate', 0.3)),
      num_frames=int(_get(data, 'num_frames', 8)),
      sample_rate=int(_get(data, 'sample_rate', 16000)),
  )


def settings_hash(s: Mapping) -> str:
  return hashlib.sha256(json.dumps(dict(s), sort_keys=True).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- latent state


def sample_latent(rng: np.random.Generator, conflict_rate: float) -> dict:
  """Per-modality emotions, intensity in [0.5, 1], gold concepts and inference text."""
  intensity = float(rng.uniform(0.5, 1.0))
  if rng.random() < conflict_rate:
    c = CONFLICTS[int(rng.integers(len(CONFLICTS)))]
    return dict(
        visual=c['visual'],
        audio=c['audio'],
        text=c['text'],
        intensity=intensity,
        conflict=c['name'],
        concepts=list(c['concepts']),
        inference=c['inference'],
    )
  emotion = EMOTIONS[int(rng.integers(len(EMOTIONS)))]
  # A third of the consistent clips have an uninformative subtitle.
  text = 'neutral' if rng.random() < 1 / 3 else emotion
  base, strong, weak = EMOTION_CONCEPTS[emotion]
  if weak is not None and intensity < 0.65:
    concepts = [weak]
  else:
    concepts = [base]
    if strong is not None and intensity > 0.85:
      concepts.append(strong)
  return dict(
      visual=emotion,
      audio=emotion,
      text=text,
      intensity=intensity,
      conflict='',
      concepts=concepts,
      inference='',
  )


def draw_labels(concepts, rng: np.random.Generator) -> list[str]:
  forms = CONCEPT_FORMS
  return [forms[c][int(rng.integers(len(forms[c])))] for c in concepts]


# ----------------------------------------------------------------------------- rendering


def render_frames(
    visual: str, intensity: float, num_frames: int, size: int, rng: np.random.Generator
) -> np.ndarray:
  """Face frames uint8 [num_frames, size, size, 3] showing the `visual` emotion."""
  p = _FACE[visual]
  k = intensity
  bg = rng.integers(20, 90, size=3)
  skin = np.array([200, 160, 130]) * rng.uniform(0.9, 1.1)
  tint = 1.0 + k * (np.array(p['tint']) - 1.0)
  skin = tuple(int(v) for v in np.clip(skin * tint, 0, 255))
  feature = tuple(int(v) for v in np.clip(np.array(skin) * 0.25, 0, 255))
  cx0, cy0 = size * (0.5 + rng.uniform(-0.05, 0.05, size=2))
  r = size * rng.uniform(0.36, 0.42)
  lw = max(1, size // 20)
  frames = np.empty((num_frames, size, size, 3), np.uint8)
  phase = rng.uniform(0, 2 * np.pi)
  for f in range(num_frames):
    img = Image.new('RGB', (size, size), tuple(int(v) for v in bg))
    d = ImageDraw.Draw(img)
    cx = cx0 + size * 0.02 * np.sin(phase + f)
    cy = cy0 + size * 0.015 * np.cos(phase + 0.7 * f)
    d.ellipse([cx - r, cy - 1.15 * r, cx + r, cy + 1.15 * r], fill=skin)
    talk = 0.5 + 0.5 * np.sin(phase + 1.9 * f)  # the mouth moves while speaking
    # eyes
    ew, eh = 0.2 * r, max(0.13 * r * (0.85 + k * (p['eye'] - 0.85)), 0.03 * r)
    for side in (-1, 1):
      ex, ey = cx + side * 0.42 * r, cy - 0.25 * r
      d.ellipse([ex - ew, ey - eh, ex + ew, ey + eh], fill=(250, 250, 250))
      pr = min(ew, eh) * 0.7
      d.ellipse([ex - pr, ey - pr, ex + pr, ey + pr], fill=feature)
      # brows: inner end raised by tilt, both raised by brow height
      by = ey - 0.32 * r - k * p['brow'] * 0.2 * r
      inner = by - k * p['tilt'] * 0.18 * r
      outer = by + k * p['tilt'] * 0.08 * r
      d.line([(ex - side * 0.05 * r, inner), (ex + side * 0.3 * r, outer)], fill=feature, width=lw)
    # mouth: parabola with curvature (+ = smile); open mouths are filled ellipses
    my, mw = cy + 0.5 * r, 0.42 * r
    openness = k * p['open'] + 0.12 * talk
    curve = k * p['curve'] * 0.3 * r
    xs = np.linspace(-mw, mw, 9)
    skew = (xs / mw) * (0.12 * r * k if visual == 'disgusted' else 0.0)
    ys = my - curve * (xs / mw) ** 2 + curve * 0.5 - skew
    d.line(list(zip(cx + xs, ys, strict=True)), fill=feature, width=lw + 1)
    if openness > 0.15:
      oh = openness * 0.22 * r
      ow = mw * (0.45 if visual == 'surprised' else 0.7)
      d.ellipse([cx - ow, my - oh, cx + ow, my + oh], fill=(60, 20, 30))
    frames[f] = np.asarray(img)
  noise = rng.integers(-6, 7, size=frames.shape, dtype=np.int16)
  return np.clip(frames.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def synthesize_audio(
    audio_emotion: str, intensity: float, seconds: float, sr: int, rng: np.random.Generator
) -> np.ndarray:
  """Voice-like float32 [round(seconds*sr)] in [-1, 1], on the int16 grid (like a wav)."""
  v = _VOICE[audio_emotion]
  k = intensity
  n = int(round(seconds * sr))
  t = np.arange(n, dtype=np.float32) / np.float32(sr)
  tempo = v['tempo'] * rng.uniform(0.9, 1.1) * (0.85 + 0.3 * k)
  syl = t * tempo + rng.uniform(0, 1)
  frac = syl - np.floor(syl)
  f0 = v['f0'] * rng.uniform(0.92, 1.08)
  f0_t = f0 * (
      1
      + k * v['glide'] * (frac - 0.5)
      + k * v['sweep'] * (t / max(seconds, 1e-6))
      + k * v['vib'] * np.sin(2 * np.pi * 9.0 * t)
  )
  phase = np.mod(2 * np.pi * np.cumsum(f0_t) / sr, 2 * np.pi).astype(np.float32)
  weights = np.arange(1, _N_HARMONICS + 1) ** (-v['roll'])
  weights = (weights / weights.sum()).astype(np.float32)
  # Harmonics sin(k*phase) by the Chebyshev recurrence: two trig calls instead of K.
  two_cos = 2 * np.cos(phase)
  prev, cur = np.zeros_like(phase), np.sin(phase)
  wave = weights[0] * cur
  for w in weights[1:]:
    prev, cur = cur, two_cos * cur - prev
    wave += w * cur
  env = np.clip(np.sin(np.pi * frac), 0, None) ** 0.6
  if v['vib'] > 0:  # trembling: amplitude tremolo on top of the pitch vibrato
    env = env * (1 - 0.5 * k * (0.5 + 0.5 * np.sin(2 * np.pi * 7.0 * t)))
  amp = v['amp'] * (0.6 + 0.4 * k) * rng.uniform(0.85, 1.15)
  wave = amp * env * wave
  if audio_emotion == 'angry':  # harshness: soft clipping adds high harmonics
    wave = np.tanh(3 * wave) / 3 * 1.5
  wave = wave + 0.004 * rng.standard_normal(n, dtype=np.float32)
  return (np.round(np.clip(wave, -1, 1) * 32767) / 32767).astype(np.float32)


# ----------------------------------------------------------------------------- text


def _fill(template: str, rng: np.random.Generator) -> str:
  out = template
  for key, options in _FILL.items():
    slot = '{' + key + '}'
    if slot in out:
      out = out.replace(slot, options[int(rng.integers(len(options)))])
  return out


def _pick(options, n, rng):
  idx = rng.choice(len(options), size=min(n, len(options)), replace=False)
  return [options[i] for i in sorted(idx)]


def _sentence(s: str) -> str:
  return s[0].upper() + s[1:]


def describe(latent: Mapping, subtitle: str, labels, pron: Mapping, rng) -> tuple[str, dict]:
  """Reason text and the cue sets it is built from."""
  v, a, t = latent['visual'], latent['audio'], latent['text']
  visual = [c.format(**pron) for c in _pick(VISUAL_CUES[v], 2, rng)]
  audio = [c.format(**pron) for c in _pick(AUDIO_CUES[a], 2, rng)]
  if latent['inference']:
    emotion = latent['inference'].format(**pron)
  else:
    sources = ['facial expression', 'voice'] + (['words'] if t != 'neutral' else [])
    emotion = (
        f"the {', the '.join(sources[:-1])} and the {sources[-1]} all suggest {EMOTION_NOUN[v]}"
    )
  reason = (
      f"In the video, {' and '.join(visual)}. "
      f"In the audio, {' and '.join(audio)}. "
      f'In the text, the subtitle says "{subtitle}", {TEXT_CUES[t]}. '
      f"{_sentence(emotion)}. Therefore, it is inferred that {pron['his']} emotional state is "
      f"{', '.join(labels)}."
  )
  return reason, {'visual': visual, 'audio': audio, 'emotion': [emotion]}


def make_probes(latent: Mapping, rng) -> list[dict]:
  """One yes and one no question per modality, about evidence in that modality only."""
  probes = []
  for modality, table in (('visual', VISUAL_PROBES), ('audio', AUDIO_PROBES)):
    present = latent[modality]
    absent = [e for e in EMOTIONS if e != present]
    other = absent[int(rng.integers(len(absent)))]
    probes.append(dict(modality=modality, question=table[present], answer='yes'))
    probes.append(dict(modality=modality, question=table[other], answer='no'))
  return probes


def face_only_annotation(
    latent: Mapping, cues: Mapping, pron: Mapping, rng
) -> tuple[list[str], str]:
  """What a coarse annotator who reads only the face writes: its basic emotion and cues.

  MER-Caption-like automatic annotations name the most visible cue and a basic emotion
  and miss what the voice and words add (a smile over a trembling voice becomes 'happy').
  """
  face = latent['visual']
  labels = draw_labels([EMOTION_CONCEPTS[face][0]], rng)
  reason = (
      f"In the video, {' and '.join(cues['visual'])}. "
      f"{_sentence('the facial expression suggests ' + EMOTION_NOUN[face])}. "
      f"Therefore, it is inferred that {pron['his']} emotional state is {', '.join(labels)}."
  )
  return labels, reason


def _coarsen(labels, latent, reason, cues, pron, s, rng):
  """SFT split: face-only annotations, noisy or incomplete labels, truncated descriptions."""
  # Systematic: the annotator reads the face only. (No draw at rate 0: the generator-v2
  # random stream, so v2 coarse data is reproduced exactly.)
  if s['sft_face_only_rate'] > 0 and rng.random() < s['sft_face_only_rate']:
    return face_only_annotation(latent, cues, pron, rng)
  noise = s['sft_label_noise']
  labels = list(labels)
  if rng.random() < noise:
    kind = int(rng.integers(3))
    if kind == 0 and len(labels) > 1:  # incomplete: one label missing
      labels.pop(int(rng.integers(len(labels))))
    elif kind == 1:  # wrong: one label from another emotion
      wrong = [e for e in EMOTIONS if e not in (latent['visual'], latent['audio'])]
      concept = EMOTION_CONCEPTS[wrong[int(rng.integers(len(wrong)))]][0]
      labels[int(rng.integers(len(labels)))] = draw_labels([concept], rng)[0]
    else:  # coarse: only the face's emotion
      labels = draw_labels([EMOTION_CONCEPTS[latent['visual']][0]], rng)
  if rng.random() < noise:  # truncated description
    sentences = reason.split('. ')
    reason = '. '.join(sentences[: int(rng.integers(1, len(sentences)))]).rstrip('.') + '.'
  return labels, reason


# ----------------------------------------------------------------------------- clips


def generate_clip(s: Mapping, split: str, index: int) -> dict:
  """One sample dict (module docstring); deterministic in (settings, split, index)."""
  rng = np.random.default_rng([s['seed'], SPLITS.index(split), index])
  latent = sample_latent(rng, s['conflict_rate'])
  pron = dict(he='he', his='his') if rng.random() < 0.5 else dict(he='she', his='her')
  frames = render_frames(
      latent['visual'], latent['intensity'], s['num_frames'], s['frame_size'], rng
  )
  audio = synthesize_audio(
      latent['audio'], latent['intensity'], s['audio_seconds'], s['sample_rate'], rng
  )
  templates = SUBTITLES[latent['text']]
  subtitle = _fill(templates[int(rng.integers(len(templates)))], rng)
  labels = draw_labels(latent['concepts'], rng)
  reason, cues = describe(latent, subtitle, labels, pron, rng)
  if split == 'sft':
    labels, reason = _coarsen(labels, latent, reason, cues, pron, s, rng)
  return dict(
      name=f'synthmer_{split}_{index:06d}',
      frames=frames,
      audio=audio,
      subtitle=subtitle,
      labels=labels,
      reason=reason,
      cues=cues,
      probes=make_probes(latent, rng),
      latent={k: latent[k] for k in ('visual', 'audio', 'text', 'intensity', 'conflict')},
  )


def split_size(s: Mapping, split: str) -> int:
  if split not in SPLITS:
    raise ValueError(f'synthmer split must be one of {SPLITS}, got {split!r}')
  return s[f'num_{split}']


def default_cache_dir() -> str:
  return files.cache_root()


_META_KEYS = ('name', 'subtitle', 'labels', 'reason', 'cues', 'probes', 'latent')


def _save(path: str, samples: list[dict]) -> None:
  """Cache layout: `{path}/frames.npy` uint8, `audio.npy` int16 (the wav grid), `meta.json`."""
  tmp = files.temp_sibling(path)  # never shared with a concurrent writer
  os.makedirs(tmp)
  np.save(os.path.join(tmp, 'frames.npy'), np.stack([smp['frames'] for smp in samples]))
  np.save(
      os.path.join(tmp, 'audio.npy'),
      np.stack([np.round(smp['audio'] * 32767).astype(np.int16) for smp in samples]),
  )
  with open(os.path.join(tmp, 'meta.json'), 'w') as f:
    json.dump([{k: smp[k] for k in _META_KEYS} for smp in samples], f)
  if os.path.isdir(path) and not os.path.exists(os.path.join(path, 'meta.json')):
    shutil.rmtree(path)  # left over by an interrupted run
  try:
    os.replace(tmp, path)
  except OSError:  # another process cached the same split first
    shutil.rmtree(tmp, ignore_errors=True)


def _load(path: str) -> list[dict]:
  # Frames stay memory-mapped (read on first use), so loading a cached split is instant.
  frames = np.load(os.path.join(path, 'frames.npy'), mmap_mode='r')
  audio = np.load(os.path.join(path, 'audio.npy'), mmap_mode='r')
  with open(os.path.join(path, 'meta.json')) as f:
    meta = json.load(f)
  return [
      dict(m, frames=frames[i], audio=audio[i].astype(np.float32) / 32767)
      for i, m in enumerate(meta)
  ]


def generate_split(
    cfg: Any, split: str, cache_dir: str | None = None, media: bool = True
) -> list[dict]:
  """All clips of one split ('sft' | 'rl' | 'eval' | 'val'), from the on-disk cache when present.

  Args:
    cfg: config.data (or the whole config); reads num_frames, sample_rate and the
      `synthmer` sub-dict (seed, num_sft, num_rl, num_eval, num_val, frame_size, audio_seconds,
      sft_label_noise, sft_face_only_rate, conflict_rate, optional cache_dir).
    split: 'sft', 'rl', 'eval' or 'val'.
    cache_dir: overrides config.data.synthmer.cache_dir and $MER_JAX_CACHE; '' disables.
    media: False leaves out `frames` and `audio` (a cached split is then read from its
      meta.json alone).
  """
  s = settings(cfg)
  n = split_size(s, split)
  if cache_dir is None:
    cache_dir = _get(_get(_data_config(cfg), 'synthmer'), 'cache_dir') or default_cache_dir()
  path = None
  if cache_dir:
    path = os.path.join(cache_dir, f'synthmer-{settings_hash(s)}', split)
    if os.path.exists(os.path.join(path, 'meta.json')):
      if not media:
        with open(os.path.join(path, 'meta.json')) as f:
          return json.load(f)
      return _load(path)
  samples = [generate_clip(s, split, i) for i in range(n)]
  if path is not None and n > 0:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    _save(path, samples)
  if not media:
    return [{k: smp[k] for k in _META_KEYS} for smp in samples]
  return samples


def text_corpus() -> list[str]:
  """Every word the generator can emit (for the synthmer tokenizer)."""
  lines = []
  pron_sets = (dict(he='he', his='his'), dict(he='she', his='her'))
  for pron in pron_sets:
    for table in (VISUAL_CUES, AUDIO_CUES):
      lines += [c.format(**pron) for cues in table.values() for c in cues]
    lines += [_sentence(c['inference'].format(**pron)) for c in CONFLICTS]
    lines.append(f"Therefore, it is inferred that {pron['his']} emotional state is")
    lines.append('In the video, In the audio, In the text, the subtitle says "')
  lines += list(TEXT_CUES.values()) + list(VISUAL_PROBES.values()) + list(AUDIO_PROBES.values())
  lines += [
      f'the facial expression, the voice and the words all suggest {n}'
      for n in EMOTION_NOUN.values()
  ]
  for templates in SUBTITLES.values():
    for tpl in templates:
      if '{' not in tpl:
        lines.append(tpl)
      for key, options in _FILL.items():
        if '{' + key + '}' in tpl:
          lines += [tpl.replace('{' + key + '}', o) for o in options]
  words = [w for forms in CONCEPT_FORMS.values() for w in forms]
  lines += words + [', '.join(words), 'neutral, ' + ', '.join(words)]
  return lines


def random_encoder_features(clips, image_size: int = 32, sample_rate: int = 16000):
  """Learnability check: mean-pooled features of tiny frozen random "encoders".

  Vision: tanh of a random projection of 4x4 patches of the CLIP-normalized frames
  (a ViT patch embedding); audio: tanh of a random projection of 400-sample frames with
  stride 320 of the normalized 2 s clips (a wav2vec conv stem). Returns
  (visual [N, 64], audio [N, 64]) float arrays for linear probes.
  """
  from input_pipeline import decode
  from input_pipeline import preprocess

  rng = np.random.default_rng(0)
  wv, wa = rng.normal(0, 0.02, (48, 64)), rng.normal(0, 0.02, (400, 64))
  vis, aud = [], []
  for c in clips:
    x = preprocess.clip_preprocess(c['frames'], image_size)
    p = image_size // 4
    patches = x.reshape(len(x), 3, p, 4, p, 4).transpose(0, 2, 4, 3, 5, 1).reshape(-1, 48)
    vis.append(np.tanh(10 * patches @ wv).mean(0))
    a = preprocess.wav2vec2_normalize(decode.clip_audio(c['audio'], sample_rate, 8, 2.0))
    frames = np.lib.stride_tricks.sliding_window_view(a, 400, axis=1)[:, ::320]
    aud.append(np.tanh(5 * frames @ wa).mean((0, 1)))
  return np.array(vis), np.array(aud)
