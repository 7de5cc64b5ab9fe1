"""Model packages: a folder with manifest.json and safetensors weights files. Model files are untrusted
input: nothing is unpickled; the manifest and every weights file must be regular files in the package
folder (never a symbolic link, which could point at /dev/zero, a folder or itself), every weights file
is checked against its SHA-256 in the manifest, and the format version and the generator kind must be
known. Torch-free: reading and verifying a package never loads torch.

manifest.json: generators.manifest.Manifest (its entries and checks).
"""

import contextlib
import functools
import json
import os
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
from ..core.errors import InputError, refuse_special_file, refuse_unless_regular_file
from ..core.gradient_schemes import AXES_3_RAS
from ..core.resources import RESOURCES
from .manifest import FORMAT, FORMAT_VERSION, MANIFEST, WEIGHTS_NAME, Manifest

SHIPPED_MODELS = RESOURCES / "Models"  # one folder per shipped package
DEFAULT_MODELS = SHIPPED_MODELS / "tensor-unet"  # the default set
INPUT_CHECK_FILE = "input_check.safetensors"  # the out-of-distribution autoencoder (realism.input_check)
MAX_MANIFEST_BYTES = 1024**2  # a manifest.json's size, checked before it is read
MAX_IMPORT_BYTES = 2 * 1024**3  # an imported package's files together, as a zip's directory or a folder declares them


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


def write_manifest(folder, data):
    """Write a manifest's JSON object (a dict; Manifest.data for a read one) as the folder's manifest.json."""
    data = dict(data, format=FORMAT, format_version=FORMAT_VERSION)
    write_text_atomic(Path(folder) / MANIFEST, json.dumps(data, indent=2, sort_keys=True) + "\n")


def training_fields(request, grid, provenance, processes):
    """The manifest entries every kind writes after training (all but architecture, directions and
    the weights files): intensity, grid, voxel size, b-value, input directions, training provenance."""
    from dataclasses import asdict

    return {"intensity": asdict(request.intensity), "grid": list(grid), "voxel_size_mm": provenance["voxel_size_mm"],
            "b_value": provenance["b_value"], "input_directions": AXES_3_RAS.tolist(),
            "gradient_frame": "RAS world (scanner) unit vectors; input channels x, y, z of the scanner",
            "training": {"config": asdict(request.config), "processes": processes, **provenance},
            "created_by": f"DTISynth {__version__}", "format_version": FORMAT_VERSION}


def read_manifest(folder):
    """The checked Manifest of a model folder's manifest.json (a regular file in the folder: a link, to
    /dev/zero say, is refused before it is opened)."""
    path = Path(folder) / MANIFEST
    refuse_unless_regular_file(path)
    if not path.exists():
        raise InputError(path, "a DTISynth model folder with manifest.json", "no manifest.json")
    return _parse_manifest(path, path.stat().st_size, path.read_bytes)


def _parse_manifest(where, size, read):
    """The checked Manifest of a manifest.json of `size` bytes whose content read() returns (a folder's
    file, a zip's member), named `where` in errors: its size is checked before it is read."""
    if size > MAX_MANIFEST_BYTES:
        raise InputError(where, f"a manifest.json of at most {MAX_MANIFEST_BYTES} bytes", f"{size} bytes")
    try:
        data = json.loads(read())
    except (OSError, ValueError) as exc:
        raise InputError(where, "a JSON manifest", f"unreadable content ({exc})") from None
    return Manifest(data, where)


def verified_weights(folder, entry):
    """The weights file of a manifest entry, refused when missing, when not a regular file in the folder
    (a link to /dev/zero would be hashed for ever, one to a folder or in a loop is no weights file), or
    when its SHA-256 differs."""
    path = Path(folder) / entry["file"]
    refuse_unless_regular_file(path)
    if not path.exists():
        raise InputError(path, "the weights file named in manifest.json", "no such file")
    actual = sha256_file(path)
    if actual != entry["sha256"]:
        raise InputError(path, f"SHA-256 {entry['sha256']} from manifest.json", f"SHA-256 {actual}")
    return path


def check_determines_a_tensor(manifest):
    """Refuse a package whose output directions (at its b-value, after a b=0) do not determine a tensor:
    what synthesize writes must be a DTI. (A package of a subset of directions is a training stage.)"""
    from ..fit.tensor_fit import check_design

    _, vectors = manifest.direction_vectors()
    check_design(f"{manifest.source} (its directions)", np.r_[0.0, np.full(len(vectors), manifest.b_value)],
                 np.vstack([np.zeros(3), vectors]))


def verify_package(folder):
    """Check a model folder without loading weights (torch-free): manifest, files and SHA-256 checksums."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    for entry in [*manifest.network_files().values(), *([manifest.input_check] if manifest.input_check else [])]:
        verified_weights(folder, entry)
    return manifest


def import_package(source, models_root):
    """Copy a model package (a folder, or a .zip holding one) into models_root/<its name>: checked before
    anything is created or any file but its manifest read, verified (verify_package) once copied, and
    moved into place in one rename. Returns the new folder.

    The rules, each written once and applied to a zip and a folder alike: a valid manifest of at most
    MAX_MANIFEST_BYTES (_parse_manifest), only the files it lists copied (_listed_files: its weights,
    its input check, the training log of each of its directions), at most MAX_IMPORT_BYTES in all
    (_check_import_size), then the SHA-256 of every weights file (verify_package). A zip is checked
    from its directory (_checked_zip) and refused if it holds anything else; a folder from the lstat of
    its listed files (_checked_folder), each a regular file in the folder itself, its other entries
    left alone."""
    import shutil
    import tempfile
    import zipfile

    source, models_root = Path(source), Path(models_root)
    refuse_special_file(source)
    if not source.exists():
        raise InputError(source, "a model package folder or .zip", "no such file or folder")
    if not source.is_dir() and not zipfile.is_zipfile(source):
        raise InputError(source, "a model folder or a .zip of one", "neither")
    with contextlib.ExitStack() as open_files:
        if source.is_dir():
            name, files = _checked_folder(source)
        else:
            name, files = _checked_zip(source, open_files.enter_context(zipfile.ZipFile(source)))
        created = make_output_dir(models_root)
        staging = Path(tempfile.mkdtemp(prefix=".dtisynth-import-", dir=models_root))
        try:
            package = staging / name
            package.mkdir()
            for file_name, open_file in files.items():
                with open_file() as read, open(package / file_name, "wb") as write:
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


def _listed_files(manifest):
    """The file names a package to import may hold: what its manifest lists (package_files), plain names."""
    return {name for name in manifest.package_files(logs=True) if WEIGHTS_NAME.match(name)}


def _check_import_size(source, sizes):
    """Refuse a package whose files ({name: size}) are over MAX_IMPORT_BYTES together, before any is read."""
    declared = sum(sizes.values())
    if declared > MAX_IMPORT_BYTES:
        raise InputError(source, f"a model package of at most {MAX_IMPORT_BYTES / 1024**2:g} MiB",
                         f"{declared / 1024**2:.1f} MiB declared by its files")


def _checked_folder(source):
    """(package name, {file name: opener}) of a model folder to import. Only the files its manifest lists
    are looked at, each of which must be a regular file in the folder itself: a symbolic link (to
    /dev/zero, to a folder outside, in a loop), a FIFO, device or sub-folder is refused unopened. Other
    entries are left alone, never opened or copied: a folder is a working place (`train` keeps its
    checkpoints/ in the package folder), unlike a zip, whose every member is the package's."""
    manifest = read_manifest(source)
    names = sorted(name for name in _listed_files(manifest) if os.path.lexists(source / name))
    for name in names:
        refuse_unless_regular_file(source / name)
    _check_import_size(source, {name: os.lstat(source / name).st_size for name in names})
    files = {name: functools.partial(_open_no_link, source / name) for name in names}
    return Path(os.path.abspath(source)).name, files  # abspath: "." and "pkg/" are named as the folder is


def _open_no_link(path):
    """A checked file of a folder opened for reading; O_NOFOLLOW: one swapped for a link since its check is
    refused by open itself, not followed."""
    return open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb")


def _checked_zip(source, archive):
    """(package name, {file name: opener}) of a model zip: from its directory and its manifest alone, one
    manifest.json, members that stay inside the archive (no absolute or ../ paths), no member the
    manifest does not list, and the declared sizes (zipfile never writes more than a member's)."""
    infos = [i for i in archive.infolist() if not i.is_dir()]
    for info in infos:
        if info.filename.startswith("/") or ".." in Path(info.filename).parts:
            raise InputError(source, "a zip of one model folder", f"the member path {info.filename!r}")
    manifests = [i for i in infos if Path(i.filename).name == MANIFEST]
    if len(manifests) != 1:
        raise InputError(source, "a zip holding one model folder (one manifest.json)", f"{len(manifests)}")
    _check_import_size(source, {i.filename: i.file_size for i in infos})
    manifest = _parse_manifest(f"{source}:{manifests[0].filename}", manifests[0].file_size,
                               functools.partial(archive.read, manifests[0]))
    root = Path(manifests[0].filename).parent
    allowed = {(root / name).as_posix() for name in _listed_files(manifest)}
    extra = [i.filename for i in infos if i.filename not in allowed]
    if extra:
        raise InputError(source, "a zip of one model folder holding only the files its manifest lists",
                         f"unlisted member(s) {', '.join(repr(m) for m in extra[:5])}")
    return root.name or source.stem, {Path(i.filename).name: functools.partial(archive.open, i) for i in infos}


def find_package(name, roots):
    """The folder of the installed model package called `name` (a folder name, as installed_packages lists
    them): the first root, in order, that holds one. A scene or a script keeps the name, not the folder,
    so that a newer install of the extension (its own Models folder) serves it. InputError naming the
    roots when none has it."""
    for root in roots:
        folder = Path(root) / str(name)
        if str(name) and Path(str(name)).name == str(name) and (folder / MANIFEST).is_file():
            return folder
    raise InputError(str(name) or "(no name)", "the name of an installed model package (in "
                     + ", ".join(str(r) for r in roots) + ")", "no package of that name")


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
            found.append((folder, manifest, manifest.description))
    return found
