"""`masknet dataset`: face-crop data sets for Mask-net and I-Mask-net.

Modules: recipe (TOML recipes), sources (folder layouts and labels), faces (detection and which
faces to keep), recolour (the paper's HSV mask recolouring), synth (landmark-driven synthetic
wearing states), phash (near duplicates), split (identity-disjoint splits), build (the pipeline),
contact (contact sheets), calibration (the int8 calibration list), cli (the command).
"""
