"""Export the trained Keras model to ONNX for serving without TensorFlow, and prove it answers the same.

Called by the train stage right after fitting (so model.keras, model.onnx and meta.json always come from
one run). The augmentation layers (RandomFlip, RandomRotation, ...) do not convert and do nothing at
inference, so the exported graph is rebuilt without them, with two outputs: `probabilities` and
`embedding` (the input of the final Dense layer, which the novelty score and monitoring use). The check
runs the ONNX file through :class:`ml.inference.Predictor` (what the service runs) on every validation
image: the same class for every image and probabilities within :data:`TOLERANCE` of Keras, or the stage fails.
"""

from __future__ import annotations

import logging
from importlib import metadata
from pathlib import Path

import numpy as np

from ml.inference import INPUT_NAME, OUTPUT_NAMES, Predictor

TOLERANCE = 1e-4  # largest difference of any probability between Keras and onnxruntime
OPSET = 17
RUNTIME_PACKAGES = ("keras", "tensorflow-cpu", "tf2onnx", "onnx", "onnxruntime")


class ExportError(RuntimeError):
    """The model cannot be exported, or the exported graph does not answer like the Keras model."""


def runtime_versions() -> dict[str, str]:
    """Versions of the packages that made and run the exported graph, for meta.json."""
    versions = {}
    for name in RUNTIME_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def inference_graph(model):
    """The same layers and weights without the augmentation, outputs `probabilities` and `embedding`.

    orbit's model is a chain (ml/model.py), so the layers are re-applied in order to a fresh input.
    """
    import keras

    kept = [
        layer for layer in model.layers
        if not isinstance(layer, keras.layers.InputLayer) and not type(layer).__name__.startswith("Random")
    ]
    if not kept or not isinstance(kept[-1], keras.layers.Dense):
        raise ExportError(f"the model's last layer is {type(kept[-1]).__name__ if kept else 'missing'}; "
                          "the export expects the softmax Dense layer of ml/model.py there")
    inputs = keras.Input(model.input_shape[1:], name=INPUT_NAME)
    x = inputs
    for layer in kept[:-1]:
        x = layer(x)
    return keras.Model(inputs, [kept[-1](x), x], name="planet_classifier_inference")


def _rename(graph, old: str, new: str) -> None:
    for node in graph.node:
        node.output[:] = [new if name == old else name for name in node.output]
        node.input[:] = [new if name == old else name for name in node.input]
    for value in graph.output:
        if value.name == old:
            value.name = new


def export_onnx(model, path: Path) -> int:
    """Write the inference graph of `model` to `path`; returns the embedding width."""
    from ml.runtime import import_tensorflow

    tf = import_tensorflow()
    import onnx
    import tf2onnx

    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    graph_model = inference_graph(model)
    signature = (tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name=INPUT_NAME),)
    proto, _ = tf2onnx.convert.from_keras(graph_model, input_signature=signature, opset=OPSET)
    produced = [value.name for value in proto.graph.output]
    if len(produced) != len(OUTPUT_NAMES):
        raise ExportError(f"tf2onnx produced outputs {produced}; expected two (probabilities, embedding)")
    for old, new in zip(produced, OUTPUT_NAMES, strict=True):  # tf2onnx names outputs after the layers
        _rename(proto.graph, old, new)
    for value in [*proto.graph.input, *proto.graph.output]:
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    onnx.checker.check_model(proto)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(path))
    return int(graph_model.outputs[1].shape[-1])


def check_parity(model, predictor: Predictor, x: np.ndarray, *, batch_size: int = 64) -> dict:
    """Compare Keras and the exported graph on `x`; raise :class:`ExportError` naming every mismatch."""
    # The evaluation's own Keras path; imported here because ml.evaluate imports ml.train, which imports this.
    from ml.evaluate import predict_arrays

    expected = predict_arrays(model, x, batch_size)
    got = np.concatenate([predictor.run(x[i : i + batch_size])[0] for i in range(0, len(x), batch_size)]) \
        if len(x) else expected
    diff = np.abs(expected - got).max(axis=1) if len(x) else np.zeros(0)
    other_class = np.flatnonzero(expected.argmax(axis=1) != got.argmax(axis=1))
    too_far = np.flatnonzero(diff > TOLERANCE)
    if len(other_class) or len(too_far):
        raise ExportError(
            f"{predictor.path} does not answer like the Keras model on the validation split: "
            f"{len(other_class)} of {len(x)} images get another class "
            f"(first indices {other_class[:10].tolist()}), "
            f"{len(too_far)} differ by more than {TOLERANCE} (largest {diff.max():.2e}). The export "
            "(ml/export.py) or a runtime version changed; fix it before serving this model"
        )
    return {"images": int(len(x)), "max_abs_diff": float(diff.max()) if len(x) else 0.0}
