"""GPU stage: reads the preprocessed cache's blocks with ``pread`` (common/reader.py; it maps nothing)
and trains with the Hugging Face Trainer."""
