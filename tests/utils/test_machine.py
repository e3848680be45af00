"""The machine line of recorded results names the CPU and the int8-relevant vector flags."""
from fqn_det.utils.machine import cpu_model_and_flags, describe

AVX2_ONLY = 'processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse2 avx avx2 fma\n\n' \
            'processor\t: 1\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse2 avx avx2 fma\n'
VNNI = 'model name\t: Intel(R) Xeon(R) Platinum 8480C\nflags\t\t: avx2 avx512f avx512_vnni amx_int8 avx_vnni\n'


def test_flags_are_read_and_named(tmp_path):
    f = tmp_path / 'cpuinfo'
    f.write_text(AVX2_ONLY)
    assert cpu_model_and_flags(str(f)) == ('AMD EPYC 7B13', ['AVX2'])
    line = describe(str(f))
    assert line.startswith('AMD EPYC 7B13 (AVX2, no AVX512-VNNI; torch kernels: ') and ' cores' in line
    f.write_text(VNNI)
    assert cpu_model_and_flags(str(f))[1] == ['AVX2', 'AVX512F', 'AVX512-VNNI', 'AVX-VNNI', 'AMX-INT8']
    assert 'no AVX512-VNNI' not in describe(str(f))


def test_unreadable_cpuinfo_is_not_an_error(tmp_path):
    assert cpu_model_and_flags(str(tmp_path / 'missing')) == ('unknown CPU', [])
    assert describe(str(tmp_path / 'missing')).startswith('unknown CPU (no AVX2, no AVX512-VNNI')
