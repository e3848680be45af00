"""Tests for the synthetic COCO dataset generator."""
import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from fqn_det.datasets import DEFAULT_CLASSES, generate_synthetic_coco
from fqn_det.datasets import synthetic

REPO = Path(__file__).resolve().parents[2]


def _gen(out, **kw):
    kw.setdefault('num_train', 4)
    kw.setdefault('num_val', 2)
    kw.setdefault('progress', False)
    return generate_synthetic_coco(out, **kw)


def _files(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob('*'))
            if p.is_file()}


@pytest.fixture(scope='module')
def moderate(tmp_path_factory):
    """A moderate dataset shared by the content checks."""
    return _gen(tmp_path_factory.mktemp('syn') / 'coco', num_train=60, num_val=10)


def test_deterministic(tmp_path):
    a = _files(Path(_gen(tmp_path / 'a')['out_dir']))
    b = _files(Path(_gen(tmp_path / 'b')['out_dir']))
    assert a.keys() == b.keys() and a == b
    assert 'annotations/instances_train.json' in a and 'val/000001.jpg' in a
    c = _files(Path(_gen(tmp_path / 'c', seed=1)['out_dir']))
    assert c['train/000000.jpg'] != a['train/000000.jpg']
    assert c['annotations/instances_train.json'] != a['annotations/instances_train.json']
    # Train and val use different streams.
    assert a['train/000000.jpg'] != a['val/000000.jpg']
    # Image i does not depend on the number of images (smaller set == prefix).
    d = _files(Path(_gen(tmp_path / 'd', num_train=2)['out_dir']))
    assert d['train/000001.jpg'] == a['train/000001.jpg']


def test_coco_content(moderate):
    info = moderate
    assert info['num_train'] == 60 and info['classes'] == list(DEFAULT_CLASSES)
    for split, n in (('train', 60), ('val', 10)):
        coco = COCO(info[f'{split}_ann_file'])
        cats = coco.loadCats(coco.getCatIds())
        assert [(c['id'], c['name']) for c in cats] == list(enumerate(DEFAULT_CLASSES, 1))
        assert len(coco.getImgIds()) == n
        ann_ids = [a['id'] for a in coco.dataset['annotations']]
        assert len(set(ann_ids)) == len(ann_ids) and min(ann_ids) >= 1
        for img in coco.loadImgs(coco.getImgIds()):
            anns = coco.loadAnns(coco.getAnnIds(imgIds=img['id']))
            assert len(anns) >= 1
            pix = cv2.imread(str(Path(info[f'{split}_img_dir']) / img['file_name']))
            assert pix.shape == (img['height'], img['width'], 3) == (128, 128, 3)
            for a in anns:
                x, y, w, h = a['bbox']
                assert w >= 2 and h >= 2 and x >= 0 and y >= 0
                assert x + w <= img['width'] and y + h <= img['height']
                assert 0 < a['area'] <= w * h and a['iscrowd'] == 0
    anns = COCO(info['train_ann_file']).dataset['annotations']
    assert {a['category_id'] for a in anns} == set(range(1, len(DEFAULT_CLASSES) + 1))
    sides = np.array([max(a['bbox'][2:]) for a in anns])
    size = info['img_size']  # 128 by default: objects from 12 px to 96 px, for every FPN level
    assert (sides < size / 8).sum() >= 5 and (sides > size / 2).sum() >= 5
    assert sides.max() <= synthetic.MAX_OBJECT_FRACTION * size + 1
    assert info['num_train_annotations'] == len(anns) > 60


def test_mmdet_coco_dataset(moderate):
    from mmdet.datasets import CocoDataset
    ds = CocoDataset(data_root=moderate['out_dir'],
                     ann_file='annotations/instances_train.json',
                     metainfo=dict(classes=tuple(moderate['classes'])),
                     data_prefix=dict(img='train/'), pipeline=[], test_mode=False)
    assert len(ds) == 60
    info = ds.get_data_info(0)
    assert Path(info['img_path']).is_file() and len(info['instances']) >= 1
    inst = info['instances'][0]
    assert 0 <= inst['bbox_label'] < len(moderate['classes']) and inst['ignore_flag'] == 0


def test_class_subset(tmp_path):
    info = _gen(tmp_path / 'sub', classes=['ring', 'cross'])
    data = json.loads(Path(info['train_ann_file']).read_text())
    assert [c['name'] for c in data['categories']] == ['ring', 'cross']
    assert {a['category_id'] for a in data['annotations']} <= {1, 2}


@pytest.mark.parametrize('kw, name', [
    (dict(num_train=0), 'num_train'), (dict(num_val=0), 'num_val'),
    (dict(img_size=31), 'img_size'), (dict(classes=[]), 'classes'),
    (dict(classes=['hexagon']), 'classes'), (dict(max_objects=0), 'max_objects'),
    (dict(seed=-1), 'seed'), (dict(num_train=2.5), 'num_train')])
def test_bad_arguments(tmp_path, kw, name):
    with pytest.raises(ValueError, match=name):
        _gen(tmp_path / 'bad', **kw)
    assert not (tmp_path / 'bad').exists()


def test_existing_dir(tmp_path, monkeypatch):
    out = tmp_path / 'coco'
    first = _gen(out)
    stamp = (out / 'train' / '000000.jpg').stat().st_mtime_ns

    def boom(*a, **k):
        raise AssertionError('should not regenerate')

    with monkeypatch.context() as m:  # same config: returned at once
        m.setattr(synthetic, '_make_image', boom)
        assert _gen(out) == first
    with pytest.raises(FileExistsError, match='overwrite'):
        _gen(out, seed=3)
    assert (out / 'train' / '000000.jpg').stat().st_mtime_ns == stamp
    new = _gen(out, seed=3, num_train=5, overwrite=True)
    assert new['num_train'] == 5 and len(list((out / 'train').glob('*.jpg'))) == 5
    assert json.loads((out / 'meta.json').read_text())['config']['seed'] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ['coco']  # no leftovers
    (tmp_path / 'other').mkdir()  # a folder without meta.json
    with pytest.raises(FileExistsError):
        _gen(tmp_path / 'other')


def test_interrupted_run_leaves_nothing(tmp_path, monkeypatch):
    real, calls = cv2.imwrite, []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) > 3:
            raise RuntimeError('disk full')
        return real(*args, **kwargs)

    monkeypatch.setattr(cv2, 'imwrite', flaky)
    with pytest.raises(RuntimeError, match='disk full'):
        _gen(tmp_path / 'coco')
    assert list(tmp_path.iterdir()) == []


def test_cli(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location(
        'make_synthetic_coco', REPO / 'tools' / 'make_synthetic_coco.py')
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.main(['--out', str(tmp_path / 'cli'), '--num-train', '3', '--num-val', '1',
              '--img-size', '64', '--seed', '5', '--quiet'])
    assert '3 train images' in capsys.readouterr().out
    assert len(list((tmp_path / 'cli' / 'val').glob('*.jpg'))) == 1
