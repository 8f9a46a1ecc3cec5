"""WinCLIP / WinCLIP+ (Jeong et al. CVPR 2023): window-based CLIP scores with the
compositional prompt ensemble, harmonic aggregation and a k-shot reference memory."""

from anomalign.methods.winclip.config import WinCLIPConfig
from anomalign.methods.winclip.detector import WinCLIP

__all__ = ["WinCLIP", "WinCLIPConfig"]
