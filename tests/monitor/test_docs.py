"""docs/monitoring.md states names and defaults that live in code: check they still agree."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from monitor import drift, log
from monitor.records import PredictionRecord
from monitor.reference import Records
from tests.monitor.support import synthetic_records

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "monitoring.md").read_text()


def test_every_record_field_is_documented():
    rows = set(re.findall(r"^\| `([a-z0-9_]+)`", DOC, flags=re.M)) | set(re.findall(r", `([a-z0-9_]+)`", DOC))
    assert set(PredictionRecord.model_fields) <= rows


def test_the_check_table_names_every_check_and_the_count_is_right():
    reference = Records.from_records(synthetic_records(120, seed=0))
    window = Records.from_records(synthetic_records(120, seed=1))
    names = [c.name for c in drift.run_checks(reference, window, n_permutations=299)]
    table = DOC.split("## The drift check")[1]
    for name in names:
        spelled = re.sub(r"_(r|g|b)$", r"_{r,g,b}", name)
        assert f"`{name}`" in table or spelled in table, name
    assert f"All {len(names)} tests" in DOC


def test_cli_flags_make_targets_and_defaults_in_the_doc_exist():
    source = inspect.getsource(drift.parse_args)
    for flag in set(re.findall(r"`(--[a-z-]+)", DOC)):
        assert f'"{flag}"' in source, flag
    makefile = (ROOT / "Makefile").read_text()
    for target in set(re.findall(r"make ([a-z-]+)", DOC)):
        assert re.search(rf"^{target}:", makefile, flags=re.M), target
    params = inspect.signature(log.PredictionLog).parameters
    assert f"`flush_interval_s` = {params['flush_interval_s'].default:g} seconds" in DOC
    assert (
        f"`max_records` =\n{params['max_records'].default:,}" in DOC
        or f"{params['max_records'].default:,} records" in DOC
    )
    assert f"default {drift.DEFAULT_MIN_N})" in DOC and f"(default {drift.DEFAULT_PERMUTATIONS})" in DOC
    assert f"(default {drift.DEFAULT_ALPHA})" in DOC
    for counter in ("orbit_monitor_dropped_total", "orbit_monitor_written_total"):
        assert counter in DOC
