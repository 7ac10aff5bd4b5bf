"""What the service saw, kept so that a person and a scheduled check can tell when the world changed.

`records` (one prediction as a record), `sinks` (where objects go: the bucket, or a folder), `log` (the
service's non-blocking writer), `reference` (the validation split as the expected behaviour), `drift` (the
check and its CLI), `report` (the HTML a person reads). docs/monitoring.md explains the choices.
"""
