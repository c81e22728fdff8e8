"""Data: video decoding, datasets, buckets, and the Dancing Shapes world."""
