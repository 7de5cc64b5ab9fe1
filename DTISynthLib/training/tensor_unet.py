"""Training of the "tensor-unet" kind (generators/tensor_unet.py: its network, frames, units, heads).

Training (train): targets are the tensors and b=0 of each subject's 6-direction DTI (exactly
determined fits; use noise-free phantom subjects and tensor-mode pairs of real scans; target voxels
outside TARGET_EIGENVALUES are left out); the 3-direction input is simulated from them for every
batch: random b (B_TRAINING, log-uniform), Rician noise at a random SNR (SNR_TRAINING, the brain's
median b=0 over sigma), random frame rotation and symmetry. Batches are stratified by data source (the
top-level folders, e.g. phantom/ and real/: equal shares), then subject, series and slice. Losses
(SPLIT): L1 of the diagonal and of the magnitudes against |D_ij|, of FA and of the six Siemens
attenuations with the target's signs (all sign-invariant), plus SIGN_WEIGHT x the cross-entropy of the
pattern logits against soft targets (loss_terms). The model is chosen by the validation subjects' score
(_validate: FA error in WM / 0.08 + median V1 angle / 18), and training stopped after PATIENCE epochs of
the decay without progress; the pattern temperature is then fitted on them (calibrate_temperature).

Devices and processes: --device, --amp (autocast of the forward pass; the losses in float32),
--channels-last, --accumulate and torchrun's processes (train's docstring: how a step is split).

Augmentation: the 8 in-plane symmetries (transpose, flips; 90-degree rotations are their products)
with D_W transformed consistently (flip_tensor, transpose_tensor), and random rotations of the measured
frame up to FRAME_ROTATION_DEGREES about any axis.
"""

import copy
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..core.checksums import sha256_file
from ..core.errors import InputError
from ..core.gradient_schemes import AXES_3_RAS, MAX_DIRECTION_CONDITION, SIEMENS_6_RAS, direction_condition
from ..core.tensor_layout import TENSOR6_INDEX, matrix_to_tensor6, tensor6_to_matrix
from ..fit.tensor_fit import design_matrix
from ..fit.tensor_maps import eigen_decompose, v1_angles
from ..generators.intensity import Intensity
from ..generators.networks import UNetGenerator, init_weights
from ..generators.package import MANIFEST, read_manifest, save_generator_weights, write_manifest
from ..generators.registry import ATTENUATION_FLOOR
from ..generators.tensor_unet import (
    ADC_MAX,
    ADC_SCALE,
    B0_MAX,
    B_TRAINING,
    CONFIDENCE_DEGREES,
    DIAGONAL_RANGE,
    DIRECTION_CHANNELS,
    HEADS,
    INPUT_CHANNELS,
    MARGIN,
    NAME,
    NETWORK,
    PATTERNS,
    RHO_RANGE,
    SIGNED,
    SPLIT,
    decode,
    direction_channels,
    heads_of,
    image_frame,
    pattern_probabilities,
    pattern_vectors,
    prolate_magnitudes,
    split_outputs,
    v1_confidence,
    working_frame,
)
from .checkpoints import checkpoint_folder, load_training_state, save_training_state
from .config import TrainConfig
from .data import find_pairs, load_dti_targets, source_and_subject, split_subjects
from .distributed import (
    autocast,
    check_amp,
    distributed_context,
    from_rank_zero,
    gather_to_rank_zero,
    grad_scaler,
    no_sync_unless,
    optimiser_step,
    scaled_backward,
    sum_over_processes,
    training_device,
    use_deterministic_algorithms,
)

SNR_TRAINING = (12.0, 60.0)
# The measured triple of a training slab, in the image frame: an orthogonal triple rotated about a
# random axis by FRAME_ROTATION_DEGREES u^2 (u uniform: straight triples stay common, a median of 11
# degrees, up to 45 as a tilted slab gives), and for SKEW_SHARE of the slabs each direction moved by up
# to SKEW_DEGREES off its axis in a random direction (the nearest volumes of a 12-30 direction scheme
# are 10-35 degrees off), kept to MAX_DIRECTION_CONDITION as synthesize does.
FRAME_ROTATION_DEGREES = 45.0
SKEW_DEGREES = 35.0
SKEW_SHARE = 0.5
# Networks without direction channels (packages before 2026-12-07, 12 input channels; fine-tuned with
# --init-from) learned orthogonal triples rotated uniformly up to 15 degrees, no skew: they meet those.
TRIPLES = {True: (FRAME_ROTATION_DEGREES, 2.0, SKEW_SHARE), False: (15.0, 1.0, 0.0)}  # by direction input
LEGACY_INPUT_CHANNELS = INPUT_CHANNELS - DIRECTION_CHANNELS
CROP = 96  # training patch (pixels): divisible by 2**depth for depth <= 5
SIGN_SCALE = 0.05  # units: soft targets of the pattern loss, q_p ~ exp(-|D_p - D|_F^2 / (2 SIGN_SCALE^2))
SIGN_WEIGHT = 0.1  # of the pattern cross-entropy in the total loss
PATIENCE = 8  # epochs of decay without a better validation score before training stops


TARGET_EIGENVALUES = (-0.1, ADC_MAX)  # units: target tensors outside are fits of artefacts, not tissue


def subject_volume(b0, tensor, mask, affine):
    """One training subject from training.data.dti_targets: float32 (z, 7, H, W) (b=0, then the tensor
    in the image frame (generators.tensor_unet.image_frame) in units), the mask (z, H, W) and the brain's
    median b=0; the batches draw the measured triple relative to that frame. Voxels whose
    target eigenvalues leave TARGET_EIGENVALUES (real scans' fits at the brain's edge reach -50e-3
    mm^2/s: their attenuations overflow any loss) are left out of the mask, their tensor 0."""
    eigenvalues = np.linalg.eigvalsh(tensor6_to_matrix(np.asarray(tensor, np.float64)[mask])) / ADC_SCALE
    mask = mask.copy()
    mask[mask] = (eigenvalues[:, 0] >= TARGET_EIGENVALUES[0]) & (eigenvalues[:, -1] <= TARGET_EIGENVALUES[1])
    frame = image_frame(affine)
    tensor_w = matrix_to_tensor6(frame @ tensor6_to_matrix(np.asarray(tensor, np.float64)) @ frame.T) / ADC_SCALE
    volume = np.concatenate([np.asarray(b0, np.float64)[..., None], np.where(mask[..., None], tensor_w, 0.0)], -1)
    median = float(np.median(b0[mask])) if mask.any() else 1.0
    return (np.ascontiguousarray(np.transpose(volume, (2, 3, 1, 0)), dtype=np.float32),
            np.ascontiguousarray(np.transpose(mask, (2, 1, 0))), median)


def training_subjects(targets):
    """[(name, volume, mask, median, brain slice indices, b-value)] of training.data.load_dti_targets."""
    subjects = []
    for name, b_value, b0, tensor, mask, affine in targets:
        volume, slice_mask, median = subject_volume(b0, tensor, mask, affine)
        subjects.append((name, volume, slice_mask, median, np.flatnonzero(slice_mask.any(axis=(1, 2))), b_value))
    return subjects


# ---------------------------------------------------------------- training (torch)

def transpose_tensor(tensor6):
    """Tensor (B, 6, ...) in W after the image's two in-plane axes are swapped."""
    return tensor6[:, [1, 0, 2, 3, 5, 4]]


def flip_tensor(tensor6, axis):
    """Tensor (B, 6, ...) in W after the image is mirrored along W's axis `axis` (0 or 1): the
    off-diagonal terms involving that axis change sign."""
    sign = [1.0, 1.0, 1.0, -1.0, -1.0, 1.0] if axis == 0 else [1.0, 1.0, 1.0, -1.0, 1.0, -1.0]
    return tensor6 * tensor6.new_tensor(sign).view(1, 6, *([1] * (tensor6.dim() - 2)))


def rotate_tensor(tensor6, rotation):
    """Tensor (B, 6, ...) expressed in a frame rotated by `rotation` (B, 3, 3), rows: R D R^T. R D R^T is
    linear in D's six elements: one (6, 6) matrix per rotation applied to every voxel (a batched matrix
    product; forming each voxel's 3 x 3 matrix made this half the cost of drawing a batch)."""
    columns = []
    for i, j in TENSOR6_INDEX:  # R E R^T of the symmetric unit matrix E of element (i, j)
        outer = rotation[:, :, i, None] * rotation[:, None, :, j]  # R_ai R_bj
        unit = outer + outer.transpose(1, 2) if i != j else outer
        columns.append(torch.stack([unit[:, a, b] for a, b in TENSOR6_INDEX], 1))
    linear = torch.stack(columns, 2).to(tensor6.dtype)  # (B, 6 out, 6 in)
    return (linear @ tensor6.reshape(*tensor6.shape[:2], -1)).reshape(tensor6.shape)


def random_rotations(n, max_degrees, generator, power=1.0):
    """n rotation matrices (torch, float32) about uniformly random axes by angles max u^power (u uniform
    in [0, 1]; power 1: uniform in [0, max])."""
    axis = torch.randn(n, 3, generator=generator)
    axis = axis / axis.norm(dim=1, keepdim=True)
    angle = torch.rand(n, generator=generator) ** power * np.radians(max_degrees)
    k = torch.zeros(n, 3, 3)
    k[:, 0, 1], k[:, 0, 2], k[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    k = k - k.transpose(1, 2)
    eye = torch.eye(3).expand(n, 3, 3)
    return eye + torch.sin(angle).view(n, 1, 1) * k + (1 - torch.cos(angle)).view(n, 1, 1) * (k @ k)


def triple_frames(triple):
    """(directions, W, solve) (3, 3) numpy of one measured triple (rows, unit vectors in the image frame):
    synthesis's direction channels, working frame and frame_adcs solve for it (measured_triples)."""
    frame, _ = working_frame(triple, np.eye(4))
    directions = direction_channels(triple, np.eye(4))  # the image frame is the identity here
    return directions, frame, np.linalg.inv(np.square(directions @ frame.T))


def measured_triples(n, generator, randomise=True, direction_input=True):
    """(directions (n, 3, 3), working (n, 3, 3), solve (n, 3, 3)) float32 torch tensors of n random
    measured triples (FRAME_ROTATION_DEGREES, SKEW_DEGREES), all in the image frame: the directions in
    W's order and signs (the network's direction channels, generators.tensor_unet.direction_channels),
    W (rows) and the matrix that turns their ADCs into W's first-order ones (frame_adcs:
    ADC_W = solve @ ADC). randomise False: the straight triple (the identity three times).
    direction_input False: the triples of networks without direction channels (TRIPLES)."""
    if not randomise:
        eye = torch.eye(3).expand(n, 3, 3).contiguous()
        return eye, eye.clone(), eye.clone()
    degrees, power, share = TRIPLES[direction_input]
    rotation = random_rotations(n, degrees, generator, power=power).double().numpy()
    skewed = torch.rand(n, generator=generator).numpy() < share
    step = torch.randn(n, 3, 3, generator=generator).double().numpy()
    angle = np.radians(SKEW_DEGREES) * torch.rand(n, 3, generator=generator).double().numpy()
    directions, working, solve = [], [], []
    for k in range(n):
        triple = rotation[k]
        if skewed[k]:  # each row moved by its angle toward a random perpendicular direction
            away = step[k] - (step[k] * triple).sum(1, keepdims=True) * triple
            away /= np.maximum(np.linalg.norm(away, axis=1, keepdims=True), 1e-12)
            moved = triple * np.cos(angle[k])[:, None] + away * np.sin(angle[k])[:, None]
            if direction_condition(moved) <= MAX_DIRECTION_CONDITION:
                triple = moved
        for column, matrix in zip((directions, working, solve), triple_frames(triple)):
            column.append(matrix)
    as_torch = lambda m: torch.from_numpy(np.stack(m).astype(np.float32))  # noqa: E731
    return as_torch(directions), as_torch(working), as_torch(solve)


def simulated_inputs(b0, adc, median, b, snr, generator, solve=None):
    """Noisy network inputs (B, 12, H, W) of slabs, without the direction channels: b0 (B, 3, H, W) and
    the measured directions' ADCs (B, 3 slices, 3, H, W) in units, at b-values b (B,) and SNRs snr (B,)
    (median b=0 / sigma, median (B,)). Rician noise on the b=0 and on each of the three
    diffusion-weighted images; the noisy ADCs are turned into W's by solve (B, 3, 3) (default: they are
    W's) as synthesis does (generators.tensor_unet.frame_adcs)."""
    sigma = (median / snr).view(-1, 1, 1, 1)
    scale = (b * ADC_SCALE).view(-1, 1, 1, 1, 1)
    clean = b0.unsqueeze(2) * torch.exp(-scale * adc)  # (B, 3 slices, 3 directions, H, W)

    def rician(signal):
        real = signal + sigma.view(-1, *([1] * (signal.dim() - 1))) * torch.randn(signal.shape, generator=generator)
        imaginary = sigma.view(-1, *([1] * (signal.dim() - 1))) * torch.randn(signal.shape, generator=generator)
        return torch.sqrt(real * real + imaginary * imaginary)

    noisy_b0, noisy = rician(b0), rician(clean)
    attenuation = torch.where(noisy_b0.unsqueeze(2) > 0, noisy / noisy_b0.unsqueeze(2).clamp(min=1e-12),
                              torch.ones_like(noisy))
    adc = -torch.log(attenuation.clamp(min=ATTENUATION_FLOOR)) / scale
    if solve is not None:
        adc = torch.einsum("bij,bsjhw->bsihw", solve, adc)
    adc = adc.clamp(0.0, ADC_MAX)
    b0_channel = (noisy_b0 / median.view(-1, 1, 1, 1)).clamp(0.0, B0_MAX)
    n, _, _, height, width = adc.shape
    return torch.cat([adc.reshape(n, 9, height, width), b0_channel], 1)


def design_matrix_per_unit_b():
    """Rows -g g^T (6, 6) of Siemens' six directions (RAS) per unit b: the loss's attenuations."""
    return design_matrix(np.ones(6), SIEMENS_6_RAS)[:, :6]


def fractional_anisotropy6(tensor6):
    """FA (B, ...) of tensors (B, 6, ...) without eigenvalues: sqrt(3/2) |D - MD I| / |D| (Frobenius)."""
    diagonal, off = tensor6[:, :3], tensor6[:, 3:]
    md = diagonal.mean(1, keepdim=True)
    deviation = ((diagonal - md) ** 2).sum(1) + 2 * (off ** 2).sum(1)
    norm = (diagonal ** 2).sum(1) + 2 * (off ** 2).sum(1)
    return (1.5 * deviation / norm.clamp(min=1e-8)).clamp(min=1e-12).sqrt()


def loss_terms(output, inputs, target, mask, b, design, heads=SIGNED, count=None):
    """(total, {name: value}) of a batch over mask voxels: L1 of the tensor elements (units), of FA and of
    the attenuations along `design`'s directions (rows of design_matrix per unit b). Each term is a sum over
    the voxels divided by `count` (default: this batch's mask voxels; a step of several micro-batches or
    processes passes the whole step's, so that their terms add up to the step's means).

    SPLIT heads: every regression term is sign-invariant (magnitudes against |D_ij|, FA from the
    magnitudes, attenuations with the target's signs), so an uncertain sign no longer pulls the
    magnitudes to zero; the signs are a cross-entropy over the 4 patterns against soft targets
    q_p ~ exp(-|D_p - D|^2 / (2 SIGN_SCALE^2)) (D_p: the target's magnitudes with pattern p), so that
    patterns that give nearly the same tensor share the probability."""
    weight = mask.float().unsqueeze(1)
    count = weight.sum().clamp(min=1) if count is None else count
    if heads == SPLIT:
        diagonal, excess, logits = split_outputs(output, inputs[:, 3:6])
        magnitude = prolate_magnitudes(excess)
        target_magnitude = target[:, 3:].abs()
        elements = torch.cat([diagonal - target[:, :3], magnitude - target_magnitude], 1)
        unsigned = torch.cat([diagonal, magnitude], 1)
        predicted = torch.cat([diagonal, torch.sign(target[:, 3:]) * magnitude], 1)
        patterns = torch.from_numpy(PATTERNS.astype(np.float32)).to(output.device).view(1, len(PATTERNS), 3, 1, 1)
        distance = 2 * ((patterns * target_magnitude.unsqueeze(1) - target[:, 3:].unsqueeze(1)) ** 2).sum(2)
        soft = torch.softmax(-distance / (2 * SIGN_SCALE ** 2), 1)
        sign_ce = (-(soft * torch.log_softmax(logits, 1)).sum(1) * weight[:, 0]).sum() / count
    else:
        predicted = decode(output, inputs[:, 3:6])
        elements, unsigned = predicted - target, predicted
        sign_ce = None
    tensor_l1 = (elements.abs() * weight).sum() / (6 * count)
    fa_l1 = ((fractional_anisotropy6(unsigned) - fractional_anisotropy6(target)).abs() * weight[:, 0]).sum() / count
    scale = (b * ADC_SCALE).view(-1, 1, 1, 1)
    attenuation = [torch.exp(torch.einsum("kp,bphw->bkhw", design, t) * scale) for t in (predicted, target)]
    attenuation_l1 = ((attenuation[0] - attenuation[1]).abs() * weight).sum() / (design.shape[0] * count)
    terms = {"tensor": tensor_l1.item(), "fa": fa_l1.item(), "attenuation": attenuation_l1.item()}
    total = tensor_l1 + fa_l1 + attenuation_l1
    if sign_ce is not None:
        terms["sign_ce"] = sign_ce.item()
        total = total + SIGN_WEIGHT * sign_ce
    return total, terms


def torch_randint(n, generator):
    """A random integer in [0, n) from a torch.Generator."""
    return torch.randint(n, (1,), generator=generator)


class _Batches:
    """Random training batches of slabs, one random crop per batch, augmented (module docstring).

    Sampling is stratified by data source: the i-th slab of a batch comes from source (offset + i) mod
    the number of sources (so with phantom and real sources, half of every batch is real); within a
    source each subject is equally likely, within a subject each of its series, then a brain slice.
    groups: (source, subject) per entry of `subjects` (default: one source, every entry its own
    subject). generator: torch.Generator."""

    def __init__(self, subjects, crop, generator, augment=True, groups=None, direction_input=True):
        self.subjects, self.crop, self.generator, self.augment = subjects, crop, generator, augment
        self.direction_input = direction_input  # the network's DIRECTION_CHANNELS (False: a 12-channel parent's)
        groups = groups or [("", s[0]) for s in subjects]
        tree = {}
        for index, (source, subject) in enumerate(groups):
            tree.setdefault(source, {}).setdefault(subject, []).append(index)
        # per source (sorted), its subjects (sorted), each the indices of its series
        self.sources = [[tree[source][subject] for subject in sorted(tree[source])] for source in sorted(tree)]

    def _slab(self, subject, z):
        _, volume, mask, median, _, _ = subject
        index = np.clip([z - 1, z, z + 1], 0, len(volume) - 1)
        return volume[index], mask[z], median

    def _pick(self, choices):
        return choices[int(torch_randint(len(choices), self.generator))]

    def draw(self, size):
        offset = int(torch_randint(len(self.sources), self.generator))
        picks = []
        for i in range(size):
            subject = self.subjects[self._pick(self._pick(self.sources[(offset + i) % len(self.sources)]))]
            picks.append(self._slab(subject, int(self._pick(subject[4]))))
        return self.batch(picks, randomise=True)

    def batch(self, picks, randomise, b=None, snr=None):
        g = self.generator
        volume = torch.from_numpy(np.stack([p[0] for p in picks]))  # (B, 3, 7, H, W)
        mask = torch.from_numpy(np.stack([p[1] for p in picks]))
        median = torch.tensor([p[2] for p in picks], dtype=torch.float32)
        height, width = volume.shape[-2:]
        if self.crop and (height > self.crop or width > self.crop):
            top = int(torch.randint(height - self.crop + 1, (1,), generator=g)) if randomise else (height - self.crop) // 2
            left = int(torch.randint(width - self.crop + 1, (1,), generator=g)) if randomise else (width - self.crop) // 2
            volume = volume[..., top:top + self.crop, left:left + self.crop]
            mask = mask[..., top:top + self.crop, left:left + self.crop]
        n = volume.shape[0]
        b0, tensor = volume[:, :, 0], volume[:, :, 1:].movedim(2, 1)  # tensor (B, 6, 3 slices, H, W)
        if randomise and self.augment:
            flips = torch.rand(3, generator=g)
            if flips[0] < 0.5:
                b0, tensor, mask = b0.transpose(-1, -2), transpose_tensor(tensor).transpose(-1, -2), mask.transpose(-1, -2)
            if flips[1] < 0.5:  # W's axis 0 is the image's column axis (last dimension)
                b0, tensor, mask = b0.flip(-1), flip_tensor(tensor, 0).flip(-1), mask.flip(-1)
            if flips[2] < 0.5:
                b0, tensor, mask = b0.flip(-2), flip_tensor(tensor, 1).flip(-2), mask.flip(-2)
        directions, working, solve = measured_triples(n, g, randomise and self.augment, self.direction_input)
        measured = rotate_tensor(tensor, directions)[:, :3]  # g_k^T D g_k: the measured ADCs
        tensor = rotate_tensor(tensor, working)  # the target, in W
        if b is None:
            low, high = np.log(B_TRAINING)
            b = torch.exp(low + (high - low) * torch.rand(n, generator=g))
            low, high = np.log(SNR_TRAINING)
            snr = torch.exp(low + (high - low) * torch.rand(n, generator=g))
        else:
            b, snr = torch.full((n,), float(b)), torch.full((n,), float(snr))
        inputs = simulated_inputs(b0.contiguous(), measured.movedim(1, 2).contiguous(), median, b, snr, g, solve)
        if self.direction_input:
            height, width = inputs.shape[-2:]
            constant = directions.reshape(n, DIRECTION_CHANNELS, 1, 1).expand(n, DIRECTION_CHANNELS, height, width)
            inputs = torch.cat([inputs, constant], 1)
        return inputs, tensor[:, :, 1].contiguous(), mask, b


SLOT_SEED_STEP = 7919  # slot k's stream is seeded seed + SLOT_SEED_STEP k (train)
# train's default loader processes (--workers) by device: on a GPU the drawing is the only CPU work; on
# the CPU the step takes every core (on 2 cores a step took 169 ms with a loader process, 140 ms drawing
# in the training process: benchmarks/bench_training.py)
LOADER_WORKERS = {"cuda": 1, "cpu": 0}


class _StepDraws(torch.utils.data.IterableDataset):
    """Endless steps of micro-batches from some slots' streams ({slot: _Batches}): each step a {slot:
    (batch, the stream's generator state after it)}, drawn in the order the training process would draw
    them, so a loader process gives the very batches of an in-process draw; the state is what a
    checkpoint of that step keeps (a loader process runs ahead of the step being trained)."""

    def __init__(self, streams, size):
        super().__init__()
        self.streams, self.size = streams, size

    def __iter__(self):
        while True:
            yield {k: (self.streams[k].draw(self.size), self.streams[k].generator.get_state())
                   for k in sorted(self.streams)}


def step_draws(streams, size, workers, pin_memory=False):
    """Iterator over training steps' micro-batches ({slot: (batch, generator state after it)}) of this
    process's slot streams: drawn here (workers 0) or by `workers` loader processes (at most one per
    slot: a stream is one random sequence), each holding every workers-th slot and drawing while the
    network trains. The batches are the same either way, so the weights are too."""
    if workers == 0:
        yield from _StepDraws(streams, size)
        return
    slots = sorted(streams)
    # the DataLoader seeds its workers from the global RNG unless given a generator: keep the global one as it is
    loaders = [iter(torch.utils.data.DataLoader(
        _StepDraws({k: streams[k] for k in slots[i::workers]}, size), batch_size=None, num_workers=1,
        pin_memory=pin_memory, prefetch_factor=2, generator=torch.Generator().manual_seed(0)))
        for i in range(min(workers, len(slots)))]
    while True:
        step = {}
        for loader in loaders:
            step.update(next(loader))
        yield step


def _stream_name(slot):
    return "batches" if slot == 0 else f"batches_{slot}"  # slot 0's name is that of checkpoints before slots


def _save_checkpoint(out, network, best, optimiser, stream_states, state):
    """stream_states: {slot: the state of its torch.Generator} of every slot."""
    save_training_state(checkpoint_folder(out, NETWORK), {"G": network, "best": best}, {"opt": optimiser},
                        {**{_stream_name(k): v for k, v in stream_states.items()}, "torch": torch.get_rng_state()},
                        state)


def _load_checkpoint(out, network, best, optimiser, streams, slots):
    """The saved training state (dict) after restoring network, optimiser and RNGs (streams: {slot:
    _Batches} of this process); None without one. A run that split its steps into another number of
    slots (accumulate x processes) cannot be continued with the same data."""
    loaded = load_training_state(checkpoint_folder(out, NETWORK), {"G": network, "best": best}, {"opt": optimiser})
    if loaded is None:
        return None
    state, rng = loaded
    if state.get("slots", 1) != slots:
        raise InputError("--resume", f"--accumulate x processes = {state.get('slots', 1)}, as the run it continues",
                         f"{slots}")
    for k, batches in streams.items():
        batches.generator.set_state(rng[_stream_name(k)])
    torch.set_rng_state(rng["torch"])
    return state


VALIDATION_SNR = 30.0
VALIDATION_TARGETS = {"fa": 0.08, "v1_degrees": 18.0}  # real brains (issue targets): the score's units


def _validate(network, batches, subjects, design, heads, collect=False):
    """On every brain slice of the validation subjects at their own b, SNR VALIDATION_SNR, centre crop and
    fixed noise: the mean loss terms, the FA mean abs error where the target's FA > 0.3 and the median V1
    angle (degrees) where it is > 0.4, and score = FA error / 0.08 + V1 angle / 18 (lower is better; the
    real-brain targets as units). collect: also return (excess, logits, target tensor) (N, ...) numpy
    arrays of the voxels with target FA > 0.3, to calibrate the pattern temperature."""
    network.eval()
    device = next(network.parameters()).device
    design = design.cpu()
    totals, count, fa_errors, angles, voxels = {}, 0, [], [], []
    state = batches.generator.get_state()
    batches.generator.manual_seed(12345)
    with torch.no_grad():
        for subject in subjects:
            for start in range(0, len(subject[4]), 8):
                picks = [batches._slab(subject, int(z)) for z in subject[4][start:start + 8]]
                inputs, target, mask, b = batches.batch(picks, randomise=False, b=subject[5], snr=VALIDATION_SNR)
                output = network(inputs.to(device)).float().cpu()
                _, terms = loss_terms(output, inputs, target, mask, b, design, heads)
                for key, value in terms.items():
                    totals[key] = totals.get(key, 0.0) + value * len(picks)
                count += len(picks)
                predicted = decode(output, inputs[:, 3:6], heads)
                target_fa = fractional_anisotropy6(target)
                wm = mask & (target_fa > 0.3)
                fa_errors.append((fractional_anisotropy6(predicted) - target_fa)[wm].abs().numpy())
                strong = (mask & (target_fa > 0.4)).numpy()
                as_voxels = lambda t: t.movedim(1, -1).numpy()  # noqa: E731
                v1 = [eigen_decompose(as_voxels(t)[strong])[1] for t in (predicted, target)]
                angles.append(v1_angles(*v1))
                if collect and heads == SPLIT:
                    parts = split_outputs(output, inputs[:, 3:6])[1:] + (target,)
                    voxels.append([as_voxels(t)[wm.numpy()].astype(np.float64) for t in parts])
    batches.generator.set_state(state)
    network.train()
    metrics = {f"val_{k}": v / max(count, 1) for k, v in totals.items()}
    fa_error, angle = np.concatenate(fa_errors), np.concatenate(angles)
    metrics["val_fa_abs_wm"] = float(fa_error.mean()) if fa_error.size else float("nan")
    metrics["val_v1_degrees"] = float(np.median(angle)) if angle.size else float("nan")
    metrics["val_score"] = metrics["val_fa_abs_wm"] / VALIDATION_TARGETS["fa"] + \
        metrics["val_v1_degrees"] / VALIDATION_TARGETS["v1_degrees"]
    if collect:
        return metrics, [np.concatenate(column) for column in zip(*voxels)] if voxels else None
    return metrics


TEMPERATURES = (0.5, 0.7, 1.0, 1.4, 2.0, 2.8, 4.0, 5.6, 8.0)


def calibrate_temperature(excess, logits, target):
    """(temperature, {temperature: Brier score}): the pattern temperature whose v1_confidence best predicts
    (least squares) whether the synthetic V1 lies within CONFIDENCE_DEGREES of the target's, over
    validation voxels (numpy excess (N, 3), logits (N, 4), target tensors (N, 6); units)."""
    predicted = pattern_vectors(excess)[np.arange(len(logits)), logits.argmax(1)]
    predicted = predicted / np.maximum(np.linalg.norm(predicted, axis=1, keepdims=True), 1e-12)
    within = v1_angles(predicted, eigen_decompose(target)[1]) <= CONFIDENCE_DEGREES
    scores = {t: float(np.mean((v1_confidence(excess, pattern_probabilities(logits, t)) - within) ** 2))
              for t in TEMPERATURES}
    return min(scores, key=scores.get), scores


def describe(parameters, train_subjects, groups):
    """The package's one-line description (dtisynth models, the Slicer panel)."""
    sources = {}
    for s in train_subjects:
        sources.setdefault(groups[s[0]][0] or "data", set()).add(groups[s[0]][1])
    trained = ", ".join(f"{len(subjects)} {source} subject{'s' if len(subjects) > 1 else ''}"
                        for source, subjects in sorted(sources.items()))
    return (f"One tensor U-Net (2.5D, {parameters / 1e6:.1f} M parameters) for all six directions: off-diagonal "
            "magnitudes (so FA) learned without their signs, the sign pattern classified with a calibrated "
            "probability (maps/v1_confidence), the measured diagonal (MD) kept; any b from "
            f"{B_TRAINING[0]:g} to {B_TRAINING[1]:g} s/mm^2, any three well-conditioned directions; trained on {trained}.")


# options of the pix2pix kind that this kind has nothing to apply to: (option, TrainConfig field, why)
OTHER_KINDS_OPTIONS = (("--lambda-l1", "lambda_l1", "the GAN's L1 weight: this kind has no discriminator"),
                       ("--ndf", "ndf", "the discriminator's width: this kind has no discriminator"),
                       ("--flip-augment", "flip_augment", "this kind always draws the 8 in-plane symmetries"))


def refuse_other_kinds_options(request):
    """InputError for an option given with a value this kind would silently ignore."""
    defaults = TrainConfig()
    for option, name, why in OTHER_KINDS_OPTIONS:
        value = getattr(request.config, name)
        if value != getattr(defaults, name):
            raise InputError(option, f"left out with --kind {NAME} ({why})", repr(value))
    if request.intensity.quantise_8bit:
        raise InputError("--quantise-8bit", f"left out with --kind {NAME} (it reads ADCs at full precision)", "given")
    if request.intensity_chosen and request.intensity.mode != "relative":
        raise InputError("--intensity", f"relative or left out with --kind {NAME} (it always works on signal / b=0, "
                         "the ADCs, whatever --intensity says)", repr(request.intensity.mode))


def training_mode(network, keep_statistics):
    """network.train(); keep_statistics (fine-tuning): its batch-norm layers normalise with the parent's
    running statistics and leave them as they are. Updated from a site's few people, every batch real
    (the parent's batches were half phantom), they replace the parent's within an epoch, and that alone
    took the default set from FA 0.113 / V1 20.2 degrees to 0.226 / 39.3 on the unseen XA30 person (its
    weights unchanged: lr 1e-12), benchmarks/bench_fine_tune.py."""
    network.train()
    if keep_statistics:
        for module in network.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
    return network


def load_parent(network, folder):
    """Start from a package's network (--init-from): its verified weights into `network`, refused
    unless the package has this kind's inputs and heads (a tensor-unet-signed package has others). A
    12-input parent loaded into a 21-input network (--add-direction-channels) gets zero first-layer
    weights for the direction channels (appended after its 12): the widened network's outputs are the
    parent's, whatever the triple, until training moves them."""
    from ..generators.runner import load_generators

    parent = read_manifest(folder)
    generator = parent.architecture.get("generator", {})
    if (parent.kind, heads_of(parent)) != (NAME, SPLIT) or \
            generator.get("in_channels") not in (INPUT_CHANNELS, LEGACY_INPUT_CHANNELS):
        raise InputError(folder, f"a {NAME} package with {SPLIT} heads and {INPUT_CHANNELS} (or, without the "
                         f"direction channels, {LEGACY_INPUT_CHANNELS}) input channels", f"kind {parent.kind}, heads "
                         f"{heads_of(parent)}, {generator.get('in_channels')} input channels")
    networks, _ = load_generators(folder)
    weights = networks[NETWORK].state_dict()
    first = network.first.weight
    added = first.shape[1] - weights["first.weight"].shape[1]
    if added:
        weights["first.weight"] = torch.cat([weights["first.weight"].to(first.dtype),
                                             first.new_zeros(first.shape[0], added, *first.shape[2:])], 1)
    network.load_state_dict(weights)
    return {"package": str(folder), "manifest_sha256": sha256_file(Path(folder) / MANIFEST),
            "description": parent.data.get("description", ""), "created_by": parent.data.get("created_by", ""),
            **({"added_direction_channels": added} if added else {})}


def adam(network, config):
    """The network's Adam, fused (one kernel for every parameter: 12 -> 1.8 ms a step for the default's 4.2 M
    parameters on a 2-core CPU)."""
    return torch.optim.Adam(network.parameters(), lr=config.lr, betas=(config.beta1, 0.999), fused=True)


def train_step(model, optimiser, scaler, mine, design, config, world=1, heads=SPLIT):
    """One optimiser step on this process's micro-batches `mine` (each (inputs, target, mask, b)), each
    term normalised by the mask voxels of the whole step (every process's); returns the step's loss terms
    summed over the processes."""
    device = next(model.parameters()).device
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    voxels = {"count": float(sum(int(m[2].sum()) for m in mine))}
    count = max(sum_over_processes(voxels, world)["count"], 1)
    optimiser.zero_grad(set_to_none=True)
    step_terms = {}
    for i, batch in enumerate(mine):
        inputs, target, mask, b = (t.to(device) for t in batch)
        with no_sync_unless(i == len(mine) - 1, model):
            with autocast(device, config.amp):
                output = model(inputs.contiguous(memory_format=memory_format))
            loss, terms = loss_terms(output.float(), inputs, target, mask, b, design, heads, count)
            # DDP averages the processes' gradients: x world makes it their sum, the step's loss's
            scaled_backward(loss * world, scaler)
        for key, value in terms.items():
            step_terms[key] = step_terms.get(key, 0.0) + value
    optimiser_step(optimiser, scaler)
    return sum_over_processes(step_terms, world)


def train(request):
    """Train the one network (Adam; learning rate constant, then linear decay) and write the package.
    Checkpoints every epoch under out/checkpoints/tensor; request.resume continues from the last.

    A step is config.accumulate x world micro-batches of config.batch_size slabs. Micro-batch k of every
    step comes from its own random stream (slot k: seeded config.seed for k = 0, the one stream of a
    plain run), and process r draws and trains on slots r, r + world, ... only (drawing costs about half a
    CPU step: no process draws another's); DDP averages the gradients. Each term is normalised by the
    mask voxels of the whole step, so N processes make the update of one process with accumulate N
    (parameters; batch-norm statistics are each micro-batch's). Rank 0 validates, decides (best epoch,
    stopping) for all and writes every file; checkpoints hold every slot's stream."""
    config, reporter = request.config, request.reporter
    if sorted(request.directions) != list(range(1, 7)):
        raise InputError("--direction", f"all ({NAME} trains the six directions at once)",
                         repr(request.directions))
    refuse_other_kinds_options(request)
    world, rank = distributed_context()
    device = training_device(config.device)
    check_amp(config.amp, device)
    use_deterministic_algorithms(config.deterministic)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    torch.manual_seed(config.seed)
    pairs = find_pairs(request.data)
    names = [p.subject for p in pairs]
    training, validation = split_subjects(names, request.validation_fraction, config.seed,
                                          request.validation_subjects)
    tuned = read_manifest(request.init_from) if request.init_from else None  # fine-tuning: its grid and voxel
    targets, grid, voxel = load_dti_targets(pairs, config.depth, request.grid or (tuned and tuned.grid), reporter,
                                            tuned and tuned.data["voxel_size_mm"])
    crop = CROP if CROP % 2**config.depth == 0 and CROP <= min(grid) else None
    subjects = training_subjects(targets)
    train_subjects = [s for s in subjects if s[0] in training]
    validation_subjects = [s for s in subjects if s[0] in validation]
    groups = {p.subject: source_and_subject(p, request.data) for p in pairs}
    heads = SPLIT
    in_channels = INPUT_CHANNELS if not tuned or request.add_direction_channels \
        else tuned.architecture["generator"]["in_channels"]
    network = init_weights(UNetGenerator(in_channels, HEADS[heads], config.ngf, config.depth, dropout=False)).to(
        device, memory_format=memory_format)
    parent = load_parent(network, request.init_from) if request.init_from else None
    best = copy.deepcopy(network)  # the weights of the best validation score so far
    model = nn.parallel.DistributedDataParallel(network) if world > 1 else network
    optimiser = adam(network, config)
    scaler = grad_scaler(config.amp)
    design = torch.from_numpy(design_matrix_per_unit_b().astype(np.float32)).to(device)
    slots = config.accumulate * world
    direction_input = in_channels == INPUT_CHANNELS
    streams = {k: _Batches(train_subjects, crop, torch.Generator().manual_seed(config.seed + SLOT_SEED_STEP * k),
                           groups=[groups[s[0]] for s in train_subjects], direction_input=direction_input)
               for k in range(rank, slots, world)}
    batches = streams.get(0)  # rank 0's: validation
    state = (_load_checkpoint(request.out, network, best, optimiser, streams, slots) if request.resume else None) \
        or {"epoch": 0, "history": [], "seconds": 0.0, "best_epoch": 0, "best_score": None, "slots": slots}
    samples = sum(len(s[4]) for s in train_subjects)
    steps = max(1, samples // (config.batch_size * slots))  # an epoch: about every slab once
    workers = LOADER_WORKERS.get(device.type, 0) if config.loader_workers is None else config.loader_workers
    draws = step_draws(streams, config.batch_size, workers, device.type == "cuda")
    positions = {k: streams[k].generator.get_state() for k in streams}  # each stream after the last step trained
    while state["epoch"] < config.total_epochs and not state.get("stopped_early"):
        epoch, started = state["epoch"], time.perf_counter()
        training_mode(network, keep_statistics=parent is not None)  # again each epoch: validation ends in train()
        for group in optimiser.param_groups:
            group["lr"] = config.learning_rate(epoch)
        sums = {}
        for _ in range(steps):
            drawn = next(draws)
            mine = [drawn[k][0] for k in sorted(drawn)]
            positions.update({k: state for k, (_, state) in drawn.items()})
            for key, value in train_step(model, optimiser, scaler, mine, design, config, world, heads).items():
                sums[key] = sums.get(key, 0.0) + value / steps
        row = {"epoch": epoch + 1, **sums}
        if validation_subjects:
            row.update(from_rank_zero(_validate(network, batches, validation_subjects, design, heads)
                                      if rank == 0 else None, world, rank))
        # model selection and stopping on the validation subjects' score; without them, the last epoch
        score = row.get("val_score", -float(epoch))
        if state["best_score"] is None or score < state["best_score"]:
            state["best_score"], state["best_epoch"] = score, epoch + 1
            best.load_state_dict(network.state_dict())
        elif validation_subjects and epoch + 1 > config.epochs and epoch + 1 - max(state["best_epoch"], config.epochs) \
                >= PATIENCE:  # only once the rate decays: the noisy score (0.1-0.2) must not stop the constant phase
            state["stopped_early"] = epoch + 1
        state["seconds"] += time.perf_counter() - started
        state["history"].append(row)
        state["epoch"] = epoch + 1
        # process r holds slots r, r + world, ...: row j of its block is slot r + j world
        blocks = gather_to_rank_zero(torch.stack([positions[k] for k in sorted(streams)]), world, rank)
        stream_states = {r + j * world: state for r, block in enumerate(blocks) for j, state in enumerate(block)}
        if rank == 0:
            _save_checkpoint(request.out, network, best, optimiser, stream_states, state)
        reporter.progress(f"train {NAME}", state["epoch"] / config.total_epochs,
                          f"epoch {state['epoch']}/{config.total_epochs} "
                          + " ".join(f"{k} {v:.4f}" for k, v in row.items() if k != "epoch"))
    draws.close()  # its loader processes end with it
    out = Path(request.out)
    if rank != 0:
        torch.distributed.barrier()  # until rank 0 has written the package
        return out / MANIFEST
    network = best.eval()
    temperature, brier = 1.0, {}
    if validation_subjects:
        _, voxels = _validate(network, batches, validation_subjects, design, heads, collect=True)
        if voxels is not None and len(voxels[0]):
            temperature, brier = calibrate_temperature(*voxels)
    sha = save_generator_weights(out / "tensor.safetensors", network.state_dict(), request.weights_dtype)
    final = state["history"][state["best_epoch"] - 1] if state["history"] else {}
    parameters = int(sum(p.numel() for p in network.parameters()))
    # a fine-tuned package refuses what its parent was measured to miss (measure it anew with
    # benchmarks/bench_directions.py to change that): without them it would take any triple
    limits = tuned.data.get("accepted_directions") if tuned else None
    inherited = {"accepted_directions": dict(limits, measured=f"inherited from the parent package {request.init_from}: "
                                                             f"{limits.get('measured', '')}")} if limits else {}
    write_manifest(out, {
        **inherited,
        "architecture": {"kind": NAME, "generator": {"in_channels": in_channels, "out_channels": HEADS[heads],
                                                     "ngf": config.ngf, "depth": config.depth},
                         "parameters": parameters, "heads": heads,
                         "margin": MARGIN, "adc_scale_mm2_s": ADC_SCALE, "diagonal_range_units": DIAGONAL_RANGE,
                         "rho_range": RHO_RANGE, "sign_patterns": PATTERNS.tolist(),
                         # softmax temperature of the sign-pattern logits, fitted on the validation subjects
                         # so that v1_confidence is calibrated (least Brier score over TEMPERATURES)
                         "sign_temperature": temperature,
                         "v1_confidence": {"angle_degrees": CONFIDENCE_DEGREES,
                                           "brier_by_temperature": {str(k): round(v, 5) for k, v in brier.items()}}},
        # the denoised diagonal (--assembly network) helps on the phantom but biases real scans' MD and
        # AD (README, Quality): by default the measured diagonal, so MD, is kept
        "assembly": "physics",
        "description": describe(parameters, train_subjects, groups)
                       + (f" Fine-tuned from {Path(parent['package']).name}"
                          + (", the measured directions added to its inputs" if "added_direction_channels" in parent
                             else "") + "." if parent else ""),
        "networks": [{"name": NETWORK, "file": "tensor.safetensors", "sha256": sha, "dtype": request.weights_dtype,
                      "history": state["history"],
                      "validation": {"val_L1": final.get("val_tensor", float("nan")),
                                     **{k: v for k, v in final.items() if k.startswith("val_")}}}],
        "directions": [{"index": i + 1, "gradient_ras": g.round(12).tolist()} for i, g in enumerate(SIEMENS_6_RAS)],
        "gradient_frame": "RAS world (scanner) unit vectors; inputs: ADCs of the measured directions",
        "input_directions": AXES_3_RAS.tolist(), "intensity": asdict(Intensity("relative")),
        "created_by": f"DTISynth {__version__}",
        "grid": list(grid), "voxel_size_mm": voxel, "b_value": 1000.0, "b_range": list(B_TRAINING),
        "training": {"data": str(request.data), "config": asdict(config), "parent": parent,
                     "subjects": [{"subject": s[0], "slices": int(len(s[4])), "b_value": s[5],
                                   "source": groups[s[0]][0], "group": groups[s[0]][1],
                                   "part": "validation" if s[0] in validation else "train"} for s in subjects],
                     "sampling": "stratified by source (top-level data folder), then subject, series, slice",
                     "selection": {"score": "val_fa_abs_wm / 0.08 + val_v1_degrees / 18 on the validation subjects "
                                            f"(own b, SNR {VALIDATION_SNR:g})",
                                   "best_epoch": state["best_epoch"], "stopped_early_at": state.get("stopped_early"),
                                   "patience": PATIENCE, "patience_from_epoch": config.epochs + 1},
                     "samples_per_epoch": int(steps * config.batch_size * slots),
                     "processes": world, "device": device.type, "crop": crop,
                     "augmentation": {"b_s_mm2": list(B_TRAINING), "snr": list(SNR_TRAINING),
                                      "frame_rotation_degrees": TRIPLES[direction_input][0],
                                      "frame_rotation": f"about a random axis by max u^{TRIPLES[direction_input][1]:g}, "
                                                        "u uniform",
                                      "skew_degrees": SKEW_DEGREES, "skew_share": TRIPLES[direction_input][2],
                                      "in_plane": "transpose and flips (the 8 symmetries of the square)",
                                      "noise": "Rician on the b=0 and each diffusion-weighted image"},
                     "seconds": round(state["seconds"], 1)}})
    if world > 1:
        torch.distributed.barrier()
    return out / MANIFEST
