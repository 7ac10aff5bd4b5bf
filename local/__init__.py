"""The laptop loop: an emulated GCS bucket for the DVC remote and the local demo."""
