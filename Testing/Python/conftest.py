import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("DTISYNTH_SHARED", REPO.parent / "shared"))
REAL_DATASETS = ["dev_philips_achieva_b2000", "dev_siemens_prisma_xa30_PA_b2500", "dev_siemens_prisma_xa30_AP_b2500"]
ALL_REAL_DATASETS = REAL_DATASETS + ["dev_philips_achieva_b1000", "dev_siemens_prisma_sag_b2000", "dev_uih_umr770_b930"]


def fail_on_call(monkeypatch, module, name, call_number, error):
    """Make module.name raise `error` on its call_number-th call (a disk that fills up midway)."""
    real = getattr(module, name)
    calls = {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call_number:
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, failing)


def random_gradient_table(n_directions, b=1000.0, seed=1, n_b0=1):
    """(bvals, gradients): n_b0 b=0 volumes, then random unit directions (RAS) at b (s/mm^2)."""
    g = np.random.default_rng(seed).normal(size=(n_directions, 3))
    g /= np.linalg.norm(g, axis=1)[:, None]
    return np.r_[np.zeros(n_b0), np.full(n_directions, b)], np.vstack([np.zeros((n_b0, 3)), g])


def real_dwi_path(name):
    path = SHARED / "data" / "real" / name / f"{name}.nii.gz"
    if not path.exists():
        message = f"real scanner data not found at {path} (set DTISYNTH_SHARED)"
        if os.environ.get("CI"):
            pytest.fail(message + ": CI runs with shared/ beside the clone")
        pytest.skip(message)
    return path


@pytest.fixture(params=REAL_DATASETS)
def real_dwi(request):
    return real_dwi_path(request.param)


@pytest.fixture(params=REAL_DATASETS + ["oblique_phantom"])
def peer_dwi(request, tmp_path_factory):
    """Inputs for the peer comparisons: every real scan and a noisy, oblique, 30-direction phantom."""
    if request.param != "oblique_phantom":
        return real_dwi_path(request.param)
    from DTISynthLib.core.dwi import check_dwi
    from DTISynthLib.io.files import save_dwi
    from DTISynthLib.simulation.numerical_phantom import make_fibre_phantom

    bvals, gradients = random_gradient_table(30, seed=7)
    dwi, _ = make_fibre_phantom(shape=(40, 36, 20), rotation_degrees=(20, -15, 35), snr=25, seed=3,
                                bvals=bvals, gradients=gradients)
    path = tmp_path_factory.mktemp("phantom") / "oblique_phantom.nii.gz"
    save_dwi(path, check_dwi(dwi))
    return path


def run_mrtrix(dwi_path, out_dir, mask_path=None, ols=False):
    """MRtrix3 dwi2tensor + tensor2metric on a NIfTI DWI with FSL gradients -> dict of arrays."""
    import nibabel as nib

    if shutil.which("dwi2tensor") is None:
        pytest.fail("MRtrix3 is required for the peer tests (Testing/install_mrtrix3.sh installs it)")
    stem = str(dwi_path)[: -len(".nii.gz")] if str(dwi_path).endswith(".nii.gz") else str(dwi_path)[:-4]
    out_dir = Path(out_dir)
    tensor = out_dir / "mrtrix_tensor.nii"
    cmd = ["dwi2tensor", "-quiet", "-force", "-nthreads", "1", "-fslgrad", stem + ".bvec", stem + ".bval",
           str(dwi_path), str(tensor)]
    if mask_path:
        cmd[1:1] = ["-mask", str(mask_path)]
    if ols:
        cmd[1:1] = ["-ols", "-iter", "0"]  # -ols alone only unweights the first of 3 passes (3.0.3)
    subprocess.run(cmd, check=True)
    names = {"fa": "-fa", "md": "-adc", "ad": "-ad", "rd": "-rd", "v1": "-vector"}
    metric_cmd = ["tensor2metric", "-quiet", "-force", "-nthreads", "1", str(tensor)]
    for name, flag in names.items():
        metric_cmd += [flag, str(out_dir / f"mrtrix_{name}.nii")]
    metric_cmd += ["-modulate", "none"]
    subprocess.run(metric_cmd, check=True)
    result = {name: np.asarray(nib.load(str(out_dir / f"mrtrix_{name}.nii")).dataobj, dtype=np.float64)
              for name in names}
    result["tensor"] = np.asarray(nib.load(str(tensor)).dataobj, dtype=np.float64)
    return result


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """A model package of six tiny generators (ngf 4, depth 5, one epoch on two 32x32x19 phantom
    subjects, relative intensities): real files through the real training path, in seconds."""
    from DTISynthLib.service.requests import TrainingRequest
    from DTISynthLib.service.train import train
    from DTISynthLib.simulation.cohort import write_cohort

    folder = tmp_path_factory.mktemp("models")
    write_cohort(folder / "cohort", 2, "sampled", seed=1, grid=(32, 32, 19))
    train(TrainingRequest(data=folder / "cohort", out=folder / "m", epochs=1, ngf=4, ndf=4, depth=5,
                          intensity="relative", grid=(32, 32), validation_fraction=0.5))
    return folder / "m"


def write_noisier_synthetic_cohort(root, subjects, noise):
    """Tiny phantom subjects (32 x 32 x 12, seed 4) under root/cohort and, under root/synthetic/<subject>/,
    a `synthesize`-style folder whose DTI is the acquired one plus Gaussian noise of SD `noise` x the
    b=0 maximum (rectified): a synthetic DTI known to be the noisier one. Returns (cohort, synthetic)."""
    from DTISynthLib.core.dwi import DWI
    from DTISynthLib.core.output_layout import SynthesisOutput
    from DTISynthLib.io.files import load_dwi, save_dwi
    from DTISynthLib.simulation.cohort import write_cohort

    root = Path(root)
    write_cohort(root / "cohort", subjects, "sampled", seed=4, grid=(32, 32, 12))
    rng = np.random.default_rng(1)
    for path in sorted((root / "cohort").rglob("*_acq-dti6_dwi.nii.gz")):
        dti = load_dwi(path)
        noisy = np.abs(dti.data + rng.normal(0, noise * dti.data[..., 0].max(), dti.data.shape)).astype(np.float32)
        folder = root / "synthetic" / path.name.split("_")[0]
        folder.mkdir(parents=True)
        save_dwi(SynthesisOutput(folder).dti_nifti, DWI(noisy, dti.affine, dti.bvals, dti.gradients, "noisier"))
    return root / "cohort", root / "synthetic"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ReviewServer:
    """`dtisynth review serve STUDY` in a child process, on the port the study's links were printed for."""

    def __init__(self, study, port):
        self.study, self.port = study, port
        self.base = f"http://127.0.0.1:{self.port}"
        self.start()

    def start(self):
        env = dict(os.environ, PYTHONPATH=str(REPO))
        # SIGINT as a terminal leaves it (Python's KeyboardInterrupt), even when the tests run with it ignored
        # (a background job): Ctrl-C is how serve is stopped, and is tested.
        self.process = subprocess.Popen([sys.executable, "-m", "DTISynthLib", "review", "serve", str(self.study)],
                                        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                urllib.request.urlopen(self.base + "/favicon.ico", timeout=1)
                return
            except (urllib.error.URLError, ConnectionError):
                assert self.process.poll() is None, self.process.stderr.read().decode()
                time.sleep(0.2)
        raise AssertionError("the review server did not start")

    def kill(self, sig=signal.SIGKILL):
        self.process.send_signal(sig)
        self.process.wait(10)

    def get(self, path):
        try:
            with urllib.request.urlopen(self.base + path, timeout=10) as response:
                return response.status, response.read(), response.headers
        except urllib.error.HTTPError as error:
            return error.code, error.read(), error.headers

    def post(self, path, body, raw=None, headers=None):
        data = raw if raw is not None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data, method="POST",
                                         headers=headers or {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")
