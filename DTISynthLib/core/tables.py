"""Tables and figures as the jobs write them: one CSV writer, one way to make a figure.

CSV: a header of the columns, one line per row, "\n" line ends; a cell with a comma, a quote or a
line break is quoted (RFC 4180), never altered. Figures are matplotlib Figure objects made without
pyplot, so writing one changes no process-wide state (no backend is chosen, no figure list grows): a
program that imports DTISynthLib keeps its own matplotlib set-up (Slicer's, a notebook's)."""

import csv
import io
import math


def csv_text(rows, columns=None, float_format=None, delimiter=","):
    """CSV text of dict rows in `columns` (default: the first row's keys). float_format (e.g. ".6g"):
    floats written with it, NaN as an empty cell; None: floats as Python writes them. None is an
    empty cell. delimiter "\t": a TSV table, quoted alike."""
    columns = list(columns or (rows[0] if rows else []))

    def cell(value):
        if float_format and isinstance(value, float):
            return "" if math.isnan(value) else format(value, float_format)
        return value

    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns, extrasaction="ignore", lineterminator="\n", delimiter=delimiter)
    writer.writeheader()
    writer.writerows({c: cell(row.get(c)) for c in columns} for row in rows)
    return text.getvalue()


def new_figure(rows=1, columns=1, squeeze=True, **figure_options):
    """(figure, axes) as pyplot.subplots gives them, without pyplot; write it with figure.savefig(path).
    figure_options: matplotlib.figure.Figure's (figsize, dpi)."""
    from matplotlib.figure import Figure

    figure = Figure(**figure_options)
    return figure, figure.subplots(rows, columns, squeeze=squeeze)
