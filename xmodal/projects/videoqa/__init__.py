"""Two-stream video QA (seed system 18; "Two-stream Spatiotemporal Feature for Video QA Task",
2019): an RGB stream and an optical-flow stream, each a CNN with squeeze-and-excitation blocks
and temporal pooling, matched against the question and each candidate answer by a context
matching module with a level-adjusting layer, one score per candidate, trained with a smoothed
ranking loss (``specs/videoqa.py``), on ``sprite_videos``."""
