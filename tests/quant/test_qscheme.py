"""QScheme: integer grids for every supported bit width, and rejected widths."""
import pytest

from fqn_det.quant import QScheme


@pytest.mark.parametrize('bits', range(2, 9))
def test_asymmetric_grid(bits):
    s = QScheme(bits, symmetric=False)
    assert s.quant_min == 0
    assert s.quant_max == 2 ** bits - 1
    assert s.num_levels == 2 ** bits


@pytest.mark.parametrize('bits', range(2, 9))
def test_symmetric_grid_is_restricted_and_centred(bits):
    s = QScheme(bits, symmetric=True)
    assert s.quant_max == 2 ** (bits - 1) - 1
    assert s.quant_min == -s.quant_max
    # restricted range: one level fewer than the full signed grid
    assert s.num_levels == 2 ** bits - 1


def test_known_values():
    assert (QScheme(4).quant_min, QScheme(4).quant_max) == (0, 15)
    assert (QScheme(4, True).quant_min, QScheme(4, True).quant_max) == (-7, 7)
    assert (QScheme(8).quant_min, QScheme(8).quant_max) == (0, 255)
    assert (QScheme(8, True).quant_min, QScheme(8, True).quant_max) == (-127, 127)
    assert (QScheme(2, True).quant_min, QScheme(2, True).quant_max) == (-1, 1)


def test_defaults():
    s = QScheme()
    assert (s.bits, s.symmetric, s.per_channel, s.ch_axis) == (4, False, False, 0)


@pytest.mark.parametrize('bits', [1, 9, 0, -4, 4.0, True, False, '4', None])
def test_bad_bits_rejected_naming_bits(bits):
    with pytest.raises((ValueError, TypeError), match='bits'):
        QScheme(bits)


def test_with_bits_validates_and_keeps_other_fields():
    s = QScheme(4, symmetric=True, per_channel=True, ch_axis=1)
    t = s.with_bits(8)
    assert (t.bits, t.symmetric, t.per_channel, t.ch_axis) == (8, True, True, 1)
    assert s.bits == 4
    with pytest.raises(ValueError, match='bits'):
        s.with_bits(9)


def test_to_dict_round_trip():
    s = QScheme(3, symmetric=True, per_channel=True, ch_axis=1)
    assert QScheme(**s.to_dict()) == s
