"""Schedules against the reference values of docs/methods.md."""

import math

import pytest

from pruneviz.schedules import asymptotic_keep_rate, cubic_density, exponential_count, lr_at


def test_cubic_density_reference_trajectory():
    # docs/methods.md, FGGP: dense start, d_f = 0.05, at t/T_end = 0, .1, .25, .5, .75, 1
    expected = [1.0, 0.743, 0.451, 0.169, 0.065, 0.05]
    t_end = 1000
    for frac, want in zip([0, 0.1, 0.25, 0.5, 0.75, 1.0], expected):
        assert cubic_density(int(frac * t_end), t_end, 1.0, 0.05) == pytest.approx(want, abs=1e-3)
    assert cubic_density(2000, t_end, 1.0, 0.05) == 0.05


def test_asymptotic_keep_rate_reference_column():
    # docs/methods.md, PGMPF, E = 100, r = 0.6: column r_e
    table = {0: 1.0, 1: 0.958, 10: 0.732, 25: 0.625, 50: 0.602, 79: 0.600, 90: 0.6, 99: 0.6}
    for e, want in table.items():
        assert asymptotic_keep_rate(e, 100, 0.6) == pytest.approx(want, abs=1e-3)
    assert asymptotic_keep_rate(90, 100, 0.6) == 0.6          # exactly from 0.9 E
    # 3/4 of the pruning is done at e = D E
    assert asymptotic_keep_rate(12.5, 100, 0.6) == pytest.approx(0.6 + 0.4 / 4)


def test_exponential_count_reference_and_exact_end():
    # docs/methods.md, PGP: N0 = 64, P = 0.5, E = 10
    want = [59.7, 55.7, 52.0, 48.5, 45.3, 42.2, 39.4, 36.8, 34.3, 32.0]
    got = [exponential_count(64, e, 10, 0.5) for e in range(10)]
    assert got == pytest.approx(want, abs=0.05)
    assert got[-1] == 32.0


def test_lr_schedules():
    assert lr_at(0, 100, 0.1, "cosine") == pytest.approx(0.1)
    assert lr_at(50, 100, 0.1, "cosine") == pytest.approx(0.05)
    assert lr_at(49, 100, 0.1, "step", (0.5, 0.75)) == pytest.approx(0.1)
    assert lr_at(50, 100, 0.1, "step", (0.5, 0.75)) == pytest.approx(0.01)
    assert lr_at(80, 100, 0.1, "step", (0.5, 0.75)) == pytest.approx(0.001)
    assert lr_at(80, 100, 0.1, "constant") == 0.1
    assert math.isclose(lr_at(100, 100, 0.1, "cosine"), 0.0, abs_tol=1e-12)
