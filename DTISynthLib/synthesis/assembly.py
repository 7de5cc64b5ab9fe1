"""Physics-consistent assembly: what the x, y, z DWI measured is kept, only the rest is generated.

The tensor model ln(S / S0) = -b g^T D g makes the measured directions g_i (i = 1..3, near the
scanner's x, y, z) fix three linear combinations of the tensor D exactly: for axis directions its
diagonal Dxx, Dyy, Dzz, so MD. A generator's outputs for the DTI's directions g_k (log-attenuations
L_k = ln(S_k / S0)) are replaced by those of the tensor that (1) reproduces the measured
log-attenuations a_i exactly and (2) fits the generated L_k best (least squares) among all such
tensors: with C the rows -b_i g_i^T . g_i of the measured directions, N its null space and B the
DTI's rows, D = pinv(C) a + N pinv(B N) (L - B pinv(C) a): two fixed matrices for every voxel.
For Siemens' six directions (+-1,0,1)/sqrt2, (0,1,+-1)/sqrt2, (+-1,1,0)/sqrt2 and x, y, z input this
keeps each pair's generated difference (-2b D_xz for the first pair) and replaces its sum by the
measured one (ln A_x + ln A_z), so any generated output gives a DTI whose MD is the input's.

Size first: the generated log-attenuations are scaled so that the generators' own tensor (the fit of
their outputs) has the measured mean ADC along the measured directions (its shape kept, the measured
size). Without it, generators whose diagonal is off (ds000114 at 4 mm: 1.84e-3 against the measured
0.87-0.90e-3 mm^2/s) have the whole disagreement put into the off-diagonal terms oblique measured
directions couple to: its nearest triple (z 35 degrees off its axis) got median FA 0.67 over the brain
from generators whose own tensors had FA 0.09. Generators of the right size (the tensor-unet set's
diagonal is a bounded correction of the measured one) are left nearly as they are.

Safeguard: a tensor that is not positive semi-definite is moved toward the positive definite tensor
that reproduces the measured ADCs (measured_anchor) until it is: for orthogonal measured directions its
off-diagonal terms are scaled down together, the diagonal (so MD) untouched; for others the measured
constraints still hold exactly. Without it a generator that outputs nothing for one direction of a pair would make its partner brighter than
b=0, and three pairs each within |D_ij| <= sqrt(D_ii D_jj) can still give a negative eigenvalue. A
measured diagonal term that noise made negative (signal above its b=0, at the brain's edge) is kept.

Frames: gradients are RAS unit vectors; b in s/mm^2; signals and b=0 volumes on one grid.
"""

import numpy as np

from ..core.tensor_layout import matrix_to_tensor6, shrink_off_diagonals, shrink_toward, smallest_eigenvalue
from ..fit.tensor_fit import assembly_matrices, design_matrix, in_chunks, predict_signals
from ..generators.registry import ATTENUATION_FLOOR

ASSEMBLIES = ("physics", "network")
SIZE_RANGE = 4.0  # generated_size_scaled's largest factor either way


def least_anisotropic_matrix(measured_gradients):
    """(6, 3) K: the tensor K @ ADC (mm^2/s, RAS) with the least deviatoric norm |D - MD I|_F among those
    reproducing ADCs (3,) along three non-coplanar measured directions (3, 3) exactly, g_i^T D g_i = ADC_i
    (the KKT system of that quadratic programme; the deviatoric norm is positive definite on the
    constraints' null space because an isotropic tensor changes every ADC). Equal ADCs give ADC I; for
    the scanner's axes diag(ADC)."""
    constraint = design_matrix(np.ones(3), np.asarray(measured_gradients, dtype=np.float64))[:, :6] * -1.0
    deviatoric = np.zeros((6, 6))
    deviatoric[:3, :3] = np.eye(3) - 1.0 / 3.0
    deviatoric[3:, 3:] = 2.0 * np.eye(3)
    kkt = np.block([[2.0 * deviatoric, constraint.T], [constraint, np.zeros((3, 3))]])
    return np.linalg.solve(kkt, np.vstack([np.zeros((6, 3)), np.eye(3)]))[:6]


def measured_anchor(adc, measured_gradients):
    """Positive definite tensors (N, 6) [mm^2/s, RAS] that reproduce positive ADCs (N, 3) along three
    non-coplanar measured directions (3, 3) exactly: the least anisotropic one (least_anisotropic_matrix)
    where it is positive definite, else C diag(ADC) C^T with C = G^-1 (columns c_k, g_i . c_k = delta_ik,
    so g_i^T A g_i = ADC_i; always positive definite). Why the least anisotropic: the safeguard moves a
    tensor toward the anchor, and C diag(ADC) C^T of a skewed triple is itself anisotropic (FA 0.26 /
    0.43 / 0.59 / 0.73 for z skewed 15 / 25 / 35 / 45 degrees and equal ADCs), anisotropy no tissue gave.
    For the scanner's axes both are diag(ADC)."""
    gradients = np.asarray(measured_gradients, dtype=np.float64)
    adc = np.asarray(adc, dtype=np.float64)
    least = adc @ least_anisotropic_matrix(gradients).T
    inverse = np.linalg.inv(gradients)
    positive = smallest_eigenvalue(least) > 1e-3 * adc.min(1)
    least[~positive] = matrix_to_tensor6(np.einsum("ik,nk,jk->nij", inverse, adc[~positive], inverse))
    return least


def generated_size_scaled(log_generated, adc, measured_gradients, bvals, gradients):
    """Generated log-attenuations (N, n) times s = mean measured ADC / mean ADC of the generators' own
    tensor along the measured directions (N, 3 in mm^2/s; g RAS unit vectors): its shape, the measured
    size (module docstring)), within 1/SIZE_RANGE to SIZE_RANGE (a generated tensor of nearly no size has
    no shape to keep); s = 1 where either mean is not positive."""
    own = log_generated @ np.linalg.pinv(design_matrix(bvals, gradients)[:, :6]).T  # (N, 6) mm^2/s
    own_adc = -own @ design_matrix(np.ones(3), measured_gradients)[:, :6].T  # g^T D g along the measured g
    measured, generated = adc.mean(1), own_adc.mean(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where((measured > 0) & (generated > 0), np.clip(measured / generated, 1 / SIZE_RANGE, SIZE_RANGE),
                         1.0)
    return log_generated * scale[:, None]


def assembled_tensors(log_generated, log_measured, measured_bvals, measured_gradients, bvals, gradients):
    """Tensors (N, 6) [mm^2/s, RAS] from generated (N, n) and measured (N, 3) log-attenuations: the generated
    ones scaled to the measured size (generated_size_scaled), the projection (module docstring), then, where it is not positive semi-definite, moved toward measured_anchor just
    enough to be (core.tensor_layout.shrink_toward), so g_i^T D g_i = ADC_i holds exactly for any three
    measured directions (for the scanner's axes: the off-diagonal terms scaled down together, the diagonal
    kept). Voxels with an ADC <= 0 (noise: a signal above its b=0) have their off-diagonal terms scaled
    down instead (core.tensor_layout.shrink_off_diagonals)."""
    from_generated, from_measured = assembly_matrices(measured_bvals, measured_gradients, bvals, gradients)
    adc = -log_measured / np.asarray(measured_bvals, dtype=np.float64)
    projected = generated_size_scaled(log_generated, adc, measured_gradients, bvals, gradients) @ from_generated.T \
        + log_measured @ from_measured.T
    anchored = (adc > 0).all(1)
    out = np.empty_like(projected)
    out[~anchored] = shrink_off_diagonals(projected[~anchored])
    out[anchored] = shrink_toward(projected[anchored], measured_anchor(adc[anchored], measured_gradients))
    return out


def physics_consistent(generated, reference_b0, measured, measured_b0, measured_bvals, measured_gradients, bvals,
                       gradients, inside):
    """Assembled signals (x, y, z, n) of the DTI's directions.

    generated: (x, y, z, n) generated signals, relative to `reference_b0` (x, y, z); measured:
    (x, y, z, 3) the DWI's diffusion-weighted volumes on the same grid, relative to `measured_b0`;
    measured_bvals (3,), measured_gradients (3, 3), bvals (n,), gradients (n, 3): s/mm^2 and RAS unit
    vectors; inside: voxels to assemble, where both b=0 volumes are positive (others keep the
    generated signal).
    """
    out = np.array(generated, dtype=np.float32, copy=True)
    index = np.flatnonzero(inside)
    if index.size == 0:
        return out
    rows_out, rows_generated = out.reshape(-1, out.shape[-1]), generated.reshape(-1, generated.shape[-1])
    rows_measured, s0_all, b0_all = measured.reshape(-1, 3), reference_b0.reshape(-1), measured_b0.reshape(-1)

    def assemble(rows):  # voxel by voxel, so in chunks (fit.tensor_fit.in_chunks: small temporaries, every core)
        s0 = s0_all[rows].astype(np.float64)[:, None]
        log_generated = np.log(np.maximum(rows_generated[rows] / s0, ATTENUATION_FLOOR))
        log_measured = np.log(np.maximum(rows_measured[rows].astype(np.float64) / b0_all[rows, None],
                                         ATTENUATION_FLOOR))
        tensor = assembled_tensors(log_generated, log_measured, measured_bvals, measured_gradients, bvals, gradients)
        rows_out[rows] = predict_signals(tensor, s0[:, 0], bvals, gradients).astype(np.float32)

    in_chunks(index, assemble)
    return out
