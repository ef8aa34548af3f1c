"""``text-lm``: a small causal language model from transformers on a local text corpus.

Everything is local: the model is built from a ``GPT2Config`` (or loaded ``from_pretrained``
from a directory), the tokenizer is a byte-level BPE trained on the corpus (or the model
directory's own), and the default corpus is the docstrings of standard-library modules.
"""

from __future__ import annotations

import json
import os

# Set before transformers/huggingface_hub are imported: they read these once at import time.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import ast  # noqa: E402
import fcntl  # noqa: E402
import hashlib  # noqa: E402
import importlib.util  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import tempfile  # noqa: E402
from collections.abc import Callable, Mapping  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, ClassVar

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import TensorDataset  # noqa: E402

from ..errors import ParameterError, SettingsError  # noqa: E402
from .base import Task  # noqa: E402

log = logging.getLogger(__name__)

#: modules whose docstrings make the default corpus (~1200 docstrings, ~280 kB, offline)
STDLIB_CORPUS_MODULES = (
    "argparse",
    "ast",
    "calendar",
    "collections",
    "configparser",
    "contextlib",
    "csv",
    "dataclasses",
    "datetime",
    "difflib",
    "enum",
    "functools",
    "inspect",
    "logging",
    "pathlib",
    "pickle",
    "random",
    "shutil",
    "statistics",
    "string",
    "subprocess",
    "textwrap",
    "threading",
    "typing",
    "zipfile",
)
CORPUS_SUFFIXES = (".txt", ".md", ".py")
END_OF_TEXT = "<|endoftext|>"
#: bump when the tokenizer recipe changes, so cached tokenizers are not reused across recipes
_TOKENIZER_RECIPE = "bytelevel-bpe-v1"
_DROPOUT_ATTRIBUTES = (
    "resid_pdrop",
    "embd_pdrop",
    "attn_pdrop",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "attention_dropout",
    "dropout",
)


@dataclass(frozen=True)
class _Tokens:
    """The corpus as one stream of token ids, and what the model config needs to know."""

    ids: np.ndarray
    vocab_size: int
    bos_id: int
    eos_id: int


class TextLMTask(Task):
    """Next-token prediction on fixed-size blocks; reports validation loss and perplexity."""

    sum_keys: ClassVar[tuple[str, ...]] = ("loss_sum", "tokens")

    def __init__(self, params: Mapping[str, Any], settings: Mapping[str, Any], context) -> None:
        """Check the settings that do not need data (paths, sizes)."""
        super().__init__(params, settings, context)
        self.steps_per_epoch = None if settings["steps_per_epoch"] is None else int(settings["steps_per_epoch"])
        self.block_size = int(settings["block_size"])
        self.model_dir = _local_dir(settings["model"], "model") if settings["model"] else None
        if self.model_dir is not None:
            for name in ("n_layer", "n_embd"):
                if params.get(name) is not None:
                    raise ParameterError(
                        f"hyperparameter {name!r} cannot change the "
                        f"architecture of the pretrained model {self.model_dir}"
                    )
        else:
            n_embd = params.get("n_embd") or int(settings["n_embd"])
            if n_embd % int(settings["n_head"]):
                raise ParameterError(f"n_embd {n_embd} must be a multiple of n_head {settings['n_head']}")
        self._tokens: _Tokens | None = None

    def load_data(self) -> None:
        """Read the corpus, tokenize it (cached), cut it into blocks and split them."""
        documents = _read_corpus(self.settings["dataset"])
        if self.model_dir is not None and _has_tokenizer(self.model_dir):
            tokens = _pretrained_tokens(self.model_dir, documents)
        else:
            vocab_size = int(self.settings["vocab_size"])
            if self.model_dir is not None:
                # A checkpoint without its tokenizer: train one that fits its embeddings.
                vocab_size = min(vocab_size, _checkpoint_vocab_size(self.model_dir) or vocab_size)
            tokens = _trained_tokens(documents, vocab_size, self.context.cache_dir)
        self._tokens = tokens
        block = self.block_size
        count = len(tokens.ids) // block
        if count < 2:
            raise SettingsError(f"corpus too small: {len(tokens.ids)} tokens make fewer than two blocks of {block}")
        blocks = torch.as_tensor(tokens.ids[: count * block].astype(np.int64)).view(count, block)
        # Same permutation on every rank and trial: the validation blocks never change.
        order = np.random.default_rng(int(self.settings["split_seed"])).permutation(count)
        n_val = max(1, round(count * float(self.settings["val_fraction"])))
        val = order[:n_val][: int(self.settings["eval_blocks"])]
        self.train_dataset = TensorDataset(blocks[np.sort(order[n_val:])])
        self.val_dataset = TensorDataset(blocks[np.sort(val)])
        log.info(
            "corpus: %d documents, %d tokens, %d train / %d validation blocks of %d",
            len(documents),
            len(tokens.ids),
            len(self.train_dataset),
            len(self.val_dataset),
            block,
        )

    def build_model(self) -> nn.Module:
        """A GPT-2 from config, or the local pretrained model, with the tokenizer's bos/eos."""
        from transformers import AutoConfig, AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # a bar per load only clutters pod logs

        tokens = self._tokens
        assert tokens is not None, "load_data() first"
        dropout = float(self.params["dropout"])
        if self.model_dir is None:
            config = GPT2Config(
                vocab_size=tokens.vocab_size,
                n_positions=self.block_size,
                n_layer=self.params["n_layer"] or int(self.settings["n_layer"]),
                n_embd=self.params["n_embd"] or int(self.settings["n_embd"]),
                n_head=int(self.settings["n_head"]),
                resid_pdrop=dropout,
                embd_pdrop=dropout,
                attn_pdrop=dropout,
                bos_token_id=tokens.bos_id,
                eos_token_id=tokens.eos_id,
            )
            return _with_causal_lm_loss(GPT2LMHeadModel(config))
        config = AutoConfig.from_pretrained(self.model_dir, local_files_only=True)
        for attribute in _DROPOUT_ATTRIBUTES:
            if isinstance(getattr(config, attribute, None), float):
                setattr(config, attribute, dropout)
        config.bos_token_id, config.eos_token_id = tokens.bos_id, tokens.eos_id
        positions = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)
        if positions is not None and self.block_size > positions:
            raise SettingsError(f"block_size {self.block_size} exceeds the model's {positions} positions")
        model = _with_causal_lm_loss(
            AutoModelForCausalLM.from_pretrained(self.model_dir, config=config, local_files_only=True)
        )
        embeddings = model.get_input_embeddings().num_embeddings
        if tokens.vocab_size > embeddings:
            raise SettingsError(
                f"the tokenizer has {tokens.vocab_size} tokens, the model {self.model_dir} only {embeddings}"
            )
        return model

    def build_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        """AdamW, Adam or SGD (momentum 0.9) with weight decay."""
        p = self.params
        factories: dict[str, Callable[..., torch.optim.Optimizer]] = {
            "adamw": torch.optim.AdamW,
            "adam": torch.optim.Adam,
            "sgd": lambda params, **kw: torch.optim.SGD(params, momentum=0.9, **kw),
        }
        return factories[p["optimizer"]](model.parameters(), lr=p["lr"], weight_decay=p["weight_decay"])

    def build_scheduler(self, optimizer: torch.optim.Optimizer, total_steps: int):
        """Linear warmup over ``warmup_ratio`` of the steps, then linear decay."""
        from transformers import get_linear_schedule_with_warmup

        warmup = int(float(self.params["warmup_ratio"]) * total_steps)
        return get_linear_schedule_with_warmup(optimizer, warmup, max(total_steps, 1))

    def training_loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """Mean next-token cross-entropy of a batch of blocks."""
        (ids,) = batch
        return model(input_ids=ids, labels=ids).loss

    def evaluation_sums(self, model: nn.Module, batch: Any) -> dict[str, float]:
        """Summed cross-entropy over the predicted tokens, and their number."""
        (ids,) = batch
        predicted = ids.numel() - ids.size(0)  # the first token of a block is not predicted
        loss = model(input_ids=ids, labels=ids).loss.item()
        return {"loss_sum": loss * predicted, "tokens": predicted}

    def metrics_from_sums(self, sums: Mapping[str, float]) -> dict[str, float]:
        """Mean validation loss per token and its perplexity."""
        loss = sums["loss_sum"] / sums["tokens"] if sums["tokens"] else math.nan
        perplexity = math.exp(loss) if loss < 700 else math.inf  # exp overflows past ~709
        return {"loss": loss, "perplexity": perplexity}

    def info(self) -> dict[str, Any]:
        """Corpus and vocabulary size."""
        if self._tokens is None:
            return {}
        return {"corpus_tokens": int(len(self._tokens.ids)), "vocab_size": self._tokens.vocab_size}


def _with_causal_lm_loss(model: nn.Module) -> nn.Module:
    # transformers 5 leaves model.loss_type None and then warns "loss_type=None ... is
    # unrecognized" before falling back to the causal-LM loss; name that loss explicitly.
    if getattr(model, "loss_type", None) is None:
        model.loss_type = "ForCausalLM"
    return model


def _local_dir(value: Any, setting: str) -> Path:
    path = Path(str(value)).expanduser()
    if not path.exists():
        raise SettingsError(
            f"task setting {setting!r}: {value!r} is not a local path (nothing "
            f"is downloaded: give a directory or file on the worker)"
        )
    return path


def _read_corpus(dataset: Any) -> list[str]:
    if dataset is None:
        return _stdlib_docstrings()
    path = _local_dir(dataset, "dataset")
    files = (
        [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in CORPUS_SUFFIXES)
    )
    documents = [text for text in (f.read_text(encoding="utf-8", errors="replace") for f in files) if text.strip()]
    if not documents:
        raise SettingsError(f"task setting 'dataset': no text in {path} (reads {', '.join(CORPUS_SUFFIXES)} files)")
    return documents


def _stdlib_docstrings() -> list[str]:
    documents = []
    for name in STDLIB_CORPUS_MODULES:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            continue  # e.g. an interpreter built without the module's source
        tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                docstring = ast.get_docstring(node)
                if docstring:
                    documents.append(docstring)
    if not documents:
        raise SettingsError("no standard-library sources found for the default corpus; set the task setting 'dataset'")
    return documents


def _has_tokenizer(model_dir: Path) -> bool:
    return any((model_dir / name).exists() for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json"))


def _pretrained_tokens(model_dir: Path, documents: list[str]) -> _Tokens:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    eos = tokenizer.eos_token_id
    if eos is None:
        raise SettingsError(f"the tokenizer in {model_dir} has no end-of-text token")
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else eos
    encoded = tokenizer(documents, add_special_tokens=False)["input_ids"]
    return _Tokens(_join(encoded, eos), len(tokenizer), bos, eos)


def _trained_tokens(documents: list[str], vocab_size: int, cache_dir: Path) -> _Tokens:
    """Train (or reuse) a byte-level BPE for this corpus and encode the corpus with it.

    Several ranks and trials start at once on the same corpus, so the first one trains under
    a file lock and publishes the tokenizer and token ids by atomic rename; the others wait and
    load them.
    """
    from tokenizers import Tokenizer

    digest = hashlib.sha256(f"{_TOKENIZER_RECIPE}\0{vocab_size}\0".encode())
    for document in documents:
        digest.update(document.encode("utf-8", "replace") + b"\0")
    entry = Path(cache_dir).expanduser() / "tokenizers" / digest.hexdigest()[:24]
    entry.parent.mkdir(parents=True, exist_ok=True)
    tokenizer_file, ids_file = entry / "tokenizer.json", entry / "ids.npy"
    with open(entry.parent / f"{entry.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (tokenizer_file.exists() and ids_file.exists()):
            tokenizer = _train_bpe(documents, vocab_size)
            eos = tokenizer.token_to_id(END_OF_TEXT)
            ids = _join([e.ids for e in tokenizer.encode_batch(documents)], eos)
            staging = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
            tokenizer.save(str(staging / "tokenizer.json"))
            np.save(staging / "ids.npy", ids)
            os.replace(staging, entry)  # atomic: readers see all files or none
            log.info("trained a %d-token BPE tokenizer, cached in %s", tokenizer.get_vocab_size(), entry)
        else:
            log.info("reusing the cached tokenizer %s", entry)
    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    eos = tokenizer.token_to_id(END_OF_TEXT)
    if eos is None:  # not a tokenizer _train_bpe made (it adds the token)
        raise ValueError(f"{tokenizer_file} has no {END_OF_TEXT} token")
    return _Tokens(np.load(ids_file), tokenizer.get_vocab_size(), eos, eos)


def _train_bpe(documents: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(documents, trainer)
    return tokenizer


def _join(encoded: list[list[int]], eos: int) -> np.ndarray:
    """One stream of ids with an end-of-text token after every document."""
    stream: list[int] = []
    for ids in encoded:
        stream.extend(ids)
        stream.append(eos)
    return np.asarray(stream, dtype=np.int32)


def _checkpoint_vocab_size(model_dir: Path) -> int | None:
    """The vocabulary size in a checkpoint's config.json, without loading the model."""
    try:
        return int(json.loads((Path(model_dir) / "config.json").read_text())["vocab_size"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
