"""Model packages: a folder with manifest.json and one safetensors file of generator weights per
DTI gradient direction. Model files are untrusted input: nothing is unpickled; every weights file
is checked against its SHA-256 in the manifest and the format version must match.

manifest.json: format, format_version, architecture (generator: in/out channels, ngf, depth,
dropout; discriminator: ndf, n_layers), intensity (mode, quantise_8bit), grid (H, W), voxel_size_mm,
b_value (s/mm^2), input_directions (RAS unit vectors of the DWI channels), directions (index 1-6,
gradient_ras, file, sha256, dtype, validation metrics), training (hyper-parameters, data provenance,
subject split), created_by.
"""

import hashlib
import json
from pathlib import Path

import numpy as np

from .atomic import set_default_permissions, write_text_atomic
from .errors import InputError

FORMAT = "dtisynth-pix2pix"
DEFAULT_MODELS = Path(__file__).resolve().parents[1] / "Resources" / "Models" / "demo"  # the shipped demo set
FORMAT_VERSION = 1


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
    write_text_atomic(Path(folder) / "manifest.json", json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def read_manifest(folder):
    """Read and check manifest.json of a model folder (format and version)."""
    path = Path(folder) / "manifest.json"
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
    return manifest


def build_generator(architecture):
    from .networks import UNetGenerator

    g = architecture["generator"]
    return UNetGenerator(g["in_channels"], g["out_channels"], g["ngf"], g["depth"], g.get("dropout", True))


def _verified_weights(folder, entry):
    """The weights file of a manifest entry, refused when missing or when its SHA-256 differs."""
    path = Path(folder) / entry["file"]
    if not path.exists():
        raise InputError(path, "the weights file named in manifest.json", "no such file")
    actual = sha256_file(path)
    if actual != entry["sha256"]:
        raise InputError(path, f"SHA-256 {entry['sha256']} from manifest.json", f"SHA-256 {actual}")
    return path


def load_generators(folder, directions=None, device="cpu"):
    """Load verified generators {index: module in eval mode} and the manifest. `directions`: indices
    (1-6) to load, default all in the manifest."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    manifest = read_manifest(folder)
    wanted = directions or [d["index"] for d in manifest["directions"]]
    generators = {}
    for entry in manifest["directions"]:
        if entry["index"] not in wanted:
            continue
        path = _verified_weights(folder, entry)
        try:
            state = load_file(str(path), device=str(device))
        except (SafetensorError, OSError, ValueError) as exc:
            raise InputError(path, "a safetensors weights file", f"unreadable content ({exc})") from None
        import torch

        with torch.device("meta"):  # no random initialisation of weights about to be replaced
            generator = build_generator(manifest["architecture"])
        template = generator.state_dict()
        if set(state) != set(template):
            raise InputError(path, f"the weights of the manifest's architecture ({len(template)} tensors)",
                             f"{len(state)} tensors, {len(set(state) ^ set(template))} names differing")
        wrong = [k for k, v in state.items() if tuple(v.shape) != tuple(template[k].shape)]
        if wrong:
            raise InputError(path, "tensor shapes of the manifest's architecture",
                             f"{wrong[0]} of shape {tuple(state[wrong[0]].shape)}, not {tuple(template[wrong[0]].shape)}")
        generator.load_state_dict({k: v.to(template[k].dtype) for k, v in state.items()}, assign=True)
        generators[entry["index"]] = generator.eval()
    return generators, manifest


def direction_vectors(manifest):
    """(indices, RAS unit vectors (k, 3)) of the manifest's output directions."""
    entries = sorted(manifest["directions"], key=lambda d: d["index"])
    return [d["index"] for d in entries], np.array([d["gradient_ras"] for d in entries], dtype=np.float64)


def verify_package(folder):
    """Check a model folder without loading weights (torch-free): manifest, files and SHA-256 checksums."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    for entry in manifest["directions"]:
        _verified_weights(folder, entry)
    return manifest


def import_package(source, models_root):
    """Copy a model package (a folder, or a .zip holding one) into models_root/<its name>, verified
    first (verify_package) and moved into place in one rename. Returns the new folder. A .zip's
    members must stay inside it (no absolute or ../ paths)."""
    import shutil
    import tempfile
    import zipfile

    source, models_root = Path(source), Path(models_root)
    models_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".import-", dir=models_root))
    try:
        if source.is_dir():
            package = staging / source.name
            shutil.copytree(source, package)
        elif zipfile.is_zipfile(source):
            with zipfile.ZipFile(source) as archive:
                for member in archive.namelist():
                    if member.startswith("/") or ".." in Path(member).parts:
                        raise InputError(source, "a zip of one model folder", f"the member path {member!r}")
                archive.extractall(staging / "unzipped")
            manifests = list((staging / "unzipped").rglob("manifest.json"))
            if len(manifests) != 1:
                raise InputError(source, "a zip holding one model folder (one manifest.json)", f"{len(manifests)}")
            package = manifests[0].parent
            if package == staging / "unzipped":
                package = package.rename(staging / source.stem)
        else:
            raise InputError(source, "a model folder or a .zip of one", "neither")
        verify_package(package)
        target = models_root / package.name
        if target.exists():
            raise InputError(target, "a new model name", "a model folder of that name already exists")
        package.rename(target)
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)
