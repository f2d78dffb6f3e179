"""Data: splits and batches (`split`), the parallel loader and the seeded batch order
(`loader`), image decoding and prepared caches, augmentation, and the image corruptions the
corruption suite applies. Below models, configuration and the contracts; above the foundation."""
