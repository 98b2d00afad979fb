"""Everything that defines hyperzzw's conformance, under one name: what `HyperZZWOperator` must compute and
raise, independent of any backend and of the engine that checks it.

- `oracle`: the exact output, gradients, training step and output mask (rational arithmetic, rounded once);
- `cases`: the golden case catalogue (shapes, dtypes, seeds), and `golden`: its fixtures in `golden/hyperzzw/`;
- `bad_inputs`: every bad argument and input, with the exact error it must raise;
- `strategies`: hypothesis strategies for its inputs and constructor arguments;
- `tolerance`: how far a backend's result may be from the oracle, and why;
- `target`: which layer file is under test (`hyperzzw`, or `HYPERZZW_TARGET`'s copy);
- `mutants`: plausible defects planted in the layer, for checking that the checks catch them;
- `subjects`: the layer declared for the cross-backend harness (`conformance.harness`), through the same
  public API as any user's layer.

The suite (`conformance/test_*.py`, its report) and the harness read these; none of them is read back.
"""
