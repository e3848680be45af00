"""The .fqnint file: packing, round trip, versioning, truncation, atomic writes."""
import json
import zipfile

import numpy as np
import pytest

from fqn_det.export import int_model
from fqn_det.export.graph import IntGraph, Node, TensorQ
from fqn_det.export.int_model import (IntModelFormatError, load_int_model, pack_nibbles, save_int_model,
                                      unpack_nibbles)


@pytest.mark.parametrize('qmin', [0, -7])
def test_nibble_packing_round_trip(qmin):
    q = np.random.default_rng(0).integers(qmin, qmin + 16, 1001)
    packed = pack_nibbles(q, qmin)
    assert packed.dtype == np.uint8 and packed.size == 501
    assert np.array_equal(unpack_nibbles(packed, qmin, q.size), q)
    with pytest.raises(ValueError):
        pack_nibbles(np.array([qmin + 16]), qmin)


def _graph(bits=4):
    rng = np.random.default_rng(0)
    w = rng.integers(0, 2 ** bits, (8, 3, 3, 3)).astype(np.uint8)
    g = IntGraph(tensors={'a': TensorQ(0.1, 3, 0, 15), 'b': TensorQ(0.2, 0, 0, 15)}, inputs=['image'],
                 outputs=['out'])
    params = dict(weight=w, w_zero_point=np.arange(8), w_scale=rng.random(8).astype(np.float32),
                  bias=np.arange(8, dtype=np.int32),
                  m0=np.full(8, 2 ** 30), shift=np.full(8, 3))
    g.nodes = [Node('quantize', 'q', ['image'], ['a']),
               Node('conv', 'c0', ['a'], ['b'], dict(w_bits=bits, w_symmetric=False, stride=[1, 1]), params),
               Node('conv', 'c1', ['a'], ['b'], dict(w_bits=bits, w_symmetric=False, stride=[1, 1]), dict(params)),
               Node('dequantize', 'out', ['b'], ['out'])]
    return g


def test_save_load_round_trip_with_shared_weights(tmp_path):
    g = _graph()
    size = save_int_model(tmp_path / 'm.fqnint', {'features': g}, dict(detector=dict(type='X')))
    graphs, meta = load_int_model(tmp_path / 'm.fqnint')
    assert meta == dict(detector=dict(type='X')) and size == (tmp_path / 'm.fqnint').stat().st_size
    h = graphs['features']
    for a, b in zip(g.nodes, h.nodes):
        assert (a.op, a.name, a.inputs, a.outputs, a.attrs) == (b.op, b.name, b.inputs, b.outputs, b.attrs)
        for k, v in a.params.items():
            assert np.array_equal(v, b.params[k]), k
    with zipfile.ZipFile(tmp_path / 'm.fqnint') as z:
        names = z.namelist()
        header = json.loads(z.read('header.json'))
    assert header['version'] == int_model.VERSION
    assert sum('weight' in n for n in names) == 1  # the shared weight is stored once, packed
    assert header['graphs']['features']['nodes'][1]['params']['weight']['packed'] == 'nibbles'


def test_other_version_and_foreign_files_are_clear_errors(tmp_path):
    p = tmp_path / 'm.fqnint'
    save_int_model(p, {'features': _graph()}, {})
    with zipfile.ZipFile(p) as z:
        items = {n: z.read(n) for n in z.namelist()}
    header = json.loads(items['header.json'])
    header['version'] = 99
    items['header.json'] = json.dumps(header).encode()
    with zipfile.ZipFile(tmp_path / 'v99.fqnint', 'w') as z:
        for n, b in items.items():
            z.writestr(n, b)
    with pytest.raises(IntModelFormatError, match='version 99'):
        load_int_model(tmp_path / 'v99.fqnint')
    (tmp_path / 'junk.fqnint').write_bytes(b'not a model')
    with pytest.raises(IntModelFormatError, match='truncated or corrupt'):
        load_int_model(tmp_path / 'junk.fqnint')
    with pytest.raises(FileNotFoundError):
        load_int_model(tmp_path / 'missing.fqnint')


@pytest.mark.parametrize('keep', [0.3, 0.9, 0.999])
def test_truncated_file_is_a_clear_error(tmp_path, keep):
    p = tmp_path / 'm.fqnint'
    save_int_model(p, {'features': _graph()}, {})
    data = p.read_bytes()
    p.write_bytes(data[:int(len(data) * keep)])
    with pytest.raises(IntModelFormatError, match='truncated or corrupt'):
        load_int_model(p)


def test_failed_write_keeps_previous_file_and_leaves_no_temp(tmp_path, monkeypatch):
    p = tmp_path / 'm.fqnint'
    save_int_model(p, {'features': _graph()}, {'v': 1})
    before = p.read_bytes()

    def boom(*a, **k):
        raise OSError('disk full')

    monkeypatch.setattr(int_model, '_npy', boom)
    with pytest.raises(OSError, match='disk full'):
        save_int_model(p, {'features': _graph()}, {'v': 2})
    assert p.read_bytes() == before
    assert sorted(x.name for x in tmp_path.iterdir()) == ['m.fqnint']


def test_per_channel_output_quantization_round_trips(tmp_path):
    g = _graph()
    out = g.nodes[-1].inputs[0] if g.nodes[-1].op == 'dequantize' else g.outputs[0]
    g.tensors['pc_out'] = TensorQ([0.5, 0.25], [3, 9], 0, 15, axis=1)
    save_int_model(tmp_path / 'm.fqnint', {'features': g}, {})
    graphs, _ = load_int_model(tmp_path / 'm.fqnint')
    t = graphs['features'].tensors['pc_out']
    assert t == TensorQ([0.5, 0.25], [3, 9], 0, 15, axis=1) and t.per_channel
    assert graphs['features'].tensors[out] == g.tensors[out] and not graphs['features'].tensors[out].per_channel


@pytest.mark.parametrize('kw', [dict(), dict(symmetric=True), dict(w_bits=3), dict(w_bits=8, w_range=(70, 180)),
                                dict(w_bits=8, w_range=(0, 255)), dict(out_per_channel=True, linear=True)],
                         ids=['w4-asym', 'w4-sym', 'w3', 'w8-centred', 'w8-wide', 'linear-pc'])
def test_zero_centred_layout_round_trip(tmp_path, kw):
    from graphs import conv_graph
    g = conv_graph(**kw)
    save_int_model(tmp_path / 'm.fqnint', {'features': g}, {})
    h = load_int_model(tmp_path / 'm.fqnint')[0]['features']
    for a, b in zip(g.nodes, h.nodes):
        for k, v in a.params.items():
            assert np.array_equal(v, b.params[k]) and v.dtype == b.params[k].dtype, k
    with zipfile.ZipFile(tmp_path / 'm.fqnint') as z:
        header = json.loads(z.read('header.json'))
        node = next(n for n in header['graphs']['features']['nodes'] if n['name'] == 'layer')
        stored = np.load(z.open(node['params']['weight']['key'] + '.npy'))
    spec = node['params']['weight']
    w = g.nodes[-2].params['weight']
    if kw.get('w_bits', 4) <= 4:  # packed two per byte
        assert spec['packed'] == 'nibbles' and spec['centred'] and stored.size == (w.size + 1) // 2
    elif kw.get('w_range') == (0, 255):  # centred values need 9 bits: stored as q
        assert not spec['centred'] and stored.dtype == np.uint8
    else:  # the int8 tensor the kernels read
        zp = g.nodes[-2].params['w_zero_point'].reshape(-1, 1, 1, 1)
        assert spec['centred'] and stored.dtype == np.int8
        assert np.array_equal(stored, w.astype(np.int64) - zp)


def test_a_version_1_file_is_refused_naming_file_and_versions(tmp_path):
    p = tmp_path / 'old.fqnint'
    save_int_model(p, {'features': _graph()}, {})
    with zipfile.ZipFile(p) as z:
        items = {n: z.read(n) for n in z.namelist()}
    header = json.loads(items['header.json'])
    header['version'] = 1
    items['header.json'] = json.dumps(header).encode()
    with zipfile.ZipFile(p, 'w') as z:
        for n, b in items.items():
            z.writestr(n, b)
    with pytest.raises(IntModelFormatError, match=r'old.fqnint: integer model format version 1 is not supported '
                                                  r'\(this fqn_det reads version 2\); re-export'):
        load_int_model(p)
