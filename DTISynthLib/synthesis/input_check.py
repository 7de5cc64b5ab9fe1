"""A model package's out-of-distribution check (realism.input_check) applied to a synthesis input.
The check is fitted to a package's training inputs by service.input_check (`train`, `models
--fit-input-check`); synthesize_dwi applies it to the DWI as the generators see it."""

from ..generators.package import verified_weights
from ..realism.input_check import load_input_check


def package_input_check(package, manifest):
    """The package's InputCheck (its weights file verified against the manifest and its shapes checked),
    or None when it has none (e.g. the diagonal baseline, which has no training inputs)."""
    entry = manifest.input_check
    if entry is None:
        return None
    return load_input_check(verified_weights(package, entry), entry["reference_error"], entry["warning_ratio"])


def input_check_report(check, features, source):
    """({error_ratio, warning_ratio, warning}, the warning's text or None) of a synthesis input's
    features (realism.input_check.input_features) against a package's InputCheck."""
    ratio = check.ratio(features)
    report = {"error_ratio": round(ratio, 3), "warning_ratio": check.warning_ratio,
              "warning": not ratio <= check.warning_ratio}
    if not report["warning"]:
        return report, None
    return report, (f"{source} is unlike the models' training inputs: its reconstruction error by their input-check "
                    f"autoencoder is {report['error_ratio']:.2f} x that of their validation subjects (warning above "
                    f"{check.warning_ratio:g}); check that it is a brain DWI like those the models were trained on, "
                    "and judge the synthetic DTI with care")
