"""The review job: a blinded noise-review study (review.study.create_study) and its readers' links."""

from ..core.progress import NullReporter
from ..review.study import create_study


def reader_link(host, port, token):
    """The page a reader opens: http://host:port/r/<their token>."""
    return f"http://{host}:{port}/r/{token}"


def create_review_study(request, reporter=NullReporter()):
    """Write the study (requests.ReviewStudyRequest); returns {reader name: their link}. The links are
    shown once: the store keeps only hashes of the tokens."""
    tokens = create_study(request.original, request.synthetic, request.out,
                          [m.strip() for m in request.maps.split(",")], request.readers, request.seed, request.name,
                          reporter, training=request.training, orientation=request.orientation,
                          interpolation=request.interpolation, address=(request.host, request.port),
                          practice_original=request.practice_original, practice_synthetic=request.practice_synthetic)
    return {name: reader_link(request.host, request.port, token) for name, token in tokens.items()}
