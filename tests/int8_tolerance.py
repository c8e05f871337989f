"""How close onnxruntime's int8 must come to what an int8 file means (export/int8_reference.py), on any CPU.

Float32 rounding in the float layers and in requantization (summed in another order by each kernel) moves a
value across a rounding boundary of 8 bits now and then. On the bundled decoder, 189 of 1,568,000 pixels (2,000
latents) were off by more than 1e-5, the largest by 0.0037, the mean 1e-7; on its dynamic encoder a float maximum
one ulp apart moves a whole batch's scale: mean 1.2e-5 on 200 noise images. A saturating kernel (AVX2 without
VNNI, full 8-bit weights) was off by a mean 1e-3 on mu. So: mean within 1e-4 on mu (a 200th of its bound), 1e-5
on pixels, and at most 1% of the values off by more than 1e-5.
"""
import numpy as np

REFERENCE_MEAN = {"mu": 1e-4, "x": 1e-5}
REFERENCE_OFF = 0.01
REFERENCE_BY = 1e-5  # "off" means off by more than this


def off_reference(got: np.ndarray, reference: np.ndarray, output: str, mean: float | None = None) -> str | None:
    """None when got is what the file means (mean abs within `mean`, REFERENCE_MEAN by default, and at most
    REFERENCE_OFF of the values off by > 1e-5); else a short description of how far off it is."""
    diff = np.abs(np.asarray(got, np.float64) - np.asarray(reference, np.float64))
    if mean is not None:  # a named allowance: only the mean counts
        return None if diff.mean() <= mean else f"mean {diff.mean():.3g} > the allowance {mean:g}"
    if diff.mean() <= REFERENCE_MEAN[output] and (diff > REFERENCE_BY).mean() <= REFERENCE_OFF:
        return None
    return f"mean {diff.mean():.3g}, max {diff.max():.3g}, {(diff > REFERENCE_BY).mean():.2%} off by > {REFERENCE_BY:g}"
