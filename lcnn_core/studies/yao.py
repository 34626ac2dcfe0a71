"""Yao et al. (2018) at CPU scale (STUDY.md §5): Hessian spectrum, loss landscape and
adversarial robustness of M1 on MNIST-5k against the training batch size.

    python -m lcnn_core yao                                  # the full run, preset yao (~40 min on 1 core)
    python -m lcnn_core yao --preset yao-tiny --out /tmp/y   # a seconds-long smoke run, same files

Every setting (batch sizes, seeds, epochs, lr, Hessian sample, attack budgets, ...) is in the
preset (lcnn_core/presets/yao.yaml), copied into provenance.json.

Per model (batch size x seed): train/test accuracy and loss, the top Hessian eigenvalue
(power iteration, relative tol), Hutchinson trace, input-space E C_f, and robust accuracy
under FGSM, iterative FGSM (L_inf) and L2 PGD. For seed 0: top-k spectrum, SLQ density,
1-D / 2-D loss landscapes along the top eigenvectors. Then the spread of the top
eigenvalue over random subsets of 64 ... 4000 training samples, an LCNN small CNN at
the smallest and largest batch, and the loss-matched control (M1 trained to the same training
loss at each of ``matched_batch_sizes``). Writes small CSVs and provenance.json to ``out``
(default results/yao/), each stage as soon as it is done.
"""
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..atomic import write_json
from ..attacks import robust_accuracy
from ..data import Loader, load_mnist5k
from ..hessian import ParamHessian, batch_loss, loss_landscape_1d, loss_landscape_2d
from ..metrics import evaluate_geometry
from ..models import m1, small_cnn
from ..provenance import provenance
from ..regularizers import lcnn_penalty

STAGES = ("matched", "spread", "lcnn")


def log(msg, t0=[time.perf_counter()]):
    print(f"[{time.perf_counter() - t0[0]:7.0f}s] {msg}", flush=True)


def chunks(x, y, size):
    return list(Loader(x, y, size))


def append_csv(rows, path):
    df = pd.DataFrame(rows)
    df.to_csv(path, mode="a", header=not path.exists(), index=False)


# ---------------------------------------------------------------- training
def train(model, data, batch_size, seed, cfg, lam=0.0):
    """SGD + momentum, constant lr, cfg epochs; returns per-epoch history rows."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=cfg["momentum"])
    loader = Loader(data.x_train, data.y_train, batch_size, shuffle=True, generator=gen)
    rows = [dict(epoch=epoch, train_loss_running=sgd_epoch(model, opt, loader, lam), steps=epoch * len(loader))
            for epoch in range(1, cfg["epochs"] + 1)]
    model.eval()
    return rows


def sgd_epoch(model, opt, loader, lam=0.0):
    """One pass over ``loader`` in train mode (cross-entropy, plus the LCNN penalty at lambda_beta =
    lambda_gamma = ``lam`` if lam); returns the running mean training loss (penalty excluded)."""
    model.train()
    total, n = 0.0, 0
    for x, y in loader:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        (loss + lcnn_penalty(model, lam, lam) if lam else loss).backward()
        opt.step()
        total, n = total + float(loss.detach()) * len(y), n + len(y)
    return total / n


def accuracy(model, batches):
    with torch.no_grad():
        hits = sum(int((model(x).argmax(1) == y).sum()) for x, y in batches)
    return 100.0 * hits / sum(len(y) for _, y in batches)


# ---------------------------------------------------------------- per-model measurements
def measure(model, family, bs, seed, data, hess_batches, cfg, out, full):
    """Everything reported for one trained model; full=True adds spectrum, density, landscapes."""
    model.eval()
    train_b = chunks(data.x_train, data.y_train, 500)
    test_b = chunks(data.x_test, data.y_test, 500)
    row = dict(family=family, batch_size=bs, seed=seed,
               train_loss=batch_loss(model, F.cross_entropy, train_b), train_acc=accuracy(model, train_b),
               test_loss=batch_loss(model, F.cross_entropy, test_b), test_acc=accuracy(model, test_b))
    ph = ParamHessian(model, F.cross_entropy, hess_batches)
    t = time.perf_counter()
    top_n = cfg["top_k"] if full else 1
    vals, vecs, its = ph.eigenvalues(top_n=top_n, iters=cfg["eig_iters"], tol=cfg["eig_tol"], seed=seed)
    row.update(top_eig=vals[0], eig_iters=its[0], eig_time_s=time.perf_counter() - t, n_params=ph.dim)
    log(f"  {family} bs={bs} s={seed}: test {row['test_acc']:.2f} %, train loss {row['train_loss']:.4f}, "
        f"lambda_max {vals[0]:.3f} ({its[0]} it)")
    append_csv([dict(family=family, batch_size=bs, seed=seed, k=k + 1, eigenvalue=v, iterations=i)
                for k, (v, i) in enumerate(zip(vals, its))], out / "spectrum.csv")
    tr = ph.trace(iters=cfg["trace_probes"], seed=seed)
    row.update(trace=tr.mean, trace_se=tr.std_error, grad_norm=float(ph.gradient().norm()))
    log(f"  trace {tr.mean:.2f} +- {tr.std_error:.2f}")

    geo_b = chunks(data.x_test[:cfg["geometry_samples"]], data.y_test[:cfg["geometry_samples"]], 100)
    geo = evaluate_geometry(model, geo_b, hessian_methods=("lanczos",), progress=False)
    row.update(input_grad_norm=geo["grad_norm_mean"], input_hess_norm=geo["hess_norm_lanczos_mean"],
               input_cf=geo["curvature_lanczos_mean"])

    att_b = chunks(data.x_test[:cfg["attack_samples"]], data.y_test[:cfg["attack_samples"]], 200)
    rob = []
    for attack, eps, kw in (("fgsm", cfg["eps_linf"], {}),
                            ("iterative_fgsm", cfg["eps_linf"], dict(steps=cfg["attack_steps"])),
                            ("pgd_l2", cfg["eps_l2"], dict(steps=cfg["attack_steps"]))):
        r = robust_accuracy(model, att_b, eps_list=eps, attack=attack, progress=False, **kw)
        rob += [dict(family=family, batch_size=bs, seed=seed, attack=attack, eps=e, clean_acc=r["clean_accuracy"],
                     robust_acc=a, n_samples=r["n_samples"], steps=r["settings"].get("steps"))
                for e, a in r["robust_accuracy"].items()]
    append_csv(rob, out / "robustness.csv")
    log("  robust acc: " + ", ".join(f"{r['attack']}@{r['eps']:g}={r['robust_acc']:.1f}" for r in rob))

    if full:
        nodes, weights = ph.density(iters=cfg["slq_iters"], n_v=cfg["slq_runs"], seed=seed)
        append_csv([dict(family=family, batch_size=bs, seed=seed, run=r, node=n, weight=w)
                    for r in range(nodes.shape[0]) for n, w in zip(nodes[r], weights[r]) if w > 0],
                   out / "density.csv")
        test_l = chunks(data.x_test[:cfg["landscape_test"]], data.y_test[:cfg["landscape_test"]], 500)
        alphas = cfg["landscape_alphas"]
        lines = []
        for split, b in (("train", hess_batches), ("test", test_l)):
            loss = loss_landscape_1d(model, F.cross_entropy, b, vecs[0], alphas)
            lines += [dict(family=family, batch_size=bs, seed=seed, split=split, alpha=a, loss=l)
                      for a, l in zip(alphas, loss)]
        append_csv(lines, out / "landscape_1d.csv")
        if len(vecs) > 1:
            g = cfg["landscape_grid"]
            grid = loss_landscape_2d(model, F.cross_entropy, hess_batches, vecs[0], vecs[1], g)
            append_csv([dict(family=family, batch_size=bs, seed=seed, alpha=a, beta=b, loss=grid[i, j])
                        for i, a in enumerate(g) for j, b in enumerate(g)], out / "landscape_2d.csv")
        log(f"  top-{len(vals)} {[round(v, 3) for v in vals]}, density and landscapes written")
    return row, vecs


def spread(model, data, cfg, out, bs, seed):
    """Top eigenvalue on random subsets of n training samples (Yao / PyHessian: it needs
    thousands of samples to be stable)."""
    rng = np.random.default_rng(1234)
    n_train = len(data.y_train)
    for n in cfg["spread_counts"]:
        n = min(n, n_train)
        subsets = 1 if n == n_train else cfg["spread_subsets"]
        for s in range(subsets):
            idx = torch.as_tensor(np.sort(rng.choice(n_train, n, replace=False)))
            b = chunks(data.x_train[idx], data.y_train[idx], cfg["hess_chunk"])
            t = time.perf_counter()
            vals, _, its = ParamHessian(model, F.cross_entropy, b).eigenvalues(
                top_n=1, iters=cfg["eig_iters"], tol=cfg["eig_tol"], seed=s)
            append_csv([dict(batch_size=bs, seed=seed, n_samples=n, subset=s, top_eig=vals[0], iterations=its[0],
                             time_s=time.perf_counter() - t)], out / "spread.csv")
            log(f"  spread n={n} subset {s}: {vals[0]:.3f} ({its[0]} it)")


def matched(data, hess_batches, cfg, out):
    """Control for the unequal training losses of a fixed epoch budget: train each batch size
    until the running training loss is <= cfg["matched_loss"] (at most cfg["matched_max_epochs"]),
    then measure test accuracy, lambda_max and FGSM accuracy. Appends to matched.csv."""
    seed = cfg["seeds"][0]
    for bs in cfg["matched_batch_sizes"]:
        torch.manual_seed(seed)
        model = m1()
        t = time.perf_counter()
        epochs = 0
        # one continuous run: the same optimizer across epochs (train() builds one per call)
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=cfg["momentum"])
        loader = Loader(data.x_train, data.y_train, bs, shuffle=True, generator=gen)
        while epochs < cfg["matched_max_epochs"]:
            running = sgd_epoch(model, opt, loader)
            epochs += 1
            if running <= cfg["matched_loss"]:
                break
        model.eval()
        train_b = chunks(data.x_train, data.y_train, 500)
        test_b = chunks(data.x_test, data.y_test, 500)
        vals, _, its = ParamHessian(model, F.cross_entropy, hess_batches).eigenvalues(
            top_n=1, iters=cfg["eig_iters"], tol=cfg["eig_tol"], seed=seed)
        att_b = chunks(data.x_test[:cfg["attack_samples"]], data.y_test[:cfg["attack_samples"]], 200)
        r = robust_accuracy(model, att_b, eps_list=cfg["eps_linf"], attack="fgsm", progress=False)
        row = dict(batch_size=bs, seed=seed, epochs=epochs, steps=epochs * len(loader),
                   train_loss=batch_loss(model, F.cross_entropy, train_b), train_acc=accuracy(model, train_b),
                   test_acc=accuracy(model, test_b), top_eig=vals[0], eig_iters=its[0],
                   **{f"fgsm_{e:g}": a for e, a in r["robust_accuracy"].items()},
                   time_s=time.perf_counter() - t)
        append_csv([row], out / "matched.csv")
        log(f"matched-loss M1 bs={bs}: {epochs} epochs, train loss {row['train_loss']:.4f}, "
            f"test {row['test_acc']:.2f} %, lambda_max {vals[0]:.3f}")


def lcnn(data, hess_batches, cfg, out, rows):
    """The LCNN small CNN at the smallest and largest batch size; appends to models.csv."""
    for bs in cfg["lcnn_batch_sizes"]:
        seed = cfg["seeds"][0]
        torch.manual_seed(seed)
        model = small_cnn("lcnn", width=cfg["lcnn_width"])
        t = time.perf_counter()
        hist = train(model, data, bs, seed, dict(cfg, lr=cfg["lcnn_lr"]), lam=cfg["lcnn_lam"])
        append_csv([dict(family="lcnn", batch_size=bs, seed=seed, **h) for h in hist], out / "history.csv")
        log(f"trained LCNN small CNN bs={bs} in {time.perf_counter() - t:.0f}s")
        row, _ = measure(model, "lcnn", bs, seed, data, hess_batches, cfg, out, full=False)
        row.update(epochs=cfg["epochs"], steps=hist[-1]["steps"], train_time_s=time.perf_counter() - t)
        rows.append(row)
        if (out / "models.csv").exists() and not any(r["family"] == "m1" for r in rows):
            append_csv([row], out / "models.csv")  # a stage run alone: add to the main table
        else:
            pd.DataFrame(rows).to_csv(out / "models.csv", index=False)


def load(cfg):
    """MNIST-5k (a subset for --tiny) and the fixed Hessian subset as batches."""
    data = load_mnist5k()
    if cfg["n_train"]:
        data = data.subset(n_train=cfg["n_train"], n_test=cfg["landscape_test"])
    g = torch.Generator().manual_seed(0)
    hidx = torch.randperm(len(data.y_train), generator=g)[:cfg["hess_samples"]].sort().values
    log(f"data {data}; Hessian subset {len(hidx)}")
    return data, chunks(data.x_train[hidx], data.y_train[hidx], cfg["hess_chunk"])


# ---------------------------------------------------------------- main
def run(cfg, out="results/yao", only=None, skip_lcnn=False):
    """The whole study with settings ``cfg`` (a yao study preset's settings), or one stage alone
    (``only`` in STAGES: appends its CSV to ``out``; spread retrains the batch-32 seed-0 M1)."""
    torch.set_num_threads(1)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if only:
        data, hess_batches = load(cfg)
        t = time.perf_counter()
        if only == "matched":
            matched(data, hess_batches, cfg, out)
        elif only == "spread":
            seed, bs = cfg["seeds"][0], cfg["spread_batch"]
            torch.manual_seed(seed)
            model = m1()
            train(model, data, bs, seed, cfg)
            test_b = chunks(data.x_test, data.y_test, 500)
            log(f"retrained M1 bs={bs} seed={seed}: test {accuracy(model, test_b):.2f} %")
            spread(model, data, cfg, out, bs, seed)
        else:
            lcnn(data, hess_batches, cfg, out, [])
        write_json(provenance("cpu", seed=cfg["seeds"][0], stage=only, config=cfg,
                              wall_time_s=round(time.perf_counter() - t, 1)),
                   out / f"provenance_{only}.json", default=str)
        return
    for f in [*out.glob("*.csv"), *out.glob("provenance_*.json")]:  # a full run replaces every stage's files
        f.unlink()
    t0 = time.perf_counter()
    prov = provenance("cpu", seed=cfg["seeds"], config=cfg, status="running", wall_time_s=None,
                      scale=f"MNIST-5k ({'tiny subset' if cfg['n_train'] else '4,000 train / 1,000 test'}), "
                            f"M1 ({'%d' % sum(p.numel() for p in m1().parameters())} parameters), "
                            f"{cfg['epochs']} epochs, batch sizes {cfg['batch_sizes']}, seeds {cfg['seeds']}, "
                            f"Hessian on {cfg['hess_samples']} training samples, 1 CPU thread")
    write_json(prov, out / "provenance.json", default=str)

    data, hess_batches = load(cfg)

    rows, keep = [], {}
    for seed in cfg["seeds"]:
        for bs in cfg["batch_sizes"]:
            torch.manual_seed(seed)
            model = m1()
            t = time.perf_counter()
            hist = train(model, data, bs, seed, cfg)
            append_csv([dict(family="m1", batch_size=bs, seed=seed, **h) for h in hist], out / "history.csv")
            log(f"trained M1 bs={bs} seed={seed} in {time.perf_counter() - t:.0f}s")
            row, _ = measure(model, "m1", bs, seed, data, hess_batches, cfg, out, full=seed == cfg["seeds"][0])
            row.update(epochs=cfg["epochs"], steps=hist[-1]["steps"], train_time_s=time.perf_counter() - t)
            rows.append(row)
            pd.DataFrame(rows).to_csv(out / "models.csv", index=False)
            if seed == cfg["seeds"][0] and bs == cfg["spread_batch"]:
                keep["spread"] = model

    log("eigenvalue spread vs number of Hessian samples")
    spread(keep["spread"], data, cfg, out, cfg["spread_batch"], cfg["seeds"][0])

    if not skip_lcnn:
        lcnn(data, hess_batches, cfg, out, rows)

    log("the loss-matched control")
    matched(data, hess_batches, cfg, out)

    prov.update(status="complete", wall_time_s=round(time.perf_counter() - t0, 1))
    write_json(prov, out / "provenance.json", default=str)
    log(f"done in {prov['wall_time_s']}s")
