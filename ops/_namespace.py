"""The one name shared by the torch.library namespace, the ONNX custom domain and the TensorRT plugin namespace."""

NAMESPACE = "ramnet"
