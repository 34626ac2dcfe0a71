"""Test accuracy of a linear (softmax-regression) classifier on the pixels, the reference line
for a network whose activations have gone linear (LCNN at a large lambda drives beta -> 0).

    python -m lcnn_core linear-baseline            # preset linear-baseline: mnist5k, cifar10-jpeg

Writes results/linear-baseline/<dataset>.json with provenance. Pixels are scaled to [0, 1] and
standardised per feature with the training statistics; the weights are fit by Adam on mini-batches
with a little weight decay, for a fixed number of epochs (no early stopping on the test set).
The settings are the preset's (lcnn_core/presets/linear-baseline.yaml).
"""
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import provenance
from ..atomic import write_json
from ..data import load_dataset


def features(x, mean=None, std=None):
    x = x.float().flatten(1) / 255.0
    if mean is None:
        mean, std = x.mean(0), x.std(0) + 1e-3
    return (x - mean) / std, mean, std


def fit(dataset, epochs, batch_size, lr, weight_decay, seed=0, data_root="data"):
    torch.manual_seed(seed)
    data = load_dataset(dataset, root=data_root)
    xtr, mean, std = features(data.x_train)
    xte, _, _ = features(data.x_test, mean, std)
    model = torch.nn.Linear(xtr.shape[1], data.num_classes)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    for epoch in range(epochs):
        for i in torch.randperm(len(xtr)).split(batch_size):
            loss = F.cross_entropy(model(xtr[i]), data.y_train[i])
            opt.zero_grad(); loss.backward(); opt.step()
    with torch.no_grad():
        train_acc = (model(xtr).argmax(1) == data.y_train).float().mean().item() * 100
        test_acc = (model(xte).argmax(1) == data.y_test).float().mean().item() * 100
    return dict(dataset=dataset, n_train=len(xtr), n_test=len(xte), epochs=epochs, batch_size=batch_size,
                lr=lr, weight_decay=weight_decay, seed=seed, train_accuracy=round(train_acc, 2),
                accuracy=round(test_acc, 2))


def run(settings, out="results/linear-baseline", log=print):
    """Fit every dataset of ``settings["datasets"]``; one JSON file per dataset in ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in settings["datasets"]:
        t0 = time.time()
        row = fit(name, settings["epochs"], settings["batch_size"], settings["lr"], settings["weight_decay"],
                  settings["seed"], settings["data_root"])
        row["provenance"] = provenance.provenance(wall_time_s=round(time.time() - t0, 1), seed=settings["seed"])
        write_json(row, out / f"{name}.json", indent=1, default=None)
        log(f"{name} {row['accuracy']} % test, {row['train_accuracy']} % train")
