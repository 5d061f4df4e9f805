"""ONNX Runtime sessions for exported RAM-Net graphs, with explicit state I/O."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ramnet.ops.constants import NAMESPACE


def default_providers(custom_ops: bool = False) -> list[str]:
    """CUDA first when this onnxruntime build has it (onnxruntime-gpu) and the graph is standard-only; else CPU.
    The ``ramnet`` PyOps are CPU implementations, so a custom graph stays on CPU. (The CUDA EP path is
    unverified: onnxruntime-gpu could not be installed on any machine of this project.)"""
    import onnxruntime as ort

    if not custom_ops and "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def session(path, *, providers=None, custom_ops: bool | None = None, gamma: float | None = None):
    """An ``InferenceSession`` for ``path``. ``custom_ops`` (default: when the graph has ``ramnet`` nodes)
    registers the CPU PyOp implementations of the ``ramnet`` domain. ``providers`` default:
    ``default_providers``.

    ``gamma``: the model's decay exponent, which sets the upper bound of the ``z`` states that ``run`` accepts
    (``max(1, 1/gamma)``, ``runtime/state_checks.py``). Default: the graph's ``ramnet_config`` metadata if it has
    some, else the ``gamma`` attribute of its ``ramnet::PdmaScan`` nodes (custom flavour), else 1 (the config
    default): give it for a standard-flavour graph of a model with ``gamma < 1``."""
    import onnx
    import onnxruntime as ort

    from .ort_checks import set_state_gamma

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no ONNX model at {path}")
    if gamma is not None:
        from ramnet.ops.checks import check_float

        gamma = check_float("gamma", gamma, 0.0)
    node_gammas = []
    if custom_ops is None or (custom_ops and gamma is None):
        nodes = onnx.load(str(path), load_external_data=False).graph.node
        if custom_ops is None:
            custom_ops = any(n.domain == NAMESPACE for n in nodes)
        node_gammas = [a.f for n in nodes if n.domain == NAMESPACE and n.op_type == "PdmaScan"
                       for a in n.attribute if a.name == "gamma"]
    options = ort.SessionOptions()
    if custom_ops:
        from .ort_pyops import register

        options.register_custom_ops_library(register())
        # sequential (ORT's default, made explicit): every node, so every PyOp, runs on the thread that calls
        # run(), which is where ort_pyops.capture() collects that run's node errors
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(str(path), options, providers=providers or default_providers(custom_ops))
    if gamma is not None:
        set_state_gamma(sess, gamma, ", as given to session()")
    elif node_gammas and "ramnet_config" not in sess.get_modelmeta().custom_metadata_map:
        # the smallest gamma allows the largest z (one gamma per model today)
        set_state_gamma(sess, min(node_gammas), ", the graph's PdmaScan attribute")
    return sess


def run(sess, feeds: dict, *, check: bool = True, io_binding: bool | None = None) -> dict:
    """Run with named numpy inputs; returns outputs by name.

    With ``check`` (default) the feeds are validated first (``ort_checks.check_feeds``): names, dtypes, ranks,
    static dims, one batch size, token ids in ``[0, vocab)``, ``position >= 0`` and states inside their bounds
    (finite; ``z`` in ``[0, max(1, 1/gamma)]``; ``|S| <= 1e8 (z + 1e-6)`` slot by slot; ``|conv| <= 1e8``: see
    ``runtime/state_checks.py``). A failure is a ``ValueError``/``TypeError`` naming the input and the allowed
    range, never a crash or a silent wrong result.

    A ``ramnet`` node that refuses its inputs (its PyOp cannot raise inside ORT) makes this raise
    ``RamnetNodeError`` with the node's message; that error belongs to this run only, even with runs of this or
    other sessions in other threads (``runtime/ort_pyops.py``).

    ``io_binding`` (default: when the session runs on the CUDA EP) binds inputs and outputs on the session's device
    through ``IOBinding`` instead of copying through ``sess.run``; outputs come back as numpy arrays."""
    from .ort_checks import check_feeds
    from .ort_pyops import capture

    feeds = check_feeds(sess, feeds) if check else {k: np.ascontiguousarray(v) for k, v in feeds.items()}
    names = [o.name for o in sess.get_outputs()]
    if io_binding is None:
        io_binding = sess.get_providers()[0] == "CUDAExecutionProvider"
    # the errors of this run's ramnet nodes, and only those, even with other runs in other threads (ort_pyops)
    with capture(off_thread=_parallel_mode(sess)) as errors:
        try:
            outputs = _run_bound(sess, names, feeds) if io_binding else sess.run(names, feeds)
        except Exception as error:
            if errors:  # a refusing node's placeholder outputs can make a later node fail: report the cause
                raise RamnetNodeError("; ".join(errors)) from error
            raise
    if errors:  # a ramnet PyOp refused its inputs (it cannot raise inside ORT; see ort_pyops)
        raise RamnetNodeError("; ".join(errors))
    return dict(zip(names, outputs))


def _parallel_mode(sess) -> bool:
    """Whether ``sess`` runs its nodes on ORT's inter-op pool threads (``ExecutionMode.ORT_PARALLEL``)."""
    import onnxruntime as ort

    options = getattr(sess, "get_session_options", None)
    return options is not None and options().execution_mode == ort.ExecutionMode.ORT_PARALLEL


def _run_bound(sess, names, feeds):
    """One run through ``IOBinding`` on the session's first provider's device (CUDA EP: ``cuda``, else ``cpu``)."""
    import onnxruntime as ort

    device = "cuda" if sess.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
    binding = sess.io_binding()
    for name, value in feeds.items():
        binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(value, device, 0))
    for name in names:
        binding.bind_output(name, device)
    sess.run_with_iobinding(binding)
    return binding.copy_outputs_to_cpu()


def _progress_bar(steps):
    from tqdm.auto import tqdm

    return tqdm(steps, desc="ort generate", unit="tok")


class RamnetNodeError(ValueError):
    """A ``ramnet`` node refused its inputs during an ORT run (the message names the input and the range)."""


class OrtGenerator:
    """Greedy or sampled generation through ONNX Runtime: one prefill session, then one decode session per token,
    carrying the per-layer states explicitly (``S_i, z_i(, conv_i)`` in, ``*_out`` back).

    ``OrtGenerator(prefill_path, decode_path).generate(input_ids [B, T], n)`` equals the eager
    ``RamNetForCausalLM.generate`` token for token (same sampling rule and generator)."""

    def __init__(self, prefill_path, decode_path, *, providers=None, gamma: float | None = None):
        """``gamma``: see ``session`` (the state checks of the first decode feed)."""
        self.prefill = session(prefill_path, providers=providers, gamma=gamma)
        self.decode = session(decode_path, providers=providers, gamma=gamma)
        self.state_names = [i.name for i in self.decode.get_inputs() if i.name not in ("token", "position")]
        # the vocabulary is the logits' static last dim (None if an exporter left it symbolic)
        last = next(o for o in self.decode.get_outputs() if o.name == "logits").shape[-1]
        self.vocab_size = last if isinstance(last, int) else None

    def generate(self, input_ids, max_new_tokens: int, *, temperature: float = 0.0, top_k: int | None = None,
                 top_p: float | None = None, eos_token_id=None, pad_token_id: int | None = None, generator=None,
                 progress: bool = False):
        """``input_ids`` int64 ``[B, T]`` -> ``[B, T + n]``; the arguments and the sampling rule are those of the
        eager ``RamNetForCausalLM.generate`` (``ramnet.sampling``)."""
        import torch

        from ramnet.sampling import check_input_ids, decode_loop, sampling_args

        args = sampling_args(max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                             eos_token_id=eos_token_id, pad_token_id=pad_token_id, vocab_size=self.vocab_size)
        ids = torch.as_tensor(input_ids)
        check_input_ids(ids, self.vocab_size)
        if max_new_tokens == 0:
            return ids
        out = run(self.prefill, {"input_ids": ids.numpy()})
        carried = {"states": {n: out[n] for n in self.state_names}, "position": ids.shape[1], "first": True}

        def step(token):
            feeds = {"token": token.numpy(), "position": np.full(ids.shape[0], carried["position"], dtype=np.int64),
                     **carried["states"]}
            # only the first decode feed is checked (names, shapes, and the prefill's states inside their bounds:
            # an overflowing state is refused there, naming it); later feeds are the decode graph's own outputs
            result = run(self.decode, feeds, check=carried["first"])
            carried.update(states={n: result[n + "_out"] for n in self.state_names},
                           position=carried["position"] + 1, first=False)
            return torch.from_numpy(result["logits"])

        return decode_loop(ids, torch.from_numpy(out["logits"][:, -1]), step, args, generator,
                           progress=_progress_bar if progress else None)
