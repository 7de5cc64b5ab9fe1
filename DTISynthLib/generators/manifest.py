"""A model package's manifest.json as one checked, read-only object. A manifest is untrusted input: it
is checked when a Manifest is made (format and version, required entries, types and sizes, every
weights file a plain name inside the package folder, a known generator kind), before any file it
names is opened or any array allocated; afterwards every reader uses its typed properties.

Entries: format, format_version, architecture (kind, default "pix2pix-per-direction", and the kind's
own settings, e.g. generator: in/out channels, ngf, depth, dropout; discriminator: ndf, n_layers),
intensity (mode, quantise_8bit), grid (H, W; null: the native grid), voxel_size_mm, b_value
(s/mm^2), b_range (optional [low, high]: kinds whose inputs are ADCs take any b in it),
input_directions (RAS unit vectors of the DWI channels), description (one line: what the set is and
when to use it), assembly (optional: the synthesis assembly the set is meant for), directions (index
1-6, gradient_ras: the synthetic DTI's gradient table, RAS), the weights files (network_files),
training (hyper-parameters, data provenance, subject split), created_by; optionally input_check
(file, sha256, reference_error, warning_ratio, features, subjects: the out-of-distribution
autoencoder of the training inputs, realism.input_check).
"""

import math
import re

import numpy as np

from ..core.errors import InputError
from .registry import DEFAULT_KIND, KINDS

FORMAT = "dtisynth-pix2pix"  # every package's format name (it predates generator kinds)
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
REQUIRED = ("architecture", "intensity", "grid", "b_value", "directions")
WEIGHTS_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,120}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
MAX_GRID, MAX_DIRECTIONS = 1024, 64


def _finite_numbers(value, count):
    return (isinstance(value, list) and len(value) == count
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value))


class Manifest:
    """A checked manifest. data: the JSON object (as read; what write_manifest writes back); source:
    the file (or archive member) named in errors."""

    def __init__(self, data, source="model manifest"):
        self.source = str(source)
        if not isinstance(data, dict):
            raise InputError(self.source, "a JSON object", type(data).__name__)
        if data.get("format") != FORMAT:
            raise InputError(self.source, f"format {FORMAT!r}", f"format {data.get('format')!r}")
        if data.get("format_version") != FORMAT_VERSION:
            raise InputError(self.source, f"format_version {FORMAT_VERSION} (this DTISynth)",
                             f"format_version {data.get('format_version')!r}")
        for key in REQUIRED:
            if key not in data:
                raise InputError(self.source, f"a {key!r} entry", "none")
        self.data = data
        self._check_values()
        if self.kind not in KINDS:
            raise InputError(self.source, f"architecture.kind one of {sorted(KINDS)}", f"{self.kind!r}")

    def _refuse(self, entry, expected, found):
        raise InputError(self.source, f"{entry} to be {expected}", repr(found)[:200])

    def _check_values(self):
        data, refuse = self.data, self._refuse
        if not isinstance(data["architecture"], dict) or not isinstance(data["intensity"], dict):
            refuse("architecture and intensity", "JSON objects", (data["architecture"], data["intensity"]))
        grid = data["grid"]
        if grid is not None:
            if not (_finite_numbers(grid, 2) and all(isinstance(v, int) and 8 <= v <= MAX_GRID for v in grid)):
                refuse("grid", f"null or two integers from 8 to {MAX_GRID}", grid)
            voxel = data.get("voxel_size_mm")
            if not (_finite_numbers(voxel, 3) and all(0 < v <= 50 for v in voxel)):
                refuse("voxel_size_mm", "three sizes in mm, each > 0 and <= 50", voxel)
            generator = data["architecture"].get("generator")
            depth = generator.get("depth") if isinstance(generator, dict) else None
            if depth is not None and not (isinstance(depth, int) and 1 <= depth <= 10):
                refuse("architecture.generator.depth", "an integer from 1 to 10", depth)
            if depth is not None and any(v % 2**depth for v in grid):  # a U-Net halves each side depth times
                refuse("grid", f"two sizes divisible by 2**depth = {2**depth} (architecture.generator.depth "
                       f"{depth})", grid)
        b_value = data["b_value"]
        if not (_finite_numbers([b_value], 1) and 0 < b_value <= 10000):
            refuse("b_value", "a b-value in s/mm^2, > 0 and <= 10000", b_value)
        b_range = data.get("b_range")
        if b_range is not None and not (_finite_numbers(b_range, 2) and 0 < b_range[0] <= b_range[1] <= 10000):
            refuse("b_range", "null or [low, high] b-values in s/mm^2, 0 < low <= high <= 10000", b_range)
        directions = data["directions"]
        if not (isinstance(directions, list) and 1 <= len(directions) <= MAX_DIRECTIONS):
            refuse("directions", f"a list of 1 to {MAX_DIRECTIONS} entries", directions)
        for entry in directions:
            if not (isinstance(entry, dict) and isinstance(entry.get("index"), int)
                    and _finite_numbers(entry.get("gradient_ras"), 3)
                    and abs(math.hypot(*entry["gradient_ras"]) - 1) < 1e-3):
                refuse("directions", "entries with an integer index and a unit gradient_ras [x, y, z]", entry)
        networks = data.get("networks", directions)
        if not isinstance(networks, list) or not all(isinstance(e, dict) for e in networks):
            refuse("networks", "a list of entries", networks)
        if "networks" in data and not all(isinstance(e.get("name"), str) for e in networks):
            refuse("networks", "entries with a name", networks)
        check = data.get("input_check")
        if check is not None:
            if not (isinstance(check, dict)
                    and _finite_numbers([check.get("reference_error"), check.get("warning_ratio")], 2)
                    and check["reference_error"] > 0 and check["warning_ratio"] > 1):
                refuse("input_check", "an entry with file, sha256, reference_error > 0 and warning_ratio > 1",
                       {k: check.get(k) for k in ("reference_error", "warning_ratio")}
                       if isinstance(check, dict) else check)
        for entry in networks + ([check] if check is not None else []):  # without networks, each direction's own
            name, digest = entry.get("file"), entry.get("sha256")
            if not isinstance(name, str) or not WEIGHTS_NAME.match(name) or ".." in name:
                refuse("weights file", "a plain file name inside the package folder (letters, digits, _ . -)", name)
            if not isinstance(digest, str) or not SHA256.match(digest):
                refuse(f"sha256 of {name}", "64 lower-case hex digits", digest)

    # ------------------------------------------------------------------ typed views
    @property
    def architecture(self):
        """The kind's settings (a dict: each kind reads its own)."""
        return self.data["architecture"]

    @property
    def kind(self):
        """The generator kind's name (DEFAULT_KIND for packages written before kinds had names)."""
        return self.architecture.get("kind", DEFAULT_KIND)

    @property
    def intensity(self):
        """generators.intensity.Intensity's fields (mode, quantise_8bit)."""
        return self.data["intensity"]

    @property
    def grid(self):
        """(H, W) of the model grid's slices, or None: the kind works on the native grid."""
        return None if self.data["grid"] is None else tuple(self.data["grid"])

    @property
    def voxel_size_mm(self):
        return None if self.data.get("voxel_size_mm") is None else tuple(self.data["voxel_size_mm"])

    @property
    def b_value(self):
        """s/mm^2: of the training data, and of the synthetic DTI unless the package takes a b_range."""
        return float(self.data["b_value"])

    @property
    def b_range(self):
        """(low, high) s/mm^2 of the inputs a package of ADC inputs takes, or None: only b_value (5 %)."""
        return None if self.data.get("b_range") is None else tuple(float(b) for b in self.data["b_range"])

    @property
    def assembly(self):
        """The synthesis assembly the package is meant for, or None."""
        return self.data.get("assembly")

    @property
    def description(self):
        """One line saying what the package is: its own description, else its kind."""
        return self.data.get("description") or f"a {self.kind} model package"

    @property
    def input_check(self):
        """The out-of-distribution check's entry, or None."""
        return self.data.get("input_check")

    @property
    def training(self):
        return self.data.get("training", {})

    def direction_vectors(self):
        """(indices, RAS unit vectors (k, 3)) of the output directions, by index."""
        entries = sorted(self.data["directions"], key=lambda d: d["index"])
        return [d["index"] for d in entries], np.array([d["gradient_ras"] for d in entries], dtype=np.float64)

    def network_files(self):
        """{network key: entry with file and sha256}. A package lists its weights files under `networks`
        (key: each entry's name); packages without that list (the per-direction kind's, the shipped demo
        set's) give them on the direction entries (key: the direction index)."""
        if "networks" in self.data:
            return {entry["name"]: entry for entry in self.data["networks"]}
        return {entry["index"]: entry for entry in self.data["directions"]}

    def package_files(self, logs=False):
        """The file names of the package (flat in its folder): manifest.json, the weights files and input
        check it names, and with `logs` the training log of each direction (training.pix2pix writes them)."""
        names = [MANIFEST, *(entry["file"] for entry in self.network_files().values())]
        names += [self.input_check["file"]] if self.input_check is not None else []
        if logs:
            names += [f"training_log_direction_{int(entry['index'])}.csv" for entry in self.data["directions"]]
        return names
