"""``preimage build``: a zoo of decoders for any model's layers, from a folder of photos, in one resumable command
(:func:`~.builder.build`); the recipe it follows is data (:mod:`.recipe`), shared with the decoders that ship."""
