"""Training hyper-parameters (torch-free, so the command line can describe them without loading torch)."""

from dataclasses import dataclass, field

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
    extra: dict = field(default_factory=dict)

    def learning_rate(self, epoch):
        """Constant for `epochs`, then linear decay over `decay_epochs` (the reference's lambda rule)."""
        return self.lr * (1.0 - max(0, epoch + 1 - self.epochs) / (self.decay_epochs + 1))

    @property
    def total_epochs(self):
        return self.epochs + self.decay_epochs
