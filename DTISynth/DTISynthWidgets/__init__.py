"""The Qt side of the DTISynth module's panel, beside DTISynth.py (as Slicer's own modules keep theirs
in <Module>Lib/): the Review section's keys and buttons, the model sets and the results display. Only
the Slicer application imports these; the science and everything testable without Qt is DTISynthLib."""
