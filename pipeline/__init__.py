"""Image decoding and feature extraction: everything that turns pixels into representations."""
