"""The SDK as a user calls it: AutoTrainer(...).hyperopt(...)."""

import pytest
from optuna.trial import TrialState

from openautoglm import AutoTrainer


def test_autotrainer_tunes_digits_and_returns_best(tmp_path):
    trainer = AutoTrainer(
        model_name="mlp",
        dataset="digits",
        max_trials=3,
        epochs=3,
        seed=1,
        workdir=tmp_path,
        parallelism=1,
        search_space=[
            {"name": "lr", "type": "float", "low": 1e-3, "high": 0.05, "log": True},
            {"name": "hidden", "type": "int", "low": 32, "high": 64, "step": 32},
        ],
    )
    result = trainer.hyperopt(objective="loss", direction="minimize", timeout=600, progress=False)
    trials = result.study.get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(trials) == 3 and complete
    best = min(complete, key=lambda t: t.value)
    assert result.best_value == best.value
    assert result.best_params == best.params
    assert result.tuning_job["kind"] == "TuningJob"
    # the same trainer again resumes its study rather than starting over
    again = trainer.hyperopt(objective="loss", direction="minimize", timeout=600, progress=False)
    assert len(again.study.get_trials()) == 3 and again.best_value == result.best_value


def test_autotrainer_text_lm_from_a_local_checkpoint_and_corpus(tmp_path):
    transformers = pytest.importorskip("transformers")
    ckpt = tmp_path / "ckpt"
    transformers.GPT2LMHeadModel(
        transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=600, n_positions=64)
    ).save_pretrained(ckpt)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(
        "\n".join(f"the trial number {i} trains a tiny language model on local text." for i in range(400))
    )
    trainer = AutoTrainer(
        model_name=str(ckpt),
        dataset=str(corpus),
        max_trials=2,
        epochs=1,
        workdir=tmp_path,
        task_settings={"steps_per_epoch": 3, "block_size": 32, "eval_blocks": 8},
        search_space=[{"name": "lr", "type": "float", "low": 1e-4, "high": 1e-2, "log": True}],
    )
    result = trainer.hyperopt(objective="loss", direction="minimize", timeout=600, progress=False)
    assert result.best_value is not None and result.best_value > 0
    assert set(result.best_params) == {"lr"}


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"model_name": "gpt-4o", "dataset": "digits"}, "never downloaded"),
        ({"model_name": "mlp", "dataset": "imagenet"}, "neither a built-in data set"),
        ({"model_name": "tiny-gpt2", "dataset": "digits"}, "is for the text-lm task"),
    ],
)
def test_autotrainer_rejects_what_it_cannot_run_offline(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AutoTrainer(**kwargs)


def test_autotrainer_rejects_unknown_objective(tmp_path):
    with pytest.raises(ValueError, match="not a metric of the digits task"):
        AutoTrainer(model_name="mlp", dataset="digits", workdir=tmp_path).hyperopt(objective="bleu")
