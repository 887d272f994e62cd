import numpy as np
import pytest

from rsdistill.errors import InputError
from rsdistill.spectral import band_alignment, get_sensor, sensor_names
from rsdistill.spectral.sensors import Sensor


def test_registry_band_counts():
    counts = {name: len(get_sensor(name)) for name in sensor_names()}
    assert counts == {"aviris": 224, "enmap": 224, "hls": 6, "hls_l30": 10, "rgb": 3, "rosis": 103, "sentinel2": 13, "sentinel2_eurosat": 13,
                      "sentinel2_galileo": 10}
    rosis = get_sensor("rosis").centers
    assert rosis[0] == pytest.approx(430) and rosis[-1] == pytest.approx(860)
    assert get_sensor("Prithvi") is get_sensor("hls")


@pytest.mark.parametrize("method", ["mean", "srf", "nearest"])
def test_enmap_to_hls_rows_sum_to_one_and_skip_water_vapour(method):
    enmap, hls = get_sensor("enmap"), get_sensor("hls")
    weights = band_alignment("enmap", "hls", method)
    assert weights.shape == (6, 224)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-6)
    assert (weights >= 0).all()
    assert not weights[:, ~enmap.valid].any(), "bad (water-vapour) bands must get zero weight"
    if method != "srf":
        for t, band in enumerate(hls.bands):
            used = enmap.centers[weights[t] > 0]
            assert ((used >= band.lower) & (used <= band.upper)).all()


def test_mean_is_uniform_average_of_bands_inside():
    weights = band_alignment("enmap", "hls", "mean")
    red = weights[2]
    assert np.count_nonzero(red) == 6 and np.allclose(red[red > 0], 1 / 6)


def test_sentinel2_to_hls_nearest_picks_the_hls_s30_bands():
    weights = band_alignment("sentinel2", "hls", "nearest")
    names = [get_sensor("sentinel2").bands[i].name for i in weights.argmax(axis=1)]
    assert names == ["B02", "B03", "B04", "B8A", "B11", "B12"]


def test_uncovered_target_band_is_named():
    with pytest.raises(InputError, match="SWIR1.*rosis"):
        band_alignment("rosis", "hls")


def test_scene_bad_bands_get_zero_weight():
    centres = np.arange(400, 2500, 10.0)
    bad = np.zeros(centres.size, bool)
    bad[(centres > 640) & (centres < 660)] = True
    weights = band_alignment(Sensor.from_wavelengths("scene", centres, bad_bands=bad), "hls")
    assert not weights[:, bad].any()
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-6)


def test_unknown_sensor_and_method():
    with pytest.raises(InputError, match="unknown sensor 'landsat9'"):
        get_sensor("landsat9")
    with pytest.raises(InputError, match="unknown alignment method"):
        band_alignment("enmap", "hls", "cubic")


def test_uncovered_target_bands_get_zero_rows_when_asked():
    """A camera's broad red band overlaps B5 (697-711 nm) but nothing covers NIR or SWIR: srf gives
    those rows zero weight with uncovered="zero" (and an error by default)."""
    weights = band_alignment("rgb", "sentinel2_galileo", "srf", uncovered="zero")
    names = [b.name for b in get_sensor("sentinel2_galileo").bands]
    covered = [n for n, row in zip(names, weights) if row.any()]
    assert covered == ["B02", "B03", "B04", "B05"]
    np.testing.assert_allclose(weights[:4].sum(axis=1), 1.0, rtol=1e-6)
    assert weights[names.index("B04"), 0] > 0.9  # B04 (665 nm) is mostly the camera's red (650 nm)
    with pytest.raises(InputError, match="B06"):
        band_alignment("rgb", "sentinel2_galileo", "srf")


@pytest.mark.parametrize("source, target", [("sentinel2", "rgb"), ("sentinel2", "sentinel2_galileo"), ("enmap", "sentinel2_galileo")])
def test_srf_weights_are_the_integrals_of_the_two_responses(source, target):
    """Each srf weight is ∫ R_t(λ) R_s(λ) dλ of the two peak-1 Gaussian responses, integrated
    numerically here on a 0.02 nm grid, then cut below 1 % of the row's largest weight and
    normalised as band_alignment does. Sentinel-2's bands run from 15 to 175 nm wide, so leaving out
    the source-width factor σ_s / √(σ_t² + σ_s²) of the closed form moves Sentinel-2 -> RGB weights
    by up to 0.23 (checked: this test then fails)."""
    src, tgt = get_sensor(source), get_sensor(target)
    grid = np.arange(300.0, 2600.0, 0.02)
    sigma = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))

    def response(centre, fwhm):
        return np.exp(-((grid - centre) ** 2) / (2 * (fwhm * sigma) ** 2))

    expected = np.zeros((len(tgt), len(src)))
    for t, band in enumerate(tgt.bands):
        r_t = response(band.center, band.fwhm)
        row = np.array([np.trapezoid(r_t * response(c, w), grid) if ok else 0.0 for c, w, ok in zip(src.centers, src.fwhm, src.valid)])
        row[row < 0.01 * row.max()] = 0.0
        expected[t] = row / row.sum()
    np.testing.assert_allclose(band_alignment(source, target, "srf"), expected, atol=2e-6)
