"""The synthesis job: a synthetic DTI, its maps and synthesis.json from a 3-direction DWI file
(SynthesisOutput)."""

from ..core.progress import NullReporter
from ..generators.package import DEFAULT_MODELS
from ..generators.runner import TorchGenerators
from ..io.files import load_dwi, load_reference_b0
from ..synthesis.input_check import package_input_check
from ..synthesis.pipeline import synthesize_dwi
from ..synthesis.writing import write_synthesis


def synthesize(request, reporter=NullReporter(), generators=None):
    """Synthesize from files and write the results (requests.SynthesisRequest); returns the written paths
    and the report. generators: the package's TorchGenerators already loaded (a cohort's worker keeps
    them between subjects); default: loaded now from request.models."""
    reporter.progress("load", 0.0, f"reading {request.dwi}")
    dwi = load_dwi(request.dwi, request.bval, request.bvec)
    b0 = load_reference_b0(request.b0) if request.b0 else None
    # Models load on a background thread while the DWI registers (started only now: a concurrent
    # torch import slows gzip reading threefold through the GIL).
    models = request.models or DEFAULT_MODELS
    generators = generators or TorchGenerators(models, request.device, precision=request.precision)
    reporter.progress("load", 1.0, f"input read; models {models} loading in the background")
    input_check = package_input_check(models, generators.manifest)  # refused now, not after the synthesis
    result = synthesize_dwi(dwi, generators, generators.manifest, b0, request.force_b, reporter, request.assembly,
                            request.output_b, input_check)
    result.report.update(models=str(models), device=str(generators.device), precision=generators.precision,
                         deterministic="eval mode: dropout off, batch-norm running statistics")
    return write_synthesis(request.out, result, reporter=reporter), result.report
