"""JAX audio DSP: STFT / iSTFT, log-mel, resampling (``dsp``), mel features (``mel``),
Griffin-Lim, dynamic remixing."""
