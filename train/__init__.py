"""Learned and optimisation-based inversion, one package per job (docs/architecture.md): ``models`` (decoders,
checkpoints, run folders, the shipped zoo), ``scoring`` (the metrics), ``training`` (the trainer and its data) and
``inversion`` (decoders, HOGgles and optimisation applied to images), each importing only the ones below it."""
