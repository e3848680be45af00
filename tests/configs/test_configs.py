"""Every shipped config parses and builds its model (no torchvision, no download)."""
import copy
import math
from pathlib import Path

import pytest
from mmdet.registry import MODELS
from mmengine.config import Config

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted(p.relative_to(ROOT) for p in (ROOT / 'configs').rglob('*.py') if '_base_' not in p.parts)


def test_configs_found():
    names = {p.name for p in CONFIGS}
    assert {'retinanet_r50_fpn_fqn-w4a4_3e_coco.py', 'faster-rcnn_r50_fpn_fqn-w4a4_3e_coco.py',
            'retinanet_r18_fpn_fqn-w4a4_3e_coco.py', 'faster-rcnn_r18_fpn_fqn-w4a4_3e_coco.py'} <= names


@pytest.mark.parametrize('path', CONFIGS, ids=str)
def test_config_builds(path):
    cfg = Config.fromfile(str(ROOT / path))
    model_cfg = cfg.model
    det = model_cfg.get('detector', model_cfg)
    assert det.backbone.get('init_cfg') is None  # QAT starts from a detector checkpoint
    model = MODELS.build(copy.deepcopy(model_cfg))
    if model_cfg.type == 'QuantizedDetector':
        assert 'fqn_det' in cfg.custom_imports.imports
        assert any(h.type == 'FQNCalibrationHook' for h in cfg.custom_hooks)
        assert model.quant_config.w_bits == 4 and model.quant_config.a_bits == 4
        assert model.quant_config.calib_batches == 20 and model.quant_config.gamma == 0.999
        floors = {n: q.floor for n, q in model.detector.named_modules() if hasattr(q, 'floor')}
        floored = {n for n, f in floors.items() if f is not None}
        recipe = path.stem.split('_fqn-')[1].split('_')[0]  # e.g. 'w4a4-sym-floor-pc'
        if '-floor' in recipe:  # exactly RetinaNet's logits, at logit(score_thr)
            thr = det.test_cfg.score_thr
            assert floored == {f'bbox_head.retina_cls.out_quant.{i}' for i in range(5)}
            assert all(abs(floors[n] - math.log(thr / (1 - thr))) < 1e-9 for n in floored)
        else:
            assert not floored
        per_channel = {n.split('.out_quant')[0] for n, q in model.detector.named_modules()
                       if hasattr(q, 'floor') and q.per_channel}
        if recipe.endswith('-pc'):  # every head output, nothing else
            if 'ssdlite' in path.stem:  # each level's output convs
                levels = range(len(det.bbox_head.in_channels))
                want = {f'bbox_head.{b}_convs.{i}.out' for b in ('cls', 'reg') for i in levels}
            elif 'retina' in path.stem:
                want = {'bbox_head.retina_cls', 'bbox_head.retina_reg'}
            else:
                want = {'rpn_head.rpn_cls', 'rpn_head.rpn_reg', 'roi_head.bbox_head.fc_cls',
                        'roi_head.bbox_head.fc_reg'}
            assert per_channel == want
        else:
            assert not per_channel
        # symmetric weights exactly in the recommended recipes
        assert model.quant_config.w_symmetric == ('-sym' in recipe)


def test_metafile_and_readme_list_every_config():
    import yaml
    folder = ROOT / 'configs' / 'fqn'
    meta = yaml.safe_load((folder / 'metafile.yml').read_text())
    listed = {m['Config'] for m in meta['Models']}
    shipped = {str(p) for p in CONFIGS if p.parts[:2] == ('configs', 'fqn')}
    assert listed == shipped
    for m in meta['Models']:
        assert m['Name'] == Path(m['Config']).stem and m['In Collection'] == 'FQN'
    readme = (folder / 'README.md').read_text()
    for p in shipped:
        assert f'(./{Path(p).name})' in readme, p
