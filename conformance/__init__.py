"""The hyperzzw conformance suite, and the single home of what defines conformance.

Tests and scripts import the definitions from here: the golden case catalogue (`cases`), the float64 NumPy
oracle (`oracle`), the tolerance policy (`tolerance`), the bad-input catalogue (`bad_inputs`), the hypothesis
strategies (`strategies`), fixture I/O (`golden`) and the cross-backend report (`report`). Which layer is
checked is decided once, in `target`.
"""
