"""Mask-net Edge: the door runtime. Never imports TensorFlow (see edge/litert.py)."""

__version__ = "0.1.0"
