"""Paper 2's single-voxel denoising autoencoder, in numpy.

Input and output: one voxel's diffusion attenuations S/S0 (unitless, one per diffusion-weighted
volume, in the acquisition's volume order; the b=0 volumes are left out, their attenuation is 1).
Fully connected, sized from the input: n -> 4n/6 -> n/8 -> 4n/6 -> n (each at least 1), ReLU after
every layer but the last, mean squared error, Adam (learning rate 5e-4, betas 0.9 / 0.999, eps 1e-8),
batch 100, 50 epochs; the paper trains on 250 000 voxels and validates on 50 000.
Denoising: the input is the clean attenuation with Rician noise of SD `noise` (sigma / S0, the scan's
noise level), the target the clean attenuation. The paper draws one noisy copy; here the noise is
drawn afresh every epoch (the same clean voxels, more noise realisations) from a seeded generator,
so a run is reproducible.
Why numpy and not torch: the layers are a few dozen units wide, so a training step is ~40 tiny
array operations where torch's per-operation dispatch and autograd cost ~10 times numpy's (the
benchmark measures both); the gradients are checked against torch's autograd in the tests.
"""

import time
from dataclasses import dataclass, field

import numpy as np

from ..fit.tensor_fit import single_threaded_blas
from ..simulation.signals import add_rician_noise

HIDDEN_FRACTIONS = (4 / 6, 1 / 8)  # of the input size: the paper's hourglass
BETAS = (0.9, 0.999)
EPS = 1e-8


def layer_sizes(n_inputs, fractions=HIDDEN_FRACTIONS, min_hidden=1):
    """(n, a n, b n, a n, n) for fractions (a, b), rounded, each hidden layer at least `min_hidden` units:
    paper 2's (4/6, 1/8) and 1 by default."""
    outer, inner = (max(min_hidden, int(round(n_inputs * f))) for f in fractions)
    return (n_inputs, outer, inner, outer, n_inputs)


@dataclass
class AutoencoderConfig:
    epochs: int = 50
    batch_size: int = 100
    lr: float = 5e-4
    seed: int = 0
    hidden_fractions: tuple = HIDDEN_FRACTIONS
    min_hidden: int = 1  # units in each hidden layer at least (paper 2: 1)


@dataclass
class Autoencoder:
    """Weights (float32): weights[k] (in, out) and biases[k] (out,) of layer k; `noise` the attenuation
    noise SD it was trained at; per-epoch mean squared errors and the training time."""

    weights: list
    biases: list
    noise: float = 0.0
    train_mse: list = field(default_factory=list)
    validation_mse: list = field(default_factory=list)
    seconds: float = 0.0
    restarts: int = 0
    dead_units: int = 0  # bottleneck units zero for every validation input, after training

    @property
    def n_inputs(self):
        return self.weights[0].shape[0]


def initial_autoencoder(n_inputs, rng, fractions=HIDDEN_FRACTIONS, min_hidden=1):
    """Weights and biases drawn from U(-1/sqrt(fan_in), 1/sqrt(fan_in)), as torch.nn.Linear does."""
    sizes = layer_sizes(n_inputs, fractions, min_hidden)
    weights, biases = [], []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
        bound = 1.0 / np.sqrt(fan_in)
        weights.append(rng.uniform(-bound, bound, (fan_in, fan_out)).astype(np.float32))
        biases.append(rng.uniform(-bound, bound, fan_out).astype(np.float32))
    return Autoencoder(weights, biases)


def forward(model, x):
    """Activations of every layer for inputs x (N, n): [x, h1, h2, h3, output]."""
    activations = [x]
    last = len(model.weights) - 1
    for k, (w, b) in enumerate(zip(model.weights, model.biases, strict=True)):
        z = activations[-1] @ w + b
        activations.append(z if k == last else np.maximum(z, 0.0))
    return activations


def gradients(model, x, target):
    """(mean squared error over all elements, weight gradients, bias gradients) for one batch."""
    activations = forward(model, x)
    error = activations[-1] - target
    loss = float(np.mean(error * error))
    delta = (2.0 / error.size) * error
    weight_grads, bias_grads = [None] * len(model.weights), [None] * len(model.weights)
    for k in reversed(range(len(model.weights))):
        weight_grads[k] = activations[k].T @ delta
        bias_grads[k] = delta.sum(axis=0)
        if k:
            delta = (delta @ model.weights[k].T) * (activations[k] > 0)
    return loss, weight_grads, bias_grads


class _Adam:
    """Adam as torch.optim.Adam with its defaults (no weight decay, no amsgrad), in place.

    Takes the model's weights and biases into one float32 array (the model keeps views of it), so a
    step is a handful of operations over that array instead of a handful per layer: training steps
    are small enough that numpy's per-call cost was half the step."""

    def __init__(self, model, lr):
        params = model.weights + model.biases
        self.flat = np.concatenate([p.ravel() for p in params])
        views, start = [], 0
        for p in params:
            views.append(self.flat[start:start + p.size].reshape(p.shape))
            start += p.size
        model.weights, model.biases = views[:len(model.weights)], views[len(model.weights):]
        self.lr, self.step_count = lr, 0
        self.first = np.zeros_like(self.flat)
        self.second = np.zeros_like(self.flat)

    def step(self, grads):
        """One update from gradients in the model's order (weights, then biases)."""
        self.step_count += 1
        b1, b2 = BETAS
        correction1, correction2 = 1 - b1**self.step_count, 1 - b2**self.step_count
        g = np.concatenate([grad.ravel() for grad in grads])
        m, v = self.first, self.second
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * g * g
        self.flat -= (self.lr / correction1) * m / (np.sqrt(v / correction2) + EPS)


def reconstruct(model, attenuations, chunk=65536):
    """The autoencoder's output (N, n) for attenuations (N, n), float32."""
    attenuations = np.asarray(attenuations, dtype=np.float32)
    return np.concatenate([forward(model, attenuations[s:s + chunk])[-1]
                           for s in range(0, len(attenuations), chunk)] or [np.zeros((0, model.n_inputs), np.float32)])


def train_autoencoder(train, validation, noise, config=AutoencoderConfig(), progress=None):
    """Train on clean attenuations `train` (N, n), scoring each epoch on `validation` (M, n) with one
    fixed noisy draw; inputs get Rician noise of SD `noise` (attenuation units, sigma / S0).
    progress(epoch, train_mse, validation_mse) after each epoch. Returns an Autoencoder. BLAS runs
    single-threaded: its threads only add overhead on matrices this small.

    Dead units: a ReLU unit that is zero for every input has no gradient and never learns again. When
    all bottleneck units die the output is a constant (validation MSE = the data's variance; 1 of 3
    seeds on a 15-direction scan with the paper's 2-unit bottleneck): a run whose validation MSE after
    the epoch that completes COLLAPSE_STEPS optimiser steps (or after the last epoch, if fewer) is
    still above COLLAPSE_FRACTION of the validation data's variance starts again from a new
    initialisation (up to MAX_RESTARTS times; the last attempt is kept); `restarts` records how many.
    When only some die the network can stall near its first epochs' error: with a 6-unit bottleneck on
    the six shared scans (README), the multi-tensor schemes' networks with 3-5 of 6 units dead scored
    23-60 degrees of direction error, those with one dead 7.7-15.6 (the noisiest scan aside). One dead
    unit is common, so restarting on any does not cure it (on a 16-direction test set each of five
    initialisations lost units within 1200 steps): `dead_units` (bottleneck units dead after training)
    is recorded for the reader to judge."""
    with single_threaded_blas():
        for attempt in range(MAX_RESTARTS + 1):
            model = _train(train, validation, noise, config, progress, attempt)  # None: start again
            if model is not None:
                break
    model.restarts = attempt
    return model


COLLAPSE_STEPS = 5000  # two of the paper's epochs
COLLAPSE_FRACTION = 0.8
MAX_RESTARTS = 4


def collapsed(validation_mse, validation):
    """Whether a validation MSE is what a constant output would score on `validation` (N, n)."""
    return validation_mse >= COLLAPSE_FRACTION * float(np.mean(np.var(validation, axis=0)))


def dead_bottleneck_units(model, inputs):
    """How many bottleneck units are zero for every one of `inputs` (N, n), so never learn again."""
    bottleneck = forward(model, np.asarray(inputs, dtype=np.float32))[len(model.weights) // 2]
    return int(np.count_nonzero(~(bottleneck > 0).any(axis=0)))


def _train(train, validation, noise, config, progress, attempt):
    rng = np.random.default_rng([config.seed, attempt])
    clean = np.asarray(train, dtype=np.float32)
    val_clean = np.asarray(validation, dtype=np.float32)
    val_noisy = add_rician_noise(val_clean, noise, rng)
    model = initial_autoencoder(clean.shape[1], rng, config.hidden_fractions, config.min_hidden)
    model.noise = float(noise)
    optimiser = _Adam(model, config.lr)
    start = time.perf_counter()
    for epoch in range(config.epochs):
        order = rng.permutation(len(clean))
        target_all = clean[order]
        noisy_all = add_rician_noise(target_all, noise, rng)
        total = 0.0
        for first in range(0, len(target_all), config.batch_size):
            target = target_all[first:first + config.batch_size]
            loss, weight_grads, bias_grads = gradients(model, noisy_all[first:first + config.batch_size], target)
            optimiser.step(weight_grads + bias_grads)
            total += loss * len(target)
        model.train_mse.append(total / len(target_all))
        model.validation_mse.append(float(np.mean((reconstruct(model, val_noisy) - val_clean) ** 2)))
        if progress:
            progress(epoch + 1, model.train_mse[-1], model.validation_mse[-1])
        steps = (epoch + 1) * -(-len(clean) // config.batch_size)
        checked_now = steps >= COLLAPSE_STEPS and steps - -(-len(clean) // config.batch_size) < COLLAPSE_STEPS
        if (checked_now or (epoch + 1 == config.epochs and steps < COLLAPSE_STEPS)) and attempt < MAX_RESTARTS \
                and collapsed(model.validation_mse[-1], val_clean):
            return None
    model.seconds = time.perf_counter() - start
    model.dead_units = dead_bottleneck_units(model, val_noisy)
    return model
