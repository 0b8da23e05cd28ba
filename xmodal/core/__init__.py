"""The generic machine: trainer, step, train state, spec and registries, mesh and sharding,
checkpoints, stages. It knows no modality and no system, and imports nothing outside itself."""
