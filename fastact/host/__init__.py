"""The CPU executor: where and how fastact's loops run on NumPy arrays.

The front ends (:mod:`fastact.activations`, :mod:`fastact.losses`, :mod:`fastact.optim`)
validate a call, then hand its arrays to an executor: this package for host arrays,
:mod:`fastact.cuda` for device arrays, with the same function names. Here every kernel is
compiled from the templates of :mod:`fastact.kernels` into a serial and a parallel build
(cached on disk), and the serial/parallel choice is made per call from the array size and the
kernel's measured crossover (:func:`fastact._core.threads.use_parallel`).

The array edge (:mod:`fastact.host.edge`) and the launches are re-exported here, so that a
front end writes ``ex.result(...)`` / ``ex.softmax(...)`` whatever ``ex`` is.
"""

from fastact.host.axis import (  # noqa: F401
    glu_backward,
    glu_forward,
    maxout_backward,
    maxout_forward,
    multiply,
    prelu_backward,
    prelu_forward,
    rrelu_train,
    rrelu_train_grad,
    softmax,
    softmax_backward,
)
from fastact.host.edge import (  # noqa: F401
    NAME,
    astype,
    c_contiguous,
    common_dtype,
    contiguous,
    empty,
    finish,
    float_input,
    inplace_input,
    result,
    shape_of,
    tensor_result,
)
from fastact.host.elementwise import elementwise, map_call  # noqa: F401
from fastact.host.losses import (  # noqa: F401
    class_targets,
    class_weight,
    copy_into,
    cosine_embedding,
    cross_entropy,
    flat,
    float_inputs,
    float_sum,
    full,
    grad_buffer,
    loss_map,
    multilabel_soft_margin,
    nll,
    real_input,
    sum_to_shape,
    triplet_margin,
    typed_input,
    unit_interval_message,
)
from fastact.host.optim import (  # noqa: F401
    OPTIM_CHUNK,
    copy_state,
    entry,
    gradients,
    is_param,
    load_param_state,
    new_states,
    no_overlap,
    optim_launch,
    optim_nonfinite,
    stale_entries,
    state_address,
)
