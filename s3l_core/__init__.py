"""s3l_core: a small, fast, resumable self-supervised pre-training library (no Ray)."""

__version__ = "0.1.0"
# Bump when a change alters what a trial computes: the sweeper hashes it into trial ids,
# so results from older code are not reused as if they were current.
RESULTS_VERSION = 1
