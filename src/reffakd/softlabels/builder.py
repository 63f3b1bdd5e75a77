"""Build soft labels end to end: train the autoencoder, embed, class similarity, calibrate, save.

Every stage is measured (wall time, FLOPs, peak memory) so the cost of the soft targets can be set
beside the cost of a teacher. The autoencoder trains through the one training loop
(``engine.fit``), so a build stopped by SIGINT/SIGTERM resumes from its checkpoint in the output
folder to the same autoencoder and soft labels, bit for bit, as a build never stopped: the later
stages start from the last epoch's autoencoder and the random states the checkpoint restored.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from ..data import DataSplits, Split, make_batches, materialize, split_fingerprint
from ..data.image_folder import check_unlabelled_apart, decoded_unlabelled
from ..engine import FitBatches, OptimConfig, RunFiles, SpeedOptions, TrainOptions, distributed, fit
from ..errors import ReffAKDError
from ..io import write_json, write_text_atomic
from ..models.autoencoder import ConvAutoencoder
from ..resources import combine_stages, count_flops, forward_flops, measure, parameter_count
from ..rundir import check_new_run_dir, held_here, staged_folder, staged_run_dir
from ..seed import seed_everything
from ..version import __version__
from .artifact import SoftLabels
from .autoencoder_task import AutoencoderTask, embed_batches
from .calibration import Calibration
from .diagnostics import format_diagnostics, soft_label_diagnostics
from .instance import instance_similarity, instance_soft_labels
from .similarity import SimilarityAccumulator, checked_sample
from .structure import with_structure

SOFT_LABELS_FILE = "soft_labels.safetensors"
# The autoencoder's files in the soft-label folder: its log, its last epoch (the one the soft labels
# come from; no separate best), and its resume checkpoint.
AUTOENCODER_FILES = RunFiles(metrics="autoencoder_metrics.jsonl", last="autoencoder.safetensors", best=None)
MIN_CLASS_IMAGES = 2  # a within-class similarity averages over pairs of a class's images
EMBED_BATCH_SIZE = 512  # images per batch of the embedding pass (and of validation): its memory, not N, is held


@dataclass
class SoftLabelConfig:
    """How soft labels are made. ``preset`` only records the name of the preset ``calibration`` came from
    (``Calibration.preset``); a calibration built by hand is ``custom``. ``softlabels.default_config`` gives the
    command line's defaults."""

    calibration: Calibration
    preset: str = "custom"
    autoencoder: OptimConfig = field(default_factory=lambda: OptimConfig(epochs=10))
    samples_per_class: int | None = None
    augment_embeddings: bool = False
    seed: int = 0
    # Semi-supervised: a folder of unlabelled images the autoencoder also trains on (never in the similarity).
    unlabelled_dir: str | None = None
    # Semi-supervised: the autoencoder also trains on the training images a labelled budget withholds.
    budget_unlabelled: bool = False

    def to_dict(self) -> dict[str, Any]:
        out = {
            "preset": self.preset,
            "calibration": self.calibration.to_dict(),
            "autoencoder": self.autoencoder.to_dict(),
            "samples_per_class": self.samples_per_class,
            "augment_embeddings": self.augment_embeddings,
            "seed": self.seed,
        }
        if self.unlabelled_dir is not None:
            out["unlabelled_dir"] = self.unlabelled_dir
        if self.budget_unlabelled:
            out["budget_unlabelled"] = True
        return out

    @property
    def semi_supervised(self) -> bool:
        """The autoencoder may train on images beyond the labelled ones (what the ``-semi`` methods need)."""
        return self.budget_unlabelled or self.unlabelled_dir is not None


def autoencoder_split(splits: DataSplits, unlabelled_dir: str | None, budget_unlabelled: bool = False) -> Split:
    """What the autoencoder trains on: the training images, plus the unlabelled folder's when one is given, plus
    the images a labelled budget withholds when ``budget_unlabelled`` (label -1: the autoencoder never reads
    labels, and the class similarity never sees these images)."""
    parts = [splits.unlabelled] if budget_unlabelled and splits.unlabelled is not None else []
    if unlabelled_dir is not None:
        _, images = decoded_unlabelled(unlabelled_dir, splits.in_channels, splits.image_size, splits.dataset)
        parts.append(Split(images, torch.empty(0)))
    if not parts:
        return splits.train
    _check_in_memory(splits)
    device = splits.train.images.device
    extra = [materialize(part.images).to(device) for part in parts]
    n = sum(int(e.shape[0]) for e in extra)
    images = torch.cat([splits.train.images, *extra])
    labels = torch.cat([splits.train.labels, torch.full((n,), -1, dtype=splits.train.labels.dtype)])
    return Split(images, labels)


def check_fits_data(cfg: SoftLabelConfig, splits: DataSplits) -> None:
    """Refuse, before the autoencoder trains (and before any folder exists), settings these data cannot meet: an
    own-class probability a softmax over C classes cannot be solved for, a class with fewer than two labelled training
    images (found after the autoencoder trained, when the similarity needed its pairs), fewer than two or more samples
    per class than a class has."""
    p, c = cfg.calibration.target_own_probability, splits.num_classes
    if p is not None and not 1 / c < p < 1:
        raise ReffAKDError(
            f"target_own_prob {p} is out of range for {c} classes: it must lie strictly between 1/C = {1 / c:.4g} "
            "and 1",
            params=("target_own_prob",),
        )
    counts = torch.bincount(splits.train.labels.long(), minlength=c)
    if int(counts.min()) < MIN_CLASS_IMAGES:
        low = int(counts.argmin())
        raise ReffAKDError(
            f"class {splits.class_names[low]!r} has {int(counts[low])} labelled training image(s); the class "
            f"similarity needs at least {MIN_CLASS_IMAGES} per class (pairs within the class): add images to it, or "
            "give fewer to validation (val_size)",
            params=("val_size",),
        )
    k = cfg.samples_per_class
    if k is not None and k < MIN_CLASS_IMAGES:
        raise ReffAKDError(
            f"samples_per_class {k} is out of range: the class similarity needs at least {MIN_CLASS_IMAGES} per class",
            params=("samples_per_class",),
        )
    if k is not None:
        if int(counts.min()) < k:
            low = int(counts.argmin())
            raise ReffAKDError(
                f"samples_per_class {k} is more than class {splits.class_names[low]!r} has in the training split "
                f"({int(counts[low])} images); use at most {int(counts[low])}",
                params=("samples_per_class",),
            )


def _check_in_memory(splits: DataSplits) -> None:
    if not isinstance(splits.train.images, torch.Tensor):
        raise ReffAKDError(
            "semi-supervised soft labels need the training images in memory; this dataset is streamed from disk "
            "(try --no-streaming)", params=("unlabelled_dir", "budget_unlabelled"),
        )  # fmt: skip


def check_soft_label_data(cfg: SoftLabelConfig, splits: DataSplits) -> None:
    """Everything about these data that would stop the build or spoil it, found before any folder exists or anything
    trains: the settings (``check_fits_data``), and an unlabelled folder's images: every one decodes (a corrupt file is
    named), and none is a labelled, validation or test image copied there (``check_unlabelled_apart``: decoded
    pixels compared, so MNIST's or CIFAR's images, which have no files, are compared too)."""
    check_fits_data(cfg, splits)
    if cfg.semi_supervised:
        _check_in_memory(splits)
    if cfg.unlabelled_dir is None:
        return
    files, images = decoded_unlabelled(cfg.unlabelled_dir, splits.in_channels, splits.image_size, splits.dataset)
    named = {"training": splits.train, "validation": splits.val, "test": splits.test, "unlabelled": splits.unlabelled}
    parts = {k: materialize(v.images) for k, v in named.items() if v is not None and len(v)}
    check_unlabelled_apart(files, images, {("training (label withheld)" if k == "unlabelled" else k): v
                                           for k, v in parts.items()})  # fmt: skip


def similarity_flops(num_images: int, dim: int, num_classes: int) -> int:
    """Normalising N vectors, summing them per class, and the C x C Gram matrix of class sums."""
    return 3 * num_images * dim + num_images * dim + 2 * num_classes * num_classes * dim


def autoencoder_flops(model: ConvAutoencoder) -> tuple[int, int, int]:
    """FLOPs per image of the autoencoder's training step (MSE, forward and backward), forward pass and encoder
    pass, counted on a batch of 2 on the model's device (the meta device counts without computing)."""
    device = next(model.parameters()).device
    shape = (2, model.in_channels, *model.image_size)
    step = count_flops(
        lambda: torch.nn.functional.mse_loss(
            model(torch.zeros(shape, device=device)), torch.zeros(shape, device=device)
        ).backward()
    )
    model.zero_grad(set_to_none=True)
    image = shape[1:]
    return step // 2, forward_flops(model, image), forward_flops(model, image, forward=model.encode)


def build_soft_labels(
    splits: DataSplits,
    cfg: SoftLabelConfig,
    out_dir: str | Path,
    options: TrainOptions | None = None,
) -> tuple[SoftLabels, dict[str, Any]]:
    """Write ``soft_labels.safetensors`` (+ .json), the autoencoder and its log into ``out_dir``.

    Returns the soft labels and a cost record with one entry per stage. ``options`` (``engine.TrainOptions``) go to
    ``engine.fit`` (resume True: continue from the resume checkpoint when there is one); a signal raises
    ``TrainingInterrupted`` after the checkpoint is written. Of the speed options the autoencoder takes
    ``cuda_graph`` alone (its step and batches as CUDA graphs).

    ``out_dir`` is a new folder or an empty one; one that holds anything is refused, never written over. The folder
    is written as ``out_dir.partial`` and renamed onto ``out_dir`` at the end (``rundir.staged_run_dir``; resume takes
    an interrupted ``out_dir.partial``); the settings and the unlabelled images are checked against the data before it
    exists. Inside a run folder that a command staged and this process holds (its ``.partial``), it writes in place.

    Under torchrun (WORLD_SIZE > 1) every rank calls it: the autoencoder trains with DDP on its shard
    of each global batch (``cfg.autoencoder.batch_size``), each rank embeds its shard of the training
    images, the class sums are all-reduced, and rank 0 alone writes and logs; every rank returns the
    same soft labels.
    """
    out_dir = Path(out_dir)
    resume, main = (options or TrainOptions()).resume, distributed.is_main_process()
    staged = staged_folder(out_dir)
    if staged is not None:  # a command's run folder: its checks ran before it was made
        if main and not held_here(staged):
            raise ReffAKDError(
                f"out_dir {out_dir} lies in the unfinished run folder {staged}, which no running command holds; "
                "soft labels are never written into another run: give a new folder",
                params=("out_dir",),
            )
        return _build(splits, cfg, out_dir, options)
    check_new_run_dir(out_dir, empty_ok=True, param="out_dir")
    check_soft_label_data(cfg, splits)  # before any folder exists
    with staged_run_dir(out_dir, resume=resume, main=main, kind="softlabels", empty_ok=True, param="out_dir") as tmp:
        return _build(splits, cfg, tmp, options)


def _build(
    splits: DataSplits, cfg: SoftLabelConfig, out_dir: Path, options: TrainOptions | None
) -> tuple[SoftLabels, dict[str, Any]]:
    """``build_soft_labels`` into ``out_dir``, a staged run folder this run holds."""
    cfg.calibration.validate()
    ae_cfg = cfg.autoencoder
    distributed.check_batch_size(ae_cfg.batch_size)
    options = (options or TrainOptions()).on_this_rank()
    options = replace(options, speed=SpeedOptions(cuda_graph=options.speed.cuda_graph))  # its resume identity's
    device, log, main = options.device, options.log, distributed.is_main_process()
    shard = {"shard": distributed.shard()} if distributed.active() else {}
    log(f"soft labels: autoencoder {ae_cfg.epochs} epochs, preset {cfg.preset}, seed {cfg.seed}")
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
    generator = seed_everything(cfg.seed)
    c, (h, w) = splits.in_channels, splits.image_size
    model = ConvAutoencoder(c, (h, w)).to(device)
    ae_train = autoencoder_split(splits, cfg.unlabelled_dir, cfg.budget_unlabelled)
    if len(ae_train) != len(splits.train):
        extra = len(ae_train) - len(splits.train)
        log(f"soft labels: the autoencoder trains on {len(ae_train)} images, {extra} of them unlabelled")
    train_batches = make_batches(
        ae_train,
        ae_cfg.batch_size,
        shuffle=True,
        augment=splits.augment,
        generator=generator,
        device=device,
        **shard,
    )
    val_batches = make_batches(splits.val, EMBED_BATCH_SIZE, device=device, **shard)
    step_flops, fwd_flops, enc_flops = autoencoder_flops(model)

    checkpoint_meta = {
        "model": "autoencoder",
        "num_classes": splits.num_classes,
        "in_channels": c,
        "image_size": [h, w],
        "class_names": list(splits.class_names),
        "mean": [0.0] * c,
        "std": [1.0] * c,
        "pixel_range": [0, 1],
        "dataset": splits.dataset,
        "seed": cfg.seed,
        "augment": asdict(splits.augment),
        "data": splits.identity,  # resume refuses other data or another split
        "reffakd_version": __version__,
        **({"labelled": splits.budget} if splits.budget is not None else {}),
    }
    with measure("autoencoder_training", device) as ae_cost:
        result = fit(
            AutoencoderTask(model),
            FitBatches(train_batches, val_batches),
            ae_cfg,
            out_dir,
            options,
            checkpoint_meta=checkpoint_meta,
            files=AUTOENCODER_FILES,
        )
        ae_cost.flops = step_flops * result.train_images_seen + fwd_flops * result.eval_images_seen
        ae_cost.details = {
            "epochs": ae_cfg.epochs,
            "train_flops_per_image": step_flops,
            "forward_flops_per_image": fwd_flops,
        }
    ae_stage = ae_cost.to_dict()
    if result.resumed_from is not None:  # earlier sessions' time counts too
        ae_stage["seconds"] += result.prior_seconds
        ae_stage["details"] = {
            **ae_stage["details"],
            "resumed_from": result.resumed_from,
            "seconds_before_resume": result.prior_seconds,
        }

    embed_augment = splits.augment if cfg.augment_embeddings else None
    with measure("embedding", device) as emb_cost:
        images = splits.train
        if cfg.samples_per_class is not None:  # the notebooks' seeded sample: only those images are embedded
            keep = checked_sample(images.labels, splits.num_classes, cfg.samples_per_class, generator)
            images = Split(images.images[keep], images.labels[keep])
        emb_batches = make_batches(
            images, EMBED_BATCH_SIZE, augment=embed_augment, generator=generator, device=device, **shard
        )
        accumulator = SimilarityAccumulator(splits.num_classes, model.embedding_dim, device)
        for features, labels in embed_batches(model, emb_batches):
            accumulator.update(features, labels)  # each batch is dropped once it is summed
        accumulator.all_reduce()  # under torchrun: every rank embedded its shard
        emb_cost.flops = enc_flops * len(images)
        emb_cost.details = {
            "images": len(images),
            "embedding_dim": model.embedding_dim,
            "encoder_flops_per_image": enc_flops,
            "batch_size": EMBED_BATCH_SIZE,
            "class_sums": "accumulated batch by batch during this pass (SimilarityAccumulator)",
        }

    with measure("similarity", device) as sim_cost:
        similarity = accumulator.similarity().cpu()
        sim_cost.flops = similarity_flops(len(images), model.embedding_dim, splits.num_classes)
        sim_cost.details = {"images": len(images)}

    soft = soft_labels_from_similarity(
        similarity, splits, cfg,
        extra={"autoencoder_val_mse": result.history[-1]["val_mse"], "autoencoder_images": len(ae_train)},
    )  # fmt: skip
    log(format_diagnostics(soft.metadata["diagnostics"]))

    with measure("instance_soft_labels", device) as inst_cost:
        # One soft label per training image (``reffakd-instance``): class sums of the un-augmented training
        # images' unit embeddings (the similarity's own, when it saw exactly those), then a second streaming
        # pass gives each image its row; only the (N, C) table itself is held, never the embeddings.
        n, d, k = len(splits.train), model.embedding_dim, splits.num_classes
        sums = accumulator
        if cfg.samples_per_class is not None or embed_augment is not None:
            sums = SimilarityAccumulator(k, d, device)
            for features, labels in embed_batches(model, make_batches(splits.train, EMBED_BATCH_SIZE, device=device,
                                                                      **shard)):  # fmt: skip
                sums.update(features, labels)
            sums.all_reduce()
            inst_cost.flops += enc_flops * n
        counts = sums.counts.to(torch.float64)
        rows = []
        boost, tau = soft.metadata["diagonal_boost"], soft.metadata["temperature"]
        # Every rank computes the whole table (it is cheap next to the autoencoder), so all return the same.
        for features, labels in embed_batches(model, make_batches(splits.train, EMBED_BATCH_SIZE, device=device)):
            sim = instance_similarity(features, labels, sums.class_sums, counts)
            rows.append(instance_soft_labels(sim, labels, boost, tau).to(torch.float32).cpu())
        cal = cfg.calibration  # a placebo structure applies to each image's row as to the class table's
        soft.instance = with_structure(torch.cat(rows), cal.structure, cal.structure_seed, splits.train.labels)
        soft.instance_index = torch.arange(n)
        soft.metadata["instance_split"] = split_fingerprint(splits.train)
        # the encoder again, unit rows, dots with the class sums, softmax
        inst_cost.flops += enc_flops * n + 3 * n * d + 2 * n * d * k + 4 * n * k
        inst_cost.details = {"images": n, "batch_size": EMBED_BATCH_SIZE}
    cost = combine_stages(
        {"autoencoder_training": ae_stage, **{s.name: s.to_dict() for s in (emb_cost, sim_cost, inst_cost)}},
        source="autoencoder",
        autoencoder_parameters=parameter_count(model),
    )
    if distributed.world_size() > 1:
        cost["distributed"] = {"world_size": distributed.world_size(), "seconds_and_memory": "rank 0's"}
    soft.cost = cost
    if main:  # autoencoder.safetensors (+ .json) is the last epoch's, written by fit.
        soft.save(out_dir / SOFT_LABELS_FILE)
        write_json(out_dir / "soft_labels_cost.json", cost)
        write_text_atomic(out_dir / "diagnostics.txt", format_diagnostics(soft.metadata["diagnostics"]) + "\n")
        _plot(out_dir, soft, model, splits, device)
    distributed.barrier()  # the files exist before any rank goes on
    return soft, cost


def soft_labels_from_similarity(
    similarity: torch.Tensor, splits: DataSplits, cfg: SoftLabelConfig, extra: dict[str, Any] | None = None
) -> SoftLabels:
    """Calibrate a similarity matrix into a ``SoftLabels`` artifact with its metadata and diagnostics."""
    matrix, tau = cfg.calibration.apply(similarity)
    diagnostics = soft_label_diagnostics(matrix, similarity, splits.class_names)
    diagnostics["structure"] = cfg.calibration.structure
    metadata = {
        "dataset": splits.dataset,
        "reffakd_version": __version__,
        "config": cfg.to_dict(),
        "temperature": tau,
        "diagonal_boost": cfg.calibration.diagonal_boost,
        "structure": cfg.calibration.structure,
        "train_images": len(splits.train),
        "labelled": splits.budget,  # the labelled subset the similarity was computed on (None: every label)
        "diagnostics": diagnostics,
        **(extra or {}),
    }
    return SoftLabels(matrix.to(torch.float32), splits.class_names, similarity, metadata)


def _plot(out_dir: Path, soft: SoftLabels, model: ConvAutoencoder, splits: DataSplits, device: torch.device) -> None:
    from ..reports.plots import plot_reconstructions, plot_soft_labels

    plot_soft_labels(soft, out_dir / "soft_labels.png")
    images = materialize(splits.val.images[:16]).to(device).float().div(255.0)
    with torch.no_grad():
        model.eval()
        recon = model(images)
    plot_reconstructions(images.cpu(), recon.cpu(), out_dir / "reconstructions.png")
