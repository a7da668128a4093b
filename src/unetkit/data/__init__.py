"""Files on disk -> samples -> tensors: formats, decoding, masks, splits, transforms, cache."""
