"""QuantConfig: defaults, validation messages, per-module overrides, round trip."""
import pytest

from fqn_det.quant import QScheme, QuantConfig


def test_defaults():
    for cfg in (QuantConfig.from_dict({}), QuantConfig.from_dict(None), QuantConfig()):
        assert (cfg.w_bits, cfg.a_bits) == (4, 4)
        assert cfg.w_symmetric is False and cfg.a_symmetric is False
        assert cfg.w_per_channel is True
        assert cfg.calib_batches == 20
        assert cfg.gamma == 0.999
        assert cfg.hist_bins == 2048
        assert cfg.ema_momentum == 0.01
        assert cfg.ema_stat == 'percentile'
        assert cfg.freeze_bn is True
        assert cfg.overrides == []
    cfg = QuantConfig.from_dict({})
    assert cfg.weight_scheme('backbone.conv1') == QScheme(4, False, True, 0)
    assert cfg.act_scheme('backbone.conv1') == QScheme(4, False, False, 0)
    assert cfg.act_kwargs() == dict(momentum=0.01, ema_stat='percentile', gamma=0.999,
                                    hist_bins=2048, floor=None)


def test_from_dict_values():
    cfg = QuantConfig.from_dict(dict(
        weight=dict(bits=8, symmetric=True, per_channel=False), act=dict(bits=3, symmetric=True),
        calib=dict(num_batches=5, gamma=1.0, bins=4096), ema=dict(momentum=0.5, stat='minmax'),
        freeze_bn=False))
    assert (cfg.w_bits, cfg.w_symmetric, cfg.w_per_channel) == (8, True, False)
    assert (cfg.a_bits, cfg.a_symmetric) == (3, True)
    assert (cfg.calib_batches, cfg.gamma, cfg.hist_bins) == (5, 1.0, 4096)
    assert (cfg.ema_momentum, cfg.ema_stat, cfg.freeze_bn) == (0.5, 'minmax', False)
    assert cfg.weight_scheme('x') == QScheme(8, True, False)
    assert cfg.act_scheme('x') == QScheme(3, True, False)


def test_from_dict_accepts_config_instance():
    cfg = QuantConfig(w_bits=8, overrides=[dict(pattern='a', w_bits=6)])
    cfg.weight_scheme('a')  # marks the override as matched
    again = QuantConfig.from_dict(cfg)
    assert again == cfg and again is not cfg
    assert again.unmatched_overrides() == [(0, 'a')]  # matching starts afresh for each conversion


def test_dfq_init_needs_frozen_bn():
    with pytest.raises(ValueError, match='dfq_init=True needs freeze_bn=True'):
        QuantConfig.from_dict(dict(freeze_bn=False, dfq_init=True))


@pytest.mark.parametrize('cfg, setting', [
    (dict(weight=dict(bits=1)), 'weight.bits'),
    (dict(weight=dict(bits=9)), 'weight.bits'),
    (dict(weight=dict(bits=4.0)), 'weight.bits'),
    (dict(weight=dict(bits=True)), 'weight.bits'),
    (dict(act=dict(bits=0)), 'act.bits'),
    (dict(act=dict(bits=9)), 'act.bits'),
    (dict(calib=dict(gamma=0.5)), 'gamma'),
    (dict(calib=dict(gamma=1.5)), 'gamma'),
    (dict(calib=dict(gamma=0.3)), 'gamma'),
    (dict(calib=dict(gamma='0.999')), 'gamma'),
    (dict(calib=dict(num_batches=0)), 'num_batches'),
    (dict(calib=dict(num_batches=-3)), 'num_batches'),
    (dict(calib=dict(num_batches=2.5)), 'num_batches'),
    (dict(calib=dict(num_batches=True)), 'num_batches'),
    (dict(calib=dict(bins=1000)), 'bins'),
    (dict(calib=dict(bins=2049)), 'bins'),
    (dict(ema=dict(momentum=0)), 'momentum'),
    (dict(ema=dict(momentum=1)), 'momentum'),
    (dict(ema=dict(momentum=1.5)), 'momentum'),
    (dict(ema=dict(momentum=-0.1)), 'momentum'),
    (dict(ema=dict(stat='mean')), 'stat'),
    (dict(weight=dict(symmetric='yes')), 'weight.symmetric'),
    (dict(act=dict(symmetric=1)), 'act.symmetric'),
    (dict(calib=dict(gamma=True)), 'gamma'),
    (dict(ema=dict(momentum=True)), 'momentum'),
    (dict(freeze_bn=1), 'freeze_bn'),
    (dict(wieght=dict(bits=4)), 'wieght'),
    (dict(calib=dict(gama=0.99)), 'gama'),
    (dict(weight=dict(per_chanel=True)), 'per_chanel'),
    (dict(act=dict(per_channel=True)), 'per_channel'),
    (dict(overrides=[dict(w_bits=8)]), 'pattern'),
    (dict(overrides=[dict(pattern='backbone.conv1', w_bit=8)]), 'w_bit'),
    (dict(overrides=[dict(pattern='backbone.conv1', w_bits=9)]), 'overrides[0].w_bits'),
    (dict(overrides=[dict(pattern='a'), dict(pattern='b', a_bits=1)]), 'overrides[1].a_bits'),
    (dict(overrides=[dict(pattern='a', w_symmetric=1)]), 'w_symmetric'),
    (dict(overrides=dict(pattern='a')), 'overrides'),
    (dict(overrides=['backbone.conv1']), 'overrides[0]'),
])
def test_bad_settings_raise_naming_the_setting(cfg, setting):
    with pytest.raises(ValueError) as info:
        QuantConfig.from_dict(cfg)
    assert setting in str(info.value), str(info.value)


def test_unknown_nested_key_names_section():
    with pytest.raises(ValueError, match=r'gama.*calib|calib.*gama'):
        QuantConfig.from_dict(dict(calib=dict(gama=0.99)))


@pytest.mark.parametrize('gamma', [1.0, 1, 0.51, 0.999])
def test_good_gamma(gamma):
    assert QuantConfig.from_dict(dict(calib=dict(gamma=gamma))).gamma == gamma


@pytest.mark.parametrize('m', [1e-4, 0.01, 0.999])
def test_good_momentum(m):
    assert QuantConfig.from_dict(dict(ema=dict(momentum=m))).ema_momentum == m


def test_overrides_apply_in_order_later_wins():
    cfg = QuantConfig.from_dict(dict(overrides=[
        dict(pattern='backbone.*', w_bits=6, a_bits=6),
        dict(pattern='backbone.conv1', w_bits=8, a_bits=8, w_per_channel=False),
        dict(pattern='bbox_head.retina_*', a_symmetric=True, w_symmetric=True),
        dict(pattern='backbone.layer1.*', a_bits=5),
        dict(pattern='never.matches.*', w_bits=2),
    ]))
    assert cfg.weight_scheme('backbone.conv1') == QScheme(8, False, False, 0)
    assert cfg.act_scheme('backbone.conv1') == QScheme(8, False, False, 0)
    assert cfg.weight_scheme('backbone.layer1.0.conv1') == QScheme(6, False, True, 0)
    assert cfg.act_scheme('backbone.layer1.0.conv1') == QScheme(5, False, False, 0)
    assert cfg.weight_scheme('bbox_head.retina_cls') == QScheme(4, True, True, 0)
    assert cfg.act_scheme('bbox_head.retina_cls') == QScheme(4, True, False, 0)
    assert cfg.weight_scheme('neck.fpn_convs.0') == QScheme(4, False, True, 0)
    # fnmatch is case-sensitive and anchored
    assert cfg.weight_scheme('Backbone.conv1').bits == 4
    assert cfg.weight_scheme('xbackbone.conv1').bits == 4
    assert cfg.unmatched_overrides() == [(4, 'never.matches.*')]
    # the reversed order: the general pattern now wins over the specific one
    rev = QuantConfig.from_dict(dict(overrides=[
        dict(pattern='backbone.conv1', w_bits=8), dict(pattern='backbone.*', w_bits=6)]))
    assert rev.weight_scheme('backbone.conv1').bits == 6


def test_unmatched_overrides_tracks_queries():
    cfg = QuantConfig.from_dict(dict(overrides=[dict(pattern='a.*', w_bits=8),
                                                dict(pattern='b', a_bits=8)]))
    assert cfg.unmatched_overrides() == [(0, 'a.*'), (1, 'b')]
    cfg.act_scheme('a.x')
    assert cfg.unmatched_overrides() == [(1, 'b')]
    cfg.weight_scheme('b')
    assert cfg.unmatched_overrides() == []


def test_overrides_are_copied():
    ov = dict(pattern='a', w_bits=8)
    cfg = QuantConfig.from_dict(dict(overrides=[ov]))
    ov['w_bits'] = 2
    assert cfg.weight_scheme('a').bits == 8


def test_to_dict_round_trip():
    cfg = QuantConfig.from_dict(dict(
        weight=dict(bits=5, symmetric=True, per_channel=False), act=dict(bits=6),
        calib=dict(num_batches=7, gamma=0.99, bins=1024), ema=dict(momentum=0.2, stat='minmax'),
        freeze_bn=True, overrides=[dict(pattern='backbone.conv1', w_bits=8, a_bits=8, gamma=1.0)],
        dfq_init=True))
    d = cfg.to_dict()
    again = QuantConfig.from_dict(d)
    assert again == cfg
    assert again.to_dict() == d
    assert QuantConfig.from_dict(QuantConfig().to_dict()) == QuantConfig()
    # to_dict is a plain nested dict using only the documented keys
    assert set(d) == {'weight', 'act', 'calib', 'ema', 'freeze_bn', 'overrides', 'dfq_init'}


def test_gamma_override_per_module():
    cfg = QuantConfig.from_dict(dict(calib=dict(gamma=0.999), overrides=[
        dict(pattern='bbox_head.retina_cls', gamma=1.0)]))
    assert cfg.act_kwargs('bbox_head.retina_cls')['gamma'] == 1.0
    assert cfg.act_kwargs('bbox_head.retina_reg')['gamma'] == 0.999
    with pytest.raises(ValueError, match=r'overrides\[0\]\.gamma'):
        QuantConfig.from_dict(dict(overrides=[dict(pattern='x', gamma=0.3)]))


def test_overrides_from_a_command_line_string():
    cfg = QuantConfig.from_dict(dict(overrides='bbox_head.retina_cls:gamma=1.0; backbone.conv1:w_bits=8,a_bits=8,'
                                               'w_symmetric=true'))
    assert cfg.overrides == [dict(pattern='bbox_head.retina_cls', gamma=1.0),
                             dict(pattern='backbone.conv1', w_bits=8, a_bits=8, w_symmetric=True)]
    for bad, msg in (('backbone.conv1', 'pattern:key=value'), ('a:w_bits', 'not key=value'),
                     ('a:w_bits=x', 'cannot read'), ('a:w_bitz=8', "'w_bitz'"), ('a:w_bits=9', 'w_bits')):
        with pytest.raises(ValueError, match=msg):
            QuantConfig.from_dict(dict(overrides=bad))


def test_floor_override():
    cfg = QuantConfig.from_dict(dict(overrides='bbox_head.retina_cls:gamma=1.0,floor=score_thr;'
                                               'neck.fpn_convs.*:floor=-1.5'))
    assert cfg.act_kwargs('bbox_head.retina_cls')['floor'] == 'score_thr'
    assert cfg.act_kwargs('neck.fpn_convs.0')['floor'] == -1.5
    assert cfg.act_kwargs('bbox_head.retina_reg')['floor'] is None  # no floor unless asked
    assert QuantConfig.from_dict(dict(overrides='a:floor=none')).overrides == [dict(pattern='a', floor=None)]
    for bad in ([dict(pattern='a', floor='thr')], [dict(pattern='a', floor=float('nan'))],
                [dict(pattern='a', floor=True)], [dict(pattern='a', floor=float('-inf'))], 'a:floor=abc'):
        with pytest.raises(ValueError, match='floor|cannot read'):
            QuantConfig.from_dict(dict(overrides=bad))


def test_per_channel_activation_override():
    cfg = QuantConfig.from_dict(dict(overrides='bbox_head.retina_*:a_per_channel=true'))
    assert cfg.overrides == [dict(pattern='bbox_head.retina_*', a_per_channel=True)]
    assert cfg.act_scheme('bbox_head.retina_reg') == QScheme(4, False, True, 1)  # along dim 1 (N, C, ...)
    assert cfg.act_scheme('neck.fpn_convs.0') == QScheme(4, False, False, 0)
    assert not cfg.weight_scheme('bbox_head.retina_reg').ch_axis  # weights keep their own setting
    for bad in ([dict(pattern='a', a_per_channel=1)], 'a:a_per_channel=yes'):
        with pytest.raises(ValueError, match='a_per_channel|cannot read'):
            QuantConfig.from_dict(dict(overrides=bad))
    with pytest.raises(ValueError, match='per_channel'):  # only as an override on head outputs
        QuantConfig.from_dict(dict(act=dict(per_channel=True)))
