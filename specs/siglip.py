"""SigLIP (Zhai et al. 2023) on emoji: a sigmoid loss over all image-text pairs, with a bias.

    python -m xmodal.main --spec=specs/siglip.py:runlocal --workdir=runs/siglip

Same model, data and arguments as ``specs/clip.py``; only the loss and its temperature/bias
initialisation differ (the paper's t' = log 10, b = -10), so the two are a controlled comparison.
"""
import math

from xmodal.core.spec import sibling


def get_config(arg=None):
    c = sibling(__file__, "clip.py").get_config(arg)
    c.model.temperature_init = math.log(10.0)
    c.model.bias_init = -10.0
    c.objective.name = "siglip"
    return c
