"""`dtisynth synthesize`: a synthetic DTI from a 3-direction DWI, with its maps (SynthesisOutput)."""

from ..core.progress import NullReporter
from ..generators.runner import DEVICES, PRECISIONS
from ..synthesis.assembly import ASSEMBLIES
from .options import add_jsonl_option, positive_float

NAME = "synthesize"
HELP = "synthesize a 6-direction DTI from a 3-direction DWI, with maps"


def add_arguments(parser):
    parser.add_argument("--dwi", required=True, help="3-direction DWI with b=0 (NIfTI + bval/bvec, NRRD or DICOM folder)")
    parser.add_argument("--bval")
    parser.add_argument("--bvec")
    parser.add_argument("--b0", help="reference b=0 to register the DWI to (default: the DWI's own b=0)")
    parser.add_argument("--models", help="model folder (default: the shipped tensor-unet set)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--device", choices=DEVICES, default="auto", help="auto (default: a CUDA GPU if any), cpu or cuda")
    parser.add_argument("--force-b", action="store_true", help="accept a b-value other than the models'")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="auto (default: bf16 where the hardware computes it natively, else fp32), fp32, or bf16 "
                             "(autocast + channels_last with an fp32 output layer)")
    parser.add_argument("--output-b", type=positive_float,
                        help="b-value of the synthetic DTI in s/mm^2 (default: the input's for packages that take a "
                             "range of b, such as the diagonal baseline; the package's b otherwise)")
    parser.add_argument("--assembly", choices=ASSEMBLIES,
                        help="physics (the tensor's diagonal, so MD, as the x, y, z DWI measured it; only the rest "
                             "generated) or network (the generators' outputs as they are: the seed paper's way for "
                             "pix2pix, the denoised tensor for tensor-unet). Default: the package's own (manifest "
                             "'assembly'), else physics")
    add_jsonl_option(parser)


def run(args, reporter):
    from .process import keep_freed_heap_memory

    keep_freed_heap_memory()
    outputs, report = run_synthesis(args.dwi, args.out, args.b0, args.models, args.device, args.force_b, args.bval,
                                    args.bvec, reporter, args.precision, args.assembly, args.output_b)
    reporter.result(outputs, f"synthetic DTI in {args.out}" + "".join(f"\nwarning: {w}" for w in report["warnings"]))


def run_synthesis(dwi_path, out_dir, b0_path=None, models_dir=None, device="auto", force_b=False, bval=None,
                  bvec=None, reporter=NullReporter(), precision="auto", assembly=None, output_b=None):
    """Synthesize from files and write the results; returns the written paths and the report."""
    from ..generators.package import DEFAULT_MODELS
    from ..generators.runner import TorchGenerators
    from ..io.files import load_dwi, load_reference_b0
    from ..synthesis.pipeline import synthesize_dwi
    from ..synthesis.writing import write_synthesis
    from .input_check import input_check_report, package_input_check

    reporter.progress("load", 0.0, f"reading {dwi_path}")
    dwi = load_dwi(dwi_path, bval, bvec)
    b0 = load_reference_b0(b0_path) if b0_path else None
    # Models load on a background thread while the DWI registers (started only now: a concurrent
    # torch import slows gzip reading threefold through the GIL).
    models_dir = models_dir or DEFAULT_MODELS
    generators = TorchGenerators(models_dir, device, precision=precision)
    reporter.progress("load", 1.0, f"input read; models {models_dir} loading in the background")
    input_check = package_input_check(models_dir, generators.manifest)  # refused now, not after the synthesis
    result = synthesize_dwi(dwi, generators, generators.manifest, b0, force_b, reporter, assembly, output_b)
    result.report.update(models=str(models_dir), device=str(generators.device), precision=generators.precision,
                         deterministic="eval mode: dropout off, batch-norm running statistics")
    # without --b0 the synthesis's brain mask is that of the DWI's own b=0: not computed twice
    check = input_check_report(input_check, dwi, result.mask if b0 is None else None) if input_check else None
    result.report["input_check"] = check or "none in this model package"
    if check and check["warning"]:
        result.report["warnings"].append(
            f"{dwi_path} is unlike the models' training inputs: its reconstruction error by their input-check "
            f"autoencoder is {check['error_ratio']:.2f} x that of their validation subjects (warning above "
            f"{check['warning_ratio']:g}); check that it is a brain DWI like those the models "
            "were trained on, and judge the synthetic DTI with care")
    return write_synthesis(out_dir, result, reporter=reporter), result.report
