"""One self-contained HTML evaluation report: metrics, per-class table and every plot in a single file.

Images are inlined as base64 data URIs and the styles are inline, with no script, font or link to fetch,
so the file renders the same offline, attached to a CI run, or mailed to someone.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:1100px;
color:#1f2328;padding:0 1rem}
h1{margin-bottom:.2rem} .sub{color:#59636e;margin-top:0}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}
th,td{padding:.3rem .8rem;border-bottom:1px solid #d1d9e0}
th{text-align:left;background:#f6f8fa} td.n{text-align:right;font-variant-numeric:tabular-nums}
.low{color:#cf222e;font-weight:600} figure{margin:1.5rem 0} figcaption{font-weight:600;margin-bottom:.4rem}
img{max-width:100%;border:1px solid #d1d9e0} code{background:#f6f8fa;padding:0 .25rem}
"""


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _num(value: float | None, low: float = 0.99) -> str:
    if value is None:
        return '<td class="n">n/a</td>'
    css = ' class="n low"' if value < low else ' class="n"'
    return f"<td{css}>{value:.4f}</td>"


#: (group, what it holds) for the accuracy-by-origin table; the keys are ml/origin.py's.
_ORIGINS = (
    ("original", "in the dataset before labelling (the same images as the previous data version)"),
    ("labelled", "added by labelling"),
    ("changed", "labelled: the person changed the model's pre-label"),
    ("accepted", "labelled: the model's pre-label accepted unchanged"),
)


def origin_table(metrics: dict) -> str:
    """Accuracy by origin of the validation images; empty when metrics.json predates these keys."""
    if "n_val_original" not in metrics:
        return ""
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{html.escape(what)}</td>{_num(metrics.get(f'accuracy_{name}'))}"
        f"<td class='n'>{metrics.get(f'n_val_{name}', 0)}</td></tr>"
        for name, what in _ORIGINS
    )
    return (
        "<h2>By origin</h2><table><tr><th>group</th><th>what they are</th><th>accuracy</th>"
        f"<th>images</th></tr>{rows}</table>"
    )


#: (metrics.json suffix, what the set is) for the unknown-images table; the keys are ml/novelty_eval.py's.
_UNKNOWN_SETS = (
    ("unknown_bodies", "synthetic dwarf planets (bodies the model never saw)"),
    ("photos", "random crops of ordinary photos"),
    ("noise", "uniform and Gaussian pixel noise"),
    ("gradients", "flat colour gradients"),
)


def novelty_table(metrics: dict) -> str:
    """Share flagged `unknown` and AUROC per image set; empty when metrics.json predates the detector."""
    if "novelty_val_flagged" not in metrics:
        return ""
    known = (
        f"<tr><td>known</td><td>the validation split</td>{_num(metrics['novelty_val_flagged'], low=-1.0)}"
        "<td class='n'>n/a</td></tr>"
    )
    rows = "".join(
        f"<tr><td>{html.escape(name.replace('_', ' '))}</td><td>{html.escape(what)}</td>"
        f"{_num(metrics.get(f'novelty_flagged_{name}'), low=0.95)}"
        f"{_num(metrics.get(f'novelty_auroc_{name}'))}</tr>"
        for name, what in _UNKNOWN_SETS
    )
    return (
        f"<h2>Unknown images</h2><p>An image answers <code>unknown: true</code> when its novelty exceeds "
        f"{metrics['novelty_threshold']:.3f} (set on the validation split). Accuracy of the exported model "
        f"the service runs: {metrics['accuracy_served']:.4f}.</p>"
        "<table><tr><th>images</th><th>what they are</th><th>flagged unknown</th><th>AUROC vs known</th></tr>"
        f"{known}{rows}</table>"
    )


def render(
    *,
    metrics: dict,
    per_class: list[dict],
    figures: list[tuple[str, Path]],
    meta: dict,
    mistakes: list[tuple[str, str, str]],
) -> str:
    esc = html.escape
    preprocess = meta.get("preprocess", {})
    train = meta.get("params", {}).get("train", {})
    rows = "".join(
        f"<tr><th>{esc(label)}</th>{_num(metrics[key], low=-1.0)}</tr>"
        for key, label in (
            ("accuracy", "accuracy"),
            ("loss", "loss (cross-entropy)"),
            ("precision_macro", "precision (macro)"),
            ("recall_macro", "recall (macro)"),
            ("f1_macro", "F1 (macro)"),
        )
    )
    rows += f'<tr><th>validation images</th><td class="n">{metrics["n_val"]}</td></tr>'
    class_rows = "".join(
        f"<tr><td>{esc(r['class'])}</td>{_num(metrics['per_class_accuracy'].get(r['class']))}"
        f"{_num(r['precision'])}{_num(r['recall'])}{_num(r['f1'])}<td class='n'>{r['support']}</td></tr>"
        for r in per_class
    )
    mistake_rows = "".join(
        f"<tr><td><code>{esc(f)}</code></td><td>{esc(a)}</td><td>{esc(p)}</td></tr>" for f, a, p in mistakes
    ) or '<tr><td colspan="3">none</td></tr>'
    figs = "".join(
        f"<figure><figcaption>{esc(title)}</figcaption>{_img(path)}</figure>" for title, path in figures
    )
    setup = (
        f"input {preprocess.get('image_size')}px {preprocess.get('color_mode')}, "
        f"conv {train.get('conv_filters')}, {train.get('epochs')} epochs, lr {train.get('lr')} "
        f"({train.get('lr_schedule')}), trained on {meta.get('n_train', '?')} images"
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>orbit evaluation report</title>
<style>{_STYLE}</style></head><body>
<h1>orbit: evaluation report</h1>
<p class="sub">planet/moon classifier: {esc(setup)}</p>
<h2>Metrics (validation split)</h2><table>{rows}</table>
{origin_table(metrics)}
{novelty_table(metrics)}
<h2>Per class</h2>
<table><tr><th>class</th><th>accuracy</th><th>precision</th><th>recall</th><th>F1</th><th>images</th></tr>
{class_rows}</table>
<h2>Plots</h2>{figs}
<h2>Misclassified files</h2>
<table><tr><th>file</th><th>actual</th><th>predicted</th></tr>{mistake_rows}</table>
</body></html>
"""


def write_report(path: Path, **parts) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(**parts), encoding="utf-8")
    return path
