"""The quantization config: one validated object built from a plain dict.

Example (an mmdet config's ``model.quant_cfg``)::

    quant_cfg = dict(
        weight=dict(bits=4, symmetric=False, per_channel=True),
        act=dict(bits=4, symmetric=False),
        calib=dict(num_batches=20, gamma=0.999, bins=2048),
        ema=dict(momentum=0.01, stat='percentile'),
        freeze_bn=True,
        overrides=[dict(pattern='backbone.conv1', w_bits=8, a_bits=8),
                   # not in the paper: RetinaNet's class logits ranged from the score threshold up
                   dict(pattern='bbox_head.retina_cls', gamma=1.0, floor='score_thr'),
                   # not in the paper: one range per output channel of the head outputs
                   dict(pattern='bbox_head.retina_*', a_per_channel=True)])

Every key is checked: an unknown key (a typo) or a value out of range raises
``ValueError`` naming the setting.
"""
from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Tuple

from .qscheme import MAX_BITS, MIN_BITS, QScheme

_OVERRIDE_KEYS = {'pattern', 'w_bits', 'a_bits', 'w_symmetric', 'a_symmetric', 'w_per_channel', 'a_per_channel',
                  'gamma', 'floor'}
EMA_STATS = ('percentile', 'minmax')
# ``floor='score_thr'``: the logit of the detector's test-time score threshold (sigmoid heads)
SCORE_THR = 'score_thr'


def _check_keys(section: str, given: Mapping, allowed: set) -> None:
    unknown = set(given) - allowed
    if unknown:
        raise ValueError(f'unknown key(s) {sorted(unknown)} in quant_cfg{section}; '
                         f'allowed: {sorted(allowed)}')


def _check_bits(name: str, bits: Any) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f'{name} must be an integer in [{MIN_BITS}, {MAX_BITS}], got {bits!r}')
    return bits


def _check_bool(name: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f'{name} must be True or False, got {v!r}')
    return v


def _scalar(v: str) -> Any:
    low = v.strip().lower()
    if low in ('true', 'false'):
        return low == 'true'
    if low in (SCORE_THR, 'none'):
        return None if low == 'none' else SCORE_THR
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    raise ValueError(f'quant_cfg.overrides: cannot read value {v!r}')


def parse_overrides(text: str) -> List[Dict[str, Any]]:
    """``'pat:key=val,key=val;pat2:key=val'`` -> override dicts (for ``--cfg-options``).

    mmengine's ``--cfg-options`` cannot parse ``dict(...)``, so overrides can be
    given as e.g. ``model.quant_cfg.overrides='bbox_head.retina_cls:gamma=1.0;backbone.conv1:w_bits=8'``.
    """
    out = []
    for i, part in enumerate(filter(None, (p.strip() for p in text.split(';')))):
        if ':' not in part:
            raise ValueError(f'quant_cfg.overrides[{i}] entry {part!r} must look like "pattern:key=value,..."')
        pattern, body = part.split(':', 1)
        ov: Dict[str, Any] = dict(pattern=pattern.strip())
        for kv in filter(None, (x.strip() for x in body.split(','))):
            if '=' not in kv:
                raise ValueError(f'quant_cfg.overrides entry {part!r}: {kv!r} is not key=value')
            k, v = kv.split('=', 1)
            ov[k.strip()] = _scalar(v)
        out.append(ov)
    return out


def _overrides_arg(v: Any) -> Any:
    if v is None:
        return []
    return v if isinstance(v, str) else list(v)


def _check_gamma(name: str, g: Any) -> float:
    if isinstance(g, bool) or not isinstance(g, (int, float)) or not 0.5 < g <= 1.0:
        raise ValueError(f'{name} must be in (0.5, 1] (1 = plain min/max), got {g!r}')
    return g


def _check_floor(name: str, f: Any) -> None:
    if f is None or f == SCORE_THR:
        return
    if isinstance(f, bool) or not isinstance(f, (int, float)) or not math.isfinite(f):
        raise ValueError(f'{name} must be a finite number, None or {SCORE_THR!r}, got {f!r}')


@dataclass
class QuantConfig:
    """Validated FQN quantization settings (see module docstring for the dict form).

    Attributes:
        w_bits, a_bits (int): Weight / activation bits, 2..8 (default 4/4).
        w_symmetric, a_symmetric (bool): Symmetric grids (default asymmetric).
        w_per_channel (bool): Per-output-channel weights (default True).
        calib_batches (int): FQN calibration batches n >= 1 (default 20).
        gamma (float): Percentile gamma in (0.5, 1]; 1 means plain min/max (default 0.999).
        hist_bins (int): Calibration histogram bins per side of zero (default 2048).
        ema_momentum (float): EMA weight of each new batch, in (0, 1) (default 0.01).
        ema_stat (str): ``'percentile'`` (FQN) or ``'minmax'`` (IAO) (default percentile).
        freeze_bn (bool): Frozen, folded BN during fine-tuning (default True).
        overrides (list[dict]): Per-module precision by ``fnmatch`` pattern on module
            paths (e.g. ``'backbone.conv1'``, ``'bbox_head.retina_*'``); later entries win.
            Keys: ``w_bits``, ``a_bits``, ``w_symmetric``, ``a_symmetric``,
            ``w_per_channel``, ``a_per_channel`` (one activation range per output
            channel; only on head outputs, which are dequantized for box decoding and
            NMS, so no integer layer consumes them; not in the FQN paper), ``gamma``
            (that module's calibration percentile) and
            ``floor`` (a number, or ``'score_thr'``: the logit of the detector's
            test-time score threshold, for sigmoid classification outputs such as
            ``bbox_head.retina_cls``): the output range starts at most one step
            under it, since values there are discarded whatever they are, and
            everything clipped there stays under it (not in the FQN paper).
        dfq_init (bool): DFQ (BN folding, equalization, high-bias absorption) on the
            loaded float weights before calibration and fine-tuning (default False).
    """

    w_bits: int = 4
    a_bits: int = 4
    w_symmetric: bool = False
    a_symmetric: bool = False
    w_per_channel: bool = True
    calib_batches: int = 20
    gamma: float = 0.999
    hist_bins: int = 2048
    ema_momentum: float = 0.01
    ema_stat: str = 'percentile'
    freeze_bn: bool = True
    overrides: List[Dict[str, Any]] = field(default_factory=list)
    dfq_init: bool = False

    def __post_init__(self) -> None:
        _check_bits('quant_cfg.weight.bits', self.w_bits)
        _check_bits('quant_cfg.act.bits', self.a_bits)
        for name, path in (('w_symmetric', 'weight.symmetric'), ('a_symmetric', 'act.symmetric'),
                           ('w_per_channel', 'weight.per_channel'), ('freeze_bn', 'freeze_bn'),
                           ('dfq_init', 'dfq_init')):
            _check_bool(f'quant_cfg.{path}', getattr(self, name))
        n = self.calib_batches
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f'quant_cfg.calib.num_batches (n) must be an integer >= 1, got {n!r}')
        _check_gamma('quant_cfg.calib.gamma', self.gamma)
        if not isinstance(self.hist_bins, int) or self.hist_bins < 1024 or self.hist_bins % 2:
            raise ValueError(f'quant_cfg.calib.bins must be an even integer >= 1024, got {self.hist_bins!r}')
        m = self.ema_momentum
        if isinstance(m, bool) or not isinstance(m, (int, float)) or not 0.0 < m < 1.0:
            raise ValueError(f'quant_cfg.ema.momentum must be in (0, 1), got {m!r}')
        if self.dfq_init and not self.freeze_bn:
            raise ValueError('quant_cfg.dfq_init=True needs freeze_bn=True: DFQ folds BN for good, and '
                             'batch-statistics folding (freeze_bn=False) would undo the equalization')
        if self.ema_stat not in EMA_STATS:
            raise ValueError(f'quant_cfg.ema.stat must be one of {EMA_STATS}, got {self.ema_stat!r}')
        if isinstance(self.overrides, (list, tuple)) and self.overrides and \
                all(isinstance(o, str) for o in self.overrides):
            # mmengine's --cfg-options (DictAction) splits a value at commas into a list:
            # 'p:w_bits=8,a_bits=8' arrives as ['p:w_bits=8', 'a_bits=8']; join it back
            self.overrides = ','.join(self.overrides)
        if isinstance(self.overrides, str):
            self.overrides = parse_overrides(self.overrides)
        if isinstance(self.overrides, (list, tuple)) and any(isinstance(o, str) for o in self.overrides):
            raise ValueError(f'quant_cfg.overrides mixes dicts and strings ({list(self.overrides)!r}); give '
                             'a list of dicts, or one string "pattern:key=value,key=value;pattern2:..."')
        if not isinstance(self.overrides, (list, tuple)):
            raise ValueError(f'quant_cfg.overrides must be a list of dicts, got {type(self.overrides).__name__}')
        for i, ov in enumerate(self.overrides):
            if not isinstance(ov, Mapping) or 'pattern' not in ov:
                raise ValueError(f'quant_cfg.overrides[{i}] must be a dict with a "pattern", got {ov!r}')
            _check_keys(f'.overrides[{i}]', ov, _OVERRIDE_KEYS)
            for k in ('w_bits', 'a_bits'):
                if k in ov:
                    _check_bits(f'quant_cfg.overrides[{i}].{k}', ov[k])
            for k in ('w_symmetric', 'a_symmetric', 'w_per_channel', 'a_per_channel'):
                if k in ov:
                    _check_bool(f'quant_cfg.overrides[{i}].{k}', ov[k])
            if 'gamma' in ov:
                _check_gamma(f'quant_cfg.overrides[{i}].gamma', ov['gamma'])
            if 'floor' in ov:
                _check_floor(f'quant_cfg.overrides[{i}].floor', ov['floor'])
        self.overrides = [dict(ov) for ov in self.overrides]
        self._matched: set = set()

    @classmethod
    def from_dict(cls, cfg: Mapping | None) -> 'QuantConfig':
        """Build from the nested dict form; unknown keys raise ``ValueError``."""
        if isinstance(cfg, QuantConfig):
            return cls.from_dict(cfg.to_dict())  # a fresh copy: override matching is per conversion
        cfg = dict(cfg or {})
        _check_keys('', cfg, {'weight', 'act', 'calib', 'ema', 'freeze_bn', 'overrides', 'dfq_init'})
        w, a = dict(cfg.get('weight') or {}), dict(cfg.get('act') or {})
        c, e = dict(cfg.get('calib') or {}), dict(cfg.get('ema') or {})
        _check_keys('.weight', w, {'bits', 'symmetric', 'per_channel'})
        _check_keys('.act', a, {'bits', 'symmetric'})
        _check_keys('.calib', c, {'num_batches', 'gamma', 'bins'})
        _check_keys('.ema', e, {'momentum', 'stat'})
        d = cls()
        return cls(
            w_bits=w.get('bits', d.w_bits), w_symmetric=w.get('symmetric', d.w_symmetric),
            w_per_channel=w.get('per_channel', d.w_per_channel),
            a_bits=a.get('bits', d.a_bits), a_symmetric=a.get('symmetric', d.a_symmetric),
            calib_batches=c.get('num_batches', d.calib_batches), gamma=c.get('gamma', d.gamma),
            hist_bins=c.get('bins', d.hist_bins),
            ema_momentum=e.get('momentum', d.ema_momentum), ema_stat=e.get('stat', d.ema_stat),
            freeze_bn=cfg.get('freeze_bn', d.freeze_bn), overrides=_overrides_arg(cfg.get('overrides')),
            dfq_init=cfg.get('dfq_init', d.dfq_init))

    def to_dict(self) -> dict:
        return dict(
            weight=dict(bits=self.w_bits, symmetric=self.w_symmetric, per_channel=self.w_per_channel),
            act=dict(bits=self.a_bits, symmetric=self.a_symmetric),
            calib=dict(num_batches=self.calib_batches, gamma=self.gamma, bins=self.hist_bins),
            ema=dict(momentum=self.ema_momentum, stat=self.ema_stat),
            freeze_bn=self.freeze_bn, overrides=[dict(o) for o in self.overrides], dfq_init=self.dfq_init)

    # -- per-module schemes ------------------------------------------------
    def _resolved(self, name: str) -> Dict[str, Any]:
        r = dict(w_bits=self.w_bits, a_bits=self.a_bits, w_symmetric=self.w_symmetric,
                 a_symmetric=self.a_symmetric, w_per_channel=self.w_per_channel, a_per_channel=False,
                 gamma=self.gamma, floor=None)
        for i, ov in enumerate(self.overrides):
            if fnmatch.fnmatchcase(name, ov['pattern']):
                self._matched.add(i)
                r.update({k: v for k, v in ov.items() if k != 'pattern'})
        return r

    def weight_scheme(self, name: str) -> QScheme:
        r = self._resolved(name)
        return QScheme(r['w_bits'], r['w_symmetric'], r['w_per_channel'], 0)

    def act_scheme(self, name: str) -> QScheme:
        r = self._resolved(name)
        # per channel along dim 1 (N, C, ...) of the output
        return QScheme(r['a_bits'], r['a_symmetric'], r['a_per_channel'], 1 if r['a_per_channel'] else 0)

    def act_kwargs(self, name: str = '') -> Dict[str, Any]:
        """Observer settings of the activation quantizer at ``name`` (``gamma`` may be overridden)."""
        r = self._resolved(name)
        return dict(momentum=self.ema_momentum, ema_stat=self.ema_stat, gamma=r['gamma'],
                    hist_bins=self.hist_bins, floor=r['floor'])

    def unmatched_overrides(self) -> List[Tuple[int, str]]:
        return [(i, ov['pattern']) for i, ov in enumerate(self.overrides) if i not in self._matched]
