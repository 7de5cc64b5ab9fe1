"""The Slicer side, Qt-free: the one MRML adapter (arrays and result folders <-> nodes) and the job
runner behind the module's panel (the command line in a child process). The only package that
imports `slicer` or `vtk`, and only inside functions, so that it imports anywhere; never Qt (the
panel's Qt glue is DTISynth/DTISynthWidgets/, beside the module). The child's command lines come from
the service layer's requests.

May import: core, io, simulation, review, service.
"""
