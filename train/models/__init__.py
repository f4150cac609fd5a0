"""What a trained inverter is and where it lives: decoder architectures, checkpoints, run folders, the shipped zoo,
and loading a decoder checked against a store. The bottom of ``train``: it imports no other part of it."""
