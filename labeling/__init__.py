"""The labelling loop: Label Studio as a local service, tasks with the model's pre-annotations, an ML
backend adapter, and the export of completed labels into `data/raw` (docs/labeling.md).

Talks to Label Studio over REST only; Label Studio itself runs from `.venv-label`.
"""
