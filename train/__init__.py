"""GPU stage: memory-maps the preprocessed cache and trains with the Hugging Face Trainer."""
