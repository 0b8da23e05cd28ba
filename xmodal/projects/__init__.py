"""One folder per research system: what only that system needs (model, objective, evaluators,
transforms, commands) and a README with its numbers beside the paper's."""
