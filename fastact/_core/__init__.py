"""fastact's lowest layer: numba settings and the compile cache (:mod:`.jit`), the vectorizable
math cores (:mod:`.math`), the host array edge (:mod:`.arrays`), the measured serial/parallel
crossovers (:mod:`.thresholds`), the threading layer (:mod:`.threads`) and the choice of
executor for a call's arrays (:mod:`.backend`). Nothing here imports from above."""
