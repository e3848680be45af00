"""make demo's bad-input handling: too little disk, a broken cached FP32 checkpoint, bad arguments."""
import re
import shutil
from collections import namedtuple
from pathlib import Path

import pytest
import torch
from conftest import load_script

ROOT = Path(__file__).resolve().parents[2]


def _demo():
    return load_script('tools/demo.py')


def test_too_little_disk(tmp_path, monkeypatch):
    demo = _demo()
    usage = namedtuple('usage', 'total used free')
    monkeypatch.setattr(shutil, 'disk_usage', lambda p: usage(10 * 2 ** 30, 9.7 * 2 ** 30, 0.3 * 2 ** 30))
    with pytest.raises(SystemExit, match=r'only 0\.3 GB free .*make clean-demo'):
        demo.check_disk(tmp_path)


@pytest.mark.parametrize('content', [b'', b'not a checkpoint at all', None])
def test_broken_cached_checkpoint(tmp_path, content):
    demo = _demo()
    p = tmp_path / 'fp32.pth'
    if content is None:  # a valid checkpoint cut off half-way
        torch.save({'state_dict': {'w': torch.randn(1000)}}, p)
        p.write_bytes(p.read_bytes()[:2000])
    else:
        p.write_bytes(content)
    with pytest.raises(SystemExit, match=r'(?s)cached FP32 checkpoint is broken.*make clean-demo'):
        demo.check_cached(p)


def test_cached_checkpoint_without_state_dict(tmp_path):
    demo = _demo()
    p = tmp_path / 'fp32.pth'
    torch.save({'weights': torch.zeros(3)}, p)
    with pytest.raises(SystemExit, match='has no state_dict'):
        demo.check_cached(p)


def test_a_model_without_detections_scores_zero():
    """CocoMetric returns {} when nothing is detected (an undertrained model): the demo reports 0."""
    demo = _demo()
    assert demo.coco_metrics({}) == {'coco/bbox_mAP': 0.0, 'coco/bbox_mAP_50': 0.0, 'coco/bbox_mAP_75': 0.0}
    m = demo.coco_metrics({'coco/bbox_mAP': 0.5, 'coco/bbox_mAP_50': 0.7, 'coco/bbox_mAP_75': 0.6})
    assert m['coco/bbox_mAP'] == 0.5


def test_fp32_metrics_cached_per_checkpoint_and_validation_set(tmp_path, monkeypatch):
    # the cached demo evaluates FP32 once; a new checkpoint, validation set or option evaluates again
    demo = _demo()
    calls = []

    def fake_run(config, work_dir, options, train, checkpoint=None, **kw):
        calls.append(checkpoint)
        return {'coco/bbox_mAP': 0.5 + len(calls) / 100, 'coco/bbox_mAP_50': 0.8, 'coco/bbox_mAP_75': 0.6}

    monkeypatch.setattr(demo, 'run', fake_run)
    data = tmp_path / 'data'
    (data / 'annotations').mkdir(parents=True)
    ann = data / 'annotations' / 'instances_val.json'
    ann.write_text('{"images": []}')
    ckpt = tmp_path / 'fp32.pth'
    ckpt.write_bytes(b'weights-1')
    opts = {'test_dataloader.dataset.data_root': str(data), 'test_scale': (64, 64), 'randomness.seed': 1}

    first = demo.cached_fp32_metrics(tmp_path, ckpt, data, opts)
    # neither the seed nor training-only options change an evaluation
    again = demo.cached_fp32_metrics(tmp_path, ckpt, data, {**opts, 'randomness.seed': 2, 'train_x': 3})
    assert len(calls) == 1 and again == first and first['coco/bbox_mAP'] == 0.51
    ckpt.write_bytes(b'weights-2')
    assert demo.cached_fp32_metrics(tmp_path, ckpt, data, opts)['coco/bbox_mAP'] == 0.52
    ann.write_text('{"images": [1]}')
    demo.cached_fp32_metrics(tmp_path, ckpt, data, opts)
    demo.cached_fp32_metrics(tmp_path, ckpt, data, {**opts, 'test_scale': (128, 128)})
    assert len(calls) == 4
    (tmp_path / 'eval_fp32' / 'metrics.json').write_text('{not json')  # unreadable cache: evaluate again
    demo.cached_fp32_metrics(tmp_path, ckpt, data, {**opts, 'test_scale': (128, 128)})
    assert len(calls) == 5


def test_recipes_are_the_paper_and_the_recommended_configs():
    from mmengine.config import Config
    demo = _demo()
    assert list(demo.RECIPES) == ['paper', 'recommended']
    paper = Config.fromfile(str(ROOT / demo.RECIPES['paper'][1])).model.quant_cfg
    rec = Config.fromfile(str(ROOT / demo.RECIPES['recommended'][1])).model.quant_cfg
    assert paper.weight.symmetric is False and paper.overrides == []
    assert rec.weight.symmetric is True and rec.weight.per_channel is True
    assert dict(pattern='bbox_head.retina_cls', gamma=1.0, floor='score_thr') in rec.overrides
    assert dict(pattern='bbox_head.retina_*', a_per_channel=True) in rec.overrides
    # same schedule, scheme and FP32 model otherwise
    assert {k: v for k, v in rec.items() if k not in ('weight', 'overrides')} == \
        {k: v for k, v in paper.items() if k not in ('weight', 'overrides')}


@pytest.mark.parametrize('argv, message', [
    (['--qat-images', '0'], r'--qat-images must be in \[1, --num-train=3000\], got 0'),
    (['--num-train', '24', '--qat-images', '25'], r'--qat-images must be in \[1, --num-train=24\], got 25'),
    (['--qat-epochs', '0'], 'must be at least 1'),
])
def test_bad_demo_arguments(monkeypatch, capsys, argv, message):
    demo = _demo()
    monkeypatch.setattr('sys.argv', ['demo.py', *argv])
    with pytest.raises(SystemExit):
        demo.parse_args()
    assert re.search(message, capsys.readouterr().err)


def test_qat_images_default_is_1000_or_the_whole_small_training_set(monkeypatch):
    demo = _demo()
    monkeypatch.setattr('sys.argv', ['demo.py'])
    assert demo.parse_args().qat_images == 1000
    monkeypatch.setattr('sys.argv', ['demo.py', '--num-train', '24'])
    assert demo.parse_args().qat_images == 24
