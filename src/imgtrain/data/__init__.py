"""Data: image files in, image directories out — decoding, conversion, archives, splitting, transformations."""
