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
    # memory-bound, a few instructions per element
    "relu": 262144,
    "relu6": 262144,
    "leaky_relu": 262144,
    "hardtanh": 262144,
    "hardsigmoid": 262144,
    "hardswish": 262144,
    "hardshrink": 262144,
    "softshrink": 262144,
    "threshold": 262144,
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
