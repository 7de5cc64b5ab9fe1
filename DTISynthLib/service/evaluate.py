"""The evaluation job: synthetic against acquired DTI (evaluation.comparison.run_evaluation:
atlas ROIs, statistics, figures, report; EvaluationOutput)."""

from ..core.progress import NullReporter
from ..evaluation.comparison import run_evaluation


def evaluate(request, reporter=NullReporter()):
    """Evaluate (requests.EvaluationRequest); returns the written paths and the summary."""
    return run_evaluation(request.original, request.synthetic, request.out, request.atlas or (), request.rois,
                          request.jobs, reporter, request.realism_voxels, request.realism_epochs)
