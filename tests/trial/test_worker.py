"""Single-worker trials through the full launcher environment (size 1 hosts its own rendezvous)."""

from __future__ import annotations

import math
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.horovod


def test_shell_metacharacters_arrive_literally(launch, tmp_path):
    canary = Path(f"/tmp/pwned-{uuid.uuid4().hex}")
    tag = f"$(touch {canary}); rm -rf ~ `touch {canary}`"
    trial = launch(1, epochs=1, params={"tag": tag, "optimizer": "sgd", "lr": 0.05})
    assert trial.wait() == [0], trial.logs()
    result = trial.results()[0]
    assert result["status"] == "completed"
    assert result["info"]["tag"] == tag
    assert not canary.exists()
    assert (tmp_path / "home").is_dir()


def test_unknown_hyperparameter_fails_naming_it(launch):
    trial = launch(1, params={"lr": 0.01, "learning_rate_typo": 3})
    assert trial.wait() == [1], trial.logs()
    result = trial.results()[0]
    assert result["status"] == "failed"
    assert "unknown hyperparameter 'learning_rate_typo'" in result["reason"]
    assert "digits" in result["reason"]


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"optimizer": "rmsprop"}, "'optimizer' must be one of adam, sgd"),
        ({"batch_size": "64"}, "'batch_size' must be of type int"),
        ({"layers": 4}, "'layers' must be <= 3"),
    ],
)
def test_invalid_hyperparameter_values_fail_clearly(launch, params, words):
    trial = launch(1, params=params)
    assert trial.wait() == [1], trial.logs()
    assert words in trial.results()[0]["reason"]


def test_patience_ends_the_trial_as_completed(launch):
    # lr 0 never improves: patience 2 stops after epoch 3 (1 sets the best, 2 and 3 don't improve).
    trial = launch(
        1,
        epochs=20,
        params={"optimizer": "sgd", "lr": 0.0, "momentum": 0.0},
        stopping={"patience": 2, "minDelta": 0.001},
    )
    assert trial.wait() == [0], trial.logs()
    result = trial.results()[0]
    assert result["status"] == "completed"
    assert result["reason"].startswith("early stopping: no improvement in 2 epochs")
    assert result["epochs"] == 3


def test_text_lm_trains_offline(launch):
    trial = launch(
        1,
        task="text-lm",
        epochs=2,
        settings={"steps_per_epoch": 4, "eval_blocks": 16},
        params={"batch_size": 8, "lr": 2e-3},
    )
    assert trial.wait(timeout=120) == [0], trial.logs()
    result = trial.results()[0]
    assert result["status"] == "completed", result
    loss, perplexity = result["metrics"]["loss"], result["metrics"]["perplexity"]
    assert math.isfinite(loss) and math.isfinite(perplexity)
    assert perplexity == pytest.approx(math.exp(loss))
    assert result["info"]["vocab_size"] <= 2000
    assert result["best"]["loss"] == pytest.approx(min(result["history"]["loss"]))


def test_text_lm_from_pretrained_directory(launch, tmp_path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    text = "\n".join(f"line {i}: the quick brown fox jumps over the lazy dog {i % 7}" for i in range(400))
    (corpus / "a.txt").write_text(text)
    (corpus / "b.md").write_text(text.upper())
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(
        [text],
        trainers.BpeTrainer(
            vocab_size=300,
            special_tokens=["<|endoftext|>"],
            show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    model_dir = tmp_path / "model"
    PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="<|endoftext|>", bos_token="<|endoftext|>"
    ).save_pretrained(model_dir)
    GPT2LMHeadModel(
        GPT2Config(vocab_size=300, n_positions=64, n_layer=1, n_embd=32, n_head=2, bos_token_id=0, eos_token_id=0)
    ).save_pretrained(model_dir)

    trial = launch(
        1,
        task="text-lm",
        epochs=1,
        settings={"model": str(model_dir), "dataset": str(corpus), "block_size": 64, "steps_per_epoch": 3},
        params={"batch_size": 4},
    )
    assert trial.wait(timeout=120) == [0], trial.logs()
    result = trial.results()[0]
    assert result["status"] == "completed", result
    assert math.isfinite(result["metrics"]["loss"])
    assert result["info"]["vocab_size"] == 300
