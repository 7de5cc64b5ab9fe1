"""Tensor fit + maps on a full-size 128 x 128 x 76 volume: DTISynth against MRtrix3 and dipy.

Two inputs: b0 + 6 directions (the seed paper's DTI; exactly determined, so no weighting runs) and
b0 + 30 directions (over-determined: the IWLS iterations run). Prints, for each, a table of wall
time (median and min of --repeats runs), peak memory and ratios against MRtrix3, all measured in
this one run. Every tool runs in its own process with 2 threads.
Targets (issue 2, b0 + 6): ours <= 1.0x MRtrix3's wall time; our memory <= 3x the input array; (issue 38)
the `fit` command without --mask (its brain mask computed) <= 0.6x MRtrix3 end to end (MRtrix3 given the mask).

    .venv/bin/python benchmarks/bench_tensor_fit.py [--repeats 5] [--directions 6 30] [--keep DIR]
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

THREADS = "2"
ENV = dict(os.environ, OMP_NUM_THREADS=THREADS, OPENBLAS_NUM_THREADS=THREADS, MKL_NUM_THREADS=THREADS)


def _status_kib(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def child_ours(dwi_path, mask_path, out_dir):
    """Measured in a fresh process: load, then fit + all maps in memory; then write (timed apart).

    Memory: growth of the process's peak RSS during fit + maps (outputs included), from a peak counter
    reset after loading (Linux /proc/self/clear_refs), so loading copies do not count.
    """
    from DTISynthLib.fit.tensor_fit import fit_tensors
    from DTISynthLib.fit.tensor_maps import compute_maps
    from DTISynthLib.io.files import load_dwi, load_mask
    from DTISynthLib.service.fit import write_fit_outputs

    dwi = load_dwi(dwi_path)
    mask = load_mask(mask_path, dwi)
    before = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    start = time.perf_counter()
    fit = fit_tensors(dwi, mask, "iwls")
    maps = compute_maps(fit.tensor, fit.mask, ("fa", "md", "ad", "rd", "color", "v1"), "keep")
    compute = time.perf_counter() - start
    working = (_status_kib("VmHWM") - before) * 1024
    start = time.perf_counter()
    write_fit_outputs(out_dir, fit, maps, dwi.affine, "nifti", {})
    write = time.perf_counter() - start
    print(json.dumps({"compute_s": compute, "write_s": write, "working_bytes": working,
                      "input_bytes": int(dwi.data.nbytes), "voxels": int(mask.sum())}))


def child_dipy(dwi_path, mask_path):
    import nibabel as nib
    import numpy as np
    from dipy.core.gradients import gradient_table
    from dipy.reconst.dti import TensorModel

    from DTISynthLib.io.files import load_dwi

    dwi = load_dwi(dwi_path)
    mask = np.asarray(nib.load(str(mask_path)).dataobj) > 0
    table = gradient_table(dwi.bvals, bvecs=dwi.gradients)
    start = time.perf_counter()
    fit = TensorModel(table, fit_method="WLS").fit(dwi.data, mask=mask)
    _ = fit.fa, fit.md, fit.ad, fit.rd, fit.color_fa, fit.evecs[..., 0]
    print(json.dumps({"compute_s": time.perf_counter() - start,
                      "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))


def run_measured(cmd, env=None):
    """Run a command in a fresh process (environment `env`, default ENV); return (wall seconds, peak RSS
    MiB of that process, stdout)."""
    wrapper = ("import resource, subprocess, sys, time\n"
               "t = time.perf_counter(); r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
               "w = time.perf_counter() - t\n"
               "sys.stderr.write(r.stderr)\n"
               "print(r.stdout, end='')\n"
               "print('MEASURE', w, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r.returncode)\n")
    run = subprocess.run([sys.executable, "-c", wrapper, *map(str, cmd)], capture_output=True, text=True,
                         env=ENV if env is None else env)
    lines = run.stdout.strip().splitlines()
    _, wall, rss_kb, code = lines[-1].split()
    if int(code) != 0:
        raise RuntimeError(f"{cmd[0]} failed:\n{run.stderr}")
    return float(wall), int(rss_kb) / 1024, "\n".join(lines[:-1])


def make_input(folder, directions):
    import numpy as np

    from DTISynthLib.core.dwi import check_dwi
    from DTISynthLib.core.gradient_schemes import SIEMENS_6_RAS
    from DTISynthLib.io.files import save_dwi, save_volume
    from DTISynthLib.simulation.numerical_phantom import make_fibre_phantom

    if directions == 6:
        gradients = SIEMENS_6_RAS
    else:
        gradients = np.random.default_rng(directions).normal(size=(directions, 3))
        gradients /= np.linalg.norm(gradients, axis=1)[:, None]
    folder.mkdir(parents=True, exist_ok=True)
    dwi, truth = make_fibre_phantom(shape=(128, 128, 76), rotation_degrees=(8, 0, 12), snr=30, seed=1,
                                    bvals=np.r_[0.0, np.full(directions, 1000.0)],
                                    gradients=np.vstack([np.zeros(3), gradients]))
    save_dwi(folder / "dwi.nii", check_dwi(dwi))
    save_volume(folder / "mask.nii", (truth["labels"] > 0).astype(np.uint8), dwi.affine)
    return folder / "dwi.nii", folder / "mask.nii"


def bench(work, directions, repeats):
    dwi_path, mask_path = make_input(work, directions)
    me = Path(__file__).resolve()
    rows = {}
    for _ in range(repeats):
        wall, rss, out = run_measured([sys.executable, me, "--child", "ours", dwi_path, mask_path, work / "ours"])
        ours = json.loads(out)
        rows.setdefault("DTISynth fit + maps (in memory)", []).append((ours["compute_s"], ours["working_bytes"] / 2**20))
        rows.setdefault("DTISynth write (8 .nii.gz)", []).append((ours["write_s"], None))
        wall, rss, _ = run_measured([sys.executable, "-m", "DTISynthLib", "fit", dwi_path, "--mask", mask_path,
                                     "--out", work / "cli", "--maps", "fa,md,ad,rd,color,v1"])
        rows.setdefault("DTISynth CLI end to end (peak RSS)", []).append((wall, rss))
        wall, rss, _ = run_measured([sys.executable, "-m", "DTISynthLib", "fit", dwi_path, "--out", work / "cli-no-mask",
                                     "--maps", "fa,md,ad,rd,color,v1"])  # the usual call: the mask computed
        rows.setdefault("DTISynth CLI end to end, no --mask (peak RSS)", []).append((wall, rss))
        t_wall, t_rss, _ = run_measured(["dwi2tensor", "-quiet", "-force", "-nthreads", THREADS, "-mask", mask_path,
                                         "-fslgrad", work / "dwi.bvec", work / "dwi.bval", dwi_path, work / "dt.nii"])
        m_wall, m_rss, _ = run_measured(["tensor2metric", "-quiet", "-force", "-nthreads", THREADS, work / "dt.nii",
                                         "-mask", mask_path, "-fa", work / "fa.nii", "-adc", work / "md.nii",
                                         "-ad", work / "ad.nii", "-rd", work / "rd.nii", "-vector", work / "v1.nii"])
        rows.setdefault("MRtrix3 dwi2tensor + tensor2metric", []).append((t_wall + m_wall, max(t_rss, m_rss)))
        wall, rss, out = run_measured([sys.executable, me, "--child", "dipy", dwi_path, mask_path])
        rows.setdefault("dipy TensorModel WLS (in memory, peak RSS)", []).append((json.loads(out)["compute_s"], rss))
    input_mib = ours["input_bytes"] / 2**20
    mrtrix = statistics.median(t for t, _ in rows["MRtrix3 dwi2tensor + tensor2metric"])
    print(f"\nTensor fit + maps, 128x128x76 b0 + {directions} directions ({ours['voxels']} mask voxels, input array "
          f"{input_mib:.1f} MiB), {THREADS} threads, {repeats} repeats, {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"{'tool':46} {'median s':>9} {'min s':>7} {'x MRtrix3':>9} {'memory MiB':>11} {'x input':>8}")
    for name, values in rows.items():
        times = [t for t, _ in values]
        memory = [m for _, m in values if m is not None]
        mem = f"{max(memory):11.1f} {max(memory) / input_mib:8.2f}" if memory else f"{'':11} {'':8}"
        print(f"{name:46} {statistics.median(times):9.3f} {min(times):7.3f} {statistics.median(times) / mrtrix:9.2f} {mem}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--directions", type=int, nargs="+", default=[6, 30])
    parser.add_argument("--keep", help="folder to keep inputs and outputs in (default: a temporary one)")
    args = parser.parse_args()
    if shutil.which("dwi2tensor") is None:
        sys.exit("MRtrix3 is needed (Testing/install_mrtrix3.sh)")
    work = Path(args.keep or tempfile.mkdtemp(prefix="dtisynth-bench-"))
    for directions in args.directions:
        bench(work / f"b0_{directions}", directions, args.repeats)
    print("memory: DTISynth in-memory row = growth of peak RSS during fit + maps (outputs included);"
          " other rows = peak RSS of the whole process.")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child_ours(*sys.argv[3:6]) if sys.argv[2] == "ours" else child_dipy(*sys.argv[3:5])
    else:
        main()
