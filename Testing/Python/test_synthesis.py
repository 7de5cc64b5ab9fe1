"""The synthesis pipeline: assembly, frames, registration, resampling, determinism, bad input."""

import json

import numpy as np
import pytest
from conftest import fail_on_call

from DTISynthLib.core.dwi import DWI, check_dwi
from DTISynthLib.core.errors import InputError
from DTISynthLib.core.gradient_schemes import SIEMENS_6_RAS
from DTISynthLib.core.model_grid import ModelGrid
from DTISynthLib.fit.tensor_fit import fit_tensors
from DTISynthLib.fit.tensor_maps import compute_maps
from DTISynthLib.generators import runner
from DTISynthLib.generators.intensity import Intensity
from DTISynthLib.generators.manifest import FORMAT, FORMAT_VERSION, Manifest
from DTISynthLib.generators.runner import TorchGenerators
from DTISynthLib.registration.rigid import resample_rigid, rigid_difference
from DTISynthLib.simulation.cohort import PAPER_GRID, draw_subject, simulate_subject
from DTISynthLib.synthesis import writing
from DTISynthLib.synthesis.pipeline import synthesize_dwi
from DTISynthLib.synthesis.writing import write_synthesis

GRID = (64, 64, 38)


class FakeTruthGenerators:
    """A named fake generator: returns the true target slices of each direction (network units).

    It proves the assembly (intensity mapping, gradient table, frames) independently of model quality.
    """

    def __init__(self, dti, intensity):
        units = intensity.to_network(dti.data[..., 1:], dti.mean_b0()[..., None])  # (x, y, z, 6)
        self.units = np.transpose(units, (2, 3, 1, 0))  # (z, 6, y, x)

    def predict(self, direction, inputs, slice_indices):
        assert inputs.shape[1] == 3
        return self.units[slice_indices, direction - 1]


def manifest_for(affine, grid, intensity="relative", b_value=1000.0):
    """The Manifest of a per-direction package on this grid, for stand-in generators (its weights files
    are never opened)."""
    return Manifest({"format": FORMAT, "format_version": FORMAT_VERSION, "architecture": {}, "b_value": b_value,
                     "grid": list(grid[:2]), "voxel_size_mm": np.linalg.norm(affine[:3, :3], axis=0).tolist(),
                     "intensity": {"mode": intensity, "quantise_8bit": False},
                     "directions": [{"index": i + 1, "gradient_ras": g.tolist(), "sha256": "0" * 64,
                                     "file": f"direction_{i + 1}.safetensors"} for i, g in enumerate(SIEMENS_6_RAS)]})


@pytest.fixture(scope="module")
def still_subject():
    """Noise-free, no motion: the DWI and the DTI see the same head."""
    return simulate_subject(draw_subject("sub-001", 4, vary=False), "sampled", grid=GRID, noise=False)


@pytest.fixture(scope="module")
def unseen_subject():
    """A full-size phantom subject whose seed is in no training cohort, and its noise-free twin (same
    seed): the shipped sets' checks share it."""
    params = draw_subject("sub-009", 424242)
    return simulate_subject(params, "sampled"), simulate_subject(params, "sampled", noise=False)


def test_truth_stub_reproduces_the_ground_truth_tensors(still_subject):
    subject = still_subject
    manifest = manifest_for(subject.dti.affine, GRID)
    fake = FakeTruthGenerators(subject.dti, Intensity("relative"))
    # the generators' outputs as they are: the DTI's own directions come back unchanged
    result = synthesize_dwi(check_dwi(subject.dwi), fake, manifest, assembly="network")
    dti = result.dti
    np.testing.assert_allclose(dti.gradients[1:], SIEMENS_6_RAS)
    np.testing.assert_allclose(dti.bvals, [0] + [1000] * 6)
    brain = subject.tissue.sum(-1) > 0.5
    np.testing.assert_allclose(dti.data[brain], subject.dti.data[brain], rtol=1e-5, atol=1e-3)
    tensor = fit_tensors(check_dwi(dti), brain).tensor
    fa = compute_maps(tensor, brain, ("fa",))["fa"]
    true_fa = compute_maps(subject.truth_tensor, brain, ("fa",))["fa"]
    assert np.abs(fa - true_fa)[brain].max() < 1e-4
    np.testing.assert_allclose(tensor[brain], subject.truth_tensor[brain], atol=1e-8)
    assert result.report["registration"]["performed"] is False
    assert result.report["axis_angle_degrees"] == [0.0, 0.0, 0.0]


def test_registration_to_a_separate_b0_recovers_the_misregistration():
    subject = simulate_subject(draw_subject("sub-002", 11, snr=40.0), "sampled", grid=GRID)
    manifest = manifest_for(subject.dti.affine, GRID)
    fake = FakeTruthGenerators(subject.dti, Intensity("relative"))
    b0 = (subject.dti.mean_b0(), subject.dti.affine, "dti_b0.nii.gz")
    result = synthesize_dwi(check_dwi(subject.dwi), fake, manifest, b0=b0)
    matrix = np.asarray(result.report["registration"]["matrix_ras"])
    points = np.argwhere(subject.tissue.sum(-1) > 0.5) @ subject.dti.affine[:3, :3].T + subject.dti.affine[:3, 3]
    angle, _, max_mm = rigid_difference(matrix, subject.parameters.misregistration, points)
    assert angle < 0.5 and max_mm < 0.5, (angle, max_mm)
    assert result.report["registration"]["correlation"] > 0.93
    assert not any("another subject" in w for w in result.report["warnings"])
    np.testing.assert_array_equal(result.dti.data[..., 0], subject.dti.mean_b0())  # the reference b=0


def test_a_b0_of_another_subject_is_warned_with_its_correlation():
    # The paper's in-plane grid, as calibrated (on coarser grids the phantom's subjects blur into one
    # another), and its central 30 slices.
    grid = PAPER_GRID[:2] + (30,)
    subject = simulate_subject(draw_subject("sub-002", 11, snr=40.0), "sampled", grid=grid)
    other = simulate_subject(draw_subject("sub-003", 12, snr=40.0), "sampled", grid=grid)
    manifest = manifest_for(subject.dti.affine, grid)
    fake = FakeTruthGenerators(subject.dti, Intensity("relative"))
    b0 = (other.dti.mean_b0(), other.dti.affine, "sub-003_b0.nii.gz")
    result = synthesize_dwi(check_dwi(subject.dwi), fake, manifest, b0=b0)
    correlation = result.report["registration"]["correlation"]
    assert 0.6 < correlation < 0.93
    assert len(result.report["registration"]["candidates_correlation"]) == 6  # no early stop: every start searched
    warning = [w for w in result.report["warnings"] if "another subject" in w]
    assert len(warning) == 1 and "sub-003_b0.nii.gz" in warning[0] and f"{correlation:.3f}" in warning[0]


def test_a_4d_b0_reference_is_its_own_b0_volumes_by_its_b_values(tmp_path, still_subject):
    """`--b0` of a 4D DTI whose first volume is b=1000 used that volume as the reference b=0 (and warned
    it might be another subject's). Now its b=0 volumes, by the .bval beside a NIfTI or a NRRD's gradient
    table, averaged as the DWI's own (DWI.mean_b0); a 4D file without b-values or without a b=0 volume
    is refused naming it; a 3D one is taken as it is."""
    import nibabel as nib

    from DTISynthLib.io.files import load_reference_b0, save_dwi

    subject = still_subject
    dti = subject.dti
    # b=1000 first, two b=0 volumes (one scaled: their mean is the reference)
    order = [1, 2, 0, 3, 4, 5, 6, 0]
    data = dti.data[..., order].copy()
    data[..., 7] *= 1.2
    shuffled = DWI(data, dti.affine, dti.bvals[order], dti.gradients[order], "shuffled")
    expected = dti.data[..., 0] * np.float32(1.1)
    for name in ("shuffled.nii.gz", "shuffled.nrrd"):
        save_dwi(tmp_path / name, shuffled)
        volume, affine, source = load_reference_b0(tmp_path / name)
        np.testing.assert_allclose(volume, expected, rtol=1e-6)
        np.testing.assert_allclose(affine, dti.affine, atol=1e-6)
        assert source == str(tmp_path / name)
    nib.save(nib.Nifti1Image(dti.data[..., 0], dti.affine), str(tmp_path / "b0_3d.nii.gz"))
    np.testing.assert_array_equal(load_reference_b0(tmp_path / "b0_3d.nii.gz")[0], dti.data[..., 0])

    manifest = manifest_for(dti.affine, GRID)
    fake = FakeTruthGenerators(dti, Intensity("relative"))
    b0 = load_reference_b0(tmp_path / "shuffled.nii.gz")
    result = synthesize_dwi(check_dwi(subject.dwi), fake, manifest, b0=b0)
    assert result.report["registration"]["correlation"] > 0.99 and not result.report["warnings"], result.report
    np.testing.assert_allclose(result.dti.data[..., 0], expected, rtol=1e-6)

    (tmp_path / "shuffled.bval").unlink()
    with pytest.raises(InputError, match=r"shuffled.nii.gz: expected a 3D b=0 volume, or a 4D image whose b-values "
                       r"mark its b=0 volumes .*; found 8 volumes and no shuffled.bval beside it"):
        load_reference_b0(tmp_path / "shuffled.nii.gz")
    (tmp_path / "shuffled.bval").write_text(" ".join(["1000"] * 8) + "\n")
    with pytest.raises(InputError, match=r"shuffled.nii.gz: expected a b=0 volume \(b <= 50 s/mm\^2\) among its 8 "
                       r"volumes; found b-values \[1000.0\]"):
        load_reference_b0(tmp_path / "shuffled.nii.gz")
    nib.save(nib.Nifti1Image(-dti.data[..., 0], dti.affine), str(tmp_path / "negated.nii.gz"))
    with pytest.raises(InputError, match=r"negated.nii.gz: expected a b=0 volume with signal, mostly positive"):
        load_reference_b0(tmp_path / "negated.nii.gz")


def test_model_grid_resampling_round_trip(still_subject):
    subject = still_subject
    grid = ModelGrid.for_native(subject.dti.affine, GRID, (128, 128), (1.72, 1.72))
    assert grid.shape == (128, 128, 38)
    np.testing.assert_allclose(np.linalg.norm(grid.affine[:3, :3], axis=0), [1.72, 1.72, 4.0], atol=1e-6)
    # same centre of the field of view
    centre = lambda a, s: a[:3, :3] @ ((np.asarray(s) - 1) / 2) + a[:3, 3]  # noqa: E731
    np.testing.assert_allclose(centre(grid.affine, grid.shape), centre(subject.dti.affine, GRID), atol=1e-9)
    b0 = subject.dti.mean_b0()
    there = resample_rigid(b0, subject.dti.affine, grid.affine, grid.shape, np.eye(4))
    back = resample_rigid(there, grid.affine, subject.dti.affine, GRID, np.eye(4))
    brain = subject.tissue.sum(-1) > 0.9
    interior = brain & np.roll(brain, 1, 0) & np.roll(brain, -1, 0) & np.roll(brain, 1, 1) & np.roll(brain, -1, 1)
    assert np.abs(back - b0)[interior].mean() < 0.05 * b0[interior].mean()
    native = ModelGrid.for_native(subject.dti.affine, GRID, GRID[:2], np.linalg.norm(subject.dti.affine[:3, :3], axis=0))
    assert native.is_native(subject.dti.affine, GRID)


def _affine(columns, voxel=(2.0, 2.0, 3.0)):
    """A voxel -> RAS affine whose voxel axes run along the given world vectors."""
    affine = np.eye(4)
    affine[:3, :3] = np.column_stack([np.asarray(c, float) / np.linalg.norm(c) * v for c, v in zip(columns, voxel)])
    affine[:3, 3] = [-30.0, 12.0, 5.0]
    return affine


def test_slice_planes_and_the_axis_order_that_makes_slices_axial():
    from DTISynthLib.core.model_grid import axial_axis_order, reorder_axes, slice_plane

    R, A, S = np.eye(3)
    cases = {  # stored axes (columns in RAS) -> plane, order
        "RAS": ((R, A, S), "axial", (0, 1, 2)),
        "LPS (flipped)": ((-R, -A, S), "axial", (0, 1, 2)),
        "sagittal PSR": ((-A, S, R), "sagittal", (2, 0, 1)),
        "coronal RSA": ((R, S, A), "coronal", (0, 2, 1)),
        "coronal transposed SRA": ((S, R, A), "coronal", (1, 2, 0)),
        "axial tilted 40 degrees about R": ((R, A * np.cos(0.7) + S * np.sin(0.7), S * np.cos(0.7) - A * np.sin(0.7)),
                                            "axial", (0, 1, 2)),
        "oblique 45 degrees: still one axis each": ((R + A, A - R, S), "axial", (0, 1, 2)),
    }
    for name, (columns, plane, order) in cases.items():
        affine = _affine(columns)
        assert slice_plane(affine) == plane, name
        assert axial_axis_order(affine) == order, name
        reordered_affine = reorder_axes(np.zeros((2, 3, 4)), affine, order)[1]
        assert slice_plane(reordered_affine) == "axial" and axial_axis_order(reordered_affine) == (0, 1, 2), name
    # lossless: every value stays at its world position, and reordering back restores the input exactly
    volume = np.random.default_rng(0).normal(size=(5, 6, 7, 2)).astype(np.float32)
    affine = _affine((-A, S, R))
    moved, moved_affine = reorder_axes(volume, affine, (2, 0, 1))
    assert moved.shape == (7, 5, 6, 2) and moved.flags.c_contiguous
    for index in [(0, 0, 0), (4, 5, 6), (1, 3, 2)]:
        new_index = (index[2], index[0], index[1])
        np.testing.assert_allclose(affine @ np.r_[index, 1], moved_affine @ np.r_[new_index, 1])
        assert np.array_equal(volume[index], moved[new_index])
    back, back_affine = reorder_axes(moved, moved_affine, np.argsort((2, 0, 1)))
    assert np.array_equal(back, volume) and np.array_equal(back_affine, affine)


def test_a_dwi_sliced_sagittally_or_coronally_is_synthesized_through_its_axial_slices(tiny_models):
    # The generators learn anatomy as axial slices show it (shipped tensor-unet on held-out phantoms fed as
    # sagittal slices: V1 error 25-28 degrees against 8): any other stack is reordered to axial and back.
    from DTISynthLib.core.model_grid import reorder_axes

    subject = simulate_subject(draw_subject("sub-003", 2), "sampled", grid=(32, 32, 19))
    generators = TorchGenerators(tiny_models, "cpu")
    axial = synthesize_dwi(check_dwi(subject.dwi), generators, generators.manifest)
    assert axial.report["slices"] == {"native_plane": "axial", "synthesized_as": "axial", "axis_order": [0, 1, 2]}
    for plane, order in (("sagittal", (1, 2, 0)), ("coronal", (0, 2, 1))):
        data, affine = reorder_axes(subject.dwi.data, subject.dwi.affine, order)
        stored = DWI(data, affine, subject.dwi.bvals, subject.dwi.gradients, f"{plane}.nii.gz")
        result = synthesize_dwi(check_dwi(stored), generators, generators.manifest)
        assert result.report["slices"]["native_plane"] == plane
        assert np.array_equal(result.dti.affine, affine)  # written on the input's own grid
        expected = reorder_axes(axial.dti.data, axial.dti.affine, order)[0]
        assert result.dti.data.shape == expected.shape and np.array_equal(result.dti.data, expected)
        assert np.array_equal(result.mask, reorder_axes(axial.mask, axial.dti.affine, order)[0])
    # with a separate --b0 the reference sets the grid: a sagittal b=0 is reordered the same way
    b0, b0_affine = reorder_axes(subject.dwi.mean_b0(), subject.dwi.affine, (1, 2, 0))
    result = synthesize_dwi(check_dwi(subject.dwi), generators, generators.manifest, b0=(b0, b0_affine, "b0.nii.gz"))
    assert result.report["slices"]["native_plane"] == "sagittal" and result.dti.data.shape[:3] == b0.shape
    assert np.array_equal(result.dti.affine, b0_affine)


def test_blas_limits_overlapping_in_two_threads_restore_the_process_s_own():
    """Two threads inside single_threaded_blas at once, leaving in the order they came: BLAS has its own
    thread count again afterwards (each restoring what it found left it at one thread)."""
    import threading

    from threadpoolctl import threadpool_info, threadpool_limits

    from DTISynthLib.fit.tensor_fit import single_threaded_blas

    def blas_threads():
        return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]

    with threadpool_limits(2, user_api="blas"):
        assert blas_threads() and set(blas_threads()) == {2}
        first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()

        def first():
            with single_threaded_blas():
                first_in.set()
                second_in.wait(10)
            first_out.set()

        inside_after_first_left = []

        def second():
            first_in.wait(10)
            with single_threaded_blas():
                second_in.set()
                first_out.wait(10)
                inside_after_first_left.extend(blas_threads())

        threads = [threading.Thread(target=first), threading.Thread(target=second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        assert set(inside_after_first_left) == {1}  # still limited while the second block runs
        assert set(blas_threads()) == {2}


def test_blas_limits_wait_while_models_load_in_the_background(tiny_models):
    # threadpoolctl walking the loaded libraries while another thread imports one deadlocks (glibc's loader
    # lock against the GIL): both take core.native_libraries.LOADING.
    import threading
    import time

    from DTISynthLib.core.native_libraries import LOADING
    from DTISynthLib.fit.tensor_fit import single_threaded_blas

    entered = threading.Event()

    def fit():
        with single_threaded_blas():
            entered.set()

    with LOADING:
        generators = TorchGenerators(tiny_models, "cpu")
        worker = threading.Thread(target=fit)
        worker.start()
        time.sleep(0.5)
        assert not generators._loading.done() and not entered.is_set()
    worker.join(10)
    assert entered.is_set() and set(generators.generators) == {1, 2, 3, 4, 5, 6}


def test_real_models_give_identical_output_on_repeated_runs(tmp_path, tiny_models):
    subject = simulate_subject(draw_subject("sub-003", 2), "sampled", grid=(32, 32, 19))
    generators = TorchGenerators(tiny_models, "cpu")
    first = synthesize_dwi(check_dwi(subject.dwi), generators, generators.manifest)
    second = synthesize_dwi(check_dwi(subject.dwi), TorchGenerators(tiny_models, "cpu"), generators.manifest)
    assert np.array_equal(first.dti.data, second.dti.data)
    assert not np.array_equal(first.dti.data[..., 1], first.dti.data[..., 2])  # six different models
    written = write_synthesis(tmp_path / "out", first)
    names = {p.relative_to(tmp_path / "out").as_posix() for p in written}
    assert {"synthetic_dti.nii.gz", "synthetic_dti.bval", "synthetic_dti.bvec", "synthetic_dti.nrrd",
            "maps/fa.nii.gz", "maps/color_fa.nii.gz", "maps/tensor.nii.gz", "synthesis.json"} <= names


def test_bf16_keeps_an_fp32_output_layer_and_stays_close_to_fp32(tiny_models):
    subject = simulate_subject(draw_subject("sub-003", 2), "sampled", grid=(32, 32, 19))
    fp32 = TorchGenerators(tiny_models, "cpu", precision="fp32")
    bf16 = TorchGenerators(tiny_models, "cpu", precision="bf16")
    inputs = np.random.default_rng(0).uniform(-1, 1, (5, 3, 32, 32)).astype(np.float32)
    a, b = fp32.predict(1, inputs, np.arange(5)), bf16.predict(1, inputs, np.arange(5))
    assert a.dtype == b.dtype == np.float32
    assert 0 < np.abs(a - b).max() < 0.05  # bf16 activations, fp32 accumulation and output layer
    # bf16 output would have zero low 16 bits in every value; the fp32 head gives full mantissas
    assert (b.view(np.uint32) & 0xFFFF).astype(bool).mean() > 0.9
    auto = TorchGenerators(tiny_models, "cpu", precision="auto")
    assert auto.precision == ("bf16" if runner.bf16_is_native(auto.device) else "fp32")
    # oneDNN "supports" bf16 on any AVX-512 CPU by emulating it (slower than fp32): the flags decide
    import torch

    for flags, native in (({"avx512f", "avx512bw", "avx512_vnni"}, False), ({"avx512f", "avx512_bf16"}, True),
                          ({"amx_bf16", "amx_tile"}, True)):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(runner, "cpu_flags", lambda flags=flags: flags)
            patch.setattr(torch.backends.mkldnn, "is_available", lambda: True)
            assert runner.bf16_is_native(torch.device("cpu")) is native, flags
    first = synthesize_dwi(check_dwi(subject.dwi), bf16, bf16.manifest)
    second = synthesize_dwi(check_dwi(subject.dwi), bf16, bf16.manifest)
    assert np.array_equal(first.dti.data, second.dti.data)


def test_resampling_equals_trilinear_at_explicit_moving_coordinates():
    from scipy import ndimage

    rng = np.random.default_rng(5)
    volume = rng.random((20, 18, 9, 2)).astype(np.float32)
    moving = np.diag([1.8, 1.7, 2.5, 1.0])
    moving[:3, 3] = [-17, -15, -11]
    fixed = np.diag([-1.5, 1.5, 2.0, 1.0])[[1, 0, 2, 3]]  # permuted, flipped axes
    fixed[:3, 3] = [-10, 8, -8]
    angle = np.radians(7)
    matrix = np.eye(4)
    matrix[:3, :3] = [[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]]
    matrix[:3, 3] = [0.7, -1.2, 0.4]
    shape = (15, 22, 10)
    out = resample_rigid(volume, moving, fixed, shape, matrix)
    ijk = np.indices(shape).reshape(3, -1)
    world = matrix[:3, :3] @ (fixed[:3, :3] @ ijk + fixed[:3, 3:]) + matrix[:3, 3:]
    moving_ijk = np.linalg.solve(moving[:3, :3], world - moving[:3, 3:])
    # each moving voxel covers half a voxel around its centre: edge values there, zero beyond
    covered = np.all((moving_ijk > -0.5) & (moving_ijk < np.array(volume.shape[:3])[:, None] - 0.5), axis=0)
    for c in range(2):
        expected = ndimage.map_coordinates(volume[..., c], moving_ijk, order=1, mode="nearest") * covered
        np.testing.assert_allclose(out[..., c], expected.reshape(shape), atol=1e-5)
    assert 0.2 < (out[..., 0] > 0).mean() < 1.0  # partly outside: zero there
    edge = covered & np.any((moving_ijk < 0) | (moving_ijk > np.array(volume.shape[:3])[:, None] - 1), axis=0)
    assert edge.sum() > 10 and (out[..., 0].reshape(-1)[edge] > 0).all()  # within half a voxel of the edge: kept


def test_edge_slices_of_a_real_scan_whose_brain_touches_both_ends_are_synthesized(tmp_path):
    """The Philips scan's brain fills its first and last slices: scipy's "constant" mode used to zero
    the first slice and corrupt the last (MD errors of 2000 % and 470 % there)."""
    from conftest import real_dwi_path

    from DTISynthLib.core.dwi import DWI as Volume
    from DTISynthLib.core.resources import RESOURCES
    from DTISynthLib.fit.brain_mask import brain_mask
    from DTISynthLib.io.files import load_dwi, load_reference_b0, save_dwi
    from DTISynthLib.simulation.pairs import make_pairs

    full = load_dwi(real_dwi_path("dev_philips_achieva_b2000"))
    mask = brain_mask(full.mean_b0())
    assert mask[:, :, 0].sum() > 400 and mask[:, :, -1].sum() > 600  # the brain touches both ends
    truth = compute_maps(fit_tensors(full, mask).tensor, mask, ("md",))["md"]
    dwi3, dti6, _ = make_pairs(full, "nearest")
    save_dwi(tmp_path / "dti6.nii.gz", check_dwi(dti6))
    b0 = load_reference_b0(tmp_path / "dti6.nii.gz")
    for models in (RESOURCES / "Models" / "diagonal", RESOURCES / "Models" / "pix2pix"):
        generators = TorchGenerators(models, "cpu", precision="fp32")
        result = synthesize_dwi(check_dwi(Volume(dwi3.data, dwi3.affine, dwi3.bvals, dwi3.gradients, "dwi3")),
                                generators, generators.manifest, b0=b0, force_b=True)
        assert result.report["slices_synthesized"] == mask.shape[2]
        md = compute_maps(fit_tensors(check_dwi(result.dti), mask, "ols").tensor, mask, ("md",))["md"]
        tissue = mask & (truth > 1e-4)  # relative errors where MD is tissue's, not noise's (as bench_quality)
        error = np.abs(md - truth) / np.where(tissue, truth, 1.0)
        interior = np.median(error[:, :, 2:-2][tissue[:, :, 2:-2]])
        for k in (0, -1):
            edge = error[:, :, k][tissue[:, :, k]]
            # measured with the earlier pix2pix set: diagonal 4 % / 3 % (interior 2.6 %), pix2pix 11 % / 14 % (12 %)
            assert np.median(edge) < min(3 * interior, 0.2) and (edge > 1).mean() < 0.05, (models.name, k, interior)
        assert (error[tissue] > 0.5).mean() < 0.005, models.name


def _dwi(bvals, gradients, shape=(16, 16, 8), source="dwi.nii.gz"):
    data = np.full(shape + (len(bvals),), 100.0, np.float32)
    data[..., 0] = 300.0
    return check_dwi(DWI(data, np.eye(4), np.asarray(bvals, float), np.asarray(gradients, float), source))


def test_bad_inputs_are_refused_with_clear_messages():
    manifest = manifest_for(np.eye(4), (16, 16))
    xyz = np.vstack([np.zeros(3), np.eye(3)])
    with pytest.raises(InputError, match=r"dwi.nii.gz: expected b = 1000 s/mm\^2 like the models .* found b = 2000"):
        synthesize_dwi(_dwi([0, 2000, 2000, 2000], xyz), None, manifest)
    with pytest.raises(InputError, match="expected three diffusion-weighted volumes .* found 2"):
        synthesize_dwi(_dwi([0, 1000, 1000], xyz[:3]), None, manifest)
    coplanar = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [np.sqrt(0.5), np.sqrt(0.5), 0]])
    with pytest.raises(InputError, match=r"expected three well-conditioned diffusion directions .* found inf"):
        synthesize_dwi(_dwi([0, 1000, 1000, 1000], coplanar), None, manifest)
    tilt = np.radians(40)
    far = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [np.sin(tilt), 0, np.cos(tilt)]])
    with pytest.raises(InputError, match=r"within 30 degrees of the scanner's z axis.*40.0 degrees"):
        synthesize_dwi(_dwi([0, 1000, 1000, 1000], far), None, manifest)


def test_forced_b_value_and_tilted_direction_are_reported(still_subject):
    subject = still_subject
    manifest = manifest_for(subject.dti.affine, GRID, b_value=800.0)
    tilt = np.radians(15)
    dwi = check_dwi(subject.dwi)
    dwi.gradients[3] = [np.sin(tilt), 0, np.cos(tilt)]
    fake = FakeTruthGenerators(subject.dti, Intensity("relative"))
    result = synthesize_dwi(dwi, fake, manifest, force_b=True)
    assert any("z direction 15.0 degrees" in w for w in result.report["warnings"])
    assert any("b-value 1000 differs from the models' 800 (forced)" in w for w in result.report["warnings"])


def test_a_dwi_with_more_directions_says_which_volumes_it_used_and_ignored(still_subject):
    subject = still_subject
    dwi, dti = check_dwi(subject.dwi), check_dwi(subject.dti)
    # the x, y, z DWI and three oblique directions of the DTI: three are used, three ignored
    more = check_dwi(DWI(np.concatenate([dwi.data, dti.data[..., 1:4]], -1), dwi.affine, np.r_[dwi.bvals, dti.bvals[1:4]],
                         np.vstack([dwi.gradients, dti.gradients[1:4]]), "more.nii.gz"))
    fake = FakeTruthGenerators(subject.dti, Intensity("relative"))
    result = synthesize_dwi(more, fake, manifest_for(subject.dti.affine, GRID))
    used, ignored = result.report["axis_volumes"], result.report["ignored_volumes"]
    assert sorted(used) == [1, 2, 3] and ignored == [4, 5, 6] and result.report["b0_volumes"] == [0]
    assert any(f"3 diffusion-weighted volume(s) ignored: {ignored}" in w and f"used volumes {used}" in w
               for w in result.report["warnings"])
    plain = synthesize_dwi(check_dwi(subject.dwi), fake, manifest_for(subject.dti.affine, GRID))
    assert plain.report["ignored_volumes"] == [] and not any("ignored" in w for w in plain.report["warnings"])


def test_b0_that_does_not_overlap_or_does_not_register_is_refused(still_subject):
    subject = still_subject
    manifest = manifest_for(subject.dti.affine, GRID)
    far_affine = subject.dti.affine.copy()
    far_affine[0, 3] += 500.0
    with pytest.raises(InputError, match=r"far_b0.nii.gz: expected a b=0 overlapping the DWI.*found 0% overlap"):
        synthesize_dwi(check_dwi(subject.dwi), None, manifest, b0=(subject.dti.mean_b0(), far_affine, "far_b0.nii.gz"))
    noise = np.random.default_rng(0).uniform(0, 1000, GRID).astype(np.float32)
    with pytest.raises(InputError, match=r"noise_b0.nii.gz: expected a b=0 the DWI registers to.*correlation"):
        synthesize_dwi(check_dwi(subject.dwi), None, manifest, b0=(noise, subject.dti.affine, "noise_b0.nii.gz"))


def test_failure_while_writing_leaves_no_partial_results(tmp_path, still_subject, monkeypatch):
    subject = still_subject
    fake = FakeTruthGenerators(subject.dti, Intensity("relative"))
    result = synthesize_dwi(check_dwi(subject.dwi), fake, manifest_for(subject.dti.affine, GRID))
    fail_on_call(monkeypatch, writing, "save_volume", 3, OSError("No space left on device"))
    with pytest.raises(OSError, match="No space left"):
        write_synthesis(tmp_path / "out", result)
    assert not any(p.is_file() for p in (tmp_path / "out").rglob("*"))


def test_synthesize_command_with_a_corrupt_models_folder(tmp_path, tiny_models, still_subject):
    import shutil
    import subprocess
    import sys

    from DTISynthLib.io.files import save_dwi

    models = tmp_path / "models"
    shutil.copytree(tiny_models, models)
    save_dwi(tmp_path / "dwi.nii.gz", check_dwi(still_subject.dwi))
    (models / "direction_4.safetensors").write_bytes(b"corrupt")
    run = subprocess.run([sys.executable, "-m", "DTISynthLib", "synthesize", "--dwi", str(tmp_path / "dwi.nii.gz"),
                          "--models", str(models), "--out", str(tmp_path / "out"), "--jsonl"],
                         capture_output=True, text=True)
    assert run.returncode == 2
    event = json.loads(run.stdout.splitlines()[-1])
    assert event["event"] == "error" and "direction_4.safetensors: expected SHA-256" in event["message"]
    assert not (tmp_path / "out").exists()


def test_a_models_folder_whose_listed_files_are_links_is_refused_before_they_are_read(tmp_path, tiny_models,
                                                                                       still_subject):
    """synthesize --models DIR reads a package by the rule `models --import` checks: manifest.json and every
    weights file a regular file in the folder itself. A weights file linked to /dev/zero was hashed for
    ever; a link loop was "no such file"; a link to the right bytes elsewhere is refused too (one rule:
    a package's files are its own, and an untrusted package's links are not followed)."""
    import os
    import re
    import shutil
    import subprocess
    import sys

    from DTISynthLib.generators.package import read_manifest, verify_package
    from DTISynthLib.io.files import save_dwi

    models = tmp_path / "models"
    shutil.copytree(tiny_models, models)
    save_dwi(tmp_path / "dwi.nii.gz", check_dwi(still_subject.dwi))
    weights = models / "direction_4.safetensors"
    weights.unlink()
    weights.symlink_to("/dev/zero")
    run = subprocess.run([sys.executable, "-m", "DTISynthLib", "synthesize", "--dwi", str(tmp_path / "dwi.nii.gz"),
                          "--models", str(models), "--out", str(tmp_path / "out"), "--jsonl"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr[-2000:]
    event = json.loads(run.stdout.splitlines()[-1])
    assert event["event"] == "error"
    assert f"{weights}: expected a regular file; found a symbolic link to /dev/zero" in event["message"]
    assert not (tmp_path / "out").exists()
    # In-process (torch-free, as every reader verifies): a loop, a link to the right bytes, a linked manifest.
    weights.unlink()
    (tmp_path / "b").symlink_to(weights)
    weights.symlink_to(tmp_path / "b")
    with pytest.raises(InputError, match=re.escape(f"{weights}: expected a regular file; found a symbolic link loop "
                                                   f"(to {tmp_path / 'b'})")):
        verify_package(models)
    weights.unlink()
    weights.symlink_to(tiny_models / weights.name)  # the very bytes the manifest's SHA-256 names
    with pytest.raises(InputError, match=re.escape(f"{weights}: expected a regular file; found a symbolic link to "
                                                   f"{tiny_models / weights.name}")):
        verify_package(models)
    weights.unlink()
    shutil.copy(tiny_models / weights.name, weights)
    assert verify_package(models).kind == "pix2pix-per-direction"  # the same folder of regular files is fine
    os.replace(models / "manifest.json", tmp_path / "manifest.json")
    (models / "manifest.json").symlink_to(tmp_path / "manifest.json")
    with pytest.raises(InputError, match="manifest.json: expected a regular file; found a symbolic link to"):
        read_manifest(models)


def test_shipped_pix2pix_models_are_verified_small_and_useful(unseen_subject):
    from DTISynthLib.generators.package import SHIPPED_MODELS, read_manifest

    PIX2PIX = SHIPPED_MODELS / "pix2pix"
    manifest = read_manifest(PIX2PIX)
    assert [d["index"] for d in manifest.data["directions"]] == [1, 2, 3, 4, 5, 6]
    size = sum((PIX2PIX / d["file"]).stat().st_size for d in manifest.data["directions"])
    assert size <= 40 * 2**20, size
    for entry in manifest.data["directions"]:
        assert {"val_L1", "val_PSNR", "val_SSIM"} <= set(entry["validation"]), entry["index"]
        np.testing.assert_allclose(entry["gradient_ras"], SIEMENS_6_RAS[entry["index"] - 1], atol=1e-9)
    generators = TorchGenerators(PIX2PIX, "cpu")  # every checksum verified on load
    subject, clean = unseen_subject
    b0 = (subject.dti.mean_b0(), subject.dti.affine, "b0")
    dti = synthesize_dwi(check_dwi(subject.dwi), generators, manifest, b0=b0).dti
    # Direction-specific contrast was learned: in white matter every direction beats an oracle that knows
    # the true mean over the six directions but nothing directional (measured error ratios 0.45-0.71).
    white = subject.tissue[..., 0] > 0.8
    isotropic = clean.dti.data[..., 1:].mean(axis=-1)
    for k in range(1, 7):
        truth = clean.dti.data[..., k][white]
        model_error = np.abs(dti.data[..., k][white] - truth).mean()
        oracle_error = np.abs(isotropic[white] - truth).mean()
        assert model_error < 0.8 * oracle_error, (k, model_error, oracle_error)
    brain = subject.tissue[..., :2].sum(-1) > 0.8
    md = compute_maps(fit_tensors(check_dwi(dti), brain).tensor, brain, ("md",))["md"]
    true_md = compute_maps(subject.truth_tensor, brain, ("md",))["md"]
    assert abs(np.median(md[brain]) / np.median(true_md[brain]) - 1) < 0.1


def test_the_shipped_default_set_is_verified_small_and_beats_the_baseline_on_an_unseen_subject(unseen_subject):
    """The default tensor-unet set: checksummed, <= 40 MB, its training recorded; on an unseen phantom
    subject (its seed in no training cohort) its FA and fibre orientation are far better than the
    diagonal baseline's and its MD as good."""
    from DTISynthLib.core.resources import RESOURCES
    from DTISynthLib.generators.package import DEFAULT_MODELS, read_manifest

    manifest = read_manifest(DEFAULT_MODELS)
    assert manifest.data["architecture"]["kind"] == "tensor-unet" and manifest.data["assembly"] == "physics"
    assert sum(p.stat().st_size for p in DEFAULT_MODELS.iterdir()) <= 40 * 2**20
    subjects = {s["subject"]: s for s in manifest.data["training"]["subjects"]}
    assert any(name.startswith("dev_") for name, s in subjects.items() if s["part"] == "train")  # real anatomy
    assert not any("xa30" in name for name in subjects)  # the benchmark's held-out real subject was never seen
    # the model chosen, and its orientation confidence calibrated, on a held-out real subject
    assert [name for name, s in subjects.items() if s["part"] == "validation"] == ["dev_philips_achieva_b2000"]
    # it refuses the triples it was measured to miss its targets on (benchmarks/bench_directions.py)
    assert manifest.data["accepted_directions"]["max_non_orthogonality_degrees"] == 25.0
    assert manifest.data["accepted_directions"]["max_tilt_degrees"] == 25.0
    assert {s["source"] for s in subjects.values()} == {"phantom", "real"}
    assert manifest.data["architecture"]["heads"] == "prolate-and-sign-patterns"
    assert manifest.data["architecture"]["sign_temperature"] > 0
    assert manifest.data["training"]["selection"]["best_epoch"] >= 1
    assert manifest.data["b_range"] == [500.0, 3000.0] and manifest.data["architecture"]["parameters"] > 1e6
    subject = unseen_subject[0]
    brain, white = subject.tissue.sum(-1) > 0.5, subject.tissue[..., 0] > 0.8
    truth = compute_maps(subject.truth_tensor, brain, ("fa", "md", "v1"), policy="clip")
    b0 = (subject.dti.mean_b0(), subject.dti.affine, "b0")
    scores = {}
    for models in (DEFAULT_MODELS, RESOURCES / "Models" / "diagonal"):
        generators = TorchGenerators(models, "cpu", precision="fp32")  # every checksum verified on load
        dti = synthesize_dwi(check_dwi(subject.dwi), generators, generators.manifest, b0=b0).dti
        maps = compute_maps(fit_tensors(check_dwi(dti), brain, "ols").tensor, brain, ("fa", "md", "v1"), policy="clip")
        strong = brain & (truth["fa"] > 0.4)
        cosine = np.abs((maps["v1"][strong] * truth["v1"][strong]).sum(-1)).clip(0, 1)
        tissue = brain & (truth["md"] > 1e-4)
        scores[models.name] = (np.abs(maps["fa"] - truth["fa"])[white].mean(), np.degrees(np.median(np.arccos(cosine))),
                               np.median(np.abs(maps["md"] - truth["md"])[tissue] / truth["md"][tissue]))
    (fa, angle, md), (fa_diagonal, angle_diagonal, md_diagonal) = scores["tensor-unet"], scores["diagonal"]
    assert fa < 0.5 * fa_diagonal and angle < 0.5 * angle_diagonal, scores
    assert md < 1.05 * md_diagonal, scores


def test_model_import_from_zip_verifies_and_refuses_tampering(tmp_path, monkeypatch):
    import shutil
    import zipfile

    from DTISynthLib.generators.package import SHIPPED_MODELS, import_package

    archive = tmp_path / "pix2pix.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted((SHIPPED_MODELS / "pix2pix").iterdir()):
            z.write(path, f"pix2pix/{path.name}")
    imported = import_package(archive, tmp_path / "models")
    assert imported == tmp_path / "models" / "pix2pix" and (imported / "direction_6.safetensors").exists()
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["pix2pix"]  # no staging left
    with pytest.raises(InputError, match="already exists"):
        import_package(archive, tmp_path / "models")
    # Checked from the zip's directory before extracting: the declared size, then unlisted members.
    import DTISynthLib.generators.package as package

    monkeypatch.setattr(package, "MAX_IMPORT_BYTES", 10 * 1024**2)
    with pytest.raises(InputError, match=r"at most 10 MiB; found 30.\d MiB declared"):
        import_package(archive, tmp_path / "other")
    monkeypatch.undo()
    stuffed = tmp_path / "stuffed.zip"
    shutil.copy(archive, stuffed)
    with zipfile.ZipFile(stuffed, "a") as z:
        z.writestr("pix2pix/extra.bin", b"\0" * 4096)
    with pytest.raises(InputError, match="only the files its manifest lists.*'pix2pix/extra.bin'"):
        import_package(stuffed, tmp_path / "other")
    assert not (tmp_path / "other").exists()  # nothing extracted, nothing left
    tampered = tmp_path / "tampered"
    shutil.copytree(SHIPPED_MODELS / "pix2pix", tampered)
    with open(tampered / "direction_3.safetensors", "r+b") as f:
        f.seek(-1, 2)
        last = f.read(1)[0]
        f.seek(-1, 2)
        f.write(bytes([last ^ 1]))  # one bit flipped, same size
    with pytest.raises(InputError, match="SHA-256"):
        import_package(tampered, tmp_path / "models")
    assert not (tmp_path / "models" / "tampered").exists()


class FakeRandomGenerators:
    """A named fake generator whose outputs are random network units: whatever it says, physics-consistent
    assembly must keep what the x, y, z DWI measured."""

    def predict(self, direction, inputs, slice_indices):
        return np.random.default_rng(direction).uniform(-1, 1, (len(inputs),) + inputs.shape[2:]).astype(np.float32)


def test_physics_consistent_assembly_keeps_the_measured_md_for_any_generator_output(still_subject):
    subject = still_subject
    dwi = check_dwi(subject.dwi)
    manifest = manifest_for(subject.dti.affine, GRID)
    brain = subject.tissue.sum(-1) > 0.5
    with np.errstate(divide="ignore", invalid="ignore"):  # background: no signal
        adc = -np.log(dwi.data[..., 1:4] / dwi.data[..., :1]) / 1000.0  # noise-free x, y, z ADCs, mm^2/s
    input_md = adc.mean(axis=-1)
    for generators in (FakeRandomGenerators(), FakeTruthGenerators(subject.dti, Intensity("relative"))):
        result = synthesize_dwi(dwi, generators, manifest)
        assert result.report["assembly"] == "physics"
        md = compute_maps(fit_tensors(check_dwi(result.dti), brain, "ols").tensor, brain, ("md",))["md"]
        np.testing.assert_allclose(md[brain], input_md[brain], rtol=1e-6, atol=1e-12)
    paper = synthesize_dwi(dwi, FakeRandomGenerators(), manifest, assembly="network")
    md = compute_maps(fit_tensors(check_dwi(paper.dti), brain, "ols").tensor, brain, ("md",))["md"]
    assert np.median(np.abs(md[brain] / input_md[brain] - 1)) > 0.1  # raw random outputs: MD is anything


def test_assembly_keeps_each_siemens_pairs_generated_difference_and_the_measured_sum():
    from DTISynthLib.fit.tensor_fit import design_matrix
    from DTISynthLib.synthesis.assembly import SIZE_RANGE, assembled_tensors

    rng = np.random.default_rng(3)
    generated = rng.uniform(-1.6, -0.4, (50, 6))
    measured = rng.uniform(-1.2, -0.6, (50, 3))
    tensor = assembled_tensors(generated, measured, np.full(3, 1000.0), np.eye(3), np.full(6, 1000.0), SIEMENS_6_RAS)
    np.testing.assert_allclose(tensor[:, :3], -measured / 1000.0, rtol=1e-12)
    assembled = tensor @ design_matrix(np.full(6, 1000.0), SIEMENS_6_RAS)[:, :6].T
    pairs = [(i, j) for i in range(6) for j in range(i + 1, 6)
             if np.allclose(np.abs(SIEMENS_6_RAS[i]), np.abs(SIEMENS_6_RAS[j]))]
    assert len(pairs) == 3
    unclipped = np.all(np.abs(tensor[:, 3:]) < np.sqrt(np.abs(tensor[:, [0, 0, 1]] * tensor[:, [1, 2, 2]])) - 1e-12, 1)
    assert unclipped.sum() > 10
    # the generated attenuations at the measured size: the generators' own tensor's mean ADC along x, y, z
    own = generated @ np.linalg.pinv(design_matrix(np.full(6, 1000.0), SIEMENS_6_RAS)[:, :6]).T  # their tensor
    scale = np.clip((-measured / 1000.0).mean(1) / own[:, :3].mean(1), 1 / SIZE_RANGE, SIZE_RANGE)  # x, y, z: its diagonal
    for i, j in pairs:
        np.testing.assert_allclose((assembled[:, i] - assembled[:, j])[unclipped],
                                   (scale * (generated[:, i] - generated[:, j]))[unclipped])
        axes = np.flatnonzero(np.abs(SIEMENS_6_RAS[i]) > 0.5)
        np.testing.assert_allclose(assembled[:, i] + assembled[:, j], measured[:, axes].sum(axis=1))


def test_generators_of_the_wrong_size_give_their_shape_not_anisotropy_on_an_oblique_triple():
    """ds000114's case: generators whose tensor is nearly isotropic (FA about 0.05) with twice the measured
    diagonal, measured directions with z 35 degrees off its axis. The projection alone put the
    disagreement into off-diagonal terms (FA about 0.6); scaled to the measured size first, the assembled
    tensor keeps the generators' low anisotropy and reproduces the three measured ADCs exactly."""
    from DTISynthLib.core.tensor_layout import tensor6_to_matrix
    from DTISynthLib.fit.tensor_fit import assembly_matrices, design_matrix
    from DTISynthLib.synthesis.assembly import assembled_tensors

    def fa(tensor):
        values = np.linalg.eigvalsh(tensor6_to_matrix(tensor))
        return np.sqrt(1.5 * ((values - values.mean(-1, keepdims=True)) ** 2).sum(-1) / (values**2).sum(-1))

    t = np.radians(35)
    directions = np.array([[1.0, 0, 0], [0, 1.0, 0], [np.sin(t), 0, np.cos(t)]])
    rng = np.random.default_rng(4)
    own = np.c_[rng.uniform(1.7e-3, 1.9e-3, (200, 3)), rng.uniform(-0.05e-3, 0.05e-3, (200, 3))]
    generated = own @ design_matrix(np.full(6, 1000.0), SIEMENS_6_RAS)[:, :6].T  # its log-attenuations
    truth = np.c_[rng.uniform(0.85e-3, 0.9e-3, (200, 3)), np.zeros((200, 3))]
    adc = np.einsum("id,nde,ie->ni", directions, tensor6_to_matrix(truth), directions)
    args = (generated, -1000.0 * adc, np.full(3, 1000.0), directions, np.full(6, 1000.0), SIEMENS_6_RAS)
    from_generated, from_measured = assembly_matrices(*args[2:])
    assert np.median(fa(generated @ from_generated.T - 1000.0 * adc @ from_measured.T)) > 0.5  # unscaled
    tensor = assembled_tensors(*args)
    assert np.median(fa(tensor)) < 0.05 and np.median(fa(own)) < 0.05
    np.testing.assert_allclose(np.einsum("id,nde,ie->ni", directions, tensor6_to_matrix(tensor), directions), adc,
                               rtol=1e-9)


@pytest.mark.parametrize("degrees", [0.0, 25.0, 45.0])
def test_the_safeguards_anchor_is_the_least_anisotropic_tensor_the_measurements_allow(degrees):
    """Equal ADCs along a skewed triple: the anchor is isotropic (the old C diag(ADC) C^T had FA 0.43 at 25
    degrees and 0.73 at 45), and for any positive ADCs it reproduces them exactly, is positive definite and
    no farther from isotropic (deviatoric norm) than C diag(ADC) C^T; on the scanner's axes diag(ADC)."""
    from DTISynthLib.core.tensor_layout import tensor6_to_matrix
    from DTISynthLib.synthesis.assembly import measured_anchor

    def fa(tensor):
        values = np.linalg.eigvalsh(tensor6_to_matrix(tensor))
        return np.sqrt(1.5 * ((values - values.mean(-1, keepdims=True)) ** 2).sum(-1) / (values**2).sum(-1))

    t = np.radians(degrees)
    directions = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, np.sin(t), np.cos(t)]])
    adc = np.r_[[[0.8e-3] * 3], np.random.default_rng(2).uniform(0.3e-3, 2.0e-3, (300, 3))]
    anchor = measured_anchor(adc, directions)
    np.testing.assert_allclose(np.einsum("id,nde,ie->ni", directions, tensor6_to_matrix(anchor), directions), adc,
                               rtol=1e-9)
    assert np.linalg.eigvalsh(tensor6_to_matrix(anchor))[:, 0].min() > 0
    assert fa(anchor[:1])[0] < 1e-6
    inverse = np.linalg.inv(directions)
    old = np.einsum("ik,nk,jk->nij", inverse, adc, inverse)
    old_fa = fa(np.c_[old[:, 0, 0], old[:, 1, 1], old[:, 2, 2], old[:, 0, 1], old[:, 0, 2], old[:, 1, 2]])
    def deviatoric(tensor):  # |D - MD I|_F, what the anchor minimises
        values = np.linalg.eigvalsh(tensor6_to_matrix(tensor))
        return np.sqrt(((values - values.mean(-1, keepdims=True)) ** 2).sum(-1))

    old6 = np.c_[old[:, 0, 0], old[:, 1, 1], old[:, 2, 2], old[:, 0, 1], old[:, 0, 2], old[:, 1, 2]]
    assert (deviatoric(anchor) <= deviatoric(old6) * (1 + 1e-9) + 1e-15).all()
    if degrees == 0.0:
        np.testing.assert_allclose(anchor[:, :3], adc, rtol=1e-12)
        np.testing.assert_allclose(anchor[:, 3:], 0.0, atol=1e-15)
    else:
        assert old_fa[0] > 0.4 and np.median(old_fa - fa(anchor)) > 0.05


def test_the_diagonal_baseline_kind_gives_the_measured_diagonal_and_no_off_diagonal_terms(tmp_path, still_subject):
    from DTISynthLib.core.resources import RESOURCES
    from DTISynthLib.generators.package import verify_package

    models = RESOURCES / "Models" / "diagonal"
    manifest = verify_package(models)  # no weights files: nothing to check but the manifest
    assert manifest.data["architecture"]["kind"] == "diagonal" and manifest.data["grid"] is None
    generators = TorchGenerators(models, "cpu")
    dwi = check_dwi(still_subject.dwi)
    brain = still_subject.tissue.sum(-1) > 0.5
    for assembly in ("network", "physics"):
        result = synthesize_dwi(dwi, generators, manifest, assembly=assembly)
        tensor = fit_tensors(check_dwi(result.dti), brain, "ols").tensor
        with np.errstate(divide="ignore", invalid="ignore"):
            adc = -np.log(dwi.data[..., 1:4] / dwi.data[..., :1]) / 1000.0
        np.testing.assert_allclose(tensor[brain][:, :3], adc[brain], rtol=1e-5, atol=1e-9)
        assert np.abs(tensor[brain][:, 3:]).max() < 1e-8
    written = write_synthesis(tmp_path / "diagonal", result)
    assert (tmp_path / "diagonal" / "maps" / "fa.nii.gz") in written


def test_a_triple_beyond_the_packages_measured_limits_is_refused_naming_the_angle_and_the_limit(still_subject):
    """A package whose manifest states the triples it synthesizes within its targets refuses others (exit 2
    through the CLI, as every InputError) with the angle and the limit; within them it synthesizes and
    reports both angles; a package without limits takes any well-conditioned triple."""
    from DTISynthLib.core.resources import RESOURCES

    generators = TorchGenerators(RESOURCES / "Models" / "diagonal", "cpu")
    limits = {"max_non_orthogonality_degrees": 20.0, "max_tilt_degrees": 25.0, "measured": "test"}
    limited = Manifest(dict(generators.manifest.data, accepted_directions=limits))
    dwi = check_dwi(still_subject.dwi)

    def with_triple(triple):
        return check_dwi(DWI(dwi.data, dwi.affine, dwi.bvals, np.r_[[np.zeros(3)], triple], "dwi.nii.gz"))

    t = np.radians(30)
    skewed = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, np.sin(t), np.cos(t)]])
    tilted = np.array([[1.0, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])
    with pytest.raises(InputError, match=r"dwi.nii.gz: expected measured directions within 20 degrees of orthogonal.*"
                                         r"found 30.0 degrees \(non orthogonality"):
        synthesize_dwi(with_triple(skewed), generators, limited)
    with pytest.raises(InputError, match=r"within 25 degrees of the image axes.*found 30.0 degrees \(tilt"):
        synthesize_dwi(with_triple(tilted), generators, limited)
    small = np.radians(10)
    within = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, np.sin(small), np.cos(small)]])
    report = synthesize_dwi(with_triple(within), generators, limited).report
    assert report["directions"] == {"non_orthogonality_degrees": 10.0, "tilt_degrees": 5.0}
    assert synthesize_dwi(with_triple(skewed), generators, generators.manifest).report["directions"] == \
        {"non_orthogonality_degrees": 30.0, "tilt_degrees": 15.0}


def test_packages_with_a_b_range_take_any_b_in_it_and_write_the_dti_at_the_chosen_b(still_subject):
    from DTISynthLib.core.resources import RESOURCES
    from DTISynthLib.synthesis.pipeline import signals_at_b

    generators = TorchGenerators(RESOURCES / "Models" / "diagonal", "cpu")
    manifest = generators.manifest
    assert manifest.data["b_range"] == [500.0, 3000.0]
    dwi = check_dwi(still_subject.dwi)
    brain = still_subject.tissue.sum(-1) > 0.5
    at_2000 = DWI(np.concatenate([dwi.data[..., :1], signals_at_b(dwi.data[..., 1:], dwi.data[..., 0], dwi.bvals[1:],
                                                                   2000.0)], axis=-1),
                  dwi.affine, np.r_[0.0, 2000.0, 2000.0, 2000.0], dwi.gradients, "dwi_b2000.nii.gz")
    tensors = {}
    for output_b in (None, 1000.0):
        result = synthesize_dwi(check_dwi(at_2000), generators, manifest, output_b=output_b)
        assert not any("forced" in w for w in result.report["warnings"])
        expected_b = 2000.0 if output_b is None else 1000.0  # default: the input's b
        np.testing.assert_allclose(result.dti.bvals, [0] + [expected_b] * 6)
        tensors[output_b] = fit_tensors(check_dwi(result.dti), brain, "ols").tensor
    # ADCs do not depend on b for this noise-free mono-exponential input: the same tensor at either b
    np.testing.assert_allclose(tensors[None][brain], tensors[1000.0][brain], rtol=1e-4, atol=1e-9)
    at_4000 = DWI(at_2000.data, at_2000.affine, np.r_[0.0, 4000.0, 4000.0, 4000.0], at_2000.gradients,
                  "dwi_b4000.nii.gz")
    with pytest.raises(InputError, match=r"dwi_b4000.nii.gz: expected b within 500-3000 s/mm\^2, the models' trained "
                                         r"range \(or --force-b\); found b = 4000"):
        synthesize_dwi(check_dwi(at_4000), generators, manifest)


def _oblique_dwi(subject, directions):
    """The subject's true tensors measured noise-free along `directions` (3, 3) at b=1000, on its DTI grid."""
    from DTISynthLib.fit.tensor_fit import predict_signals

    s0 = subject.dti.mean_b0()
    signals = predict_signals(subject.truth_tensor, s0, np.full(3, 1000.0), directions)
    return check_dwi(DWI(np.concatenate([s0[..., None], signals], -1).astype(np.float32), subject.dti.affine,
                         np.r_[0.0, np.full(3, 1000.0)], np.vstack([np.zeros(3), directions]), "oblique.nii.gz"))


def test_any_three_well_conditioned_directions_are_honoured_exactly(still_subject):
    """Non-orthogonal directions far from the axes (x tilted 35 degrees toward y, z 35 toward x: condition
    number 2.6) and a frame turned 40 degrees: the kinds that work in the measured frame accept them, and
    the synthetic tensor reproduces the three measured ADCs exactly (g_i^T D g_i = ADC_i), whatever the
    generator outputs. The per-direction pix2pix kind refuses them (its networks learned x, y, z images);
    nearly coplanar directions are refused by their conditioning."""
    from DTISynthLib.core.frames import rotation_matrix
    from DTISynthLib.core.resources import RESOURCES
    from DTISynthLib.core.tensor_layout import tensor6_to_matrix
    from DTISynthLib.synthesis.assembly import physics_consistent

    t = np.radians(35)
    skewed = np.array([[np.cos(t), np.sin(t), 0.0], [0.0, 1.0, 0.0], [np.sin(t), 0.0, np.cos(t)]])
    turned = rotation_matrix((0, 0, 40))
    brain = still_subject.tissue.sum(-1) > 0.5
    diagonal = TorchGenerators(RESOURCES / "Models" / "diagonal", "cpu")
    for directions in (skewed, turned):
        dwi = _oblique_dwi(still_subject, directions)
        with np.errstate(divide="ignore", invalid="ignore"):
            adc = -np.log(dwi.data[..., 1:] / dwi.data[..., :1]) / 1000.0
        result = synthesize_dwi(dwi, diagonal, diagonal.manifest)
        tensor = fit_tensors(check_dwi(result.dti), brain, "ols").tensor[brain]
        matrices = tensor6_to_matrix(tensor)
        np.testing.assert_allclose(np.einsum("id,nde,ie->ni", directions, matrices, directions), adc[brain],
                                   rtol=1e-5, atol=1e-9)
        # the projection itself, on random generated signals (many not positive definite before the safeguard)
        rng = np.random.default_rng(1)
        inside = brain[..., None] & np.ones(6, bool)
        generated = np.where(inside, dwi.data[..., :1] * rng.uniform(0.2, 0.9, brain.shape + (6,)), 0).astype(np.float32)
        assembled = physics_consistent(generated, dwi.data[..., 0], dwi.data[..., 1:], dwi.data[..., 0],
                                       np.full(3, 1000.0), directions, np.full(6, 1000.0), SIEMENS_6_RAS, brain)
        signals = np.concatenate([dwi.data[..., :1], assembled], -1)
        fitted = tensor6_to_matrix(fit_tensors(check_dwi(DWI(signals, dwi.affine, np.r_[0.0, np.full(6, 1000.0)],
                                                             np.vstack([np.zeros(3), SIEMENS_6_RAS]), "x")),
                                               brain, "ols").tensor[brain])
        np.testing.assert_allclose(np.einsum("id,nde,ie->ni", directions, fitted, directions), adc[brain],
                                   rtol=1e-5, atol=1e-9)
        assert np.linalg.eigvalsh(fitted).min() > -1e-9
        with pytest.raises(InputError, match="within 30 degrees of the scanner's . axis"):
            synthesize_dwi(dwi, FakeRandomGenerators(), manifest_for(still_subject.dti.affine, GRID))
    nearly_coplanar = np.array([[1.0, 0, 0], [0, 1.0, 0], [0.55, 0.55, 0.4]])
    nearly_coplanar /= np.linalg.norm(nearly_coplanar, axis=1, keepdims=True)
    with pytest.raises(InputError, match=r"oblique.nii.gz: expected three well-conditioned .* found 4\.13 for vectors"):
        synthesize_dwi(_oblique_dwi(still_subject, nearly_coplanar), diagonal, diagonal.manifest)
