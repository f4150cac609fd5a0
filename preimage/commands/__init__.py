"""Every ``preimage`` subcommand, one module each, with the options they share (:mod:`.options`); the root group
that gathers them is :mod:`preimage.cli`. Each module imports only click at load time (torch, dask and the
backbones load when a command runs), so ``--help`` and ``--version`` answer at once."""
