"""Training decoders: the trainer and its recipe, the stream of stored features, augmentation, precision, the
objectives (pixel, DeePSiM) and the evaluation a run writes. Uses models and scoring, never inversion."""
