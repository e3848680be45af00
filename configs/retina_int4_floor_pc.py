# retina_int4_score_floor.py with one activation range per output channel of the head outputs
# (not in the FQN paper; README, "Head outputs at 4 bits"): retina_cls and retina_reg are
# dequantized for box decoding and NMS, never read by an integer layer, so giving each output
# channel (each anchor's dx, dy, dw, dh; each anchor-class logit) its own 16 levels costs the
# integer model nothing: the requantization multipliers are per channel already.
_base_ = './retina_int4.py'

model = dict(quant_cfg=dict(overrides=[
    dict(pattern='bbox_head.retina_cls', gamma=1.0, floor='score_thr'),
    dict(pattern='bbox_head.retina_*', a_per_channel=True),
]))
