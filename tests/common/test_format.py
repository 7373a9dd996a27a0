import numpy as np
import pytest

from common.format import FormatError, check_npy, length_histogram, npy_header, token_dtype


def test_token_dtype_uses_uint16_while_every_id_fits():
    assert token_dtype(30_000) == np.uint16
    assert token_dtype(65_536) == np.uint16  # ids 0..65535
    assert token_dtype(65_537) == np.uint32
    assert token_dtype(250_002) == np.uint32


@pytest.mark.parametrize("dtype,shape", [("<u2", (0,)), ("<u4", (12345,)), ("<i8", (10**12, 2))])
def test_fixed_header_is_read_by_numpy(tmp_path, dtype, shape):
    header = npy_header(np.dtype(dtype), shape)
    assert len(header) == 128
    p = tmp_path / "a.npy"
    data = np.arange(min(shape[0], 50) * int(np.prod(shape[1:])), dtype=dtype)
    if shape[0] > 50:  # only the header is checked for huge shapes
        p.write_bytes(header)
        with open(p, "rb") as f:
            assert np.lib.format.read_magic(f) == (1, 0)
            assert np.lib.format.read_array_header_1_0(f) == (shape, False, np.dtype(dtype))
        return
    p.write_bytes(header + data.tobytes())
    np.testing.assert_array_equal(np.load(p).reshape(-1), data)
    check_npy(p, np.dtype(dtype), shape)


def test_check_npy_names_a_truncated_file(tmp_path):
    p = tmp_path / "t.npy"
    np.save(p, np.arange(100, dtype=np.uint16))
    check_npy(p, np.dtype(np.uint16), (100,))
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(FormatError, match="t.npy.*truncated"):
        check_npy(p, np.dtype(np.uint16), (100,))
    with pytest.raises(FormatError, match="expected"):
        check_npy(p, np.dtype(np.uint32), (100,))


def test_length_histogram_bins_are_powers_of_two():
    h = length_histogram(np.array([0, 1, 2, 3, 4, 7, 8, 1000]))
    assert h[:5] == [1, 1, 2, 2, 1]  # [0,1) [1,2) [2,4) [4,8) [8,16)
    assert sum(h) == 8
