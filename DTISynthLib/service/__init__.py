"""The service layer: one request dataclass per job (requests.py: its options, their command-line
names and their checks, written once) and one function per job taking it. The command line
(jobs/), the Slicer job runner and scripts call these; they hold no argument parsing of their own.

    from DTISynthLib.service.requests import SynthesisRequest
    from DTISynthLib.service.synthesize import synthesize
    outputs, report = synthesize(SynthesisRequest(dwi="dwi.nii.gz", out="synthetic"))

May import: core, io, fit, registration, simulation, evaluation, realism, generators, synthesis, training, review.
"""
