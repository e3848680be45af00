"""mmdet 3.3's ``SSDHead`` cannot predict without this patch.

``BaseDenseHead._predict_by_feat_single`` reads ``self.loss_cls`` (to ask for
custom classification channels), and ``SSDHead`` never sets one: it computes
its classification loss itself. Every SSD / SSDLite prediction, validation
included, then fails with ``AttributeError: 'SSDHead' object has no attribute
'loss_cls'``. The patch gives ``SSDHead`` a read-only ``loss_cls`` property:
a registered ``loss_cls`` module if there is one, else None, which that line
reads as "no custom channels" (SSD's softmax scores). Plain Python.
"""
from __future__ import annotations

from .guard import check

NAME = 'ssd-head-loss-cls'
#: mmdet 3.0-3.3's BaseDenseHead._predict_by_feat_single reads loss_cls, which SSDHead does not set
REQUIRES = {'mmdet': ('3.0', '3.4')}
SKIPPED = "mmdet's SSD / SSDLite heads fail at prediction with AttributeError: no attribute 'loss_cls'"


def _registered_loss_cls(head):
    return head.__dict__.get('_modules', {}).get('loss_cls')


def install_ssd_head_loss_cls() -> bool:
    """Give mmdet's ``SSDHead`` its ``loss_cls`` (idempotent); False when skipped on another mmdet."""
    if not check(NAME, REQUIRES, SKIPPED):
        return False
    from mmdet.models.dense_heads import SSDHead
    if 'loss_cls' not in vars(SSDHead):
        SSDHead.loss_cls = property(_registered_loss_cls, doc='the registered loss_cls module, or None')
    return True
