"""ablate: Ray-distributed ablation studies for U-Net segmentation of EBHI-Seg."""

import os

# OpenMP threads that spin-wait while they wait for work slow torch on CPU by 5-10x when
# the cores are shared (several Ray trials, other jobs). This must be set before torch is
# first imported, which is why it lives here; a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
