"""Quantizer state across 2 gloo processes: merged histograms, identical EMA, agreement check."""
import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from fqn_det.quant import ActQuantizer, QScheme, StreamingHistogram
from fqn_det.quant.calibration import finish_calibration, start_calibration
from fqn_det.quant.distributed import assert_ranks_agree, reduce_batch_range, sync_histograms, world_size

WORLD = 2
PC = QScheme(bits=4, per_channel=True, ch_axis=1)


def _data(rank: int, i: int) -> torch.Tensor:
    # ranks see different scales, so their histograms start on different grids
    g = torch.Generator().manual_seed(100 * rank + i)
    return torch.randn(5000, generator=g) * (1.0 + 7.0 * rank) + 0.3 * i


def _worker(rank: int, init: str, out: str) -> None:
    dist.init_process_group('gloo', init_method=init, rank=rank, world_size=WORLD)
    try:
        res = {'world': world_size()}
        # 1. histograms: merged == one histogram of all ranks' data
        hists = [StreamingHistogram(1024) for _ in range(3)]
        for i, h in enumerate(hists[:2]):
            h.update(_data(rank, i))
        if rank == 1:  # the third quantizer saw data on rank 1 only
            hists[2].update(_data(rank, 2))
        sync_histograms(hists)
        res['hists'] = [(h.width, h.counts.clone(), h.min_seen, h.max_seen) for h in hists]
        # 2. EMA: a quantizer observing different batches stays identical on both ranks
        torch.manual_seed(0)
        q = ActQuantizer(QScheme(bits=4), momentum=0.1, ema_stat='percentile', gamma=0.99, name='act')
        q_mm = ActQuantizer(QScheme(bits=4), momentum=0.1, ema_stat='minmax', name='act_mm')
        q_pc = ActQuantizer(PC, momentum=0.1, gamma=0.99, name='act_pc', num_channels=2)
        q.train(), q_mm.train(), q_pc.train()
        for i in range(5):
            x = _data(rank, 10 + i)
            q(x), q_mm(x), q_pc(x.reshape(50, 2, 50))
        res['ema'] = (q.min_val.clone(), q.max_val.clone(), q.scale.clone(), q.zero_point.clone())
        res['ema_mm'] = (q_mm.min_val.clone(), q_mm.max_val.clone())
        res['ema_pc'] = (q_pc.min_val.clone(), q_pc.max_val.clone(), q_pc.scale.clone(), q_pc.zero_point.clone())
        # 3. reduce_batch_range
        lo, hi = reduce_batch_range(torch.tensor(-1.0 - rank), torch.tensor(2.0 + rank), exact_extremes=True)
        res['extremes'] = (float(lo), float(hi))
        lo, hi = reduce_batch_range(torch.tensor(-1.0 - rank), torch.tensor(2.0 + rank), exact_extremes=False)
        res['means'] = (float(lo), float(hi))
        # 4. calibration through finish_calibration: every rank sets the same range
        m = torch.nn.Sequential(ActQuantizer(QScheme(bits=4), name='a'), ActQuantizer(QScheme(bits=4), name='b'),
                                ActQuantizer(PC, name='c', num_channels=2))  # per channel: merged per channel
        start_calibration(m)
        m(_data(rank, 20).reshape(50, 2, 50))
        finish_calibration(m, 0.999)
        res['calib'] = [(float(a.min_val), float(a.max_val)) for a in m[:2]]
        res['calib_pc'] = (m[2].min_val.tolist(), m[2].max_val.tolist())
        assert_ranks_agree(m)
        # 5. a deliberate disagreement is caught on every rank
        m[0].max_val.add_(rank)
        try:
            assert_ranks_agree(m)
            res['disagreement'] = None
        except RuntimeError as e:
            res['disagreement'] = str(e)
        torch.save(res, f'{out}.{rank}')
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope='module')
def results(tmp_path_factory):
    d = tmp_path_factory.mktemp('dist')
    mp.spawn(_worker, args=(f'file://{d}/store', str(d / 'res')), nprocs=WORLD, join=True)
    return [torch.load(d / f'res.{r}', weights_only=False) for r in range(WORLD)]


def test_world_size(results):
    assert [r['world'] for r in results] == [WORLD, WORLD]
    assert world_size() == 1  # this process is not distributed


def test_merged_histograms_equal_single_histogram_of_all_data(results):
    for k in range(3):
        ref = StreamingHistogram(1024)
        for rank in range(WORLD):
            if k < 2 or rank == 1:
                ref.update(_data(rank, k))
        for r in results:
            width, counts, lo, hi = r['hists'][k]
            assert width == ref.width
            assert torch.equal(counts, ref.counts)
            assert (lo, hi) == (ref.min_seen, ref.max_seen)
        assert math.log2(ref.width) == int(math.log2(ref.width))  # power-of-two grid


def test_ema_ranges_identical_across_ranks(results):
    for key in ('ema', 'ema_mm', 'ema_pc'):
        a, b = results[0][key], results[1][key]
        for x, y in zip(a, b):
            assert torch.equal(x, y), key
    # min/max EMA with all-reduced extremes: what one process sees on both ranks' batches
    q = ActQuantizer(QScheme(bits=4), momentum=0.1, ema_stat='minmax')
    q.train()
    for i in range(5):
        q(torch.cat([_data(r, 10 + i) for r in range(WORLD)]))
    assert torch.allclose(results[0]['ema_mm'][0], q.min_val) and torch.allclose(results[0]['ema_mm'][1], q.max_val)


def test_reduce_batch_range(results):
    for r in results:
        assert r['extremes'] == (-2.0, 3.0)
        assert r['means'] == (-1.5, 2.5)


def test_calibration_same_ranges_as_single_process_on_all_data(results):
    assert results[0]['calib'] == results[1]['calib']
    h = StreamingHistogram(2048)
    for r in range(WORLD):
        h.update(_data(r, 20))
    lo, hi = h.percentile_range(0.999)
    assert results[0]['calib'][0] == pytest.approx((lo, hi), rel=1e-6)
    # per channel: each channel's histogram merged over the ranks, as one process would see it
    assert results[0]['calib_pc'] == results[1]['calib_pc']
    for c in range(2):
        h = StreamingHistogram(2048)
        for r in range(WORLD):
            h.update(_data(r, 20).reshape(50, 2, 50)[:, c])
        lo, hi = h.percentile_range(0.999)
        assert (results[0]['calib_pc'][0][c], results[0]['calib_pc'][1][c]) == pytest.approx((lo, hi), rel=1e-6)


def test_disagreement_detected_on_every_rank(results):
    for r in results:
        assert r['disagreement'] and 'differ between ranks' in r['disagreement']
