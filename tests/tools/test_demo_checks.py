"""make demo's bad-input handling: too little disk, a broken cached FP32 checkpoint."""
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
