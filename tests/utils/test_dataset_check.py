"""checked_build_dataloader: an empty dataset is an EmptyDatasetError naming the annotation file."""
import json

import pytest

from fqn_det.utils.dataset_check import EmptyDatasetError, checked_build_dataloader

IMAGES = [dict(id=i, file_name=f'{i}.jpg', width=64, height=64) for i in (1, 2)]
BOX = dict(id=1, image_id=1, category_id=1, bbox=[4, 4, 20, 20], area=400, iscrowd=0)


def _loader_cfg(tmp_path, images, annotations, **dataset):
    ann = tmp_path / 'ann.json'
    ann.write_text(json.dumps(dict(images=images, annotations=annotations,
                                   categories=[dict(id=1, name='rectangle')])))
    return dict(batch_size=1, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=False),
                dataset=dict(type='CocoDataset', ann_file=str(ann), metainfo=dict(classes=('rectangle',)),
                             data_prefix=dict(img=''), filter_cfg=dict(filter_empty_gt=True, min_size=2), pipeline=[],
                             **dataset))


def test_non_empty_dataset_builds(tmp_path):
    assert len(checked_build_dataloader(_loader_cfg(tmp_path, IMAGES, [BOX])).dataset) == 1


@pytest.mark.parametrize('serialize', [True, False])  # mmengine's ValueError / a zero-length dataset
def test_no_images(tmp_path, serialize):
    with pytest.raises(EmptyDatasetError, match=r'CocoDataset \(.*ann\.json\) lists no images'):
        checked_build_dataloader(_loader_cfg(tmp_path, [], [], serialize_data=serialize))


def test_all_images_filtered_out(tmp_path):
    with pytest.raises(EmptyDatasetError, match=r"filter_cfg=.*removed all 2 images of CocoDataset \(.*ann\.json\); "
                                                r"2 of them have no annotations"):
        checked_build_dataloader(_loader_cfg(tmp_path, IMAGES, []))


def test_other_value_errors_pass_unchanged(tmp_path):
    cfg = dict(_loader_cfg(tmp_path, IMAGES, [BOX]), batch_size=0)
    with pytest.raises(ValueError, match='batch_size') as info:
        checked_build_dataloader(cfg)
    assert not isinstance(info.value, EmptyDatasetError)
