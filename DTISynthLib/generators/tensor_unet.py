"""Kind "tensor-unet": one 2.5D U-Net for every DTI direction. From the three ADCs and the b=0 of a
slice and its two neighbours it predicts the tensor's off-diagonal terms (the part the x, y, z DWI does
not measure) and a bounded denoising correction of its diagonal; the DTI's directions are computed
from that tensor, S_k = S0 exp(-b g_k^T D g_k), for the manifest's gradient table (any table).

Frames
- F: the orthonormal frame nearest the three measured directions (rows, RAS; the polar factor of
  their matrix, the identity for exact scanner axes). In F the tensor's diagonal is measured,
  D_F,ii = ADC_i = -ln(S_i / S0) / b (exactly for orthogonal directions; up to 30 degrees from
  orthogonal the ADCs of F's axes are solved from the three measured ones, first order).
- W, the working frame: F's rows reordered and signed to follow the model grid's image axes
  (column axis, row axis, slice axis). The network always sees the tensor in the frame of the image it
  looks at, so a grid stored with flipped or transposed in-plane axes is the same problem to it;
  D (RAS) = W^T D_W W. The slices are axial: a stack in another plane is reordered to axial slices
  first (core.model_grid.axial_slices), as anatomy looks different in other planes.

Network units and bounds: tensors in units of ADC_SCALE (1e-3 mm^2/s). Output heads (manifest
architecture.heads; all tanh):
- "prolate-and-sign-patterns" (SPLIT, since 2026-12-05), 8 channels: rho, the diagonal
  D_ii = max(ADC_i + DIAGONAL_RANGE t_i, 0) (the measured ADC corrected by at most DIAGONAL_RANGE), and
  LOGIT_RANGE-scaled logits of the 4 sign patterns of (D_xy, D_xz, D_yz) a prolate tensor can have
  (PATTERNS: their product is +1). The tensor is the cylinder with that diagonal and radial diffusivity
  l_perp = rho min_i D_ii, rho = 1 - RHO_RANGE (t + 1) / 2: D = l_perp I + (D_ii - l_perp) v v^T gives
  |D_ij| = sqrt((D_ii - l_perp)(D_jj - l_perp)) (positive semi-definite by construction), with the most
  probable pattern's signs. Why: FA depends on the magnitudes only, which the diagonal and one number
  per voxel fix for a single fibre (on the shared real scans, the true radial diffusivity rebuilds FA
  from the diagonal to 0.045-0.06, a constant rho = 0.96 to 0.10-0.11 unbiased), while a regression of
  signed terms whose sign the data cannot decide pulls them to zero; the general magnitudes of an
  earlier draft came out at a fifth of the true off-diagonal energy on a held-out real scan (FA bias
  -0.12). v1_confidence: the probability (softmax at the package's calibrated sign_temperature) of the
  patterns whose V1 lies within CONFIDENCE_DEGREES of the shown one.
- "signed-correlations" (SIGNED, packages before): r_xy, r_xz, r_yz with D_ij = MARGIN r_ij sqrt(D_ii D_jj).
Tensors that are still not positive semi-definite have their off-diagonal terms scaled down together
(core.tensor_layout.shrink_off_diagonals), the diagonal kept.

Inputs (INPUT_CHANNELS = 21, slice order below, centre, above; edge slices repeat themselves): the
nine ADCs of W's axes (channel 3 s + k: slice s, axis k; units, clipped to [0, ADC_MAX]), then the
three b=0 images divided by the brain's median b=0 (clipped to [0, B0_MAX]), then DIRECTION_CHANNELS
constant channels: the measured directions in the image's own frame (direction_channels; the identity
for x, y, z measured on a straight slab). ADCs do not depend on b to first order and the first two
channel groups are free of the scanner's intensity scale. Why the directions: the signs the network
guesses come from anatomy, which lies in the image frame, while the tensor it predicts is in W; a slab
tilted 45 degrees to the gradients, or a skewed nearest triple, is another problem than a straight one,
and the network is told which (packages before 2026-12-07: 12 channels, no directions; they still run).

Training: training/tensor_unet.py.
"""

import itertools

import numpy as np

from ..core.gradient_schemes import frame_on_image_axes, nearest_orthonormal
from ..core.tensor_layout import (
    matrix_to_tensor6,
    shrink_off_diagonals,
    tensor6_to_matrix,
)
from ..fit.tensor_fit import in_chunks
from .intensity import brain_floor
from .registry import GeneratorKind

NAME = "tensor-unet"
NETWORK = "tensor"
MARGIN = 0.95
ADC_SCALE = 1e-3  # mm^2/s per network unit
ADC_MAX = 4.0  # network units: above free water
B0_MAX = 4.0  # b=0 / brain median
DIAGONAL_RANGE = 1.0  # network units: the most a measured ADC may be corrected
DIRECTION_CHANNELS = 9
INPUT_CHANNELS = 12 + DIRECTION_CHANNELS
B_TRAINING = (500.0, 3000.0)  # s/mm^2: the inputs' b range the networks learned
_PAIRS = ((0, 1), (0, 2), (1, 2))  # r_xy, r_xz, r_yz; tensor6 order Dxx, Dyy, Dzz, Dxy, Dxz, Dyz
# Output heads (manifest architecture.heads; module docstring). "signed-correlations": packages written
# before 2026-12-05, 6 channels (r_ij signed, diagonal). "prolate-and-sign-patterns": 8 channels (rho,
# the diagonal, the logits of the 4 sign patterns): FA needs only the magnitudes; the signs are a guess
# with a probability, which the network states.
SIGNED, SPLIT = "signed-correlations", "prolate-and-sign-patterns"
HEADS = {SIGNED: 6, SPLIT: 8}
# Signs of (D_xy, D_xz, D_yz) of a prolate tensor D_ij = Delta v_i v_j: their product is +1. Taking v_x >= 0,
# the four are V1 = (|v_x|, +-|v_y|, +-|v_z|).
PATTERNS = np.array([s for s in itertools.product((1.0, -1.0), repeat=3) if np.prod(s) > 0])  # (4, 3)
RHO_RANGE = 0.7  # rho = l_perp / min_i D_ii in [1 - RHO_RANGE, 1]
LOGIT_RANGE = 10.0  # pattern logits are LOGIT_RANGE * tanh(output)
CONFIDENCE_DEGREES = 20.0  # v1_confidence: probability that V1 lies within this angle of the one shown


def working_frame(gradients, affine):
    """(W (3, 3) rows, order (3,)): the measured frame's rows F[order[k]], signed, along image axis k
    of `affine` (core.gradient_schemes.frame_on_image_axes: the assignment of rows to axes with the
    largest total |cosine|)."""
    frame, order, cosines = frame_on_image_axes(gradients, affine)
    signs = np.array([1.0 if cosines[k, order[k]] >= 0 else -1.0 for k in range(3)])
    return frame[list(order)] * signs[:, None], order


def image_frame(affine):
    """The orthonormal frame (rows, RAS) nearest the image's voxel axes (column, row, slice) of `affine`."""
    axes = np.asarray(affine, dtype=np.float64)[:3, :3]
    return nearest_orthonormal((axes / np.linalg.norm(axes, axis=0)).T)


def direction_channels(gradients, affine):
    """(3, 3) the measured directions (rows of `gradients`, RAS unit vectors) in W's order and signs,
    in the image frame's coordinates (image_frame): row k is the direction whose ADC the network reads
    as W's axis k, column j its component along image axis j. The identity for the scanner's x, y, z on a
    straight axial slab; a rotation for a tilted one; not orthogonal for a skewed triple."""
    gradients = np.asarray(gradients, dtype=np.float64)
    working, order = working_frame(gradients, affine)
    ordered = gradients[order]
    signs = np.where((ordered * working).sum(1) >= 0, 1.0, -1.0)
    return (ordered * signs[:, None]) @ image_frame(affine).T


def frame_adcs(grid_signals):
    """ADCs (x, y, z, 3) in mm^2/s of the measured frame F's axes (module docstring)."""
    measured = np.asarray(grid_signals.gradients, dtype=np.float64)
    frame = nearest_orthonormal(measured)
    # ADC_i = sum_j (F m_i)_j^2 D_F,jj for a tensor diagonal in F: solved for the frame's diagonal
    return grid_signals.adcs() @ np.linalg.inv(np.square(measured @ frame.T)).T


def b0_units(b0):
    """b=0 (x, y, z) divided by its brain median (voxels above intensity.brain_floor), in [0, B0_MAX]."""
    b0 = np.asarray(b0, dtype=np.float64)
    brain = b0[b0 > brain_floor(b0)]
    median = float(np.median(brain)) if brain.size else 1.0
    return np.clip(b0 / median, 0.0, B0_MAX)


def slab_inputs(adc, b0, slices, directions=None):
    """The network's inputs (N, 12 [+ 9], H, W) at `slices` (N,), in the module docstring's channel order:
    the ADCs (z, 3, H, W) of each slice with the one below and the one above (edges repeat themselves),
    the b=0 (z, H, W) likewise, then the direction channels (9,) when given. Filled in place from
    C-ordered arrays: slab stacks of the whole volume and their copies took a full-size synthesis 1.3 s,
    more than the network."""
    n, height, width = len(slices), adc.shape[2], adc.shape[3]
    inputs = np.empty((n, 12 + (0 if directions is None else len(directions)), height, width), np.float32)
    for k, offset in enumerate((-1, 0, 1)):  # below, centre, above
        rows = np.clip(np.asarray(slices) + offset, 0, len(adc) - 1)
        inputs[:, 3 * k:3 * k + 3] = adc[rows]
        inputs[:, 9 + k] = b0[rows]
    if directions is not None:
        inputs[:, 12:] = np.asarray(directions, np.float32)[None, :, None, None]
    return inputs


def heads_of(manifest):
    """The output heads a package's network has (SIGNED for packages that name none)."""
    return manifest.architecture.get("heads", SIGNED)


def split_outputs(output, adc):
    """(diagonal (B, 3, H, W), excess D_ii - l_perp = Delta v_i^2 (B, 3, H, W), pattern logits (B, 4, H, W))
    in units of a SPLIT network's outputs (tanh) and the input's centre ADCs: the prolate tensor of the
    module docstring. Torch."""
    diagonal = (adc + DIAGONAL_RANGE * output[:, 1:4]).clamp(min=0.0)
    rho = 1.0 - RHO_RANGE * 0.5 * (output[:, 0:1] + 1.0)
    excess = (diagonal - rho * diagonal.min(1, keepdim=True).values).clamp(min=0.0)
    return diagonal, excess, LOGIT_RANGE * output[:, 4:8]


def prolate_magnitudes(excess):
    """|D_xy|, |D_xz|, |D_yz| = sqrt(e_i e_j) (B, 3, ...) of the prolate tensor with excess e (B, 3, ...). Torch."""
    import torch

    return torch.stack([(excess[:, i] * excess[:, j]).clamp(min=1e-12).sqrt() for i, j in _PAIRS], 1)


def decode(output, adc, heads=SIGNED):
    """Tensors in W (B, 6, H, W; units) from network outputs (B, C, H, W; tanh) and the input's centre
    ADCs (B, 3, H, W; units): SPLIT heads take the most probable sign pattern. Torch tensors."""
    import torch

    if heads == SPLIT:
        return most_probable_tensor(*split_outputs(output, adc))
    diagonal = (adc + DIAGONAL_RANGE * output[:, 3:6]).clamp(min=0.0)
    off = [MARGIN * output[:, c] * (diagonal[:, i] * diagonal[:, j]).clamp(min=1e-12).sqrt()
           for c, (i, j) in enumerate(_PAIRS)]
    return torch.cat([diagonal, torch.stack(off, 1)], 1)


def most_probable_tensor(diagonal, excess, logits):
    """Tensors in W (B, 6, H, W; units) of split_outputs' parts with the most probable sign pattern. Torch."""
    import torch

    signs = torch.from_numpy(PATTERNS.astype(np.float32))[logits.argmax(1)].movedim(-1, 1)
    return torch.cat([diagonal, signs * prolate_magnitudes(excess)], 1)


# Signs of V1's components (v_x >= 0) for each pattern: v_y follows D_xy's sign, v_z D_xz's.
PATTERN_AXES = np.c_[np.ones(len(PATTERNS)), PATTERNS[:, 0], PATTERNS[:, 1]]


def pattern_vectors(excess):
    """V1 (N, 4, 3), unnormalised, of the prolate tensor of each pattern: PATTERN_AXES x sqrt(excess) (the
    eigenvector of l_perp I + a a^T; numpy, excess (N, 3) in units, frame W)."""
    return PATTERN_AXES[None] * np.sqrt(np.maximum(excess, 0.0))[:, None]


def v1_confidence(excess, probabilities):
    """Per voxel, the probability that the principal direction lies within CONFIDENCE_DEGREES of the
    most probable pattern's: the summed probability of the sign patterns whose V1 does (numpy; excess
    (N, 3), probabilities (N, 4); a tensor without excess has one V1 whatever the signs)."""
    # pattern p's V1 is PATTERN_AXES[p] sqrt(e) (pattern_vectors): every candidate has the length |a|^2 = sum
    # of e, and its product with the chosen c's is sum_k A_pk A_ck e_k, one small product per chosen pattern
    excess = np.maximum(excess, 0.0)
    length = excess.sum(1)[:, None]
    chosen = probabilities.argmax(1)
    products = np.empty_like(probabilities)
    for c, axes in enumerate(PATTERN_AXES):
        here = chosen == c
        products[here] = excess[here] @ (PATTERN_AXES * axes).T
    with np.errstate(divide="ignore", invalid="ignore"):
        cosine = np.where(length > 0, np.abs(products) / length, 1.0)
    return (probabilities * (cosine >= np.cos(np.radians(CONFIDENCE_DEGREES)))).sum(1)


def pattern_probabilities(logits, temperature):
    """Softmax (N, 4) of pattern logits (N, 4) at a temperature (the package's calibration)."""
    z = logits / temperature
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def build(manifest, key):
    from .networks import UNetGenerator

    g = manifest.architecture["generator"]
    return UNetGenerator(g["in_channels"], g["out_channels"], g["ngf"], g["depth"], dropout=False)


def flat_channels(array):
    """(N, C) rows of an (n, C, H, W) array, one per voxel in (n, H, W) order (slice_map's), in its dtype."""
    array = np.asarray(array)
    return np.moveaxis(array, 1, -1).reshape(-1, array.shape[1])


def slice_map(values, n, height, width):
    """(x, y, n) float32 map of per-voxel values (N,) in flat_channels' order."""
    return np.transpose(values.reshape(n, height, width), (2, 1, 0)).astype(np.float32)


def confidence_map(diagonal, excess, probabilities):
    """v1_confidence (N,) of a SPLIT network's decoded outputs (flat_channels of split_outputs) and its
    pattern probabilities (N, 4) at the package's temperature; 0 where the diagonal is 0."""
    confidence = np.zeros(len(diagonal))
    inside = diagonal.sum(1) > 0
    confidence[inside] = v1_confidence(excess[inside], probabilities[inside])
    return confidence


def assembled_md_weights(working, grid_signals, manifest):
    """(3,) u: how the physics-assembled MD (mm^2/s) moves per unit (mm^2/s) of the generated tensor's
    off-diagonal terms D_xy, D_xz, D_yz in W. The assembly keeps g_i^T D g_i = ADC_i; for the scanner's
    axes or any orthogonal triple (W is its frame) that fixes the diagonal, so MD, whatever the
    off-diagonal terms (u = 0); for a skewed triple an off-diagonal term enters a measured ADC, so each
    sign pattern gives another diagonal. The assembled MD is linear in the generated tensor
    (fit.tensor_fit.assembly_matrices): MD = w . D + const (D in RAS)."""
    from ..fit.tensor_fit import assembly_matrices, design_matrix

    _, directions = manifest.direction_vectors()
    bvals = np.full(len(directions), float(manifest.b_value))  # from_generated @ design does not depend on b
    from_generated, _ = assembly_matrices(np.full(3, float(grid_signals.b_value)), grid_signals.gradients, bvals, directions)
    trace_row = np.r_[np.ones(3), np.zeros(3)] / 3.0
    weights = trace_row @ from_generated @ design_matrix(bvals, directions)[:, :6]  # (6,) per mm^2/s of D (RAS)
    # w . D_RAS = w_matrix : (W^T D_W W) = (W w_matrix W^T) : D_W, the weights in W (off-diagonals counted twice)
    in_w = working @ tensor6_to_matrix(weights * np.r_[1.0, 1.0, 1.0, 0.5, 0.5, 0.5]) @ working.T
    return 2 * np.array([in_w[i, j] for i, j in _PAIRS])


def pattern_off_diagonals(excess):
    """Off-diagonal terms (N, 4, 3) (units, W) of each sign pattern's prolate tensor (numpy; excess (N, 3))."""
    magnitudes = np.sqrt(np.maximum(np.stack([excess[:, i] * excess[:, j] for i, j in _PAIRS], 1), 0.0))
    return PATTERNS[None] * magnitudes[:, None]


def expected_md_off_diagonals(off, excess, probabilities, weights):
    """The chosen pattern's off-diagonal terms off (N, 3) (units, W) turned so that the assembled MD is its
    expectation over the sign patterns (probabilities (N, 4)) while their energy |off| is kept: where a
    skewed triple couples the unknown signs into the diagonal (weights u, assembled_md_weights), MD is the
    probability-weighted mean of the patterns' MDs instead of the most probable one's, the measured ADCs
    are still reproduced exactly, and FA, which needs only the off-diagonal energy, is not shrunk (moving
    off along u alone toward the expected terms shrank it: FA abs error +0.008 on a z skewed 30 degrees,
    benchmarks/bench_directions.py). The component along u becomes the expected one's, the rest is
    rescaled to keep |off| (the least turn), or left at 0 where the expected component exceeds |off|.
    Unchanged for orthogonal triples (u = 0)."""
    norm = float(np.sqrt(weights @ weights))
    if norm < 1e-6:
        return off
    unit = weights / norm
    expected = ((probabilities[..., None] * pattern_off_diagonals(excess)).sum(1)) @ unit  # (N,)
    along = off @ unit
    rest = off - along[:, None] * unit
    energy = (off * off).sum(1)
    rest_norm = np.sqrt((rest * rest).sum(1))
    kept = np.sqrt(np.maximum(energy - expected**2, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(rest_norm > 1e-12, kept / rest_norm, 0.0)
    return expected[:, None] * unit + scale[:, None] * rest


def md_uncertainty_map(diagonal, excess, probabilities, weights):
    """md_uncertainty (N,): the SD of the physics-assembled MD over the sign patterns (weighted by their
    probabilities (N, 4)) relative to the MD, from a SPLIT network's decoded outputs (flat_channels of
    split_outputs); weights: assembled_md_weights (0 for orthogonal triples: 0 here). 0 where the
    diagonal is 0."""
    contribution = (pattern_off_diagonals(excess) * weights).sum(-1) * ADC_SCALE  # (N, 4) mm^2/s
    mean = (probabilities * contribution).sum(1, keepdims=True)
    spread = np.sqrt((probabilities * (contribution - mean) ** 2).sum(1))
    md = diagonal.mean(1) * ADC_SCALE
    relative = np.zeros(len(md))
    inside = md > 0
    relative[inside] = spread[inside] / md[inside]
    return relative


def prepare_inference(network, precision):
    return network.to_bf16_inference() if precision == "bf16" else network


def synthesize(predict, grid_signals, manifest, reporter):
    import torch

    slices = grid_signals.slices
    reporter.progress("synthesize", 0.0, "one tensor network, all directions")
    working, order = working_frame(grid_signals.gradients, grid_signals.affine)
    adc = frame_adcs(grid_signals)[..., order]  # W's axes
    # (z, 3, y, x) and (z, y, x), C-ordered: the slabs gather whole slices
    units = np.ascontiguousarray(np.clip(np.transpose(adc, (2, 3, 1, 0)) / ADC_SCALE, 0.0, ADC_MAX), np.float32)
    b0 = np.ascontiguousarray(np.transpose(b0_units(grid_signals.signals[..., 0]), (2, 1, 0)), np.float32)
    measured = None  # the direction channels, for packages that take them
    if manifest.architecture.get("generator", {}).get("in_channels", INPUT_CHANNELS) == INPUT_CHANNELS:
        measured = direction_channels(grid_signals.gradients, grid_signals.affine).reshape(DIRECTION_CHANNELS)
    inputs = slab_inputs(units, b0, slices, measured)
    output = np.asarray(predict(NETWORK, inputs, slices), np.float32)
    heads = heads_of(manifest)
    shape = (output.shape[0], output.shape[2], output.shape[3])  # (n, H, W): flat_channels' order
    with torch.no_grad():
        if heads == SPLIT:  # the tensor, then its parts and pattern logits for the MD step and both maps
            parts = split_outputs(torch.from_numpy(output), torch.from_numpy(units[slices]))
            decoded = [most_probable_tensor(*parts), *parts]
        else:
            decoded = [decode(torch.from_numpy(output), torch.from_numpy(units[slices]), heads)]
    columns = [flat_channels(t.numpy()) for t in decoded]  # tensor in W, then diagonal, excess, logits
    weights = assembled_md_weights(working, grid_signals, manifest)
    temperature = manifest.architecture.get("sign_temperature", 1.0)
    tensor = np.zeros((np.prod(shape), 6))
    confidence, uncertainty = np.zeros(len(tensor)), np.zeros(len(tensor))

    skewed = float(weights @ weights) >= 1e-12  # a skewed triple: the expected MD step
    coupled = bool(np.any(weights))  # the signs move the assembled MD at all

    def voxels(rows):  # each voxel's arithmetic is its own: in chunks (fit.tensor_fit.in_chunks), on every core
        tensor_w = columns[0][rows].astype(np.float64)
        if heads == SPLIT:
            diagonal, excess, logits = (c[rows].astype(np.float64) for c in columns[1:])
            probabilities = pattern_probabilities(logits, temperature)
            if skewed:
                off = expected_md_off_diagonals(tensor_w[:, 3:], excess, probabilities, weights)
                tensor_w[:, 3:] = off.astype(np.float32)  # the decoded tensors' precision
            confidence[rows] = confidence_map(diagonal, excess, probabilities)
            if coupled:  # else every voxel's is 0 (x, y, z and straight triples): left as allocated
                uncertainty[rows] = md_uncertainty_map(diagonal, excess, probabilities, weights)
        rotated = working.T @ tensor6_to_matrix(tensor_w * ADC_SCALE) @ working
        tensor[rows] = shrink_off_diagonals(matrix_to_tensor6(rotated))  # RAS

    in_chunks(np.arange(len(tensor)), voxels)
    tensor = np.transpose(tensor.reshape(*shape, 6), (2, 1, 0, 3))  # (x, y, n, 6)
    _, directions = manifest.direction_vectors()
    synthetic = grid_signals.signals_of(tensor, directions, manifest.b_value)
    maps = {}
    if heads == SPLIT:
        for name, values in (("v1_confidence", confidence), ("md_uncertainty", uncertainty)):
            maps[name] = np.zeros(grid_signals.reference.shape, np.float32)
            maps[name][:, :, slices] = slice_map(values, *shape)
    reporter.progress("synthesize", 1.0, f"{len(directions)} directions")
    return synthetic, maps


KIND = GeneratorKind(NAME, build, synthesize, "DTISynthLib.training.tensor_unet", prepare_inference)
