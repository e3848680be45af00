"""mmdet's model zoo: every RetinaNet and Faster R-CNN config (discovered in the installed mmdet)
converts, calibrates, trains a step, predicts, exports and runs in onnxruntime; other families
either work or raise UnsupportedModuleError naming a module.

Widths are narrowed and images are 64 px (``benchmarks/zoo.py``); the topology of each config
(backbone type and depth, groups, dilations, C4 / DC5 / FPN, heads) is as configured. Configs
whose narrowed models are identical (schedules, data pipelines) run once.
"""
import pytest

from conftest import load_script

zoo = load_script('benchmarks/zoo.py')
PATHS = zoo.discover()
GROUPS = zoo.unique_models(PATHS)


def test_discovery_finds_both_families():
    names = [p.name for p in PATHS]
    assert len(names) == 64 and 'retinanet_tta.py' not in names
    assert any('x101-64x4d' in n for n in names) and any('c4' in n for n in names)
    assert any('dc5' in n for n in names)
    assert sum(len(g) for _, g in GROUPS) == 64


@pytest.mark.parametrize('cfg,same', GROUPS, ids=[g[0].name for _, g in GROUPS])
def test_zoo_config_converts_trains_predicts_exports_and_runs_in_onnxruntime(cfg, same):
    t = zoo.run_pipeline(cfg)
    assert set(t) == {'convert', 'calibrate', 'loss_step', 'predict', 'export', 'onnxruntime'}


def _other_configs():
    out = []
    for fam in zoo.OTHER_FAMILIES:
        out += sorted((zoo.configs_dir() / fam).glob('*.py'))[:1]
    return out


@pytest.mark.parametrize('path', _other_configs(), ids=lambda p: p.name)
def test_other_families_work_or_name_the_unsupported_module(path):
    status, detail = zoo.check_other_family(path)
    if status == 'unsupported':
        assert "cannot quantize module '" in detail and ' of type ' in detail
