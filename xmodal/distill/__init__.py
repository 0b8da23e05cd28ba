"""Score distillation, the third objective family: one-step students from flow teachers.

``teacher`` (what a flow objective offers, and loading it from a stage), ``student`` (what the
objectives share), and one file per method: ``dmd`` (DMD / DMD2), ``sid`` (SiD), ``reflow``
(reflow and regression distillation). The losses themselves are pure functions in
``xmodal.losses.distillation``.
"""
