"""The classifier: architectures, training, the TorchServe handler, archives and serving.

`training.train` turns labelled images into a `TrainedModel`; `archive.build_archive` and
`archive.store_archive` make it an immutable .mar in the model bucket; `serving` registers it
in TorchServe and moves the production pointer; `handler.py` answers predictions inside
TorchServe. README.md in this folder has the contracts, the decisions and measured numbers.
"""
