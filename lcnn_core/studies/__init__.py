"""The studies beyond the training runs, each driven by a study preset (lcnn_core/presets/, a
``study:`` section) and run by its CLI verb (``python -m lcnn_core yao | tightness | linear-baseline | attack-effort | mode-gap``):

- ``yao``: Yao et al. (2018) at CPU scale, Hessian spectrum and robustness against batch size;
- ``tightness_audit``: how loose the provable bounds are on the trained models;
- ``linear_baseline``: softmax regression on the pixels, the floor for a network gone linear;
- ``attack_effort``: the strongest attack again with twice the steps and restarts, where the
  robust accuracy is large enough to fall;
- ``mode_gap``: training against eval mode (batch norm's running statistics) on retrained MNIST
  ablation runs.
"""
