"""Mask-net Edge workstation stage: data sets, training, int8 quantization, evaluation, export.

Modules import TensorFlow lazily, inside the functions that need it, so that
`masknet evaluate` and the edge commands work on a LiteRT-only install.
"""
