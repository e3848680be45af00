# retinanet_r50_fpn_fqn-w4a4_3e_coco.py with the classification outputs ranged from the detector's
# own score threshold up (not in the FQN paper; docs/quant_config.md, "Score floor"): logits under
# logit(test_cfg.score_thr) are discarded before NMS whatever their value, so the 16 levels go to
# the logits that can become detections, and the top is not clipped (gamma=1 there).
_base_ = './retinanet_r50_fpn_fqn-w4a4_3e_coco.py'

model = dict(quant_cfg=dict(overrides=[dict(pattern='bbox_head.retina_cls', gamma=1.0, floor='score_thr')]))
