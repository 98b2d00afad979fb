"""hyperzzw's conformance: the cross-backend harness for any Keras layer (`conformance.harness`), what defines
each subject's conformance (`conformance.subjects`; hyperzzw's oracle, cases, bad inputs, strategies,
tolerances and fixture I/O in `conformance.subjects.hyperzzw`), and hyperzzw's own pytest suite and report
(this folder's `test_*.py`, `expected`, `observed`, `report`). Which layer is checked is decided once, in
`conformance.subjects.hyperzzw.target`.
"""
