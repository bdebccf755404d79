"""Prompt and target text of AffectGPT / AffectGPT-R1, verbatim from the released code.

The released code has no chat template: the prompt is one `###Human: ... ###Assistant: `
string holding placeholder tokens whose embeddings the model overwrites with fused
audio/video features (design.md section 2).
"""

from __future__ import annotations

from typing import Mapping, Sequence

IMAGE_TOKEN = '<ImageHere>'
AUDIO_TOKEN = '<AudioHere>'
FRAME_TOKEN = '<FrameHere>'
FACE_TOKEN = '<FaceHere>'
MULTI_TOKEN = '<MultiHere>'
PLACEHOLDER_TOKENS = (IMAGE_TOKEN, AUDIO_TOKEN, FRAME_TOKEN, FACE_TOKEN, MULTI_TOKEN)

END_OF_ANSWER = '###'

QUESTIONS = {
    'description': "Please infer the person's emotional state and provide your reasoning process.",
    'labels': 'Please recognize all possible emotional states of the character.',
}

_VIDEO_SENTENCE = {
    'face': (
        'Meanwhile, we uniformly sample raw frames from the video and extract faces '
        'from these frames: <Video>{video}</Video>. '
    ),
    'frame': 'Meanwhile, we uniformly sample raw frames from the video: <Video>{video}</Video>. ',
}

# The released 'multiface_audio_face_text' / 'multiframe_audio_frame_text' prompts.
_PROMPT = (
    '###Human: The audio and video merged info is: <Multi>{multi}</Multi>. '
    'The audio content is as follows: <Audio>{audio}</Audio>. '
    '{video_sentence}'
    'The subtitle of this video is: <Subtitle>{subtitle}</Subtitle>. '
    'Now, please answer my question based on all the provided information. '
    '{question} ###Assistant: '
)

DEFAULT_TOKENS_PER_MODALITY = {'multi': 1, 'audio': 1, 'video': 1}


def video_token(face_or_frame: str) -> str:
  """The placeholder of the visual stream: `<FaceHere>` or `<FrameHere>`."""
  if face_or_frame == 'face':
    return FACE_TOKEN
  if face_or_frame == 'frame':
    return FRAME_TOKEN
  raise ValueError(f"config.data.face_or_frame must be 'face' or 'frame', got {face_or_frame!r}")


def question_text(question: str) -> str:
  """Question key ('description' | 'labels') -> the verbatim question sentence."""
  if question not in QUESTIONS:
    raise ValueError(f'question must be one of {sorted(QUESTIONS)}, got {question!r}')
  return QUESTIONS[question]


def build_prompt(
    subtitle: str,
    question: str,
    face_or_frame: str,
    tokens_per_modality: Mapping[str, int] | None = None,
) -> str:
  """The user prompt (design.md section 2), ending with `###Assistant: `; see `_prompt`."""
  return _prompt(subtitle, question_text(question), face_or_frame, tokens_per_modality)


def _prompt(
    subtitle: str,
    question: str,
    face_or_frame: str,
    tokens_per_modality: Mapping[str, int] | None = None,
) -> str:
  """The user prompt (design.md section 2), ending with `###Assistant: `.

  Args:
    subtitle: the English subtitle of the clip.
    question: the question sentence (build_prompt: QUESTIONS[key]).
    face_or_frame: 'face' or 'frame'; selects the video sentence and placeholder.
    tokens_per_modality: copies of each placeholder ({'multi','audio','video'} -> int);
      the model overwrites these positions, in order, with its fused features.
  """
  counts = dict(DEFAULT_TOKENS_PER_MODALITY)
  if tokens_per_modality is not None:
    counts.update({k: int(v) for k, v in dict(tokens_per_modality).items()})
  for key in ('multi', 'audio', 'video'):
    if counts[key] < 1:
      raise ValueError(f'tokens_per_modality[{key!r}] must be >= 1, got {counts[key]}')
  placeholder = video_token(face_or_frame)
  video_sentence = _VIDEO_SENTENCE[face_or_frame].format(video=placeholder * counts['video'])
  return _PROMPT.format(
      multi=MULTI_TOKEN * counts['multi'],
      audio=AUDIO_TOKEN * counts['audio'],
      video_sentence=video_sentence,
      subtitle=subtitle,
      question=question,
  )


def build_probe_prompt(
    subtitle: str,
    probe_question: str,
    face_or_frame: str,
    tokens_per_modality: Mapping[str, int] | None = None,
) -> str:
  """The released prompt with a free yes/no question (MEP-Bench-style probes, OPPO 4.2)."""
  return _prompt(
      subtitle,
      f'{probe_question.strip()} Please answer yes or no.',
      face_or_frame,
      tokens_per_modality,
  )


def format_labels(labels: Sequence[str]) -> str:
  """`l1, l2, ...`; an empty list becomes 'neutral' (released code)."""
  labels = [label.strip() for label in labels if label and label.strip()] or ['neutral']
  return ', '.join(labels)


def build_target(labels: Sequence[str], reason: str, target: str, question: str = 'labels') -> str:
  """Assistant text for one training example, without the trailing `###`.

  target:
    'think_answer': AffectGPT-R1 cold start, `<think>{reason}</think><answer>{l1, l2}</answer>`.
    'answer': the "w/o think" variant, `<answer>{l1, l2}</answer>`.
    'hybrid': AffectGPT SFT; the answer of the asked `question`: the description text
      for 'description', `The character's emotional state is {l1, l2}.` for 'labels'.
  """
  answer = format_labels(labels)
  if target == 'think_answer':
    return f'<think>{reason.strip()}</think><answer>{answer}</answer>'
  if target == 'answer':
    return f'<answer>{answer}</answer>'
  if target == 'hybrid':
    if question == 'description':
      if not reason.strip():
        raise ValueError('description question needs a non-empty reason')
      return reason.strip()
    if question == 'labels':
      return f"The character's emotional state is {answer}."
    raise ValueError(f'unknown question {question!r}')
  raise ValueError(
      f"config.data.target must be 'think_answer', 'answer' or 'hybrid', got {target!r}"
  )


def choose_question(question: str, target: str, reason: str, rng) -> str:
  """Resolve config.data.question for one example.

  'hybrid' picks 'description' or 'labels' uniformly (released SFT); a description
  question on a sample without reason text falls back to 'labels' under the hybrid
  target, since there is nothing to answer it with.
  """
  if question == 'hybrid':
    question = ('description', 'labels')[int(rng.integers(2))]
  if target == 'hybrid' and question == 'description' and not reason.strip():
    question = 'labels'
  question_text(question)
  return question
