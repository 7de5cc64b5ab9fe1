"""Progress for people (a bar on stderr) and for programs (JSON lines on stdout).

JSON-lines events, one object per line:
  {"event": "progress", "stage": str, "fraction": float in [0, 1], "message": str}
  {"event": "result", "outputs": [paths], "message": str}
  {"event": "error", "message": str}
"""

import json
import sys


class ProgressReporter:
    """Report stages and fractions either as JSON lines (`jsonl`) or as a progress bar."""

    def __init__(self, jsonl=False, stream=None, enabled=True):
        self.jsonl = jsonl
        self.stream = stream or (sys.stdout if jsonl else sys.stderr)
        self.enabled = enabled
        self._stage = None

    def _emit(self, **event):
        self.stream.write(json.dumps(event) + "\n")
        self.stream.flush()

    def progress(self, stage, fraction, message=""):
        if not self.enabled:
            return
        fraction = float(min(max(fraction, 0.0), 1.0))
        if self.jsonl:
            self._emit(event="progress", stage=stage, fraction=round(fraction, 4), message=message)
            return
        # A plain bar: redrawn in place on a terminal, one line per finished stage otherwise.
        width = 30
        line = f"{stage:>9} [{'#' * round(width * fraction):<{width}}] {100 * fraction:3.0f}% {message}"[:120]
        if self.stream.isatty():
            self.stream.write("\r" + line.ljust(120))
            if fraction >= 1.0:
                self.stream.write("\n")
        elif fraction >= 1.0 or stage != self._stage:
            self.stream.write(line + "\n")
        self._stage = stage
        self.stream.flush()

    def result(self, outputs, message=""):
        if self.jsonl:
            self._emit(event="result", outputs=[str(p) for p in outputs], message=message)
        elif self.enabled and message:
            self.stream.write(message + "\n")

    def error(self, message):
        if self.jsonl:
            self._emit(event="error", message=message)
        else:
            self.stream.write(f"error: {message}\n")


class NullReporter:
    """A reporter that says nothing: the default wherever a caller gives none."""

    def progress(self, stage, fraction, message=""):
        pass

    def result(self, outputs, message=""):
        pass

    def error(self, message):
        pass
