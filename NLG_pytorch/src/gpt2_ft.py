"""Fine-tune GPT-2 with LoRA or JELLY adapters: microsoft/LoRA's examples/NLG/src/gpt2_ft.py, same flags.

    python NLG_pytorch/src/gpt2_ft.py --train_data common_data/e2e/encoded/train.jsonl \\
        --valid_data common_data/e2e/encoded/valid.jsonl --model_card gpt2.md \\
        --init_checkpoint gpt2-medium.safetensors \\
        --train_batch_size 8 --seq_len 512 --lr 0.0002 --weight_decay 0.01 --correct_bias --adam_beta2 0.999 \\
        --scheduler linear --warmup_step 500 --max_epoch 5 --save_interval 1000 --lora_dim 4 --lora_alpha 32 \\
        --lora_dropout 0.1 --label_smooth 0.1 --work_dir runs/e2e --random_seed 110
    python NLG_pytorch/src/gpt2_ft.py --config recipes/lora_paper/e2e_gpt2_md.yaml \\
        --init_checkpoint gpt2-medium.safetensors --work_dir runs/e2e    (the same recipe as a file, recipes/)
    python NLG_pytorch/src/gpt2_ft.py --config runs/e2e/run.json --work_dir runs/e2e_again    (repeats a run)
    torchrun --nproc_per_node 2 NLG_pytorch/src/gpt2_ft.py ...    (same flags; each rank takes its part of the batch)

Writes into --work_dir: model.N.safetensors + model.N.json (adapter-only unless --lora_dim 0),
trainer.N.safetensors (for --resume), metrics.jsonl and run.json; console lines as microsoft/LoRA's.
"""
import contextlib
import gc
import math
import sys
import time
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from common_data.training import batching, runlog
from common_data.model.adapter_math.adalora import AllocatorConfig
from common_data.model.checkpoint import (checkpoint_metadata, load_base_checkpoint, load_model_checkpoint,
                                    model_checkpoint_path, remove_interrupted_saves, save_model_checkpoint)
from common_data.cli.command import command, output_folder
from common_data.cli.ft_args import parse_args
from common_data.model.gpt2_config import AdapterConfig, config_for_card
from common_data.model.packing import pack
from common_data.training.resume import Progress, load_trainer_state, resume_point, save_trainer_state
from common_data.training.schedule import learning_rate
from common_data.training.tensorboard_log.curves import TrainingCurves
from common_data.training.adapter_start import adopt_adapter_checkpoint
from NLG_pytorch.src import adapters, run_info
from NLG_pytorch.src.distributed import init_ranks
from NLG_pytorch.src.dropout import use_shared_masks
from NLG_pytorch.src.model import GPT2LMModel
from NLG_pytorch.src.optimizer import adamw_from_args
from NLG_pytorch.src.rng_state import restore_rng_state, rng_state_arrays

EVAL_PRINT_EVERY = 100  # batches between "eval samples" lines, as microsoft/LoRA


class NonFiniteLoss(RuntimeError):
    pass


class Trainer:

    def __init__(self, args, ranks):
        self.setup_start = time.perf_counter()
        self.args, self.ranks = args, ranks
        self.device = ranks.device
        torch.manual_seed(args.random_seed + ranks.rank)
        self.build_model()
        self.load_data()
        self.max_step = args.max_step if args.max_step is not None else args.max_epoch * self.batches_per_epoch
        self.stop_step = min(self.max_step, args.stop_step or self.max_step)
        self.switch_step = args.switch_step
        if args.switch_epoch is not None:
            self.switch_step = math.ceil(args.switch_epoch * self.batches_per_epoch)
        self.allocator = self.rank_allocator()
        self.progress = Progress()
        self.last_saved_step = None
        self.metrics = None
        self.curves = None

    def build_model(self):
        args = self.args
        self.config = config_for_card(args.model_card)
        adapter_arrays = adopt_adapter_checkpoint(args, self.config)
        self.adapter_config = AdapterConfig(adapter=args.adapter, lora_dim=args.lora_dim,
                                            lora_alpha=float(args.lora_alpha), lora_dropout=args.lora_dropout,
                                            targets=args.lora_targets, jelly_mode=args.jelly_mode,
                                            use_rslora=args.use_rslora)
        base_arrays = load_base_checkpoint(args.init_checkpoint, self.config) if args.init_checkpoint else None
        self.model = GPT2LMModel(self.config, self.adapter_config, seed=args.random_seed, base_arrays=base_arrays)
        if adapter_arrays is not None:
            self.model.load_arrays(adapter_arrays, strict=False)
        self.shared_masks = None
        if args.dropout_rng == "shared":
            rows = batching.rank_rows(range(args.train_batch_size), self.ranks.rank, self.ranks.world_size)
            self.shared_masks = use_shared_masks(self.model, args.random_seed, rows)
        self.model.to(self.device)
        adapters.mark_only_adapter_as_trainable(self.model)
        self.wrapped = self.model
        self.optimizer = adamw_from_args(self.trainable(), args)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=args.fp16)

    def rank_allocator(self):
        """AdaLoRA's RankAllocator over the run's steps, or None."""
        args = self.args
        if args.adapter != "adalora":
            return None
        config = AllocatorConfig(target_r=args.target_r, tinit=args.tinit, tfinal=args.tfinal, delta_t=args.deltaT,
                                 beta1=args.adalora_beta1, beta2=args.adalora_beta2,
                                 orth_reg_weight=args.orth_reg_weight, total_step=self.max_step)
        return adapters.RankAllocator(self.model, config)

    def load_data(self):
        args = self.args
        self.train_examples = batching.make_examples(batching.load_encoded(args.train_data), args.seq_len)
        self.valid_examples = batching.make_examples(batching.load_encoded(args.valid_data), args.seq_len)
        self.train_batching = batching.BatchConfig(args.train_batch_size, args.seq_len, args.pad_multiple,
                                                   args.pad_to_seq_len)
        self.valid_batching = batching.BatchConfig(args.valid_batch_size, args.seq_len, args.pad_multiple,
                                                   args.pad_to_seq_len)
        self.batches_per_epoch = batching.num_train_batches(len(self.train_examples), args.train_batch_size)

    def wrap(self):
        """Send the forward pass through DDP (gradients averaged over ranks) when there are ranks."""
        if self.ranks.world_size > 1:
            self.wrapped = DistributedDataParallel(
                self.model, device_ids=[self.device] if self.device.type == "cuda" else None, broadcast_buffers=False)

    def unwrap(self):
        """Drop DDP: it holds the autograd accumulators of the parameters, which pin their shapes."""
        if self.wrapped is not self.model:
            self.wrapped = self.model
            gc.collect()

    def autocast(self):
        dtype = torch.float16 if self.args.fp16 else torch.bfloat16
        return torch.autocast(self.device.type, dtype=dtype, enabled=self.args.fp16 or self.args.bf16)

    def trainable(self):
        return {name: param for name, param in self.model.named_parameters() if param.requires_grad}

    # ---- resuming and checkpoints

    def resume(self):
        """Continue from --resume_from or the newest complete checkpoint in work_dir; returns its step or None."""
        point = resume_point(self.args)
        if point is None:
            return None
        folder, step = point
        arrays, metadata = load_trainer_state(folder, step, self.args)
        self.resumed_checkpoint = model_checkpoint_path(folder, step)
        model_arrays, model_metadata = load_model_checkpoint(self.resumed_checkpoint)
        if model_metadata["adapter_mode"] == "parallel" and adapters.adapter_mode(self.model) == "sequential":
            adapters.switch_to_parallel(self.model)
        self.model.load_arrays(model_arrays, strict=self.adapter_config.trains_everything)
        self.optimizer.load_state_arrays(self.trainable(), arrays, metadata["optimizer_steps"])
        self.scaler.load_state_dict(metadata["scaler"])
        restore_rng_state(arrays, self.ranks)
        if self.allocator is not None:
            self.allocator.load_state_arrays(arrays)
        self.progress = Progress.from_dict(metadata["progress"])
        return step

    def save(self):
        """model.N (+ .json) then trainer.N, written by rank 0; every rank takes part (RNG states)."""
        step = self.progress.step
        rng_arrays = rng_state_arrays(self.ranks)
        path = model_checkpoint_path(self.args.work_dir, step)
        if self.ranks.is_main:
            mode = adapters.adapter_mode(self.model)
            metadata = checkpoint_metadata(self.config, self.adapter_config, mode, step=step,
                                           epoch=step / self.batches_per_epoch, model_card=self.args.model_card)
            save_model_checkpoint(self.args.work_dir, step, self.model.to_arrays(adapter_only=True),
                                  metadata)
            optimizer_arrays, optimizer_steps = self.optimizer.state_arrays(self.trainable())
            if self.allocator is not None:
                optimizer_arrays.update(self.allocator.state_arrays())
            save_trainer_state(self.args.work_dir, step, {**optimizer_arrays, **rng_arrays}, self.progress,
                               optimizer_steps, self.args, scaler=self.scaler.state_dict(), adapter_mode=mode,
                               world_size=self.ranks.world_size, max_step=self.max_step)
            self.console(runlog.checkpoint_line(path))
            self.event("checkpoint", step=step, path=str(path))
        self.ranks.barrier()
        self.last_saved_step = step

    # ---- one batch

    def batch_loss(self, batch):
        """(objective to backpropagate on this rank, loss over the whole global batch, its loss tokens).

        The model's loss is a token mean over this rank's rows; rescaled by the tokens of the global batch
        (and by world_size, which DDP's gradient averaging divides out) every rank's gradient adds up to
        that of the token mean over the global batch, whatever the number of ranks.
        """
        tensors = [torch.from_numpy(array).to(self.device)
                   for array in (batch.input_ids, batch.targets, batch.loss_mask)]
        packing = None if self.args.pad_to_seq_len or self.args.full_logits else pack(batch.lengths, batch.width)
        if self.shared_masks is not None:
            self.shared_masks.lengths = None if packing is None else batch.lengths
        local_tokens = float(batch.loss_mask.sum())
        (global_tokens,) = self.ranks.all_sum(local_tokens)
        with self.autocast():
            _, loss = self.wrapped(tensors[0], targets=tensors[1], loss_mask=tensors[2],
                                   label_smooth=self.args.label_smooth, full_logits=self.args.full_logits,
                                   packing=packing)
        # the model divides by tokens + 1e-4, as microsoft/LoRA
        local_sum = loss.float() * (local_tokens + 1e-4)
        (global_sum,) = self.ranks.all_sum(local_sum.item())
        objective = local_sum * (self.ranks.world_size / (global_tokens + 1e-4))
        return objective, global_sum / (global_tokens + 1e-4), global_tokens

    def train_batch(self, batch):
        """Forward and backward on one batch; every --grad_acc batches an optimizer update."""
        update = (self.progress.step + 1) % self.args.grad_acc == 0
        if self.shared_masks is not None:
            self.shared_masks.step = self.progress.step + 1
        with contextlib.nullcontext() if update or self.wrapped is self.model else self.wrapped.no_sync():
            objective, loss, tokens = self.batch_loss(batch)
            if not math.isfinite(loss):
                raise NonFiniteLoss(f"the training loss is {loss} at step {self.progress.step + 1} "
                                    f"(epoch {self.progress.epoch}); stopping, the checkpoints written so far are kept")
            if self.allocator is not None:
                objective = objective + self.orthogonal_regularisation()
            self.scaler.scale(objective / self.args.grad_acc).backward()
        if update:
            # the update that ends step t runs at the rate the schedule gives after t - 1 steps
            self.optimizer.set_lr(self.lr_after(self.progress.step))
            if self.args.clip > 0 or self.allocator is not None:
                self.scaler.unscale_(self.optimizer)
            if self.args.clip > 0:
                torch.nn.utils.clip_grad_norm_(self.trainable().values(), self.args.clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if self.allocator is not None:
                self.allocate_ranks(self.progress.step + 1)
            self.optimizer.zero_grad(set_to_none=True)
        return loss, tokens

    def orthogonal_regularisation(self):
        """AdaLoRA's regulariser, weighted, as peft adds it to the loss (the logged loss is the LM loss)."""
        return self.allocator.budget.config.orth_reg_weight * adapters.orthogonal_regularisation(self.model)

    def gradients(self):
        return {name: param.grad for name, param in self.trainable().items()}

    def allocate_ranks(self, step):
        """AdaLoRA: scores and masks after the update that ends `step`, from its gradients."""
        budget = self.allocator.update_and_allocate(step, self.gradients())
        if budget is not None:
            ranks = self.allocator.budget.ranks()
            self.event("rank_allocation", step=step, budget=budget, ranks=ranks,
                       margin=self.allocator.budget.margin)
            if step == self.allocator.budget.config.final_step:
                self.console(f"AdaLoRA ranks fixed at step {step}: {sum(ranks.values())} of "
                             f"{self.allocator.budget.init_budget} triplets kept")

    def lr_after(self, step):
        args = self.args
        return learning_rate(step, args.lr, args.scheduler, args.warmup_step, self.max_step)

    # ---- evaluation

    def evaluate(self):
        """Mean over validation batches of each batch's token-mean loss (microsoft/LoRA's valid loss)."""
        self.model.eval()
        losses = []
        with torch.no_grad():
            batches = batching.eval_batches(self.valid_examples, self.valid_batching, self.ranks.rank,
                                            self.ranks.world_size)
            for index, batch in enumerate(batches):
                _, loss, _ = self.batch_loss(batch)
                losses.append(loss)
                if index % EVAL_PRINT_EVERY == 0:
                    self.console(runlog.eval_progress_line(index, loss))
        self.model.train()
        average = sum(losses) / len(losses)
        self.console(f"average loss {average}")
        return average

    def run_evaluation(self):
        start = time.perf_counter()
        with self.record.phase("eval"):
            valid_loss = self.evaluate()
        progress = self.progress
        valid_ppl = runlog.perplexity(valid_loss)
        progress.best_valid_ppl = min(progress.best_valid_ppl, valid_ppl)
        line = runlog.EvalLine(progress.step // self.args.eval_interval, progress.step, time.perf_counter() - start,
                               valid_loss, valid_ppl, progress.best_valid_ppl)
        for text in (runlog.RULE, str(line), runlog.RULE):
            self.console(text)
        self.event("eval", step=progress.step, valid_loss=valid_loss, valid_ppl=valid_ppl,
                   best_ppl=progress.best_valid_ppl)

    # ---- JELLY

    def switch_due(self):
        return (self.switch_step is not None and self.progress.step >= self.switch_step
                and self.progress.step % self.args.grad_acc == 0
                and adapters.adapter_mode(self.model) == "sequential")

    def switch(self):
        """seq2par: A <- A W (same outputs), then fresh optimizer moments for the adapters."""
        self.unwrap()
        self.optimizer.reset_state(adapters.switch_to_parallel(self.model))
        self.wrap()
        self.console(str(runlog.AdapterLine(self.args.adapter, "parallel", self.progress.step, "sequential")))
        self.event("switch", step=self.progress.step, adapter_mode="parallel", previous_mode="sequential")

    # ---- the run

    def console(self, line):
        if self.ranks.is_main:
            tqdm.write(line, file=sys.stdout)

    def event(self, name, **fields):
        if self.metrics is not None:
            self.metrics.write(name, **fields)
        if self.curves is not None:
            self.curves.record(name, **fields)

    def log_training(self):
        progress = self.progress
        average = progress.interval_loss_sum / progress.interval_batches
        line = runlog.TrainLine(progress.epoch, progress.step, progress.batches_done, self.lr_after(progress.step),
                                progress.interval_seconds * 1000 / progress.interval_batches,
                                progress.last_loss, average, runlog.perplexity(average))
        self.console(str(line))
        self.event("train", step=line.step, epoch=line.epoch, lr=line.lr, loss=line.loss, avg_loss=line.avg_loss,
                   ppl=line.ppl, ms_per_batch=line.ms_per_batch, tokens=progress.interval_tokens,
                   tokens_per_s=progress.interval_tokens / progress.interval_seconds,
                   peak_memory_bytes=self.peak_memory()["bytes"],
                   adapter_mode=adapters.adapter_mode(self.model))
        progress.reset_interval()

    def train(self, bar):
        args, progress = self.args, self.progress
        while progress.step < self.stop_step and (args.max_epoch is None or progress.epoch <= args.max_epoch):
            if progress.batches_done == 0:
                self.console(runlog.epoch_start_line(progress.epoch))
                progress.reset_interval()
            batches = batching.train_batches(self.train_examples, self.train_batching, args.random_seed,
                                             progress.epoch, progress.batches_done, self.ranks.rank,
                                             self.ranks.world_size)
            for batch in batches:
                if self.switch_due():
                    self.switch()
                start = time.perf_counter()
                loss, tokens = self.train_batch(batch)
                progress.step += 1
                progress.batches_done += 1
                progress.add_loss(loss, tokens, time.perf_counter() - start)
                self.event("step", step=progress.step, loss=loss)
                bar.update()
                if progress.step % args.log_interval == 0:
                    self.log_training()
                    bar.set_postfix(loss=f"{loss:.3f}")
                epoch_done = progress.batches_done == self.batches_per_epoch
                if epoch_done:
                    progress.epoch += 1
                    progress.batches_done = 0
                # evaluate before saving, so that the checkpoint knows the best validation perplexity
                if progress.step % args.eval_interval == 0:
                    self.run_evaluation()
                if progress.step % args.save_interval == 0 or (epoch_done and progress.step % args.grad_acc == 0):
                    with self.record.phase("save"):
                        self.save()
                if epoch_done or progress.step >= self.stop_step:
                    break
        if self.last_saved_step != progress.step:
            with self.record.phase("save"):
                self.save()

    def peak_memory(self):
        return run_info.peak_memory(self.device)

    def open_records(self, resumed_from):
        """run.json (rank 0 keeps it up to date) and metrics.jsonl (rank 0 writes it)."""
        args = self.args
        self.record = runlog.RunRecord(Path(args.work_dir) / "run.json", vars(args), run_info.framework_versions(),
                                       run_info.device_name(self.device), args.random_seed, resumed_from)
        self.record.add_time("setup", time.perf_counter() - self.setup_start)
        if self.ranks.is_main:
            self.metrics = runlog.MetricsLog(Path(args.work_dir) / "metrics.jsonl", resumed_from)
            if args.tensorboard:
                self.curves = TrainingCurves(args.tensorboard)
            self.write_record("running")

    def write_record(self, status):
        self.record.write(status, self.peak_memory(), world_size=self.ranks.world_size, max_step=self.max_step,
                          stop_step=self.stop_step, batches_per_epoch=self.batches_per_epoch,
                          final_step=self.progress.step,
                          trainable_parameters=sum(math.prod(param.shape) for param in self.trainable().values()))

    def run(self):
        """Train to the end; returns the process exit status (1 after a non-finite loss)."""
        args = self.args
        output_folder(args.work_dir)
        remove_interrupted_saves(args.work_dir)
        resumed_from = self.resume()
        self.wrap()
        self.open_records(resumed_from)
        status = "failed"
        try:
            if resumed_from is not None:
                self.console(f"resuming from {self.resumed_checkpoint}")
            mode = adapters.adapter_mode(self.model)
            adapter = "none" if self.adapter_config.trains_everything else args.adapter
            self.console(str(runlog.AdapterLine(adapter, mode, self.progress.step)))
            self.event("start", step=self.progress.step, adapter_mode=mode, resumed=resumed_from is not None)
            if args.eval_at_start and self.progress.step == 0:
                self.run_evaluation()
            with tqdm(total=self.stop_step, initial=self.progress.step, desc="train", unit="step",
                      disable=not self.ranks.is_main, dynamic_ncols=True) as bar, self.record.phase("train"):
                self.train(bar)
            self.console(runlog.RULE)
            self.console("End of training")
            status = "finished"
            return 0
        except NonFiniteLoss as error:
            status = f"stopped: {error}"
            if self.ranks.is_main:
                print(f"gpt2_ft.py: {error}", file=sys.stderr)
            return 1
        finally:
            if self.ranks.is_main:
                self.write_record(status)
                self.event("end", step=self.progress.step, status=status)
                self.metrics.close()
                if self.curves is not None:
                    self.curves.close()


@command("gpt2_ft.py")
def main(argv=None):
    args = parse_args(argv)
    ranks = init_ranks()
    try:
        return Trainer(args, ranks).run()
    finally:
        ranks.close()


if __name__ == "__main__":
    sys.exit(main())
