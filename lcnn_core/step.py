"""One training step (forward, backward, optimiser), eager or replayed as a CUDA graph.

On a GPU a ResNet-18 step costs the ops it dispatches, not its arithmetic (``shared/docs/GPU.md``:
about a thousand ``aten::`` ops for Standard at about 9 us each against under 1 ms of arithmetic
on an H200). A CUDA graph replays a whole captured step for about the price of one launch:

* the first ``WARMUP`` steps of a run are eager, on a side stream (cuDNN picks its algorithms, the
  optimiser makes its momentum buffers, the allocator settles), as graph capture requires;
* the next step is captured from static input buffers, then replayed for it and every later step:
  each batch is copied into the buffers, the learning rate into a device tensor the fused SGD
  reads, and the graph replayed;
* nothing in the step waits on the host: the loss sum, the correct count and the first
  non-finite step accumulate on the device and are read once an epoch (``totals``).

The same ops run in the same order either way, so a captured run trains the weights an eager
one does. Whatever cannot be captured (training-time attacks draw their random starts on the
host; DDP; a capture that raises) runs eager, with one warning line for a failed capture.
"""
import warnings

import torch

WARMUP = 3  # eager steps before capture: PyTorch's CUDA-graph recipe asks for a few on a side stream


def wants_capture(cfg, device, distributed=False):
    """Whether the run's steps replay as a CUDA graph: ``capture`` "auto" means CUDA, one
    process and a variant whose step never reads a tensor on the host (every variant but
    adversarial training, whose PGD draws its random start with ``int(torch.randint(...))``)."""
    from .config import TRAINING_VARIANTS
    if cfg["capture"] == "off" or device.type != "cuda" or distributed:
        return False
    return not TRAINING_VARIANTS[cfg["variant"]]["adversarial"]


class TrainStep:
    """``step(x, y)`` trains on one batch; ``totals()`` gives the epoch's sums.

    net: the module the loss calls (the model, compiled or DDP-wrapped); opt, sched: the
    optimiser and its per-step schedule; loss_fn(net, x, y, cfg[, grad_scale]) -> (loss,
    logits), ``train.training_loss``; amp: the autocast dtype or None; scaler: a
    ``torch.amp.GradScaler`` (fp16) or None; capture: replay the step as a graph made by
    ``capture_with(fn) -> replay`` (``cuda_graph``; the tests pass a stand-in on CPU).
    """

    def __init__(self, net, cfg, opt, sched, device, loss_fn, amp=None, scaler=None, capture=False,
                 capture_with=None):
        self.net, self.cfg, self.opt, self.sched = net, cfg, opt, sched
        self.device, self.amp, self.scaler = device, amp, scaler
        self.loss_fn = loss_fn
        self.capture, self.capture_with = capture, capture_with or cuda_graph
        self.replay, self.eager_steps = None, 0
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device, dtype=torch.long)
        self.first_bad = torch.full((), -1, device=device, dtype=torch.long)
        self.index = torch.zeros((), device=device, dtype=torch.long)  # steps this epoch
        self.seen = 0

    # ---------------------------------------------------------------- verbs
    def start_epoch(self):
        for t, v in ((self.loss_sum, 0), (self.correct, 0), (self.first_bad, -1), (self.index, 0)):
            t.fill_(v)
        self.seen = 0

    def __call__(self, x, y):
        self.seen += len(y)
        if self.replay is not None:
            return self._replay(x, y)
        if self.capture and self.eager_steps >= WARMUP:
            if self._capture(x, y):
                return self._replay(x, y, copied=True)
        if self.capture and self.device.type == "cuda":
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self._body(x, y)
            torch.cuda.current_stream().wait_stream(side)
        else:
            self._body(x, y)
        self.eager_steps += 1
        self.sched.step()

    def totals(self):
        """(loss sum, correct count, first non-finite step or -1, images seen) of the epoch so far:
        device tensors, except the count of images."""
        return self.loss_sum, self.correct, self.first_bad, self.seen

    # ---------------------------------------------------------------- the step
    def _body(self, x, y, cache=True):
        """Forward, backward and update of one batch, plus the epoch's sums: device work only."""
        amp = self.amp
        with torch.autocast(self.device.type, dtype=amp or torch.float32, enabled=amp is not None,
                            cache_enabled=cache):
            if self.scaler is None:
                loss, logits = self.loss_fn(self.net, x, y, self.cfg)
            else:  # the scale as a device tensor (get_scale() would read it on the host)
                scale = self.scaler.scale(torch.ones((), device=self.device))
                loss, logits = self.loss_fn(self.net, x, y, self.cfg, grad_scale=scale)
        finite = torch.isfinite(loss)
        self.first_bad.copy_(torch.where((self.first_bad < 0) & ~finite, self.index, self.first_bad))
        self.index.add_(1)
        self.opt.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            loss.backward()
            self.opt.step()
        self.loss_sum.add_(loss.detach() * len(y))
        self.correct.add_((logits.detach().argmax(1) == y).sum())

    # ---------------------------------------------------------------- CUDA graph
    def _capture(self, x, y):
        """Capture ``_body`` on static buffers holding this batch; False (and eager from then on)
        if capture fails."""
        self.static_x = x.detach().clone(memory_format=torch.preserve_format)
        self.static_y = y.detach().clone()
        self.lrs = [torch.tensor(float(g["lr"]), device=self.device) for g in self.opt.param_groups]
        floats = [g["lr"] for g in self.opt.param_groups]
        for g, t in zip(self.opt.param_groups, self.lrs):
            g["lr"] = t  # the fused SGD reads the learning rate from the device at replay
        try:
            self.opt.zero_grad(set_to_none=True)
            self.replay = self.capture_with(lambda: self._body(self.static_x, self.static_y, cache=False))
        except Exception as e:  # an op that cannot be captured: the run goes on eager
            reason = (str(e).strip().splitlines() or [""])[0][:120]
            warnings.warn(f"CUDA-graph capture failed ({type(e).__name__}: {reason}); training eager",
                          stacklevel=3)
            self.capture, self.replay = False, None
            self.opt.zero_grad(set_to_none=True)
            return False
        finally:
            for g, f in zip(self.opt.param_groups, floats):
                g["lr"] = f  # the scheduler keeps stepping plain floats
        return True

    def _replay(self, x, y, copied=False):
        if not copied:
            self.static_x.copy_(x)
            self.static_y.copy_(y)
        for t, g in zip(self.lrs, self.opt.param_groups):
            t.fill_(g["lr"])  # a kernel argument, no host sync
        self.replay()
        self.sched.step()


def cuda_graph(fn):
    """Capture ``fn()`` as a CUDA graph (its kernels recorded, not run); returns its replay."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


def dispatched_ops(fn):
    """{aten op: calls} that ``fn()`` dispatches, nested calls included (torch.profiler's CPU
    events): on a GPU each leaf op is at least one kernel launch, and the host's cost of an
    eager step grows with the total."""
    from collections import Counter
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return Counter(e.name for e in prof.events() if e.name.startswith("aten::"))


def fp16_gradient_scaler(amp, device):
    """A ``torch.amp.GradScaler`` where the run trains in fp16 (its small gradients would flush
    to zero unscaled), else None. bf16 keeps fp32's exponent range and needs none."""
    if amp is torch.float16:
        return torch.amp.GradScaler(device.type)
    return None

