"""``preimage explore``: a local web page that shows what every representation keeps (:mod:`.engine` computes,
:mod:`.server` serves, ``static/`` is the page)."""
