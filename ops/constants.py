"""Names and defaults shared by the ops, the exporters and the runtimes (one home for each)."""

# the torch.library namespace, the ONNX custom domain and the TensorRT plugin namespace
NAMESPACE = "ramnet"
# ``e`` of the proxy decay derivative ``d/dw (e + (1 - e)(1 - w)) ** gamma`` (docs/MATH.md)
DEFAULT_PROXY_EPS = 1e-3
# read normaliser ``o = sum r S / (z + eps)``
DEFAULT_EPS = 1e-6
