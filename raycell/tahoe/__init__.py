"""The Tahoe-100M slice: which loading strategy to train on, at what cost.

- ``data``: the plates on disk (reader, labels, synthetic and Tahoe-scale generators).
- ``loaders``: the strategies, by name (``loaders/strategies.py``), over scDataset or Ray Data.
- ``model``: the 4-task linear classifier, its sparse input path and its metrics.
- ``bench``: ``raycell bench loaders`` and ``raycell bench train``.
- ``outputs``: result tables, figures and the report section.
- Here: the config, the validated inputs, and the run (api -> grid -> trial -> worker).
"""
