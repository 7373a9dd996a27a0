import numpy as np
import pytest

from common.packing import pack_blocks


def _offsets(lengths):
    """Line offsets for lines of the given id counts (each followed by one separator)."""
    return np.concatenate([[0], np.cumsum(np.array(lengths) + 1)]).astype(np.int64)


@pytest.mark.parametrize("seed", range(5))
def test_blocks_fit_cover_every_token_and_are_greedy(seed):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 40, size=300)
    lengths[rng.integers(0, 300, size=5)] = 150  # some lines longer than a block
    off = _offsets(lengths)
    max_len = 64
    blocks, split = pack_blocks(off, max_len)
    cap = max_len - 2
    assert split == int((lengths > cap).sum())
    assert (blocks[:, 1] - blocks[:, 0] <= cap).all() and (blocks[:, 1] > blocks[:, 0]).all()
    # every non-separator token is in exactly one block, in order
    covered = np.zeros(off[-1], dtype=int)
    for s, e in blocks:
        covered[s:e] += 1
    is_sep = np.zeros(off[-1], dtype=bool)
    is_sep[off[1:] - 1] = True
    assert (covered[~is_sep] == 1).all()
    assert (np.diff(blocks[:, 0]) > 0).all()
    # greedy: a block of whole lines could not have taken the next line too
    starts = set(off[:-1].tolist())
    for (s, e), (s2, _) in zip(blocks[:-1], blocks[1:]):
        if s in starts and s2 in starts and e - s < cap:
            nxt = np.searchsorted(off, s2)
            assert (off[nxt + 1] - 1) - s > cap


def test_long_line_is_split_into_pieces_not_dropped():
    off = _offsets([3, 25, 2])
    blocks, split = pack_blocks(off, 12)  # cap 10
    assert split == 1
    assert blocks.tolist() == [[0, 3], [4, 14], [14, 24], [24, 29], [30, 32]]


def test_empty_shard_has_no_blocks():
    blocks, split = pack_blocks(np.zeros(1, np.int64), 16)
    assert blocks.shape == (0, 2) and split == 0


def test_line_examples_are_every_line_with_long_ones_in_pieces():
    from common.packing import line_examples

    lengths = [3, 62, 63, 200, 1]
    off = _offsets(lengths)
    s, e = line_examples(off, 64)  # 62 ids fit between bos and eos
    assert (e - s).tolist() == [3, 62, 62, 1, 62, 62, 62, 14, 1]
    covered = np.concatenate([np.arange(a, b) for a, b in zip(s, e)])
    is_sep = np.zeros(off[-1], dtype=bool)
    is_sep[off[1:] - 1] = True
    assert covered.tolist() == np.flatnonzero(~is_sep).tolist()  # every id once, in order, no separator
