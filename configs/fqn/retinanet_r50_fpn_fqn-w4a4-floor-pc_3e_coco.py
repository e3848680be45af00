# retinanet_r50_fpn_fqn-w4a4-floor_3e_coco.py with one activation range per output channel of the
# head outputs (not in the FQN paper; docs/quant_config.md, "Per-channel head outputs"): retina_cls
# and retina_reg are dequantized for box decoding and NMS, never read by an integer layer, so each
# output channel gets its own 16 levels at no cost to the integer model.
_base_ = './retinanet_r50_fpn_fqn-w4a4_3e_coco.py'

model = dict(quant_cfg=dict(overrides=[
    dict(pattern='bbox_head.retina_cls', gamma=1.0, floor='score_thr'),
    dict(pattern='bbox_head.retina_*', a_per_channel=True),
]))
