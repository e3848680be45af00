# FQN W4A4 RetinaNet R50-FPN on COCO, the paper's recipe: calibration on 20 training batches, then
# 3 epochs of quantization-aware fine-tuning from mmdet's full-precision checkpoint (load_from).
#   python tools/train.py configs/fqn/retinanet_r50_fpn_fqn-w4a4_3e_coco.py --cfg-options \
#       train_dataloader.dataset.data_root=data/coco/ val_dataloader.dataset.data_root=data/coco/ \
#       test_dataloader.dataset.data_root=data/coco/ \
#       val_evaluator.ann_file=data/coco/annotations/instances_val2017.json \
#       test_evaluator.ann_file=data/coco/annotations/instances_val2017.json
_base_ = [
    './_base_/models/retinanet_r50_fpn.py', 'mmdet::_base_/datasets/coco_detection.py',
    './_base_/schedules/qat_3e_coco.py', 'mmdet::_base_/default_runtime.py', 'mmdet::retinanet/retinanet_tta.py',
    './_base_/schemes/fqn_w4a4.py'
]

model = dict(_delete_=True, type='QuantizedDetector', detector={{_base_.model}}, quant_cfg={{_base_.quant_cfg}})

load_from = 'https://download.openmmlab.com/mmdetection/v2.0/retinanet/retinanet_r50_fpn_1x_coco/retinanet_r50_fpn_1x_coco_20200130-c2398f9e.pth'  # noqa: E501
