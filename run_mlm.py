"""The users' old command line, kept working verbatim: preprocess when the cache is
missing or stale, then train (``--build_dataset_only`` stops after preprocessing).

    python run_mlm.py --tokenizer_name_or_path ... --train_dir ... --datasets_cache_dir ... [flags]
"""

import sys

from train.__main__ import main

if __name__ == "__main__":
    sys.exit(main(prog="run_mlm.py", preprocess_first=True))
