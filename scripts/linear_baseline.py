"""Test accuracy of a linear (softmax-regression) classifier on the pixels, the reference line
for a network whose activations have gone linear (LCNN at a large lambda drives beta -> 0).

    python scripts/linear_baseline.py mnist5k cifar10-jpeg

Writes results/linear-baseline/<dataset>.json with provenance. Pixels are scaled to [0, 1] and
standardised per feature with the training statistics; the weights are fit by Adam on mini-batches
with a little weight decay, for a fixed number of epochs (no early stopping on the test set).
"""
import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from lcnn_core import provenance
from lcnn_core.data import load_dataset

EPOCHS, BATCH, LR, WEIGHT_DECAY = 30, 256, 1e-3, 1e-4


def features(x, mean=None, std=None):
    x = x.float().flatten(1) / 255.0
    if mean is None:
        mean, std = x.mean(0), x.std(0) + 1e-3
    return (x - mean) / std, mean, std


def fit(dataset, seed=0):
    torch.manual_seed(seed)
    data = load_dataset(dataset, root="data")
    xtr, mean, std = features(data.x_train)
    xte, _, _ = features(data.x_test, mean, std)
    model = torch.nn.Linear(xtr.shape[1], data.num_classes)
    opt = torch.optim.Adam(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    for epoch in range(EPOCHS):
        for i in torch.randperm(len(xtr)).split(BATCH):
            loss = F.cross_entropy(model(xtr[i]), data.y_train[i])
            opt.zero_grad(); loss.backward(); opt.step()
    with torch.no_grad():
        train_acc = (model(xtr).argmax(1) == data.y_train).float().mean().item() * 100
        test_acc = (model(xte).argmax(1) == data.y_test).float().mean().item() * 100
    return dict(dataset=dataset, n_train=len(xtr), n_test=len(xte), epochs=EPOCHS, batch_size=BATCH,
                lr=LR, weight_decay=WEIGHT_DECAY, seed=seed, train_accuracy=round(train_acc, 2),
                accuracy=round(test_acc, 2))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("datasets", nargs="+")
    ap.add_argument("--out", default="results/linear-baseline")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in args.datasets:
        t0 = time.time()
        row = fit(name)
        row["provenance"] = provenance.provenance(wall_time_s=round(time.time() - t0, 1), seed=0)
        tmp = out / f".{name}.json.tmp"
        tmp.write_text(json.dumps(row, indent=1))
        tmp.replace(out / f"{name}.json")
        print(name, row["accuracy"], "% test,", row["train_accuracy"], "% train")


if __name__ == "__main__":
    main()
