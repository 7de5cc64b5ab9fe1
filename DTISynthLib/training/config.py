"""Training hyper-parameters (torch-free, so the command line can describe them without loading torch)."""

from dataclasses import dataclass, field
from pathlib import Path

from ..core.progress import NullReporter

AMP_MODES = ("none", "bf16", "fp16")


@dataclass
class TrainConfig:
    epochs: int = 100
    decay_epochs: int = 0
    lr: float = 2e-4
    beta1: float = 0.5
    lambda_l1: float = 100.0
    batch_size: int = 1
    accumulate: int = 1
    ngf: int = 64
    ndf: int = 64
    depth: int = 7
    n_layers: int = 3
    dropout: bool = True
    seed: int = 0
    deterministic: bool = True
    amp: str = "none"
    channels_last: bool = False
    flip_augment: bool = False
    device: str = "auto"
    loader_workers: int = None  # processes drawing batches beside the training (None: the kind's default)
    extra: dict = field(default_factory=dict)

    def learning_rate(self, epoch):
        """Constant for `epochs`, then linear decay over `decay_epochs` (the reference's lambda rule)."""
        return self.lr * (1.0 - max(0, epoch + 1 - self.epochs) / (self.decay_epochs + 1))

    @property
    def total_epochs(self):
        return self.epochs + self.decay_epochs


@dataclass
class TrainingRun:
    """One `dtisynth train` run, as a generator kind's training step receives it.

    data: folder of paired acquisitions (training.data.find_pairs); out: the model package folder;
    intensity: the mapping to network units (generators.intensity.Intensity); directions: DTI
    directions (1-6) to train (a kind that trains all directions at once refuses a subset); grid:
    slice grid (H, W) or None for the data's; register: the DWI is registered to the DTI b=0;
    validation_subjects: subject names held out for validation (instead of a random
    validation_fraction of them). intensity_chosen: whether the command chose the intensity mode (else
    `intensity` is the default, paper): a kind that has its own refuses another one chosen. init_from:
    the parent package fine-tuning starts from (its weights; the kind's training checks it);
    add_direction_channels: the new network also reads the measured directions (tensor-unet).
    """

    data: Path
    out: Path
    config: TrainConfig
    intensity: object
    directions: list = field(default_factory=lambda: list(range(1, 7)))
    grid: tuple = None
    validation_fraction: float = 0.1
    register: bool = True
    resume: bool = False
    weights_dtype: str = "float32"
    reporter: object = field(default_factory=NullReporter)
    validation_subjects: list = None
    intensity_chosen: bool = False
    init_from: Path = None  # a package of the kind whose weights start the training (fine-tuning)
    add_direction_channels: bool = False  # with init_from: widen a 12-input tensor-unet parent to 21 inputs
