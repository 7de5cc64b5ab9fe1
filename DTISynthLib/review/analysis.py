"""Analysis of a noise-review study: how often readers judged the synthetic map the noisier one.

Per map and pooled over maps: the proportion of answers choosing the synthetic image with
- its Wilson 95 % score interval and an exact two-sided binomial test against 0.5 (scipy.stats.
  binomtest), both of which treat every answer as independent;
- a 95 % interval that accounts for answers clustering by reader and by case (cluster_bootstrap:
  readers and cases resampled with replacement, independently, BOOTSTRAP_SAMPLES times; percentile
  interval). This is the interval to judge the study by: the same reader, or the same case, answered
  many times is not that many independent observations. It errs wide (Owen 2007, "the pigeonhole
  bootstrap": answers that are in fact independent enter through both resamplings; about 1.5 x the
  Wilson width for 8 readers x 60 cases), never narrow;
- the confidence-weighted proportion (each answer weighted by its confidence, 1-5).
Per reader the same proportion and the median reading seconds per case (both images on screen to
answered, pauses left out); per confidence level the answers and their proportion; agreement between
readers on "synthetic judged noisier" over the cases every reader answered: Cohen's kappa for two
readers, Fleiss' kappa for three or more; the readers' comments. Sides (side_balance): per reader and
pooled, how often the synthetic image was on the left per map (balanced by design) and the side-bias
term, the share of answers choosing the left image with its exact binomial test against 0.5, beside the
proportion judging the synthetic image noisier when it was on the left and when on the right. Answers
are the store's unblinded rows of study cases (store.unblinded_answers: training cases are never
analysed).
"""

import json
import math

import numpy as np

from ..core.json_values import without_nan
from ..core.output_layout import ReviewAnalysisOutput
from ..core.tables import csv_text, new_figure
from .store import CONFIDENCE_SCALE

Z_95 = 1.959963984540054
BOOTSTRAP_SAMPLES = 4000
BOOTSTRAP_SEED = 0  # fixed: the same study gives the same interval every time it is analysed
CONFIDENCE_LEVELS = (1, 2, 3, 4, 5)


def wilson_interval(successes, trials, z=Z_95):
    """Wilson score interval (low, high) of a binomial proportion, exactly 0 below at 0 successes and
    exactly 1 above at `trials` (the formula's rounding would give 5.6e-17); (nan, nan) for no trials."""
    if trials == 0:
        return float("nan"), float("nan")
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return low, high


def cluster_bootstrap(answers, samples=BOOTSTRAP_SAMPLES, seed=BOOTSTRAP_SEED):
    """95 % percentile interval (low, high) of the proportion of answers with synthetic_chosen, with
    readers and cases (the crossed clusters) resampled with replacement independently: a resample's
    proportion weights each answer by how often its reader and its case were drawn. (nan, nan) without
    answers; a single reader or case contributes no variance of its own (it is always drawn)."""
    if not answers:
        return float("nan"), float("nan")
    readers = sorted({a["reader"] for a in answers})
    cases = sorted({a["case"] for a in answers})
    chosen = np.zeros((len(readers), len(cases)))
    answered = np.zeros((len(readers), len(cases)))
    r_index, c_index = {r: i for i, r in enumerate(readers)}, {c: i for i, c in enumerate(cases)}
    for a in answers:
        chosen[r_index[a["reader"]], c_index[a["case"]]] += bool(a["synthetic_chosen"])
        answered[r_index[a["reader"]], c_index[a["case"]]] += 1
    rng = np.random.default_rng(seed)
    reader_draws = rng.multinomial(len(readers), np.full(len(readers), 1 / len(readers)), samples)
    case_draws = rng.multinomial(len(cases), np.full(len(cases), 1 / len(cases)), samples)
    hits = np.einsum("br,rc,bc->b", reader_draws, chosen, case_draws)
    totals = np.einsum("br,rc,bc->b", reader_draws, answered, case_draws)
    proportions = hits[totals > 0] / totals[totals > 0]
    low, high = np.percentile(proportions, [2.5, 97.5])
    return float(low), float(high)


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


def proportion_row(label, answers, clustered=True):
    k, n = sum(a["synthetic_chosen"] for a in answers), len(answers)
    low, high = wilson_interval(k, n)
    row = {"map": label, "answers": n, "synthetic_noisier": k, "proportion": k / n if n else float("nan"),
           "ci95_low": low, "ci95_high": high, "p_binomial": binomial_p(k, n)}
    if clustered:
        weights = np.array([a.get("confidence") or 0 for a in answers], dtype=float)
        picked = np.array([bool(a["synthetic_chosen"]) for a in answers], dtype=float)
        row["ci95_low_clustered"], row["ci95_high_clustered"] = cluster_bootstrap(answers)
        row["proportion_confidence_weighted"] = (float((weights * picked).sum() / weights.sum()) if weights.sum()
                                                 else float("nan"))
    return row


def by_confidence(answers):
    """Per confidence level (1-5): answers and the proportion judging the synthetic map noisier."""
    return [{"confidence": level, **{k: v for k, v in proportion_row(
        "pooled", [a for a in answers if a.get("confidence") == level], clustered=False).items() if k != "map"}}
        for level in CONFIDENCE_LEVELS]


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


def side_balance(answers, maps):
    """Rows per reader (in the order of their first answer), then "pooled": answers; per map "k/n" of
    the answered cases with the synthetic image on the left; chose_left (answers choosing the left
    image), its share and p_side_bias (exact binomial test against 0.5: a reader who always picks one
    side); the proportion judging the synthetic image noisier when it was on the left and on the right
    (with balanced sides a side habit moves these apart, not their mean)."""
    def share(rows):
        return sum(a["synthetic_chosen"] for a in rows) / len(rows) if rows else float("nan")

    table = []
    for name in [*dict.fromkeys(a["reader"] for a in answers), "pooled"]:
        own = answers if name == "pooled" else [a for a in answers if a["reader"] == name]
        chose_left = sum(a["choice"] == "left" for a in own)
        per_map = {f"synthetic_left_{m}": "{}/{}".format(
            sum(a["synthetic_side"] == "left" for a in own if a["map"] == m), sum(a["map"] == m for a in own))
            for m in maps}
        table.append({"reader": name, "answers": len(own), **per_map, "chose_left": chose_left,
                      "chose_left_share": chose_left / len(own) if own else float("nan"),
                      "p_side_bias": binomial_p(chose_left, len(own)),
                      "synthetic_noisier_when_left": share([a for a in own if a["synthetic_side"] == "left"]),
                      "synthetic_noisier_when_right": share([a for a in own if a["synthetic_side"] == "right"])})
    return table


COUNTED_SHARE = 0.5  # a reader's answers count once they have answered this share of the study's cases
FAST_SECONDS, SLOW_FACTOR = 1.0, 5.0  # reading-time outliers: under 1 s, or over 5 x the reader's median


def reading_outliers(answers):
    """Answers whose reading time is implausible, for the organiser to look at (not removed): under
    FAST_SECONDS (no time to look at the slices) or over SLOW_FACTOR x their reader's median (a break the
    page did not see). Rows: reader, subject, map, position, seconds, reason."""
    medians = {}
    for a in answers:
        medians.setdefault(a["reader"], []).append(a["seconds"])
    medians = {reader: float(np.median(seconds)) for reader, seconds in medians.items()}
    rows = []
    for a in answers:
        reason = "fast" if a["seconds"] < FAST_SECONDS else \
            "slow" if a["seconds"] > SLOW_FACTOR * medians[a["reader"]] else None
        if reason:
            rows.append({**{k: a[k] for k in ("reader", "subject", "map", "position", "seconds")}, "reason": reason})
    return rows


def counted_readers(answers, cases):
    """Names of the readers whose answers the pooled tables use: those who answered at least
    COUNTED_SHARE of the study's `cases`, or every reader with answers while none has. An interim
    analysis is then not swung by a reader who has just started (their 2 answers made pooled kappa
    -0.20 instead of -0.071 over 15 cases, and the clustered interval's lower bound 0.0 instead of
    0.267: resamples of that reader alone)."""
    counts = {}
    for a in answers:
        counts[a["reader"]] = counts.get(a["reader"], 0) + 1
    return {name for name, n in counts.items() if n >= COUNTED_SHARE * cases} or set(counts)


def analyze(answers, maps, cases=None, registered=()):
    """Tables of the module docstring from unblinded answers: {noisier, readers, reader_by_map,
    agreement, by_confidence, sides, comments, counted}. cases: the study's cases (default: those
    answered); registered: every reader's name in registration order (listed, with 0 answers too).
    noisier, agreement and by_confidence use the counted readers' answers (counted_readers); the
    reader rows and sides list everyone."""
    cases = len({a["case"] for a in answers}) if cases is None else cases
    counted = counted_readers(answers, cases)
    pooled = [a for a in answers if a["reader"] in counted]
    noisier = [proportion_row(m, [a for a in pooled if a["map"] == m]) for m in maps]
    noisier.append(proportion_row("pooled", pooled))
    readers = []
    for name in dict.fromkeys([*registered, *(a["reader"] for a in answers)]):
        own = [a for a in answers if a["reader"] == name]
        row = {k: v for k, v in proportion_row("pooled", own, clustered=False).items() if k != "map"}
        seconds = float(np.median([a["seconds"] for a in own])) if own else float("nan")
        readers.append({"reader": name, **row, "counted": name in counted and bool(own), "median_seconds": seconds})
    by_reader_map = [{"reader": r["reader"], **{m: "{}/{}".format(
        sum(a["synthetic_chosen"] for a in answers if a["reader"] == r["reader"] and a["map"] == m),
        sum(1 for a in answers if a["reader"] == r["reader"] and a["map"] == m)) for m in maps}} for r in readers]
    comments = [{k: a.get(k) for k in COMMENT_COLUMNS} for a in answers if a.get("comment")]
    return {"noisier": noisier, "readers": readers, "reader_by_map": by_reader_map,
            "agreement": [dict(agreement([a for a in pooled if a["map"] == m]), map=m) for m in maps]
            + [dict(agreement(pooled), map="pooled")],
            "by_confidence": by_confidence(pooled), "sides": side_balance(answers, maps), "comments": comments,
            "reading_outliers": reading_outliers(answers),
            "counted": {"readers": sorted(counted), "rule": f"readers who answered at least {COUNTED_SHARE:.0%} of "
                        f"the {cases} cases (every reader with answers while none has)"}}


COMMENT_COLUMNS = ("reader", "subject", "map", "position", "choice", "synthetic_chosen", "confidence", "comment")


def _write_csv(path, rows, columns=None):
    path.write_text(csv_text(rows, columns or (None if rows else ["empty"])))


def write_analysis(store, out_dir):
    """Analyse the study in `store` into `out_dir` (ReviewAnalysisOutput), atomically. Returns the
    tables."""
    from ..core.atomic import atomic_output_dir
    from .study import MAP_TITLES

    info = store.info()
    maps = json.loads(info.get("maps", "[]")) or sorted({c["map"] for c in store.cases()})
    answers = store.unblinded_answers()
    tables = analyze(answers, maps, len(store.cases()), [r.name for r in store.readers()])
    with atomic_output_dir(out_dir) as staging:
        layout = ReviewAnalysisOutput(staging)
        _write_csv(layout.noisier, tables["noisier"])
        _write_csv(layout.readers, tables["readers"])
        _write_csv(layout.agreement, tables["agreement"])
        _write_csv(layout.by_confidence, tables["by_confidence"])
        _write_csv(layout.comments, tables["comments"], COMMENT_COLUMNS)
        _write_csv(layout.sides, tables["sides"])
        summary = {"study": info.get("name"), "cases": len(store.cases()), "answers": len(answers), **tables}
        layout.summary.write_text(json.dumps(without_nan(summary), indent=2, allow_nan=False) + "\n")
        _write_figure(layout.figure, tables["noisier"], MAP_TITLES)
        layout.report.write_text(_html(summary, layout.figure.name, MAP_TITLES))
    return tables


def _write_figure(path, rows, titles):
    labels = [titles.get(r["map"], "Pooled") for r in rows]
    x = np.arange(len(rows))
    values = np.array([r["proportion"] for r in rows], dtype=float)

    def bars(low_key, high_key):  # error bars below and above, never negative (an interval ending at the value)
        low = np.clip(values - np.array([r[low_key] for r in rows], dtype=float), 0, None)
        high = np.clip(np.array([r[high_key] for r in rows], dtype=float) - values, 0, None)
        return [np.nan_to_num(low), np.nan_to_num(high)]

    figure, axes = new_figure(figsize=(6.4, 3.4), dpi=120)
    axes.bar(x, np.nan_to_num(values), color="#4c78a8", width=0.6)
    axes.errorbar(x - 0.08, np.nan_to_num(values), yerr=bars("ci95_low", "ci95_high"), fmt="none", ecolor="k",
                  capsize=3, label="95 % Wilson (answers independent)")
    axes.errorbar(x + 0.08, np.nan_to_num(values), yerr=bars("ci95_low_clustered", "ci95_high_clustered"), fmt="none",
                  ecolor="#e45756", capsize=3, linewidth=2, label="95 % reader-and-case bootstrap")
    axes.axhline(0.5, color="k", linestyle="--", linewidth=1, label="chance")
    axes.set_xticks(x, labels)
    axes.set_ylim(0, 1.15)
    axes.set_ylabel("synthetic judged noisier")
    axes.legend(loc="upper right", frameon=False, fontsize=7, ncol=3)
    figure.tight_layout()
    figure.savefig(path)


def _cell(value, digits=3):
    import html

    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.{digits}g}" if abs(value) < 1e-3 else f"{value:.{digits}f}"
    return html.escape(str(value))


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
    clustered = proportion[:4] + [("ci95_low_clustered", "95 % CI low, clustered"),
                                  ("ci95_high_clustered", "95 % CI high, clustered"),
                                  ("proportion_confidence_weighted", "Confidence-weighted proportion")]
    readers = [("reader", "Reader")] + proportion[1:] + [("median_seconds", "Median s per case"),
                                                         ("counted", "Counted")]
    levels = [("confidence", "Confidence")] + proportion[1:6]
    confidence = [dict(r, confidence=f"{r['confidence']} ({CONFIDENCE_SCALE[r['confidence']]})")
                  for r in summary["by_confidence"]]
    comments = [dict(r, map=titles.get(r["map"], r["map"])) for r in summary["comments"]]
    comment_columns = [("reader", "Reader"), ("subject", "Subject"), ("map", "Map"), ("position", "Position"),
                       ("synthetic_chosen", "Chose synthetic"), ("confidence", "Confidence"), ("comment", "Comment")]
    kappa = [("map", "Map"), ("readers", "Readers"), ("cases", "Cases answered by all"), ("method", "Kappa"),
             ("kappa", "Value")]
    sides = [("reader", "Reader"), ("answers", "Answers")] + \
        [(k, f"Synthetic left, {titles.get(k[len('synthetic_left_'):], k)}") for k in (summary["sides"] or [{}])[0]
         if k.startswith("synthetic_left_")] + \
        [("chose_left", "Chose left"), ("chose_left_share", "Share"), ("p_side_bias", "P (side bias)"),
         ("synthetic_noisier_when_left", "Synthetic noisier when left"),
         ("synthetic_noisier_when_right", "Synthetic noisier when right")]
    outliers = [("reader", "Reader"), ("subject", "Subject"), ("map", "Map"), ("position", "Position"),
                ("seconds", "Seconds"), ("reason", "Why")]
    grid = summary["reader_by_map"]
    by_map = _table(grid, [("reader", "Reader")] + [(m, titles.get(m, m)) for m in list(grid[0])[1:]]) if grid else ""
    study = html.escape(str(summary["study"]))
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Noise review: {study}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #999;padding:.25em .6em;text-align:right}}</style></head><body>
<h1>Blinded noise review: {study}</h1>
<p>{summary['cases']} cases (subject &times; map), {summary['answers']} answers. Each case showed the original and
the synthetic map side by side (side balanced per reader and map); readers chose the noisier image.</p>
<h2>Synthetic map judged noisier</h2>
<p>Intervals that account for answers clustering by reader and by case (readers and cases resampled with
replacement, {BOOTSTRAP_SAMPLES} times): the study's result.</p>{_table(noisier, clustered)}
<p>The same counts treating every answer as independent (Wilson score interval, exact binomial test):</p>
{_table(noisier, proportion)}
<img src="{figure_name}" alt="Proportion of answers judging the synthetic map noisier, per map, with 95 % intervals">
<h2>By confidence</h2>{_table(confidence, levels)}
<h2>Readers</h2><p>Every registered reader. The pooled tables count {html.escape(summary['counted']['rule'])}:
{html.escape(", ".join(summary['counted']['readers']) or "none")}.</p>{_table(summary['readers'], readers)}
<h2>Synthetic judged noisier, reader &times; map (of the cases answered)</h2>{by_map}
<h2>Sides</h2><p>Synthetic image on the left (answered cases; balanced per reader and map by design) and the
side-bias term: answers choosing the left image, tested against 0.5.</p>{_table(summary['sides'], sides)}
<h2>Reading-time outliers ({len(summary['reading_outliers'])})</h2><p>Answers read in under {FAST_SECONDS:g} s
or over {SLOW_FACTOR:g} &times; their reader's median: to look at, not removed.</p>
{_table(summary['reading_outliers'], outliers) if summary['reading_outliers'] else "<p>None.</p>"}
<h2>Agreement between readers</h2>{_table(agreement_rows, kappa)}
<h2>Comments ({len(comments)})</h2>{_table(comments, comment_columns) if comments else "<p>None.</p>"}
<p>Wilson score intervals; exact two-sided binomial tests against 0.5; Cohen's kappa for two readers,
Fleiss' kappa for three or more, over the cases every reader answered.</p></body></html>
"""
