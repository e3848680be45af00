# mmdet's own ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py, with the init_cfg of backbone, neck
# and head removed: QAT starts from a whole-detector checkpoint (load_from).
_base_ = 'mmdet::ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py'
model = dict(backbone=dict(init_cfg=None), neck=dict(init_cfg=None), bbox_head=dict(init_cfg=None))
