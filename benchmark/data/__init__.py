"""Data: splits and batches (`split`), the parallel loader, image decoding and the prepared
caches, augmentation, and the image corruptions the corruption suite applies. Below the engine;
above only the contracts (errors, registry, files)."""
