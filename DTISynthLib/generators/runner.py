"""Running a model package: its networks loaded through the registry (every checksum verified,
nothing unpickled) and run batch-wise in eval mode at a chosen precision.

Eval mode (dropout off, batch norm with its running statistics) makes outputs deterministic on one
machine; precision "bf16" runs under autocast with whatever the kind prepares for it (the
per-direction kind keeps an fp32 output layer).
"""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..core.errors import InputError
from ..core.native_libraries import LOADING
from .package import check_determines_a_tensor, read_manifest, verified_weights
from .registry import kind_of

PRECISIONS = ("fp32", "bf16", "auto")


def load_generators(folder, directions=None, device="cpu"):
    """Load a package's verified networks {key: module in eval mode} and its manifest, each network
    built by the manifest's kind. `directions`: keys of the networks to load (direction indices 1-6
    for a per-direction kind); default all."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    manifest = read_manifest(folder)
    kind = kind_of(manifest)
    files = manifest.network_files()
    wanted = directions or list(files)
    networks = {}
    for key, entry in files.items():
        if key not in wanted:
            continue
        path = verified_weights(folder, entry)
        try:
            state = load_file(str(path), device=str(device))
        except (SafetensorError, OSError, ValueError) as exc:
            raise InputError(path, "a safetensors weights file", f"unreadable content ({exc})") from None
        import torch

        with torch.device("meta"):  # no random initialisation of weights about to be replaced
            network = kind.build(manifest, key)
        template = network.state_dict()
        if set(state) != set(template):
            raise InputError(path, f"the weights of the manifest's architecture ({len(template)} tensors)",
                             f"{len(state)} tensors, {len(set(state) ^ set(template))} names differing")
        wrong = [k for k, v in state.items() if tuple(v.shape) != tuple(template[k].shape)]
        if wrong:
            raise InputError(path, "tensor shapes of the manifest's architecture",
                             f"{wrong[0]} of shape {tuple(state[wrong[0]].shape)}, not {tuple(template[wrong[0]].shape)}")
        network.load_state_dict({k: v.to(template[k].dtype) for k, v in state.items()}, assign=True)
        networks[key] = network.eval()
    return networks, manifest


def _cpuinfo(field):
    """The value of a /proc/cpuinfo field (of the first CPU listed; Linux), or None where there is none."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(field):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def cpu_flags():
    """The CPU's feature flags from /proc/cpuinfo (Linux), or None where there is none."""
    flags = _cpuinfo("flags")
    return None if flags is None else set(flags.split())


def cpu_model():
    """The CPU's model name from /proc/cpuinfo (Linux), or the machine type where there is none: for
    benchmark tables, whose timings mean little without it."""
    import platform

    return _cpuinfo("model name") or platform.machine()


DEVICES = ("auto", "cpu", "cuda")


def pick_device(name):
    """torch.device for --device: auto (a CUDA GPU when there is one, else the CPU), cpu or cuda."""
    import torch

    if name not in DEVICES:
        raise InputError("--device", f"one of {', '.join(DEVICES)}", repr(name))
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device", "a device this machine has (cuda needs a CUDA GPU; auto or cpu run anywhere)",
                         f"cuda, but torch {torch.__version__} sees no CUDA GPU")
    return torch.device(name)


def bf16_is_native(device):
    """Whether `device` (a torch.device) computes bfloat16 in hardware (AMX / AVX512-BF16 CPUs, CUDA
    GPUs from Ampere on); elsewhere bf16 is emulated and slower than fp32. oneDNN reports bf16 support
    on any AVX-512 CPU, where it emulates it (measured 36 s against 26 s in fp32 for six paper-size
    generators on an AVX-512 Xeon without AVX512-BF16), so on Linux the CPU flags decide."""
    import torch

    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    flags = cpu_flags()
    if flags is not None:
        return bool(flags & {"avx512_bf16", "amx_bf16"})
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


class TorchGenerators:
    """The networks of a verified model package: predict(key, inputs, slice_indices).

    The manifest is read at once (a bad one, or an unknown kind, fails before any work); torch and
    the weights load on a background thread, overlapping the DWI's loading and registration (which
    release the GIL), and predict() waits for them.

    precision: "fp32" (full precision throughout), "bf16" (autocast and channels_last, with the
    kind's prepare_inference; differences from fp32 are stated in the README), or "auto" (default):
    bf16 where the hardware computes it natively, fp32 elsewhere.
    """

    def __init__(self, models_dir, device="auto", batch_size=16, precision="auto"):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
        self.manifest = read_manifest(models_dir)
        check_determines_a_tensor(self.manifest)
        self.kind = kind_of(self.manifest)
        self.batch_size = batch_size
        pool = ThreadPoolExecutor(1, thread_name_prefix="dtisynth-load-models")
        self._loading = pool.submit(self._load, models_dir, device, precision)
        pool.shutdown(wait=False)

    def _load(self, models_dir, device, precision):
        with LOADING:  # torch's and the kinds' native libraries load here (core.native_libraries)
            import torch

            device = pick_device(device)
            networks, _ = load_generators(models_dir, device=device)
            if precision == "auto":
                precision = "bf16" if bf16_is_native(device) else "fp32"
            if precision == "bf16":
                networks = {key: self.kind.prepare_inference(network.to(memory_format=torch.channels_last), "bf16")
                            for key, network in networks.items()}
        return networks, device, precision

    @property
    def generators(self):
        return self._loading.result()[0]

    @property
    def device(self):
        return self._loading.result()[1]

    @property
    def precision(self):
        """The precision in use ("fp32" or "bf16"; "auto" resolved)."""
        return self._loading.result()[2]

    def predict(self, key, inputs, slice_indices):
        """Network `key` on inputs (N, C, H, W) in batches -> float32 outputs (N, H, W) for a network with
        one output channel, (N, C_out, H, W) otherwise."""
        import torch

        model = self.generators[key]
        bf16 = self.precision == "bf16"
        outputs = []
        memory_format = torch.channels_last if bf16 else torch.contiguous_format
        with torch.no_grad(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
            for start in range(0, len(inputs), self.batch_size):
                x = torch.from_numpy(np.ascontiguousarray(inputs[start:start + self.batch_size])).to(
                    self.device, memory_format=memory_format)
                y = model(x)
                outputs.append((y[:, 0] if y.shape[1] == 1 else y).float().cpu().numpy())
        return np.concatenate(outputs)
