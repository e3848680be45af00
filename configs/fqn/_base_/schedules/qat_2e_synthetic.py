# FQN quantization-aware fine-tuning of the small reference detectors: 2 epochs of AdamW at a tenth
# of the full-precision learning rate, warm-up over 50 iterations, x0.1 after epoch 1.
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=2, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', begin=0, end=2, by_epoch=True, milestones=[1], gamma=0.1),
]
optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=0.0002, weight_decay=0.0001),
                     clip_grad=dict(max_norm=35, norm_type=2))
auto_scale_lr = dict(enable=False, base_batch_size=8)
