"""The HTML report of one drift check: a single self-contained file (images inlined), readable offline.

What a person needs to decide between "tune", "roll back" and "label and retrain" (docs/monitoring.md):
the verdict and every check with its p-value and level, the reference and the window side by side
(novelty, confidence, pixel statistics, predicted classes, a 2-D PCA of the embeddings), and the most novel
images of the window when the log kept them.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from monitor.records import PredictionRecord
from monitor.reference import Records
from monitor.sinks import Sink

THUMBNAILS = 12


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _figures(reference: Records, window: Records) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    out = []
    panels = [
        ("novelty", reference.novelty, window.novelty),
        ("top probability", reference.top_probability, window.top_probability),
    ]
    for kind, ref, win in (
        ("mean", reference.channel_mean, window.channel_mean),
        ("std", reference.channel_std, window.channel_std),
    ):
        panels += [(f"pixel {kind}, channel {c}", ref[:, c], win[:, c]) for c in range(ref.shape[1])]
    panels.append(("sharpness", reference.sharpness, window.sharpness))
    cols = 4
    fig, axes = plt.subplots(
        (len(panels) + cols - 1) // cols, cols, figsize=(4 * cols, 2.6 * ((len(panels) + cols - 1) // cols))
    )
    for ax, (title, ref, win) in zip(axes.ravel(), panels, strict=False):
        bins = np.histogram_bin_edges(np.concatenate([ref, win]), bins=30)
        ax.hist(ref, bins=bins, density=True, alpha=0.5, label="reference")
        ax.hist(win, bins=bins, density=True, alpha=0.5, label="window")
        ax.set_title(title, fontsize=9)
    for ax in axes.ravel()[len(panels) :]:
        ax.axis("off")
    axes.ravel()[0].legend(fontsize=8)
    fig.tight_layout()
    out.append(("Distributions: reference vs window", _png(fig)))
    plt.close(fig)

    classes = sorted(set(reference.predictions) | set(window.predictions))
    fig, ax = plt.subplots(figsize=(9, 3))
    x = np.arange(len(classes))
    ax.bar(x - 0.2, [np.mean(reference.predictions == c) for c in classes], 0.4, label="reference")
    ax.bar(x + 0.2, [np.mean(window.predictions == c) for c in classes], 0.4, label="window")
    ax.set_xticks(x, classes, rotation=30, fontsize=8)
    ax.set_ylabel("share of predictions")
    ax.legend(fontsize=8)
    out.append(("Predicted classes", _png(fig)))
    plt.close(fig)

    pca = PCA(n_components=2).fit(reference.embeddings)
    fig, ax = plt.subplots(figsize=(5, 4))
    for name, part in (("reference", reference), ("window", window)):
        xy = pca.transform(part.embeddings)
        ax.scatter(xy[:, 0], xy[:, 1], s=6, alpha=0.5, label=name)
    ax.legend(fontsize=8)
    ax.set_title("embeddings, PCA of the reference", fontsize=9)
    out.append(("Embeddings", _png(fig)))
    plt.close(fig)
    return out


def _thumbnails(records: Sequence[PredictionRecord], sink: Sink | None) -> list[str]:
    from PIL import Image

    cells = []
    kept = sorted((r for r in records if r.image_object), key=lambda r: -r.novelty)[:THUMBNAILS]
    for rec in kept:
        try:
            with Image.open(io.BytesIO(sink.get(rec.image_object))) as image:
                image = image.convert("RGB")
                image.thumbnail((96, 96))
                buffer = io.BytesIO()
                image.save(buffer, format="JPEG", quality=85)
            src = "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()
            body = f'<img src="{src}" alt="{html.escape(rec.image_object)}">'
        except Exception as exc:  # a lost or unreadable image costs its thumbnail, not the report
            body = f"<em>image unavailable ({html.escape(type(exc).__name__)})</em>"
        cells.append(
            f"<figure>{body}<figcaption>{html.escape(rec.prediction)} p={rec.top_probability:.2f}<br>"
            f"novelty {rec.novelty:.3g}{' (unknown)' if rec.unknown else ''}</figcaption></figure>"
        )
    return cells


def write_report(
    path: Path,
    reference: Records,
    records: Sequence[PredictionRecord],
    result: dict,
    *,
    sink: Sink | None = None,
) -> Path:
    verdict = {True: "Drift found", False: "No drift", None: "No verdict"}[result["drift"]]
    parts = [
        f"<h1>{verdict}: {html.escape(result['model'])}</h1>",
        f"<p>{html.escape(result.get('reason', ''))}. Window: {result['n']} predictions; reference: "
        f"{result['n_reference']} validation images. Family-wise false-alarm rate at most {result['alpha']} "
        f"({result['correction']} correction over {len(result['checks'])} tests).</p>",
    ]
    if result["checks"]:
        rows = "".join(
            f"<tr class={c['verdict']}><td>{html.escape(name)}</td><td>{html.escape(c['what'])}</td>"
            f"<td>{c['statistic']:.4g}</td><td>{c['p_value']:.3g}</td><td>{c['threshold']:.3g}</td>"
            f"<td>{c['verdict']}</td></tr>"
            for name, c in result["checks"].items()
        )
        parts.append(
            "<h2>Checks</h2><table><tr><th>check</th><th>test</th><th>statistic</th><th>p-value</th>"
            f"<th>level</th><th>verdict</th></tr>{rows}</table>"
        )
    if len(records) >= 2:
        window = Records.from_records(list(records))
        for title, src in _figures(reference, window):
            parts.append(f'<h2>{title}</h2><img src="{src}" alt="{html.escape(title)}">')
        cells = _thumbnails(records, sink)
        parts.append("<h2>Most novel images of the window</h2>")
        parts.append(
            f'<div class="thumbs">{"".join(cells)}</div>'
            if cells
            else "<p>No image of this window was kept.</p>"
        )
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px}tr.drift{background:#fdd}"
        ".thumbs{display:flex;flex-wrap:wrap;gap:8px}figure{margin:0;font-size:11px;text-align:center}"
    )
    head = f"<!doctype html><html><head><meta charset=utf-8><title>{verdict}</title><style>{style}</style>"
    page = f"{head}</head><body>{''.join(parts)}</body></html>"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page)
    return path
