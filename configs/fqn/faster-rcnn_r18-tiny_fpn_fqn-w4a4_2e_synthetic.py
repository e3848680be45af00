# FQN W4A4 fine-tuning of faster-rcnn_r18-tiny_fpn_12e_synthetic.py, the paper's recipe.
#   python tools/train.py configs/fqn/faster-rcnn_r18-tiny_fpn_fqn-w4a4_2e_synthetic.py \
#       --cfg-options load_from=work_dirs/faster-rcnn_r18-tiny_fpn_12e_synthetic/epoch_12.pth
_base_ = [
    './_base_/models/faster-rcnn_r18-tiny_fpn.py', './_base_/datasets/synthetic_coco.py',
    './_base_/schedules/qat_2e_synthetic.py', 'mmdet::_base_/default_runtime.py', './_base_/schemes/fqn_w4a4.py'
]

model = dict(_delete_=True, type='QuantizedDetector', detector={{_base_.model}}, quant_cfg={{_base_.quant_cfg}})

default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=2),
                     logger=dict(interval=20))
load_from = 'work_dirs/faster-rcnn_r18-tiny_fpn_12e_synthetic/epoch_12.pth'
