"""Wire the checked cache, the model and the collator into the Trainer; train, evaluate, save."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import sys
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import SequentialSampler, Subset
from transformers import Trainer, TrainerCallback, TrainerState, TrainingArguments, set_seed

from common import leases, open_files
from common.check import tokenizer_difference
from common.cli import Terminated
from common.config import CacheArguments
from common.corpora import parse_named, read_corpora
from common.errors import UserError, words
from common.format import FormatError
from common.json_files import read_json
from common.manifest import Manifest, TokenizerIdentity
from common.rebuild import named_rebuild_command, rebuild_command
from common.run_dir import command_record
from common.tokenizer import LoadedTokenizer, TokenizerError, load_tokenizer
from train import checkpoints, provenance
from train.checkpoints import plan_start
from train.collator import EVAL_STREAM, TRAIN_STREAM, MlmCollator, RateSchedule
from train.config import MlmArguments, ModelArguments, RunArguments
from train.data import RunData, corpora_table, run_data
from train.model import ModelError, build_model
from train.model_card import ModelCard, facts_of
from train.order import Corpus, DataOrder
from train.preemption import SaveOnSignal, reap_workers_at_exit
from train.sampling import ORDER_RULE, Keyed, SampleSampler, epochs_done, global_batch, pad_share, steps_per_epoch
from train.throughput import Throughput


class MlmTrainer(Trainer):
    """The Trainer, fed ``(stream, key, ids)`` examples that the collator pads and masks in the DataLoader.

    Training reads ``(g, block)`` pairs from ``SampleSampler`` (train/sampling.py),
    evaluation plain block indices; each block's masks are a function of
    (``--seed``, stream, key) (train/collator.py), so nothing about masking
    is left to the training step, the global RNG or the number of processes.
    """

    def __init__(self, *args: Any, collator: MlmCollator, train_dataset: Any = None, eval_dataset: Any = None,
                 **kwargs: Any):
        if isinstance(eval_dataset, dict):  # one per corpus, each its own masks: eval_<name>_loss
            eval_dataset = {n: Keyed(ds, EVAL_STREAM + 2 * (k + 1)) for k, (n, ds) in enumerate(eval_dataset.items())}
        elif eval_dataset is not None:
            eval_dataset = Keyed(eval_dataset, EVAL_STREAM)
        super().__init__(*args, data_collator=collator,
                         train_dataset=Keyed(train_dataset, TRAIN_STREAM) if train_dataset is not None else None,
                         eval_dataset=eval_dataset, **kwargs)
        # nn.DataParallel (several GPUs, one process) would split the flat positions like a batch dimension
        collator.head_positions = getattr(self.model, "head_at_masked_positions_only", False) and self.args.n_gpu <= 1
        collator.seed = self.args.seed
        self.collator = collator
        self._staging: Path | None = None
        self.data_record: Any = None  # (checkpoint dir, step): writes what it trained on (train/provenance.py)
        self.card: ModelCard | None = None  # the model card, written with each checkpoint (rank 0)
        self.corpora: list[Corpus] | None = None  # None: the train dataset is one corpus
        self.weights: list[float] = [1.0]
        self.sample_start = 0  # the first sample this run trains on: a resumed run's first unseen one
        self.resumed_at = (0, 0)  # (step, samples trained before it) where this run starts: the epoch counts on
        self.args.ignore_data_skip = True  # the sampler starts there itself; the Trainer's skip would walk the samples
        self.add_callback(EpochCounter(self))
        self.speed = Throughput(self)  # tokens/s, MFU, time left, tokens seen in every training log
        self.add_callback(self.speed)

    def epoch_at(self, step: int) -> float:
        """The epoch logged and saved at optimizer step ``step``: of the samples trained by then (train/sampling.py)."""
        batch = global_batch(self.args)
        return epochs_done(provenance.samples_at(self.resumed_at, step, batch), len(self.train_dataset), batch)

    def data_order(self) -> DataOrder:
        """The run's data order (train/order.py), from ``--train_sampling_strategy``, the seed and the corpora."""
        corpora = self.corpora or [Corpus("train", self.train_dataset.lengths(), 0)]
        strategy = str(getattr(self.args.train_sampling_strategy, "value", self.args.train_sampling_strategy))
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return DataOrder(corpora, self.weights, strategy, seed, global_batch(self.args))

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        """``(g, block)`` pairs (train/sampling.py) from ``sample_start``. A private hook of the Trainer (no
        public one sets the sampler): tests/train/test_sampling.py fails if it stops being called."""
        return SampleSampler(self.data_order(), self.sample_start)

    def _load_rng_state(self, checkpoint: Any) -> None:
        """Deferred to the resumed epoch's first batch when the run stopped inside an epoch: the Trainer
        restores the RNG before it creates the epoch's DataLoader iterator, which draws a seed from the
        global RNG, a draw the uninterrupted run made at the epoch's start, long before the checkpoint
        (tests/train/test_preemption.py: the exact resume). At an epoch's end the uninterrupted run makes
        that draw after the checkpoint too (unless its workers persist): restored at once, as the Trainer does."""
        per_epoch = steps_per_epoch(len(self.train_dataset), global_batch(self.args))
        persistent = self.args.dataloader_persistent_workers and self.args.dataloader_num_workers > 0
        if self.state.global_step % per_epoch == 0 and not persistent:
            super()._load_rng_state(checkpoint)
        else:
            self._rng_checkpoint = checkpoint

    def get_batch_samples(self, epoch_iterator: Any, num_batches: int, device: Any) -> Any:
        out = super().get_batch_samples(epoch_iterator, num_batches, device)
        if getattr(self, "_rng_checkpoint", None) is not None:
            super()._load_rng_state(self._rng_checkpoint)
            self._rng_checkpoint = None
        return out

    def _get_eval_sampler(self, eval_dataset: Any) -> Any:
        """Evaluation in index order whatever ``--train_sampling_strategy`` says (the Trainer would group
        it by length too, reading lengths our dataset does not give it that way); None: accelerate shards."""
        return SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None

    def _get_output_dir(self, trial: Any) -> str:
        """Where the Trainer writes a checkpoint: the staging dir while one is saved (``_save_checkpoint``)."""
        return str(self._staging) if self._staging is not None else super()._get_output_dir(trial)

    def _save_checkpoint(self, model: torch.nn.Module, trial: Any) -> None:
        """The Trainer's save, made a commit (train/checkpoints.py): every rank writes into
        ``.partial-checkpoint-<step>/<name>``, then rank 0 renames it into place and rotates.
        A kill at any moment leaves the last complete checkpoint and no half one under a checkpoint's name."""
        run_dir = Path(super()._get_output_dir(trial))
        name = f"checkpoint-{self.state.global_step}"
        self._staging = run_dir / f"{checkpoints.PARTIAL}{name}"
        try:
            super()._save_checkpoint(model, trial)  # its own rotation runs inside the staging dir: nothing there
            best = self.state.best_model_checkpoint
            if best and best.startswith(f"{self._staging}{os.sep}"):  # it names the checkpoint where it will be
                self.state.best_model_checkpoint = str(run_dir / best[len(str(self._staging)) + 1:])
                if self.args.should_save:
                    self.state.save_to_json(str(self._staging / name / "trainer_state.json"))
            if self.args.should_save and self.data_record is not None:
                self.data_record(self._staging / name, self.state.global_step)
            if self.args.should_save and self.card is not None:
                self.card.checkpoint(self._staging / name)  # part of the commit
        finally:
            self._staging = None
        self.accelerator.wait_for_everyone()  # every rank's RNG state is in
        if self.args.should_save:
            checkpoints.commit(run_dir / f"{checkpoints.PARTIAL}{name}" / name, run_dir / name)
            (run_dir / f"{checkpoints.PARTIAL}{name}").rmdir()
            checkpoints.rotate(run_dir, self.args.save_total_limit, self.state.best_model_checkpoint)
            if self.card is not None:
                self.card.publish(run_dir / name, run_dir)
        self.accelerator.wait_for_everyone()

    def _issue_warnings_after_load(self, load_result: Any) -> None:
        """The Trainer's warning about keys missing from a resumed checkpoint, less the tied ones.

        A checkpoint omits the decoder weight and bias RoBERTa ties to the
        embeddings and the head's bias; transformers v5 lists them in
        ``all_tied_weights_keys``, but this check still reads the v4
        ``_keys_to_ignore_on_save``, so every resume warned of "missing keys"
        although the weights come back bit-identical (tests/train:
        test_a_resumed_run_...). A private hook: the test fails if it stops being called.
        """
        tied = set(getattr(self.model, "all_tied_weights_keys", None) or ())
        missing = [k for k in load_result.missing_keys if k not in tied]
        if len(missing) < len(load_result.missing_keys):
            self.model.tie_weights()
            load_result = load_result._replace(missing_keys=missing)
        super()._issue_warnings_after_load(load_result)

    def evaluate(self, eval_dataset: Any = None, ignore_keys: list[str] | None = None,
                 metric_key_prefix: str = "eval") -> dict[str, float]:
        """Each corpus's evaluation (``eval_<name>_loss``), and ``eval_loss``: their mean weighted by blocks,
        so --load_best_model_at_end and --metric_for_best_model loss work with named corpora too. The mean
        is logged as an entry of its own (the Trainer logs each corpus's), so the log history, and the final
        metrics taken from it when the last step evaluated (``last_evaluation``), hold it too."""
        sets = eval_dataset if eval_dataset is not None else self.eval_dataset
        metrics = super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        if isinstance(sets, dict) and f"{metric_key_prefix}_loss" not in metrics:
            sizes = {n: len(ds) for n, ds in sets.items() if f"{metric_key_prefix}_{n}_loss" in metrics}
            if sizes:
                loss = sum(metrics[f"{metric_key_prefix}_{n}_loss"] * k for n, k in sizes.items()) / sum(sizes.values())
                metrics[f"{metric_key_prefix}_loss"] = loss
                metrics[f"{metric_key_prefix}_perplexity"] = perplexity(loss)
                self.log({f"{metric_key_prefix}_loss": loss, f"{metric_key_prefix}_perplexity": perplexity(loss)})
        return metrics

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        for key in [k for k in logs if k.startswith("eval_") and k.endswith("_loss")]:  # eval_loss, eval_<corpus>_loss
            logs[f"{key[:-len('_loss')]}_perplexity"] = perplexity(logs[key])
        self.speed.add_to(logs, self.state)
        super().log(logs, start_time)


class EpochCounter(TrainerCallback):
    """Sets the Trainer's epoch at each step's end, before it is logged or saved, from the samples trained
    (``MlmTrainer.epoch_at``). The Trainer counts it from the start of the epoch it resumes in, as if it
    had walked that epoch's trained batches again (its skip, which we turn off: the sampler starts at the
    first unseen sample), so a resumed run's epoch went back (tests/train/test_mixture.py)."""

    def __init__(self, trainer: MlmTrainer):
        self.trainer = trainer

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: Any, **kwargs: Any) -> None:
        state.epoch = self.trainer.epoch_at(state.global_step)


def train(cfg: CacheArguments, margs: ModelArguments, mlm: MlmArguments, targs: TrainingArguments,
          run: RunArguments | None = None, check_inputs: bool = True, callbacks: list[Any] | None = None,
          command: list[str] | None = None) -> tuple[dict[str, Any], Trainer]:
    """Train, evaluate and save; the final metrics and the trainer (its state and model). Returns
    ({}, None) without training when --output_dir holds a run that already reached this run's end.

    ``check_inputs``: compare the cache with its text as ``run.input_check``
    says (run_mlm.py skips it: it has just preprocessed). ``command``: the program and argv that started
    this process, for the model card and the resume command (common/run_dir.py).
    """
    run = run or RunArguments()
    reap_workers_at_exit()
    raised = open_files.raise_soft_limit()  # only a help: the cache is read within any limit
    if raised and targs.process_index == 0:
        print(raised, file=sys.stderr)
    try:
        loaded = load_tokenizer(cfg.tokenizer_name_or_path, cfg.tokenizer_type, cfg.tokenizer_settings)
    except TokenizerError as e:
        raise UserError(str(e)) from None
    data = run_data(cfg, loaded, run.input_check if check_inputs else "skip", mlm.mixture, mlm.mixture_alpha, targs)
    with checkpoints.output_lock(targs.output_dir, hold=targs.process_index == 0):
        try:
            return _start(cfg, margs, mlm, targs, run, loaded, data, callbacks,
                          command_record(command[0], command[1:]) if command else None)
        except FormatError as e:  # a cache file damaged after the start-up check (a DataLoader worker's, raised again here)
            if not targs.disable_tqdm:
                print(file=sys.stderr)  # the progress bar's line is open: the error starts a line of its own
            raise UserError(f"{words(e)}; to rebuild what is damaged (from any directory): "
                            f"{damage_fix(cfg)}") from None


def damage_fix(cfg: CacheArguments) -> str:
    """The command that rewrites the damaged arrays of the cache (named or not), and only those."""
    names = read_corpora(cfg.datasets_cache_dir)
    if names is None:
        return f"{rebuild_command(cfg)} --verify_outputs"
    given = {flag: parse_named(getattr(cfg, flag), f"--{flag}") for flag in ("train_dir", "eval_dir")}
    return f"{named_rebuild_command(cfg, names, {k: v for k, v in given.items() if v})} --verify_outputs"


def _start(cfg: CacheArguments, margs: ModelArguments, mlm: MlmArguments, targs: TrainingArguments,
           run: RunArguments, loaded: LoadedTokenizer, data: RunData, callbacks: list[Any] | None,
           command: dict[str, Any] | None = None) -> tuple[dict[str, Any], Trainer]:
    """Resume, start or do nothing (train/checkpoints.py), holding the output dir's lock, then fit."""
    start = plan_start(targs.output_dir, targs.resume_from_checkpoint, run.overwrite_output_dir,
                       target_steps(targs, len(data.train)), may_delete=targs.process_index == 0)
    if start.done:
        print(f"note: {start.done}", file=sys.stderr)
        return {}, None
    with contextlib.ExitStack() as held:
        for home, manifests in data.homes:  # a preprocess rerun keeps what this job reads
            held.enter_context(leases.hold(home, manifests))
        return _fit(cfg, margs, mlm, targs, run, loaded, data, start, callbacks, command)


def model_label(margs: ModelArguments) -> str:
    """Where the model came from, for the card: --architecture's default is not the model --model_name_or_path loads."""
    if margs.model_name_or_path:
        return f"started from {Path(margs.model_name_or_path).absolute()}"
    return margs.config_name or margs.architecture


def _fit(cfg: CacheArguments, margs: ModelArguments, mlm: MlmArguments, targs: TrainingArguments, run: RunArguments,
         loaded: LoadedTokenizer, data: RunData, start: Any, callbacks: list[Any] | None,
         command: dict[str, Any] | None = None) -> tuple[dict[str, Any], Trainer]:
    """Build the model and the Trainer, train (or resume), evaluate and save: ``train`` past its checks."""
    identity, manifests, eval_set = loaded.identity, data.manifests, data.evaluation
    resume = start.resume
    batch = global_batch(targs)
    last_step = target_steps(targs, len(data.train))
    order = {"sampling": str(getattr(targs.train_sampling_strategy, "value", targs.train_sampling_strategy)),
             "seed": targs.seed, "data_seed": targs.data_seed, "global_batch": batch, "rule": ORDER_RULE,
             "masking": mlm.masking(last_step),
             **({"mixture": {n: round(w, 12) for n, w in data.mixture.items()}} if data.mixture else {})}
    recorded = provenance.identity(manifests, cfg.max_seq_length, cfg.datasets_type, order)
    history = provenance.check_resume(Path(resume), recorded, manifests, run.allow_data_change) if resume else []
    check_checkpoint_tokenizer(margs.model_name_or_path, identity)
    origin = provenance.started_from(margs.model_name_or_path)
    earlier = provenance.trained_length(origin)
    if earlier not in (None, cfg.max_seq_length) and targs.process_index == 0:
        print(f"note: {margs.model_name_or_path} was trained at --max_seq_length {earlier}; this run trains at "
              f"{cfg.max_seq_length}; provenance.json will name it", file=sys.stderr)
    check_checkpoint_tokenizer(resume, identity)
    set_seed(targs.seed)  # the model's initial weights too, not only what the Trainer draws later
    try:
        model = build_model(margs.architecture, margs.config_name, resume if start.reached else margs.model_name_or_path,
                            identity.vocab_size, identity.special_ids, cfg.max_seq_length)
    except (ModelError, OSError, ValueError) as e:  # a checkpoint or config that does not load is the user's to fix
        raise UserError(f"model: {e}") from None
    ids = identity.special_ids
    try:
        rates = mlm.schedule_rates()  # sample g's rate: its step's, g // the global batch (train/collator.py)
        schedule = RateSchedule(*rates, last_step, batch) if rates else None
        collator = MlmCollator(loaded.tokenizer, [ids.bos, ids.eos, ids.pad], ids.pad, mlm.mlm_probability,
                               max_width=cfg.max_seq_length, schedule=schedule, whole_word_mask=mlm.whole_word_mask)
    except ValueError as e:
        raise UserError(f"--tokenizer_name_or_path {cfg.tokenizer_name_or_path}: {e}") from None
    evaluated = eval_set
    if eval_set is not None and mlm.max_eval_samples is not None:  # the first N: the same each time
        first = lambda ds: Subset(ds, range(min(mlm.max_eval_samples, len(ds))))  # noqa: E731
        evaluated = {n: first(ds) for n, ds in eval_set.items()} if isinstance(eval_set, dict) else first(eval_set)
    stopper = SaveOnSignal() if run.save_on_signal else None
    starts_over = bool(targs.ignore_data_skip)  # the user's flag (the trainer below sets it for its own use)
    trainer = MlmTrainer(model=model, args=targs, collator=collator, train_dataset=data.train,
                         eval_dataset=evaluated, processing_class=loaded.tokenizer,
                         callbacks=[*(callbacks or []), *([stopper] if stopper else [])])
    trainer.speed.peak_tflops = run.peak_tflops
    base = provenance.resumed_at(Path(resume)) if resume else (0, 0)
    if resume and base == (0, 0):  # no record of the samples seen (an older checkpoint): its step at this batch
        step = trainer_state(resume).global_step
        base = (step, step * batch)
    trainer.resumed_at = base  # the epoch counts every sample trained, also under --ignore_data_skip
    if resume and starts_over:
        base = (base[0], 0)  # the stream starts over: samples are counted from here
    trainer.sample_start = base[1]
    trainer.corpora, trainer.weights = data.corpora, data.weights
    if data.corpora and trainer.is_world_process_zero():
        print(corpora_table(data, last_step * batch), file=sys.stderr)
    if resume and starts_over:
        print("note: --ignore_data_skip: the resumed run's data starts over at sample 0", file=sys.stderr)
    if resume:  # each corpus's tokens trained so far: the count goes on from the checkpoint's
        trainer.speed.restore(provenance.tokens_seen(Path(resume)))
    trainer.data_record = lambda checkpoint, step: provenance.write_record(checkpoint, recorded, history, manifests, step,
                                                                          batch, base, trainer.speed.corpus_tokens)
    if trainer.is_world_process_zero():
        trainer.card = ModelCard(facts_of(targs, model_label(margs), command, run.language,
                                          run.license, batch, lambda step: provenance.samples_at(base, step, batch),
                                          mlm.max_eval_samples))
        if not resume:
            trainer.card.start_over(Path(targs.output_dir))
    if trainer.is_world_process_zero():
        print(f"note: {padding_note(trainer)}", file=sys.stderr)
    if start.reached:  # killed after its last checkpoint, before the final save: that checkpoint is the end
        print(f"note: {resume} is at step {trainer_state(resume).global_step}, this run's last: its model is saved as "
              "the final one, no step trained", file=sys.stderr)
        trainer.state = trainer_state(resume)
        metrics: dict[str, Any] = {}
    else:
        with stopper or contextlib.nullcontext():
            metrics = dict(trainer.train(resume_from_checkpoint=resume).metrics)
        if stopper is not None and stopper.received:  # saved at the step the signal came: exit as the signal asks
            raise Terminated(stopper.received)
    evaluation = (last_evaluation(trainer) or trainer.evaluate()) if eval_set is not None else {}
    metrics.update(evaluation)
    trainer.save_model(targs.output_dir)
    if trainer.is_world_process_zero():
        provenance.write_manifests(Path(targs.output_dir), manifests)
        provenance.write_provenance(Path(targs.output_dir), recorded, history, trainer.state.global_step,
                                    origin, trainer.speed.corpus_tokens)
        if evaluation:
            trainer.save_metrics("eval", evaluation, combined=False)  # eval_results.json, as run_mlm.py writes it
        trainer.save_metrics("all", metrics)
        trainer.card.final(Path(targs.output_dir), dataclasses.asdict(trainer.state))
        trainer.save_state()  # trainer_state.json: the loss history beside the model
    return metrics, trainer


def perplexity(loss: float) -> float:
    return math.exp(min(loss, 50.0))  # capped: a diverged run's loss would overflow


def padding_note(trainer: MlmTrainer) -> str:
    """What share of the positions the first epoch computes is padding, in this run's order."""
    sampler = trainer._get_train_sampler()
    c, strategy = trainer.collator, sampler.order.strategy
    order = sampler.order.blocks(sampler.cursor, min(sampler.per_epoch, 1 << 20))  # a sample of the order is enough
    share = pad_share(sampler.lengths, order, trainer.args.per_device_train_batch_size, c.multiple, c.max_width)
    if strategy == "group_by_length":
        return (f"pad positions: {share:.1%} of those computed, with batches grouped by length (which costs model "
                "quality: README, Training quality)")
    return f"pad positions: {share:.1%} of those computed ({strategy} batches, widths a multiple of {c.multiple})"


def trainer_state(checkpoint: str) -> TrainerState:
    return TrainerState.load_from_json(str(Path(checkpoint) / "trainer_state.json"))


def target_steps(targs: TrainingArguments, n_train: int) -> int:
    """The optimizer step this run ends at: --max_steps, or the epochs' steps as the Trainer counts them."""
    if targs.max_steps > 0:
        return targs.max_steps
    return math.ceil(targs.num_train_epochs * steps_per_epoch(n_train, global_batch(targs)))


def last_evaluation(trainer: Trainer) -> dict[str, float] | None:
    """The metrics of an evaluation the Trainer ran at the very last step, so it is not run twice."""
    step, found = trainer.state.global_step, {}
    for entry in reversed(trainer.state.log_history):  # one entry per evaluated corpus
        if entry.get("step") == step and any(k.startswith("eval_") and k.endswith("_loss") for k in entry):
            found.update({k: v for k, v in entry.items() if k.startswith("eval_")})
    return found or None


def check_checkpoint_tokenizer(checkpoint: str | None, identity: TokenizerIdentity) -> None:
    """Refuse to continue a model with a tokenizer other than the one it was trained with.

    A model dir written by this tool holds ``manifests/train.json``; its
    parent's manifests serve a Trainer checkpoint dir.
    """
    if not checkpoint:
        return
    path = Path(checkpoint)
    if not path.is_dir():
        raise UserError(f"{checkpoint}: no such checkpoint directory (--model_name_or_path, --model_dir or "
                        "--resume_from_checkpoint)")
    for candidate in (path / "manifests" / "train.json", path.parent / "manifests" / "train.json",
                      *sorted(path.glob("manifests/*/train.json")), *sorted(path.parent.glob("manifests/*/train.json"))):
        if candidate.is_file():
            try:
                trained = Manifest.from_dict(read_json(candidate), source=str(candidate)).tokenizer
            except FormatError as e:
                raise UserError(f"{e}; it tells which tokenizer {checkpoint} was trained with: restore it "
                                "from the model's output dir") from None
            if trained.digest != identity.digest:
                raise UserError(f"{checkpoint} was trained with another tokenizer "
                                f"({trained.name_or_path}): {tokenizer_difference(trained, identity)}; "
                                "continue it with the tokenizer it was trained with")
            return
