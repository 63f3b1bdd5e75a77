"""reffakd: knowledge distillation without a teacher network.

from reffakd import SoftLabels, ReffAKDLoss
soft = SoftLabels.load("runs/fmnist/softlabels/soft_labels.safetensors")
criterion = ReffAKDLoss(soft, alpha=0.5, temperature=4.0)
loss = criterion(student(images), labels)
"""

from .errors import ReffAKDError
from .losses import ReffAKDLoss
from .softlabels import SoftLabels
from .version import __version__

__all__ = ["ReffAKDError", "ReffAKDLoss", "SoftLabels", "__version__"]
