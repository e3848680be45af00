# FQN W4A4 RetinaNet with a MobileNetV2 backbone on COCO: calibration on 20 training batches,
# then a short quantization-aware fine-tuning from a full-precision RetinaNet-MobileNetV2
# checkpoint (mmdet publishes none: train one with this detector config, its backbone started
# from ImageNet weights, e.g. fqn_det.models.imagenet_mobilenet.load_imagenet_mobilenet_v2).
#   python tools/train.py configs/fqn/retinanet_mobilenetv2_fpn_fqn-w4a4_3e_coco.py \
#       --cfg-options load_from=work_dirs/retinanet_mobilenetv2_fpn_1x_coco/epoch_12.pth
_base_ = ['mmdet::retinanet/retinanet_r50_fpn_1x_coco.py', './_base_/schemes/fqn_w4a4.py']

detector = dict(
    _scope_='mmdet',
    type='RetinaNet',
    data_preprocessor={{_base_.model.data_preprocessor}},
    backbone=dict(type='MobileNetV2', out_indices=(2, 4, 6), act_cfg=dict(type='ReLU6'), norm_eval=True,
                  init_cfg=None),
    neck=dict(type='FPN', in_channels=[32, 96, 320], out_channels=256, start_level=0,
              add_extra_convs='on_input', num_outs=5),
    bbox_head={{_base_.model.bbox_head}},
    train_cfg={{_base_.model.train_cfg}},
    test_cfg={{_base_.model.test_cfg}})
model = dict(_delete_=True, type='QuantizedDetector', detector=detector, quant_cfg={{_base_.quant_cfg}})

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=3, val_interval=1)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=3, by_epoch=True, milestones=[2], gamma=0.1),
]
optim_wrapper = dict(
    _delete_=True, type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.001, momentum=0.9, weight_decay=0.0001),
    clip_grad=dict(max_norm=35, norm_type=2))
load_from = 'work_dirs/retinanet_mobilenetv2_fpn_1x_coco/epoch_12.pth'
