"""Inverting a representation: trained decoders and HOGgles dictionaries applied to new images, Mahendran &
Vedaldi's optimisation, the :class:`~.inverters.Inverter` protocol over all three, and the zoo's checks."""
