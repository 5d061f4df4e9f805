"""The segment walk's sort keys ``(state * M + slot) * T + t``, and their past-the-end sentinels, per key dtype:
a read's sentinel lets every write through in the walk's final pass, and the write sentinel is larger, so that
pass stops. (No Triton here: the backend table reads these limits at import.)"""
import torch

SENTINELS = {torch.int32: (2**31 - 2, 2**31 - 1), torch.int64: (2**62, 2**62 + 1)}
INT32_KEYS_BELOW = SENTINELS[torch.int32][0]  # largest key + 1 that still sorts as int32
INT64_KEYS_BELOW = SENTINELS[torch.int64][0]
