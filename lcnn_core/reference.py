"""The published numbers we compare against (STUDY.md §4), as data.

PAPER: Srinivas et al. 2022, CIFAR-100, ResNet-18, 200 epochs, mean +- std over two runs.
TEAM:  the course team's replication, CIFAR-10, ResNet-18 (their +- is a spread over samples, so
       only the means are kept). Their slides say only "default configurations"; 50 epochs and
       lambda = 1e-2 are this study's reading of the refactored code's defaults.
PAPER_CIFAR10_CF: E C_f implied by the dashed lines of the paper's CIFAR-10 figure
       (read off a plot, +- 15 %).
"""
PAPER = {  # variant: (E||grad||, std), (E||hess||, std), (E C_f, std), (accuracy %, std)
    "standard":     dict(grad=(19.66, 0.33), hess=(6061.96, 968.05), cf=(270.89, 75.04), acc=(77.42, 0.11)),
    "lcnn":         dict(grad=(22.04, 1.41), hess=(1143.62, 99.38), cf=(69.50, 2.41), acc=(77.30, 0.11)),
    "gradreg":      dict(grad=(8.86, 0.12), hess=(776.56, 63.62), cf=(89.47, 5.86), acc=(77.20, 0.26)),
    "lcnn_gradreg": dict(grad=(9.87, 0.27), hess=(154.36, 0.22), cf=(25.30, 0.09), acc=(77.29, 0.07)),
    "cure":         dict(grad=(8.86, 0.01), hess=(979.45, 14.05), cf=(116.31, 4.58), acc=(76.48, 0.07)),
    "softplus_wd":  dict(grad=(18.08, 0.05), hess=(1052.84, 7.27), cf=(70.39, 0.88), acc=(77.44, 0.28)),
    "adv":          dict(grad=(7.99, 0.03), hess=(501.43, 18.64), cf=(63.79, 1.65), acc=(76.96, 0.26)),
}
PAPER_PGD_EPS = (0.0, 0.05, 0.1, 0.15, 0.2)
PAPER_PGD = {  # accuracy % at eps = 0 (clean), 0.05, 0.1, 0.15, 0.2 (L2, [0, 1] pixels)
    "standard":     (77.42, 59.97, 37.55, 23.41, 16.11),
    "lcnn":         (77.16, 61.17, 39.72, 25.60, 17.66),
    "gradreg":      (77.20, 71.90, 61.06, 49.19, 38.09),
    "lcnn_gradreg": (77.29, 72.68, 63.36, 52.96, 42.70),
    "cure":         (76.48, 71.39, 61.28, 49.60, 39.04),
    "softplus_wd":  (77.44, 60.86, 38.04, 23.85, 16.20),
    "adv":          (76.96, 72.76, 64.70, 54.80, 44.98),
}
PAPER_CIFAR10_CF = {"standard": 170.0, "gradreg": 63.0, "lcnn": 55.0, "lcnn_gradreg": 14.0}
TEAM = {
    "standard":     dict(grad=5.34, hess=668.40, cf=119.78, acc=93.0),
    "lcnn":         dict(grad=2.74, hess=11.16, cf=4.53, acc=64.0),
    "gradreg":      dict(grad=1.44, hess=49.75, cf=32.83, acc=93.0),
    "lcnn_gradreg": dict(grad=0.90, hess=1.99, cf=2.16, acc=62.0),
}

# "At the same accuracy": the paper calls every model of its Table 1 comparably accurate, and the
# farthest from Standard (CURE, 76.48 against 77.42) is 0.94 points away; so a difference within
# 1 point is "the same accuracy" in the paper's own usage (tests/test_verdicts.py checks the table).
ACC_TOLERANCE = 1.0  # accuracy points
# "Only marginally more training time": the paper gives no number. Our reading: at most 15 % more
# time per training step than Standard. A choice of this study, not the paper's.
COST_LIMIT = 1.15  # time ratio model / Standard

# Yao et al. 2018 (Hessian-based analysis of large-batch training), their MNIST model M1, batch 64 -> 2048:
# top Hessian eigenvalue (Table/figure for M1), test accuracy %, and adversarial accuracy (Table 7, two eps).
YAO_M1 = dict(batch=(64, 2048), top_eig=(0.49, 44.3), test_acc=(99.21, 98.99), adversarial=((0.53, 0.19), (0.85, 0.72)))
