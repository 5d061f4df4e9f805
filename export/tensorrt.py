"""TensorRT plugins for the ``ramnet`` ops (Quick Deploy Plugins, ``tensorrt.plugin``) and the torch-tensorrt
converters that emit them. **Unverified**: TensorRT cannot be installed on any machine of this project (PyPI has
only download stubs; see README, "TensorRT"), so nothing here has ever run. It is import-guarded: importing this
module works without TensorRT; ``register_plugins()`` / ``register_converters()`` raise a clear ImportError.

Design (docs/DECISIONS.md):
- ``register_plugins()``: ``@trtp.register`` descriptors from ``tensorrt_contract`` shape functions, and
  ``@trtp.impl`` callbacks that wrap TensorRT's buffers as torch CUDA tensors and call the registered ops (their
  Triton kernels), then copy into the outputs. This needs Python and torch at engine run time (a JIT plugin). An
  ``aot_impl`` from Triton PTX is the next step; Triton >= 3.3 adds hidden scratch parameters (pytorch#159772), so
  the PTX signature must be checked first.
- ``register_converters()``: torch-tensorrt converters for ``torch.ops.ramnet.address`` and ``pdma_scan`` that add
  the plugin layers. ``pdma_scan`` has an Optional ``cu_seqlens``, which torch-tensorrt's automatic ``custom_op``
  generator refuses, so the converter is written by hand and accepts only ``cu_seqlens=None``.
"""
from __future__ import annotations

from ramnet.ops.constants import DEFAULT_PROXY_EPS

from .tensorrt_contract import PLUGIN_NAMESPACE, address_output_shapes, from_plugin_attrs, pdma_scan_output_shapes

_WHY = ("TensorRT is not installed (and cannot be here: PyPI ships only stubs that download from pypi.nvidia.com); "
        "install tensorrt >= 10.9 and the [tensorrt] extra on a machine with an NVIDIA GPU")


def available() -> bool:
    try:
        import tensorrt  # noqa: F401
        import tensorrt.plugin  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


def register_plugins() -> None:
    """Register the ``ramnet::Address`` and ``ramnet::PdmaScan`` QDP plugins (JIT implementations)."""
    try:
        import tensorrt.plugin as trtp
    except (ImportError, OSError) as error:
        raise ImportError(_WHY) from error
    import numpy.typing as npt
    import torch

    @trtp.register(f"{PLUGIN_NAMESPACE}::Address")
    def _address_desc(x: trtp.TensorDesc, num_factors: npt.NDArray, top_k: npt.NDArray, tau: npt.NDArray):
        attrs = from_plugin_attrs("Address", {"num_factors": num_factors, "top_k": top_k, "tau": tau})
        weights, indices = x.like(), x.like()
        w_shape, _ = address_output_shapes(list(x.shape_expr), attrs["num_factors"], attrs["top_k"])
        weights.shape_expr = w_shape
        indices.shape_expr, indices.dtype = w_shape, trtp.DataType.INT64
        return weights, indices

    @trtp.impl(f"{PLUGIN_NAMESPACE}::Address")
    def _address_impl(x: trtp.Tensor, num_factors, top_k, tau, outputs, stream):
        attrs = from_plugin_attrs("Address", {"num_factors": num_factors, "top_k": top_k, "tau": tau})
        with torch.cuda.stream(torch.cuda.ExternalStream(stream)):
            w, i = torch.ops.ramnet.address(torch.as_tensor(x, device="cuda"), attrs["num_factors"],
                                            attrs["top_k"], attrs["tau"])
            torch.as_tensor(outputs[0], device="cuda").copy_(w)
            torch.as_tensor(outputs[1], device="cuda").copy_(i)

    @trtp.register(f"{PLUGIN_NAMESPACE}::PdmaScan")
    def _pdma_desc(v: trtp.TensorDesc, write_idx: trtp.TensorDesc, write_w: trtp.TensorDesc,
                   read_idx: trtp.TensorDesc, read_w: trtp.TensorDesc, S0: trtp.TensorDesc, z0: trtp.TensorDesc,
                   gamma: npt.NDArray, eps: npt.NDArray):
        pdma_scan_output_shapes(v.shape_expr, write_idx.shape_expr, S0.shape_expr, z0.shape_expr)
        return v.like(), S0.like(), z0.like()

    @trtp.impl(f"{PLUGIN_NAMESPACE}::PdmaScan")
    def _pdma_impl(v, write_idx, write_w, read_idx, read_w, S0, z0, gamma, eps, outputs, stream):
        attrs = from_plugin_attrs("PdmaScan", {"gamma": gamma, "eps": eps})
        t = lambda a: torch.as_tensor(a, device="cuda")
        with torch.cuda.stream(torch.cuda.ExternalStream(stream)):
            o, S, z = torch.ops.ramnet.pdma_scan(t(v), t(write_idx), t(write_w), t(read_idx), t(read_w), t(S0),
                                                 t(z0), None, attrs["gamma"], attrs["eps"], DEFAULT_PROXY_EPS)
            for out, value in zip(outputs, (o, S, z)):
                t(out).copy_(value)


def register_converters() -> None:
    """torch-tensorrt converters: ``torch.ops.ramnet.address`` / ``pdma_scan`` -> the plugin layers."""
    try:
        import tensorrt as trt
        import tensorrt.plugin as trtp
        from torch_tensorrt.dynamo.conversion import dynamo_tensorrt_converter
    except (ImportError, OSError) as error:
        raise ImportError(_WHY + "; and torch-tensorrt matching the torch minor (the [tensorrt] extra)") from error
    import torch

    from .tensorrt_contract import to_plugin_attrs

    register_plugins()

    def _add_plugin(ctx, name, op_type, tensors, attrs):
        plugin = getattr(getattr(trtp.op, PLUGIN_NAMESPACE), op_type)  # trtp.op.ramnet.Address
        layer = ctx.net.add_plugin(plugin(*tensors, **to_plugin_attrs(op_type, attrs)))
        layer.name = name
        return tuple(layer.get_output(i) for i in range(layer.num_outputs))

    @dynamo_tensorrt_converter(torch.ops.ramnet.address.default, supports_dynamic_shapes=True)
    def _address(ctx, target, args, kwargs, name):
        x, num_factors, top_k, tau = args
        return _add_plugin(ctx, name, "Address", [x], {"num_factors": num_factors, "top_k": top_k, "tau": tau})

    def _dense_only(node) -> bool:
        return len(node.args) < 8 or node.args[7] is None  # cu_seqlens must be None

    @dynamo_tensorrt_converter(torch.ops.ramnet.pdma_scan.default, capability_validator=_dense_only,
                               supports_dynamic_shapes=True)
    def _pdma_scan(ctx, target, args, kwargs, name):
        v, wi, ww, ri, rw, S0, z0, _cu, gamma, eps, _proxy = args
        return _add_plugin(ctx, name, "PdmaScan", [v, wi, ww, ri, rw, S0, z0], {"gamma": gamma, "eps": eps})

    del trt
