"""What a reader of a synthetic DTI's maps should know before trusting them, in plain words: the
directions the synthesis used and their angle to the scanner axes, the registration's correlation, the
input check's ratio, how much of the white matter has a known orientation, and every warning. Written
into synthesis.json ("reliability", "white_matter_confident_share") for scripts; the Slicer module
shows the lines after each synthesis and keeps them in the scene.
"""

import numpy as np

from ..core.orientation_confidence import CONFIDENT

WHITE_MATTER_FA = 0.3  # white matter, as the evaluation and the calibration count it (FA of the map shown)
MOSTLY_GUESSED = 0.5  # a guessed share of white matter above which the colour FA should be read greyed


def white_matter_confident_share(fa, v1_confidence, mask):
    """Share (0-1) of the brain's voxels with FA > WHITE_MATTER_FA whose V1 confidence is >= CONFIDENT;
    None without white matter."""
    white = np.asarray(mask, bool) & (np.asarray(fa) > WHITE_MATTER_FA)
    return float(np.mean(np.asarray(v1_confidence)[white] >= CONFIDENT)) if white.any() else None


def reliability_lines(report, confident_share=None):
    """The plain-language lines of a synthesis report (pipeline's `report`); confident_share:
    white_matter_confident_share of the synthetic maps (None: the kind writes no V1 confidence)."""
    lines = []
    angles = report.get("axis_angle_degrees")
    if angles:
        lines.append("Directions used: " + ", ".join(f"{axis} {angle:.1f}°" for axis, angle in zip("xyz", angles))
                     + " from the scanner's axes" + (" (all within 10°)" if max(angles) <= 10 else ""))
    registration = report.get("registration") or {}
    if registration.get("performed"):
        lines.append(f"Registered to the reference b=0: correlation {registration['correlation']:.3f} (the same "
                     "subject gives about 0.99; below 0.95 check it is this subject's b=0)")
    elif registration:
        lines.append("Not registered: the DWI's own b=0 is the reference")
    check = report.get("input_check")
    if isinstance(check, dict):
        verdict = "unlike" if check["warning"] else "like"
        lines.append(f"Input check: {check['error_ratio']:.2f} x the models' validation error, {verdict} their training "
                     f"inputs (warning above {check['warning_ratio']:g})")
    elif check:
        lines.append(f"Input check: {check}")
    if confident_share is not None:
        guessed = 1.0 - confident_share
        advice = ": use Hide guessed orientation (colour FA grey where it is a guess)" if guessed > MOSTLY_GUESSED else ""
        lines.append(f"Orientation is a guess in {guessed:.0%} of white matter (V1 confidence below {CONFIDENT:g}; "
                     f"FA > {WHITE_MATTER_FA:g}){advice}")
    lines += [f"Warning: {warning}" for warning in report.get("warnings", [])]
    return lines
