"""Mask-CDKD's pieces that are pure functions: the strided-grid mask and the r-schedule."""

import pytest
import torch

from rsdistill.distill.r_schedule import RSchedule
from rsdistill.errors import InputError
from rsdistill.masking import strided_grid_mask


def test_strided_grid_mask_keeps_a_square_grid_of_a_quarter():
    torch.manual_seed(0)
    mask = strided_grid_mask(16, 8, 8)
    assert mask.ids_keep.shape == (16, 16) and int(mask.mask.sum()) == 16 * 48
    rows, cols = mask.ids_keep // 8, mask.ids_keep % 8
    for r, c in zip(rows, cols):  # a 4×4 grid with step 2 from one shift in {0, 1}²
        grid_r, grid_c = r.view(4, 4), c.view(4, 4)
        assert (grid_r.diff(dim=0) == 2).all() and (grid_c.diff(dim=1) == 2).all() and int(grid_r[0, 0]) in (0, 1)
    shifts = {(int(r[0]), int(c[0])) for r, c in zip(rows, cols)}
    assert shifts <= {(0, 0), (0, 1), (1, 0), (1, 1)} and len(shifts) > 1
    restored = torch.gather(torch.cat([torch.zeros(16, 16), torch.ones(16, 48)], 1), 1, mask.ids_restore)
    assert torch.equal(restored, mask.mask)  # MAE's convention: kept then masked, put back in place
    with pytest.raises(InputError, match="even token grid, got 7×8"):
        strided_grid_mask(1, 7, 8)


def test_r_schedule_moves_one_way_and_resumes_from_its_state():
    faithful = RSchedule()
    r, weights = faithful.update(1.0, 1.0)
    assert r == pytest.approx(1.0) and weights == [0.2, 0.4, 0.4]
    assert faithful.update(0.8, 1.0)[1] == [0.6, 0.2, 0.2] and faithful.stage == "middle"  # r < 0.85: middle at once
    assert faithful.update(0.5, 1.0)[1] == [0.6, 0.2, 0.2]  # never back
    assert faithful.update(1.0, 1.0)[1] == [0.7, 0.15, 0.15] and faithful.stage == "late"
    smooth = RSchedule(mode="ema", patience=3, beta=0.5)
    stages = [smooth.update(r, 1.0) and smooth.stage for r in (1.0, 0.5, 1.0, 0.5, 0.5, 0.5, 0.5)]
    assert stages[:3] == ["early"] * 3 and "middle" in stages  # one low batch is not enough
    resumed = RSchedule(mode="ema", patience=3, beta=0.5)
    resumed.load_state_dict(smooth.state_dict())
    assert resumed.update(0.7, 1.0) == smooth.update(0.7, 1.0) and resumed.state_dict() == smooth.state_dict()
    assert RSchedule(mode="static").update(0.1, 1.0)[1] == [0.6, 0.2, 0.2]
    with pytest.raises(InputError, match="faithful, ema or static"):
        RSchedule(mode="smooth")


def test_feature_kd_pairs_clip_and_the_teacher_learns_only_when_bidirectional():
    from rsdistill.distill.mask_cdkd import FeatureKD

    kd = FeatureKD(8, 16, student_depth=12, teacher_depth=12)
    assert kd.pairs == [(3, 6), (6, 12), (9, 12)] and kd.teacher_layers == (6, 12)
    with pytest.raises(InputError, match=r"teacher layer 30 is outside 1..12 \(the teacher's depth\)"):
        FeatureKD(8, 16, 12, 12, layers=[[3, 30]])
    for bidirectional in (True, False):
        kd = FeatureKD(8, 16, 12, 24, bidirectional=bidirectional)
        student = {s: torch.randn(2, 5, 8, requires_grad=True) for s in kd.student_layers}
        teacher = {t: torch.randn(2, 5, 16, requires_grad=True) for t in kd.teacher_layers}
        kd(student, teacher).backward()
        assert all(x.grad is not None for x in student.values())
        assert all((x.grad is not None) == bidirectional for x in teacher.values())
