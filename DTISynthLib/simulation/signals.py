"""Multi-tensor diffusion signals with paper 2's four eigenvalue schemes, b=0 contrast and noise.

Units: eigenvalues and diffusivities in mm^2/s, b in s/mm^2; directions are unit vectors in the
RAS world frame. A voxel holds up to three single-fibre WM compartments (volume fractions within WM),
a GM compartment (deep grey nuclei get their own, mildly anisotropic tensor) and a CSF compartment:

    S(b, g) = sum_tissue f_tissue * S0_tissue * sum_k phi_k * exp(-b g^T D_k g)

Schemes (paper 2, "synthetic-diffusion-autoencoder"):
- "syn": dipy's defaults for WM (1.5, 0.3, 0.3) x 1e-3; GM 0.5e-3 and CSF 3e-3, isotropic.
- "sampled": eigenvalue triplets drawn per voxel and compartment from a subject's tensor fit in
  eroded tissue masks (WM only from FA > 0.7 voxels).
- "sample-and-mean": WM drawn as in "sampled"; GM and CSF fixed at the subject's mean triplet.
- "random-wm": free water at 3e-3 with the CSF fraction, every other compartment replaced by an
  attenuation drawn from U(0, 1) per voxel and gradient.
Without a subject (`--sample-from`), "sampled" and "sample-and-mean" draw from the embedded
reference subject (reference_pools), a typical adult at b=1000.
"""

from dataclasses import dataclass

import numpy as np

from ..core.dwi import B0_THRESHOLD
from ..core.errors import InputError

SCHEMES = ("syn", "sampled", "sample-and-mean", "random-wm")
TISSUES = ("wm", "gm", "csf")
# b=0 signal of each tissue relative to WM in a T2-weighted spin-echo EPI (TE ~ 80 ms at 3 T).
S0_CONTRAST = {"wm": 1.0, "gm": 1.3, "csf": 3.0}
FREE_WATER = 3.0e-3
NOISE_CHUNK = 1 << 18  # values per chunk of add_rician_noise's float64 draws
SYN_EIGENVALUES = {"wm": (1.5e-3, 0.3e-3, 0.3e-3), "gm": (0.5e-3,) * 3, "csf": (3.0e-3,) * 3,
                   "deep_gm": (0.5e-3,) * 3}


@dataclass
class EigenvaluePools:
    """Eigenvalue triplets (K, 3), descending, mm^2/s, to draw from per tissue; `source` says whence."""

    wm: np.ndarray
    gm: np.ndarray
    csf: np.ndarray
    deep_gm: np.ndarray
    source: str


def reference_pools(size=4000, seed=20240601):
    """The embedded reference subject: typical adult eigenvalues at b=1000 s/mm^2.

    WM single-fibre voxels lambda (1.70, 0.33, 0.25) x 1e-3 (FA ~ 0.79), cortical GM (0.95, 0.82,
    0.72) x 1e-3 (MD ~ 0.83e-3), deep grey nuclei (1.10, 0.78, 0.60) x 1e-3 (FA ~ 0.28), CSF
    (3.1, 3.0, 2.9) x 1e-3, each with a few percent spread; values of adult DTI at 3 T (the seed
    paper's Table 2 originals, Pierpaoli 1996) from which its phantom ROI values are calibrated.
    """
    rng = np.random.default_rng(seed)

    def pool(mean, spread):
        values = rng.normal(mean, spread, size=(size, 3)) * 1e-3
        return -np.sort(-np.clip(values, 0.05e-3, None), axis=1)

    return EigenvaluePools(wm=pool((1.70, 0.33, 0.25), (0.10, 0.04, 0.04)),
                           gm=pool((0.95, 0.82, 0.72), (0.05, 0.04, 0.04)),
                           csf=pool((3.1, 3.0, 2.9), (0.08, 0.08, 0.08)),
                           deep_gm=pool((1.10, 0.78, 0.60), (0.06, 0.05, 0.05)),
                           source="embedded reference subject")


def pools_from_fit(evals, fa, md, brain, source, min_voxels=50):
    """Pools from a subject's tensor fit (eigenvalue maps (x, y, z, 3) descending, FA, MD, brain mask).

    Without a T1 segmentation, tissues are classified from DTI and eroded by one voxel: WM where
    FA > 0.7 (paper 2's single-fibre rule), GM where FA < 0.25 and 0.6e-3 <= MD <= 1.1e-3, CSF where
    MD > 1.5e-3 (above any tissue; at b >= 2000 the CSF signal sits at the noise floor and its measured
    MD falls to 1.5-2.2e-3). Deep grey nuclei cannot be told apart here and share the GM pool.
    """
    from scipy import ndimage  # here: service.requests imports this module for its option names

    interior = ndimage.binary_erosion(brain, iterations=1)
    classes = {"wm": fa > 0.7,
               "gm": (fa < 0.25) & (md >= 0.6e-3) & (md <= 1.1e-3),
               "csf": md > 1.5e-3}
    pools = {}
    for tissue, selected in classes.items():
        voxels = ndimage.binary_erosion(selected & interior, iterations=1)
        if voxels.sum() < min_voxels:
            voxels = selected & interior  # small structures (thin CSF spaces) vanish when eroded
        triplets = evals[voxels]
        triplets = triplets[(triplets > 0).all(axis=1)]
        if len(triplets) < min_voxels:
            raise InputError(source, f"at least {min_voxels} {tissue.upper()} voxels to sample eigenvalues from",
                             f"{len(triplets)} voxels classified as {tissue.upper()}")
        pools[tissue] = triplets.astype(np.float64)
    return EigenvaluePools(pools["wm"], pools["gm"], pools["csf"], pools["gm"], source)


def eigenvalues_for(pools, scheme, tissue, choice):
    """Eigenvalue triplets (N, 3) of one tissue ("wm", "gm", "deep_gm", "csf") under a scheme.

    choice: non-negative integers (N,), uniformly random: which pool entry each voxel takes.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, not {scheme!r}")
    count = len(choice)
    if scheme in ("syn", "random-wm"):  # random-wm uses eigenvalues only for the ground-truth frame
        return np.tile(SYN_EIGENVALUES[tissue], (count, 1))
    pool = getattr(pools, tissue)
    if scheme == "sample-and-mean" and tissue != "wm":
        return np.tile(pool.mean(axis=0), (count, 1))
    return pool[np.asarray(choice, dtype=np.uint64) % np.uint64(len(pool))]


def random_choices(seed, slot, keys):
    """Uniform random non-negative integers (N,), a pure function of (seed, slot, key) (splitmix64).

    Keys are anatomical locations (MNI lattice indices), so every acquisition of a subject draws the
    same tissue properties at the same place, whatever its grid or head position.
    """
    mask = np.uint64(0xFFFFFFFFFFFFFFFF)
    x = (np.asarray(keys, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
         + np.uint64((seed * 1_000_003 + slot) & 0xFFFFFFFFFFFFFFFF)) & mask
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return (x ^ (x >> np.uint64(31))) >> np.uint64(1)


def perpendicular_frame(directions):
    """Unit vectors e2, e3 (N, 3) completing `directions` (N, 3) to a right-handed orthonormal frame."""
    d = np.asarray(directions, dtype=np.float64)
    helper = np.where(np.abs(d[:, :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]])
    e2 = np.cross(d, helper)
    e2 /= np.linalg.norm(e2, axis=1, keepdims=True)
    return e2, np.cross(d, e2)


def tensor_matrices(directions, eigenvalues):
    """Tensors (N, 3, 3) with principal axis `directions` (N, 3) and eigenvalues (N, 3) descending."""
    e2, e3 = perpendicular_frame(directions)
    frame = np.stack([directions, e2, e3], axis=2)  # columns
    return np.einsum("nij,nj,nkj->nik", frame, eigenvalues, frame)


@dataclass
class VoxelTissue:
    """What fills each simulated voxel (N voxels).

    fractions (N, 3): WM, GM, CSF volume fractions; fibre_directions (N, K, 3) RAS unit vectors;
    fibre_fractions (N, K) within WM; deep_gm (N,) bool: the GM compartment is a deep grey nucleus;
    compartments: tensors (N, K + 2, 3, 3) mm^2/s, WM fibres then GM then CSF; tissue_s0 (N, 3): b=0
    signal of pure WM, GM and CSF in the voxel.
    """

    fractions: np.ndarray
    fibre_directions: np.ndarray
    fibre_fractions: np.ndarray
    deep_gm: np.ndarray
    compartments: np.ndarray
    tissue_s0: np.ndarray

    @property
    def s0(self):
        """b=0 signal of each voxel (N,)."""
        return (self.fractions * self.tissue_s0).sum(axis=1)


def disperse(eigenvalues, dispersion):
    """Orientation dispersion delta in [0, 1): lambda -> (1 - delta) lambda + delta mean(lambda) (MD kept)."""
    delta = np.asarray(dispersion, dtype=np.float64)[..., None]
    return (1.0 - delta) * eigenvalues + delta * eigenvalues.mean(axis=-1, keepdims=True)


def build_voxel_tissue(fractions, fibre_directions, fibre_fractions, deep_gm, eigenvalues, s0_wm=300.0,
                       fibre_dispersion=None):
    """Compartment tensors and b=0 signals of N voxels.

    eigenvalues: {"wm": (N, K, 3), "gm": (N, 3), "deep_gm": (N, 3), "csf": (N, 3)} descending, mm^2/s.
    fibre_dispersion (N, K): orientation dispersion of each WM compartment (None: none).
    In a deep grey nucleus (deep_gm) all brain tissue is nucleus: the WM the tissue map assigns there
    (traversing fibres, pallidum) joins the GM compartment, which uses "deep_gm" eigenvalues along the
    voxel's main fibre axis.
    """
    n, k = fibre_fractions.shape
    deep_gm = np.asarray(deep_gm, dtype=bool)
    fractions = np.array(fractions, dtype=np.float64)
    fractions[deep_gm, 1] += fractions[deep_gm, 0]
    fractions[deep_gm, 0] = 0.0
    wm_eigs = eigenvalues["wm"] if fibre_dispersion is None else disperse(eigenvalues["wm"], fibre_dispersion)
    wm = tensor_matrices(fibre_directions.reshape(-1, 3), wm_eigs.reshape(-1, 3)).reshape(n, k, 3, 3)
    gm_eigs = np.where(np.asarray(deep_gm)[:, None], eigenvalues["deep_gm"], eigenvalues["gm"])
    gm = tensor_matrices(fibre_directions[:, 0], gm_eigs)
    csf = tensor_matrices(fibre_directions[:, 0], eigenvalues["csf"])
    compartments = np.concatenate([wm, gm[:, None], csf[:, None]], axis=1)
    tissue_s0 = np.tile(s0_wm * np.array([S0_CONTRAST[t] for t in TISSUES]), (n, 1))
    return VoxelTissue(fractions, fibre_directions, fibre_fractions, deep_gm, compartments, tissue_s0)


def simulate_signals(tissue, bvals, gradients, scheme, rng):
    """Noise-free signals (N, n) of voxels for a gradient table (b s/mm^2, RAS unit vectors)."""
    bvals = np.asarray(bvals, dtype=np.float64)
    g = np.asarray(gradients, dtype=np.float64)
    weight = tissue.fractions * tissue.tissue_s0  # (N, 3): each tissue's share of the b=0 signal
    if scheme == "random-wm":
        return random_wm_signals(weight, bvals, rng)
    # exp(-b g^T D g) for every compartment and gradient
    quad = np.einsum("vi,nkij,vj->nkv", g, tissue.compartments, g)
    decay = np.exp(-bvals[None, None, :] * quad)
    k = tissue.fibre_fractions.shape[1]
    wm = (tissue.fibre_fractions[:, :, None] * decay[:, :k]).sum(axis=1)
    return weight[:, 0:1] * wm + weight[:, 1:2] * decay[:, k] + weight[:, 2:3] * decay[:, k + 1]


def random_wm_signals(weight, bvals, rng):
    """The random-wm scheme's signals (N, n): free water at FREE_WATER with the CSF share, the WM and GM
    shares attenuated by U(0, 1) draws per voxel and volume (b=0 volumes: 1). weight (N, 3): each
    tissue's share of the b=0 signal (WM, GM, CSF); b s/mm^2."""
    bvals = np.asarray(bvals, dtype=np.float64)
    attenuation = rng.uniform(0.0, 1.0, size=(len(weight), len(bvals)))
    attenuation[:, bvals <= 0] = 1.0
    free_water = np.exp(-bvals * FREE_WATER)[None, :]
    return weight[:, :2].sum(axis=1, keepdims=True) * attenuation + weight[:, 2:3] * free_water


def add_rician_noise(signals, sigma, rng):
    """Magnitude of the signal plus complex Gaussian noise of standard deviation `sigma` per channel.

    float32 signals get float32 noise (twice as fast to draw, for the autoencoder's every epoch); other
    signals float64 noise, as the simulated cohorts have always been drawn."""
    if np.asarray(signals).dtype == np.float32:
        real = signals + np.float32(sigma) * rng.standard_normal(signals.shape, dtype=np.float32)
        imaginary = np.float32(sigma) * rng.standard_normal(signals.shape, dtype=np.float32)
        return np.sqrt(real * real + imaginary * imaginary)
    # In chunks of the flattened array, all real parts drawn before all imaginary ones: the same numbers
    # as whole-array draws, without the whole-array temporaries (fresh memory is slow to fault in).
    source = np.ascontiguousarray(signals, dtype=np.float64).reshape(-1)
    magnitude = np.empty(source.shape)
    pieces = [slice(start, start + NOISE_CHUNK) for start in range(0, source.size, NOISE_CHUNK)]
    for piece in pieces:
        np.add(source[piece], rng.normal(0.0, sigma, magnitude[piece].size), out=magnitude[piece])
    for piece in pieces:
        real = magnitude[piece]
        imaginary = rng.normal(0.0, sigma, real.size)
        np.sqrt(real**2 + imaginary**2, out=real)
    return magnitude.reshape(np.shape(signals))


def simulate_voxels(scheme, pools, bvals, gradients, n_voxels, rng, max_fibres=3):
    """Clean attenuations S/S0 (N, n_dw) of paper 2's random voxels on a gradient table (b s/mm^2, RAS
    unit vectors; the columns are the diffusion-weighted volumes, b > 0, in table order).

    Each voxel: 1 to `max_fibres` single-fibre WM compartments with uniformly random directions and
    volume shares (a flat Dirichlet), and WM, GM and CSF contributions each drawn from U(0, 1) and
    normalised; eigenvalues per the scheme (eigenvalues_for); b=0 contrast S0_CONTRAST.
    """
    bvals = np.asarray(bvals, dtype=np.float64)
    fibres = rng.integers(1, max_fibres + 1, n_voxels)
    shares = rng.dirichlet(np.ones(max_fibres), n_voxels) * (np.arange(max_fibres)[None, :] < fibres[:, None])
    shares /= shares.sum(axis=1, keepdims=True)
    directions = rng.normal(size=(n_voxels, max_fibres, 3))
    directions /= np.linalg.norm(directions, axis=2, keepdims=True)
    fractions = rng.uniform(0.0, 1.0, (n_voxels, 3))
    fractions /= fractions.sum(axis=1, keepdims=True)

    def choice():
        return rng.integers(0, 2**62, n_voxels).astype(np.uint64)

    eigenvalues = {"wm": np.stack([eigenvalues_for(pools, scheme, "wm", choice()) for _ in range(max_fibres)], 1),
                   "gm": eigenvalues_for(pools, scheme, "gm", choice()),
                   "deep_gm": eigenvalues_for(pools, scheme, "deep_gm", choice()),
                   "csf": eigenvalues_for(pools, scheme, "csf", choice())}
    tissue = build_voxel_tissue(fractions, directions, shares, np.zeros(n_voxels, bool), eigenvalues)
    signals = simulate_signals(tissue, bvals, gradients, scheme, rng)
    return signals[:, bvals > B0_THRESHOLD] / tissue.s0[:, None]
