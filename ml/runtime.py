"""TensorFlow start-up for the stages: a quiet import and deterministic kernels.

TensorFlow 2.21 prints an info banner (oneDNN, CPU features) to stderr before its logging is configured,
so TF_CPP_MIN_LOG_LEVEL cannot hide it; the stages capture stderr during the import and pass on every
line except that banner. Anything else TensorFlow prints, and every exception, still shows.
"""

from __future__ import annotations

import os
import sys
import tempfile
from types import ModuleType

_BANNER = (
    "All log messages before absl::InitializeLog() is called",
    "oneDNN custom operations are on",
    "cpu_feature_guard.cc",
    "To enable the following instructions",
)


def import_tensorflow() -> ModuleType:
    """`import tensorflow` (and keras) with the start-up banner filtered out of stderr."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import keras  # noqa: F401
            import tensorflow as tf
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode(errors="replace").splitlines():
                if not any(marker in line for marker in _BANNER):
                    print(line, file=sys.stderr)
    return tf


def make_deterministic(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and ask TF for deterministic kernels (same data -> same weights)."""
    tf = import_tensorflow()
    import keras

    keras.utils.set_random_seed(seed)
    try:
        tf.config.experimental.enable_op_determinism()
    except (AttributeError, RuntimeError):  # an older TF, or already configured in this process
        pass
