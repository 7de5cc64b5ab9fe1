"""Gradient tables of the acquisitions DTISynth simulates and synthesizes (b in s/mm^2).

Frames: every table is returned as unit vectors in the RAS world (scanner) frame, like every DWI in
memory. Siemens defines its 6-direction DTI scheme in the device frame, which for a head-first
supine patient is DICOM's LPS patient frame: SIEMENS_6_LPS holds it as published; the RAS table
negates x and y (up to sign, the set is unchanged but the order of directions 1-2 swaps meaning).
"""

import numpy as np

from .frames import LPS_TO_RAS

SIEMENS_6_LPS = np.array([[1, 0, 1], [-1, 0, 1], [0, 1, 1], [0, 1, -1], [1, 1, 0], [-1, 1, 0]],
                         dtype=np.float64) / np.sqrt(2.0)
SIEMENS_6_RAS = SIEMENS_6_LPS @ LPS_TO_RAS.T
AXES_3_RAS = np.eye(3)  # conventional clinical DWI: x, y, z of the scanner
DEFAULT_B = 1000.0


def with_b0(directions, b=DEFAULT_B):
    """(bvals (n+1,), gradients (n+1, 3)) with one b=0 volume first, then `directions` at `b`."""
    directions = np.asarray(directions, dtype=np.float64)
    return np.r_[0.0, np.full(len(directions), float(b))], np.vstack([np.zeros((1, 3)), directions])


def dti_6(b=DEFAULT_B):
    """b=0 + Siemens' 6 directions (RAS)."""
    return with_b0(SIEMENS_6_RAS, b)


def dwi_3(b=DEFAULT_B):
    """b=0 + the scanner's x, y, z axes (RAS)."""
    return with_b0(AXES_3_RAS, b)


# The three measured directions of a DWI must determine the tensor's three measured components well:
# the condition number of their (3, 3) matrix of unit vectors (1 for orthogonal directions; 2.2 with x
# tilted 30 degrees toward y and z 30 degrees toward x; 3.7 at 45; nearly coplanar directions 100 and
# more). Above this, noise in one ADC is amplified more than three times in the tensor's diagonal.
MAX_DIRECTION_CONDITION = 3.0


def direction_condition(directions):
    """The condition number (2-norm) of three unit direction vectors (3, 3), rows; inf when coplanar."""
    singular = np.linalg.svd(np.asarray(directions, dtype=np.float64), compute_uv=False)
    return float(singular[0] / singular[-1]) if singular[-1] > 0 else float("inf")


def nearest_volumes(dwi, directions):
    """Distinct diffusion-weighted volumes of a DWI matched one-to-one to nominal directions (RAS, rows),
    minimising the sum of sign-free angles (min_cost_assignment).

    Returns (volume indices (m,), angles in degrees (m,)); fewer than m weighted volumes is an InputError.
    """
    from .errors import InputError

    directions = np.asarray(directions, dtype=np.float64)
    weighted = np.flatnonzero(~dwi.is_b0)
    if weighted.size < len(directions):
        raise InputError(dwi.source, f"{len(directions)} distinct diffusion-weighted volumes to match "
                         f"{len(directions)} nominal directions", f"{weighted.size}")
    cosines = np.abs(dwi.gradients[weighted] @ directions.T)
    angles = np.degrees(np.arccos(np.clip(cosines, 0.0, 1.0)))
    rows = min_cost_assignment(angles)
    return weighted[rows], angles[rows, np.arange(len(directions))]


def min_cost_assignment(cost):
    """Distinct rows (m,) of a cost matrix (n, m), n >= m, one per column, with the least total cost;
    among equal totals the earliest rows. Exact, by dynamic programming over the rows and the subsets
    of columns already taken (n 2^m m steps: a few milliseconds for the m <= 6 directions matched here).
    scipy's linear_sum_assignment gives the same optimum, but importing scipy.optimize cost a synthesis
    0.7-1 s."""
    cost = np.asarray(cost, dtype=np.float64)
    n, m = cost.shape
    if m > 12:
        raise ValueError(f"min_cost_assignment is for a few columns, not {m}")
    subsets = np.arange(1 << m)
    best = np.full(1 << m, np.inf)
    best[0] = 0.0
    taken_by = np.full((n, 1 << m), -1)  # column row r took to reach a subset, -1: r took none
    for r in range(n):
        previous = best.copy()
        for column in range(m):
            bit = 1 << column
            without = subsets[(subsets & bit) == 0]
            candidate = previous[without] + cost[r, column]
            better = candidate < best[without | bit]
            best[(without | bit)[better]] = candidate[better]
            taken_by[r, (without | bit)[better]] = column
    rows = np.empty(m, dtype=np.int64)
    subset = (1 << m) - 1
    for r in range(n - 1, -1, -1):
        column = taken_by[r, subset]
        if column >= 0:
            rows[column] = r
            subset &= ~(1 << column)
    return rows


def check_three_directions(source, directions):
    """Refuse (InputError naming `source`) three measured directions (3, 3) whose condition number exceeds
    MAX_DIRECTION_CONDITION; returns the condition number."""
    from .errors import InputError

    condition = direction_condition(directions)
    if not condition <= MAX_DIRECTION_CONDITION:
        raise InputError(source, f"three well-conditioned diffusion directions (condition number <= "
                         f"{MAX_DIRECTION_CONDITION:g}; orthogonal: 1)",
                         f"{condition:.3g} for vectors {np.round(directions, 3).tolist()}")
    return condition


def nearest_orthonormal(directions):
    """The orthonormal frame (rows, RAS) nearest three direction rows (3, 3): their polar factor."""
    u, _, vt = np.linalg.svd(np.asarray(directions, dtype=np.float64))
    return u @ vt


def frame_on_image_axes(directions, affine):
    """(F, order, cosines): F = nearest_orthonormal(directions) (rows, RAS), order (3,) the row of F
    matched to image axis k of `affine` (voxel -> RAS; the assignment with the largest total |cosine|),
    cosines (3, 3) [image axis k, row m of F], signed."""
    import itertools

    frame = nearest_orthonormal(directions)
    axes = np.asarray(affine, dtype=np.float64)[:3, :3]
    cosines = (axes / np.linalg.norm(axes, axis=0)).T @ frame.T
    order = max(itertools.permutations(range(3)), key=lambda p: sum(abs(cosines[k, p[k]]) for k in range(3)))
    return frame, np.array(order), cosines


def triple_angles(directions, affine):
    """(non-orthogonality, tilt) in degrees of three measured directions (3, 3; rows, RAS unit vectors) on
    an image grid (`affine`, voxel -> RAS): the largest departure from 90 degrees of the angle between two
    of the directions' lines, and the largest angle between the orthonormal frame nearest them and the
    image axis each is matched to (frame_on_image_axes). The straight x, y, z on an axial slab: (0, 0); a
    slab tilted 20 degrees for AC-PC alignment: (0, 20)."""
    directions = np.asarray(directions, dtype=np.float64)
    directions = directions / np.linalg.norm(directions, axis=1, keepdims=True)
    non_orthogonality = max(np.degrees(np.arcsin(min(abs(float(directions[i] @ directions[j])), 1.0)))
                            for i, j in ((0, 1), (0, 2), (1, 2)))
    _, order, cosines = frame_on_image_axes(directions, affine)
    tilt = max(np.degrees(np.arccos(min(abs(cosines[k, order[k]]), 1.0))) for k in range(3))
    return float(non_orthogonality), float(tilt)
