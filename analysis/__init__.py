"""Studies on stores and decoders: error per layer, perturbation, interpolation, sampling, ablation."""
