"""TRM inside real trainers (the top layer: imports masks and certify, nothing imports it).

- ``trm_bounds.integrations.trl``: ``TRMGRPOTrainer``, TRL's ``GRPOTrainer`` with any registered
  mask of ``trm_bounds.masks.METHODS`` applied to the policy loss, logging acceptance and the
  sample certificate. Needs ``pip install -e '.[frameworks]'`` (trl 1.16.0).
verl is not wrapped: its trainer needs a ray cluster and a vLLM/SGLang rollout worker, so it cannot
be driven on one CPU machine; its options map to ours one to one (``masks.verl_preset``,
``masks.rollout_correction``, docs/masks.md).
Submodules import their framework on import; this package imports nothing.
"""
