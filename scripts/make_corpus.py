"""Write a small deterministic Thai + English corpus with learnable structure, for the demo.

Sentences come from templates ("ฉันชอบกิน{food}", "the {adj} {animal} {verb} the {thing}"),
so a tiny masked LM can visibly learn: its eval loss falls well below that of
guessing words by frequency.

    python scripts/make_corpus.py --out demo_out/text --train_shards 4 --lines 3000
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

TH = {
    "person": ["ฉัน", "เขา", "เธอ", "พวกเรา", "คุณครู", "นักเรียน", "คุณแม่", "เพื่อน", "คุณพ่อ", "น้องสาว",
               "พี่ชาย", "หมอ", "ชาวนา", "ตำรวจ"],
    "food": ["ข้าว", "ก๋วยเตี๋ยว", "ผลไม้", "ขนม", "ส้มตำ", "ต้มยำ", "ไก่ย่าง", "ผัดไทย", "มะม่วง", "ข้าวเหนียว",
             "แกงเขียวหวาน", "ปลาทอด", "กล้วย", "ไอศกรีม"],
    "place": ["โรงเรียน", "ตลาด", "บ้าน", "ทะเล", "ภูเขา", "กรุงเทพ", "เชียงใหม่", "ห้องสมุด", "โรงพยาบาล",
              "สวนสาธารณะ", "วัด", "สนามบิน", "ร้านอาหาร", "มหาวิทยาลัย"],
    "verb": ["ชอบกิน", "อยากกิน", "ทำ", "ซื้อ", "ขาย", "แบ่ง", "เก็บ"],
    "time": ["ทุกวัน", "ตอนเช้า", "ตอนเย็น", "เมื่อวาน", "พรุ่งนี้", "วันหยุด", "ตอนกลางคืน", "สัปดาห์หน้า"],
}
EN = {
    "adj": ["small", "big", "quick", "lazy", "happy", "old", "young", "red", "green", "quiet", "noisy", "brave"],
    "animal": ["cat", "dog", "fox", "bird", "horse", "rabbit", "mouse", "cow", "sheep", "tiger", "monkey", "duck"],
    "verb": ["sees", "chases", "likes", "follows", "watches", "finds", "carries", "hides"],
    "thing": ["ball", "house", "tree", "river", "garden", "road", "book", "box", "window", "bridge", "market", "field"],
}
TEMPLATES = [
    ("{person} {verb} {food} {time}", TH),
    ("{person} ไป {place} {time}", TH),
    ("{person} ชอบ {place} มาก", TH),
    ("the {adj} {animal} {verb} the {thing}", EN),
    ("every day the {animal} goes to the {thing}", EN),
    ("a {adj} {animal} and a {adj} {animal}", EN),
]


def sentence(rng: random.Random) -> str:
    template, words = rng.choice(TEMPLATES)
    out = template
    while "{" in out:
        key = out[out.index("{") + 1 : out.index("}")]
        # Zipf-like: earlier words are more frequent
        choices = words[key]
        pick = choices[min(int(rng.paretovariate(1.2)) - 1, len(choices) - 1)]
        out = out.replace("{" + key + "}", pick, 1)
    return out


def line(rng: random.Random) -> str:
    return " ".join(sentence(rng) for _ in range(rng.randint(1, 4)))


def write(dir_: Path, shards: int, lines: int, seed: int) -> None:
    dir_.mkdir(parents=True, exist_ok=True)
    for k in range(shards):
        rng = random.Random(seed * 1000 + k)
        (dir_ / f"shard_{k:03d}.txt").write_text("\n".join(line(rng) for _ in range(lines)) + "\n", encoding="utf-8")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="demo_out/text", help="writes <out>/train and <out>/eval")
    p.add_argument("--train_shards", type=int, default=4)
    p.add_argument("--lines", type=int, default=3000, help="lines per shard")
    a = p.parse_args()
    write(Path(a.out) / "train", a.train_shards, a.lines, seed=1)
    write(Path(a.out) / "eval", 1, max(200, a.lines // 6), seed=2)
    print(f"corpus: {a.out}/train ({a.train_shards} shards x {a.lines} lines), {a.out}/eval")


if __name__ == "__main__":
    main()
