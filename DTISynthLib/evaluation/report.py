"""Figures and the self-contained HTML report of an evaluation (comparison.py).

- A Bland-Altman grid like the seed paper's Figure 3: one row per map, one column per ROI and a last
  column pooling all ROIs; x = mean of original and synthetic ROI means, y = synthetic - original,
  one colour per subject; solid line the bias, dashed lines the 95 % limits of agreement.
- Per subject: original, synthetic and difference maps (FA, MD, AD, RD, colour FA) with colour bars
  (montage.write_montage).
- report.html: the Table 2 layout, Bland-Altman and similarity tables, every figure embedded as
  base64 PNG, so the one file can be mailed or archived.
"""

import base64
import html
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.lines import Line2D

from ..core.tables import new_figure
from .montage import write_montage

MAP_TITLES = {"fa": "FA", "md": "MD", "ad": "AD", "rd": "RD"}


def write_subject_montage(path, subject, original, synthetic, affine):
    """Original / synthetic / difference rows of FA, MD, AD, RD (and colour FA for the first two)."""
    difference = {name: synthetic[name] - original[name] for name in MAP_TITLES}
    return write_montage(path, [("original", original), ("synthetic", synthetic),
                                ("synthetic - original", difference)], affine,
                         title=f"{subject}: original and synthetic DTI maps", difference_rows=("synthetic - original",))


def write_bland_altman_figure(path, agreement, rois):
    """The Bland-Altman grid (see the module docstring) from comparison.cohort_tables' rows."""
    maps = list(dict.fromkeys(row["map"] for row in agreement))
    columns = list(rois) + ["all ROIs"]
    subjects = sorted({s for row in agreement for s in row["subjects"]})
    colours = {s: matplotlib.colormaps["tab10" if len(subjects) <= 10 else "tab20"](i % 20) for i, s in enumerate(subjects)}
    rows = {(row["map"], row["roi"]): row for row in agreement}
    fig, axes = new_figure(len(maps), len(columns), squeeze=False, figsize=(2.7 * len(columns), 2.4 * len(maps)))
    for r, name in enumerate(maps):
        for c, roi in enumerate(columns):
            ax = axes[r, c]
            row = rows[(name, roi)]
            ax.scatter(row["means"], row["differences"], s=14, c=[colours[s] for s in row["subjects"]])
            if row["n"] > 1:
                ax.axhline(row["bias"], color="black", lw=1)
                for limit in (row["lower"], row["upper"]):
                    ax.axhline(limit, color="black", lw=0.8, ls="--")
            ax.axhline(0, color="grey", lw=0.5, ls=":")
            ax.tick_params(labelsize=6)
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(4))
            if r == 0:
                ax.set_title(roi.replace("_", " "), fontsize=7)
            unit = "" if row["unit"] == "1" else f" ({row['unit']})"
            if c == 0:
                ax.set_ylabel(f"{MAP_TITLES[name]} synthetic - original{unit}", fontsize=7)
            ax.set_xlabel(f"mean {MAP_TITLES[name]}{unit}", fontsize=6)
    handles = [Line2D([], [], marker="o", ls="", color=colours[s], label=s) for s in subjects]
    fig.legend(handles=handles, loc="upper right", fontsize=6, ncol=max(1, len(subjects) // 12 + 1))
    fig.suptitle("Bland-Altman: ROI means, synthetic against original (bias solid, 95 % limits dashed)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 0.93, 0.97))
    fig.savefig(path, dpi=100)
    return Path(path)


def _number(value, digits=3):
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}g}" if abs(value) < 1e-2 or abs(value) >= 1e3 else f"{value:.{digits}f}"


def _table(header, rows):
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _image(path, alt):
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"><figcaption>' \
           f"{html.escape(alt)}</figcaption></figure>"


def write_html_report(path, summary, bland_altman_png, montage_pngs, calibration_png=None):
    """report.html from run_evaluation's summary; every PNG embedded (montages that exist)."""
    roi_comparison = _table(
        ["ROI", "map", "unit", "n", "original mean ± SD", "synthetic mean ± SD", "p (paired t)", "original SNR ± SD",
         "synthetic SNR ± SD", "p (paired t)", "flag"],
        [[r["roi"].replace("_", " "), r["map"].upper(), r["unit"], r["subjects"],
          f"{_number(r['original_mean'])} ± {_number(r['original_sd'])}",
          f"{_number(r['synthetic_mean'])} ± {_number(r['synthetic_sd'])}", _number(r["p_mean"]),
          f"{_number(r['original_snr'])} ± {_number(r['original_snr_sd'])}",
          f"{_number(r['synthetic_snr'])} ± {_number(r['synthetic_snr_sd'])}", _number(r["p_snr"]), r["flag"]]
         for r in summary["table2"]])
    agreement = _table(["map", "ROI", "unit", "n", "bias", "95 % limits of agreement"],
                       [[r["map"].upper(), r["roi"].replace("_", " "), r["unit"], r["n"], _number(r["bias"]),
                         f"{_number(r['lower'])} to {_number(r['upper'])}"] for r in summary["bland_altman"]])
    similarity = _table(["subject", "synthetic volume", "original volume", "angle (degrees)", "PSNR (dB)", "SSIM",
                         "flag"],
                        [[r["subject"], r["direction"], r["original_volume"], r["angle_degrees"],
                          _number(r["psnr_db"]), _number(r["ssim"]), r["flag"]] for r in summary["similarity"]])
    realism = summary["realism_index"]
    realism_table = _table(
        ["subject", "voxels", "error, acquired-trained", "error, synthetic-trained", "realism index", "FA error ratio",
         "V1 angle ratio", "p (Wilcoxon)"],
        [[r["subject"], r["voxels"], _number(r["acquired_model_attenuation_mae"]),
          _number(r["synthetic_model_attenuation_mae"]), _number(r["realism_index"]), _number(r["fa_error_ratio"]),
          _number(r["direction_ratio"]), _number(r["wilcoxon_p"])] for r in realism["rows"]]) \
        if realism["rows"] else f"<p>{html.escape(realism['flag'])}</p>"
    calibration = summary.get("v1_calibration", {"rows": [], "summary": {}})
    calibration_table = _table(
        ["subject", "confidence", "WM voxels", "share of WM", "mean confidence", "median V1 angle (degrees)",
         "share within the angle"],
        [[r["subject"], f"{r['low']:g}-{r['high']:g}", r["voxels"], _number(r["wm_share"]), _number(r["mean_confidence"]),
          _number(r["median_angle_degrees"]), _number(r["within_angle_share"])] for r in calibration["rows"]]) \
        + (_image(calibration_png, "V1 error by orientation confidence") if calibration_png and Path(calibration_png).exists()
           else "") if calibration["rows"] else "<p>No orientation confidence: the synthesis wrote no maps/v1_confidence.</p>"
    montages = "".join(_image(png, f"{s}: original, synthetic and difference maps")
                       for s, png in zip(summary["subjects"], montage_pngs) if Path(png).exists())
    flagged = [r for r in summary["table2"] if r["flag"]]
    text = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>DTISynth evaluation</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1400px}}table{{border-collapse:collapse;font-size:12px;
margin-bottom:1.5em}}td,th{{border:1px solid #bbb;padding:3px 6px;text-align:right}}th{{background:#eee}}
img{{max-width:100%}}figure{{margin:1em 0}}</style></head><body>
<h1>DTISynth evaluation: synthetic against original DTI</h1>
<p>{len(summary['subjects'])} subject(s): {html.escape(', '.join(summary['subjects']))}.
ROIs: {html.escape(', '.join(r.replace('_', ' ') for r in summary['rois']))}. {html.escape(summary['roi_definition'])}.
SNR: {html.escape(summary['snr_definition'])}. MD, AD and RD in 10<sup>-3</sup> mm<sup>2</sup>/s.
{f'<strong>{len(flagged)} flagged row(s): see the flag column.</strong>' if flagged else ''}</p>
<h2>ROI values (the seed paper's Table 2 layout)</h2>{roi_comparison}
<h2>Bland-Altman agreement of ROI means</h2>{agreement}{_image(bland_altman_png, 'Bland-Altman grid')}
<h2>Similarity of synthetic and original diffusion-weighted volumes (brain mask)</h2>{similarity}
<h2>Orientation confidence: is it honest?</h2><p>{html.escape(calibration.get('definition', ''))}.</p>{calibration_table}
<h2>Realism index (paper 2's autoencoder test)</h2><p>{html.escape(realism['definition'])}.</p>{realism_table}
<h2>Maps</h2>{montages}
</body></html>
"""
    Path(path).write_text(text)
    return Path(path)
