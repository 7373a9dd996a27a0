"""What both stages share: the on-disk format, the manifest, hashing, tokenizer loading.

Imports no torch, so a CPU-only node can preprocess.
"""

__version__ = "0.1.0"
