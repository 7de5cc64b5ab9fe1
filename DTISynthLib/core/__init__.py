"""The core every other package builds on: the in-memory DWI, coordinate frames, gradient schemes,
the six-element tensor layout, input errors, atomic writes, progress reporting and the names of every
output file (output_layout).

May import: nothing of DTISynthLib (numpy; scipy for one assignment in gradient_schemes).
"""
