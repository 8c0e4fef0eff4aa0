"""Fault injection on the embedded AWS (:mod:`.faults`) and the ``make chaos`` benchmark (:mod:`.bench`)."""
