"""Kind "tensor-unet" (experimental, no shipped set yet): one 2.5D U-Net for every DTI direction that
predicts only what the x, y, z DWI does not measure.

Frame: F, the orthonormal frame nearest the three measured directions (rows; the polar factor of
their matrix, the identity for exact scanner axes). In F the tensor's diagonal is measured,
D_F,ii = ADC_i = -ln(S_i / S0) / b (exactly so when the directions are orthogonal; up to 30 degrees
from orthogonal the nearest frame is used and the physics assembly then restores the measured
values). The network predicts the off-diagonal terms in a bounded form,
r_ij = D_F,ij / sqrt(D_F,ii D_F,jj) = MARGIN tanh(.) in (-1, 1), so every 2 x 2 minor of D_F stays
positive definite; D (RAS) = F^T D_F F; each direction g_k of the manifest (any table, RAS) gets
S_k = S0_reference exp(-b g_k^T D g_k) at the manifest's b-value.

Inputs: the three ADCs (units of 1e-3 mm^2/s, clipped to [0, 4]) of the slice and of its two
neighbours (2.5D: 9 channels; edge slices repeat themselves). ADCs do not depend on b to first
order. Loss: L1 of r and of the six directions' attenuations, in the brain. Augmentation:
left-right and anterior-posterior flips with the tensor's sign rule (a flip of x negates D_xy and
D_xz). Training data: training.data's paired slices in relative intensity, each subject at its own
b-value; targets are the exactly determined fits of the 6-direction DTI.

Not yet: in-plane 90-degree rotations, random b and noise augmentation, the b=0 as an
input, a shipped set.
"""

from pathlib import Path

import numpy as np

from ..core.tensor_layout import matrix_to_tensor6
from ..fit.tensor_fit import predict_signals
from .package import direction_vectors
from .registry import ATTENUATION_FLOOR, GeneratorKind

NAME = "tensor-unet"
NETWORK = "tensor"
MARGIN = 0.95
ADC_SCALE = 1e-3  # mm^2/s per network unit
ADC_MAX = 4.0  # network units: above free water
_PAIRS = ((0, 1), (0, 2), (1, 2))  # r_xy, r_xz, r_yz


def measured_frame(gradients):
    """The orthonormal frame (rows, RAS) nearest the measured directions' rows (polar factor)."""
    u, _, vt = np.linalg.svd(np.asarray(gradients, dtype=np.float64))
    return u @ vt


def frame_tensors(adc, r):
    """Symmetric tensors (..., 3, 3) in the measured frame from ADCs (..., 3) and r (..., 3) in [-1, 1]."""
    adc = np.maximum(np.asarray(adc, dtype=np.float64), 0.0)
    tensor = np.zeros(adc.shape[:-1] + (3, 3))
    for i in range(3):
        tensor[..., i, i] = adc[..., i]
    for c, (i, j) in enumerate(_PAIRS):
        tensor[..., i, j] = tensor[..., j, i] = r[..., c] * np.sqrt(adc[..., i] * adc[..., j])
    return tensor


def network_inputs(adc):
    """(z, 9, y, x) float32 network inputs of ADCs (x, y, z, 3): each slice with its two neighbours."""
    units = np.clip(np.transpose(adc, (2, 3, 1, 0)) / ADC_SCALE, 0.0, ADC_MAX).astype(np.float32)  # (z, 3, y, x)
    below = np.concatenate([units[:1], units[:-1]])
    above = np.concatenate([units[1:], units[-1:]])
    return np.concatenate([below, units, above], axis=1)


def build(manifest, key):
    from .networks import UNetGenerator

    g = manifest["architecture"]["generator"]
    return UNetGenerator(g["in_channels"], g["out_channels"], g["ngf"], g["depth"], dropout=False)


def prepare_inference(network, precision):
    return network.to_bf16_inference() if precision == "bf16" else network


def synthesize(predict, grid_signals, manifest, reporter):
    reference, slices = grid_signals.reference, grid_signals.slices
    reporter.progress("synthesize", 0.0, "off-diagonal terms in the measured frame")
    measured = np.asarray(grid_signals.gradients, dtype=np.float64)
    frame = measured_frame(measured)
    # ADC_i = sum_j (F m_i)_j^2 D_F,jj for a tensor diagonal in F: solved for the frame's diagonal
    adc = grid_signals.adcs() @ np.linalg.inv(np.square(measured @ frame.T)).T
    inputs = network_inputs(adc)[slices]
    r = MARGIN * np.transpose(predict(NETWORK, inputs, slices), (3, 2, 0, 1))  # (x, y, n, 3)
    tensor = matrix_to_tensor6(frame.T @ frame_tensors(adc[:, :, slices], r) @ frame)  # RAS
    _, directions = direction_vectors(manifest)
    synthetic = np.zeros(reference.shape + (len(directions),), dtype=np.float32)
    synthetic[:, :, slices] = predict_signals(tensor, reference[:, :, slices],
                                              np.full(len(directions), float(manifest["b_value"])), directions)
    reporter.progress("synthesize", 1.0, f"{len(directions)} directions")
    return synthetic


def _training_targets(x, y, subject_slices, b_value):
    """Network inputs, r targets (S, 3, H, W), target attenuations (S, 6, H, W), b per slice and the brain
    mask from relative-intensity slices x (S, 3, H, W: x, y, z) and y (S, 6, H, W: Siemens' 6)."""
    from ..core.gradient_schemes import SIEMENS_6_RAS
    from ..fit.tensor_fit import design_matrix

    b = np.concatenate([np.full(n, b or b_value) for _, n, b in subject_slices])[:, None, None, None]
    measured = np.clip((x + 1.0) / 2.0, ATTENUATION_FLOOR, 1.0)
    target = np.clip((y + 1.0) / 2.0, ATTENUATION_FLOOR, 1.0)
    adc = -np.log(measured) / b  # (S, 3, H, W)
    inputs, start = [], 0
    for _, n, _ in subject_slices:  # neighbours never cross subjects
        inputs.append(network_inputs(np.transpose(adc[start:start + n], (3, 2, 0, 1))))
        start += n
    design = design_matrix(np.ones(6), SIEMENS_6_RAS)[:, :6]  # per unit b
    tensor6 = np.einsum("pk,skhw->sphw", np.linalg.pinv(design), np.log(target)) / b  # Dxx..Dyz (S, 6, H, W)
    diagonal = np.maximum(tensor6[:, :3], 1e-12)
    r = np.stack([tensor6[:, 3 + c] / np.sqrt(diagonal[:, i] * diagonal[:, j]) for c, (i, j) in enumerate(_PAIRS)], 1)
    brain = (x > -1.0 + 1e-6).all(axis=1) & (y > -1.0 + 1e-6).all(axis=1)
    return (np.concatenate(inputs), np.clip(r, -MARGIN, MARGIN).astype(np.float32), target.astype(np.float32),
            b[:, 0, 0, 0].astype(np.float32), brain)


def _loss(network, inputs, r, target, b, brain, design):
    """L1 of r and of the six directions' attenuations over brain voxels of a batch (torch tensors)."""
    import torch

    mask = brain[:, None].float()
    predicted = MARGIN * network(inputs)
    adc = inputs[:, 3:6] * ADC_SCALE
    off = [predicted[:, c] * torch.sqrt(adc[:, i].clamp(min=0) * adc[:, j].clamp(min=0))
           for c, (i, j) in enumerate(_PAIRS)]
    tensor6 = torch.cat([adc, torch.stack(off, 1)], 1)  # (B, 6, H, W): Dxx, Dyy, Dzz, Dxy, Dxz, Dyz
    attenuation = torch.exp(torch.einsum("kp,bphw->bkhw", design, tensor6) * b.view(-1, 1, 1, 1))
    weight = mask.sum().clamp(min=1)
    return (((predicted - r).abs() * mask).sum() / (3 * weight)
            + ((attenuation - target).abs() * mask).sum() / (6 * weight))


def _flip(tensors, axis):
    """Flip image axis 3 (x, left-right) or 2 (y, anterior-posterior) of (S, C, H, W) batches and negate
    the off-diagonal terms that involve it (r: xy, xz, yz; inputs and attenuation targets keep sign)."""
    import torch

    inputs, r, target = (torch.flip(t, dims=[axis]) for t in tensors)
    sign = torch.tensor([-1.0, -1.0, 1.0] if axis == 3 else [-1.0, 1.0, -1.0]).view(1, 3, 1, 1)
    # a flip of x also swaps Siemens' mirrored pairs (1, 0, 1) <-> (-1, 0, 1) etc.: targets re-ordered
    order = [1, 0, 2, 3, 5, 4] if axis == 3 else [0, 1, 3, 2, 5, 4]
    return inputs, r * sign, target[:, order]


def train(request):
    """Train the one network (Adam, L1 of r and of attenuations) and write the package."""
    import torch

    from ..core.gradient_schemes import SIEMENS_6_RAS
    from ..fit.tensor_fit import design_matrix
    from ..training.data import load_training_data
    from .intensity import Intensity
    from .networks import UNetGenerator, init_weights
    from .package import (
        MANIFEST,
        save_generator_weights,
        training_fields,
        write_manifest,
    )

    config, reporter = request.config, request.reporter
    if sorted(request.directions) != list(range(1, 7)):
        raise ValueError(f"{NAME} trains all six directions at once, not {request.directions}")
    request.intensity = Intensity("relative")  # the kind works on attenuations
    torch.manual_seed(config.seed)
    (x, y), validation, grid, provenance = load_training_data(
        request.data, request.intensity, config.depth, request.grid, request.validation_fraction, config.seed,
        request.register, reporter)
    parts = provenance["subject_slices"]
    inputs, r, target, b, brain = _training_targets(x, y, parts["train"], provenance["b_value"])
    network = init_weights(UNetGenerator(inputs.shape[1], 3, config.ngf, config.depth, dropout=False))
    optimiser = torch.optim.Adam(network.parameters(), lr=config.lr, betas=(config.beta1, 0.999))
    design = torch.from_numpy(design_matrix(np.ones(6), SIEMENS_6_RAS)[:, :6].astype(np.float32))
    data = [torch.from_numpy(np.ascontiguousarray(a)) for a in (inputs, r, target, b, brain)]
    generator = torch.Generator().manual_seed(config.seed)
    history = []
    for epoch in range(config.total_epochs):
        order = torch.randperm(len(inputs), generator=generator)
        losses = []
        for start in range(0, len(order) - config.batch_size + 1, config.batch_size):
            index = order[start:start + config.batch_size]
            batch_inputs, batch_r, batch_target = (t[index] for t in data[:3])
            flips = torch.rand(2, generator=generator)
            for axis, chance in ((3, flips[0]), (2, flips[1])):
                if chance < 0.5:
                    batch_inputs, batch_r, batch_target = _flip((batch_inputs, batch_r, batch_target), axis)
            loss = _loss(network, batch_inputs, batch_r, batch_target, data[3][index], data[4][index], design)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)) if losses else float("nan")})
        reporter.progress(f"train {NAME}", (epoch + 1) / config.total_epochs,
                          f"epoch {epoch + 1}/{config.total_epochs} loss {history[-1]['loss']:.4f}")
    scores = {}
    if validation is not None:
        held_out = [torch.from_numpy(np.ascontiguousarray(a)) for a in
                    _training_targets(*validation, parts["validation"], provenance["b_value"])]
        network.eval()
        with torch.no_grad():
            scores["val_L1"] = _loss(network, *held_out, design).item()
    out = Path(request.out)
    out.mkdir(parents=True, exist_ok=True)
    sha = save_generator_weights(out / "tensor.safetensors", network.state_dict(), request.weights_dtype)
    parameters = sum(p.numel() for p in network.parameters())
    write_manifest(out, {
        "architecture": {"kind": NAME, "generator": {"in_channels": int(inputs.shape[1]), "out_channels": 3,
                                                     "ngf": config.ngf, "depth": config.depth},
                         "parameters": int(parameters), "margin": MARGIN, "adc_scale_mm2_s": ADC_SCALE},
        "networks": [{"name": NETWORK, "file": "tensor.safetensors", "sha256": sha, "dtype": request.weights_dtype,
                      "history": history, "validation": scores}],
        "directions": [{"index": i + 1, "gradient_ras": g.round(12).tolist()} for i, g in enumerate(SIEMENS_6_RAS)],
        **training_fields(request, grid, provenance, 1),
        "b_range": [min(b for part in parts.values() for _, _, b in part),
                    max(b for part in parts.values() for _, _, b in part)]})
    return out / MANIFEST


KIND = GeneratorKind(NAME, build, synthesize, train, prepare_inference)
