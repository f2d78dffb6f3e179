"""The normalised HSIC estimator against a slow, literal computation and on synthetic dependence."""

import math

import pytest
import torch

from benchmark.losses.hsic import (
    gaussian_kernel,
    label_kernel,
    nhsic,
    nhsic_from_operators,
    normalised_operator,
    subset_kernels,
)

F64 = torch.float64


def slow_gaussian(u, sigma):
    b, p = u.shape
    k = torch.empty(b, b, dtype=F64)
    for i in range(b):
        for j in range(b):
            k[i, j] = math.exp(-float(((u[i] - u[j]) ** 2).sum()) / (2 * sigma**2 * p))
    return k


def slow_nhsic(k_u, k_v, eps):
    """trace(R_U R_V), R = K H (K H + eps B I)^-1 with H and the inverse formed explicitly."""
    b = k_u.shape[0]
    h = torch.eye(b, dtype=F64) - torch.full((b, b), 1.0 / b, dtype=F64)
    eye = torch.eye(b, dtype=F64)
    r_u = k_u @ h @ torch.linalg.inv(k_u @ h + eps * b * eye)
    r_v = k_v @ h @ torch.linalg.inv(k_v @ h + eps * b * eye)
    return float(torch.trace(r_u @ r_v))


def test_gaussian_kernel_matches_its_formula_with_dimension_scaled_bandwidth():
    u = torch.randn(7, 4, generator=torch.Generator().manual_seed(0), dtype=F64)
    torch.testing.assert_close(gaussian_kernel(u, 5.0), slow_gaussian(u, 5.0), rtol=1e-12, atol=1e-12)
    two = torch.tensor([[0.0, 0.0], [3.0, 4.0]], dtype=F64)  # distance^2 = 25, p = 2, sigma = 5: exp(-1/4)
    assert gaussian_kernel(two, 5.0)[0, 1].item() == pytest.approx(math.exp(-0.25), abs=1e-15)
    images = torch.rand(5, 1, 4, 4, dtype=F64)  # images are flattened: p = 16
    torch.testing.assert_close(gaussian_kernel(images, 2.0), slow_gaussian(images.flatten(1), 2.0))


def test_label_kernel_is_same_class_indicator():
    y = torch.tensor([0, 2, 0, 1])
    expected = torch.tensor([[1, 0, 1, 0], [0, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 1]], dtype=torch.float32)
    assert torch.equal(label_kernel(y, 3), expected)


@pytest.mark.parametrize("eps", [1e-5, 1e-2])
def test_nhsic_matches_the_slow_computation(eps):
    g = torch.Generator().manual_seed(1)
    u = torch.randn(20, 3, generator=g, dtype=F64)
    v = u[:, :2] ** 2 + 0.3 * torch.randn(20, 2, generator=g, dtype=F64)
    k_u, k_v = slow_gaussian(u, 5.0), slow_gaussian(v, 5.0)
    assert nhsic(gaussian_kernel(u), gaussian_kernel(v), eps).item() == pytest.approx(slow_nhsic(k_u, k_v, eps),
                                                                                      rel=1e-8)
    r_u, r_v = normalised_operator(k_u, eps), normalised_operator(k_v, eps)
    assert nhsic_from_operators(r_u, r_v).item() == pytest.approx(float(torch.trace(r_u @ r_v)), rel=1e-12)


def test_nhsic_is_invariant_to_permuting_samples_jointly():
    g = torch.Generator().manual_seed(2)
    u = torch.randn(32, 5, generator=g, dtype=F64)
    y = torch.randint(0, 4, (32,), generator=g)
    perm = torch.randperm(32, generator=g)
    before = nhsic(gaussian_kernel(u), label_kernel(y, 4, F64))
    after = nhsic(gaussian_kernel(u[perm]), label_kernel(y[perm], 4, F64))
    assert after.item() == pytest.approx(before.item(), rel=1e-9)
    shuffled_one = nhsic(gaussian_kernel(u[perm]), label_kernel(y, 4, F64))  # pairing broken: a different value
    assert shuffled_one.item() != pytest.approx(before.item(), rel=1e-3)


def test_nhsic_separates_independent_from_dependent_data():
    g = torch.Generator().manual_seed(3)
    b = 256
    u = torch.randn(b, 3, generator=g, dtype=F64)
    independent = nhsic(gaussian_kernel(u), gaussian_kernel(torch.randn(b, 3, generator=g, dtype=F64)))
    identical = nhsic(gaussian_kernel(u), gaussian_kernel(u))
    nonlinear = nhsic(gaussian_kernel(u), gaussian_kernel(u**2 + 0.05 * torch.randn(b, 3, generator=g, dtype=F64)))
    assert independent < 0.6 and nonlinear > 3.0 and identical > 8.0
    y = torch.randint(0, 10, (b,), generator=g)
    k_y = label_kernel(y, 10, F64)
    unrelated = nhsic(k_y, gaussian_kernel(torch.randn(b, 5, generator=g, dtype=F64)))
    encoded = nhsic(k_y, gaussian_kernel(3.0 * torch.nn.functional.one_hot(y, 10).to(F64)))
    assert unrelated < 1.0 and encoded > 8.0  # 9 = rank of the centred 10-class label kernel


def test_nhsic_has_finite_gradients_even_with_duplicate_rows():
    z = torch.randn(16, 8, generator=torch.Generator().manual_seed(4))
    z = torch.cat([z, z[:4]]).requires_grad_()  # zero distances
    y = torch.arange(20) % 3
    value = nhsic(label_kernel(y, 3), gaussian_kernel(z)) + nhsic(gaussian_kernel(z[:, :3]), gaussian_kernel(z))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_subset_kernels_equal_the_kernels_of_the_selected_columns():
    g = torch.Generator().manual_seed(3)
    u = torch.randn(12, 9, generator=g, dtype=F64)
    keep = torch.tensor([[1, 0, 1, 1, 0, 0, 1, 0, 1], [0, 1, 0, 0, 1, 1, 0, 1, 0]], dtype=F64)
    stacked = subset_kernels(u, keep, sigma=2.0)
    assert stacked.shape == (2, 12, 12)
    for row, kernel in zip(keep, stacked):
        torch.testing.assert_close(kernel, slow_gaussian(u[:, row.bool()], 2.0), rtol=1e-12, atol=1e-12)


def test_operators_and_traces_of_a_stack_equal_those_of_each_kernel():
    g = torch.Generator().manual_seed(4)
    kernels = torch.stack([gaussian_kernel(torch.randn(10, 5, generator=g, dtype=F64)) for _ in range(3)])
    operators = normalised_operator(kernels, 1e-3)
    for k in range(3):
        torch.testing.assert_close(operators[k], normalised_operator(kernels[k], 1e-3), rtol=1e-12, atol=1e-12)
    traces = nhsic_from_operators(operators[:2], operators[1:])
    assert traces.shape == (2,)
    for k in range(2):
        assert float(traces[k]) == pytest.approx(slow_nhsic(kernels[k], kernels[k + 1], 1e-3), rel=1e-9)
