"""Serial/parallel crossover of each element-wise activation's loops, in elements.

Measured with ``python scripts/tune_threshold.py`` (forward loops, float32, 2 threads, two
runs on the 2-core Emerald Rapids development machine; where the runs disagreed the larger
size was kept). Cheap functions need large arrays before a second thread pays for Numba's
parallel launch (~7 us); transcendental ones cross over near 16-32K elements. Backward and
in-place loops use the same value. An activation not listed uses
``PARALLEL_THRESHOLD``; losses use it too, optimizer steps ``THRESHOLDS["optimizer"]``.
"""

#: Below this many elements a kernel without a measured crossover runs on the calling thread
#: (thread start-up costs more than it saves on smaller arrays).
PARALLEL_THRESHOLD = 1 << 15


THRESHOLDS: dict[str, int] = {
    # memory-bound, a few instructions per element: 256K on Emerald Rapids (2 MB of L2 per
    # core); on the 2-core Intel Ice Lake VM (1.25 MB) a serial loop over 192K float32
    # elements (768 KB in, 768 KB out) falls out of L2, and the parallel loop ran 1.6-2.2x
    # faster there on numba's layer and 1.2-1.9x on torch's pool (relu 44.5 against
    # 23.3 us); at 128K 1.0-1.3x and 0.8-1.06x (scripts/tune_threshold.py, 2026-12-06)
    "relu": 196608,
    "relu6": 196608,
    "leaky_relu": 196608,
    "hardtanh": 196608,
    "hardsigmoid": 196608,
    "hardswish": 196608,
    "hardshrink": 196608,
    "softshrink": 196608,
    "threshold": 196608,
    "softsign": 131072,
    # transcendental
    "elu": 65536,
    "celu": 32768,
    "selu": 32768,
    "sigmoid": 32768,
    "tanh": 32768,
    "silu": 32768,
    "mish": 32768,
    "tanhshrink": 32768,
    "gelu_tanh": 32768,
    "gelu": 16384,
    "softplus": 16384,
    "logsigmoid": 16384,
    # one fused optimizer step over all tensors of a group (crossover of the serial and the
    # 2-thread parallel Adam step, float32: ~48K elements)
    "optimizer": 49152,
}
