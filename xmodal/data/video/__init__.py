"""Video examples: composing animated sprites into clips with instance masks (``compose``),
optical flow at prepare time (``flow``), and the clip sampler of the input pipeline
(``clips``)."""
