"""CPU stage: sharded text files -> token arrays (.npy, common/format.py) + manifest.json.

Imports no torch, so it runs on CPU nodes that have none.
"""
