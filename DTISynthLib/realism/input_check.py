"""Out-of-distribution check of a synthesis input: a small denoising autoencoder (paper 2's) of a
model package's training inputs, whose reconstruction error on a new input, relative to its error on
held-out training inputs, says whether the generators have seen data like it.

Features per brain voxel, what the generators see made independent of b-value and scanner scaling:
the b=0 over its brain median, and the apparent diffusion coefficients along the scanner's x, y, z
(-ln(S / S0) / b, in 10^-3 mm^2/s), each averaged over 3 x 3 voxels in the slice (noise) and clipped
to [0, MAX_FEATURE]; two texture channels, how much the b=0 ratio and the mean ADC vary over 7 x 7
voxels in the slice (a brain's tissues alternate; a bottle of water or a liver does not); then each
voxel's 3 x 3 in-slice neighbourhood of the six (54 inputs). The error of a scan is the median over
its brain voxels of the per-voxel mean squared error (a few odd voxels, such as a scan's edges, do
not decide it); the package stores the same figure on its validation subjects (`reference_error`)
and the warning ratio.

Training: each source of training data (the top-level folders of the data, e.g. a simulated cohort
and a set of real scans) gives an equal share of the voxels, each of its subjects an equal share of
that; 20 epochs. Why (measured with the shipped sets' training inputs, 20 phantom subjects and four
real scans; error ratios): with an equal share per subject the 18 phantom subjects decide what
"like the training inputs" is and the six shared real scans scored 2.3-4.5; at 50 epochs the
autoencoder fits the phantom closer and real scans scored up to 2.9. Without the texture channels
the ratio of a water cylinder varied from 1.9 to 5.9 between seeds, inside the real scans' range;
with them, over four seeds, water 5.9-14.5, real scans 1.03-2.32, phantoms 0.99-1.01: hence
WARNING_RATIO 3.5. The features are taken over the axial slices the generators see
(dwi_input_features reorders a stack stored in another plane, core.model_grid.axial_slices): a
voxel's 3 x 3 neighbourhood looks alike in any plane, so slice orientation is handled by that
reordering, not by the check.

Stored as safetensors (weights_k, biases_k float32, k = 0..3): nothing is unpickled, and the shapes
are checked before use (a model file is untrusted input).
"""

from dataclasses import dataclass

import numpy as np

from ..core.gradient_schemes import AXES_3_RAS, nearest_volumes
from ..core.model_grid import axial_slices
from ..fit.brain_mask import brain_mask
from .autoencoder import Autoencoder, AutoencoderConfig, reconstruct, train_autoencoder

CHANNELS = ("b0 / brain median b0", "ADC x", "ADC y", "ADC z", "b0 ratio texture", "mean ADC texture")
FEATURES = ("b=0 / brain median, ADC along x, y, z (1e-3 mm^2/s); each a 3 x 3 in-slice mean, clipped to "
            "[0, 4]; 4 x the SD over 7 x 7 in the slice of the b=0 ratio and of the mean ADC; each voxel's "
            "3 x 3 in-slice neighbourhood of the six (54 inputs)")
TEXTURE_SIZE = 7
TEXTURE_SCALE = 4.0
MAX_FEATURE = 4.0
NOISE = 0.05  # denoising noise SD, feature units
MAX_VOXELS = 250_000
EPOCHS = 20
WARNING_RATIO = 3.5


def input_features(b0, weighted, bvals, mask):
    """Features (N, 54) float32 of the N voxels of `mask` (x, y, z) in index order. b0 (x, y, z);
    weighted (x, y, z, 3): the diffusion-weighted volumes along the scanner's x, y, z, at b-values
    bvals (3,) s/mm^2. Slices are the third axis."""
    from scipy import ndimage

    b0 = np.asarray(b0, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return np.zeros((0, 9 * len(CHANNELS)), np.float32)
    channels = [b0 / max(float(np.median(b0[mask])), 1e-12)]
    with np.errstate(divide="ignore", invalid="ignore"):
        for k in range(3):
            attenuation = np.where(b0 > 0, weighted[..., k] / b0, 0.0)
            channels.append(np.where(attenuation > 0, -np.log(attenuation) / bvals[k] * 1e3, MAX_FEATURE))
    smoothed = [np.clip(ndimage.uniform_filter(np.nan_to_num(c), size=(3, 3, 1), mode="nearest"), 0.0, MAX_FEATURE)
                for c in channels]
    # texture: how much the b=0 ratio and the mean ADC vary over TEXTURE_SIZE x TEXTURE_SIZE in the slice
    for value in (smoothed[0], np.mean(smoothed[1:], axis=0)):
        mean = ndimage.uniform_filter(value, size=(TEXTURE_SIZE, TEXTURE_SIZE, 1), mode="nearest")
        mean_square = ndimage.uniform_filter(value * value, size=(TEXTURE_SIZE, TEXTURE_SIZE, 1), mode="nearest")
        smoothed.append(np.clip(TEXTURE_SCALE * np.sqrt(np.maximum(mean_square - mean * mean, 0.0)), 0.0, MAX_FEATURE))
    i, j, k = np.nonzero(mask)
    features = np.empty((len(i), 9 * len(smoothed)), np.float32)  # filled column by column: no float64 copy
    column = 0
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            ii, jj = np.clip(i + di, 0, mask.shape[0] - 1), np.clip(j + dj, 0, mask.shape[1] - 1)
            for c in smoothed:
                features[:, column] = c[ii, jj, k]
                column += 1
    return features


def dwi_input_features(dwi):
    """The features of a DWI as the generators see it: its axial slices (core.model_grid.axial_slices),
    its b=0 and the volumes nearest the scanner's x, y, z (core.gradient_schemes.nearest_volumes, as
    synthesis matches them), in the brain mask of its mean b=0."""
    dwi = axial_slices(dwi)
    order, _ = nearest_volumes(dwi, AXES_3_RAS)
    b0 = dwi.mean_b0()
    return input_features(b0, dwi.data[..., order], dwi.bvals[order], brain_mask(b0))


def reconstruction_error(model, features):
    """Median over voxels of each voxel's mean squared reconstruction error (feature units squared)."""
    if len(features) == 0:
        return float("nan")
    return float(np.median(np.mean((reconstruct(model, features) - features) ** 2, axis=1)))


@dataclass
class InputCheck:
    """The autoencoder and its error on held-out training inputs (`reference_error`)."""

    model: Autoencoder
    reference_error: float
    warning_ratio: float = WARNING_RATIO

    def ratio(self, features):
        return reconstruction_error(self.model, features) / self.reference_error


def fit_input_check(sources, validation, epochs=EPOCHS, max_voxels=MAX_VOXELS, seed=0, progress=None):
    """Train the check on feature arrays (N_k, 54): `sources` a list of sources (e.g. a simulated
    cohort, a set of real scans), each a list of subjects' arrays. Each source gives an equal share of
    at most max_voxels, each of its subjects an equal share of that; a tenth is held out for the
    training record. The reference error is on the validation subjects' (a list of arrays) every voxel."""
    rng = np.random.default_rng(seed)
    share = max(1, max_voxels // len(sources))
    pool = np.concatenate([f[rng.permutation(len(f))[:max(1, share // len(subjects))]]
                           for subjects in sources for f in subjects])
    pool = pool[rng.permutation(len(pool))]
    held = max(1, len(pool) // 10)
    model = train_autoencoder(pool[held:], pool[:held], NOISE, AutoencoderConfig(epochs=epochs, seed=seed), progress)
    return InputCheck(model, reconstruction_error(model, np.concatenate(validation)))


def save_input_check(path, check):
    """Write the autoencoder's weights as safetensors (atomically); returns the file's SHA-256."""
    from safetensors.numpy import save_file

    from ..core.atomic import set_default_permissions
    from ..core.checksums import sha256_file

    tensors = {f"weights_{k}": np.ascontiguousarray(w, np.float32) for k, w in enumerate(check.model.weights)}
    tensors.update({f"biases_{k}": np.ascontiguousarray(b, np.float32) for k, b in enumerate(check.model.biases)})
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata={"features": FEATURES, "noise": str(check.model.noise)})
    set_default_permissions(tmp)
    tmp.replace(path)
    return sha256_file(path)


def load_input_check(path, reference_error, warning_ratio):
    """The InputCheck of a (verified) safetensors file: four layers chaining 54 inputs back to 54."""
    from safetensors.numpy import load_file

    from ..core.errors import InputError

    try:
        tensors = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types on damaged files
        raise InputError(path, "an input-check autoencoder in safetensors format", f"unreadable ({exc})") from None
    weights = [tensors.get(f"weights_{k}") for k in range(4)]
    biases = [tensors.get(f"biases_{k}") for k in range(4)]
    n_inputs = 9 * len(CHANNELS)
    shapes_ok = all(w is not None and b is not None and w.ndim == 2 and b.shape == (w.shape[1],)
                    for w, b in zip(weights, biases, strict=True)) and len(tensors) == 8
    if shapes_ok:
        dims = [weights[0].shape[0]] + [w.shape[1] for w in weights]
        shapes_ok = dims[0] == dims[-1] == n_inputs and all(w.shape[0] == d for w, d in zip(weights, dims, strict=False))
    if shapes_ok:
        shapes_ok = all(np.isfinite(t).all() for t in tensors.values())
    if not shapes_ok:
        raise InputError(path, f"four finite layers weights_k / biases_k chaining {n_inputs} inputs back to {n_inputs}",
                         f"tensors {sorted((k, tuple(v.shape)) for k, v in tensors.items())}"[:300])
    model = Autoencoder([w.astype(np.float32) for w in weights], [b.astype(np.float32) for b in biases])
    return InputCheck(model, float(reference_error), float(warning_ratio))
