"""Analysis of a noise-review study: how often readers judged the synthetic map the noisier one.

Per map and pooled over maps: the proportion of answers choosing the synthetic image, its Wilson 95 %
score interval and an exact two-sided binomial test against 0.5 (scipy.stats.binomtest); per reader
the same proportion and the median seconds per case (shown to answered); agreement between readers on
"synthetic judged noisier" over the cases every reader answered: Cohen's kappa for two readers,
Fleiss' kappa for three or more. Answers are the store's unblinded rows (store.unblinded_answers).
"""

import csv
import json
import math

import numpy as np

from ..core.json_values import without_nan
from ..core.output_layout import ReviewAnalysisOutput

Z_95 = 1.959963984540054


def wilson_interval(successes, trials, z=Z_95):
    """Wilson score interval (low, high) of a binomial proportion; (nan, nan) for no trials."""
    if trials == 0:
        return float("nan"), float("nan")
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return centre - half, centre + half


def binomial_p(successes, trials):
    """Exact two-sided binomial test of `successes` in `trials` against p = 0.5; nan for no trials."""
    from scipy.stats import binomtest

    return float(binomtest(successes, trials, 0.5).pvalue) if trials else float("nan")


def cohen_kappa(first, second):
    """Cohen's kappa of two raters' labels on the same items."""
    first, second = np.asarray(first), np.asarray(second)
    labels = np.union1d(first, second)
    observed = float(np.mean(first == second))
    expected = float(sum(np.mean(first == k) * np.mean(second == k) for k in labels))
    return float("nan") if expected == 1 else (observed - expected) / (1 - expected)


def fleiss_kappa(counts):
    """Fleiss' kappa from counts (items x categories): how many raters put each item in each category
    (the same number of raters for every item)."""
    counts = np.asarray(counts, dtype=np.float64)
    raters = counts.sum(axis=1)
    if counts.shape[0] == 0 or not np.all(raters == raters[0]) or raters[0] < 2:
        raise ValueError("Fleiss' kappa needs the same number (>= 2) of raters for every item")
    n = raters[0]
    agreement = ((counts * (counts - 1)).sum(axis=1) / (n * (n - 1))).mean()
    shares = counts.sum(axis=0) / counts.sum()
    chance = float((shares ** 2).sum())
    return float("nan") if chance == 1 else float((agreement - chance) / (1 - chance))


def proportion_row(label, answers):
    k, n = sum(a["synthetic_chosen"] for a in answers), len(answers)
    low, high = wilson_interval(k, n)
    return {"map": label, "answers": n, "synthetic_noisier": k, "proportion": k / n if n else float("nan"),
            "ci95_low": low, "ci95_high": high, "p_binomial": binomial_p(k, n)}


def agreement(answers):
    """Kappa of "synthetic judged noisier" over the cases every reader answered."""
    readers = sorted({a["reader"] for a in answers})
    by_case = {}
    for a in answers:
        by_case.setdefault(a["case"], {})[a["reader"]] = a["synthetic_chosen"]
    common = sorted(c for c, votes in by_case.items() if len(votes) == len(readers))
    row = {"readers": len(readers), "cases": len(common), "method": "", "kappa": float("nan")}
    if len(readers) < 2 or not common:
        return row
    if len(readers) == 2:
        row.update(method="Cohen", kappa=cohen_kappa([by_case[c][readers[0]] for c in common],
                                                      [by_case[c][readers[1]] for c in common]))
    else:
        counts = [[sum(by_case[c].values()), len(readers) - sum(by_case[c].values())] for c in common]
        row.update(method="Fleiss", kappa=fleiss_kappa(counts))
    return row


def analyze(answers, maps):
    """Tables of the module docstring from unblinded answers: {noisier, readers, agreement}."""
    noisier = [proportion_row(m, [a for a in answers if a["map"] == m]) for m in maps]
    noisier.append(proportion_row("pooled", answers))
    readers = []
    for name in dict.fromkeys(a["reader"] for a in answers):  # in the order of their first answer
        own = [a for a in answers if a["reader"] == name]
        row = {k: v for k, v in proportion_row("pooled", own).items() if k != "map"}
        readers.append({"reader": name, **row, "median_seconds": float(np.median([a["seconds"] for a in own]))})
    by_reader_map = [{"reader": r["reader"], **{m: "{}/{}".format(
        sum(a["synthetic_chosen"] for a in answers if a["reader"] == r["reader"] and a["map"] == m),
        sum(1 for a in answers if a["reader"] == r["reader"] and a["map"] == m)) for m in maps}} for r in readers]
    return {"noisier": noisier, "readers": readers, "reader_by_map": by_reader_map,
            "agreement": [dict(agreement([a for a in answers if a["map"] == m]), map=m) for m in maps]
            + [dict(agreement(answers), map="pooled")]}


def _write_csv(path, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["empty"])
        writer.writeheader()
        writer.writerows(rows)


def write_analysis(store, out_dir):
    """Analyse the study in `store` into `out_dir` (ReviewAnalysisOutput), atomically. Returns the
    tables."""
    from ..core.atomic import atomic_output_dir
    from .study import MAP_TITLES

    info = store.info()
    maps = json.loads(info.get("maps", "[]")) or sorted({c["map"] for c in store.cases()})
    answers = store.unblinded_answers()
    tables = analyze(answers, maps)
    with atomic_output_dir(out_dir) as staging:
        layout = ReviewAnalysisOutput(staging)
        _write_csv(layout.noisier, tables["noisier"])
        _write_csv(layout.readers, tables["readers"])
        _write_csv(layout.agreement, tables["agreement"])
        summary = {"study": info.get("name"), "cases": len(store.cases()), "answers": len(answers), **tables}
        layout.summary.write_text(json.dumps(without_nan(summary), indent=2, allow_nan=False) + "\n")
        _write_figure(layout.figure, tables["noisier"], MAP_TITLES)
        layout.report.write_text(_html(summary, layout.figure.name, MAP_TITLES))
    return tables


def _write_figure(path, rows, titles):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [titles.get(r["map"], "Pooled") for r in rows]
    values = np.array([r["proportion"] for r in rows], dtype=float)
    low = values - np.array([r["ci95_low"] for r in rows], dtype=float)
    high = np.array([r["ci95_high"] for r in rows], dtype=float) - values
    figure, axes = plt.subplots(figsize=(6, 3.2), dpi=120)
    axes.bar(labels, np.nan_to_num(values), yerr=[np.nan_to_num(low), np.nan_to_num(high)], capsize=4,
             color="#4c78a8")
    axes.axhline(0.5, color="k", linestyle="--", linewidth=1, label="chance")
    axes.set_ylim(0, 1)
    axes.set_ylabel("synthetic judged noisier")
    axes.legend(loc="upper right", frameon=False)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _cell(value, digits=3):
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.{digits}g}" if abs(value) < 1e-3 else f"{value:.{digits}f}"
    return str(value)


def _table(rows, columns):
    head = "".join(f"<th>{title}</th>" for _, title in columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(row[key])}</td>" for key, _ in columns) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _html(summary, figure_name, titles):
    import html

    noisier = [dict(r, map=titles.get(r["map"], "Pooled")) for r in summary["noisier"]]
    agreement_rows = [dict(r, map=titles.get(r["map"], "Pooled")) for r in summary["agreement"]]
    proportion = [("map", "Map"), ("answers", "Answers"), ("synthetic_noisier", "Synthetic judged noisier"),
                  ("proportion", "Proportion"), ("ci95_low", "95 % CI low"), ("ci95_high", "95 % CI high"),
                  ("p_binomial", "P (binomial vs 0.5)")]
    readers = [("reader", "Reader")] + proportion[1:] + [("median_seconds", "Median s per case")]
    kappa = [("map", "Map"), ("readers", "Readers"), ("cases", "Cases answered by all"), ("method", "Kappa"),
             ("kappa", "Value")]
    grid = summary["reader_by_map"]
    by_map = _table(grid, [("reader", "Reader")] + [(m, titles.get(m, m)) for m in list(grid[0])[1:]]) if grid else ""
    study = html.escape(str(summary["study"]))
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Noise review: {study}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #999;padding:.25em .6em;text-align:right}}</style></head><body>
<h1>Blinded noise review: {study}</h1>
<p>{summary['cases']} cases (subject &times; map), {summary['answers']} answers. Each case showed the original and
the synthetic map side by side (side drawn per reader); readers chose the noisier image.</p>
<h2>Synthetic map judged noisier</h2>{_table(noisier, proportion)}
<img src="{figure_name}" alt="Proportion of answers judging the synthetic map noisier, per map, with 95 % intervals">
<h2>Readers</h2>{_table(summary['readers'], readers)}
<h2>Synthetic judged noisier, reader &times; map (of the cases answered)</h2>{by_map}
<h2>Agreement between readers</h2>{_table(agreement_rows, kappa)}
<p>Wilson score intervals; exact two-sided binomial tests against 0.5; Cohen's kappa for two readers,
Fleiss' kappa for three or more, over the cases every reader answered.</p></body></html>
"""
