"""Model packages: a folder with manifest.json and safetensors weights files. Model files are untrusted
input: nothing is unpickled; every weights file is checked against its SHA-256 in the manifest, and
the format version and the generator kind must be known. Torch-free: reading and verifying a package
never loads torch.

manifest.json: format, format_version, architecture (kind, default "pix2pix-per-direction", and the
kind's own settings, e.g. generator: in/out channels, ngf, depth, dropout; discriminator: ndf,
n_layers), intensity (mode, quantise_8bit), grid (H, W), voxel_size_mm, b_value (s/mm^2),
input_directions (RAS unit vectors of the DWI channels), description (one line: what the set is and
when to use it), assembly (optional: the synthesis assembly the set is meant for), directions (index 1-6, gradient_ras: the
synthetic DTI's gradient table, RAS), the weights files (network_files), training (hyper-parameters,
data provenance, subject split), created_by; optionally input_check (file, sha256, reference_error,
warning_ratio, features, subjects: the out-of-distribution autoencoder of the training inputs,
realism.input_check).
"""

import json
import math
import re
from pathlib import Path

import numpy as np

from .. import __version__
from ..core.atomic import (
    make_output_dir,
    remove_empty_folders,
    set_default_permissions,
    write_text_atomic,
)
from ..core.checksums import sha256_file
from ..core.errors import InputError, refuse_special_file
from ..core.gradient_schemes import AXES_3_RAS
from ..core.resources import RESOURCES
from .registry import check_kind

FORMAT = "dtisynth-pix2pix"  # every package's format name (it predates generator kinds)
SHIPPED_MODELS = RESOURCES / "Models"  # one folder per shipped package
DEFAULT_MODELS = SHIPPED_MODELS / "tensor-unet"  # the default set
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
INPUT_CHECK_FILE = "input_check.safetensors"  # the out-of-distribution autoencoder (realism.input_check)


def save_generator_weights(path, state_dict, dtype="float32"):
    """Write a generator state dict as safetensors (float16 storage halves the size); returns SHA-256."""
    import torch
    from safetensors.torch import save_file

    cast = {"float32": torch.float32, "float16": torch.float16}[dtype]
    tensors = {k: (v.detach().to(cast) if v.is_floating_point() else v.detach()).contiguous().cpu()
               for k, v in state_dict.items()}
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata={"format": FORMAT, "dtype": dtype})
    set_default_permissions(tmp)
    tmp.replace(path)
    return sha256_file(path)


def write_manifest(folder, manifest):
    manifest = dict(manifest, format=FORMAT, format_version=FORMAT_VERSION)
    write_text_atomic(Path(folder) / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def training_fields(request, grid, provenance, processes):
    """The manifest entries every kind writes after training (all but architecture, directions and
    the weights files): intensity, grid, voxel size, b-value, input directions, training provenance."""
    from dataclasses import asdict

    return {"intensity": asdict(request.intensity), "grid": list(grid), "voxel_size_mm": provenance["voxel_size_mm"],
            "b_value": provenance["b_value"], "input_directions": AXES_3_RAS.tolist(),
            "gradient_frame": "RAS world (scanner) unit vectors; input channels x, y, z of the scanner",
            "training": {"config": asdict(request.config), "processes": processes, **provenance},
            "created_by": f"DTISynth {__version__}", "format_version": FORMAT_VERSION}


def network_files(manifest):
    """{network key: entry with file and sha256}. A package lists its weights files under `networks`
    (key: each entry's name); packages without that list (the per-direction kind's, the shipped demo
    set's) give them on the direction entries (key: the direction index)."""
    if "networks" in manifest:
        return {entry["name"]: entry for entry in manifest["networks"]}
    return {entry["index"]: entry for entry in manifest["directions"]}


def read_manifest(folder):
    """Read and check manifest.json of a model folder (format and version)."""
    path = Path(folder) / MANIFEST
    if not path.exists():
        raise InputError(path, "a DTISynth model folder with manifest.json", "no manifest.json")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(path, "a JSON manifest", f"unreadable content ({exc})") from None
    if manifest.get("format") != FORMAT:
        raise InputError(path, f"format {FORMAT!r}", f"format {manifest.get('format')!r}")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise InputError(path, f"format_version {FORMAT_VERSION} (this DTISynth)",
                         f"format_version {manifest.get('format_version')!r}")
    for key in ("architecture", "intensity", "grid", "b_value", "directions"):
        if key not in manifest:
            raise InputError(path, f"a {key!r} entry", "none")
    check_manifest_values(manifest, path)
    check_kind(manifest, path)
    return manifest


WEIGHTS_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,120}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
MAX_GRID, MAX_DIRECTIONS = 1024, 64


def _finite_numbers(value, count):
    return (isinstance(value, list) and len(value) == count
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value))


def check_manifest_values(manifest, path):
    """A manifest is untrusted input: its types and sizes are checked, and every weights file must be a
    plain name inside the package folder, before any file it names is opened or any array allocated."""
    def refuse(entry, expected, found):
        raise InputError(path, f"{entry} to be {expected}", repr(found)[:200])

    if not isinstance(manifest["architecture"], dict) or not isinstance(manifest["intensity"], dict):
        refuse("architecture and intensity", "JSON objects", (manifest["architecture"], manifest["intensity"]))
    grid = manifest["grid"]
    if grid is not None:
        if not (_finite_numbers(grid, 2) and all(isinstance(v, int) and 8 <= v <= MAX_GRID for v in grid)):
            refuse("grid", f"null or two integers from 8 to {MAX_GRID}", grid)
        voxel = manifest.get("voxel_size_mm")
        if not (_finite_numbers(voxel, 3) and all(0 < v <= 50 for v in voxel)):
            refuse("voxel_size_mm", "three sizes in mm, each > 0 and <= 50", voxel)
    b_value = manifest["b_value"]
    if not (_finite_numbers([b_value], 1) and 0 < b_value <= 10000):
        refuse("b_value", "a b-value in s/mm^2, > 0 and <= 10000", b_value)
    directions = manifest["directions"]
    if not (isinstance(directions, list) and 1 <= len(directions) <= MAX_DIRECTIONS):
        refuse("directions", f"a list of 1 to {MAX_DIRECTIONS} entries", directions)
    for entry in directions:
        if not (isinstance(entry, dict) and isinstance(entry.get("index"), int)
                and _finite_numbers(entry.get("gradient_ras"), 3)
                and abs(math.hypot(*entry["gradient_ras"]) - 1) < 1e-3):
            refuse("directions", "entries with an integer index and a unit gradient_ras [x, y, z]", entry)
    networks = manifest.get("networks", directions)
    if not isinstance(networks, list) or not all(isinstance(e, dict) for e in networks):
        refuse("networks", "a list of entries", networks)
    if "networks" in manifest and not all(isinstance(e.get("name"), str) for e in networks):
        refuse("networks", "entries with a name", networks)
    check = manifest.get("input_check")
    if check is not None:
        if not (isinstance(check, dict) and _finite_numbers([check.get("reference_error"), check.get("warning_ratio")], 2)
                and check["reference_error"] > 0 and check["warning_ratio"] > 1):
            refuse("input_check", "an entry with file, sha256, reference_error > 0 and warning_ratio > 1",
                   {k: check.get(k) for k in ("reference_error", "warning_ratio")} if isinstance(check, dict) else check)
    for entry in networks + ([check] if check is not None else []):  # without a networks list, each direction has its own
        name, digest = entry.get("file"), entry.get("sha256")
        if not isinstance(name, str) or not WEIGHTS_NAME.match(name) or ".." in name:
            refuse("weights file", "a plain file name inside the package folder (letters, digits, _ . -)", name)
        if not isinstance(digest, str) or not SHA256.match(digest):
            refuse(f"sha256 of {name}", "64 lower-case hex digits", digest)


def verified_weights(folder, entry):
    """The weights file of a manifest entry, refused when missing or when its SHA-256 differs."""
    path = Path(folder) / entry["file"]
    if not path.exists():
        raise InputError(path, "the weights file named in manifest.json", "no such file")
    actual = sha256_file(path)
    if actual != entry["sha256"]:
        raise InputError(path, f"SHA-256 {entry['sha256']} from manifest.json", f"SHA-256 {actual}")
    return path


def check_determines_a_tensor(manifest, path):
    """Refuse a package whose output directions (at its b-value, after a b=0) do not determine a tensor:
    what synthesize writes must be a DTI. (A package of a subset of directions is a training stage.)"""
    from ..fit.tensor_fit import check_design

    _, vectors = direction_vectors(manifest)
    check_design(f"{path} (its directions)", np.r_[0.0, np.full(len(vectors), float(manifest["b_value"]))],
                 np.vstack([np.zeros(3), vectors]))


def direction_vectors(manifest):
    """(indices, RAS unit vectors (k, 3)) of the manifest's output directions."""
    entries = sorted(manifest["directions"], key=lambda d: d["index"])
    return [d["index"] for d in entries], np.array([d["gradient_ras"] for d in entries], dtype=np.float64)


def package_files(manifest, logs=False):
    """The file names of a package (flat in its folder): manifest.json, the weights files and input
    check it names, and with `logs` the training log of each direction (pix2pix_trainer writes them)."""
    names = [MANIFEST, *(entry["file"] for entry in network_files(manifest).values())]
    names += [manifest["input_check"]["file"]] if "input_check" in manifest else []
    if logs:
        names += [f"training_log_direction_{int(entry['index'])}.csv" for entry in manifest.get("directions", [])]
    return names


def verify_package(folder):
    """Check a model folder without loading weights (torch-free): manifest, files and SHA-256 checksums."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    for entry in [*network_files(manifest).values(), *([manifest["input_check"]] if "input_check" in manifest else [])]:
        verified_weights(folder, entry)
    return manifest


MAX_IMPORT_BYTES = 2 * 1024**3  # a package's files together, as a zip's directory declares them
MAX_MANIFEST_BYTES = 1024**2


def import_package(source, models_root):
    """Copy a model package (a folder, or a .zip holding one) into models_root/<its name>, verified
    first (verify_package) and moved into place in one rename. Returns the new folder.

    A .zip is checked from its directory before anything is extracted: one manifest.json, members that
    stay inside the archive (no absolute or ../ paths), no member the manifest does not list (its
    weights, its input check, the training log of each of its directions), and at most MAX_IMPORT_BYTES
    declared in all (zipfile never writes more than a member's declared size). Only the listed members
    are extracted."""
    import shutil
    import tempfile
    import zipfile

    source, models_root = Path(source), Path(models_root)
    refuse_special_file(source)
    if not source.exists():
        raise InputError(source, "a model package folder or .zip", "no such file or folder")
    if not source.is_dir() and not zipfile.is_zipfile(source):
        raise InputError(source, "a model folder or a .zip of one", "neither")
    created = make_output_dir(models_root)
    staging = Path(tempfile.mkdtemp(prefix=".import-", dir=models_root))
    try:
        if source.is_dir():
            package = staging / source.name
            shutil.copytree(source, package)
        else:
            with zipfile.ZipFile(source) as archive:
                members, folder = _checked_members(source, archive)
                package = staging / (folder or source.stem)  # a zip of the files alone: named after the zip
                package.mkdir()
                for member, name in members.items():
                    with archive.open(member) as read, open(package / name, "wb") as write:
                        shutil.copyfileobj(read, write, 1 << 20)
        verify_package(package)
        target = models_root / package.name
        if target.exists():
            raise InputError(target, "a new model name", "a model folder of that name already exists")
        package.rename(target)
        created = []
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        remove_empty_folders(created)


def _checked_members(source, archive):
    """({zip member: file name in the package}, the package folder's name in the zip, "" at its top) of a
    model zip: the checks of import_package, from the zip's directory and its manifest alone."""
    infos = [i for i in archive.infolist() if not i.is_dir()]
    for info in infos:
        if info.filename.startswith("/") or ".." in Path(info.filename).parts:
            raise InputError(source, "a zip of one model folder", f"the member path {info.filename!r}")
    manifests = [i for i in infos if Path(i.filename).name == MANIFEST]
    if len(manifests) != 1:
        raise InputError(source, "a zip holding one model folder (one manifest.json)", f"{len(manifests)}")
    declared = sum(i.file_size for i in infos)
    if declared > MAX_IMPORT_BYTES:
        raise InputError(source, f"a model package of at most {MAX_IMPORT_BYTES / 1024**2:g} MiB",
                         f"{declared / 1024**2:.1f} MiB declared by its members")
    if manifests[0].file_size > MAX_MANIFEST_BYTES:
        raise InputError(source, f"a manifest.json of at most {MAX_MANIFEST_BYTES} bytes",
                         f"{manifests[0].file_size} bytes")
    try:
        manifest = json.loads(archive.read(manifests[0]))
        listed = package_files(manifest, logs=True)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"{source}:{manifests[0].filename}", "a model manifest listing its files",
                         f"unreadable content ({exc!r})") from None
    root = Path(manifests[0].filename).parent
    allowed = {(root / name).as_posix() for name in listed if isinstance(name, str) and WEIGHTS_NAME.match(name)}
    extra = [i.filename for i in infos if i.filename not in allowed]
    if extra:
        raise InputError(source, "a zip of one model folder holding only the files its manifest lists",
                         f"unlisted member(s) {', '.join(repr(m) for m in extra[:5])}")
    return {i.filename: Path(i.filename).name for i in infos}, root.name


def package_description(manifest):
    """One line saying what a package is: its manifest's description, else its kind."""
    from .registry import kind_name

    return manifest.get("description") or f"a {kind_name(manifest)} model package"


def installed_packages(roots):
    """[(folder, manifest or None, one-line description)] of every sub-folder of `roots` (folders that
    may not exist) holding a manifest.json, sorted by name within each root; an unreadable package is
    listed with the reason instead of its description. Torch-free, weights not read."""
    found = []
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            continue
        for folder in sorted(p for p in root.iterdir() if (p / MANIFEST).is_file()):
            try:
                manifest = read_manifest(folder)
            except InputError as exc:
                found.append((folder, None, f"unusable: {exc}"))
                continue
            found.append((folder, manifest, package_description(manifest)))
    return found
