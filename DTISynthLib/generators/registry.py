"""The registry of generator kinds: what a model package's `architecture.kind` names.

A kind is one module defining `KIND = GeneratorKind(...)`, listed in KINDS by one line, and its training
step in training/ (GeneratorKind.trainer). Synthesis, training and the loader ask the registry for a
package's kind and use only the GeneratorKind's functions: none of them builds a network or reaches
into one. Kind modules are imported on first use,
so reading or verifying a manifest stays torch-free.
"""

import importlib
from dataclasses import dataclass
from typing import Callable

import numpy as np


DEFAULT_KIND = "pix2pix-per-direction"  # a manifest without architecture.kind (written before kinds had names)
ATTENUATION_FLOOR = 1e-6  # attenuations below this (signals <= 0) are raised to it before the log
KINDS = {  # kind name -> the module defining KIND
    "pix2pix-per-direction": "DTISynthLib.generators.pix2pix",
    "diagonal": "DTISynthLib.generators.diagonal",
    "tensor-unet": "DTISynthLib.generators.tensor_unet",
}


@dataclass
class GridSignals:
    """What a kind synthesizes from, on the model grid (x, y, z), after registration and resampling.

    signals: float32 (x, y, z, 4): the DWI's b=0, then its x, y, z diffusion-weighted volumes (RAS axis
    order, whatever the file's order); reference: (x, y, z) the reference b=0 (the synthetic DTI's
    b=0); slices: indices of the axial slices that hold signal (the others stay 0); b_value: the DWI's
    b (s/mm^2); gradients: (3, 3) unit vectors of the x, y, z volumes in the reference's RAS frame
    (rows; within 30 degrees of the axes, not always orthogonal); affine: the model grid's voxel -> RAS
    (mm) matrix (4, 4).
    """

    signals: object
    reference: object
    slices: object
    b_value: float
    gradients: object
    affine: object

    def adcs(self):
        """Apparent diffusion coefficients (x, y, z, 3) in mm^2/s along the three measured directions,
        -ln(S / S0) / b, with attenuations floored at ATTENUATION_FLOOR and 0 where S0 <= 0."""
        b0 = self.signals[..., :1].astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            attenuation = np.where(b0 > 0, self.signals[..., 1:] / b0, 1.0)
        return -np.log(np.maximum(attenuation, ATTENUATION_FLOOR)) / self.b_value

    def signals_of(self, tensor6, directions, b_value):
        """float32 (x, y, z, n) signals S0_reference exp(-b g^T D g) of tensors (x, y, len(slices), 6)
        [mm^2/s, RAS] on the synthesized slices, for RAS unit vectors `directions` (n, 3) at b_value
        (s/mm^2); 0 on the other slices."""
        from ..fit.tensor_fit import design_matrix, in_chunks

        design = design_matrix(np.full(len(directions), float(b_value)), directions)[:, :6].T
        synthetic = np.zeros(self.reference.shape + (len(directions),), dtype=np.float32)

        def slice_signals(positions):  # slice by slice, into the output: no volume of float64 temporaries
            for k in positions:
                z, rows = self.slices[k], np.asarray(tensor6[:, :, k], dtype=np.float64).reshape(-1, 6)
                s0 = self.reference[:, :, z].reshape(-1, 1)
                synthetic[:, :, z] = (s0 * np.exp(rows @ design)).reshape(synthetic.shape[:2] + (len(directions),))

        in_chunks(np.arange(len(self.slices)), slice_signals, chunk=1)
        return synthetic


# What a kind writes beside the fitted maps (maps/NAME.nii.gz), described in synthesis.json's "maps" in
# fit.json's style; {angle} and {temperature} from the manifest's architecture.v1_confidence.
KIND_MAPS = {
    "v1_confidence": (
        "the network's probability (0-1, unitless) that the principal eigenvector V1 of the synthetic tensor lies "
        "within {angle:g} degrees of the true one: the summed probability of the off-diagonal sign patterns whose "
        "V1 lies within {angle:g} degrees of the pattern shown (a scalar per voxel, so no frame). The x, y, z DWI "
        "measures no off-diagonal sign: where this is low, the colour FA's hue is a guess. Calibrated on the "
        "package's validation subjects (pattern softmax temperature {temperature:g}); 0 outside the brain mask"),
    "md_uncertainty": (
        "the standard deviation of the synthetic MD over the off-diagonal sign patterns (weighted by the network's "
        "probabilities) divided by the MD (unitless; 0.05 = 5 %; a scalar per voxel, so no frame). Measured x, y, z "
        "directions fix MD whatever the signs (0 everywhere); a skewed triple measures a mix of diagonal and "
        "off-diagonal terms, so where a sign is a guess MD is too. 0 outside the brain mask"),
}


def describe_kind_maps(names, manifest):
    """{name: description} of a package's kind maps (KIND_MAPS) for synthesis.json."""
    architecture = manifest.architecture
    values = {"angle": architecture.get("v1_confidence", {}).get("angle_degrees", float("nan")),
              "temperature": architecture.get("sign_temperature", 1.0)}
    return {name: KIND_MAPS[name].format(**values) for name in names}


def _unchanged(network, precision):
    return network


@dataclass(frozen=True)
class GeneratorKind:
    """A generator kind, as the rest of DTISynth sees it.

    build(manifest, key) -> an untrained torch module for the weights file `key` (Manifest.network_files);
        called under torch's meta device, then the verified weights are loaded into it.
    synthesize(predict, grid_signals, manifest, reporter) -> (float32 (x, y, z, n) synthetic signals of
        the manifest's directions sorted by index, {name: float32 (x, y, z) map}), both on the model grid;
        the maps are what a kind knows beyond the signals (tensor-unet: "v1_confidence"), written to
        maps/ (KIND_MAPS describes each). predict(key, inputs (N, C, H, W),
        slice_indices) runs network `key` in eval mode (runner.TorchGenerators.predict).
    trainer: the module (dotted name) whose train(run: training.config.TrainingRun) writes a package of
        the kind and returns its manifest.json path; imported only to train (trainer_of), so inference
        never loads training code and generators/ stays below training/.
    prepare_inference(network, precision) -> the network to run at "fp32" or "bf16" (for example bf16
        weights with an fp32 output layer); default: as built.
    any_frame: the kind takes any three well-conditioned measured directions (it works in their own
        frame); otherwise each must lie within 30 degrees of its scanner axis (synthesis.pipeline.assign_axes).
    """

    name: str
    build: Callable
    synthesize: Callable
    trainer: str
    prepare_inference: Callable = _unchanged
    any_frame: bool = True


def kind_named(name):
    """The GeneratorKind registered as `name`."""
    if name not in KINDS:
        raise ValueError(f"generator kind must be one of {sorted(KINDS)}, not {name!r}")
    return importlib.import_module(KINDS[name]).KIND


def trainer_of(kind):
    """The training step train(run) of a GeneratorKind (its trainer module, imported now)."""
    return importlib.import_module(kind.trainer).train


def kind_of(manifest):
    """The GeneratorKind of a Manifest (its kind checked when the Manifest was made)."""
    return kind_named(manifest.kind)
