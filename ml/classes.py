"""The labels of the dataset, defined once.

They are the folder names of the guide's `data/raw`, in the alphabetical order that Keras also uses, so
an index means the same class in the data, the model and the service.
"""

from __future__ import annotations

CLASSES: tuple[str, ...] = (
    "Earth",
    "Jupiter",
    "Mars",
    "Mercury",
    "Moon",
    "Neptune",
    "Pluto",
    "Saturn",
    "Uranus",
    "Venus",
)

__all__ = ["CLASSES"]
