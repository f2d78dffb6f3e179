"""Joint image + mask augmentation: exact identity, integer shifts, shared geometry."""

import torch

from benchmark.data.augment import affine_matrices, random_affine, warp


def test_identity_parameters_leave_images_unchanged():
    x = torch.rand(3, 2, 16, 20)
    zero = torch.zeros(3, dtype=torch.float64)
    forward = affine_matrices(zero, zero, torch.zeros(3, 2, dtype=torch.float64))
    assert torch.equal(warp(x, forward), x)


def test_integer_translation_shifts_pixels_with_zero_fill():
    x = torch.rand(1, 1, 8, 8)
    zero = torch.zeros(1, dtype=torch.float64)
    forward = affine_matrices(zero, zero, torch.tensor([[2.0, 1.0]], dtype=torch.float64))  # right 2, down 1
    out = warp(x, forward)
    assert torch.equal(out[0, 0, 1:, 2:], x[0, 0, :-1, :-2])
    assert (out[0, 0, 0, :] == 0).all() and (out[0, 0, :, :2] == 0).all()


def test_image_and_mask_move_together_and_are_seeded():
    x = torch.zeros(4, 1, 32, 32)
    x[:, :, 8:20, 4:16] = 1.0
    mask = x.clone()
    a = random_affine(x, mask, torch.Generator().manual_seed(3))
    b = random_affine(x, mask, torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert torch.equal(a[0], a[1])  # same geometry for image and mask
    assert not torch.equal(a[0], x)
    assert set(a[1].unique().tolist()) <= {0.0, 1.0}  # nearest sampling keeps the mask binary


def test_random_hflip_mirrors_image_and_mask_of_the_drawn_samples_only():
    from benchmark.data.augment import random_hflip

    images, masks = torch.rand(64, 3, 5, 7), (torch.rand(64, 1, 5, 7) > 0.5).float()
    before = images.clone()
    out_images, out_masks = random_hflip(images, masks, torch.Generator().manual_seed(3))
    draws = torch.rand(64, generator=torch.Generator().manual_seed(3)) < 0.5
    for k in range(64):  # a slow loop over the same draws
        expected = (images[k].flip(-1), masks[k].flip(-1)) if draws[k] else (images[k], masks[k])
        assert torch.equal(out_images[k], expected[0]) and torch.equal(out_masks[k], expected[1])
    assert 0 < int(draws.sum()) < 64 and torch.equal(images, before)  # the input is left alone
