"""Datasets: the EBHI-Seg reader, the synthetic generator, splits, augmentation, loaders."""

import os

# albumentations asks PyPI for a newer version at import; cluster nodes often have no network,
# and a run should not depend on it.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
