"""Data-parallel training: one run on W processes with torch.distributed (torchrun).

    torchrun --standalone --nproc_per_node=2 -m lcnn_core train --preset team-cifar10 --variant lcnn

torchrun starts W copies of the command and sets RANK, WORLD_SIZE and
LOCAL_RANK; ``context()`` reads them (none set: one process, nothing changes).
``Context.start`` opens the process group (NCCL on CUDA, gloo on CPU) and puts
rank r on ``cuda:LOCAL_RANK``; ``Context.wrap`` returns the model in
DistributedDataParallel (DDP).

Why the result is the single-process run on the same global batch B:

* Data. Every rank holds the whole dataset on its device and draws the global
  batch (order, crop, flip) from the same seeded generator, consuming it exactly
  as one process would; rank r keeps rows [r B/W, (r+1) B/W) (``Loader(shard=)``).
  The union of the shards is the single-process batch.
* Gradients. Each rank's loss is a mean over its B/W samples (cross-entropy, the
  gradient and CURE penalties) or does not depend on the data (the LCNN penalty),
  and DDP averages gradients: (1/W) sum_r grad mean_{i in r} l_i = grad mean_i l_i.
* Batch norm. Statistics over B/W images would differ from the global batch's,
  so every BatchNorm2d and ClippedBatchNorm2d is given global statistics
  (``sync_batch_norm``). torch.nn.SyncBatchNorm is not used: it refuses CPU
  tensors (so gloo cannot run it), ``convert_sync_batchnorm`` would replace
  ClippedBatchNorm2d by a plain SyncBatchNorm (losing log gamma and the clip),
  and its backward is not differentiable, which GradReg and CURE need (double
  backprop). Here the per-channel sums are all-reduced with torch's functional
  (autograd-aware) all_reduce, whose backward is again an all-reduce, so first
  and second derivatives are those of the global batch.
* Spectral-norm buffers. SNConv2d / SNLinear update u (and sigma) in every
  training forward from the weights alone; the weights are equal on all ranks,
  so every rank computes the same u. DDP also broadcasts all buffers from rank 0
  before each training forward (``broadcast_buffers=True``, its default), which
  removes any drift from non-deterministic GPU kernels. BN running statistics
  are global, hence equal too.

Not bit-for-bit: the float sums run in another order (differences of order
1e-7 relative per step), and adversarial training's PGD random start, which is
seeded per call and drawn per shard. Every rank evaluates the test set itself
(same weights, same numbers; no extra communication) and only rank 0 writes files.
"""
import datetime
import os

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed import _functional_collectives as funcol  # torch's differentiable collectives

from .config import ConfigError
from .layers import ClippedBatchNorm2d


# ------------------------------------------------------------------ processes
class Context:
    """This process's place in the run: rank (0 .. world_size-1) and local_rank (its GPU)."""

    def __init__(self, rank=0, world_size=1, local_rank=0):
        self.rank, self.world_size, self.local_rank = rank, world_size, local_rank

    @property
    def enabled(self):
        return self.world_size > 1

    @property
    def is_main(self):
        """Rank 0: the only process that writes files and prints."""
        return self.rank == 0

    @property
    def shard(self):
        return self.rank, self.world_size

    def start(self, device):
        """Open the process group (once) and return this rank's device (cuda:LOCAL_RANK on CUDA)."""
        if not self.enabled:
            return device
        if device.type == "cuda":
            if self.local_rank >= torch.cuda.device_count():
                raise ConfigError(f"LOCAL_RANK={self.local_rank} but only {torch.cuda.device_count()} GPU(s) visible")
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                    timeout=datetime.timedelta(minutes=30))
        return device

    def wrap(self, model, device):
        """``model`` with global batch norm, in DDP (unchanged for one process)."""
        if not self.enabled:
            return model
        sync_batch_norm(model)
        return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def all_sum(self, *tensors):
        """Sum each tensor over the ranks, in place."""
        if self.enabled:
            for t in tensors:
                dist.all_reduce(t)

    def all_true(self, flag):
        """True when ``flag`` (a 0-dim bool tensor) holds on every rank."""
        if not self.enabled:
            return bool(flag)
        flag = flag.to(torch.int32)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag)

    def earliest(self, step):
        """The smallest non-negative ``step`` (0-dim long tensor) over the ranks, -1 if none."""
        if not self.enabled:
            return step
        big = torch.iinfo(torch.long).max
        step = torch.where(step < 0, torch.full_like(step, big), step)
        dist.all_reduce(step, op=dist.ReduceOp.MIN)
        return torch.where(step == big, torch.full_like(step, -1), step)


def context():
    """The Context torchrun's environment describes (RANK, WORLD_SIZE, LOCAL_RANK); one process if unset."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Context()
    rank = int(os.environ["RANK"])
    return Context(rank, world_size, int(os.environ.get("LOCAL_RANK", rank)))


def stop():
    """Close the process group, if one is open."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


# ------------------------------------------------------------------ batch norm
class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training-mode statistics are those of the global batch.

    Per channel c, over all ranks' N x H x W values: mean_c = S1_c / n and the
    biased var_c = S2_c / n - mean_c^2, with S1, S2, n all-reduced sums (fp32).
    Running statistics move as in nn.BatchNorm2d (unbiased variance). Eval mode,
    or one process: plain BatchNorm2d.
    """

    def forward(self, x):
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        c = x.shape[1]
        xf = x.float()
        local = torch.cat([xf.sum((0, 2, 3)), xf.square().sum((0, 2, 3)), xf.new_tensor([xf.numel() // c])])
        # a differentiable sum over ranks (its backward all-reduces the gradient; so does that backward's)
        total = funcol.wait_tensor(funcol.all_reduce(local, "sum", dist.group.WORLD))
        n = total[-1]
        mean = total[:c] / n
        var = total[c:2 * c] / n - mean.square()
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean, m)
                self.running_var.lerp_(var * n / (n - 1), m)
        y = (xf - mean[:, None, None]) * torch.rsqrt(var + self.eps)[:, None, None]
        if self.affine:
            y = y * self.weight[:, None, None] + self.bias[:, None, None]
        return y.to(x.dtype)


class GlobalClippedBatchNorm2d(ClippedBatchNorm2d, GlobalBatchNorm2d):
    """ClippedBatchNorm2d on global statistics: the clip factor times GlobalBatchNorm2d's output."""

    def _normalise(self, x, weight):
        return GlobalBatchNorm2d.forward(self, x) * weight.view(-1, 1, 1).to(x.dtype)


def sync_batch_norm(model):
    """Give every BatchNorm2d / ClippedBatchNorm2d of ``model`` global batch statistics, in place.

    Only the class changes: parameters, buffers, state_dict keys and
    ``isinstance(m, ClippedBatchNorm2d)`` stay as they were. Returns ``model``.
    """
    for m in model.modules():
        if type(m) is ClippedBatchNorm2d:
            m.__class__ = GlobalClippedBatchNorm2d
        elif type(m) is nn.BatchNorm2d:
            m.__class__ = GlobalBatchNorm2d
        elif isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, GlobalBatchNorm2d):
            raise TypeError(f"no global-statistics version of {type(m).__name__}")
    return model
