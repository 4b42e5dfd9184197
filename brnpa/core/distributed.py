"""One process, or several started by torchrun: rank, world size and the few collective steps the tasks need.

Every helper also works with one process (then it does nothing, or returns its input), so the tasks call
them unconditionally. With several processes, only rank 0 writes files and talks to optuna; the others
receive what they need from it by broadcast. Work on image sets (validation, test, DAUC / IAUC) is cut into
contiguous shards, one per rank, and gathered back in the original order.
"""
import contextlib
import datetime
import gc
import os
import re
import sys

import torch
import torch.distributed as dist
import torch.nn as nn

STATE = {"rank": 0, "world_size": 1, "local_rank": 0}


def setup(use_cuda):
    """Join the process group when torchrun started this process (WORLD_SIZE > 1): NCCL on CUDA, gloo on
    the CPU. Rank 0 says so on stderr. Returns the world size."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return 1
    backend = "nccl" if use_cuda and torch.cuda.is_available() else "gloo"
    STATE.update(rank=int(os.environ["RANK"]), world_size=world_size, local_rank=int(os.environ.get("LOCAL_RANK", 0)))
    if backend == "nccl":
        torch.cuda.set_device(STATE["local_rank"])
    if not dist.is_initialized():
        # long timeout: in a search, the other processes wait for rank 0 while other workers finish trials
        dist.init_process_group(backend, timeout=datetime.timedelta(hours=12))
    if is_main():
        print(f"distributed: {world_size} processes, backend {backend}", file=sys.stderr, flush=True)
    return world_size


def teardown(succeeded=True):
    """Leave the process group. After a normal end: free what still holds pending work (a DDP model kept
    by reference cycles, say), wait for the others, and destroy the group while the interpreter is whole
    (otherwise gloo's threads can abort the process at exit). After an error, the group is left to torchrun,
    which stops the other processes: a collective cleanup could wait for them for ever."""
    if dist.is_initialized() and succeeded:
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()
    STATE.update(rank=0, world_size=1, local_rank=0)


# What gloo and NCCL say when the process at the other end of a collective is gone.
PEER_FAILURE_TEXTS = ("connection closed by peer", "connection reset by peer", "broken pipe", "socket closed",
                      "nccl communicator was aborted", "connection refused", "timed out")


def is_peer_failure(error):
    """Whether a RuntimeError of a collective says that another process went away."""
    return any(text in str(error).lower() for text in PEER_FAILURE_TEXTS)


def failure_summary(error):
    """The gist of a collective's error: its first sentence, without the source location gloo puts first."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    first = re.sub(r"^\[[^\]]*\]\s*", "", first).split(". ")[0]
    return first if len(first) <= 120 else first[:117] + "..."


def rank():
    return STATE["rank"]


def world_size():
    return STATE["world_size"]


def is_main():
    return STATE["rank"] == 0


def cuda_device():
    """This process's GPU."""
    return torch.device("cuda", STATE["local_rank"])


def barrier():
    if world_size() > 1:
        dist.barrier()


def broadcast(obj=None):
    """Rank 0's obj on every rank (pickled); the others pass anything."""
    if world_size() == 1:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def all_reduce_sum(tensor):
    """Sum of a tensor over the ranks, in place."""
    if world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def shard_bounds(count):
    """(start, stop) of this rank's contiguous share of `count` items; shares differ by at most one."""
    base, extra = divmod(count, world_size())
    start = rank() * base + min(rank(), extra)
    return start, start + base + (1 if rank() < extra else 0)


def gather_in_order(items):
    """Concatenation over the ranks, in rank order, of each rank's list: with contiguous shards, the
    original order. Every rank gets the whole list."""
    if world_size() == 1:
        return list(items)
    gathered = [None] * world_size()
    dist.all_gather_object(gathered, list(items))
    return [item for part in gathered for item in part]


@contextlib.contextmanager
def main_only(context):
    """`context` entered on rank 0 only (a lock, for instance); the others wait for rank 0 at the end."""
    if is_main():
        with context:
            yield
    else:
        yield
    barrier()


class SumOverProcesses(torch.autograd.Function):
    """Sum of a tensor over the processes, with its gradient: the sum of the gradients over the processes."""

    @staticmethod
    def forward(ctx, tensor):
        total = tensor.clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total

    @staticmethod
    def backward(ctx, grad):
        total = grad.clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total


class AllReduceBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch: per-channel sums are added
    over the processes with a differentiable all-reduce (SumOverProcesses), so autograd gives each process the
    gradient of the global-batch normalisation. PyTorch's SyncBatchNorm does this on GPUs only; this
    module is what --sync_bn uses on the CPU (gloo). Same parameters and buffers as BatchNorm2d."""

    def forward(self, x):
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        all_reduce = SumOverProcesses.apply
        dims = (0, 2, 3)
        count = torch.full((1,), x.numel() / x.shape[1], dtype=x.dtype, device=x.device)
        totals = all_reduce(torch.cat([x.sum(dims), count]))
        item_nb = totals[-1]
        mean = totals[:-1] / item_nb
        centered = x - mean[None, :, None, None]
        var = all_reduce((centered * centered).sum(dims)) / item_nb  # biased, for the normalisation
        out = centered * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            out = out * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        with torch.no_grad():  # running statistics as BatchNorm2d keeps them (unbiased variance)
            self.num_batches_tracked += 1
            self.running_mean.mul_(1 - self.momentum).add_(mean.detach(), alpha=self.momentum)
            self.running_var.mul_(1 - self.momentum).add_(var.detach() * item_nb / (item_nb - 1),
                                                          alpha=self.momentum)
        return out


def sync_batchnorm(model, device):
    """The model with every BatchNorm2d computing its training statistics over all processes: PyTorch's
    SyncBatchNorm on CUDA, AllReduceBatchNorm2d elsewhere."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in model.named_children():
        if type(child) is nn.BatchNorm2d:
            replacement = AllReduceBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                               child.track_running_stats).to(device)
            replacement.load_state_dict(child.state_dict())
            setattr(model, name, replacement)
        else:
            sync_batchnorm(child, device)
    return model
