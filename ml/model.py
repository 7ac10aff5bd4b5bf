"""The classifier's architecture: a small CNN that takes preprocess's float32 pixels and returns softmax.

Augmentation layers sit inside the model so the training recipe travels with it; Keras runs them only
when ``training=True``, so ``model(x, training=False)`` and ``predict_on_batch`` see the image as is.
"""

from __future__ import annotations

import keras
from keras import layers

from ml.params import AugmentParams, TrainParams


def augmentation(params: AugmentParams, seed: int) -> list[keras.Layer]:
    """Flips and rotations suit renders taken from random camera angles; black fill matches the background."""
    steps: list[keras.Layer] = []
    if params.flip:
        steps.append(layers.RandomFlip("horizontal_and_vertical", seed=seed))
    if params.rotation > 0:
        steps.append(
            layers.RandomRotation(params.rotation, fill_mode="constant", fill_value=0.0, seed=seed + 1)
        )
    if params.zoom > 0:
        steps.append(layers.RandomZoom(params.zoom, fill_mode="constant", fill_value=0.0, seed=seed + 2))
    return steps


def learning_rate(params: TrainParams, steps_per_epoch: int):
    """Cosine decay settles the weights in the last epochs, so the final score is not a lucky epoch."""
    if params.lr_schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(params.lr, decay_steps=params.epochs * steps_per_epoch)
    return params.lr


def build_model(
    input_shape: tuple[int, int, int], n_classes: int, params: TrainParams, steps_per_epoch: int = 1
) -> keras.Model:
    """Conv blocks (conv 3x3 [+ batch norm] + max-pool), pooling, an optional dense layer, softmax."""
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    for layer in augmentation(params.augment, params.seed):
        x = layer(x)
    for i, filters in enumerate(params.conv_filters):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=not params.batch_norm, name=f"conv{i + 1}")(x)
        if params.batch_norm:
            x = layers.BatchNormalization(name=f"bn{i + 1}")(x)
        x = layers.Activation("relu", name=f"relu{i + 1}")(x)
        x = layers.MaxPooling2D(name=f"pool{i + 1}")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x) if params.pooling == "avg" else layers.Flatten()(x)
    if params.dense_units:
        x = layers.Dense(params.dense_units, activation="relu", name="dense")(x)
    if params.dropout:
        x = layers.Dropout(params.dropout, seed=params.seed + 3, name="dropout")(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
    model = keras.Model(inputs, outputs, name="planet_classifier")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate(params, steps_per_epoch)),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model
