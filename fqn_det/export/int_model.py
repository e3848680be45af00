"""The integer model file (``.fqnint``): a zip of ``header.json`` and ``.npy`` arrays.

Weights are stored zero-centred, ``q - z`` (the int8 tensor the integer
engine and the ONNX kernels read, see :mod:`.weights`), next to their
zero-points; weights of 4 bits or fewer are packed two per byte (low nibble
first) as ``(q - z) - (qmin - z)``, i.e. relative to a per-channel offset.
Version 1 files (uncentred ``q``) are refused with a clear error. Biases are int32; requantization multipliers are int32
``M0`` with integer shifts. The header holds the graphs, the tensor
quantization (input quantization and output dequantization included), the
detector config used for box decoding and NMS, and the format version.
Files are written to a temporary sibling and renamed, so a failure never
leaves a partial file; members are stored uncompressed with fixed timestamps,
so the same model gives the same bytes. Reading bounds every member by the
file's own size (and the header by :data:`MAX_HEADER_BYTES`) and checks each
array's declared size against its bytes before allocating it.
"""
from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, Tuple

import numpy as np

from ..utils.atomic import atomic_write_bytes
from .graph import IntGraph, Node, TensorQ
from .weights import centered_int8, centered_weight

FORMAT = 'fqn_det.int'
VERSION = 2


class IntModelFormatError(ValueError):
    """Not a readable integer model of this format version."""


def pack_nibbles(q: np.ndarray, qmin: int) -> np.ndarray:
    """Pack integers in ``[qmin, qmin + 15]`` two per byte (low nibble first)."""
    u = (q.astype(np.int64).reshape(-1) - qmin).astype(np.uint8)
    if u.size and int(u.max()) > 15:
        raise ValueError('values do not fit 4 bits')
    if u.size % 2:
        u = np.concatenate([u, np.zeros(1, np.uint8)])
    return (u[0::2] | (u[1::2] << 4)).astype(np.uint8)


def unpack_nibbles(packed: np.ndarray, qmin: int, count: int) -> np.ndarray:
    out = np.empty(packed.size * 2, np.int64)
    out[0::2] = packed & 0x0F
    out[1::2] = packed >> 4
    return out[:count] + qmin


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


#: Storage dtypes of per-channel parameters (values are range-checked on save).
_STORE = dict(w_zero_point=np.int16, w_scale=np.float32, m0=np.int32, shift=np.int16, bias=np.int32,
              m0_a=np.int32, m0_b=np.int32, shift_a=np.int16, shift_b=np.int16)


def _compact(k: str, a: np.ndarray) -> np.ndarray:
    dt = _STORE.get(k)
    if dt is None:
        return a
    c = a.astype(dt)
    if np.issubdtype(dt, np.integer) and not np.array_equal(c.astype(np.int64), a.astype(np.int64)):
        raise ValueError(f'parameter {k} does not fit {np.dtype(dt).name}')
    return c


#: upper bound of ``header.json`` (graphs and detector config; a few MB for a ResNet-50 detector)
MAX_HEADER_BYTES = 64 * 2 ** 20
#: fixed member timestamp: the same model gives the same file bytes
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def _zip_member(name: str) -> zipfile.ZipInfo:
    """A stored member with fixed timestamp and permissions (reproducible file bytes)."""
    info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    return info


def _read_member(z: zipfile.ZipFile, name: str, path: Path, limit: int) -> bytes:
    """Member ``name``, refused before reading if it is compressed or declares more than ``limit`` bytes.

    This format stores members uncompressed, so a member can never be larger than
    the file itself: a deflated "zip bomb" member is a crafted file.
    """
    info = z.getinfo(name)
    if info.compress_type != zipfile.ZIP_STORED:
        raise IntModelFormatError(f'{path}: member {name} is compressed; this format stores members '
                                  'uncompressed (crafted or foreign file)')
    if info.file_size > limit:
        raise IntModelFormatError(f'{path}: member {name} declares {info.file_size} bytes, more than the '
                                  f'{limit} it may hold (crafted or corrupt file)')
    with z.open(info) as f:
        return f.read(limit + 1)


def _load_npy(data: bytes, name: str, path: Path) -> np.ndarray:
    """An ``.npy`` member whose declared shape and dtype must match the bytes it holds."""
    f = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(f)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read_header is None:
            raise ValueError(f'.npy format version {version} is not one this format writes')
        shape, fortran, dtype = read_header(f)
    except ValueError as e:
        raise IntModelFormatError(f'{path}: member {name} is not a valid .npy array ({e})') from e
    expected = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if dtype.hasobject or expected != len(data) - f.tell():
        raise IntModelFormatError(f'{path}: member {name} declares a {"x".join(map(str, shape))} {dtype} array '
                                  f'({expected} bytes) but holds {len(data) - f.tell()} bytes (crafted or '
                                  'corrupt file)')
    return np.load(io.BytesIO(data), allow_pickle=False)


def _weight_qmin(n: Node) -> int:
    bits = int(n.attrs.get('w_bits', 8))
    return -(2 ** (bits - 1) - 1) if n.attrs.get('w_symmetric') else 0


def _store_weight(n: Node, q: np.ndarray, spec: dict) -> np.ndarray:
    """The stored form of integer weights ``q``: zero-centred ``q - z``, nibble-packed up to 4 bits.

    ``spec`` gets ``centred`` (True when ``q - z`` is stored) and, for packed
    weights, ``packed='nibbles'`` and ``qmin``: the nibbles hold
    ``(q - z) - (qmin - z_c)`` per output channel ``c``.
    """
    zp = n.params.get('w_zero_point', np.zeros(1, np.int64))
    if int(n.attrs.get('w_bits', 8)) <= 4:
        qmin = _weight_qmin(n)
        spec.update(centred=True, packed='nibbles', qmin=qmin)
        offset = qmin - np.asarray(zp, np.int64).reshape(-1, *([1] * (q.ndim - 1)))
        return pack_nibbles(np.broadcast_to(centered_weight(q, zp) - offset, q.shape), 0)
    c8 = centered_int8(q, zp)
    spec['centred'] = c8 is not None
    return q if c8 is None else c8  # wide 8-bit asymmetric weights whose centred values need 9 bits stay q


def _load_weight(params: Dict[str, np.ndarray], spec: dict) -> np.ndarray:
    """Integer weights ``q`` back from their stored form (see :func:`_store_weight`)."""
    a = params['weight']
    shape = [int(v) for v in spec['shape']]
    zp = np.asarray(params.get('w_zero_point', np.zeros(1, np.int64)), np.int64).reshape(
        -1, *([1] * (len(shape) - 1)))
    if spec.get('packed') == 'nibbles':
        a = unpack_nibbles(a, 0, int(np.prod(shape))).reshape(shape) + (int(spec['qmin']) - zp)
    return a.astype(np.int64) + zp if spec.get('centred') else a


def save_int_model(path, graphs: Dict[str, IntGraph], meta: Dict[str, Any]) -> int:
    """Write graphs + meta to ``path`` atomically; returns the file size in bytes.

    Identical arrays (e.g. the weights of a head conv shared by all FPN levels)
    are stored once.
    """
    header = dict(format=FORMAT, version=VERSION, meta=meta, graphs={})
    arrays: Dict[str, np.ndarray] = {}
    seen: Dict[bytes, str] = {}
    for stage, g in graphs.items():
        nodes = []
        for i, n in enumerate(g.nodes):
            pspec = {}
            for k, a in n.params.items():
                a = np.asarray(a)
                spec = dict(dtype=str(a.dtype), shape=list(a.shape))
                a = _compact(k, a)
                if k == 'weight':
                    a = _store_weight(n, a, spec)
                digest = hashlib.sha1(str(a.dtype).encode() + str(a.shape).encode() + a.tobytes()).digest()
                if digest not in seen:
                    seen[digest] = f'{stage}/{i}/{k}'
                    arrays[seen[digest]] = a
                spec['key'] = seen[digest]
                pspec[k] = spec
            nodes.append(dict(op=n.op, name=n.name, inputs=n.inputs, outputs=n.outputs, attrs=n.attrs,
                              params=pspec))
        header['graphs'][stage] = dict(nodes=nodes, inputs=g.inputs, outputs=g.outputs,
                                       output_groups=g.output_groups,
                                       tensors={k: asdict(t) for k, t in g.tensors.items()})

    def write(f):
        with zipfile.ZipFile(f, 'w', zipfile.ZIP_STORED) as z:
            z.writestr(_zip_member('header.json'), json.dumps(header))
            for k, a in arrays.items():
                z.writestr(_zip_member(k + '.npy'), _npy(a))

    atomic_write_bytes(Path(path), write)
    return Path(path).stat().st_size


def load_int_model(path) -> Tuple[Dict[str, IntGraph], Dict[str, Any]]:
    """Read an integer model file.

    Raises:
        FileNotFoundError: No such file.
        IntModelFormatError: Truncated or corrupt file, another format or version.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'integer model not found: {path}')
    try:
        size = path.stat().st_size
        with zipfile.ZipFile(path) as z:
            header = json.loads(_read_member(z, 'header.json', path, min(MAX_HEADER_BYTES, size)))
            if header.get('format') != FORMAT:
                raise IntModelFormatError(f'{path}: not an fqn_det integer model')
            if header.get('version') != VERSION:
                raise IntModelFormatError(f'{path}: integer model format version {header.get("version")} '
                                          f'is not supported (this fqn_det reads version {VERSION}); '
                                          're-export it with tools/export.py')
            graphs = {}
            for stage, gd in header['graphs'].items():
                nodes = []
                for nd in gd['nodes']:
                    params = {}
                    for k, spec in nd['params'].items():
                        member = spec['key'] + '.npy'
                        params[k] = _load_npy(_read_member(z, member, path, size), member, path)
                    for k, spec in nd['params'].items():
                        if k == 'weight':
                            params[k] = _load_weight(params, spec)
                        params[k] = params[k].astype(spec['dtype'])
                    nodes.append(Node(nd['op'], nd['name'], nd['inputs'], nd['outputs'], nd['attrs'], params))
                graphs[stage] = IntGraph(nodes, {k: TensorQ(**t) for k, t in gd['tensors'].items()},
                                         gd['inputs'], gd['outputs'], gd['output_groups'])
    except IntModelFormatError:
        raise
    except (zipfile.BadZipFile, KeyError, EOFError, ValueError, OSError, TypeError, AttributeError) as e:
        raise IntModelFormatError(f'{path}: truncated or corrupt integer model ({type(e).__name__}: {e})') from e
    return graphs, header['meta']
