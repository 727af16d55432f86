"""Training the language model: one transformers `Trainer` run per stage.

Stages chain through one LoRA adapter: each stage loads the base model, frozen, with the
previous stage's adapter (trainable), and saves the adapter it leaves. The base is never
merged, so every stage is a small file and the final model is base + one adapter, which
is what `rcahook.llm.local` loads. With --full, each stage saves full weights instead and
the next stage starts from them.

torch, transformers and peft are imported inside the functions that use them. Under
`accelerate launch` / `torchrun` (WORLD_SIZE > 1) the Trainer runs DDP; everything that
writes files outside the Trainer runs on the main process only (`is_main`).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from rcahook.errors import BadInputError, ModelUnavailableError
from rcahook.llm.embedded import EMBEDDED, embedded_model_dir, offline, quiet_progress
from rcahook.llm.local import ADAPTER_CONFIG, LocalBackend
from rcahook.llm.prompt import Prompt
from rcahook.train.card import CARD_FILE, LoraConfig, StageConfig, StageResult

FINAL = "final"  # in a stage directory: the weights the stage leaves
STAGE_DONE = "stage.json"  # in a stage directory: written last, so present == complete
IGNORE = -100  # label of tokens that carry no loss (the prompt, padding)
# In a stage's final/ but not part of the model: our per-stage card, the Trainer's pickled
# arguments and the adapter's template README (MODEL_CARD.md describes the model).
SKIP_FINAL = {CARD_FILE, "training_args.bin", "README.md"}


# --- processes -----------------------------------------------------------------------------

def _state():
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import PartialState

    # without cpu=True a CPU-only torchrun is not seen as distributed (every rank would be "main")
    return PartialState(cpu=not cuda_available())


def is_main() -> bool:
    state = _state()
    return state is None or state.is_main_process


def barrier() -> None:
    state = _state()
    if state is not None:
        state.wait_for_everyone()


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """The main process runs the block first (and writes); the others then find its files."""
    state = _state()
    if state is None:
        yield
        return
    with state.main_process_first():
        yield


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


# --- the base model ------------------------------------------------------------------------

@dataclass(frozen=True)
class BaseModel:
    path: Path  # a Hugging Face model directory
    card: str  # what rcahook_model.json records: "embedded" or the absolute path
    name: str


def resolve_base(base: str | None) -> BaseModel:
    if base in (None, "", "embedded", EMBEDDED):
        return BaseModel(embedded_model_dir(), "embedded", EMBEDDED)
    path = Path(base).expanduser().resolve()
    if not (path / "config.json").is_file():
        hint = (" (it is an adapter: train from its base model with --base)"
                if (path / ADAPTER_CONFIG).is_file() else "")
        raise ModelUnavailableError(f"--base {base}: expected a Hugging Face causal-LM directory with config.json"
                                    f"{hint}; omit --base for the embedded {EMBEDDED}")
    return BaseModel(path, str(path), path.name)


def load_tokenizer(path: Path):
    with quiet_progress():
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # padding carries no loss; any id will do
    return tokenizer


def model_dirs(model: str | None) -> tuple[Path, Path]:
    """(tokenizer dir, config dir) of --base: a model dir, or an rcahook adapter dir and its base."""
    if model in (None, "", "embedded", EMBEDDED):
        path = embedded_model_dir()
        return path, path
    path = Path(model).expanduser()
    if (path / "config.json").is_file():
        return path, path
    if (path / CARD_FILE).is_file() and (path / ADAPTER_CONFIG).is_file():
        base = resolve_base(json.loads((path / CARD_FILE).read_text()).get("base")).path
        return (path if (path / "tokenizer_config.json").is_file() else base), base
    raise ModelUnavailableError(f"--base {model}: expected a Hugging Face model directory (config.json) or an "
                                f"`rcahook train` output ({CARD_FILE} + adapter); omit it for the embedded model")


def max_length(path: Path) -> int:
    config = json.loads((path / "config.json").read_text())
    return int(config.get("max_position_embeddings") or 2048)


# --- examples ------------------------------------------------------------------------------

class PromptEncoder(LocalBackend):
    """LocalBackend's own prompt encoding without a model: training sees the exact token
    sequence the rankers send at inference (chat template, control-token sanitising)."""

    def __init__(self, tokenizer):  # not super().__init__: that needs a model, encoding does not
        self.tokenizer = tokenizer
        self._chat = bool(getattr(tokenizer, "chat_template", None))
        self._system_role = True

    def encode_messages(self, messages: Sequence[dict]) -> tuple[list[int], list[int]]:
        """(prompt ids, prompt + answer ids) for a generic conversation ending with the answer."""
        if self._chat:
            def ids(msgs, **kw):
                out = self.tokenizer.apply_chat_template(list(msgs), tokenize=True, **kw)
                return list(out["input_ids"] if hasattr(out, "keys") else out)
            return ids(messages[:-1], add_generation_prompt=True), ids(messages)
        head = "\n\n".join(m["content"] for m in messages[:-1]) + "\n\n"
        prefix = self.tokenizer(head)["input_ids"]
        full = self.tokenizer(head + messages[-1]["content"])["input_ids"] + [self.tokenizer.eos_token_id]
        return prefix, full


def encode_sft(rows: Sequence[dict], tokenizer, *, limit: int) -> tuple[list[dict], int]:
    """{input_ids, labels} per row, loss on the answer only; rows longer than `limit` are skipped."""
    enc = PromptEncoder(tokenizer)
    eos = tokenizer.eos_token_id
    out, skipped = [], 0
    for row in rows:
        msgs, meta = row["messages"], row.get("meta") or {}
        prefix_text = meta.get("answer_prefix")
        if (prefix_text and [m["role"] for m in msgs] == ["system", "user", "assistant"]
                and msgs[2]["content"].startswith(prefix_text)):
            prompt = Prompt(system=msgs[0]["content"], user=msgs[1]["content"], answer_prefix=prefix_text,
                            labels=(), keys=())
            prefix = enc.encode(prompt)
            full = enc.encode(prompt, msgs[2]["content"][len(prefix_text):]) + [eos]  # the answer ends the turn
        else:
            prefix, full = enc.encode_messages(msgs)
        n = 0
        while n < min(len(prefix), len(full)) and prefix[n] == full[n]:
            n += 1
        if len(full) > limit or n >= len(full):
            skipped += 1
            continue
        out.append({"input_ids": full, "labels": [IGNORE] * n + full[n:]})
    return out, skipped


def encode_cpt(rows: Sequence[dict], *, limit: int) -> list[dict]:
    return [{"input_ids": r["input_ids"][:limit], "labels": r["input_ids"][:limit]} for r in rows]


class Collator:
    """Right-pads a batch; padding gets label IGNORE and attention 0."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, batch: list[dict]) -> dict:
        import torch

        width = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)  # (B, T)
        labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)  # (B, T)
        mask = torch.zeros((len(batch), width), dtype=torch.long)  # (B, T)
        for i, b in enumerate(batch):
            n = len(b["input_ids"])
            ids[i, :n] = torch.tensor(b["input_ids"])
            labels[i, :n] = torch.tensor(b["labels"])
            mask[i, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}


# --- one stage -----------------------------------------------------------------------------

def _load_model(base: BaseModel, init: Path | None, lora: LoraConfig | None, *, cuda: bool):
    """The model a stage trains: base + (previous or fresh) LoRA adapter, or full weights."""
    with quiet_progress():
        import torch
        from transformers import AutoModelForCausalLM

        if lora is None:
            # full fine-tuning keeps float32 master weights; bf16 autocast does the compute on CUDA
            return AutoModelForCausalLM.from_pretrained(init or base.path, dtype=torch.float32,
                                                        local_files_only=True)
        import peft

        dtype = torch.bfloat16 if cuda else torch.float32
        model = AutoModelForCausalLM.from_pretrained(base.path, dtype=dtype, local_files_only=True)
        if init is not None:
            return peft.PeftModel.from_pretrained(model, init, is_trainable=True)
        config = peft.LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                 target_modules=lora.target_modules, task_type="CAUSAL_LM")
        return peft.get_peft_model(model, config)


def planned_steps(stage: StageConfig, n_examples: int) -> int:
    """Optimiser steps the stage will take (the Trainer's own arithmetic)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    per_epoch = max(1, math.ceil(n_examples / (stage.batch_size * world * stage.grad_accum)))
    return stage.max_steps or max(1, math.ceil(stage.epochs * per_epoch))


def _arguments(stage: StageConfig, out: Path, *, n_examples: int, seed: int, cuda: bool, progress: bool):
    from transformers import TrainingArguments

    fields = TrainingArguments.__dataclass_fields__
    kw: dict = dict(
        output_dir=str(out), per_device_train_batch_size=stage.batch_size,
        gradient_accumulation_steps=stage.grad_accum, num_train_epochs=stage.epochs,
        max_steps=stage.max_steps or -1, learning_rate=stage.learning_rate, lr_scheduler_type="cosine",
        logging_steps=1, logging_first_step=True, save_strategy="steps",
        # at least every tenth of the stage: an interrupted CPU run loses minutes, not hours
        save_steps=max(1, min(stage.save_steps, math.ceil(planned_steps(stage, n_examples) / 10))),
        save_total_limit=2, seed=seed, data_seed=seed, report_to="none", remove_unused_columns=False,
        dataloader_num_workers=0, use_cpu=not cuda, ddp_find_unused_parameters=False,
        disable_tqdm=not progress, log_level="warning",
    )
    # rounded down, so that a short run never spends its only steps at a learning rate of 0
    kw["warmup_steps"] = int(stage.warmup * planned_steps(stage, n_examples))
    if cuda:
        import torch

        kw["bf16"] = torch.cuda.is_bf16_supported()
        ckpt = "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"
        kw[ckpt] = True
        kw[f"{ckpt}_kwargs"] = {"use_reentrant": False}
    return TrainingArguments(**kw)


def _trainer_class():
    """Trainer whose loss computes logits only where a label is: an SFT example's prompt
    (~1800 tokens) needs no (T, vocab) logits for its ~15 answer tokens."""
    from transformers import Trainer

    class AnswerLossTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            import torch.nn.functional as F

            labels = inputs.pop("labels")  # (B, T)
            target = labels[:, 1:]  # (B, T-1): position t predicts token t+1
            keep = (target != IGNORE).any(dim=0).nonzero().squeeze(-1)  # (K,)
            outputs = model(**inputs, logits_to_keep=keep, use_cache=False)
            logits = outputs.logits.float()  # (B, K, vocab)
            y = target[:, keep]  # (B, K)
            total = F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=IGNORE, reduction="sum")
            if num_items_in_batch is not None:
                # normalised over the whole accumulated batch (all devices), as the Trainer's own loss
                loss = total / num_items_in_batch
                if getattr(self.args, "average_tokens_across_devices", False) and self.args.world_size > 1:
                    loss = loss * self.args.world_size  # DDP averages the gradients again
                self.loss_is_scaled_for_ga = True
            else:
                loss = total / (y != IGNORE).sum().clamp(min=1)
                self.loss_is_scaled_for_ga = False
            return (loss, outputs) if return_outputs else loss

    return AnswerLossTrainer


def stage_done(stage_dir: Path) -> StageResult | None:
    try:
        return StageResult.from_json(json.loads((stage_dir / STAGE_DONE).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def train_stage(stage: StageConfig, examples: list[dict], *, base: BaseModel, init: Path | None,
                lora: LoraConfig | None, stage_dir: Path, tokenizer, seed: int, skipped: int = 0,
                progress: bool = True, say: Callable[[str], None] = lambda m: None) -> StageResult:
    """Train one stage (resuming from its last checkpoint) and save what it leaves in stage_dir/final."""
    offline()
    from transformers import set_seed
    from transformers.trainer_utils import get_last_checkpoint

    if not examples:
        raise BadInputError(f"stage {stage.name}: no training examples; check the datasets "
                            f"(`rcahook train data`) or leave the stage out with --stages")
    cuda = cuda_available()
    set_seed(seed)  # before the adapter is created: its initialisation is random
    model = _load_model(base, init, lora, cuda=cuda)
    model.config.use_cache = False  # no KV cache while training (and none with checkpointing)
    stage_dir.mkdir(parents=True, exist_ok=True)
    args = _arguments(stage, stage_dir, n_examples=len(examples), seed=seed, cuda=cuda, progress=progress)
    trainer = _trainer_class()(model=model, args=args,
                      train_dataset=examples, data_collator=Collator(tokenizer.pad_token_id))
    if not progress:  # no terminal: one line per logged step on stderr, not the Trainer's dicts on stdout
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
        trainer.add_callback(_log_lines(stage.name, say))
    last = get_last_checkpoint(str(stage_dir)) if stage_dir.is_dir() else None
    if last and is_main():
        say(f"stage {stage.name}: resuming from {last}")
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=last)
    seconds = time.perf_counter() - started
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    result = StageResult(stage.name, len(examples), sum(len(e["input_ids"]) for e in examples),
                         trainer.state.global_step, round(seconds, 1), losses[0] if losses else None,
                         losses[-1] if losses else None, skipped, asdict(stage))
    final = stage_dir / FINAL
    trainer.save_model(str(final))  # the main process writes; an adapter only, for PEFT models
    if is_main():
        tokenizer.save_pretrained(final)
        # the stage's weights load on their own too (`train data --base`, investigate --model)
        (final / CARD_FILE).write_text(json.dumps(
            {"base": base.card, "adapter": lora is not None, "name": base.name, "stage": stage.name}) + "\n")
        (stage_dir / STAGE_DONE).write_text(json.dumps(result.to_json(), indent=1) + "\n")
    barrier()
    del trainer, model
    _free()
    return result


def _log_lines(name: str, say: Callable[[str], None]):
    """A TrainerCallback that reports each logged step as one line."""
    from transformers import TrainerCallback

    class LogLines(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs and state.is_world_process_zero:
                say(f"{name}: step {state.global_step}/{state.max_steps} loss {float(logs['loss']):.4f}")

    return LogLines()


def _free() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# --- the ranked dataset and the final artifacts ----------------------------------------------

def rank_examples(model: str | None, rows: Sequence[dict], *, progress=None) -> list[dict]:
    """Each SFT example again, answered by the model's own logprob order (root cause first).

    The order is by each label's log-probability less that label's mean over the whole set
    (`data.label_bias`): otherwise a small model's taste for a letter, not its reading of
    the changes, would fill the answer's places after the first (issue 15).
    """
    from rcahook.llm.backend import load_backend
    from rcahook.progress import Progress
    from rcahook.train.data import label_bias, ranked_row

    backend = load_backend(model)
    ours = [r for r in rows if (r.get("meta") or {}).get("labels") and (r.get("meta") or {}).get("answer_prefix")]
    scored = []
    progress = progress or Progress(enabled=False)
    with progress.task(f"ranking {len(ours)} examples with {backend.name}", total=len(ours)) as advance:
        for row in ours:
            meta, msgs = row["meta"], row["messages"]
            prompt = Prompt(system=msgs[0]["content"], user=msgs[1]["content"], answer_prefix=meta["answer_prefix"],
                            labels=tuple(meta["labels"]), keys=tuple(meta["keys"]))
            scored.append(backend.label_logprobs(prompt, prompt.labels))
            advance(1)
    name = backend.name
    del backend
    _free()
    bias = label_bias(scored)
    return [ranked_row(row, lp, model=name, bias=bias) for row, lp in zip(ours, scored, strict=True)]


def install_final(stage_dir: Path, output: Path) -> list[str]:
    """Put the last stage's weights and tokenizer at the top of the output directory."""
    final = stage_dir / FINAL
    if not final.is_dir():
        raise ModelUnavailableError(f"{final} is missing: the stage did not finish; rerun `rcahook train` "
                                    "with the same --output to resume it")
    names = []
    for path in sorted(final.iterdir()):
        if path.name in SKIP_FINAL or not path.is_file():
            continue
        target = output / path.name
        target.unlink(missing_ok=True)
        try:
            os.link(path, target)  # no second copy of (possibly 13 GB of) weights
        except OSError:
            shutil.copy2(path, target)
        names.append(path.name)
    return names
