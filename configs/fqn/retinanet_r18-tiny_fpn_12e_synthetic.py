# Small full-precision RetinaNet (narrow ResNet-18 + FPN) on the generated reference dataset:
# 12 epochs from scratch on 2 CPU cores (`make demo` trains it for 6, `tools/demo.py --fp-epochs 13`
# trains the benchmarks' reference checkpoint).
#   python tools/make_synthetic_coco.py --out data/synthetic_coco
#   python tools/train.py configs/fqn/retinanet_r18-tiny_fpn_12e_synthetic.py
_base_ = [
    './_base_/models/retinanet_r18-tiny_fpn.py', './_base_/datasets/synthetic_coco.py',
    './_base_/schedules/fp32_12e_synthetic.py', 'mmdet::_base_/default_runtime.py'
]
default_hooks = dict(checkpoint=dict(interval=4, max_keep_ckpts=1),
                     logger=dict(interval=20))
