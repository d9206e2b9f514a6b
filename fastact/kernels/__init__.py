"""What fastact computes, written once for every executor: the scalar definitions, loop
templates and spec tables of the activations (:mod:`.activations`, :mod:`.elementwise`,
:mod:`.axis`), the losses (:mod:`.losses`) and the optimizers (:mod:`.optim`). No validation
and no dispatch here: the front ends validate, the executors (:mod:`fastact.host`,
:mod:`fastact.cuda`) compile and launch."""
