"""Small deterministic corpora for tests: English and Thai words, varied line lengths."""

from __future__ import annotations

import random
from pathlib import Path

EN = ("the of and to in is was for on that with as by at from his her an which language model "
      "training data text token block shard cache fast slow people time year world").split()
TH = "ภาษา ไทย สวัสดี ครับ ค่ะ ประเทศ คน เมือง ข้อมูล ภาษาศาสตร์ การ เรียน รู้ ของ และ ที่ ใน".split()


def make_lines(n: int, seed: int = 0, max_words: int = 40) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        words = TH if rng.random() < 0.3 else EN
        lines.append(" ".join(rng.choice(words) for _ in range(rng.randint(1, max_words))))
    return lines


def write_shards(d: Path, n_shards: int = 3, lines_per_shard: int = 400, seed: int = 0, ext: str = "txt") -> list[Path]:
    d.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(n_shards):
        lines = make_lines(lines_per_shard, seed=seed * 1000 + k)
        p = d / f"shard_{k:03d}.{ext}"
        p.write_text("\n".join(lines) + "\n", encoding="utf-8")
        paths.append(p)
    return paths
