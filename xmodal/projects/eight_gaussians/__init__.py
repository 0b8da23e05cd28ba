"""The 2-D eight-Gaussians system: a class-conditional flow teacher and its one-step students
(DMD, SiD, reflow), measured by sliced Wasserstein distance. The smallest complete example of
the three-network distillation step, and its test."""
