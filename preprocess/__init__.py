"""CPU stage: sharded text files -> memory-mapped token arrays + manifest.json.

Imports no torch, so it runs on CPU nodes that have none.
"""
