"""reffakd: knowledge distillation without a teacher network.

from reffakd import SoftLabels, ReffAKDLoss
soft = SoftLabels.load("runs/fmnist/softlabels/soft_labels.safetensors")
criterion = ReffAKDLoss(soft, alpha=0.5, temperature=4.0)
loss = criterion(student(images), labels)
"""

__version__ = "0.1.0"

from .errors import ReffAKDError  # noqa: E402
from .losses import ReffAKDLoss  # noqa: E402
from .softlabels import SoftLabels  # noqa: E402

__all__ = ["ReffAKDError", "ReffAKDLoss", "SoftLabels", "__version__"]
