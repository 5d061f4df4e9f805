"""The description of a language-model run: :class:`LMArgs`, read from a YAML or JSON file (``--config``) with
command-line flags over it, and checked whole before any work (each error names the flag and its allowed range).

The defaults suit short runs too: the warm-up and the logging period scale down with ``steps``."""
from __future__ import annotations

import dataclasses
import glob
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..config import PRESETS, RamNetConfig
from ..mapping_files import parse_mapping_file
from .arch import ARCHS
from ..train import _check_float, _check_int, _flag

DATA_FORMATS = ("text", "json", "parquet")
SAMPLE_BY = ("line", "paragraph", "document")
DIST_MODES = ("fsdp", "ddp")
LM_PRECISIONS = ("fp32", "bf16")


@dataclass
class LMArgs:
    """One language-model run. Field ``x_y`` is the flag ``--x-y`` and the key ``x_y`` of a ``--config`` file."""

    # data (Hugging Face datasets): local files (.txt, .jsonl/.json, .parquet; globs) or one dataset name
    data: list[str] | None = None
    data_format: str | None = None     # text | json | parquet; None: from the files' extension (a name: the hub's)
    dataset_config: str | None = None  # a hub dataset's configuration name
    split: str = "train"
    text_field: str = "text"           # the column that holds each document
    sample_by: str = "paragraph"       # text files: one document per line, per blank-line paragraph, or per file
    streaming: bool = False            # read documents as a stream (datasets' streaming) instead of into memory
    shuffle_buffer: int = 0            # streaming: documents shuffled in a buffer of this size (0: file order)
    val_data: list[str] | None = None  # validation files or name; None: rows held out of the training data
    val_split: str | None = None       # validation split of --data's dataset (e.g. "validation")
    holdout_every: int = 20            # without --val-data/--val-split: packed row r is held out when r % N == 0
    val_rows: int = 64                 # validation uses at most this many rows
    tokenizer: str = "byte"            # "byte" (no download) or an AutoTokenizer name or path
    cache_dir: str | None = None       # datasets' cache (None: its default)
    # model: an architecture; for ramnet a preset and field overrides; vocab_size follows the tokenizer
    arch: str = "ramnet"               # ramnet | attention (Transformer++, SDPA) | deltanet (fla)
    preset: str = "tiny"
    model: dict = field(default_factory=dict)
    d_model: int | None = None         # sizes: the baselines' (defaults 256 / 4 / 4 / 704); for ramnet, overrides
    n_layers: int | None = None        # of the preset (under --set / model)
    n_heads: int | None = None
    d_ff: int | None = None
    # optimisation
    seq_len: int = 512                 # tokens per packed row
    batch_size: int = 8                # rows per optimizer step, over all processes and micro-steps
    grad_accum: int = 1                # micro-steps per optimizer step
    steps: int = 1000
    lr: float = 1e-3
    min_lr_ratio: float = 0.1          # cosine decay ends at lr * min_lr_ratio
    warmup_steps: int | None = None    # None: steps // 20, at most 2000
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    precision: str = "fp32"            # fp32 | bf16 (autocast over fp32 weights)
    chunk_size: int | None = None      # tokens per chunk of the cross-entropy (None: the full logits)
    activation_checkpointing: bool = False
    compile: bool = False
    # schedule of side work
    eval_every: int = 200              # validation every N steps (and after the last step)
    log_every: int | None = None       # None: steps // 1000, at least 1
    save_every: int | None = None      # a resumable (torch.distributed.checkpoint) checkpoint every N steps
    # where it runs
    device: str | None = None          # None: cuda when available, else cpu
    dist: str = "fsdp"                 # several processes (torchrun): fsdp (FSDP2) or ddp
    threads: int | None = None

    def __post_init__(self):
        for name in ("data", "val_data"):
            value = getattr(self, name)
            if isinstance(value, str):
                setattr(self, name, [value])
            elif value is not None and (not isinstance(value, (list, tuple)) or not value
                                        or not all(isinstance(v, str) and v for v in value)):
                raise ValueError(f"{_flag(name)} must be one or more paths or a dataset name, got {value!r}")
            elif value is not None:
                setattr(self, name, list(value))
            if getattr(self, name) is not None:  # local paths made absolute: a resumed run may start elsewhere
                setattr(self, name, [_absolute(v) for v in getattr(self, name)])
        for name in ("seq_len", "holdout_every"):  # holdout_every 1 would hold every row out: none left to train
            _check_int(name, getattr(self, name), 2)
        for name in ("batch_size", "grad_accum", "steps", "eval_every", "val_rows"):
            _check_int(name, getattr(self, name), 1)
        for name in ("shuffle_buffer", "seed"):
            _check_int(name, getattr(self, name), 0)
        if self.seed >= 2**62:
            raise ValueError(f"--seed must be below 2**62, got {self.seed}")
        for name in ("warmup_steps",):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), 0)
        for name in ("log_every", "save_every", "chunk_size", "threads", "d_model", "n_layers", "n_heads",
                     "d_ff"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), 1)
        if self.batch_size % self.grad_accum:
            raise ValueError(f"--batch-size {self.batch_size} must be a multiple of --grad-accum {self.grad_accum}")
        _check_float("lr", self.lr, 0.0, open_low=True)
        _check_float("min_lr_ratio", self.min_lr_ratio, 0.0, 1.0)
        _check_float("weight_decay", self.weight_decay, 0.0)
        _check_float("grad_clip", self.grad_clip, 0.0, open_low=True)
        for name, allowed in (("data_format", DATA_FORMATS), ("sample_by", SAMPLE_BY), ("dist", DIST_MODES),
                              ("precision", LM_PRECISIONS)):
            value = getattr(self, name)
            if value is not None and value not in allowed:
                extra = " (fp16 is not offered for --task lm: use bf16)" if value == "fp16" else ""
                raise ValueError(f"{_flag(name)} must be one of {', '.join(allowed)}, got {value!r}{extra}")
        for name in ("split", "text_field", "tokenizer"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"{_flag(name)} must be a non-empty string, got {getattr(self, name)!r}")
        for name in ("streaming", "activation_checkpointing", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{_flag(name)} must be true or false, got {getattr(self, name)!r}")
        if self.arch not in ARCHS:
            raise ValueError(f"--arch must be one of {', '.join(ARCHS)}, got {self.arch!r}")
        if self.arch != "ramnet" and self.model:
            raise ValueError(f"--set / model overrides are RamNetConfig fields, not for --arch {self.arch} (use "
                             "--d-model, --n-layers, --n-heads, --d-ff)")
        if self.preset not in PRESETS:
            raise ValueError(f"--preset must be one of {', '.join(sorted(PRESETS))}, got {self.preset!r}")
        if not isinstance(self.model, dict):
            raise ValueError(f"model (config overrides) must be a mapping of RamNetConfig fields, got {self.model!r}")
        known = RamNetConfig.field_types()
        unknown = [k for k in self.model if k not in known or k in ("version", "name")]
        if unknown:
            raise ValueError(f"model: unknown config keys {unknown}; known keys: "
                             f"{', '.join(k for k in known if k not in ('version', 'name'))}")
        if self.val_data is not None and self.val_split is not None:
            raise ValueError("give --val-data or --val-split, not both")

    @property
    def warmup(self) -> int:
        """Warm-up steps: ``warmup_steps``, or ``steps // 20`` capped at 2000."""
        return self.warmup_steps if self.warmup_steps is not None else min(2000, self.steps // 20)

    @property
    def log_period(self) -> int:
        """Steps between logged training losses: ``log_every``, or ``steps // 1000`` (at least 1)."""
        return self.log_every if self.log_every is not None else max(1, self.steps // 1000)

    def model_config(self, vocab_size: int):
        """``--arch ramnet``: the preset with the size flags and the ``model`` overrides over it (a
        ``RamNetConfig``); ``vocab_size`` is the tokenizer's (a larger override is kept, a smaller one refused) and
        ``max_seq_len`` the training context ``seq_len``. Other archs: their ``BaselineConfig``."""
        if self.arch != "ramnet":
            from .arch import make_config

            return make_config(self, vocab_size)
        sizes = {k: getattr(self, k) for k in ("d_model", "n_layers", "n_heads", "d_ff") if getattr(self, k)}
        overrides = {**sizes, **self.model}
        given = overrides.pop("vocab_size", None)
        if given is not None and (isinstance(given, bool) or not isinstance(given, int) or given < vocab_size):
            raise ValueError(f"model vocab_size must be an integer >= the tokenizer's {vocab_size}, got {given!r}")
        overrides.setdefault("max_seq_len", self.seq_len)
        return RamNetConfig.from_name(self.preset, **overrides, vocab_size=given or vocab_size)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# a resumed run keeps these from its checkpoint: they decide the data, its order, the model, the optimizer and the
# LR schedule (--steps is the cosine's length and, by default, sets the warm-up: a resumed run cannot extend itself)
LOCKED_ON_RESUME = ("data", "data_format", "dataset_config", "split", "text_field", "sample_by", "streaming",
                    "shuffle_buffer", "val_data", "val_split", "holdout_every", "tokenizer", "arch", "preset", "model",
                    "d_model", "n_layers", "n_heads", "d_ff",
                    "seq_len", "batch_size", "grad_accum", "lr", "min_lr_ratio", "steps", "warmup_steps",
                    "weight_decay", "grad_clip", "seed", "precision")


def _absolute(entry: str) -> str:
    """A local file, directory or glob as an absolute path; anything else (a dataset name) unchanged."""
    if os.path.exists(entry) or glob.has_magic(entry):
        return os.path.abspath(entry)
    return entry


def field_names() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(LMArgs))


def read_run_file(path: str | Path) -> dict:
    """The run description in ``path`` (``.yaml`` / ``.yml`` needs pyyaml, ``.json`` nothing): a mapping of
    :class:`LMArgs` fields (``-`` or ``_`` in keys). Unknown keys are a ``ValueError`` that lists the known ones."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise FileNotFoundError(f"--config {path}: cannot read it ({error.strerror or error})") from None
    data = parse_mapping_file(path, text, f"--config {path}", "pip install 'ramnet[lm]'")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"--config {path} must hold a mapping of run arguments")
    data = {str(k).replace("-", "_"): v for k, v in data.items()}
    unknown = sorted(set(data) - set(field_names()))
    if unknown:
        raise ValueError(f"--config {path}: unknown keys {unknown}; known keys: {', '.join(field_names())}")
    return data


def merge(file_values: dict, flags: dict, model_overrides: dict | None = None) -> LMArgs:
    """``LMArgs`` from a run file's values with the command line's ``flags`` over them; ``model_overrides``
    (``--set``) go over the file's ``model`` mapping."""
    values = {**file_values, **flags}
    base = file_values.get("model") or {}
    if not isinstance(base, dict):
        raise ValueError(f"model (config overrides) must be a mapping of RamNetConfig fields, got {base!r}")
    values["model"] = {**base, **(model_overrides or {})}
    for key in ("lr", "min_lr_ratio", "weight_decay", "grad_clip"):  # YAML reads 1e-3 as a string
        if isinstance(values.get(key), str):
            try:
                values[key] = float(values[key])
            except ValueError:
                pass
    return LMArgs(**values)
